"""A quorum is a strict majority of the voters: two quorums of a four-voter group must
intersect, so a candidate needs three promises and a slot three votes, not two; a group of
one voter is its own quorum, holds a lease and answers reads."""

from __future__ import annotations

from test_replica_paths import Group, between

from paxos.messages import Prepare
from paxos.replica import Role


def _campaign(g: Group) -> None:
    g.tick_all(0.0)
    for j in (2, 3, 4):
        g.tick(j, 0.13)
    g.tick(1, 0.2)
    assert g.r(1).role is Role.CANDIDATE


def test_two_of_four_voters_elect_nobody() -> None:
    g = Group(4, fast=(1,))
    _campaign(g)
    g.process(1)
    held = [m for m in g.inflight if isinstance(m, Prepare) and m.dst == 3]
    g.stabilize(keep=between(1, 2))  # nodes 3 and 4 hear nothing
    assert g.r(1).role is Role.CANDIDATE  # its own promise and node 2's: two of four
    g.inflight = held  # node 3's Prepare arrives late
    g.stabilize(keep=between(1, 3))
    assert g.r(1).role is Role.LEADER


def test_a_value_needs_three_of_four_votes() -> None:
    g = Group(4, fast=(1,))
    _campaign(g)
    g.stabilize()
    assert g.r(1).role is Role.LEADER
    g.r(1).propose(b"v")
    g.process(1)
    held = [m for m in g.inflight if m.dst == 3]
    g.stabilize(keep=between(1, 2))  # only node 2 votes
    assert g.chosen(1) == []
    g.inflight = held
    g.stabilize(keep=between(1, 3))
    assert g.chosen(1) == [(b"v",)]


def test_a_single_replica_leader_holds_a_lease_and_answers_reads() -> None:
    g = Group(1)
    g.tick(1, 0.0)
    g.tick(1, 0.2)  # its election timer ran out: it campaigns and is its own quorum
    assert g.r(1).role is Role.LEADER
    g.r(1).propose(b"w")
    g.process_all()
    assert g.chosen(1) == [(b"w",)]
    now = g.now[1]
    assert g.r(1).has_valid_lease(now)
    g.r(1).read(1, now)
    assert [(r.read_id, r.index, r.via_lease) for r in g.process(1).reads] == [(1, 1, True)]
    # Past the lease, a read-index read is confirmed by the next round alone.
    later = now + 1.0
    g.tick(1, later)
    g.process_all()
    g.r(1).read(2, later + 0.001)
    reads = []
    for _ in range(3):
        while g.r(1).has_ready():
            reads += g.process(1).reads
    assert [r.read_id for r in reads] == [2]
