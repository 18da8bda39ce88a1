"""Lock-wait rule L5 (shard.lock_wait, shard.due_keys): a Prepare takes no new intent on a
key whose value is due for expiry. It waits for the Expire when it is older than every
transaction holding the key, is refused at once when younger (wait-die), and is refused
when its wait runs out. Found by review: a wait that simply ended let the read intents
overlap again (one slow reader, or readers with a short deadline, kept the value for ever),
and a wait regardless of age closed wait cycles through the Expire."""

from __future__ import annotations

import math
from typing import Any

import pytest

from router import kv_pb2 as kv
from shard import due_keys
from shard.codec import encode_put
from shard.due_keys import DueKeys
from shard.expiry_duty import EXPIRES_PER_CHECK, KeyExpiry
from tests.unit.shard.test_key_ttl import MS, T0, _Host, ttl_put
from tests.unit.shard.test_lock_waits import prepare
from tests.unit.shard.test_node_core import OneNode, header, put, resolve_request, tid, vouched
from tests.unit.shard.test_shard_txn import GROUP
from tests.unit.shard.test_shard_txn import Node as TxnNode
from txn.records import Prepare, ReadItem


def prep(txn: bytes, group: int, *, priority: int, **fields: Any) -> kv.Request:
    """A Prepare in `group` whose age is `priority` (its timestamp too)."""
    return prepare(txn, group=group, priority=priority, ts=priority, **fields)


def abort(txn: bytes, group: int) -> kv.Request:
    return kv.Request(
        resolve=vouched(kv.ResolveRequest(header=header(group), txn_id=txn, commit=False))
    )


def submit(node: OneNode, request: kv.Request) -> list[kv.Response]:
    answers: list[kv.Response] = []
    node.core.submit(request, answers.append)
    return answers


def until(node: OneNode, answers: list[kv.Response], within_s: float) -> float:
    """Advance until `answers` has one; how long that took (fails past `within_s`)."""
    started = node.now
    while not answers:
        assert node.now - started < within_s, f"no answer within {within_s} s"
        node.advance(0.005, step=0.005)
    return node.now - started


def due_lease(node: OneNode, key: bytes = b"lease", group: int = 1) -> tuple[int, bytes]:
    """A 0.2 s lease in `group` that the holder `h-<key>` read (a read intent) and then
    stopped renewing, left past its deadline: (its version, the holder's txn id)."""
    written = node.call(
        kv.Request(put=kv.PutRequest(header=header(group), key=key, value=b"a", ttl_ms=200))
    ).put
    assert written.error.code == kv.OK
    holder = tid(b"h-" + key)
    read = prep(holder, group, reads=((key, written.version),), priority=100)
    assert node.call(read, settle=0.01).prepare.error.code == kv.OK
    node.advance(0.35)  # past the deadline: the duty found it due and passed over it
    assert len(node.core.hosts[group].due) == 1
    assert node.core.hosts[group].shard.get(key) is not None
    return written.version, holder


def test_an_older_reader_waits_for_the_expire_and_a_younger_one_is_refused_at_once() -> None:
    """Found by review: YOUNG's Prepare in group 1 waited for the Expire, which waited for
    OLD's read intent, while OLD's Prepare in group 2 waited (L2) for YOUNG's write intent:
    a cycle for the whole wait bound, after which the older transaction lost."""
    node = OneNode(resolve_after_s=5.0)
    assert node.call(put(b"x", b"0", group=2)).put.error.code == kv.OK
    lease = node.call(ttl_put(b"lease", b"a", 200)).put
    old, young = tid(b"old"), tid(b"young")
    reads = ((b"lease", lease.version),)
    assert node.call(prep(old, 1, reads=reads, priority=100)).prepare.error.code == kv.OK
    young_x = prep(young, 2, writes=(b"x",), priority=300)
    assert node.call(young_x, settle=0.01).prepare.error.code == kv.OK
    node.advance(0.35)
    young_in_1 = submit(node, prep(young, 1, reads=reads, priority=300))
    old_in_2 = submit(node, prep(old, 2, writes=(b"x",), priority=100))
    assert until(node, young_in_1, 0.05) < 0.05  # refused at once: it would wait for OLD
    refused = young_in_1[0].prepare.error
    assert refused.code == kv.CONFLICT and refused.conflict.other_txn == old
    assert refused.conflict.key == b"lease" and "due for expiry" in refused.message
    assert not old_in_2  # OLD waits (L2) for YOUNG's intent, which YOUNG's abort frees
    submit(node, abort(young, 2))
    assert until(node, old_in_2, 0.2) < 0.2
    assert old_in_2[0].prepare.error.code == kv.OK


