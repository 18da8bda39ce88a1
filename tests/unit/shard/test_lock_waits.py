"""Lock waits and update locks (shard.lock_wait): the table alone, the `blocked` rules on a
real shard, and NodeCore parking requests behind intents and locks (one-node cluster)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

import shard.node as node_module
from paxos import Role
from router import kv_pb2 as kv
from shard.execute import execute_cycle
from shard.lock_wait import (
    LOCK_QUEUE_MAX_S,
    LOCK_TTL_S,
    LOCK_WAIT_MAX_S,
    WOUND_GRACE_S,
    WOUND_MEMORY_S,
    Grant,
    LockTable,
    blocked,
)
from shard.proven_commits import ProvenCommits
from shard.ttl import deadline_of
from tests.unit.shard.test_node_core import OneNode, get, header, put, tid, vouched

OLD = (100, tid(b"old"))
MID = (200, tid(b"mid"))
YOUNG = (300, tid(b"young"))


# ---------------------------------------------------------------------- the table


def test_a_free_lock_is_granted_and_regranted_to_its_holder() -> None:
    table = LockTable()
    assert table.acquire(b"k", MID, 0.0) is Grant.GRANTED
    assert table.acquire(b"k", MID, 0.01) is Grant.GRANTED
    assert table.holder(b"k") == tid(b"mid") and len(table) == 1


def test_a_younger_requester_waits_and_never_wounds() -> None:
    table = LockTable()
    table.acquire(b"k", MID, 0.0)
    assert table.acquire(b"k", YOUNG, 10.0) is Grant.WAIT
    assert table.wound_at(b"k", YOUNG) is None
    assert table.wound(tid(b"mid")) is None


def test_an_older_requester_wounds_only_after_the_grace() -> None:
    table = LockTable()
    table.acquire(b"k", MID, 0.0)
    table.acquire(b"other", MID, 0.0)
    assert table.acquire(b"k", OLD, WOUND_GRACE_S / 2) is Grant.WAIT
    assert table.wound_at(b"k", OLD) == pytest.approx(WOUND_GRACE_S)
    before = table.releases
    assert table.acquire(b"k", OLD, WOUND_GRACE_S) is Grant.GRANTED
    # The wounded holder lost every lock it held here and is refused from now on.
    assert table.wound(tid(b"mid")) == (b"k", tid(b"old")) and table.holder(b"other") is None
    assert table.releases > before
    assert table.acquire(b"other", MID, WOUND_GRACE_S) is Grant.WOUNDED


def test_a_committing_holder_is_waited_for_not_wounded() -> None:
    table = LockTable()
    table.acquire(b"k", MID, 0.0)
    table.committing(tid(b"mid"))
    assert table.wound_at(b"k", OLD) is None
    assert table.acquire(b"k", OLD, 10 * WOUND_GRACE_S) is Grant.WAIT
    table.release(tid(b"mid"))
    assert table.acquire(b"k", OLD, 10 * WOUND_GRACE_S) is Grant.GRANTED


def test_locks_expire_and_wounds_are_forgotten() -> None:
    table = LockTable()
    table.acquire(b"k", MID, 0.0)
    table.expire(LOCK_TTL_S / 2)
    assert table.holder(b"k") == tid(b"mid")
    table.expire(LOCK_TTL_S)
    assert table.holder(b"k") is None
    table.acquire(b"k", YOUNG, 1.0)
    table.acquire(b"k", OLD, 1.0 + WOUND_GRACE_S)
    assert table.wound(tid(b"young")) == (b"k", tid(b"old"))
    table.expire(1.0 + WOUND_GRACE_S + WOUND_MEMORY_S)
    assert table.wound(tid(b"young")) is None
    table.clear()
    assert len(table) == 0


def test_a_holder_queued_for_another_lock_keeps_its_locks_through_the_wait() -> None:
    """A transaction queued behind an older holder lost the locks it already held after
    LOCK_TTL_S, shorter than a queue wait that began after them: a younger reader took
    them, and the queued, older transaction then aborted on its write (found by review).
    They last until the wait ends, and no longer: every wake asks again, and a dead
    client's locks outlived its wait by LOCK_QUEUE_MAX_S (found by review)."""
    table = LockTable()
    assert table.acquire(b"b", OLD, 0.0) is Grant.GRANTED
    assert table.acquire(b"a", MID, 0.0) is Grant.GRANTED
    queued_at = LOCK_TTL_S - LOCK_QUEUE_MAX_S / 2  # its wait ends after a's lock would
    wait_end = queued_at + LOCK_QUEUE_MAX_S
    for now in (queued_at, queued_at + 0.1, wait_end):  # it asks again at every wake
        assert table.acquire(b"b", MID, now, queue_until=wait_end) is Grant.WAIT
    table.expire(LOCK_TTL_S + 0.1)
    assert table.holder(b"a") == tid(b"mid")
    assert table.acquire(b"a", YOUNG, LOCK_TTL_S + 0.1) is Grant.WAIT
    table.expire(wait_end)  # its wait is over: the locks expire then
    assert table.holder(b"a") is None


def test_a_queue_wait_is_shorter_than_a_locks_life() -> None:
    """So the locks a transaction took in other groups together with a read that queues
    here outlast its wait: their leaders cannot see it (found by review: at 3 s, an older
    transaction queued in one group lost its lock in another to a younger one, which
    wrote there, and the older one's commit was then refused)."""
    assert LOCK_QUEUE_MAX_S < LOCK_TTL_S


# ---------------------------------------------------------------------- who may wait


def prepare(
    txn: bytes,
    *,
    reads: tuple[tuple[bytes, int], ...] = (),
    writes: tuple[bytes, ...] = (),
    priority: int = 0,
    ts: int = 1,
    ttl_ms: int = 0,
    group: int = 1,
    timeout_ms: int = 0,
) -> kv.Request:
    head = header(group)
    head.timeout_ms = timeout_ms
    return kv.Request(
        prepare=kv.PrepareRequest(
            header=head,
            txn_id=txn,
            coordinator_group=1,
            participants=[1, 2],
            ts=ts,
            priority=priority,
            reads=[kv.ReadItem(key=k, version=v) for k, v in reads],
            writes=[kv.WriteItem(key=k, value=b"v", ttl_ms=ttl_ms) for k in writes],
        )
    )


def one_phase(txn: bytes, *, writes: tuple[bytes, ...] = ()) -> kv.Request:
    return kv.Request(
        commit_one_phase=kv.CommitOnePhaseRequest(
            header=header(),
            txn_id=txn,
            ts=1,
            writes=[kv.WriteItem(key=k, value=b"w") for k in writes],
        )
    )


def resolve(txn: bytes, commit: bool, commit_ts: int = 0) -> kv.Request:
    return kv.Request(
        resolve=vouched(
            kv.ResolveRequest(header=header(), txn_id=txn, commit=commit, commit_ts=commit_ts)
        )
    )


def read_for_update(key: bytes, txn: bytes, priority: int, group: int = 1, **kw: Any) -> kv.Request:
    return get(key, group, lock_txn_id=txn, lock_priority=priority, **kw)


@pytest.fixture
def node() -> OneNode:
    return OneNode()


def hold_intent(node: OneNode, txn: bytes, key: bytes, priority: int) -> int:
    """Prepare `txn` writing `key`; its prepare_ts."""
    answer = node.call(prepare(txn, writes=(key,), priority=priority)).prepare
    assert answer.error.code == kv.OK, answer.error
    return answer.prepare_ts


def is_blocked(shard: Any, ages: dict[bytes, tuple[int, bytes]], request: kv.Request) -> bool:
    """Whether `request` would wait at `shard`, with `ages` as the transactions' ages."""
    kind = request.WhichOneof("op")
    assert kind is not None
    return blocked(shard, kind, getattr(request, kind), ages.get, ProvenCommits())


def test_blocked_rules_on_a_real_shard(node: OneNode) -> None:
    version = node.call(put(b"apple", b"red")).put.version
    hold_intent(node, tid(b"holder"), b"apple", priority=200)
    shard = node.core.hosts[1].shard
    ages = {tid(b"holder"): (200, tid(b"holder"))}

    assert is_blocked(shard, ages, get(b"apple"))  # L1: a read waits for a write intent
    assert not is_blocked(
        shard, ages, get(b"apple", snapshot=True, at_version=1)
    )  # parked elsewhere
    assert not is_blocked(shard, ages, get(b"apple", stale_ok=True))
    assert is_blocked(shard, ages, put(b"apple", b"x"))  # L1: a single-key write waits
    assert not is_blocked(shard, ages, put(b"banana", b"x"))
    assert is_blocked(
        shard, ages, one_phase(tid(b"t1"), writes=(b"apple",))
    )  # L1: holds nothing, waits
    # L2 (wait-die): an older Prepare waits, a younger one does not, nor one facing a
    # holder of unknown age.
    assert is_blocked(shard, ages, prepare(tid(b"old"), writes=(b"apple",), priority=100))
    assert not is_blocked(shard, ages, prepare(tid(b"young"), writes=(b"apple",), priority=300))
    ages.clear()
    assert not is_blocked(shard, ages, prepare(tid(b"old"), writes=(b"apple",), priority=100))
    ages[tid(b"holder")] = (200, tid(b"holder"))
    # L3: a read version already stale is refused at once, waiting would not help.
    stale = prepare(tid(b"old"), reads=((b"apple", version - 1),), priority=100)
    assert not is_blocked(shard, ages, stale)
    assert is_blocked(shard, ages, prepare(tid(b"old"), reads=((b"apple", version),), priority=100))


