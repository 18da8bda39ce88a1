"""Rules 10 and 11 at a snapshot install: the follower drops the votes it held at or below the
snapshot's index (they may never have been chosen), and a proposal whose slot the snapshot
covered before its value was learned is reported once, in `outcome_unknown`."""

from __future__ import annotations

from test_replica_paths import Group, _encode, between, one_slot_accept

from paxos.ballot import Ballot
from paxos.messages import InstallSnapshot
from paxos.replica import Role


def test_a_vote_below_an_installed_snapshot_is_not_reported_chosen() -> None:
    """Rule 11: a follower that installs a snapshot drops the votes it held at or below the
    snapshot's index: they may never have been chosen, and every slot up to the index is now
    reported chosen (`chosen_value`, a Promise's chosen entries)."""
    g = Group(3, fast=(1,))
    g.tick_all(0.0)
    stale = Ballot(1, 1)
    # Node 3 votes for a value at slot 1 under ballot 1.1 that was never chosen ...
    g.r(3).step(one_slot_accept(1, 3, stale, 1, (b"x",)))
    g.process(3)
    assert g.r(3).chosen_value(1) is None
    # ... then a later leader (ballot 2.2) sends it a snapshot covering slots 1 and 2.
    snap = _encode([(1, (b"a",)), (2, (b"b",))])
    g.r(3).step(InstallSnapshot(src=2, dst=3, ballot=Ballot(2, 2), index=2, data=snap))
    g.process(3)
    g.process(3)
    assert g.r(3).chosen_watermark == 2
    assert g.r(3).chosen_value(1) != (b"x",)
    assert g.r(3).status().log_start == 3


def test_a_deposed_leaders_proposal_covered_by_a_snapshot_is_reported_unknown() -> None:
    """Rule 10: a proposal is reported exactly once: chosen, dropped, or, when a snapshot
    covered its slot before this replica learned the slot's value, in `outcome_unknown`."""
    g = Group(3, fast=(1, 2))
    g.elect(1)
    pid = g.r(1).propose(b"x")
    g.process(1)
    g.inflight = [m for m in g.inflight if m.dst == 2]
    g.deliver()
    g.process(2)  # node 2 votes for x; node 1 never hears it
    g.inflight = []
    # Node 1 is cut off; nodes 2 and 3 elect node 2, which chooses slot 1 and goes on.
    g.settle_among(2, 3)
    assert g.r(2).role is Role.LEADER
    g.r(2).propose(b"y")
    g.stabilize(keep=between(2, 3))
    g.heartbeat(2, keep=between(2, 3))
    index = g.r(2).applied_index
    assert index >= 2
    # Node 1 hears node 2's heartbeat (it steps down; its catch-up request is lost) ...
    (beat,) = [m for m in g.r(2).repeat_heartbeats() if m.dst == 1]
    g.r(1).step(beat)
    g.process(1)
    g.inflight = []
    assert g.r(1).role is Role.FOLLOWER
    # ... and then a snapshot (node 2 compacted its log): slot 1 is covered unseen.
    snap = InstallSnapshot(
        src=2, dst=1, ballot=beat.ballot, index=index, data=_encode(g.applied[2])
    )
    g.r(1).step(snap)
    reported = []
    for _ in range(3):
        ready = g.process(1)
        reported += ready.outcome_unknown
        assert pid not in [p for e in ready.committed for p in e.proposal_ids]
        assert pid not in [p for p, _ in ready.dropped]
    assert reported == [pid]
