"""A transaction's own deadline: `client.transaction(timeout_s=)` bounds its reads and its
commit, and `client.run_within(timeout_s, fn)` bounds a whole retry loop (every attempt,
and the pauses between them), as FoundationDB's transaction timeout does.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from test_client_fakekv import (
    DROP,
    FakeKV,
    conflict_response,
    error_response,
    fake_in_thread,
    fast_client,
    on_kind,
    sync_client,
    with_fake,
)

from router import kv_pb2 as kv
from router.cache import Backoff
from txn import (
    AsyncTransaction,
    CommitUnknown,
    Conflict,
    DeadlineExceeded,
    InvalidArgument,
    Transaction,
    TransactionState,
)

APPLE = b"apple"  # group 1
LEMON = b"lemon"  # group 2

# Retries that would go on for minutes: only a deadline ends them early.
PATIENT = {"max_attempts": 10_000, "backoff": Backoff(base_s=0.01, max_s=0.02)}
SLACK_S = 0.5  # scheduling of a loaded 2-core machine, on top of a deadline


class _Clock:
    """A monotonic clock the test moves (`AsyncClient(monotonic=)`)."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@with_fake
async def test_past_its_timeout_a_read_and_the_commit_send_nothing(fake: FakeKV) -> None:
    """Once its timeout_s has passed, a read raises DeadlineExceeded naming it and the
    commit is refused unsent: nothing was written, and the update lock it took is freed
    (mutant: the check left out of the read, or of the commit)."""
    clock = _Clock()
    async with fast_client(fake, monotonic=clock) as client:
        await client.put(APPLE, b"1")
        tx = client.transaction(timeout_s=2)
        assert await tx.get(APPLE, for_update=True) == b"1"
        tx.put(APPLE, b"2")
        assert await tx.get(APPLE) == b"2"  # its own write: no read goes out
        clock.now += 2.5
        gets = fake.count("get")
        with pytest.raises(
            DeadlineExceeded, match=r"timeout_s \(2 s\) before its read of b'lemon'"
        ):
            await tx.get(LEMON)
        with pytest.raises(DeadlineExceeded, match=r"before its scan"):
            await tx.scan(b"a", b"z")
        assert fake.count("get") == gets and fake.count("scan") == 0
        resolves = fake.count("resolve")
        with pytest.raises(DeadlineExceeded, match="before its commit") as info:
            await tx.commit()
        assert not info.value.maybe_committed
        assert tx.state is TransactionState.ABORTED
        assert fake.count("commit_one_phase") == 0 and fake.count("prepare") == 0
        await _until(lambda: fake.count("resolve") > resolves)  # the update lock freed
        assert await client.get(APPLE) == b"1"


async def _until(condition: Any, deadline_s: float = 5.0) -> None:
    loop = asyncio.get_running_loop()
    end = loop.time() + deadline_s
    while not condition():
        assert loop.time() < end, "timed out waiting"
        await asyncio.sleep(0.005)


@with_fake
async def test_within_its_timeout_a_transaction_commits_as_any(fake: FakeKV) -> None:
    async with fast_client(fake) as client:
        async with client.transaction(timeout_s=5) as tx:
            tx.put(APPLE, b"a")
            tx.put(LEMON, b"l")
        assert tx.commit_ts
        assert await client.get(LEMON) == b"l"


@pytest.mark.parametrize(("client_s", "tx_s"), [(5.0, 0.3), (0.3, 5.0)])
@with_fake
async def test_a_read_nobody_answers_ends_at_the_sooner_deadline(
    fake: FakeKV, client_s: float, tx_s: float
) -> None:
    """A dropped read ends at the transaction's timeout_s or the client's, whichever comes
    first (mutants: the read keeps the client's deadline; `_timeout_for` without the
    client's cap)."""
    async with fast_client(fake, timeout_s=client_s) as client:
        await client.put(APPLE, b"1")
        fake.hook = on_kind("get", DROP)
        tx = client.transaction(timeout_s=tx_s)
        loop = asyncio.get_running_loop()
        started = loop.time()
        with pytest.raises(DeadlineExceeded):
            await tx.get(APPLE)
        assert loop.time() - started < 0.3 + SLACK_S
        tx.abort()