def test_blocked_rules_for_scanned_ranges(node: OneNode) -> None:
    """Rule L1 with P6: a prepared scanner's range holds writes as a read intent would, and a
    write intent inside a range a request scanned is waited for as one on a key it read."""
    scanner = prepare(tid(b"scanner"), priority=200)
    scanner.prepare.read_ranges.append(kv.KeyRange(start=b"c", end=b"d"))
    assert node.call(scanner).prepare.error.code == kv.OK
    hold_intent(node, tid(b"holder"), b"apple", priority=200)
    shard = node.core.hosts[1].shard
    ages = {tid(b"scanner"): (200, tid(b"scanner")), tid(b"holder"): (200, tid(b"holder"))}

    assert is_blocked(
        shard, ages, put(b"cherry", b"x")
    )  # a single-key write into the scanned range
    assert not is_blocked(shard, ages, get(b"cherry"))  # reads share a range, as read intents
    assert is_blocked(shard, ages, one_phase(tid(b"t1"), writes=(b"cherry",)))
    assert is_blocked(
        shard, ages, prepare(tid(b"old"), writes=(b"cherry",), priority=100)
    )  # wait-die
    assert not is_blocked(shard, ages, prepare(tid(b"young"), writes=(b"cherry",), priority=300))
    older_scan = prepare(tid(b"old"), priority=100)  # scanned over the holder's write intent
    older_scan.prepare.read_ranges.append(kv.KeyRange(start=b"a", end=b"b"))
    assert is_blocked(shard, ages, older_scan)
    clear_scan = prepare(tid(b"old"), priority=100)
    clear_scan.prepare.read_ranges.append(kv.KeyRange(start=b"b", end=b"c"))
    assert not is_blocked(shard, ages, clear_scan)


def test_a_read_behind_an_intent_is_answered_when_it_is_resolved(node: OneNode) -> None:
    node.call(put(b"apple", b"red"))
    prepare_ts = hold_intent(node, tid(b"t1"), b"apple", priority=1)
    answers: list[kv.Response] = []
    node.core.submit(get(b"apple"), answers.append)
    node.advance(0.2)
    assert answers == [] and node.core.has_client_requests()
    assert node.call(resolve(tid(b"t1"), True, prepare_ts)).resolve.error.code == kv.OK
    node.advance(0.02)
    assert len(answers) == 1 and answers[0].get.value == b"v"


def test_a_wait_is_bounded_then_refused_as_before(node: OneNode) -> None:
    hold_intent(node, tid(b"t1"), b"apple", priority=1)
    answers: list[kv.Response] = []
    node.core.submit(get(b"apple"), answers.append)
    node.advance(LOCK_WAIT_MAX_S * 0.9)
    assert answers == []
    node.advance(LOCK_WAIT_MAX_S * 0.2)
    assert len(answers) == 1 and answers[0].get.error.code == kv.CONFLICT
    assert answers[0].get.error.conflict.other_txn == tid(b"t1")


def test_the_end_of_a_wait_is_a_deadline_the_shell_wakes_for(node: OneNode) -> None:
    hold_intent(node, tid(b"t1"), b"apple", priority=1)
    answers: list[kv.Response] = []
    node.core.submit(get(b"apple"), answers.append)
    node.advance(0.05)
    (wait,) = node.core._lock_waits
    node.tick_on_deadlines(until=wait.pending.wait_until - 0.0001)
    assert answers == []
    node.tick_on_deadlines(until=wait.pending.wait_until)
    assert len(answers) == 1 and answers[0].get.error.code == kv.CONFLICT


def test_a_younger_read_for_update_queues_behind_the_holder(node: OneNode) -> None:
    node.call(put(b"apple", b"red"))
    first = node.call(read_for_update(b"apple", tid(b"t1"), priority=100)).get
    assert first.value == b"red"
    answers: list[kv.Response] = []
    node.core.submit(read_for_update(b"apple", tid(b"t2"), priority=200), answers.append)
    node.advance(0.1)
    assert answers == []  # queued: t1 is older
    committed = node.call(one_phase(tid(b"t1"), writes=(b"apple",))).commit_one_phase
    assert committed.error.code == kv.OK
    node.advance(0.02)
    # t1's commit released the lock: t2 reads what t1 wrote.
    assert len(answers) == 1 and answers[0].get.value == b"w"
    assert node.core.hosts[1].locks.holder(b"apple") == tid(b"t2")


def test_an_older_reader_wounds_and_the_wounded_prepare_is_refused_unlogged(
    node: OneNode,
) -> None:
    node.call(put(b"apple", b"red"))
    assert node.call(read_for_update(b"apple", tid(b"young"), priority=300)).get.value == b"red"
    assert node.call(read_for_update(b"apple", tid(b"old"), priority=100)).get.value == b"red"
    host = node.core.hosts[1]
    assert host.locks.holder(b"apple") == tid(b"old")
    assert host.locks.wound(tid(b"young")) == (b"apple", tid(b"old"))
    chosen = host.replica.status().chosen_watermark
    refused = node.call(prepare(tid(b"young"), writes=(b"apple",), priority=300)).prepare
    assert refused.error.code == kv.CONFLICT and "wounded" in refused.error.message
    # Explainable: the key and the older transaction that took its lock.
    assert (refused.error.conflict.key, refused.error.conflict.other_txn) == (b"apple", tid(b"old"))
    assert host.replica.status().chosen_watermark == chosen  # a no vote needs no log entry
    again = node.call(read_for_update(b"apple", tid(b"young"), priority=300)).get
    assert again.error.code == kv.CONFLICT


def test_an_abort_releases_the_locks_at_once(node: OneNode) -> None:
    node.call(read_for_update(b"apple", tid(b"t1"), priority=100))
    answers: list[kv.Response] = []
    node.core.submit(read_for_update(b"apple", tid(b"t2"), priority=200), answers.append)
    node.advance(0.05)
    assert answers == []
    node.core.submit(resolve(tid(b"t1"), False), lambda _r: None)
    node.advance(0.02)
    assert len(answers) == 1 and answers[0].get.error.code == kv.OK


@pytest.mark.parametrize(
    "request_",
    [
        read_for_update(b"apple", tid(b"t1"), priority=0),
        read_for_update(b"apple", tid(b"t1"), priority=5, stale_ok=True),
        # A read at a version is a snapshot read (it took no lock and said nothing).
        read_for_update(b"apple", tid(b"t1"), priority=5, at_version=1),
    ],
)
def test_bad_reads_for_update_are_refused(node: OneNode, request_: kv.Request) -> None:
    assert node.call(request_).get.error.code == kv.INVALID_ARGUMENT
    assert len(node.core.hosts[1].locks) == 0


def test_a_lock_in_another_group_outlasts_a_queue_wait_that_began_with_it(
    node: OneNode,
) -> None:
    """Found by review (groups 1 [.., m) and 2 [m, ..), both led here): mid locks n in
    group 2, then queues for a in group 1 behind the older holder old. Group 2's leader
    cannot see that wait; with a queue wait longer than a lock's life, young took n while
    mid still queued, wrote it, and mid's commit was refused for its stale read of n."""
    node.call(put(b"a", b"0"))
    node.call(put(b"n", b"0", group=2))
    mid, old, young = tid(b"mid"), tid(b"old"), tid(b"young")
    assert node.call(read_for_update(b"n", mid, 200, group=2)).get.error.code == kv.OK
    node.advance(0.3)  # mid's body reads on (less than LOCK_TTL_S - LOCK_QUEUE_MAX_S)
    assert node.call(read_for_update(b"a", old, 100)).get.error.code == kv.OK
    queued: list[kv.Response] = []
    node.core.submit(read_for_update(b"a", mid, 200), queued.append)
    younger: list[kv.Response] = []
    node.core.submit(read_for_update(b"n", young, 300, group=2), younger.append)
    while True:  # old never finishes: mid's wait runs to its end
        node.advance(0.05)
        if queued:
            break
        assert node.core.hosts[2].locks.holder(b"n") == mid and younger == []
    assert queued[0].get.error.code == kv.CONFLICT  # refused at the wait's end, as L4 says


def test_a_dead_clients_locks_expire_when_its_queue_wait_ends(node: OneNode) -> None:
    """Found by review: a wake at the end of the wait asked the table again before seeing
    the wait was over, and the WAIT answer kept the transaction's locks LOCK_QUEUE_MAX_S
    longer: a client that died while queued blocked younger readers that much longer."""
    node.call(put(b"a", b"0"))
    node.call(put(b"b", b"0"))
    old, dead = tid(b"old"), tid(b"dead")
    assert node.call(read_for_update(b"a", old, 100)).get.error.code == kv.OK
    assert node.call(read_for_update(b"b", dead, 200)).get.error.code == kv.OK
    read_b_at = node.now
    queued: list[kv.Response] = []
    node.core.submit(read_for_update(b"a", dead, 200), queued.append)  # then its client dies
    while not queued:
        node.advance(0.3)
        node.call(read_for_update(b"a", old, 100))  # old's long body keeps its lock
    assert queued[0].get.error.code == kv.CONFLICT
    assert node.now < read_b_at + LOCK_TTL_S  # the wait ended before b's lock would
    node.advance(read_b_at + LOCK_TTL_S + 0.1 - node.now)
    assert node.core.hosts[1].locks.holder(b"b") is None


