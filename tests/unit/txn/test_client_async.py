"""AsyncClient against the fake cluster: commit paths, read sets, retries, ambiguity.

Each test names the client rule (txn/client.py module docstring) or protocol clause it checks.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import gc
import time
from typing import Any

import pytest
from test_client_fakekv import (
    DROP,
    LOSE,
    FakeKV,
    Hook,
    conflict_response,
    decided,
    error_response,
    fake_in_thread,
    fast_client,
    on_kind,
    until,
    with_fake,
)

import txn
from router import kv_pb2 as kv
from router.limits import MAX_KEY_BYTES, MAX_VALUE_BYTES
from txn import (
    AsyncTransaction,
    CommitUnknown,
    Conflict,
    InvalidArgument,
    LimitExceeded,
    TooManyRetries,
    TransactionClosed,
    TransactionState,
    TxnRef,
    TxnState,
    TxnStatus,
)
from txn.client import SETTLE_WINDOW_S
from txn.commit import MAX_TXN_AGE_S, _union
from txn.hlc import LOGICAL_BITS
from txn.records import MAX_TXN_ITEMS
from txn.txn_ids import start_ts_of

# Keys by group under the fake map (split points g, p).
A1, A2 = b"apple", b"banana"  # group 1
B1, B2 = b"grape", b"kiwi"  # group 2
C1 = b"plum"  # group 3


# ---------------------------------------------------------------------------- commit paths


@with_fake
async def test_one_group_commits_in_one_phase(fake: FakeKV) -> None:
    async with fast_client(fake) as client:
        async with client.transaction() as tx:
            tx.put(A1, b"1")
            tx.put(A2, b"2")
        assert tx.state is TransactionState.COMMITTED
        assert tx.commit_ts is not None and tx.commit_ts > 0
        assert tx.ref == TxnRef(tx.txn_id, 1)
    assert fake.count("commit_one_phase") == 1
    assert fake.count("prepare") == fake.count("decide") == 0
    group, request = fake.requests("commit_one_phase")[0]
    assert group == 1 and request.commit_one_phase.txn_id == tx.txn_id
    assert [(w.key, w.value) for w in request.commit_one_phase.writes] == [(A1, b"1"), (A2, b"2")]
    assert fake.store.value(A1) == b"1"


@with_fake
async def test_cross_group_commit_prepares_each_participant_with_its_own_keys(
    fake: FakeKV,
) -> None:
    async with fast_client(fake) as client:
        tx = client.transaction()
        tx.put(B1, b"b")  # first written key: group 2 coordinates
        tx.put(A1, b"a")
        tx.delete(C1)
        commit_ts = await tx.commit()
    prepares = {g: r.prepare for g, r in fake.requests("prepare")}
    assert sorted(prepares) == [1, 2, 3]
    for group, prepare in prepares.items():
        assert prepare.txn_id == tx.txn_id
        assert prepare.coordinator_group == 2
        assert list(prepare.participants) == [1, 2, 3]
        assert all(fake.group_of(w.key) == group for w in prepare.writes)
    assert [w.key for w in prepares[1].writes] == [A1]
    assert prepares[3].writes[0].delete
    # Committed on the votes: each participant, the coordinator included, gets the commit
    # at max(prepare_ts) as a Resolve; no Decide is needed for a commit.
    assert fake.requests("decide") == []
    resolves = {g: r.resolve for g, r in fake.requests("resolve")}
    assert sorted(resolves) == [1, 2, 3]
    assert {(r.txn_id, r.commit, r.commit_ts) for r in resolves.values()} == {
        (tx.txn_id, True, commit_ts)
    }
    assert fake.store.value(A1) == b"a" and fake.store.value(B1) == b"b"
    assert tx.ref == TxnRef(tx.txn_id, 2)


@with_fake
async def test_commit_ts_is_the_max_prepare_ts(fake: FakeKV) -> None:
    stamps: list[int] = []

    def hook(node: int, request: kv.Request) -> Any:
        if request.WhichOneof("op") == "prepare":
            response = kv.Response(id=request.id)
            with fake.lock:
                fake.store.apply(
                    request.prepare.header.group_id, "prepare", request.prepare, response
                )
            response.prepare.prepare_ts += 1000 * (request.prepare.header.group_id == 3)
            stamps.append(response.prepare.prepare_ts)
            return response
        return None

    fake.hook = hook
    async with fast_client(fake) as client:
        tx = two_group_writes(client)
        commit_ts = await tx.commit()
    assert commit_ts == max(stamps)
    assert {r.resolve.commit_ts for _, r in fake.requests("resolve")} == {max(stamps)}


@with_fake
async def test_a_commit_ts_is_at_or_above_the_start_its_id_carries(fake: FakeKV) -> None:
    """shard/node.py rule 13: nodes refuse a commit request below its id's start, so the
    client's commit never takes one below it, even after its wall clock stepped back a
    minute between the transaction's start and its commit (one-phase and two-phase)."""
    async with fast_client(fake) as client:
        for kind, keys in (("commit_one_phase", [A1]), ("prepare", [A2, B1])):
            wall = time.time_ns() + 3600 * 10**9
            client._wall_ns = functools.partial(int, wall)  # type: ignore[method-assign]
            tx = client.transaction()
            start = start_ts_of(tx.txn_id)
            assert start >= (wall // 1000) << LOGICAL_BITS
            stepped_back = wall - 60 * 10**9
            client._wall_ns = functools.partial(int, stepped_back)  # type: ignore[method-assign]
            for key in keys:
                tx.put(key, b"v")
            await tx.commit()
            [ts] = {getattr(r, kind).ts for _, r in fake.requests(kind)}
            assert ts >= start


@with_fake
async def test_a_commit_too_long_after_the_start_is_refused_before_anything_is_sent(
    fake: FakeKV,
) -> None:
    """Nodes judge a commit by its id's start (shard/node.py rule 13) and refuse one older
    than their purge mark, so a transaction kept open longer than MAX_TXN_AGE_S gets a
    retryable TransactionTooOld instead of a Prepare that could never commit (found by
    review: the client then reported CommitUnknown). Its update locks are freed, and `run`
    re-runs it with a fresh start. The age is taken from the client's monotonic clock
    (`monotonic=`), which no wall-clock step moves."""
    elapsed = [0.0]
    async with fast_client(fake, monotonic=lambda: 1000.0 + elapsed[0]) as client:
        tx = client.transaction()
        await tx.get(A1, for_update=True)
        tx.put(B1, b"b")
        elapsed[0] += MAX_TXN_AGE_S + 1  # it began 21 s ago
        stepped_back = time.time_ns() - 3600 * 10**9  # the wall clock says it just began
        client._wall_ns = functools.partial(int, stepped_back)  # type: ignore[method-assign]
        with pytest.raises(txn.TransactionTooOld, match="over the 20 s") as caught:
            await tx.commit()
        assert caught.value.retryable and not caught.value.maybe_committed
        assert tx.state is TransactionState.ABORTED
        await until(lambda: fake.count("resolve") == 1, "the update lock's release")
        assert fake.requests("prepare") == fake.requests("commit_one_phase") == []
        [(group, release)] = fake.requests("resolve")
        assert group == 1 and release.resolve.txn_id == tx.txn_id and not release.resolve.commit

        attempts = []

        async def body(t: AsyncTransaction) -> None:
            attempts.append(t)
            t.put(B1, b"again")
            if len(attempts) == 1:
                t._started_mono -= MAX_TXN_AGE_S + 1

        await client.run(body)
        assert len(attempts) == 2 and fake.store.value(B1) == b"again"


@with_fake
async def test_read_only_cross_group_coordinator_is_first_read_group(fake: FakeKV) -> None:
    fake.store.write(C1, b"c", 5)
    async with fast_client(fake) as client, client.transaction() as tx:
        assert await tx.get(C1) == b"c"
        assert await tx.get(A1) is None
    assert tx.ref is not None and tx.ref.group_id == 3
    assert {g: r.prepare.coordinator_group for g, r in fake.requests("prepare")} == {1: 3, 3: 3}
    assert not any(r.prepare.writes for _, r in fake.requests("prepare"))


@with_fake
async def test_empty_transaction_commits_trivially_and_sends_nothing(fake: FakeKV) -> None:
    async with fast_client(fake) as client:
        tx = client.transaction()
        assert await tx.commit() == 0
        assert tx.ref is None and tx.state is TransactionState.COMMITTED
    assert not any(k in ("prepare", "commit_one_phase", "decide") for _, k, _ in fake.seen)


# ---------------------------------------------------------------------------- reads


@with_fake
async def test_read_set_records_versions_of_present_and_absent_keys(fake: FakeKV) -> None:
    fake.store.write(A1, b"v", 11)
    fake.store.write(A2, b"old", 12)
    fake.store.write(A2, None, 13)  # deleted: its tombstone's version is read
    async with fast_client(fake) as client, client.transaction() as tx:
        assert await tx.get(A1) == b"v"
        assert await tx.get(A2) is None
        assert await tx.get(b"cherry") is None  # never written
        assert tx.read_set == {A1: 11, A2: 13, b"cherry": 0}
        tx.put(b"date", b"x")
    [(_, request)] = fake.requests("commit_one_phase")
    reads = {r.key: r.version for r in request.commit_one_phase.reads}
    assert reads == {A1: 11, A2: 13, b"cherry": 0}


@with_fake
async def test_reads_see_own_writes_and_repeat_without_asking_again(fake: FakeKV) -> None:
    fake.store.write(A1, b"stored", 3)
    async with fast_client(fake) as client:
        tx = client.transaction()
        assert await tx.get(A1) == b"stored"
        assert await tx.get(A1) == b"stored"
        assert fake.count("get") == 1
        tx.put(A1, b"mine")
        assert await tx.get(A1) == b"mine"
        tx.delete(A1)
        assert await tx.get(A1) is None
        tx.put(A2, b"new")
        assert await tx.get(A2) == b"new"
        assert fake.count("get") == 1  # own writes are never fetched
        assert tx.read_set == {A1: 3}  # A2 was written before it was read: no read
        tx.abort()


@with_fake
async def test_scan_merges_buffered_writes_and_records_versions(fake: FakeKV) -> None:
    for i, key in enumerate([b"a1", b"a3", b"a5", b"h1", b"q1"]):
        fake.store.write(key, b"s" + key, 10 + i)
    async with fast_client(fake) as client:
        tx = client.transaction()
        tx.put(b"a2", b"mine")
        tx.delete(b"a3")
        tx.put(b"a5", b"over")
        tx.put(b"z9", b"far")
        assert await tx.scan(b"a", b"r") == [
            (b"a1", b"sa1"),
            (b"a2", b"mine"),
            (b"a5", b"over"),
            (b"h1", b"sh1"),
            (b"q1", b"sq1"),
        ]
        # Every key the store returned is a read with its version, also the ones this
        # transaction overwrites or deletes: the scanned range's content is validated (P6).
        assert tx.read_set == {b"a1": 10, b"a3": 11, b"a5": 12, b"h1": 13, b"q1": 14}
        assert await tx.scan(b"a", None, limit=2) == [(b"a1", b"sa1"), (b"a2", b"mine")]
        assert (await tx.scan(b"q"))[-1] == (b"z9", b"far")
        assert await tx.scan(b"b", b"a") == []
        tx.abort()


@with_fake
async def test_scan_limit_does_not_skip_store_keys_before_a_buffered_put(fake: FakeKV) -> None:
    for key in [b"a1", b"a2", b"a3", b"a4"]:
        fake.store.write(key, b"s", 5)
    async with fast_client(fake) as client:
        tx = client.transaction()
        tx.delete(b"a1")
        tx.put(b"a9", b"mine")
        assert await tx.scan(b"a", b"b", limit=2) == [(b"a2", b"s"), (b"a3", b"s")]
        assert await tx.scan(b"a", b"b", limit=10) == [
            (b"a2", b"s"),
            (b"a3", b"s"),
            (b"a4", b"s"),
            (b"a9", b"mine"),
        ]
        tx.abort()


@with_fake
async def test_scans_send_their_ranges_with_the_commit_split_by_group(fake: FakeKV) -> None:
    # Rule P6 on the client side: each scanned range goes to the groups it covers, clipped to
    # them; a scan its limit stopped covers up to its last key only; overlapping ranges go
    # as their union (nodes refuse overlapping ones).
    for key in [b"a1", b"a2", b"h1", b"h2", b"q1"]:
        fake.store.write(key, b"s", 5)
    async with fast_client(fake) as client:
        tx = client.transaction()
        await tx.scan(b"a", b"r")
        await tx.scan(b"h", None, limit=1)
        await tx.scan(b"a", b"r")
        tx.put(b"z", b"1")
        await tx.commit()
    sent = {
        group: [(r.start, r.end) for r in request.prepare.read_ranges]
        for group, request in fake.requests("prepare")
    }
    assert sent == {1: [(b"a", b"g")], 2: [(b"g", b"p")], 3: [(b"p", b"r")]}


def test_scanned_ranges_are_sent_as_their_union() -> None:
    def union(*ranges: tuple[bytes, bytes]) -> list[tuple[bytes, bytes]]:
        merged = _union([kv.KeyRange(start=a, end=b) for a, b in ranges])
        return [(r.start, r.end) for r in merged]

    assert union((b"c", b"e"), (b"a", b"b")) == [(b"a", b"b"), (b"c", b"e")]
    assert union((b"a", b"c"), (b"b", b"d"), (b"b", b"c")) == [(b"a", b"d")]
    assert union((b"a", b"b"), (b"b", b"c")) == [(b"a", b"c")]  # adjacent: one range
    assert union((b"m", b""), (b"a", b"c"), (b"n", b"p")) == [(b"a", b"c"), (b"m", b"")]
    assert union((b"a", b"n"), (b"m", b"")) == [(b"a", b"")]


@with_fake
async def test_a_part_over_max_txn_items_is_refused_before_anything_is_sent(
    fake: FakeKV,
) -> None:
    async with fast_client(fake) as client:
        tx = client.transaction()
        for i in range(MAX_TXN_ITEMS + 1):
            tx.put(b"a%05d" % i, b"v")
        with pytest.raises(LimitExceeded, match="MAX_TXN_ITEMS"):
            await tx.commit()
        assert tx.state is TransactionState.ABORTED
    assert fake.count("commit_one_phase") == 0


@with_fake
async def test_a_part_over_a_size_limit_is_refused_before_anything_is_sent(fake: FakeKV) -> None:
    """Found by review: a value over gRPC's message limit failed the stream at the client's
    write and the commit raised CommitUnknown (of a commit that never left); one within it
    but over the node's limit was sent to be refused, and in a two-phase commit the other
    participants' prepares had to be aborted."""
    megabyte = b"v" * MAX_VALUE_BYTES
    async with fast_client(fake) as client:
        tx = client.transaction()
        # A key or value over its own limit is refused by the put itself.
        for key, value, message in (
            (A1, megabyte + b"v", r"value is \d+ bytes, over .* \(MAX_VALUE_BYTES\)"),
            (A1, b"v" * (65 << 20), r"value is .* \(MAX_VALUE_BYTES\)"),
            (b"k" * (MAX_KEY_BYTES + 1), b"k", r"key is .* \(MAX_KEY_BYTES\)"),
        ):
            with pytest.raises(LimitExceeded, match=message):
                tx.put(key, value)
        tx.abort()
        # A part over the command limit, each write within its own, is refused at commit.
        tx = client.transaction()
        for key in (A1, A2, b"cherry"):
            tx.put(key, megabyte)
        tx.put(B1, b"b")
        with pytest.raises(
            LimitExceeded, match=r"group 1: transaction part is .* \(MAX_COMMAND_BYTES\)"
        ) as refused:
            await tx.commit()
        assert not refused.value.maybe_committed
        assert tx.state is TransactionState.ABORTED
    assert fake.count("commit_one_phase") == fake.count("prepare") == 0


@with_fake
async def test_two_scans_clipped_to_one_range_send_it_once(fake: FakeKV) -> None:
    async with fast_client(fake) as client:
        tx = client.transaction()
        await tx.scan(b"a", b"r")
        await tx.scan(b"b", b"r")  # in group 2 both are [g, p)
        tx.put(b"z", b"1")
        await tx.commit()
    sent = {
        g: [(r.start, r.end) for r in req.prepare.read_ranges]
        for g, req in fake.requests("prepare")
    }
    assert sent[2] == [(b"g", b"p")]


@with_fake
async def test_a_key_that_appears_in_a_scanned_range_conflicts_at_the_read(fake: FakeKV) -> None:
    async with fast_client(fake) as client:
        tx = client.transaction()
        assert await tx.scan(b"a", b"b") == []
        fake.store.write(b"a-new", b"theirs", fake.store.tick())
        with pytest.raises(Conflict) as info:
            await tx.get(b"a-new")  # the scan saw it absent
        assert info.value.key == b"a-new" and info.value.retryable
        assert "phantom" in str(info.value)
        assert await tx.get(b"c-new") is None  # outside the range: an ordinary read
        tx.abort()


@with_fake
async def test_a_scan_after_overwriting_a_key_commits(fake: FakeKV) -> None:
    # The overwritten key is recorded as read by the scan, so the range validates.
    fake.store.write(b"a1", b"old", 5)
    async with fast_client(fake) as client:
        tx = client.transaction()
        tx.put(b"a1", b"new")
        assert await tx.scan(b"a", b"b") == [(b"a1", b"new")]
        await tx.commit()
        assert await client.get(b"a1") == b"new"


@with_fake
async def test_a_key_that_changes_between_two_reads_conflicts_early(fake: FakeKV) -> None:
    fake.store.write(A1, b"v1", 5)
    async with fast_client(fake) as client:
        tx = client.transaction()
        assert await tx.get(A1) == b"v1"
        fake.store.write(A1, b"v2", 6)
        with pytest.raises(Conflict) as info:
            await tx.scan(b"a", b"b")
        assert info.value.key == A1 and info.value.phase == "read"
        assert info.value.retryable and not info.value.maybe_committed


@with_fake
async def test_read_meeting_an_intent_is_resent_until_it_clears(fake: FakeKV) -> None:
    """Rule 4: a read refused with CONFLICT (nothing recorded) is re-sent after a backoff."""
    refusals = 3

    def hook(node: int, request: kv.Request) -> Any:
        nonlocal refusals
        if request.WhichOneof("op") == "get" and refusals:
            refusals -= 1
            return conflict_response(request, request.get.key, "read")
        return None

    fake.hook = hook
    fake.store.write(A1, b"v", 7)
    async with fast_client(fake) as client:
        async with client.transaction() as tx:
            assert await tx.get(A1) == b"v"
        assert fake.count("get") == 4


@with_fake
async def test_read_blocked_past_its_deadline_raises_a_read_conflict(fake: FakeKV) -> None:
    fake.hook = on_kind("get", lambda r: conflict_response(r, r.get.key, "read"))
    async with fast_client(fake, timeout_s=0.3) as client:
        tx = client.transaction()
        with pytest.raises(Conflict) as info:
            await tx.get(A1)
        assert info.value.phase == "read" and info.value.key == A1
        assert info.value.other_txn == b"\xee" * 4
        assert A1 not in tx.read_set


# ---------------------------------------------------------------------------- conflicts


@with_fake
async def test_concurrent_conflicting_transactions_one_wins(fake: FakeKV) -> None:
    fake.store.write(A1, b"0", 5)
    async with fast_client(fake) as client:
        t1, t2 = client.transaction(), client.transaction()
        for tx in (t1, t2):
            n = int(await tx.get(A1) or b"0")
            tx.put(A1, b"%d" % (n + 1))
        await t1.commit()
        with pytest.raises(Conflict) as info:
            await t2.commit()
    assert info.value.key == A1 and info.value.phase == "commit"
    assert A1.hex() not in str(info.value) and repr(A1) in str(info.value)
    assert t2.state is TransactionState.ABORTED
    assert fake.store.value(A1) == b"1"


@with_fake
async def test_prepare_conflict_decides_abort_and_the_coordinator_resolves(fake: FakeKV) -> None:
    fake.store.write(C1, b"c", 5)

    async with fast_client(fake) as client:
        tx = client.transaction()
        assert await tx.get(C1) == b"c"
        tx.put(A1, b"a")  # group 1 coordinates
        tx.put(B1, b"b")
        fake.store.write(C1, b"changed", 6)  # group 3 will vote no
        with pytest.raises(Conflict) as info:
            await tx.commit()
        await until(lambda: fake.count("decide") == 2, "the recovery Decide's second answer")
    assert info.value.phase == "prepare" and info.value.key == C1
    assert tx.state is TransactionState.ABORTED
    # A recovery Decide: the coordinator holds its PREPARE, so the first answer is pending
    # (rule D3) and the re-sent one carries the recorded abort.
    decides = fake.requests("decide")
    assert len(decides) == 2
    assert all(g == 1 and d.decide.recover and not d.decide.commit for g, d in decides)
    # The recorded abort is delivered by the coordinator group: no client Resolve.
    assert fake.requests("resolve") == []
    assert fake.store.intents == {} and fake.store.value(A1) is None


async def _commit_after_a_no_vote(fake: FakeKV, decide_hook: Any) -> None:
    """Commit a transaction writing in groups 1 (its coordinator) and 2 whose read in group 3
    went stale (group 3 votes no), with `decide_hook` answering its recovery Decides; check
    that the commit raised CommitUnknown and that nothing was decided, resolved or undone."""
    fake.store.write(C1, b"c", 5)
    fake.hook = decide_hook
    async with fast_client(fake, timeout_s=0.3) as client:
        tx = client.transaction()
        assert await tx.get(C1) == b"c"
        tx.put(A1, b"a")  # group 1 coordinates
        tx.put(B1, b"b")
        fake.store.write(C1, b"changed", 6)  # group 3 will vote no
        with pytest.raises(CommitUnknown) as info:
            await tx.commit()
        assert tx.state is TransactionState.UNKNOWN
    assert info.value.maybe_committed
    assert info.value.ref == tx.ref and tx.ref is not None and tx.ref.group_id == 1
    assert fake.store.decisions == {}
    assert fake.requests("resolve") == []
    assert set(fake.store.intents) == {A1, B1}  # left to the participants' recovery


@with_fake
async def test_when_the_abort_cannot_be_recorded_the_outcome_is_unknown(fake: FakeKV) -> None:
    """Rule 2: a no vote is "not committed" only once the abort is recorded. Resolving the
    others from the client instead could undo a commit recovery found (every PREPARE
    logged, e.g. a late copy of the refused one), so the client resolves nothing."""
    await _commit_after_a_no_vote(fake, on_kind("decide", DROP))


@with_fake
async def test_a_pending_decision_after_a_no_vote_is_commit_unknown_not_an_abort(
    fake: FakeKV,
) -> None:
    """Rule 2: the abort after a no vote is a recovery Decide, and `pending` records
    nothing: the coordinator's prevent round may still record a COMMIT (e.g. a late copy
    of the refused PREPARE logged after all). A Decide still pending at the deadline is
    therefore CommitUnknown (state UNKNOWN), never the no vote's Conflict: telling the
    user "aborted" could have them re-run a transaction that committed. Unlike the
    dropped Decide above, every Decide here is answered."""

    def hook(node: int, request: kv.Request) -> Any:
        if request.WhichOneof("op") == "decide":
            # The prevent round never ends before the deadline: nothing recorded.
            return kv.Response(id=request.id, decide=kv.DecideResponse(pending=True))
        return None

    await _commit_after_a_no_vote(fake, hook)
    decides = fake.requests("decide")
    assert len(decides) >= 2  # re-sent while pending, until the deadline
    assert all(g == 1 and r.decide.recover and not r.decide.commit for g, r in decides)


@with_fake
async def test_a_failed_prepare_reports_the_commit_recovery_recorded_first(
    fake: FakeKV,
) -> None:
    """Rule 2: the recorded decision is the outcome, also when it is a commit."""

    def hook(node: int, request: kv.Request) -> Any:
        op = request.WhichOneof("op")
        if op == "prepare" and request.prepare.header.group_id == 2:
            return kv.Response(
                id=request.id, prepare=kv.PrepareResponse(error=kv.Error(code=kv.UNAVAILABLE))
            )
        if op == "decide" and not request.decide.commit:
            # Recovery found every PREPARE logged and recorded the commit first.
            with fake.lock:
                commit = kv.DecideRequest(
                    txn_id=request.decide.txn_id, participants=[1, 2], commit=True, commit_ts=77
                )
                fake.store.apply(1, "decide", commit, kv.Response())
        return None

    fake.hook = hook
    async with fast_client(fake, timeout_s=0.5) as client:
        tx = client.transaction()
        tx.put(A1, b"a")
        tx.put(B1, b"b")
        assert await tx.commit() == 77


@with_fake
async def test_lost_resolve_answer_resends_the_same_resolve(fake: FakeKV) -> None:
    """Rule 1: a lost answer is answered by re-sending the SAME request."""
    lost = 1

    def hook(node: int, request: kv.Request) -> Any:
        nonlocal lost
        op = request.WhichOneof("op")
        if op == "resolve" and request.resolve.header.group_id == 1 and lost:
            lost -= 1
            return LOSE
        return None

    fake.hook = hook
    async with fast_client(fake) as client:
        tx = two_group_writes(client)
        commit_ts = await tx.commit()
    resolves = [r.resolve for g, r in fake.requests("resolve") if g == 1]
    for resolve in resolves:
        resolve.header.ClearField("timeout_ms")  # the time left: less on the re-send
    assert len(resolves) == 2 and resolves[0] == resolves[1]
    assert (resolves[0].txn_id, resolves[0].commit, resolves[0].commit_ts) == (
        tx.txn_id,
        True,
        commit_ts,
    )


@with_fake
async def test_commit_returns_on_the_votes_and_the_resolves_follow(fake: FakeKV) -> None:
    """Parallel commits: all yes votes ARE the commit; the participants are resolved
    afterwards, re-sent while their answers are lost, without holding the caller."""
    fake.hook = on_kind("resolve", LOSE)
    async with fast_client(fake, timeout_s=1.0, attempt_timeout_s=0.2) as client:
        tx = two_group_writes(client)
        commit_ts = await tx.commit()
        assert tx.state is TransactionState.COMMITTED and tx.commit_ts == commit_ts
        assert fake.count("resolve") <= 2  # returned before any re-send
    assert fake.count("resolve") >= 4
    assert fake.requests("decide") == []
    fake.hook = None
    async with fast_client(fake) as client:
        status = await client.txn_status(TxnRef(tx.txn_id, 1))
        assert status.state is TxnState.COMMITTED and status.commit_ts == commit_ts


@with_fake
async def test_resolves_that_never_arrive_leave_the_commit_to_recovery(fake: FakeKV) -> None:
    """The client may die (or lose its network) right after the votes: the transaction is
    committed all the same, its PREPAREs stay logged, and recovery records the commit."""
    from router import client_errors

    async with fast_client(fake, timeout_s=0.8) as client:
        routing_send = client.routing.send

        async def send(request: kv.Request, **kwargs: Any) -> kv.Response:
            if request.WhichOneof("op") == "resolve":
                raise client_errors.DeadlineExceeded("injected: never sent")
            return await routing_send(request, **kwargs)

        client.routing.send = send  # type: ignore[method-assign]
        tx = two_group_writes(client)
        await tx.commit()
    assert tx.state is TransactionState.COMMITTED
    assert fake.store.decisions == {}
    assert set(fake.store.intents) == {A1, C1}


@with_fake
async def test_lost_one_phase_answer_is_resent_and_applied_once(fake: FakeKV) -> None:
    lost = 1

    def hook(node: int, request: kv.Request) -> Any:
        nonlocal lost
        if request.WhichOneof("op") == "commit_one_phase" and lost:
            lost -= 1
            return LOSE
        return None

    fake.hook = hook
    async with fast_client(fake) as client:
        tx = client.transaction()
        tx.put(A1, b"a")
        commit_ts = await tx.commit()
    requests = [r.commit_one_phase for _, r in fake.requests("commit_one_phase")]
    for request in requests:
        request.header.ClearField("timeout_ms")  # the time left: less on the re-send
    assert len(requests) == 2 and requests[0] == requests[1]
    assert fake.store.versions[A1] == [(commit_ts, b"a")]


@with_fake
async def test_one_phase_never_answered_raises_commit_unknown(fake: FakeKV) -> None:
    fake.hook = on_kind("commit_one_phase", DROP)
    async with fast_client(fake, timeout_s=0.8, attempt_timeout_s=0.2) as client:
        tx = client.transaction()
        tx.put(A1, b"a")
        with pytest.raises(CommitUnknown) as info:
            await tx.commit()
        assert info.value.ref == TxnRef(tx.txn_id, 1)
        fake.hook = None
        assert (await client.txn_status(info.value.ref)).state is TxnState.UNKNOWN


@with_fake
async def test_a_commit_cancelled_after_its_request_left_is_unknown_not_aborted(
    fake: FakeKV,
) -> None:
    """ABORTED promises that nothing was written; a commit cancelled (wait_for, Ctrl-C)
    after its CommitOnePhase was applied may well have been."""
    fake.hook = on_kind("commit_one_phase", LOSE)
    async with fast_client(fake, timeout_s=3.0, attempt_timeout_s=1.0) as client:
        tx = client.transaction()
        tx.put(A1, b"a")
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(tx.commit(), 0.3)
        assert tx.state is TransactionState.UNKNOWN
        fake.hook = None
        assert (await client.txn_status(tx.ref)).state is TxnState.COMMITTED
    assert fake.store.value(A1) == b"a"


@with_fake
async def test_closing_the_client_under_a_written_put_reports_an_unknown_outcome(
    fake: FakeKV,
) -> None:
    """Only `fail` what surely did not happen: a put already on the stream when the client
    closes may have been applied (it was, here), so it is OutcomeUnknown, not ClientClosed."""
    async with fast_client(fake, timeout_s=3.0) as client:
        await client.get(A1)  # the stream is open
        fake.hook = on_kind("put", LOSE)
        put = asyncio.create_task(client.put(A1, b"1"))
        while fake.count("put") == 0:
            await asyncio.sleep(0.005)
        await client.close()
        with pytest.raises(txn.PaxosKVError) as info:
            await put
    assert info.value.maybe_committed and not info.value.retryable, info.value
    assert fake.store.value(A1) == b"1"


@with_fake
async def test_settling_a_lost_one_phase_commit_fences_its_late_copy(fake: FakeKV) -> None:
    """UNKNOWN is not final: the one-phase commit may still be chosen. `settle=True`
    records an abort first, and the late copy is then refused (rule O1), so re-running the
    work cannot apply it twice."""
    fake.hook = on_kind("commit_one_phase", DROP)
    async with fast_client(fake, timeout_s=0.8, attempt_timeout_s=0.2) as client:
        tx = client.transaction()
        tx.put(A1, b"a")
        with pytest.raises(CommitUnknown) as info:
            await tx.commit()
        assert "settle=True" in str(info.value)
        fake.hook = None
        ref = info.value.ref
        assert (await client.txn_status(ref)).state is TxnState.UNKNOWN
        assert await client.txn_status(ref, settle=True) == TxnStatus(TxnState.ABORTED)
        # The lost request arrives now: refused, nothing written.
        [(_, late)] = fake.requests("commit_one_phase")[-1:]
        answer = fake.handle(fake.leaders[1], late)
        assert answer is not None and answer.commit_one_phase.error.code == kv.CONFLICT
        assert fake.store.value(A1) is None
        assert (await client.txn_status(ref)).state is TxnState.ABORTED


@with_fake
async def test_a_one_phase_commit_is_not_re_sent_past_the_window_where_o5_would_refuse_it(
    fake: FakeKV,
) -> None:
    """Participant rule O5 refuses a one-phase commit whose transaction began before the
    group's purge mark, and says nothing about an earlier copy. A client re-sending its own
    request that long (a deadline longer than the retention) met it after its first copy
    had committed with the answer lost, and reported a Conflict: `run` did the work again.
    Scaled down: records purged 0.6 s after the start (the minimum retention, 120 s),
    re-sends stop RESEND_WINDOW_S (60 s) after it, here 0.3 s."""
    await _re_send_until_purged(fake, window_s=0.3, purged_after_s=0.6, began_before_s=0.0)


@with_fake
async def test_re_sends_stop_a_window_after_the_start_not_after_the_commit(fake: FakeKV) -> None:
    """Nodes judge a commit by the start its id carries (shard/node.py rule 13), so the
    window counts from the start: a transaction that began 0.5 s before its commit stops
    re-sending 0.2 s into it, before the purge 0.4 s into it (counted from the commit, it
    went on to 0.7 s and met the refusal)."""
    await _re_send_until_purged(fake, window_s=0.7, purged_after_s=0.9, began_before_s=0.5)


@with_fake
async def test_no_copy_of_a_commit_leaves_the_window_after_the_transactions_start(
    fake: FakeKV,
) -> None:
    """Rules P7 and O5 count from the start a transaction's id carries: one that began
    1.5 s before its commit sends its last copy within the window (2 s here) of its start,
    not of its commit. Every copy's answer is lost, so only the window stops the copies
    (the test above meets a purge refusal, which the routing client's own copies can hide:
    the window counted from the commit went unnoticed there). The bound allows 1 s for a
    copy to reach the node on a loaded machine (0.5 s did not, once, in a full run);
    counted from the commit, copies go on to 3.5 s after the start."""
    import txn.commit

    window = txn.commit.RESEND_WINDOW_S
    txn.commit.RESEND_WINDOW_S = 2.0
    received: list[float] = []

    def node(_node: int, request: kv.Request) -> Any:
        if request.WhichOneof("op") != "commit_one_phase":
            return None
        received.append(time.monotonic())
        return LOSE

    try:
        async with fast_client(fake, timeout_s=3.0, attempt_timeout_s=0.1) as client:
            tx = client.transaction()
            tx._started_mono -= 1.5
            tx.put(A1, b"a")
            fake.hook = node
            with pytest.raises(CommitUnknown):
                await tx.commit()
    finally:
        txn.commit.RESEND_WINDOW_S = window
    assert len(received) >= 2  # re-sent while the window lasted
    assert max(received) - tx._started_mono < 2.0 + 1.0


async def _re_send_until_purged(
    fake: FakeKV, window_s: float, purged_after_s: float, began_before_s: float
) -> None:
    """A one-phase commit whose answers are lost until `purged_after_s` after the
    transaction's start, then refused as O5 does: the client must report CommitUnknown."""
    import txn.commit

    window = txn.commit.RESEND_WINDOW_S
    txn.commit.RESEND_WINDOW_S = window_s
    first: list[float] = []

    def node(_node: int, request: kv.Request) -> Any:
        if request.WhichOneof("op") != "commit_one_phase":
            return None
        first.append(first[0] if first else time.monotonic())
        if time.monotonic() - first[0] < purged_after_s - began_before_s:
            return LOSE  # applied (the first copy commits), its answer lost
        response = kv.Response(id=request.id)  # what a node answers now (rule O5)
        reason = "the transaction's start or timestamp is older than this group's purge mark"
        response.commit_one_phase.error.CopyFrom(
            kv.Error(
                code=kv.CONFLICT,
                message=reason,
                conflict=kv.Conflict(
                    other_txn=request.commit_one_phase.txn_id, phase="commit", reason=reason
                ),
            )
        )
        return response

    fake.hook = node
    try:
        async with fast_client(fake, timeout_s=3.0, attempt_timeout_s=0.1) as client:
            tx = client.transaction()
            tx._started_mono -= began_before_s
            tx.put(A1, b"a")
            with pytest.raises(CommitUnknown):
                await tx.commit()
            assert tx.state is TransactionState.UNKNOWN
    finally:
        txn.commit.RESEND_WINDOW_S = window
    assert fake.store.value(A1) == b"a"  # it did commit


def test_the_re_send_window_is_well_inside_the_minimum_decision_retention() -> None:
    from shard.config import MIN_DECISION_RETENTION_S
    from txn.commit import RESEND_WINDOW_S

    assert 2 * RESEND_WINDOW_S <= MIN_DECISION_RETENTION_S


@with_fake
async def test_settling_needs_a_recent_ref_whose_record_cannot_have_been_purged(
    fake: FakeKV,
) -> None:
    """UNKNOWN also means "purged after the retention window": settling an old or undated
    transaction could record an abort over a commit, so it is refused, and nothing is
    recorded."""
    async with fast_client(fake) as client:
        old = TxnRef(b"t" * 16, 1, time.time_ns() - int(SETTLE_WINDOW_S * 1e9) - 10**9)
        for ref, kwargs in ((old, {}), (b"t" * 16, {"group_id": 1}), (TxnRef(b"t" * 16, 1), {})):
            with pytest.raises(txn.InvalidArgument, match=r"settle|too old"):
                await client.txn_status(ref, settle=True, **kwargs)
    assert fake.requests("decide") == []


@with_fake
async def test_settling_an_old_ref_whose_outcome_is_final_answers_it(fake: FakeKV) -> None:
    """Found by a user's walk-through: `txn-status REF --settle` refused a commit of four
    minutes ago as too old to settle, where without --settle it said committed."""
    async with fast_client(fake) as client:
        tx = two_group_writes(client)
        fake.hook = on_kind("resolve", DROP)  # committed by its logged prepares alone
        commit_ts = await tx.commit()
        assert tx.ref is not None
        old = dataclasses.replace(
            tx.ref, started_ns=time.time_ns() - int(SETTLE_WINDOW_S * 1e9) - 10**9
        )
        assert await client.txn_status(old, settle=True) == TxnStatus(TxnState.COMMITTED, commit_ts)
    assert fake.requests("decide") == []


@with_fake
async def test_a_settle_records_nothing_while_another_group_cannot_be_asked(
    fake: FakeKV,
) -> None:
    """Where the named group has no record, the others are asked whether they know the
    transaction (a mistyped group must not record an abort over a commit: a review found
    that skipping a silent group let it, as that group may be the one that decided). For
    at most CONNECT_TIMEOUT_S, not the caller's whole deadline: then a settle records
    nothing and raises Unavailable, and a plain status answers from the named group."""

    def silent_group_2(node: int, request: kv.Request) -> Any:
        asked = request.WhichOneof("op") == "txn_status"
        return DROP if asked and request.txn_status.header.group_id == 2 else None

    fake.hook = silent_group_2
    async with fast_client(fake, timeout_s=6.0) as client:
        ref = TxnRef(b"s" * 16, 1, time.time_ns())
        with pytest.raises(txn.Unavailable, match="group 2 could not be asked") as silent:
            await client.txn_status(ref, settle=True)
        assert type(silent.value) is txn.Unavailable  # not the deadline's: bounded at 2 s
        assert fake.requests("decide") == []
        assert (await client.txn_status(ref)).state is TxnState.UNKNOWN
        fake.hook = None
        assert await client.txn_status(ref, settle=True) == TxnStatus(TxnState.ABORTED)
        assert len(fake.requests("decide")) >= 1


@with_fake
async def test_a_settle_whose_window_runs_out_while_the_groups_answer_records_nothing(
    fake: FakeKV, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The window is checked again before the Decide: a ref 50 ms inside it whose status
    takes 200 ms is refused as too old, and nothing is recorded."""
    async with fast_client(fake) as client:
        ask = client._group_txn_status

        async def slow_status(*args: Any) -> Any:
            await asyncio.sleep(0.2)
            return await ask(*args)

        monkeypatch.setattr(client, "_group_txn_status", slow_status)
        nearly = TxnRef(b"t" * 16, 1, time.time_ns() - int((SETTLE_WINDOW_S - 0.05) * 1e9))
        with pytest.raises(txn.InvalidArgument, match="too old to settle"):
            await client.txn_status(nearly, settle=True)
        assert fake.requests("decide") == []
        young = TxnRef(b"u" * 16, 1, time.time_ns())
        assert (await client.txn_status(young, settle=True)).state is TxnState.ABORTED
        assert len(fake.requests("decide")) >= 1, "the control: a young one is settled"


@with_fake
async def test_a_settle_sends_no_decide_after_its_window_ends(fake: FakeKV) -> None:
    """The Decide's re-sends stop at the window's end, not at the caller's later deadline:
    past it the decision record may have been purged, and an abort recorded then could
    stand over a commit."""
    sent_ns: list[int] = []

    def drop_decides(node: int, request: kv.Request) -> Any:
        if request.WhichOneof("op") != "decide":
            return None
        sent_ns.append(time.time_ns())
        return DROP  # the coordinator never answers: the client re-sends

    async with fast_client(fake, timeout_s=10.0, attempt_timeout_s=0.1) as client:
        fake.hook = drop_decides
        window_ends_ns = time.time_ns() + int(0.8e9)
        ref = TxnRef(b"t" * 16, 1, window_ends_ns - int(SETTLE_WINDOW_S * 1e9))
        started = time.monotonic()
        with pytest.raises(txn.DeadlineExceeded):
            await client.txn_status(ref, settle=True)
        assert time.monotonic() - started < 5.0, "it went on to the 10 s deadline"
    assert len(sent_ns) >= 2, "the control: the Decide was re-sent within the window"
    late = [(ns - window_ends_ns) / 1e6 for ns in sent_ns if ns > window_ends_ns + 50_000_000]
    assert late == [], f"Decides sent this many ms after the window ended: {late}"


@with_fake
async def test_settling_a_commit_whose_every_prepare_is_logged_records_nothing(
    fake: FakeKV,
) -> None:
    """A 2PC transaction whose prepares are all logged but not yet resolved is committed:
    txn_status finds every PREPARE and answers COMMITTED, so settling sends no Decide."""
    async with fast_client(fake) as client:
        tx = two_group_writes(client)
        fake.hook = on_kind("resolve", DROP)
        commit_ts = await tx.commit()
        assert tx.ref is not None
        assert await client.txn_status(tx.ref, settle=True) == TxnStatus(
            TxnState.COMMITTED, commit_ts
        )
        assert fake.requests("decide") == []


async def _run_raises_commit_unknown_and_applies_once(fake: FakeKV, hook: Hook) -> None:
    """`run` of an increment whose one-phase commit meets `hook`: CommitUnknown, and the
    body's write is applied once (the lost first copy), never re-run."""
    async with fast_client(fake, timeout_s=3.0, attempt_timeout_s=0.3) as client:
        await client.put(A1, b"0")
        fake.hook = hook

        async def increment(tx: AsyncTransaction) -> None:
            tx.put(A1, b"%d" % (int(await tx.get(A1) or b"0") + 1))

        with pytest.raises(CommitUnknown):
            await client.run(increment)
    assert fake.store.value(A1) == b"1"


@with_fake
async def test_a_map_change_after_a_lost_one_phase_answer_is_commit_unknown(fake: FakeKV) -> None:
    """The first CommitOnePhase is applied and its answer lost; the re-send meets a shard
    map change. That does not mean "nothing was committed": `run` must not re-run it."""
    sent = []

    def hook(node: int, r: kv.Request) -> Any:
        if r.WhichOneof("op") != "commit_one_phase":
            return None
        sent.append(r)
        if len(sent) == 1:
            fake.map = fake.map.split(1, b"c", 4, (1, 2, 3), preferred_leader=1)
            fake.leaders[4] = 1
            return LOSE
        return error_response(r, kv.WRONG_SHARD, map_version=fake.map.version)

    await _run_raises_commit_unknown_and_applies_once(fake, hook)
    # Re-sent: a refused copy leaves the first waiting, and another goes out each attempt
    # timeout until the deadline (router.client `idempotent`).
    assert len(sent) >= 2


@with_fake
async def test_a_refused_re_send_after_a_lost_one_phase_answer_is_commit_unknown(
    fake: FakeKV,
) -> None:
    """Found by review: the first CommitOnePhase is applied and its answer lost; its re-send
    is refused (INVALID_ARGUMENT: a new leader whose clock lags refuses a timestamp too far
    ahead, node rule 9). That refusal says nothing of the first copy: CommitUnknown, and
    `run` must not re-run the body."""
    sent = []

    def hook(node: int, r: kv.Request) -> Any:
        if r.WhichOneof("op") != "commit_one_phase":
            return None
        sent.append(r)
        return LOSE if len(sent) == 1 else error_response(r, kv.INVALID_ARGUMENT)

    await _run_raises_commit_unknown_and_applies_once(fake, hook)
    # Re-sent: a refused copy leaves the first waiting, and another goes out each attempt
    # timeout until the deadline (router.client `idempotent`).
    assert len(sent) >= 2


def group_3_prepares(action: str) -> Hook:
    """A fake hook that applies `action` (DROP or LOSE) to every Prepare of group 3."""
    return lambda node, r: (
        action if r.WhichOneof("op") == "prepare" and r.prepare.header.group_id == 3 else None
    )


def two_group_writes(client: txn.AsyncClient) -> AsyncTransaction:
    """A transaction writing A1 (group 1, the coordinator) and C1 (group 3)."""
    tx = client.transaction()
    tx.put(A1, b"a")
    tx.put(C1, b"c")
    return tx


@with_fake
async def test_unreachable_participant_aborts_the_transaction(fake: FakeKV) -> None:
    fake.hook = group_3_prepares(DROP)
    async with fast_client(fake, timeout_s=0.8, attempt_timeout_s=0.2) as client:
        tx = two_group_writes(client)
        with pytest.raises(txn.Unavailable) as info:
            await tx.commit()
        await until(lambda: fake.count("decide") == 2 and not fake.store.intents, "the aborts")
    assert info.value.retryable and not info.value.maybe_committed
    assert type(info.value) is txn.Unavailable  # not the client's private subclass
    assert str(info.value).endswith("; the transaction was aborted")
    assert "may or may not" not in str(info.value)  # found by an application trial
    assert [r.decide.commit for _, r in fake.requests("decide")] == [False, False]
    assert fake.store.intents == {}


@with_fake
async def test_an_abort_that_could_not_be_recorded_is_not_called_an_abort(fake: FakeKV) -> None:
    """Found by a new user's review: the CommitUnknown of a prepare without an answer and an
    abort the coordinator group could not record also said "the transaction was aborted"."""
    async with fast_client(fake, timeout_s=0.8, attempt_timeout_s=0.2) as client:
        unknown = await _commit_with_the_abort_unrecorded(fake, client)
    assert "could not record the abort" in str(unknown)
    assert "the transaction was aborted" not in str(unknown)
    # The prepare was unanswered, not refused: it may have committed the transaction.
    assert "after a prepare went unanswered (it may have been logged" in str(unknown)
    assert "failed prepare" not in str(unknown)


@with_fake
async def test_a_refused_prepare_in_a_commit_unknown_gives_no_advice_of_its_own(
    fake: FakeKV,
) -> None:
    """Found by an application trial: the CommitUnknown of a refused Prepare whose abort
    could not be recorded carried the Conflict's "nothing was written, re-run the
    transaction" next to "it may still commit" and "settle it before re-running"."""

    def hook(node: int, r: kv.Request) -> Any:
        kind = r.WhichOneof("op")
        if kind == "prepare" and r.prepare.header.group_id == 3:
            return conflict_response(r, C1, "prepare")
        return DROP if kind == "decide" else None

    fake.hook = hook
    async with fast_client(fake, timeout_s=0.8, attempt_timeout_s=0.2) as client:
        with pytest.raises(CommitUnknown) as info:
            await two_group_writes(client).commit()
        fake.hook = None
    text = str(info.value)
    assert "could not record the abort after a failed prepare" in text
    assert "the prepare: conflict on key" in text
    assert "nothing was written" not in text and "re-run the transaction from" not in text


async def _commit_with_the_abort_unrecorded(fake: FakeKV, client: txn.AsyncClient) -> CommitUnknown:
    """`two_group_writes` committed while group 3's Prepares and every Decide are lost: no
    vote from group 3, and the abort cannot be recorded. Its CommitUnknown; the fake answers
    again afterwards."""
    prepare_3 = group_3_prepares(DROP)
    fake.hook = lambda node, r: DROP if r.WhichOneof("op") == "decide" else prepare_3(node, r)
    tx = two_group_writes(client)
    with pytest.raises(CommitUnknown) as info:
        await tx.commit()
    fake.hook = None
    return info.value


@with_fake
async def test_a_prepare_whose_answer_was_lost_may_have_committed_the_transaction(
    fake: FakeKV,
) -> None:
    """Both PREPAREs are logged but group 3's answers never arrive: the transaction committed
    when the last one was logged, so the client's abort (a recovery Decide, rule D3) must not
    record an abort over it. The coordinator's prevent round finds every participant
    prepared and records COMMIT, and the commit call returns it."""
    fake.hook = group_3_prepares(LOSE)
    async with fast_client(fake, timeout_s=0.8, attempt_timeout_s=0.2) as client:
        tx = two_group_writes(client)
        commit_ts = await tx.commit()
        fake.hook = None
        status = await client.txn_status(tx.ref)
        assert (status.state, status.commit_ts) == (TxnState.COMMITTED, commit_ts)
        assert (await client.get(A1), await client.get(C1)) == (b"a", b"c")
    assert tx.state is TransactionState.COMMITTED
    assert all(r.decide.recover for _, r in fake.requests("decide"))


# ---------------------------------------------------------------------------- run / transactional


@with_fake
async def test_run_retries_the_whole_function_with_a_fresh_transaction(fake: FakeKV) -> None:
    fake.store.write(A1, b"0", 5)
    ids: list[bytes] = []
    interfere = 2

    async def increment(tx: AsyncTransaction, key: bytes) -> int:
        nonlocal interfere
        ids.append(tx.txn_id)
        n = int(await tx.get(key) or b"0")
        if interfere:
            interfere -= 1
            fake.store.write(key, b"%d" % (100 + interfere), fake.store.tick())
        tx.put(key, b"%d" % (n + 1))
        return n + 1

    async with fast_client(fake) as client:
        assert await client.run(increment, A1) == 101
    assert len(ids) == 3 and len(set(ids)) == 3
    assert fake.store.value(A1) == b"101"


@pytest.mark.parametrize("op", ["commit_one_phase", "prepare"])
def test_a_conflict_at_the_top_of_a_commit_answer_is_a_conflict_not_a_commit(op: str) -> None:
    """Found by review: the commit let a CONFLICT through and read the answer's body, so a
    CONFLICT at the answer's top level (no node answers so) read as a commit at 0."""

    def top_level_conflict(node: int, request: kv.Request) -> kv.Response | None:
        if request.WhichOneof("op") != op:
            return None
        return kv.Response(id=request.id, error=kv.Error(code=kv.CONFLICT, message="top"))

    @with_fake
    async def check(fake: FakeKV) -> None:
        fake.hook = top_level_conflict
        async with fast_client(fake) as client:
            tx = client.transaction()
            tx.put(A1, b"x")
            if op == "prepare":
                tx.put(B2, b"y")
            with pytest.raises(Conflict):
                await tx.commit()
        assert fake.store.value(A1) is None

    check()


@with_fake
async def test_run_gives_up_with_too_many_retries(fake: FakeKV) -> None:
    fake.hook = on_kind("commit_one_phase", lambda r: conflict_response(r, A1, "commit"))
    calls = 0

    async def body(tx: AsyncTransaction) -> None:
        nonlocal calls
        calls += 1
        tx.put(A1, b"x")

    async with fast_client(fake, max_attempts=3) as client:
        with pytest.raises(TooManyRetries) as info:
            await client.run(body)
    assert calls == 3 and info.value.attempts == 3
    assert isinstance(info.value.last_error, Conflict)
    assert info.value.__cause__ is info.value.last_error


@with_fake
async def test_run_does_not_retry_commit_unknown_or_plain_errors(fake: FakeKV) -> None:
    fake.hook = on_kind("commit_one_phase", LOSE)
    calls = 0

    async def body(tx: AsyncTransaction, fail: bool) -> None:
        nonlocal calls
        calls += 1
        if fail:
            raise ValueError("not a database error")
        tx.put(A1, b"x")

    async with fast_client(fake, timeout_s=0.6, attempt_timeout_s=0.2) as client:
        with pytest.raises(CommitUnknown):
            await client.run(body, False)
        assert calls == 1
        with pytest.raises(ValueError):
            await client.run(body, True)
        assert calls == 2


@with_fake
async def test_transactional_functions_compose_into_one_transaction(fake: FakeKV) -> None:
    async with fast_client(fake) as client:

        @client.transactional
        async def add(tx: AsyncTransaction, key: bytes, n: int) -> int:
            total = int(await tx.get(key) or b"0") + n
            tx.put(key, b"%d" % total)
            return total

        @client.transactional
        async def transfer(tx: AsyncTransaction, src: bytes, dst: bytes, n: int) -> None:
            await add(tx, src, -n)
            await add(tx, dst, n)

        assert await add(A1, 10) == 10
        await transfer(A1, C1, 3)
        async with client.transaction() as tx:
            await transfer(tx, A1, C1, 1)
            assert tx.state is TransactionState.OPEN  # composed: not committed inside
        await decided(fake)
        assert fake.store.value(A1) == b"6" and fake.store.value(C1) == b"4"
        assert fake.count("commit_one_phase") == 1 and fake.count("prepare") == 4


@with_fake
async def test_a_decorated_async_method_gets_its_instance_and_its_transaction(
    fake: FakeKV,
) -> None:
    """Found by a client-API review: `self` and the transaction were swapped."""
    async with fast_client(fake) as client:

        class Counter:
            key = A1

            @client.transactional
            async def add(self, tx: AsyncTransaction, n: int) -> int:
                total = int(await tx.get(self.key) or b"0") + n
                tx.put(self.key, b"%d" % total)
                return total

        counter = Counter()
        assert await counter.add(2) == 2
        async with client.transaction() as tx:
            assert await counter.add(tx, 3) == 5
        assert await client.get(A1) == b"5"


@with_fake
async def test_module_level_transactional_takes_a_client_or_a_transaction(fake: FakeKV) -> None:
    @txn.transactional
    async def put_two(tx: AsyncTransaction, value: bytes) -> str:
        tx.put(A1, value)
        tx.put(B1, value)
        return "done"

    async with fast_client(fake) as client:
        assert await put_two(client, b"1") == "done"
        await decided(fake)  # its intents are released a round after commit returned
        async with client.transaction() as tx:
            await put_two(tx, b"2")
    assert fake.store.value(B1) == b"2"
    with pytest.raises(TypeError):
        put_two("not a client", b"3")


def test_generator_functions_are_refused() -> None:
    async def agen(tx: Any) -> Any:
        yield 1

    def gen(tx: Any) -> Any:
        yield 1

    client = txn.AsyncClient(["127.0.0.1:1"])
    for fn in (agen, gen):
        with pytest.raises(TypeError, match="generator"):
            client.transactional(fn)
        with pytest.raises(TypeError, match="generator"):
            txn.transactional(fn)
    with pytest.raises(TypeError, match="generator"):
        asyncio.run(client.run(gen))


# ---------------------------------------------------------------------------- context manager


@with_fake
async def test_a_transaction_dropped_open_on_the_loop_releases_its_update_locks(
    fake: FakeKV,
) -> None:
    """The finalizer of an AsyncTransaction dropped open runs on the client's own loop here
    (test_client_sync.py drops one in a caller's thread)."""
    async with fast_client(fake) as client:
        tx = client.transaction()
        await tx.get(B1, for_update=True)
        txn_id = tx.txn_id
        with pytest.warns(ResourceWarning, match=txn_id.hex()):
            del tx
            gc.collect()
        await until(lambda: fake.count("resolve") == 1, "the dropped transaction's Resolve")
        [(group, release)] = fake.requests("resolve")
        assert (group, release.resolve.txn_id, release.resolve.commit) == (2, txn_id, False)


@with_fake
async def test_exception_in_block_aborts_without_sending_anything(fake: FakeKV) -> None:
    async with fast_client(fake) as client:
        with pytest.raises(RuntimeError, match="boom"):
            async with client.transaction() as tx:
                tx.put(A1, b"a")
                tx.put(C1, b"c")
                raise RuntimeError("boom")
        assert tx.state is TransactionState.ABORTED
    assert not any(k in ("prepare", "commit_one_phase", "decide") for _, k, _ in fake.seen)
    assert fake.store.value(A1) is None


@with_fake
async def test_closed_transaction_refuses_use(fake: FakeKV) -> None:
    async with fast_client(fake) as client:
        tx = client.transaction()
        tx.put(A1, b"a")
        await tx.commit()
        with pytest.raises(TransactionClosed):
            tx.put(A1, b"b")
        with pytest.raises(TransactionClosed):
            await tx.get(A1)
        with pytest.raises(TransactionClosed):
            await tx.commit()
        tx.abort()  # a no-op on a committed transaction (review finding 7)
        assert tx.state is TransactionState.COMMITTED
        aborted = client.transaction()
        aborted.abort()
        aborted.abort()  # idempotent
        with pytest.raises(TransactionClosed):
            await aborted.scan(b"a")


@with_fake
async def test_cancelled_commit_after_prepare_aborts_in_background(fake: FakeKV) -> None:
    gate = asyncio.Event()

    def hook(node: int, request: kv.Request) -> Any:
        if request.WhichOneof("op") == "prepare" and request.prepare.header.group_id == 3:
            gate.set()
            return DROP
        return None

    fake.hook = hook
    async with fast_client(fake) as client:
        tx = two_group_writes(client)
        task = asyncio.create_task(tx.commit())
        await gate.wait()
        await asyncio.sleep(0.05)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        fake.hook = None
    # close() let the background abort finish.
    assert [r.decide.commit for _, r in fake.requests("decide")] == [False]
    assert fake.store.intents == {}


# ---------------------------------------------------------------------------- snapshots


@with_fake
async def test_snapshot_reads_at_one_timestamp(fake: FakeKV) -> None:
    async with fast_client(fake) as client:
        await client.put(A1, b"old")
        await client.put(C1, b"old")
        async with client.snapshot() as snap:
            ts = snap.read_ts
            assert ts is not None and ts >= client.last_seen_ts - 1
            await client.put(A1, b"new")
            assert await snap.get(A1) == b"old"
            assert await snap.scan(b"a") == [(A1, b"old"), (C1, b"old")]
        assert fake.count("timestamp") == 1
        gets = [r.get for _, r in fake.requests("get") if r.get.snapshot]
        assert gets and all(g.at_version == ts for g in gets)
        assert all(r.scan.snapshot and r.scan.at_version == ts for _, r in fake.requests("scan"))
        with pytest.raises(TransactionClosed):
            await snap.get(A1)
        later = client.snapshot(read_ts=ts)
        assert await later.get(A1) == b"old"
        assert fake.count("timestamp") == 1


@with_fake
async def test_snapshot_never_reads_below_what_the_client_saw(fake: FakeKV) -> None:
    async with fast_client(fake) as client:
        async with client.transaction() as tx:
            tx.put(A1, b"v")
        fake.store.clock = 1  # a node whose clock lags far behind
        async with client.snapshot() as snap:
            assert snap.read_ts is not None and tx.commit_ts is not None
            assert snap.read_ts >= tx.commit_ts
            assert await snap.get(A1) == b"v"


# ---------------------------------------------------------------------------- clock


@with_fake
async def test_commit_ts_proposal_is_above_every_timestamp_seen(fake: FakeKV) -> None:
    """Rule 5: the client's hybrid clock absorbs versions it reads."""
    future = (fake.store.clock + (10**9 << 12)) | 7
    fake.store.write(A1, b"v", future)
    async with fast_client(fake) as client, client.transaction() as tx:
        await tx.get(A1)
        tx.put(A2, b"w")
    [(_, request)] = fake.requests("commit_one_phase")
    assert request.commit_one_phase.ts > future
    assert tx.commit_ts is not None and tx.commit_ts > future


# ---------------------------------------------------------------------------- single-key helpers


@with_fake
async def test_single_key_helpers(fake: FakeKV) -> None:
    async with fast_client(fake) as client:
        version = await client.put(A1, b"1")
        assert await client.get(A1) == b"1"
        assert (await client.cas(A1, expected_version=version, new_value=b"2")).succeeded
        failed = await client.cas(A1, expected_value=b"nope", delete=True)
        assert not failed.succeeded and failed.current_value == b"2"
        assert await client.scan(b"a", b"z") == [(A1, b"2")]
        assert await client.delete(A1) > version
        assert await client.get(A1) is None
        with pytest.raises(txn.InvalidArgument):
            await client.cas(A1, new_value=b"x")
        with pytest.raises(txn.InvalidArgument, match="bytes"):
            await client.put("str key", b"x")  # type: ignore[arg-type]
        with pytest.raises(txn.InvalidArgument, match="empty"):
            await client.get(b"")


@with_fake
async def test_single_key_write_meeting_an_intent_is_retried_then_conflicts(fake: FakeKV) -> None:
    refusals = 2

    def hook(node: int, request: kv.Request) -> Any:
        nonlocal refusals
        if request.WhichOneof("op") == "put" and refusals:
            refusals -= 1
            return conflict_response(request, A1, "write")
        return None

    fake.hook = hook
    async with fast_client(fake) as client:
        await client.put(A1, b"x")
        assert fake.count("put") == 3
        fake.hook = lambda node, r: conflict_response(r, A1, "write")
        with pytest.raises(Conflict) as info:
            await client.put(A1, b"y", timeout_s=0.4)
    assert info.value.phase == "write"


@with_fake
async def test_txn_status_argument_forms(fake: FakeKV) -> None:
    async with fast_client(fake) as client:
        tx = client.transaction()
        tx.put(B1, b"b")
        tx.put(C1, b"c")
        await tx.commit()
        assert tx.ref is not None
        await decided(fake)
        by_ref = await client.txn_status(tx.ref)
        by_group = await client.txn_status(tx.txn_id, group_id=2)
        by_key = await client.txn_status(tx.txn_id, key=B1)
        # Found by review: the text README says to log (`str(err.ref)`) was refused.
        by_text = await client.txn_status(str(tx.ref))
        assert by_ref == by_group == by_key == by_text
        with pytest.raises(txn.InvalidArgument, match="TXN_ID_HEX:GROUP"):
            await client.txn_status(tx.txn_id.hex())
        assert by_ref.state is TxnState.COMMITTED and by_ref.commit_ts == tx.commit_ts
        assert (await client.txn_status(b"unknown-id", group_id=1)).state is TxnState.UNKNOWN
        with pytest.raises(txn.InvalidArgument):
            await client.txn_status(tx.txn_id)
        with pytest.raises(txn.InvalidArgument):
            await client.txn_status(tx.ref, group_id=1)


@with_fake
async def test_txn_status_reports_a_commit_whose_decision_is_not_recorded_yet(
    fake: FakeKV,
) -> None:
    """Parallel commits: every participant prepared IS committed, at max(prepare_ts), even
    before the decision record exists; one participant not prepared is still in progress."""
    fake.hook = on_kind("resolve", DROP)
    async with fast_client(fake, timeout_s=0.5) as client:
        tx = two_group_writes(client)
        commit_ts = await tx.commit()
        assert tx.ref is not None and fake.store.decisions == {}
        status = await client.txn_status(tx.ref)
        assert status == TxnStatus(TxnState.COMMITTED, commit_ts)
        with fake.lock:  # group 3's part vanishes, as if its Prepare had not arrived yet
            del fake.store.prepared[(tx.txn_id, 3)]
        assert (await client.txn_status(tx.ref)).state is TxnState.IN_PROGRESS


@with_fake
async def test_close_sends_the_resolves_of_a_commit_that_ends_while_it_drains(
    fake: FakeKV,
) -> None:
    """close() waits briefly for the background Resolves; a commit still in flight then
    ends during that wait, and its own Resolves were refused (`_spawn` after close), so
    its keys stayed locked until recovery (found by review: another client's read of them
    took about a second). Now they are sent, and close() waits for them too."""
    client = fast_client(fake)
    first = client.transaction()
    first.put(b"apple-1", b"1")
    first.put(b"plum-1", b"1")
    first_id = first.txn_id
    # The first commit's Resolves get no answer: its background tasks outlive close()'s start.
    fake.hook = lambda node, req: (
        DROP if req.WhichOneof("op") == "resolve" and req.resolve.txn_id == first_id else None
    )
    await first.commit()
    second = client.transaction()
    second.put(b"apple-2", b"2")
    second.put(b"plum-2", b"2")
    commit = asyncio.create_task(second.commit())
    await asyncio.sleep(0)  # its Prepares are on their way
    await client.close()
    await commit
    resolved = {
        req.resolve.header.group_id
        for _node, req in fake.requests("resolve")
        if req.resolve.txn_id == second.txn_id
    }
    assert resolved == {fake.group_of(b"apple-2"), fake.group_of(b"plum-2")}


@with_fake
async def test_a_close_cancelled_while_it_drains_still_closes(fake: FakeKV) -> None:
    """Found by a cancellation trial: a close cancelled while it waited for background
    Resolves (a timeout around it) left the client draining for good: every connection
    open, plain reads still served, and a later close returned at once. Now the closing
    goes on, and a later or concurrent close waits for it."""
    client = fast_client(fake)
    fake.hook = on_kind("resolve", DROP)  # the commit's Resolves outlive close()'s start
    tx = two_group_writes(client)
    await tx.commit()
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(client.close(), 0.01)
    second, third = client.close(), client.close()
    await asyncio.gather(second, third)
    with pytest.raises(txn.ClientClosed):
        await client.get(b"apple")


@with_fake
async def test_bad_arguments_are_invalid_argument_not_bare_python_errors(fake: FakeKV) -> None:
    """Out-of-range numbers and wrong types were ValueError / TypeError from deep inside
    (protobuf, comparisons), or surfaced only at commit (found by review)."""

    async def fenced_in_tx(client: txn.AsyncClient) -> None:
        async with client.transaction() as tx:
            tx.put_fenced(b"apple", b"v", lock=b"apple-lock", token=2**64)

    async def scan_in_tx(client: txn.AsyncClient) -> None:
        async with client.transaction() as tx:
            await tx.scan(b"a", b"b", 2.5)  # type: ignore[arg-type]

    async def snapshot_scan(client: txn.AsyncClient) -> None:
        async with client.snapshot() as snap:
            await snap.scan(b"a", b"b", "10")  # type: ignore[arg-type]

    cases = {
        "cas version -1": lambda c: c.cas(b"apple", expected_version=-1, new_value=b"x"),
        "cas version 2**64": lambda c: c.cas(b"apple", expected_version=2**64, new_value=b"x"),
        "snapshot read_ts 2**64": lambda c: c.snapshot(read_ts=2**64).get(b"apple"),
        "client.put_fenced token 2**64": lambda c: c.put_fenced(
            b"apple", b"v", lock=b"apple-lock", token=2**64
        ),
        "tx.put_fenced token 2**64": fenced_in_tx,
        "client.scan limit 2.5": lambda c: c.scan(b"a", b"b", 2.5),
        "tx.scan limit 2.5": scan_in_tx,
        "snapshot.scan limit '10'": snapshot_scan,
        "get timeout_s '1'": lambda c: c.get(b"apple", timeout_s="1"),
        "get timeout_s 0": lambda c: c.get(b"apple", timeout_s=0),
    }
    wrong: dict[str, str] = {}
    async with fast_client(fake) as client:
        for name, call in cases.items():
            try:
                result = call(client)
                if asyncio.iscoroutine(result):
                    await result
            except txn.InvalidArgument:
                continue
            except Exception as exc:  # the finding: anything else is wrong
                wrong[name] = repr(exc)
                continue
            wrong[name] = "no error"
    assert not wrong, wrong


def test_async_with_a_client_that_cannot_connect_closes_it() -> None:
    """`async with` connects on the first call, as `with Client(...)` does (found by a
    client-API review: it connected at once and failed on the first refusal, where the
    first call retries within its timeout), and a failed call leaves nothing open."""

    async def main() -> txn.AsyncClient:
        client = txn.AsyncClient("127.0.0.1:1", timeout_s=0.3)
        async with client:
            assert not client.routing._conns  # entering made no connection
            with pytest.raises(txn.DeadlineExceeded):
                await client.get(b"k")
        return client

    client = asyncio.run(main())
    assert client._closed and not client.routing._conns


def test_an_async_client_used_on_a_second_event_loop_says_so() -> None:
    """Its streams belong to the first loop: a call on a second one waited out the whole
    deadline and failed as "no answer ... (last: no attempt made)" (found by review)."""
    with fake_in_thread() as fake:
        client = fast_client(fake)
        asyncio.run(client.put(b"apple", b"1"))
        started = time.monotonic()
        with pytest.raises(txn.InvalidArgument, match="another event loop"):
            asyncio.run(client.get(b"apple"))
        assert time.monotonic() - started < 1.0


@with_fake
async def test_run_never_turns_a_maybe_applied_error_of_the_body_into_a_retry(
    fake: FakeKV,
) -> None:
    """run() checks a body's own error against what the body read (a changed read set makes
    it a retryable Conflict); a paxoskv error raised in the body (here one saying a write
    may have been applied) is the store's answer and stays as it is, or a write of the body
    could run twice (found by review: the body ran 20 times, then TooManyRetries)."""
    async with fast_client(fake) as client, fast_client(fake) as other:
        await client.put(b"apple", b"0")
        runs: list[int] = []

        async def body(tx: AsyncTransaction) -> None:
            runs.append(1)
            await tx.get(b"apple")
            await other.put(b"apple", b"%d" % len(runs))  # what the body read changes
            raise txn.ClientClosed("cut off mid-write", maybe_committed=True)

        with pytest.raises(txn.ClientClosed) as raised:
            await client.run(body)
        assert raised.value.maybe_committed and len(runs) == 1


# ---------------------------------------------------------------------------- commit paths


@with_fake
async def test_the_commit_resolves_carry_every_participant_and_every_vote(fake: FakeKV) -> None:
    """Node rule 12: a commit Resolve carries its proof, every participant's yes vote, and
    the participants (the coordinator's record keeps them for txn_status). The fake accepts
    a Resolve without them; a real node does not (mutants: votes=() and participants=()
    survived)."""
    async with fast_client(fake) as client:
        tx = two_group_writes(client)
        commit_ts = await tx.commit()
    resolves = {g: r.resolve for g, r in fake.requests("resolve")}
    assert sorted(resolves) == [1, 3]
    for resolve in resolves.values():
        assert resolve.commit and resolve.commit_ts == commit_ts
        assert list(resolve.participants) == [1, 3]
        assert sorted(v.group_id for v in resolve.votes) == [1, 3]
        assert max(v.prepare_ts for v in resolve.votes) == commit_ts


@with_fake
async def test_every_attempt_of_run_prepares_with_the_first_attempts_age(fake: FakeKV) -> None:
    """Wait-die by age (`AsyncClient._attempt`): a retry keeps the first attempt's
    priority, so a transaction that lost a conflict wins once it is the oldest (mutant:
    each attempt's Prepare carrying its own timestamp survived)."""
    refused = 1

    def hook(node: int, request: kv.Request) -> Any:
        nonlocal refused
        is_prepare_3 = (
            request.WhichOneof("op") == "prepare" and request.prepare.header.group_id == 3
        )
        if is_prepare_3 and refused:
            refused -= 1
            return conflict_response(request, C1, "prepare")
        return None

    fake.hook = hook
    async with fast_client(fake) as client:

        async def write(tx: AsyncTransaction) -> None:
            tx.put(A1, b"a")
            tx.put(C1, b"c")

        await client.run(write)
    prepares = [r.prepare for _, r in fake.requests("prepare")]
    assert len({p.txn_id for p in prepares}) == 2  # two attempts
    assert len({p.priority for p in prepares}) == 1 and prepares[0].priority > 0
    # The age is the first attempt's start, below the retry's own timestamp.
    assert prepares[0].priority < prepares[-1].ts


@with_fake
async def test_an_error_recording_the_abort_after_a_no_vote_is_commit_unknown(
    fake: FakeKV,
) -> None:
    """Rule 2: a no vote is "not committed" only once the abort is recorded; a Decide the
    coordinator refused (INTERNAL here; a shard map change likewise) recorded nothing, and
    a late copy of the refused PREPARE may still make recovery commit (mutant: raising the
    prepare's Conflict there survived)."""
    await _commit_after_a_no_vote(fake, on_kind("decide", lambda r: error_response(r, kv.INTERNAL)))


@with_fake
async def test_of_several_failed_prepares_the_conflict_is_raised(fake: FakeKV) -> None:
    """`_prepare_failure`: a Conflict first, whichever group failed first (mutant: the first
    failure raised, here the coordinator's ServerError, survived)."""

    def hook(node: int, request: kv.Request) -> Any:
        if request.WhichOneof("op") != "prepare":
            return None
        if request.prepare.header.group_id == 1:
            return error_response(request, kv.INTERNAL)
        return conflict_response(request, C1, "prepare")

    fake.hook = hook
    async with fast_client(fake) as client:
        tx = two_group_writes(client)
        with pytest.raises(Conflict) as info:
            await tx.commit()
    assert info.value.retryable and info.value.key == C1
    assert tx.state is TransactionState.ABORTED


@with_fake
async def test_a_server_error_at_a_prepare_is_not_maybe_committed_once_the_abort_is_recorded(
    fake: FakeKV,
) -> None:
    """A ServerError answering a write says maybe_committed; once the abort is recorded
    (rule 2) it is not, and the transaction is ABORTED, not UNKNOWN (mutant: keeping the
    flag survived)."""
    fake.hook = lambda node, r: (
        error_response(r, kv.INTERNAL)
        if r.WhichOneof("op") == "prepare" and r.prepare.header.group_id == 3
        else None
    )
    async with fast_client(fake) as client:
        tx = two_group_writes(client)
        with pytest.raises(txn.ServerError) as info:
            await tx.commit()
    assert not info.value.maybe_committed
    assert tx.state is TransactionState.ABORTED
    assert fake.store.decided(tx.txn_id) == {1: False}


# ---------------------------------------------------------------------------- txn_status


@with_fake
async def test_settling_a_transaction_in_progress_records_its_abort(fake: FakeKV) -> None:
    """Group 3's Prepare never arrived and the abort could not be recorded: the coordinator
    holds its PREPARE, so txn_status says IN_PROGRESS; `settle=True` must make it final
    (ABORTED, intents gone), never return IN_PROGRESS, which `run(settle_unknown)` would
    read as "not committed" and re-run while a late Prepare could still commit it (mutant:
    settling only UNKNOWN survived)."""
    async with fast_client(fake, timeout_s=0.8, attempt_timeout_s=0.2) as client:
        ref = (await _commit_with_the_abort_unrecorded(fake, client)).ref
        assert ref is not None
        assert (await client.txn_status(ref)).state is TxnState.IN_PROGRESS
        assert await client.txn_status(ref, settle=True) == TxnStatus(TxnState.ABORTED)
        assert (await client.txn_status(ref)).state is TxnState.ABORTED
    assert fake.store.intents == {}


@with_fake
async def test_an_in_progress_answer_without_participants_is_not_a_commit(fake: FakeKV) -> None:
    """`_implicit_commit`: an IN_PROGRESS answer naming no participants proves nothing
    (mutant: dropping that check reported COMMITTED at the coordinator's prepare_ts)."""

    def hook(node: int, request: kv.Request) -> Any:
        if request.WhichOneof("op") != "txn_status":
            return None
        body = kv.TxnStatusResponse(state=kv.TxnStatusResponse.IN_PROGRESS, prepare_ts=5)
        return kv.Response(id=request.id, txn_status=body)

    fake.hook = hook
    async with fast_client(fake) as client:
        status = await client.txn_status(TxnRef(b"t" * 16, 1))
    assert status.state is TxnState.IN_PROGRESS and not status.committed


# ---------------------------------------------------------------------------- run


@with_fake
async def test_a_body_error_after_its_own_commit_is_raised_unchanged(fake: FakeKV) -> None:
    """run(): what the body raises after its transaction committed is raised as it is; it
    is not checked against a view its own commit changed (mutant: checking it anyway made
    it a Conflict, "nothing was written", for a transaction that committed)."""
    calls = 0

    async def body(tx: AsyncTransaction) -> None:
        nonlocal calls
        calls += 1
        await tx.get(A1)
        tx.put(A1, b"x")
        await tx.commit()
        raise ValueError("after the commit")

    async with fast_client(fake) as client:
        with pytest.raises(ValueError, match="after the commit"):
            await client.run(body)
    assert calls == 1 and fake.store.value(A1) == b"x"


@with_fake
async def test_a_key_read_absent_in_a_scanned_range_does_not_make_the_view_changed(
    fake: FakeKV,
) -> None:
    """`_view_changed` compares the live keys of a scanned range; a key the body read as
    absent there is no change (mutant: counting it made every such body error a retried
    Conflict, ending in TooManyRetries instead of the body's error)."""
    fake.store.write(b"a1", b"1", fake.store.tick())
    calls = 0

    async def body(tx: AsyncTransaction) -> None:
        nonlocal calls
        calls += 1
        assert await tx.scan(b"a", b"b") == [(b"a1", b"1")]
        assert await tx.get(b"a5") is None
        raise ValueError("the body's own error")

    async with fast_client(fake, max_attempts=3) as client:
        with pytest.raises(ValueError, match="the body's own error"):
            await client.run(body)
    assert calls == 1


@with_fake
async def test_a_body_error_after_one_read_is_raised_without_reading_again(fake: FakeKV) -> None:
    """One read is a view of one moment: nothing to check, so a refusal after a single
    lookup (a uniqueness check's "taken") costs no second read round; two reads are
    checked (mutant: no check at all, caught by the straddling-commit tests)."""
    fake.store.write(b"email/ann", b"u1", fake.store.tick())

    async def signup(tx: AsyncTransaction, *keys: bytes) -> None:
        for key in keys:
            if await tx.get(key) is not None:
                raise KeyError(key)

    async with fast_client(fake) as client:
        with pytest.raises(KeyError):
            await client.run(signup, b"email/ann")
        assert fake.count("get") == 1
        with pytest.raises(KeyError):
            await client.run(signup, b"user/none", b"email/ann")
        assert fake.count("get") == 1 + 2 + 2  # the two reads, then their check


# ---------------------------------------------------------------------------- scans


@with_fake
async def test_a_scan_cut_by_its_limit_reads_nothing_past_what_it_returned(fake: FakeKV) -> None:
    """A buffered put pushes the store's last key out of a limited page: that key was not
    seen, so it is neither in the read set nor in the scanned range, and another
    transaction's write to it is no conflict (mutant: horizon = the store's last key)."""
    fake.store.write(b"a1", b"1", fake.store.tick())
    fake.store.write(b"a2", b"2", fake.store.tick())
    async with fast_client(fake) as client:
        tx = client.transaction()
        tx.put(b"a0", b"0")
        assert await tx.scan(b"a", b"b", limit=2) == [(b"a0", b"0"), (b"a1", b"1")]
        assert b"a2" not in tx.read_set
        await client.put(b"a2", b"changed")
        assert await tx.commit() > 0


@with_fake
async def test_a_scan_without_a_limit_returns_every_key_of_its_range(fake: FakeKV) -> None:
    """Found by a client-API review: a default limit of 1,000 cut a listing of 1,100 keys
    without a word (as client.scan, snapshot().scan and tx.scan alike). Now the default is
    every key, read page by page across the shards; a limit must be at least 1."""
    # 2,500 keys on both sides of the fake's split point "p": two shards, several pages.
    keys = [b"o%05d" % i for i in range(1_250)] + [b"p%05d" % i for i in range(1_250)]
    for key in keys:
        fake.store.write(key, b"v", fake.store.tick())
    expected = [(k, b"v") for k in keys]
    async with fast_client(fake) as client:
        assert await client.scan(b"o", b"q") == expected
        async with client.snapshot() as snap:
            assert await snap.scan(b"o", b"q") == expected
        tx = client.transaction()
        assert await tx.scan(b"o", b"q") == expected
        assert tx.scanned_ranges == [(b"o", b"q")]  # the whole range is validated
        tx.abort()
        for bad in (0, -1):
            with pytest.raises(InvalidArgument, match="at least 1"):
                await client.scan(b"o", b"q", bad)
        for i in range(MAX_TXN_ITEMS + 1 - len(keys)):
            fake.store.write(b"q%05d" % i, b"v", fake.store.tick())
        tx = client.transaction()
        with pytest.raises(LimitExceeded, match="give a limit"):
            await tx.scan(b"o", b"r", for_update=True)  # it may lock MAX_TXN_ITEMS at most
        tx.abort()


@with_fake
async def test_an_empty_range_scan_reads_nothing(fake: FakeKV) -> None:
    """scan(k, k) is empty without asking the store or recording a range: the transaction
    stays empty (mutant: `end < start` sent it and committed an empty range, which a node's
    range checks may refuse)."""
    async with fast_client(fake) as client:
        await client.get(A1)  # connected
        tx = client.transaction()
        assert await tx.scan(b"k", b"k") == []
        assert await tx.commit() == 0
    assert fake.requests("scan") == [] and fake.requests("commit_one_phase") == []


@with_fake
async def test_the_end_key_of_a_scanned_range_is_outside_it(fake: FakeKV) -> None:
    """[start, end): reading `end` after the scan, or fencing on it, is no phantom (mutant:
    `key <= end` in `_covered` made both a Conflict, on every retry)."""
    fake.store.write(b"b", b"lock", 7)
    async with fast_client(fake) as client:
        tx = client.transaction()
        assert await tx.scan(b"a", b"b") == []
        assert await tx.get(b"b") == b"lock"
        tx.put_fenced(b"a1", b"v", lock=b"b", token=7)
        assert await tx.commit() > 0


@with_fake
async def test_a_read_only_transaction_of_empty_scans_is_validated(fake: FakeKV) -> None:
    """Scans that returned nothing are reads all the same: Y seen empty before T1, X seen
    empty after it (T1 deleted x1 from X and added y1 to Y) is a view no serial order
    gives, and only the commit's phantom check (rule P6) catches it. So the commit must
    send both ranges (mutant: treating it as an empty transaction returned 0, sending
    nothing)."""
    fake.store.write(b"ax", b"x1", fake.store.tick())
    async with fast_client(fake) as client:
        tx = client.transaction()
        assert await tx.scan(b"c", b"d") == []  # Y, before T1
        t1 = fake.store.tick()
        fake.store.write(b"ax", None, t1)  # T1: one commit, two writes
        fake.store.write(b"cy", b"y1", t1)
        assert await tx.scan(b"a", b"b") == []  # X, after T1
        assert tx.read_set == {}
        await tx.commit()  # the fake does not check P6: see what was sent
        assert tx.commit_ts and tx.ref is not None
    [(_, request)] = fake.requests("commit_one_phase")
    ranges = [(r.start, r.end) for r in request.commit_one_phase.read_ranges]
    assert ranges == [(b"a", b"b"), (b"c", b"d")]


@with_fake
async def test_a_scan_that_saw_its_whole_range_in_exactly_limit_items_records_all_of_it(
    fake: FakeKV,
) -> None:
    """The store had less than asked (exhausted) and the merged page is exactly `limit`
    long: nothing was cut, so the whole [start, end) is the scanned range and a key added
    past the last one returned is a phantom (mutant: `< limit` recorded [start, a2\\0) only,
    and "count the rows, insert if fewer than N" was no longer serializable)."""
    fake.store.write(b"a1", b"1", fake.store.tick())
    async with fast_client(fake) as client:
        tx = client.transaction()
        tx.put(b"a2", b"2")
        assert await tx.scan(b"a", b"b", limit=2) == [(b"a1", b"1"), (b"a2", b"2")]
        await tx.commit()
    [(_, request)] = fake.requests("commit_one_phase")
    assert [(r.start, r.end) for r in request.commit_one_phase.read_ranges] == [(b"a", b"b")]


@with_fake
async def test_an_aborts_asker_ts_stays_below_the_prepares_after_a_wall_clock_step_back(
    fake: FakeKV,
) -> None:
    """Rule D4: the recovery Decide's `asker_ts` (the start) is at or below every
    prepare_ts, even when the wall clock stepped back between the start and the commit
    (mutant: the start read from the wall clock as it was survived; its asker_ts was
    then above the prepares, and D4's purge check could pass over a purged commit)."""
    step = [0]
    fake.store.write(C1, b"c", 5)
    async with fast_client(fake, wall_ns=lambda: time.time_ns() - step[0]) as client:
        tx = client.transaction()
        assert await tx.get(C1) == b"c"
        tx.put(A1, b"a")  # group 1 coordinates
        fake.store.write(C1, b"changed", fake.store.tick())  # group 3 votes no
        step[0] = 2_000_000_000  # the wall clock steps back 2 s
        with pytest.raises(Conflict):
            await tx.commit()
    prepare_ts = [r.prepare.ts for _, r in fake.requests("prepare")]
    asker = {r.decide.asker_ts for _, r in fake.requests("decide")}
    assert len(asker) == 1 and 0 < asker.pop() <= min(prepare_ts)


@with_fake
async def test_a_snapshot_older_than_the_retention_is_refused_as_snapshot_too_old(
    fake: FakeKV,
) -> None:
    """A node refuses a read below its MVCC collection horizon with SNAPSHOT_TOO_OLD; the
    client raises the retryable `SnapshotTooOld` at once (found by the simulator's runs of
    this client, where it was an INVALID_ARGUMENT, which says the request was malformed and
    is not retryable). A new snapshot reads again."""
    refused = 0

    def too_old(request: kv.Request) -> kv.Response:
        nonlocal refused
        refused += 1
        return error_response(request, kv.SNAPSHOT_TOO_OLD)

    fake.hook = on_kind("get", lambda r: too_old(r) if r.get.snapshot and not refused else None)
    async with fast_client(fake) as client:
        await client.put(A1, b"v")
        with pytest.raises(txn.SnapshotTooOld) as caught:
            await client.snapshot().get(A1)
        assert caught.value.retryable and not caught.value.maybe_committed
        assert refused == 1
        assert await client.snapshot().get(A1) == b"v"


@with_fake
async def test_group_of_names_the_group_holding_a_key_by_the_cached_map(fake: FakeKV) -> None:
    """For placement and printouts (the examples print where their tables live) without
    reaching into the routing client."""
    async with fast_client(fake) as client:
        with pytest.raises(txn.InvalidArgument, match="call connect") as early:
            client.group_of(A1)
        assert not early.value.retryable  # a usage mistake: no retry loop spins on it
        await client.connect()
        assert [client.group_of(k) for k in (A1, B1, C1)] == [1, 2, 3]
        assert [client.group_of(k) for k in (A1, B1, C1)] == [
            fake.group_of(k) for k in (A1, B1, C1)
        ]
        with pytest.raises(txn.InvalidArgument):
            client.group_of("apple")  # type: ignore[arg-type]
        with pytest.raises(txn.LimitExceeded):
            client.group_of(b"k" * (MAX_KEY_BYTES + 1))  # no key this long can exist


@with_fake
async def test_run_runs_a_transaction_that_wrote_nothing_again_when_its_commit_is_lost(
    fake: FakeKV,
) -> None:
    """Found by an application trial: a lookup that found nothing to do ended in a
    CommitUnknown no txn_status could settle; with nothing written, running it again is
    safe. A transaction that wrote something still raises it."""
    attempts: list[bytes] = []

    def lose_the_first_attempts(node: int, request: kv.Request) -> Any:
        first = request.WhichOneof("op") == "commit_one_phase" and len(attempts) == 1
        return DROP if first else None

    fake.hook = lose_the_first_attempts
    async with fast_client(fake, timeout_s=0.8, attempt_timeout_s=0.2) as client:

        async def look(tx: AsyncTransaction) -> bytes | None:
            attempts.append(tx.txn_id)
            return await tx.get(A1)

        assert await client.run(look) is None
        assert len(attempts) == 2 and fake.count("commit_one_phase") > 2
        fake.hook = on_kind("commit_one_phase", DROP)

        async def write(tx: AsyncTransaction) -> None:
            await tx.get(A1)
            tx.put(A2, b"x")

        with pytest.raises(CommitUnknown):
            await client.run(write)
