"""The client under cancellation, concurrent use and cleanup: what a user of
asyncio.wait_for, TaskGroup or `except: tx.abort(); raise` sees (found by review; each test
failed before its fix)."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import pytest
from test_client_fakekv import (
    LOSE,
    FakeKV,
    FakeNode,
    conflict_response,
    fast_client,
    on_kind,
    until,
    with_fake,
)

import txn
from router import kv_pb2 as kv
from txn import AsyncTransaction, TransactionClosed, TransactionState

A1 = b"apple"  # group 1
B1 = b"grape"  # group 2
C1 = b"plum"  # group 3


# ------------------------------------------------------------------ 1. read during commit


@with_fake
async def test_a_read_in_flight_when_commit_starts_is_refused(fake: FakeKV) -> None:
    """A read still in flight when another coroutine commits the transaction is refused
    (TransactionClosed, as FoundationDB's used_during_commit): the commit validated the read
    set as it was when it began. It used to return a value written after the commit and
    record it in a read set no commit checked."""
    release = asyncio.Event()

    def hook(node: int, request: kv.Request) -> Any:
        if request.WhichOneof("op") == "get" and request.get.key == B1 and not release.is_set():
            return conflict_response(request, B1, "read")  # an intent: the client re-sends
        return None

    async with fast_client(fake) as client:
        await client.put(B1, b"100")
        fake.hook = hook
        tx = client.transaction()
        tx.put(A1, b"x")
        read = asyncio.create_task(tx.get(B1))
        await until(lambda: fake.count("get") >= 3, "the read re-sending past the intent")
        await tx.commit()
        assert tx.state is TransactionState.COMMITTED
        await client.put(B1, b"0")  # B1 changes after the commit
        release.set()
        outcome: Any
        try:
            outcome = await read
        except TransactionClosed as exc:
            outcome = exc
        committed_reads = [
            r.key for _, r in fake.requests("commit_one_phase") for r in r.commit_one_phase.reads
        ]
        assert isinstance(outcome, TransactionClosed), (
            f"a read of the committed transaction returned {outcome!r}; its read set now "
            f"says {tx.read_set}, but the commit validated reads {committed_reads}"
        )


# ------------------------------------------------------------------ 2. run() after a commit


@with_fake
async def test_run_does_not_rerun_a_body_whose_transaction_committed(fake: FakeKV) -> None:
    """A body that committed its transaction itself (to use tx.commit_ts as a fencing token,
    say) and then raised a retryable error is not run again: that would apply it twice. It
    used to be, as run() looked only at the error."""
    runs = 0
    async with fast_client(fake) as client:

        async def body(tx: AsyncTransaction) -> int:
            nonlocal runs
            runs += 1
            n = int(await tx.get(A1) or b"0")
            tx.put(A1, b"%d" % (n + 1))
            token = await tx.commit()
            if runs == 1:
                # e.g. `await client.put(b"audit/...", token)` whose leader is unavailable
                raise txn.Unavailable(f"downstream write with token {token} failed")
            return token

        with contextlib.suppress(txn.Unavailable):  # raising it is fine; re-running is not
            await client.run(body)
        assert await client.get(A1) == b"1", (
            f"body ran {runs} times; a committed increment re-applied"
        )


# ------------------------------------------------------------------ 3. cancelled before send


def test_commit_cancelled_before_anything_was_sent_has_a_ref_or_is_aborted() -> None:
    """A commit cancelled while the client is still connecting sent nothing, so it is
    ABORTED. It used to be UNKNOWN with no ref, and the advice to ask txn_status(tx.ref)
    then failed with InvalidArgument."""
    original = FakeNode.GetShardMap

    async def slow_map(self: FakeNode, request: Any, context: Any) -> Any:
        await asyncio.sleep(0.5)
        return await original(self, request, context)

    async def main() -> None:
        fake = FakeKV()
        FakeNode.GetShardMap = slow_map  # type: ignore[method-assign]
        try:
            await fake.start()
        finally:
            FakeNode.GetShardMap = original  # type: ignore[method-assign]
        try:
            client = fast_client(fake)
            tx = client.transaction()
            tx.put(A1, b"x")
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(tx.commit(), 0.1)
            state, ref = tx.state, tx.ref
            detail = ""
            try:
                await client.txn_status(tx.ref)  # type: ignore[arg-type]
            except Exception as exc:
                detail = repr(exc)
            await client.close()
            assert fake.count("commit_one_phase") == 0
            assert state is TransactionState.ABORTED or ref is not None, (
                f"state {state.value}, ref {ref}; txn_status(tx.ref) -> {detail}"
            )
        finally:
            await fake.stop()

    asyncio.run(main())


# ------------------------------------------------------------------ 4. cancel while aborting


@with_fake
async def test_a_commit_cancelled_while_recording_its_abort_leaves_no_intents(
    fake: FakeKV,
) -> None:
    """2PC: group 3 votes no, group 1 (coordinator) prepared and holds an intent on A1; the
    client's recovery Decide(abort) gets no answer and the task is cancelled while it waits
    to re-send it. The abort still reaches the coordinator in the background, as after a
    cancellation during the prepares; it used to be dropped, leaving the intent to the
    participant's own recovery (resolve_after_ms on a real node, forever in the fake)."""
    decides = 0

    def hook(node: int, request: kv.Request) -> Any:
        nonlocal decides
        kind = request.WhichOneof("op")
        if kind == "prepare" and request.prepare.header.group_id == 3:
            return conflict_response(request, C1, "prepare")
        if kind == "decide":
            decides += 1
            if decides == 1:
                return "drop"
        return None

    fake.hook = hook
    async with fast_client(fake, attempt_timeout_s=0.3) as client:
        tx = client.transaction()
        tx.put(A1, b"a")
        tx.put(C1, b"c")
        task = asyncio.create_task(tx.commit())
        await until(lambda: decides > 0, "the abort's first Decide")
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert tx.state is TransactionState.UNKNOWN
        await until(lambda: not fake.store.intents, "the intents to be released")


# ------------------------------------------------------------------ 5. TaskGroup in a body


@with_fake
async def test_run_retries_a_conflict_raised_inside_a_task_group(fake: FakeKV) -> None:
    """A retryable Conflict from parallel reads in an asyncio.TaskGroup reaches run() as
    ExceptionGroup([Conflict]) and is retried like a plain one. It used to leave run() as an
    ExceptionGroup."""
    reads = 0

    def hook(node: int, request: kv.Request) -> Any:
        nonlocal reads
        if request.WhichOneof("op") == "get" and request.get.key == C1:
            reads += 1
            if reads == 1:  # the first attempt meets a (wounding) lock conflict
                return conflict_response(request, C1, "read")
        return None

    fake.hook = hook
    async with fast_client(fake) as client:

        async def body(tx: AsyncTransaction) -> None:
            async with asyncio.TaskGroup() as tg:
                a = tg.create_task(tx.get(A1, for_update=True))
                c = tg.create_task(tx.get(C1, for_update=True))  # for update: not re-sent
            tx.put(A1, b"%d" % (int(a.result() or b"0") + 1))
            tx.put(C1, b"%d" % (int(c.result() or b"0") + 1))

        try:
            await client.run(body)
        except BaseExceptionGroup as eg:
            pytest.fail(f"run() raised {eg!r} instead of retrying a Conflict")
        assert await client.get(A1) == b"1"


# ------------------------------------------------------------------ 6. cleanup hides CommitUnknown


@with_fake
async def test_manual_cleanup_after_commit_unknown_does_not_hide_it(fake: FakeKV) -> None:
    """`except: tx.abort(); raise` after a commit whose outcome is unknown keeps the
    CommitUnknown (abort() does nothing on a committed or unknown transaction, as
    SQLAlchemy's rollback() after a commit). abort() used to raise TransactionClosed, which
    replaced it, and a caller reading err.maybe_committed saw False for a commit that landed."""
    fake.hook = on_kind("commit_one_phase", LOSE)
    async with fast_client(fake, timeout_s=1.0, attempt_timeout_s=0.3) as client:
        tx = client.transaction()
        caught: BaseException | None = None
        try:
            try:
                tx.put(A1, b"1")
                await tx.commit()
            except BaseException:
                tx.abort()
                raise
        except txn.PaxosKVError as exc:
            caught = exc
        assert fake.store.value(A1) == b"1"  # it committed
        assert caught is not None and caught.maybe_committed, (
            f"the caller saw {caught!r} (maybe_committed={getattr(caught, 'maybe_committed', None)})"
        )


# ------------------------------------------------------------------ 7. closed while connecting


@with_fake
async def test_a_read_for_update_of_a_transaction_aborted_while_it_connects_takes_no_lock(
    fake: FakeKV,
) -> None:
    """A read for update waiting for the client's first connect when another task aborts
    the transaction is not sent. It used to go out after the abort, which had sent its
    Resolve(abort) to the lock groups it knew (none yet): the leader granted a lock nobody
    would release until LOCK_TTL_S."""
    client = fast_client(fake)
    connecting, connected = asyncio.Event(), asyncio.Event()
    ready = client._ready

    async def slow_first_connect(deadline: Any = None) -> None:
        connecting.set()
        await connected.wait()
        await ready(deadline)

    client._ready = slow_first_connect  # type: ignore[method-assign]
    try:
        tx = client.transaction()
        read = asyncio.create_task(tx.get(B1, for_update=True))
        await asyncio.wait_for(connecting.wait(), 5)  # the read waits for the first connect
        tx.abort()
        connected.set()
        with contextlib.suppress(TransactionClosed):
            await read
        locking = [r for _, r in fake.requests("get") if r.get.lock_txn_id == tx.txn_id]
        resolves = [r for _, r in fake.requests("resolve") if r.resolve.txn_id == tx.txn_id]
        assert not locking or resolves, (
            f"{len(locking)} read(s) for update of the aborted transaction reached the "
            f"leader and took its lock; no Resolve(abort) follows ({len(resolves)})"
        )
    finally:
        await client.close()


@with_fake
async def test_a_failed_read_for_update_leaves_the_key_unlocked_for_the_next_one(
    fake: FakeKV,
) -> None:
    """A read for update marked its key locked before the read: when that read failed (an
    older transaction took the lock) and the caller went on, the next read for update of the
    key returned the earlier plain read's value without taking the lock (found by review;
    the commit still validates the read, but it could abort where the lock makes it wait)."""
    async with fast_client(fake) as client:
        await client.put(B1, b"100")
        tx = client.transaction()
        assert await tx.get(B1) == b"100"  # a plain read: its value is remembered
        read_latest = client._read_latest
        calls = 0

        async def lock_taken_once(*args: Any, **kwargs: Any) -> Any:
            nonlocal calls
            calls += 1
            if calls == 1:
                raise txn.Conflict(B1, b"older", "read", "an older transaction took the lock")
            return await read_latest(*args, **kwargs)

        client._read_latest = lock_taken_once  # type: ignore[method-assign]
        with pytest.raises(txn.Conflict):
            await tx.get(B1, for_update=True)
        assert await tx.get(B1, for_update=True) == b"100"
        assert calls == 2, "the second read for update was answered without taking the lock"
        tx.abort()


@with_fake
async def test_a_scan_in_flight_when_commit_starts_is_refused(fake: FakeKV) -> None:
    """As `test_a_read_in_flight_when_commit_starts_is_refused`, for a scan (mutant: the
    scan's own check after its await survived): its keys and range would join a read set
    no commit validated."""
    release = asyncio.Event()

    def hook(node: int, request: kv.Request) -> Any:
        if request.WhichOneof("op") == "scan" and not release.is_set():
            return conflict_response(request, b"m1", "read")  # an intent: re-sent
        return None

    async with fast_client(fake) as client:
        await client.put(b"m1", b"100")
        fake.hook = hook
        tx = client.transaction()
        tx.put(A1, b"x")
        scan = asyncio.create_task(tx.scan(b"m", b"n"))
        await until(lambda: fake.count("scan") >= 3, "the scan re-sending past the intent")
        await tx.commit()
        assert tx.state is TransactionState.COMMITTED
        await client.put(b"m2", b"after")  # the range changes after the commit
        release.set()
        outcome: Any
        try:
            outcome = await scan
        except TransactionClosed as exc:
            outcome = exc
        assert isinstance(outcome, TransactionClosed), (
            f"a scan of the committed transaction returned {outcome!r}; read set {tx.read_set}"
        )