def test_a_holders_locks_last_while_its_prepare_waits_on_intents(node: OneNode) -> None:
    """Found by review: only a queued read for update kept its transaction's locks; its
    Prepare, parked on a younger transaction's intent (rule L2), did not, so after
    LOCK_TTL_S a younger reader took the lock, wrote, and the older transaction's commit
    was refused. A committing holder's locks now last until its Prepare is answered."""
    node.call(put(b"a", b"0"))
    node.call(put(b"e", b"0"))
    t, v, w = tid(b"t"), tid(b"v"), tid(b"w")
    hold_intent(node, v, b"e", priority=300)  # a younger transaction prepared on e
    start = node.now
    read = node.call(read_for_update(b"a", t, 100)).get  # t, the oldest, locks a
    assert read.error.code == kv.OK
    node.advance(LOCK_QUEUE_MAX_S)  # its read for update elsewhere queued that long
    prepared: list[kv.Response] = []
    request = prepare(t, reads=((b"a", read.version),), writes=(b"e",), priority=100)
    node.core.submit(request, prepared.append)
    younger: list[kv.Response] = []
    node.core.submit(read_for_update(b"a", w, 400), younger.append)
    while not prepared:  # t's Prepare waits for v's intent (L2), past a's LOCK_TTL_S
        node.advance(0.05)
        if not prepared:
            assert node.core.hosts[1].locks.holder(b"a") == t and younger == []
    assert node.now > start + LOCK_TTL_S


def test_a_freed_lock_goes_to_the_oldest_waiter_not_the_first(node: OneNode) -> None:
    node.call(read_for_update(b"apple", tid(b"holder"), priority=100))
    young: list[kv.Response] = []
    old: list[kv.Response] = []
    node.core.submit(read_for_update(b"apple", tid(b"young"), priority=300), young.append)
    node.advance(0.02)
    node.core.submit(read_for_update(b"apple", tid(b"old"), priority=200), old.append)
    node.advance(0.02)
    assert young == [] and old == []
    node.core.submit(resolve(tid(b"holder"), False), lambda _r: None)
    node.advance(0.02)
    assert len(old) == 1 and old[0].get.error.code == kv.OK
    assert young == [] and node.core.hosts[1].locks.holder(b"apple") == tid(b"old")


def test_parked_requests_are_not_checked_again_until_something_they_wait_for_changes(
    node: OneNode, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A queue of reads for update behind one holder is looked at again only when a group
    released something, an abort arrived, a role changed or a wait's deadline passed, not
    at every tick: with 64 clients on 4 hot keys the leader spent 15 % of its samples
    re-checking every parked request at every call (bench/README.md, "Session 35")."""
    node.call(put(b"apple", b"red"))
    node.call(read_for_update(b"apple", tid(b"holder"), priority=100))
    answers: dict[int, list[kv.Response]] = {}
    for i in range(20):
        answers[i] = []
        node.core.submit(read_for_update(b"apple", tid(b"w%d" % i), 200 + i), answers[i].append)
    node.advance(0.02)
    checks: list[str] = []  # one per parked request looked at
    real_check = node_module._ended_here

    def counted(host: Any, pending: Any) -> bool:
        checks.append(pending.kind)
        return real_check(host, pending)

    monkeypatch.setattr(node_module, "_ended_here", counted)
    node.advance(0.2)  # ticks, heartbeats; nothing released, no wait over
    assert checks == [] and all(a == [] for a in answers.values())
    # An abort of a waiter that holds no lock (nothing released) is still seen at once.
    node.core.submit(resolve(tid(b"w7"), False), lambda _r: None)
    node.advance(0.02)
    assert len(answers[7]) == 1 and answers[7][0].get.error.code == kv.CONFLICT
    assert checks.count("get") >= 19
    # The holder's release hands the lock to the oldest waiter, and no one else moves.
    node.core.submit(resolve(tid(b"holder"), False), lambda _r: None)
    node.advance(0.02)
    assert len(answers[0]) == 1 and answers[0][0].get.error.code == kv.OK
    assert all(a == [] for i, a in answers.items() if i not in (0, 7))
    # Their waits still end on time, refused as before.
    node.advance(LOCK_QUEUE_MAX_S + 0.1)
    assert all(
        len(a) == 1 and a[0].get.error.code == kv.CONFLICT
        for i, a in answers.items()
        if i not in (0, 7)
    )


def step_down_and_look(node: OneNode, after_s: float) -> None:
    """Group 1's replica stops leading, as a lost election would (no peers here to elect
    anyone), and the node looks at its parked requests `after_s` later."""
    node.core.hosts[1].replica._role = Role.FOLLOWER
    node.core.observe_time(node.now + after_s, node.wall + int(after_s * 1e9))
    node.core._wake_lock_waits()


def parked_write_refused_when_deposed(
    node: OneNode, value: bytes, after_s: float, parked_for_s: float = 0.0
) -> None:
    """A put of `value` parks on the intent on b"apple" (for `parked_for_s`), the replica
    stops leading and looks `after_s` later: the put is refused NOT_LEADER at once."""
    answers: list[kv.Response] = []
    node.core.submit(put(b"apple", value), answers.append)
    if parked_for_s:
        node.advance(parked_for_s)
    assert answers == [] and len(node.core._lock_waits) == 1
    step_down_and_look(node, after_s)
    assert len(answers) == 1 and answers[0].put.error.code == kv.NOT_LEADER


def test_a_write_parked_in_a_second_term_is_refused_when_that_term_ends(node: OneNode) -> None:
    """Found by review of the skipped scans: the last look saw the group not led here; it
    was led again, a write parked, and the replica stepped down before any look. Nothing
    released and the role was as last seen, but the write must be refused at once, not
    held until its wait ends (and carried into a later term)."""
    hold_intent(node, tid(b"t1"), b"apple", priority=1)
    parked_write_refused_when_deposed(node, b"x", 0.01, parked_for_s=0.05)
    node.core.hosts[1].replica._role = Role.LEADER  # elected again
    parked_write_refused_when_deposed(node, b"y", 0.02)  # deposed before any tick or cycle


def test_a_read_for_update_parked_after_its_abort_arrived_is_refused_at_once(
    node: OneNode,
) -> None:
    """Found by review of the skipped scans: a read for update took its lock, its abort
    arrived during its read index (a look saw it), then the read parked on another
    transaction's intent. It is refused at the next look, not when its wait ends."""
    hold_intent(node, tid(b"x"), b"apple", priority=1)
    other: list[kv.Response] = []
    node.core.submit(put(b"apple", b"w"), other.append)  # a waiter, so looks happen
    node.advance(0.02)
    assert other == []
    read: list[kv.Response] = []
    node.core.submit(read_for_update(b"apple", tid(b"y"), priority=300), read.append)
    assert read == [] and node.core.hosts[1].locks.holder(b"apple") == tid(b"y")
    node.core.submit(resolve(tid(b"y"), False), lambda _r: None)
    node.advance(0.05)
    assert len(read) == 1 and read[0].get.error.code == kv.CONFLICT, read
    assert "already aborted" in read[0].get.error.message


def test_a_lock_freed_by_a_commit_goes_to_its_waiter_before_a_newcomer() -> None:
    node = OneNode(max_clock_offset_s=0.0)  # no commit wait: the answer leaves in the cycle
    node.call(read_for_update(b"apple", tid(b"holder"), priority=100))
    waiter: list[kv.Response] = []
    node.core.submit(read_for_update(b"apple", tid(b"waiter"), priority=200), waiter.append)
    node.advance(0.02)
    committed: list[kv.Response] = []
    node.core.submit(one_phase(tid(b"holder"), writes=(b"apple",)), committed.append)
    while not committed:  # no tick between the answering cycle and the next request
        node.now += 0.001
        node.wall += 1_000_000
        node.core.tick(node.now, node.wall)
        while not committed and execute_cycle(node.core, node.disk, lambda g, m: None):
            pass
    # The commit's answer and the hand-over happen in the same cycle: a request arriving
    # right after it finds the lock taken by the waiter, not free.
    newcomer: list[kv.Response] = []
    node.core.submit(read_for_update(b"apple", tid(b"newcomer"), priority=300), newcomer.append)
    assert node.core.hosts[1].locks.holder(b"apple") == tid(b"waiter")
    node.advance(0.02)
    assert len(waiter) == 1 and waiter[0].get.value == b"w" and newcomer == []


def test_a_parked_write_is_refused_at_once_when_its_replica_stops_leading(
    node: OneNode,
) -> None:
    hold_intent(node, tid(b"t1"), b"apple", priority=1)
    parked_write_refused_when_deposed(node, b"x", 0.01, parked_for_s=0.05)


def test_a_prepare_whose_abort_arrived_first_is_refused_and_takes_no_intent(
    node: OneNode,
) -> None:
    hold_intent(node, tid(b"young"), b"apple", priority=300)
    answers: list[kv.Response] = []
    # An older Prepare waits for the younger holder (wait-die)...
    node.core.submit(prepare(tid(b"old"), writes=(b"apple",), priority=100), answers.append)
    node.advance(0.05)
    assert answers == []
    # ...and meanwhile its client gave up and the abort is delivered here.
    assert node.call(resolve(tid(b"old"), False)).resolve.error.code == kv.OK
    node.advance(0.02)
    assert len(answers) == 1 and answers[0].prepare.error.code == kv.CONFLICT
    assert "already aborted" in answers[0].prepare.error.message
    assert node.core.hosts[1].shard.prepared(tid(b"old")) is None


