"""A leader's slots in flight hold at most `max_inflight_bytes` (replica rule 17).

Every slot in flight may travel in one message: the Accept re-sent to a follower that has
not voted, and that follower's votes in the next election's promise. Bounded in slots
alone, a window of 32 full slots (4 MiB each) made 128 MiB messages, past the 64 MiB a
peer link delivers: the follower never voted and no new leader finished Phase 1.
"""

from __future__ import annotations

from paxos.messages import Accept, Promise
from tests.unit.paxos.test_replica_paths import Group, between

VALUE = b"x" * 1_000
BOUND = 3_500  # three 1 kB slots and a half


def message_bytes(msg: Accept | Promise) -> int:
    entries = msg.entries if isinstance(msg, Accept) else msg.accepted
    return sum(sum(map(len, e.value)) for e in entries)


def leader_with_a_full_window() -> Group:
    g = Group(3, fast=(1,), max_batch_count=1, pipeline_window=32, max_inflight_bytes=BOUND)
    g.elect(1)
    for i in range(20):
        g.r(1).propose(VALUE + bytes([i]))
    g.process(1)
    return g


def test_a_leader_opens_no_slot_past_the_byte_bound() -> None:
    g = leader_with_a_full_window()
    accepts = [m for m in g.inflight if isinstance(m, Accept)]
    assert accepts and all(message_bytes(m) <= BOUND + len(VALUE) + 1 for m in accepts)
    assert max(e.slot for m in accepts for e in m.entries) - g.r(1).status().chosen_watermark == 4
    assert not g.r(1).has_ready()  # the queue waits: a driver looping on has_ready stops
    # As slots are chosen the rest go, all of them, in order.
    g.stabilize()
    for _ in range(3):
        g.heartbeat(1)
    assert g.chosen(1)[-20:] == [(VALUE + bytes([i]),) for i in range(20)]


def test_a_resent_accept_and_the_next_promise_stay_within_the_bound() -> None:
    g = leader_with_a_full_window()
    g.inflight.clear()  # the Accepts are lost: nobody voted
    g.tick(1, g.now[1] + 0.06)  # past a heartbeat interval: re-sent to every follower
    g.process(1)
    resent = [m for m in g.inflight if isinstance(m, Accept)]
    assert {m.dst for m in resent} == {2, 3}
    assert all(message_bytes(m) <= BOUND + len(VALUE) + 1 for m in resent)
    g.deliver(keep=lambda m: m.dst == 2)  # node 2 votes; the leader crashes before hearing
    g.process(2)
    g.crash(1)
    g.inflight.clear()
    g.idle(2, 1.0)
    g.idle(3, 61.0)  # node 3 campaigns
    g.process_all()
    g.deliver(keep=between(2, 3))
    g.process(2)
    promises = [m for m in g.inflight if isinstance(m, Promise) and m.dst == 3]
    assert promises and all(message_bytes(m) <= BOUND + len(VALUE) + 1 for m in promises)
    g.stabilize(keep=between(2, 3))
    g.heartbeat(3, keep=between(2, 3))
    assert g.chosen(3)[: len(g.chosen(2))] == g.chosen(2)
