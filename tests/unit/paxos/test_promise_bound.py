"""A Promise carries at most `max_batch_bytes` of chosen slots (replica rule 16).

Before the bound, a promise carried every slot the acceptor held above the candidate's
watermark: a candidate that had been away while the group wrote up to its compaction
threshold (64 MiB by default) was promised a message larger than the peer link's 64 MiB
gRPC limit, which the link could never deliver, so that candidate's campaigns could never
finish. A promiser whose chosen slots above the candidate's first slot exceed the bound
leaves them out and says so; the candidate stands down and catches up first, as it does
when the promiser compacted those slots (bounded catch-up replies), and an up-to-date
replica, or the candidate once caught up, wins the next election.
"""

from __future__ import annotations

from paxos import Role
from paxos.messages import Promise
from tests.unit.paxos.test_replica_paths import Group, between

BOUND = 10_000
VALUE = b"x" * 1_000
SLOTS = 40  # 40 kB of chosen slots: four times the bound


def group_with_a_replica_left_behind() -> Group:
    """Replica 1 leads and gets SLOTS values of 1 kB chosen by {1, 2}; 3 hears none."""
    g = Group(3, fast=(1,), max_batch_bytes=BOUND, max_batch_count=1, pipeline_window=8)
    g.elect(1)
    for i in range(SLOTS):
        g.r(1).propose(VALUE + bytes([i]))
        g.stabilize(keep=between(1, 2))
    g.heartbeat(1, keep=between(1, 2))
    assert len(g.chosen(2)) == SLOTS
    return g


def promises_to(g: Group, candidate: int) -> list[Promise]:
    return [m for m in g.inflight if isinstance(m, Promise) and m.dst == candidate]


def chosen_bytes(promise: Promise) -> int:
    return sum(sum(map(len, e.value)) for e in promise.accepted if e.chosen)


def test_a_promise_to_a_candidate_far_behind_leaves_its_chosen_slots_out() -> None:
    g = group_with_a_replica_left_behind()
    g.crash(1)
    g.idle(2, 1.0)
    g.idle(3, 61.0)  # replica 3's election timer runs out first (2's is slow)
    assert g.r(3).role is Role.CANDIDATE
    g.process_all()
    g.deliver(keep=between(2, 3))  # 3's Prepare reaches 2
    g.process(2)
    (promise,) = promises_to(g, 3)
    assert chosen_bytes(promise) <= BOUND
    assert promise.chosen_omitted
    # The candidate stands down and asks for the chosen slots instead of leading without them.
    g.deliver(keep=between(2, 3))
    assert g.r(3).role is Role.FOLLOWER
    g.stabilize(keep=between(2, 3))
    assert g.chosen(3) == g.chosen(2)
    # Caught up, it wins its next campaign with a small promise, and writes go on.
    g.idle(3, 122.0)
    g.stabilize(keep=between(2, 3))
    assert g.r(3).role is Role.LEADER
    g.r(3).propose(b"after")
    g.stabilize(keep=between(2, 3))
    g.heartbeat(3, keep=between(2, 3))
    assert g.chosen(2)[:SLOTS] == g.chosen(3)[:SLOTS]
    assert g.chosen(2)[-1] == (b"after",) == g.chosen(3)[-1]


def test_a_candidate_a_little_behind_still_gets_the_chosen_slots_in_its_promise() -> None:
    """Under the bound nothing changes: no extra round of catch-up before leading."""
    g = Group(3, fast=(1,), max_batch_bytes=BOUND, max_batch_count=1, pipeline_window=8)
    g.elect(1)
    for i in range(3):
        g.r(1).propose(VALUE + bytes([i]))
        g.stabilize(keep=between(1, 2))
    g.heartbeat(1, keep=between(1, 2))
    g.crash(1)
    g.idle(2, 1.0)
    g.idle(3, 61.0)
    g.process_all()
    g.deliver(keep=between(2, 3))
    g.process(2)
    (promise,) = promises_to(g, 3)
    assert not promise.chosen_omitted
    assert chosen_bytes(promise) == 3 * (len(VALUE) + 1)
    g.stabilize(keep=between(2, 3))
    assert g.r(3).role is Role.LEADER
    g.heartbeat(3, keep=between(2, 3))
    assert g.chosen(3)[:3] == g.chosen(2)[:3]