def t2_queued_behind_t1(node: OneNode) -> list[kv.Response]:
    """t1 holds apple's update lock; t2's read for update of it waits: its answers."""
    node.call(put(b"apple", b"red"))
    node.call(read_for_update(b"apple", tid(b"t1"), priority=100))
    answers: list[kv.Response] = []
    node.core.submit(read_for_update(b"apple", tid(b"t2"), priority=200), answers.append)
    node.advance(0.05)
    assert answers == []
    return answers


def test_a_read_for_update_whose_abort_arrived_first_takes_no_lock(node: OneNode) -> None:
    """Found by review: a client cancelled its queued read for update and sent the abort;
    when the holder committed, the leader still granted the lock to the aborted
    transaction, and the next reader for update waited LOCK_TTL_S for nobody."""
    answers = t2_queued_behind_t1(node)
    assert node.call(resolve(tid(b"t2"), False)).resolve.error.code == kv.OK
    node.advance(0.02)
    assert len(answers) == 1 and answers[0].get.error.code == kv.CONFLICT
    assert "already aborted" in answers[0].get.error.message
    assert node.call(one_phase(tid(b"t1"), writes=(b"apple",))).commit_one_phase.error.code == kv.OK
    node.advance(0.02)
    assert node.core.hosts[1].locks.holder(b"apple") is None
    third = node.call(read_for_update(b"apple", tid(b"t3"), priority=300)).get
    assert third.error.code == kv.OK and third.value == b"w"
    # A late copy of the aborted transaction's read is refused, not granted the lock.
    late = node.call(read_for_update(b"apple", tid(b"t2"), priority=200)).get
    assert late.error.code == kv.CONFLICT
    assert node.core.hosts[1].locks.holder(b"apple") == tid(b"t3")


@pytest.mark.parametrize(
    "its_end",
    [
        pytest.param(lambda: one_phase(tid(b"t2"), writes=(b"banana",)), id="one-phase commit"),
        pytest.param(lambda: prepare(tid(b"t2"), writes=(b"banana",)), id="prepare"),
        pytest.param(lambda: resolve(tid(b"t2"), True, commit_ts=5), id="resolve of a lock"),
    ],
)
def test_a_read_for_update_queued_when_its_transaction_committed_takes_no_lock(
    node: OneNode, its_end: Callable[[], kv.Request]
) -> None:
    """Found by a cancellation trial: a read for update given up on while it queued (or
    another task's), then the transaction committed without it: its one-phase commit or
    Prepare here, or, where it only locked, its Resolve(commit). The lock freed next went
    to the committed transaction, and the next reader for update waited LOCK_TTL_S."""
    answers = t2_queued_behind_t1(node)
    node.core.submit(its_end(), lambda _r: None)
    node.advance(0.02)
    assert node.call(one_phase(tid(b"t1"), writes=(b"apple",))).commit_one_phase.error.code == kv.OK
    node.advance(0.02)
    assert len(answers) == 1 and answers[0].get.error.code == kv.CONFLICT, answers
    assert "already committed or is committing" in answers[0].get.error.message
    assert node.core.hosts[1].locks.holder(b"apple") is None
    third = node.call(read_for_update(b"apple", tid(b"t3"), priority=300)).get
    assert third.error.code == kv.OK and third.value == b"w"


def test_the_notes_of_ended_transactions_are_forgotten_after_their_use(node: OneNode) -> None:
    """One note per transaction that prepared or committed here: kept while a request of
    it could still arrive (the request timeout and a lock wait), then dropped."""
    for i in range(3):
        node.call(one_phase(tid(b"t%d" % i), writes=(b"apple",)))
    node.call(resolve(tid(b"gone"), False))
    host = node.core.hosts[1]
    assert list(host.finished) == [tid(b"t0"), tid(b"t1"), tid(b"t2")]
    assert list(host.aborted) == [tid(b"gone")]
    node.advance(1.0)
    assert len(host.finished) == 3 and len(host.aborted) == 1
    node.advance(node.core._duties._timeout_s + LOCK_WAIT_MAX_S)
    assert not host.finished and not host.aborted


def one_phase_rw(txn: bytes, key: bytes, version: int, value: bytes) -> kv.Request:
    return kv.Request(
        commit_one_phase=kv.CommitOnePhaseRequest(
            header=header(),
            txn_id=txn,
            ts=1,
            reads=[kv.ReadItem(key=key, version=version)],
            writes=[kv.WriteItem(key=key, value=value)],
        )
    )


def test_a_wounded_one_phase_commit_is_refused_and_the_older_wounder_commits(
    node: OneNode,
) -> None:
    """Found by review: a wounded holder's one-phase commit went through, the older
    transaction that took its lock then met a stale read, and kept losing on every retry
    (starved) while wound-wait promised it would win."""
    node.call(put(b"apple", b"0"))
    young = node.call(read_for_update(b"apple", tid(b"young"), priority=300)).get
    node.advance(WOUND_GRACE_S * 2)  # the young holder's body runs past the grace
    old = node.call(read_for_update(b"apple", tid(b"old"), priority=100)).get
    assert node.core.hosts[1].locks.wound(tid(b"young")) == (b"apple", tid(b"old"))
    y = node.call(one_phase_rw(tid(b"young"), b"apple", young.version, b"y")).commit_one_phase
    assert y.error.code == kv.CONFLICT and "wounded" in y.error.message, y.error
    assert (y.error.conflict.key, y.error.conflict.other_txn) == (b"apple", tid(b"old"))
    o = node.call(one_phase_rw(tid(b"old"), b"apple", old.version, b"o")).commit_one_phase
    assert o.error.code == kv.OK, o.error
    # The refusal is in the log: a late copy meets the recorded abort (rule O1), even at a
    # leader that forgot the wound.
    node.core.hosts[1].locks.clear()
    late = node.call(one_phase_rw(tid(b"young"), b"apple", young.version, b"y")).commit_one_phase
    assert late.error.code == kv.CONFLICT and "aborted" in late.error.message, late.error
    assert node.call(get(b"apple")).get.value == b"o"


def test_a_wait_ends_in_time_to_answer_within_the_clients_time(node: OneNode) -> None:
    """The header says how long the client still waits: a read for update queued behind an
    older holder gets its Conflict (naming the key and the holder) within that time, not a
    bare deadline at the client (found by review: a 1.5 s client timeout met the node's 3 s
    queue bound)."""
    node.call(put(b"apple", b"red"))
    node.call(read_for_update(b"apple", tid(b"old"), priority=100))
    patient: list[kv.Response] = []
    node.core.submit(read_for_update(b"apple", tid(b"young"), priority=200), patient.append)
    hurried: list[kv.Response] = []
    request = read_for_update(b"apple", tid(b"younger"), priority=300)
    request.get.header.timeout_ms = 400
    node.core.submit(request, hurried.append)
    node.advance(0.25)
    assert patient == [], "no header: the node's own bounds"
    assert len(hurried) == 1 and hurried[0].get.error.code == kv.CONFLICT, hurried
    conflict = hurried[0].get.error.conflict
    assert (conflict.key, conflict.other_txn, conflict.phase) == (b"apple", tid(b"old"), "read")


def test_a_resent_committed_one_phase_commit_gets_its_commit_answer_after_a_wound(
    node: OneNode,
) -> None:
    """Found by review: a re-sent copy of a one-phase commit that had committed, meeting a
    wound recorded after the commit (a late read for update of the same transaction took
    the lock again), was answered UNAVAILABLE at every re-send instead of its commit."""
    node.call(put(b"apple", b"0"))
    young = node.call(read_for_update(b"apple", tid(b"young"), priority=300)).get
    first = node.call(one_phase_rw(tid(b"young"), b"apple", young.version, b"y")).commit_one_phase
    assert first.error.code == kv.OK and first.commit_ts > 0, first.error  # its answer lost
    # A leader that did not see the commit end (a new one) grants a late read for update
    # (this one refuses it: test_a_read_for_update_queued_when_its_transaction_committed...).
    node.core.hosts[1].finished.clear()
    late = node.call(read_for_update(b"apple", tid(b"young"), priority=300)).get
    assert late.error.code == kv.OK and node.core.hosts[1].locks.holder(b"apple") == tid(b"young")
    node.advance(WOUND_GRACE_S * 2)
    node.call(read_for_update(b"apple", tid(b"old"), priority=100))
    assert node.core.hosts[1].locks.wound(tid(b"young")) is not None
    again = node.call(one_phase_rw(tid(b"young"), b"apple", young.version, b"y")).commit_one_phase
    assert again.error.code == kv.OK, again.error  # rule O1: the recorded commit answers
    assert again.commit_ts == first.commit_ts
    assert node.call(get(b"apple")).get.value == b"y"


def test_a_plain_write_waits_for_the_update_lock_and_lands_after_the_holders_commit(
    node: OneNode,
) -> None:
    """Rule U4 (found by a user's review): a put of a key read for update used to go ahead,
    and the lock's holder then aborted at commit; SQL's SELECT FOR UPDATE blocks it."""
    node.call(put(b"apple", b"red"))
    assert node.call(read_for_update(b"apple", tid(b"t1"), priority=100)).get.value == b"red"
    answers: list[kv.Response] = []
    node.core.submit(put(b"apple", b"green"), answers.append)
    node.advance(0.2)
    assert answers == []  # parked behind t1's lock
    committed = node.call(one_phase(tid(b"t1"), writes=(b"apple",))).commit_one_phase
    assert committed.error.code == kv.OK  # the holder commits: the put did not overtake it
    node.advance(0.02)
    assert len(answers) == 1 and answers[0].put.error.code == kv.OK
    assert node.call(get(b"apple")).get.value == b"green"  # the put landed after it