def test_a_holder_that_lands_after_a_prepare_parked_makes_it_decide_again() -> None:
    """Found by review: YOUNG parked on the due lease while no applied intent held it; OLD's
    Prepare, proposed just before the check noted the lease, landed after, and then waited
    (L2) in group 2 for YOUNG's intent: a cycle through the Expire for YOUNG's whole wait.
    The Expire's refusal (and every check that finds the key held) wakes the waiters."""
    node = OneNode(resolve_after_s=5.0)
    assert node.call(put(b"x", b"0", group=2)).put.error.code == kv.OK
    lease = node.call(ttl_put(b"lease", b"a", 200)).put
    young, old = tid(b"young"), tid(b"old")
    reads = ((b"lease", lease.version),)
    young_x = prep(young, 2, writes=(b"x",), priority=300)
    assert node.call(young_x, settle=0.01).prepare.error.code == kv.OK
    node.core._next_expiry_check = math.inf  # past the deadline, no check run yet
    node.advance(0.35)
    assert len(node.core.hosts[1].due) == 0
    old_in_1 = submit(node, prep(old, 1, reads=reads, priority=100))  # proposed, not applied
    node.core._next_expiry_check = node.now
    node.now += 0.001  # one tick: the check notes the lease, nothing is applied
    node.wall += 1_000_000
    node.core.tick(node.now, node.wall)
    assert len(node.core.hosts[1].due) == 1
    young_in_1 = submit(node, prep(young, 1, reads=reads, priority=300))
    assert not young_in_1  # parked: no applied holder yet
    node.advance(0.01)  # OLD's Prepare applies; the Expire meets its intent
    assert old_in_1 and old_in_1[0].prepare.error.code == kv.OK
    assert until(node, young_in_1, 0.2) < 0.2
    refused = young_in_1[0].prepare.error
    assert refused.code == kv.CONFLICT and refused.conflict.other_txn == old


def test_two_due_keys_read_in_opposite_groups_close_no_cycle() -> None:
    """Found by review: T1 held lease-1 and read lease-2, T2 held lease-2 and read lease-1;
    each waited for the other's Expire. The younger is refused; once it aborts, the
    older's key is deleted and its stale read refused in turn, with no wait run out."""
    node = OneNode(resolve_after_s=5.0)
    v1, t1 = due_lease(node, b"lease", 1)
    v2, t2 = due_lease(node, b"pointer", 2)  # h-pointer is younger than h-lease: same age, later id
    t1_in_2 = submit(node, prep(t1, 2, reads=((b"pointer", v2),), priority=100))
    t2_in_1 = submit(node, prep(t2, 1, reads=((b"lease", v1),), priority=100))
    until(node, t2_in_1, 0.05)
    assert t2_in_1[0].prepare.error.code == kv.CONFLICT and not t1_in_2
    submit(node, abort(t2, 2))  # its client aborts: the pointer's Expire goes
    assert until(node, t1_in_2, 0.5) < 0.5
    assert t1_in_2[0].prepare.error.code == kv.CONFLICT  # its read of the pointer is stale
    assert node.core.hosts[2].shard.get(b"pointer") is None


def test_a_waiting_prepare_goes_on_as_soon_as_the_key_is_touched() -> None:
    """Found by review: a touch (a renewal) ended the key's being due, but its waiters went
    on only at the next expiry check, up to 0.1 s later."""
    node = OneNode(resolve_after_s=5.0)
    version, _ = due_lease(node)
    waiting = submit(node, prep(tid(b"t1"), 1, reads=((b"lease", version),), priority=50))
    node.advance(0.02)
    assert not waiting
    while node.core._next_expiry_check - node.now < 0.095:  # right after a check
        node.advance(0.005, step=0.005)
    touch = kv.Request(
        cas=kv.CasRequest(
            header=header(), key=b"lease", expected_version=version, touch=True, ttl_ms=5000
        )
    )
    touched = submit(node, touch)
    until(node, touched, 0.1)
    assert touched[0].cas.succeeded
    assert until(node, waiting, 0.1) < 0.03
    assert waiting[0].prepare.error.code == kv.OK  # the lease lives on: its read is valid


Readers = list[tuple[bytes, list[kv.Response], list[float]]]