@with_fake
async def test_a_read_for_update_on_first_use_ends_at_the_transactions_deadline(
    fake: FakeKV,
) -> None:
    """Connecting and the read share one budget (found by review: a 0.4 s first connection
    then a dropped read for update took 0.91 s of a 0.5 s timeout_s)."""
    async with fast_client(fake) as client:
        ready = client._routing.ready
        calls: list[float] = []

        async def slow_first_ready(deadline: float) -> None:
            calls.append(deadline)
            if len(calls) == 1:
                await asyncio.sleep(0.4)
            await ready(deadline)

        client._routing.ready = slow_first_ready  # type: ignore[method-assign]
        fake.hook = on_kind("get", DROP)
        tx = client.transaction(timeout_s=0.5)
        loop = asyncio.get_running_loop()
        started = loop.time()
        with pytest.raises(DeadlineExceeded):
            await tx.get(APPLE, for_update=True)
        tx.abort()
        assert loop.time() - started < 0.5 + 0.25


@with_fake
async def test_run_within_bounds_the_settle_of_a_lost_commit(fake: FakeKV) -> None:
    """settle_unknown: a commit that fails fast with its outcome unknown leaves most of the
    time to its settle, which ends at run_within's deadline too, not the client's 5 s; the
    loss stands (mutant: the settle given the client's timeout_s)."""

    def hook(node: int, r: kv.Request) -> Any:
        kind = r.WhichOneof("op")
        if kind == "commit_one_phase":
            return error_response(r, kv.INTERNAL)
        return DROP if kind == "decide" else None

    async with fast_client(fake, settle_unknown=True) as client:
        fake.hook = hook
        loop = asyncio.get_running_loop()
        started = loop.time()
        with pytest.raises(CommitUnknown):
            await client.run_within(0.5, lambda tx: tx.put(APPLE, b"x"))
        assert loop.time() - started < 0.5 + 0.25


@with_fake
async def test_a_commit_nobody_answers_ends_at_the_transactions_deadline(fake: FakeKV) -> None:
    async with fast_client(fake) as client:
        fake.hook = on_kind("commit_one_phase", DROP)
        tx = client.transaction(timeout_s=0.3)
        tx.put(APPLE, b"1")
        loop = asyncio.get_running_loop()
        started = loop.time()
        with pytest.raises(CommitUnknown):
            await tx.commit()
        assert loop.time() - started < 0.3 + SLACK_S


@with_fake
async def test_run_within_bounds_every_attempt_and_pause(fake: FakeKV) -> None:
    """Every commit refused: `run` would retry 10,000 times; `run_within` ends at its
    deadline with the last refusal as the cause, over several attempts (mutant: each
    attempt given the whole timeout_s anew)."""
    async with fast_client(fake, **PATIENT) as client:
        fake.hook = on_kind("commit_one_phase", lambda r: conflict_response(r, APPLE, "commit"))
        attempts = 0

        async def body(tx: AsyncTransaction, value: bytes) -> None:
            nonlocal attempts
            attempts += 1
            await tx.get(APPLE)
            tx.put(APPLE, value)

        loop = asyncio.get_running_loop()
        started = loop.time()
        with pytest.raises(DeadlineExceeded) as info:
            await client.run_within(0.4, body, b"v")
        assert loop.time() - started < 0.4 + SLACK_S
        assert attempts >= 2
        assert isinstance(info.value.__cause__, Conflict)


@with_fake
async def test_run_within_counts_from_the_call_not_from_each_attempt(fake: FakeKV) -> None:
    """The first attempt uses most of the time and is refused; the second finds the rest
    too short for its read (mutant: each attempt's transaction given the whole timeout_s
    from its own start)."""
    clock = _Clock()
    async with fast_client(fake, monotonic=clock, **PATIENT) as client:
        fake.hook = on_kind("commit_one_phase", lambda r: conflict_response(r, APPLE, "commit"))
        attempts = 0

        async def body(tx: AsyncTransaction) -> None:
            nonlocal attempts
            attempts += 1
            clock.now += 0.6  # a slow body, by the client's clock
            await tx.get(APPLE)
            tx.put(APPLE, b"v")

        with pytest.raises(DeadlineExceeded, match=r"timeout_s \(1 s\) before its read"):
            await client.run_within(1, body)
        assert attempts == 2