def test_a_plain_write_behind_a_lock_whose_holder_vanished_goes_ahead_in_time(
    node: OneNode,
) -> None:
    node.call(read_for_update(b"apple", tid(b"t1"), priority=100))
    answers: list[kv.Response] = []
    node.core.submit(put(b"apple", b"green"), answers.append)
    node.advance(LOCK_WAIT_MAX_S * 0.9)
    assert answers == []
    node.advance(LOCK_WAIT_MAX_S * 0.2)
    assert len(answers) == 1 and answers[0].put.error.code == kv.OK


def test_a_parked_prepare_whose_abort_the_coordinator_group_recorded_is_refused_at_once(
    node: OneNode,
) -> None:
    """At the coordinator group the client's abort is a Decide, not a Resolve (the group's
    own part is resolved by the Decide itself): a Prepare parked there behind a younger
    holder stayed parked for the rest of its wait once the abort was recorded, holding its
    transaction's update locks (unwoundable: committing), so an older reader for update
    queued behind a transaction already aborted."""
    node.call(put(b"banana", b"0"))
    hold_intent(node, tid(b"young"), b"apple", priority=300)
    assert node.call(read_for_update(b"banana", tid(b"mid"), priority=200)).get.value == b"0"
    parked: list[kv.Response] = []
    mid = prepare(tid(b"mid"), writes=(b"apple", b"banana"), priority=200)
    node.core.submit(mid, parked.append)  # waits for the younger holder (wait-die)
    node.advance(0.05)
    assert parked == []
    # Its Prepare failed at group 2: the client records the abort at the coordinator (1).
    abort = kv.DecideRequest(
        header=header(1), txn_id=tid(b"mid"), participants=[1, 2], recover=True
    )
    decided = node.call(kv.Request(decide=abort)).decide
    assert decided.error.code == kv.OK and not decided.committed and not decided.pending
    reader: list[kv.Response] = []
    node.core.submit(read_for_update(b"banana", tid(b"old"), priority=100), reader.append)
    node.advance(0.1)
    assert len(parked) == 1 and parked[0].prepare.error.code == kv.CONFLICT, parked
    assert "already aborted" in parked[0].prepare.error.message
    assert len(reader) == 1 and reader[0].get.error.code == kv.OK, reader
    assert node.core.hosts[1].locks.holder(b"banana") == tid(b"old")


def test_a_parked_prepare_whose_abort_a_prevent_recorded_is_refused_at_once(
    node: OneNode,
) -> None:
    """As above at a participant: the coordinator's prevent round recorded that the
    transaction never prepares here (rule V1) while its Prepare waited."""
    hold_intent(node, tid(b"young"), b"apple", priority=300)
    parked: list[kv.Response] = []
    node.core.submit(prepare(tid(b"mid"), writes=(b"apple",), priority=200), parked.append)
    node.advance(0.05)
    assert parked == []
    prevent = kv.PreventRequest(header=header(1), txn_id=tid(b"mid"))
    answer = node.call(kv.Request(prevent=prevent)).prevent
    assert answer.error.code == kv.OK and not answer.prepared and not answer.unknown
    node.advance(0.05)
    assert len(parked) == 1 and parked[0].prepare.error.code == kv.CONFLICT, parked
    assert "already aborted" in parked[0].prepare.error.message


def test_a_plain_write_queued_behind_a_lock_does_not_overtake_the_next_holder(
    node: OneNode,
) -> None:
    """Rule U4 for the next holder too: when the lock was freed, a put parked behind it went
    ahead of the read for update queued for it, landed after that read, and the transaction
    that had just been granted the lock aborted at its commit (stale read)."""
    node.call(put(b"apple", b"0"))
    first = node.call(read_for_update(b"apple", tid(b"t1"), priority=100)).get
    reader: list[kv.Response] = []
    node.core.submit(read_for_update(b"apple", tid(b"t2"), priority=200), reader.append)
    node.advance(0.05)
    writer: list[kv.Response] = []
    node.core.submit(put(b"apple", b"p"), writer.append)
    node.advance(0.05)
    assert reader == [] and writer == []
    t1 = node.call(one_phase_rw(tid(b"t1"), b"apple", first.version, b"1")).commit_one_phase
    assert t1.error.code == kv.OK
    node.advance(0.05)
    assert len(reader) == 1 and reader[0].get.value == b"1"
    assert writer == []  # behind t2's lock now
    got = reader[0].get
    t2 = node.call(one_phase_rw(tid(b"t2"), b"apple", got.version, b"2")).commit_one_phase
    assert t2.error.code == kv.OK, t2.error
    node.advance(0.05)
    assert len(writer) == 1 and writer[0].put.error.code == kv.OK
    assert node.call(get(b"apple")).get.value == b"p"  # the put landed after t2's commit


def scan(start: bytes, end: bytes, limit: int, **kw: Any) -> kv.Request:
    return kv.Request(scan=kv.ScanRequest(header=header(), start=start, end=end, limit=limit, **kw))


def test_a_scan_cut_by_its_limit_does_not_wait_for_an_intent_past_its_last_key(
    node: OneNode,
) -> None:
    """Rule L1 for scans: a prepared write past the last key a limited scan returns is
    nothing the answer shows (the client reads on from just after that key, or records the
    range only up to it, rule P6). The scan waited for it, then was refused: a paging scan
    of a busy shard waited a second per page and failed while any transaction was prepared
    anywhere after its start (found by review)."""
    for key in (b"a1", b"a2", b"a3"):
        node.call(put(key, b"v"))
    hold_intent(node, tid(b"t1"), b"c9", priority=1)
    answers: list[kv.Response] = []
    node.core.submit(scan(b"a", b"d", limit=2), answers.append)
    node.advance(0.05)
    assert len(answers) == 1, "answered at once"
    assert answers[0].scan.error.code == kv.OK, answers[0].scan.error
    assert [item.key for item in answers[0].scan.items] == [b"a1", b"a2"]
    # The whole range (no cut): the intent is in what the answer covers, and it waits.
    waiting: list[kv.Response] = []
    node.core.submit(scan(b"a", b"d", limit=10), waiting.append)
    node.advance(0.05)
    assert waiting == []
    # So does a cut scan that passed over an insert in flight before its last key.
    hold_intent(node, tid(b"t2"), b"a15", priority=1)
    cut: list[kv.Response] = []
    node.core.submit(scan(b"a", b"d", limit=2), cut.append)
    node.advance(0.05)
    assert cut == []


@pytest.mark.parametrize("snapshot", [False, True])
def test_a_reverse_scan_cut_by_its_limit_does_not_wait_for_an_intent_below_its_last_key(
    node: OneNode, snapshot: bool
) -> None:
    """Rule L1 (and rule 3) for a reverse scan: it covers its range from its end down to
    the last (lowest) key it returns, so a prepared write below that key is nothing the
    answer shows, and one above it is."""
    for key in (b"b1", b"b2", b"b3"):
        node.call(put(key, b"v"))
    hold_intent(node, tid(b"t1"), b"a5", priority=1)

    def reverse_scan(limit: int) -> list[kv.Response]:
        kw: dict[str, Any] = {"reverse": True}
        if snapshot:  # at a timestamp above every prepare so far
            at = node.call(kv.Request(timestamp=kv.TimestampRequest())).timestamp.ts
            kw.update(snapshot=True, at_version=at)
        answers: list[kv.Response] = []
        node.core.submit(scan(b"a", b"d", limit=limit, **kw), answers.append)
        node.advance(0.05)
        return answers

    answers = reverse_scan(2)
    assert len(answers) == 1, "answered at once"
    assert answers[0].scan.error.code == kv.OK, answers[0].scan.error
    assert [item.key for item in answers[0].scan.items] == [b"b3", b"b2"]
    assert answers[0].scan.reverse  # echoed: the client refuses an answer that is not
    assert reverse_scan(10) == []  # the whole range: the intent is in what it covers
    hold_intent(node, tid(b"t2"), b"b25", priority=1)
    cut = reverse_scan(2)
    assert cut == []  # an insert in flight between the keys it returns