def _overlapping_readers(
    slow_for_s: float, timeout_ms: int = 0
) -> tuple[OneNode, float | None, float, Readers]:
    """A reader every 20 ms, each resolved 30 ms after its answer (each a new, younger
    transaction, never retried), for 5 s, beside one reader that prepared before the lease
    fell due and is resolved `slow_for_s` after the write: the node, when the lease was
    deleted (None: never), when it was written, and each reader with its answer and when."""
    node = OneNode(resolve_after_s=30.0)
    lease = node.call(ttl_put(b"lease", b"holder-a", 200)).put
    written_at, shard = node.now, node.core.hosts[1].shard
    reads = ((b"lease", lease.version),)
    slow = node.call(prep(tid(b"slow"), 1, reads=reads, priority=1), settle=0.01).prepare
    assert slow.error.code == kv.OK
    readers: Readers = []
    resolved: set[bytes] = set()
    gone_at = None
    for i in range(250):
        txn, answers, answered_at = tid(b"r%03d" % i), [], []
        request = prep(txn, 1, reads=reads, priority=1000 + i, timeout_ms=timeout_ms)
        node.core.submit(
            request, lambda a, out=answers, at=answered_at: (out.append(a), at.append(node.now))
        )
        readers.append((txn, answers, answered_at))
        for txn, answers, answered_at in readers:
            ok = answers and answers[0].prepare.error.code == kv.OK
            if ok and txn not in resolved and node.now - answered_at[0] >= 0.03:
                resolved.add(txn)
                resolve = resolve_request(txn, answers[0].prepare.prepare_ts)
                node.core.submit(resolve, lambda _a: None)
        if node.now - written_at >= slow_for_s and b"slow" not in resolved:
            resolved.add(b"slow")
            node.core.submit(resolve_request(tid(b"slow"), slow.prepare_ts), lambda _a: None)
        node.advance(0.02)
        if gone_at is None and shard.get(b"lease") is None:
            gone_at = node.now
    return node, gone_at, written_at, readers


@pytest.mark.parametrize(("slow_for_s", "timeout_ms"), [(0.0, 0), (0.3, 0), (1.5, 0), (0.0, 120)])
def test_readers_keep_no_expired_value_alive(slow_for_s: float, timeout_ms: int) -> None:
    """Found by review: readers that kept overlapping (a leader pointer every request looks
    up) held an expired value for ever, as the duty passed over a key under any read intent
    and an Expire met one. The first form of rule L5 (wait, then go on) failed too with one
    reader holding the key longer than the wait bound (1.5 s), or readers whose Prepare had
    0.12 s left (a 60 ms wait): each wait ran out and the Prepare took its intent anyway.
    Younger readers are refused now, and so is a wait that runs out; none is left stuck,
    and the readers after the delete find their read stale."""
    node, gone_at, written_at, readers = _overlapping_readers(slow_for_s, timeout_ms)
    assert gone_at is not None, "the lease (TTL 0.2 s) still there 5 s after its write"
    assert gone_at - written_at < max(slow_for_s, 0.2) + 0.5
    node.advance(2.0)
    assert all(answers for _, answers, _ in readers)
    late = [a[0].prepare.error.code for _, a, at in readers if at[0] > gone_at]
    assert late and all(code == kv.CONFLICT for code in late)


def test_an_expiry_check_reads_a_page_of_due_keys_however_many_are_noted() -> None:
    """Found by review: every check re-read every key ever noted due (20,000 keys held by
    intents: 42 ms a check, every 0.1 s). A check prunes a page, going round."""
    n = 8 * EXPIRES_PER_CHECK
    node = TxnNode()
    reads = []
    for i in range(n):
        key = b"k%06d" % i
        written = node.run(encode_put(key, b"v", T0 + i, ttl_ms=1))[0]
        reads.append(ReadItem(key=key, version=written.version))
    for j in range(0, n, 512):  # readers in doubt: their read intents hold every key
        held = Prepare(
            txn_id=b"t%05d" % j,
            coordinator_group=GROUP,
            participants=(GROUP,),
            reads=tuple(reads[j : j + 512]),
        )
        assert node.txn(held, T0 + n + MS).ok
    duty = KeyExpiry(lambda host, encode, on_result: None)
    host: Any = _Host(GROUP, node)
    calls = [0]
    real = node.sm.expiry_of

    def counted(key: bytes, version: int) -> int:
        calls[0] += 1
        return real(key, version)

    node.sm.expiry_of = counted  # type: ignore[method-assign]
    for c in range(n // EXPIRES_PER_CHECK + 2):
        duty.check([host], now=0.1 * c, due_ts=T0 * 2)
    assert len(host.due) == due_keys.MAX_DUE_KEYS  # capped: more are noted as these go
    calls[0] = 0
    duty.check([host], now=10.0, due_ts=T0 * 2)
    assert calls[0] <= EXPIRES_PER_CHECK


def test_due_keys_note_at_most_their_cap(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(due_keys, "MAX_DUE_KEYS", 2)

    class AlwaysLive:
        def expiry_of(self, key: bytes, version: int) -> int:
            return 10 * version

    due, shard = DueKeys(), AlwaysLive()
    for key in (b"a", b"b", b"c"):
        due.add(shard, key, 10, 1)
    assert len(due) == 2 and not due.holds(shard, b"c")
    due.add(shard, b"a", 20, 2)  # a noted key's record is updated all the same
    assert len(due) == 2 and due.holds(shard, b"a")