@with_fake
async def test_run_within_bounds_a_body_read_nobody_answers(fake: FakeKV) -> None:
    async with fast_client(fake, **PATIENT) as client:
        fake.hook = on_kind("get", DROP)

        async def body(tx: AsyncTransaction) -> bytes | None:
            return await tx.get(APPLE)

        loop = asyncio.get_running_loop()
        started = loop.time()
        with pytest.raises(DeadlineExceeded):
            await client.run_within(0.3, body)
        assert loop.time() - started < 0.3 + SLACK_S


@with_fake
async def test_run_within_passes_its_arguments_on(fake: FakeKV) -> None:
    """Arguments after `fn` are the body's, a `timeout_s` among them (the deadline is
    positional only), and the body's result is returned."""
    async with fast_client(fake) as client:

        def body(tx: AsyncTransaction, key: bytes, *, timeout_s: float) -> float:
            tx.put(key, b"%g" % timeout_s)
            return timeout_s

        assert await client.run_within(5, body, APPLE, timeout_s=1.5) == 1.5
        assert await client.get(APPLE) == b"1.5"
        for bad in (None, 0, -1, "1", True):
            with pytest.raises(InvalidArgument, match="timeout_s"):
                await client.run_within(bad, body, APPLE, timeout_s=1)  # type: ignore[arg-type]
            with pytest.raises(InvalidArgument, match="timeout_s"):
                client.transaction(timeout_s=bad if bad is not None else 0)  # type: ignore[arg-type]


@with_fake
async def test_run_within_bounds_a_transactional_function(fake: FakeKV) -> None:
    """A `@client.transactional` function given to run_within runs in each attempt's
    transaction (not a retry loop of its own inside), so the deadline bounds it all."""
    async with fast_client(fake, **PATIENT) as client:

        @client.transactional
        async def bump(tx: AsyncTransaction, key: bytes) -> bytes | None:
            before = await tx.get(key)
            tx.put(key, (before or b"") + b"+")
            return before

        assert await client.run_within(5, bump, APPLE) is None
        assert await client.get(APPLE) == b"+"
        fake.hook = on_kind("commit_one_phase", lambda r: conflict_response(r, APPLE, "commit"))
        started = time.monotonic()
        with pytest.raises(DeadlineExceeded) as info:
            await client.run_within(0.3, bump, APPLE)
        assert time.monotonic() - started < 0.3 + SLACK_S
        assert isinstance(info.value.__cause__, Conflict)
        fake.hook = None
        assert await client.get(APPLE) == b"+"


def test_the_sync_client_takes_the_same_deadlines() -> None:
    with fake_in_thread() as fake, sync_client(fake, **PATIENT) as client:
        with client.transaction(timeout_s=5) as tx:
            tx.put(APPLE, b"1")
        assert client.get(APPLE) == b"1"

        def body(tx: Transaction, value: bytes) -> bytes | None:
            before = tx.get(APPLE)
            tx.put(APPLE, value)
            return before

        assert client.run_within(5, body, b"2") == b"1"
        fake.hook = on_kind("commit_one_phase", lambda r: conflict_response(r, APPLE, "commit"))
        with pytest.raises(DeadlineExceeded) as info:
            client.run_within(0.3, body, b"3")
        assert isinstance(info.value.__cause__, Conflict)
        # The client's timeout_s is 5 s: each of these ends at its own 0.3 s.
        fake.hook = on_kind("get", DROP)
        started = time.monotonic()
        with pytest.raises(DeadlineExceeded):
            client.run_within(0.3, body, b"3")
        assert time.monotonic() - started < 0.3 + SLACK_S
        tx = client.transaction(timeout_s=0.3)
        started = time.monotonic()
        with pytest.raises(DeadlineExceeded):
            tx.get(LEMON)
        assert time.monotonic() - started < 0.3 + SLACK_S
        tx.abort()
        fake.hook = None
        assert client.get(APPLE) == b"2"