def test_a_reverse_scan_cut_by_the_byte_budget_covers_down_to_its_last_key(
    node: OneNode, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The byte budget cuts a reverse answer as its limit does (review): b4, b3 then `more`;
    an intent below b3 is nothing it shows, one between its keys holds it up."""
    import shard.answers
    import shard.lock_wait

    for module in (shard.answers, shard.lock_wait):
        monkeypatch.setattr(module, "MAX_SCAN_RESPONSE_BYTES", 8)
    for key in (b"b1", b"b2", b"b3", b"b4"):
        node.call(put(key, b"vv"))
    hold_intent(node, tid(b"t1"), b"b15", priority=1)
    answers: list[kv.Response] = []
    node.core.submit(scan(b"a", b"d", 10, reverse=True), answers.append)
    node.advance(0.05)
    assert len(answers) == 1 and answers[0].scan.error.code == kv.OK, answers
    assert [i.key for i in answers[0].scan.items] == [b"b4", b"b3"] and answers[0].scan.more
    hold_intent(node, tid(b"t2"), b"b35", priority=1)
    waiting: list[kv.Response] = []
    node.core.submit(scan(b"a", b"d", 10, reverse=True), waiting.append)
    node.advance(0.05)
    assert waiting == []


def test_a_lock_released_by_a_refused_prepare_goes_to_its_waiter_without_a_tick(
    node: OneNode,
) -> None:
    """A Prepare refused on arrival releases its transaction's update locks (rule U3); the
    reader queued for one was woken only by the next tick (up to 50 ms on a quiet node)."""
    node.call(put(b"apple", b"red"))
    assert node.call(read_for_update(b"apple", tid(b"t1"), priority=100)).get.value == b"red"
    queued: list[kv.Response] = []
    node.core.submit(read_for_update(b"apple", tid(b"t2"), priority=200), queued.append)
    node.advance(0.05)
    assert queued == []
    refused: list[kv.Response] = []
    bad = prepare(tid(b"t1"), writes=(b"apple",), priority=100)
    bad.prepare.writes.add(key=b"x" * 5000, value=b"v")  # over the key limit
    node.core.submit(bad, refused.append)
    assert refused and refused[0].prepare.error.code == kv.LIMIT_EXCEEDED, refused
    while execute_cycle(node.core, node.disk, lambda g, m: None):  # no tick
        pass
    assert len(queued) == 1 and queued[0].get.value == b"red", queued
    assert node.core.hosts[1].locks.holder(b"apple") == tid(b"t2")


def test_a_snapshot_scan_cut_by_its_limit_does_not_wait_for_an_intent_past_its_last_key(
    node: OneNode,
) -> None:
    """Rule 3 with rule L1's range: a snapshot scan waits for a prepared write below its
    timestamp only in the part of its range its answer covers (it waited for one anywhere
    in the range, so a paging snapshot scan waited on every page for a transaction pages
    ahead)."""
    for key in (b"a1", b"a2", b"a3"):
        node.call(put(key, b"v"))
    hold_intent(node, tid(b"t1"), b"c9", priority=1)
    at = node.call(kv.Request(timestamp=kv.TimestampRequest())).timestamp.ts
    answers: list[kv.Response] = []
    node.core.submit(scan(b"a", b"d", limit=2, snapshot=True, at_version=at), answers.append)
    node.advance(0.05)
    assert len(answers) == 1, "answered at once"
    assert [item.key for item in answers[0].scan.items] == [b"a1", b"a2"]
    waiting: list[kv.Response] = []
    node.core.submit(scan(b"a", b"d", limit=10, snapshot=True, at_version=at), waiting.append)
    node.advance(0.05)
    assert waiting == []  # the whole range: the intent may commit below `at`


# ---------------------------------------------------------------- behind a proven commit


def resolve_held(node: OneNode, txn: bytes, commit_ts: int) -> list[kv.Response]:
    """Submit `txn`'s Resolve(commit) with its proof, which the leader holds (node rule 8);
    the list its answer lands in once it is applied."""
    resolved: list[kv.Response] = []
    node.core.submit(resolve(txn, True, commit_ts), resolved.append)
    return resolved


def submit_and_step(node: OneNode, request: kv.Request) -> list[kv.Response]:
    """Submit `request` and run the node for 2 ms, well inside RESOLVE_HOLD_S."""
    answers: list[kv.Response] = []
    node.core.submit(request, answers.append)
    node.advance(0.002, step=0.001)
    return answers


def test_a_read_meeting_a_proven_commit_is_answered_before_its_resolve_is_applied(
    node: OneNode,
) -> None:
    """Rule 14: the read gets what the Resolve will write (the value at commit_ts) without
    waiting for the Resolve's own Paxos round; the Resolve stays held for its ride."""
    node.call(put(b"apple", b"red"))
    prepare_ts = hold_intent(node, tid(b"t1"), b"apple", priority=1)
    resolved = resolve_held(node, tid(b"t1"), prepare_ts)
    shard = node.core.hosts[1].shard
    applied = shard.applied_index
    answers = submit_and_step(node, get(b"apple"))
    assert len(answers) == 1 and answers[0].get.value == b"v"
    assert answers[0].get.version == prepare_ts
    assert resolved == [] and shard.applied_index == applied  # still held, nothing applied
    node.advance(0.05)
    assert len(resolved) == 1 and resolved[0].resolve.error.code == kv.OK
    after = node.call(get(b"apple")).get
    assert (after.value, after.version) == (b"v", prepare_ts)  # what the apply wrote
    assert len(node.core.hosts[1].proven) == 0  # forgotten once its Resolve ended


def test_a_read_parked_on_an_intent_is_answered_when_the_commit_is_proven(
    node: OneNode,
) -> None:
    prepare_ts = hold_intent(node, tid(b"t1"), b"apple", priority=1)
    answers: list[kv.Response] = []
    node.core.submit(get(b"apple"), answers.append)
    node.advance(0.05)
    assert answers == []
    resolved = resolve_held(node, tid(b"t1"), prepare_ts)
    node.advance(0.002, step=0.001)
    assert len(answers) == 1 and answers[0].get.value == b"v"
    assert answers[0].get.version == prepare_ts
    assert resolved == []  # the read did not wait for it: it is still held


def test_an_older_prepare_behind_a_proven_commit_rides_in_its_resolves_slot(
    node: OneNode,
) -> None:
    """Wait-die would park an older Prepare behind the younger holder until its Resolve's
    own round; with the commit proven it goes at once, the held Resolve just ahead of it in
    the same slot, so it finds the intent resolved. (A Prepare that read the key through
    the intent never waited: its read version is not the applied one yet, rule L3.)"""
    prepare_ts = hold_intent(node, tid(b"young"), b"apple", priority=300)
    resolved = resolve_held(node, tid(b"young"), prepare_ts)
    shard = node.core.hosts[1].shard
    applied = shard.applied_index
    answers = submit_and_step(node, prepare(tid(b"old"), writes=(b"apple",), priority=100))
    assert len(answers) == 1 and answers[0].prepare.error.code == kv.OK, answers
    assert len(resolved) == 1 and resolved[0].resolve.error.code == kv.OK
    assert shard.applied_index == applied + 1  # one slot for both


def test_a_plain_write_behind_a_proven_commit_rides_in_its_resolves_slot(node: OneNode) -> None:
    prepare_ts = hold_intent(node, tid(b"t1"), b"apple", priority=1)
    resolved = resolve_held(node, tid(b"t1"), prepare_ts)
    shard = node.core.hosts[1].shard
    applied = shard.applied_index
    answers = submit_and_step(node, put(b"apple", b"green"))
    assert len(answers) == 1 and answers[0].put.version > prepare_ts, answers
    assert len(resolved) == 1 and shard.applied_index == applied + 1
    assert node.call(get(b"apple")).get.value == b"green"


def test_a_proof_over_other_participants_is_not_read_through(node: OneNode) -> None:
    """Participant rule R7: a Resolve naming other participants than the PREPARE leaves the
    intent in place when applied, so a read may not take its value (it waits, as before)."""
    prepare_ts = hold_intent(node, tid(b"t1"), b"apple", priority=1)
    other = vouched(
        kv.ResolveRequest(header=header(), txn_id=tid(b"t1"), commit=True, commit_ts=prepare_ts),
        participants=(1, 3),
    )
    node.core.submit(kv.Request(resolve=other), lambda response: None)
    answers: list[kv.Response] = []
    node.core.submit(get(b"apple"), answers.append)
    node.advance(0.1)
    assert answers == []
    assert [i.txn_id for i in node.core.hosts[1].shard.intents_on(b"apple")] == [tid(b"t1")]


def test_a_proven_delete_is_waited_for_not_read_through(node: OneNode) -> None:
    node.call(put(b"apple", b"red"))
    deleting = prepare(tid(b"t1"), writes=(b"apple",), priority=1)
    deleting.prepare.writes[0].delete = True
    deleting.prepare.writes[0].ClearField("value")
    prepare_ts = node.call(deleting).prepare.prepare_ts
    resolved = resolve_held(node, tid(b"t1"), prepare_ts)
    answers = submit_and_step(node, get(b"apple"))
    assert len(answers) == 1 and not answers[0].get.found
    assert len(resolved) == 1  # the read waited for the Resolve to be applied


def test_a_wait_for_an_update_lock_leaves_a_held_resolve_for_its_ride(node: OneNode) -> None:
    """Node rule 8: a held Resolve goes at once only for a request parked on an intent.
    A read queued for an update lock needs no Resolve: the lock's holder goes on, and its
    Prepare takes the held Resolve along in one slot (under a hot key, every transaction
    paid the Resolve's own round while others queued for the lock)."""
    prepare_ts = hold_intent(node, tid(b"t1"), b"apple", priority=1)
    assert node.call(read_for_update(b"banana", tid(b"t2"), priority=100)).get.error.code == kv.OK
    queued = submit_and_step(node, read_for_update(b"banana", tid(b"t3"), priority=300))
    assert queued == [] and len(node.core._lock_waits) == 1
    resolved = resolve_held(node, tid(b"t1"), prepare_ts)
    node.advance(0.006, step=0.001)
    assert resolved == []  # still held, 6 ms in (RESOLVE_HOLD_S is 10 ms)
    node.advance(0.01)
    assert len(resolved) == 1  # its hold ran out


def test_a_write_parked_on_an_intent_goes_behind_the_resolve_that_proves_it(
    node: OneNode,
) -> None:
    """Found by review: the proof woke the parked put before the Resolve was held, so the
    put was proposed alone, met the intent at its apply and was refused (rule W1)."""
    prepare_ts = hold_intent(node, tid(b"t1"), b"apple", priority=1)
    answers: list[kv.Response] = []
    node.core.submit(put(b"apple", b"green"), answers.append)
    node.advance(0.05)
    assert answers == []  # parked on the intent
    resolved = resolve_held(node, tid(b"t1"), prepare_ts)
    node.advance(0.05)
    assert len(resolved) == 1 and resolved[0].resolve.error.code == kv.OK
    assert len(answers) == 1 and answers[0].put.error.code == kv.OK, answers
    assert node.call(get(b"apple")).get.value == b"green"


def test_an_older_prepare_parked_on_an_intent_goes_behind_the_resolve_that_proves_it(
    node: OneNode,
) -> None:
    prepare_ts = hold_intent(node, tid(b"young"), b"apple", priority=300)
    answers: list[kv.Response] = []
    node.core.submit(prepare(tid(b"old"), writes=(b"apple",), priority=100), answers.append)
    node.advance(0.05)
    assert answers == []  # the older one waits for the younger holder (wait-die)
    resolve_held(node, tid(b"young"), prepare_ts)
    node.advance(0.05)
    assert len(answers) == 1 and answers[0].prepare.error.code == kv.OK, answers


def test_a_stale_ok_read_at_a_version_is_not_read_through(node: OneNode) -> None:
    """Found by review: only linearizable gets read through; a stale_ok get at a version
    below the commit was answered with the commit's value."""
    old = node.call(put(b"apple", b"red")).put.version
    prepare_ts = hold_intent(node, tid(b"t1"), b"apple", priority=1)
    resolve_held(node, tid(b"t1"), prepare_ts)
    answers = submit_and_step(node, get(b"apple", stale_ok=True, at_version=old))
    assert len(answers) == 1
    assert answers[0].get.error.code == kv.CONFLICT, answers  # as before rule 14


def test_a_read_through_shows_the_commit_timestamp_not_the_prepare_timestamp(
    node: OneNode,
) -> None:
    """A 2-shard commit's timestamp is the largest prepare_ts, often another group's."""
    prepare_ts = hold_intent(node, tid(b"t1"), b"apple", priority=1)
    commit_ts = prepare_ts + 1000
    resolve_held(node, tid(b"t1"), commit_ts)
    answers = submit_and_step(node, get(b"apple"))
    assert len(answers) == 1 and answers[0].get.version == commit_ts, answers


def test_a_read_through_answers_with_the_deadline_the_commit_will_write(node: OneNode) -> None:
    answer = node.call(prepare(tid(b"t1"), writes=(b"apple",), priority=1, ttl_ms=700)).prepare
    assert answer.error.code == kv.OK, answer.error
    commit_ts = answer.prepare_ts + 1000
    resolved = resolve_held(node, tid(b"t1"), commit_ts)
    got = submit_and_step(node, get(b"apple"))[0].get
    assert (got.value, got.version) == (b"v", commit_ts) and resolved == []
    assert got.expires_at == deadline_of(commit_ts, 700)
    node.advance(0.05)
    assert len(resolved) == 1 and resolved[0].resolve.error.code == kv.OK
    assert node.call(get(b"apple")).get.expires_at == deadline_of(commit_ts, 700)  # applied


def test_a_refused_copy_of_a_resolve_leaves_the_held_ones_proof(node: OneNode) -> None:
    """The proof ends with the request that brought it, not with any other request for the
    transaction: here a copy whose commit_ts is 0, refused at admission."""
    prepare_ts = hold_intent(node, tid(b"t1"), b"apple", priority=1)
    resolved = resolve_held(node, tid(b"t1"), prepare_ts)
    refused = submit_and_step(node, resolve(tid(b"t1"), True, 0))
    assert refused and refused[0].resolve.error.code == kv.INVALID_ARGUMENT
    answers = submit_and_step(node, get(b"apple"))
    assert len(answers) == 1 and answers[0].get.value == b"v", answers
    assert resolved == []  # the read did not need it applied


def test_a_snapshot_get_at_or_above_a_proven_commit_reads_it_through(node: OneNode) -> None:
    """Rules 3 and 14: a snapshot read at T waited for every intent prepared at or below T;
    a proven commit at or below T is decided, and the read shows its value at once."""
    node.call(put(b"apple", b"red"))
    prepare_ts = hold_intent(node, tid(b"t1"), b"apple", priority=1)
    resolved = resolve_held(node, tid(b"t1"), prepare_ts)
    answers = submit_and_step(node, get(b"apple", snapshot=True, at_version=prepare_ts + 1))
    assert len(answers) == 1, answers
    assert (answers[0].get.value, answers[0].get.version) == (b"v", prepare_ts)
    assert resolved == []  # still held: the read did not wait for it


def test_a_snapshot_get_below_a_proven_commit_reads_past_it(node: OneNode) -> None:
    """Prepared at or below T, committed above it: the read at T never shows it."""
    old = node.call(put(b"apple", b"red")).put.version
    prepare_ts = hold_intent(node, tid(b"t1"), b"apple", priority=1)
    resolved = resolve_held(node, tid(b"t1"), prepare_ts + 1000)
    answers = submit_and_step(node, get(b"apple", snapshot=True, at_version=prepare_ts + 10))
    assert len(answers) == 1, answers
    assert (answers[0].get.value, answers[0].get.version) == (b"red", old)
    assert resolved == []


def test_a_snapshot_scan_over_a_proven_commit_releases_the_held_resolve(node: OneNode) -> None:
    """A scan does not read through (it would have to merge the intents' values): it waits,
    and its wait sends the held Resolve at once (rule 8)."""
    prepare_ts = hold_intent(node, tid(b"t1"), b"apple", priority=1)
    resolved = resolve_held(node, tid(b"t1"), prepare_ts)
    at = prepare_ts + 1
    answers = submit_and_step(node, scan(b"a", b"b", limit=10, snapshot=True, at_version=at))
    node.advance(0.003, step=0.001)  # well before the hold would run out
    assert len(resolved) == 1 and resolved[0].resolve.error.code == kv.OK
    assert len(answers) == 1 and [i.value for i in answers[0].scan.items] == [b"v"]


def test_a_snapshot_get_over_a_proven_delete_at_or_below_it_waits(node: OneNode) -> None:
    """The read shows no value then, and what it shows depends on the versions before: it
    waits for the Resolve (sent at once by the wait, rule 8)."""
    node.call(put(b"apple", b"red"))
    deleting = prepare(tid(b"t1"), writes=(b"apple",), priority=1)
    deleting.prepare.writes[0].delete = True
    deleting.prepare.writes[0].ClearField("value")
    prepare_ts = node.call(deleting).prepare.prepare_ts
    resolved = resolve_held(node, tid(b"t1"), prepare_ts)
    answers = submit_and_step(node, get(b"apple", snapshot=True, at_version=prepare_ts + 1))
    node.advance(0.05)
    assert len(answers) == 1 and len(resolved) == 1
    assert not answers[0].get.found, answers[0].get


def test_a_backlogged_snapshot_get_whose_proof_is_gone_is_refused_not_misread(
    node: OneNode,
) -> None:
    """Found by review: a snapshot get judged safe on a proof, then left in the read backlog
    (the wake's read budget was spent) while the replica stopped leading, read the store
    alone and missed the commit. It is refused, retryable, instead."""
    node.call(put(b"apple", b"red"))
    prepare_ts = hold_intent(node, tid(b"t1"), b"apple", priority=1)
    resolve_held(node, tid(b"t1"), prepare_ts)
    answers: list[kv.Response] = []
    node.core.submit(get(b"apple", snapshot=True, at_version=prepare_ts + 1), answers.append)
    node.core._read_bytes_left = 0  # other reads spent this wake's budget
    while execute_cycle(node.core, node.disk, lambda g, m: None):
        pass
    assert answers == []  # judged safe, left for the next wake
    node.core.hosts[1].replica._role = Role.FOLLOWER  # a lost election
    while execute_cycle(node.core, node.disk, lambda g, m: None):
        pass  # the proof is cleared
    node.core.tick(node.now, node.wall)  # the next wake serves the backlog
    while execute_cycle(node.core, node.disk, lambda g, m: None):
        pass
    assert len(answers) == 1
    got = answers[0].get
    assert got.error.code == kv.UNAVAILABLE or (got.value, got.version) == (b"v", prepare_ts)
    assert got.value != b"red", got


def test_a_snapshot_get_below_the_gc_horizon_is_refused_over_a_proven_commit(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Found by review: the read through a proven commit skipped the GC horizon check that
    every read at a version makes."""
    monkeypatch.setattr(node_module, "RESOLVE_HOLD_S", 60.0)  # the proof outlives the GC pass
    node = OneNode(mvcc_retention_s=1.0, gc_interval_s=0.5)
    prepare_ts = hold_intent(node, tid(b"t1"), b"apple", priority=1)
    resolve_held(node, tid(b"t1"), prepare_ts)
    node.advance(1.5)
    node.call(put(b"zebra", b"z", group=2))  # a cycle that applies something runs the GC
    assert node.core.hosts[1].shard.gc_horizon > prepare_ts + 1
    old = node.call(get(b"apple", snapshot=True, at_version=prepare_ts + 1)).get
    assert old.error.code == kv.SNAPSHOT_TOO_OLD and "garbage-collected" in old.error.message


def test_a_snapshot_scan_below_the_gc_horizon_over_an_old_intent_is_refused() -> None:
    """Found by review: a snapshot scan parked behind a prepared write intent is judged by
    `snapshot_safe`, whose scan at the read's timestamp raised VersionCompacted outside
    serve_read's error handling once the GC horizon was above it: the node loop crashed
    (and the client's retry crashed the next leader). The same read as a get was refused."""
    node = OneNode(mvcc_retention_s=1.0, gc_interval_s=0.5)
    prepare_ts = hold_intent(node, tid(b"t1"), b"apple", priority=1)  # stays in doubt
    node.advance(1.5)
    node.call(put(b"zebra", b"z", group=2))  # an apply cycle runs the GC
    assert node.core.hosts[1].shard.gc_horizon > prepare_ts + 1
    answer = node.call(scan(b"a", b"m", limit=10, snapshot=True, at_version=prepare_ts + 1))
    assert answer.scan.error.code == kv.SNAPSHOT_TOO_OLD, answer
    assert "garbage-collected" in answer.scan.error.message


def test_a_parked_snapshot_scan_the_gc_horizon_passes_is_refused() -> None:
    """The same crash for a snapshot scan that was legal when it arrived and parked behind
    a prepared write intent: a GC pass raised the horizon above its timestamp while it
    waited (found by review)."""
    node = OneNode(mvcc_retention_s=1.0, gc_interval_s=0.5)
    prepare_ts = hold_intent(node, tid(b"t1"), b"apple", priority=1)  # stays in doubt
    answers: list[kv.Response] = []
    node.core.submit(
        scan(b"a", b"m", limit=10, snapshot=True, at_version=prepare_ts + 1), answers.append
    )
    node.advance(0.05)
    assert answers == []  # parked behind the intent (rule 3)
    assert node.core.hosts[1].shard.gc_horizon <= prepare_ts + 1  # legal when it arrived
    node.advance(1.5)  # GC passes raise the horizon while it waits (the request has 5 s)
    node.call(put(b"zebra", b"z", group=2))
    assert len(answers) == 1
    assert answers[0].scan.error.code == kv.SNAPSHOT_TOO_OLD, answers
    assert "garbage-collected" in answers[0].scan.error.message


def test_a_snapshot_get_below_the_gc_horizon_over_an_intent_is_refused_at_once() -> None:
    """A snapshot get below the GC horizon is refused as garbage-collected without first
    waiting for a prepared write intent on its key (which may stay in doubt for seconds):
    no answer at that timestamp could ever be served. It waited before."""
    node = OneNode(mvcc_retention_s=1.0, gc_interval_s=0.5)
    prepare_ts = hold_intent(node, tid(b"t1"), b"apple", priority=1)  # stays in doubt
    node.advance(1.5)
    node.call(put(b"zebra", b"z", group=2))  # an apply cycle runs the GC
    assert node.core.hosts[1].shard.gc_horizon > prepare_ts + 1
    answers: list[kv.Response] = []
    node.core.submit(get(b"apple", snapshot=True, at_version=prepare_ts + 1), answers.append)
    node.advance(0.05)
    assert len(answers) == 1, "parked behind the intent"
    assert answers[0].get.error.code == kv.SNAPSHOT_TOO_OLD, answers
    assert "garbage-collected" in answers[0].get.error.message


def test_a_short_queue_wait_does_not_cut_the_life_of_the_locks_held() -> None:
    """MID holds "a" (expires at LOCK_TTL_S) and queues for "b", held by the older OLD,
    with a short wait (its request's deadline is near: rule L4 halves the remaining time).
    Its lock on "a" still lives its whole TTL: a younger reader must not take it when the
    short wait ends, or MID's later commit is refused for a lock it was promised."""
    table = LockTable()
    assert table.acquire(b"b", OLD, 0.0) is Grant.GRANTED
    assert table.acquire(b"a", MID, 0.0) is Grant.GRANTED
    assert table.acquire(b"b", MID, 0.1, queue_until=0.3) is Grant.WAIT
    table.expire(0.5)  # past the wait's end, well within a's life
    assert table.holder(b"a") == tid(b"mid")
    assert table.acquire(b"a", YOUNG, 0.5) is Grant.WAIT
    table.expire(LOCK_TTL_S)
    assert table.holder(b"a") is None


def _touch(key: bytes, version: int) -> kv.Request:
    return kv.Request(
        cas=kv.CasRequest(
            header=header(), key=key, expected_version=version, touch=True, ttl_ms=5000
        )
    )


def test_a_touch_passes_read_intents_and_scanned_ranges_not_write_intents(
    node: OneNode,
) -> None:
    """Participant rule W1 for a lease's renewal: a prepared transaction that read the lease
    key (an in-doubt fenced write) or scanned over it neither parks nor refuses a touch,
    which keeps the value and version it saw (found by an application trial: a frozen
    coordinator's in-doubt fenced writes cost the lock's holder its lease); any other
    single-key write still waits, and a write intent still holds the touch."""
    lease = node.call(
        kv.Request(
            cas=kv.CasRequest(
                header=header(), key=b"lease", expect_absent=True, new_value=b"me", ttl_ms=1000
            )
        )
    ).cas
    assert lease.succeeded
    fenced = prepare(tid(b"fenced"), reads=((b"lease", lease.version),), priority=200)
    assert node.call(fenced).prepare.error.code == kv.OK
    scanner = prepare(tid(b"scanner"), reads=((b"lease", lease.version),), priority=200)
    scanner.prepare.read_ranges.append(kv.KeyRange(start=b"l", end=b"m"))
    assert node.call(scanner).prepare.error.code == kv.OK
    shard = node.core.hosts[1].shard
    ages = {tid(b"fenced"): (200, tid(b"fenced")), tid(b"scanner"): (200, tid(b"scanner"))}

    assert not is_blocked(shard, ages, _touch(b"lease", lease.version))
    assert is_blocked(shard, ages, put(b"lease", b"other"))
    renewed = node.call(_touch(b"lease", lease.version)).cas
    assert renewed.error.code == kv.OK and renewed.succeeded, renewed
    assert renewed.version == lease.version and renewed.expires_at > lease.expires_at
    # The apply agrees (rule W1 in the state machine), for a touch proposed as it is.
    replaced = kv.Request(
        cas=kv.CasRequest(
            header=header(), key=b"lease", expected_version=lease.version, new_value=b"x"
        )
    )
    answers: list[kv.Response] = []
    node.core.submit(replaced, answers.append)
    node.advance(LOCK_WAIT_MAX_S * 1.2)
    assert answers and answers[0].cas.error.code == kv.CONFLICT  # waited, then refused
    # A write intent on the key holds a touch as it holds any write.
    other = node.call(put(b"kite", b"v")).put.version
    hold_intent(node, tid(b"writer"), b"kite", priority=300)
    ages[tid(b"writer")] = (300, tid(b"writer"))
    assert other and is_blocked(shard, ages, _touch(b"kite", other))
    answers.clear()
    node.core.submit(_touch(b"kite", other), answers.append)
    node.advance(LOCK_WAIT_MAX_S * 1.2)
    assert answers and answers[0].cas.error.code == kv.CONFLICT


def _claim(key: bytes, **condition: Any) -> kv.Request:
    return kv.Request(cas=kv.CasRequest(header=header(), key=key, new_value=b"me", **condition))


def test_a_compare_and_set_bound_to_fail_passes_read_intents(node: OneNode) -> None:
    """Rule W1 (found by an application trial): a claim of a held lease that readers kept
    reading met a Conflict after a second's wait, where it is a failed compare-and-set: it
    writes nothing, so read intents do not hold it, at the leader or at the apply. One
    whose condition holds still meets them, and a write intent holds either."""
    lease = node.call(put(b"lease", b"holder")).put
    reader = prepare(tid(b"reader"), reads=((b"lease", lease.version),), priority=200)
    assert node.call(reader).prepare.error.code == kv.OK
    shard = node.core.hosts[1].shard
    ages = {tid(b"reader"): (200, tid(b"reader"))}
    claim = _claim(b"lease", expect_absent=True)
    assert not is_blocked(shard, ages, claim)
    failed = node.call(claim, settle=0.01).cas
    assert failed.error.code == kv.OK and not failed.succeeded
    assert failed.current_value == b"holder" and failed.current_version == lease.version
    takeover = _claim(b"lease", expected_version=lease.version)
    assert is_blocked(shard, ages, takeover)
    answers: list[kv.Response] = []
    node.core.submit(takeover, answers.append)
    node.advance(LOCK_WAIT_MAX_S * 1.2)
    assert answers and answers[0].cas.error.code == kv.CONFLICT  # it would write: refused
    assert node.call(get(b"lease")).get.value == b"holder"
    node.call(put(b"kite", b"v"))
    hold_intent(node, tid(b"writer"), b"kite", priority=300)
    ages[tid(b"writer")] = (300, tid(b"writer"))
    assert is_blocked(shard, ages, _claim(b"kite", expect_absent=True))  # may become absent


def test_a_touch_is_not_parked_behind_a_read_for_update(node: OneNode) -> None:
    """Rule U4 spares a touch (found by review): the holder's own read for update of its
    lease key kept its renewal parked; the touch keeps what the holder read."""
    lease = node.call(
        kv.Request(
            cas=kv.CasRequest(
                header=header(), key=b"lease", expect_absent=True, new_value=b"me", ttl_ms=1000
            )
        )
    ).cas
    assert node.call(read_for_update(b"lease", tid(b"t1"), priority=100)).get.value == b"me"
    answers: list[kv.Response] = []
    node.core.submit(_touch(b"lease", lease.version), answers.append)
    node.advance(LOCK_WAIT_MAX_S * 0.1)
    assert answers and answers[0].cas.succeeded, answers
    assert answers[0].cas.version == lease.version
    # A plain write still waits for the lock (U4).
    node.core.submit(put(b"lease", b"other"), answers.append)
    node.advance(LOCK_WAIT_MAX_S * 0.1)
    assert len(answers) == 1
