"""Rule 5: a Ready hands at most `max_apply_bytes` of chosen values to the application, and
a read is answered only in the Ready whose committed entries reach its index.

Found on a real cluster (bench/snapshot_catchup.py): a follower back from a pause caught up
4 MiB catch-up replies, each applied in one cycle (about 0.5 s of Python for 30,000 small
puts), ten times in a row; the groups its node led elected new leaders.
"""

from __future__ import annotations

from paxos import ReplicaConfig, Role
from paxos.ballot import Ballot
from paxos.messages import InstallSnapshot, Nack
from tests.unit.paxos.test_compaction_bytes import single_voter_leader
from tests.unit.paxos.test_replica_paths import Group


def test_a_backlog_is_applied_over_several_readies_and_reads_wait_for_it() -> None:
    config = ReplicaConfig(
        node_id=1, voters=(1,), max_batch_count=1, pipeline_window=32, max_apply_bytes=2_500
    )
    replica, storage, now = single_voter_leader(config)
    start = replica.applied_index
    for i in range(10):
        replica.propose(bytes([i]) * 1_000)  # ten slots of 1 kB
    ready = replica.ready()
    storage.save(ready.persist)
    replica.advance(ready)  # the one vote needed: all ten are chosen now
    assert not ready.committed
    replica.read(7, now)
    applied = start
    per_ready = []
    answered_at = None
    while replica.has_ready():
        ready = replica.ready()
        storage.save(ready.persist)
        if ready.committed:
            assert ready.committed[0].slot == applied + 1
            applied = ready.committed[-1].slot
            per_ready.append(len(ready.committed))
        for read in ready.reads:
            assert read.read_id == 7 and answered_at is None
            answered_at = applied
            assert read.index <= applied
        replica.advance(ready)
    assert applied == start + 10
    assert per_ready == [2, 2, 2, 2, 2]  # the third 1 kB value would pass 2,500 bytes
    assert answered_at == start + 10


def test_one_slot_larger_than_the_bound_is_still_applied() -> None:
    config = ReplicaConfig(node_id=1, voters=(1,), max_batch_count=1, max_apply_bytes=10)
    replica, storage, _ = single_voter_leader(config)
    replica.propose(b"x" * 1_000)
    committed = []
    while replica.has_ready():
        ready = replica.ready()
        storage.save(ready.persist)
        committed += ready.committed
        replica.advance(ready)
    assert [c.value for c in committed if c.value] == [(b"x" * 1_000,)]


def chosen_not_applied() -> Group:
    """Leader 1 of three, one slot applied per Ready, with three slots chosen, none applied."""
    g = Group(max_apply_bytes=1, max_batch_count=1)
    g.elect(1)
    for i in range(3):
        g.r(1).propose(bytes([i]) * 10)
    g.process(1)
    g.deliver()
    g.process(2)
    g.process(3)
    g.deliver()  # the Accepteds
    return g


def test_reads_held_for_the_apply_are_dropped_when_the_leader_steps_down() -> None:
    """Found by review: a held read outlived the leadership; the replica then installed a
    snapshot, which set its applied index, and the read was answered from the node's old
    data while the restore had not begun (a stale read)."""
    g = chosen_not_applied()
    leader = g.r(1)
    leader.read(9, g.now[1])
    first = g.process(1)
    assert len(first.committed) == 1 and not first.reads  # held for the apply
    ballot = leader.status().promised
    leader.step(
        Nack(src=2, dst=1, ballot=ballot, promised=Ballot(ballot.round + 5, 3), leader_hint=3)
    )
    assert leader.role is Role.FOLLOWER
    later = [g.process(1) for _ in range(5) if leader.has_ready()]
    assert [rid for r in later for rid, _ in r.dropped_reads] == [9]
    assert not [read for r in later for read in r.reads]


def test_a_lease_read_queued_before_a_step_down_is_dropped_not_answered_by_a_snapshot() -> None:
    """Found by the second review: a lease read still queued in the outgoing Ready (not yet
    held) survived the step-down; an InstallSnapshot then set the applied index, and the
    Ready carrying the snapshot answered it while the node had restored nothing (on a real
    node: a get missing 344 acknowledged writes)."""
    g = chosen_not_applied()
    leader = g.r(1)
    assert leader.has_valid_lease(g.now[1])
    leader.read(9, g.now[1])  # a lease read, queued in the outgoing Ready
    ballot = leader.status().promised
    newer = Ballot(ballot.round + 5, 3)
    leader.step(Nack(src=2, dst=1, ballot=ballot, promised=newer, leader_hint=3))
    assert leader.role is Role.FOLLOWER
    index = leader.chosen_watermark
    leader.step(InstallSnapshot(src=3, dst=1, ballot=newer, index=index, data=b"state"))
    ready = leader.ready()
    assert ready.snapshot is not None and not ready.reads
    assert [rid for rid, _ in ready.dropped_reads] == [9]
