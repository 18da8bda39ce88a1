"""`run` (async and sync) sleeps the policy's delay between attempts, passes it the real
elapsed time, and runs at most max_attempts times. Deterministic: the sleeps
and the policy's arguments are recorded, nothing is timed."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from test_client_fakekv import (
    DROP,
    FakeKV,
    conflict_response,
    fake_in_thread,
    fast_client,
    on_kind,
    sync_client,
    with_fake,
)

from router.cache import Backoff
from txn import (
    AsyncTransaction,
    CommitUnknown,
    Conflict,
    InvalidArgument,
    RetryEvent,
    TooManyRetries,
    Transaction,
)

A1 = b"apple"


def _always_conflict(fake: FakeKV) -> None:
    fake.hook = on_kind("commit_one_phase", lambda r: conflict_response(r, A1, "commit"))


def _record_policy(client: Any) -> list[tuple[int, float, float]]:
    """(attempts, elapsed_s, delay) of every next_delay call that returned a delay."""
    calls: list[tuple[int, float, float]] = []
    inner = client._policy.next_delay

    def next_delay(exc: BaseException, attempts: int, elapsed_s: float) -> float | None:
        delay = inner(exc, attempts, elapsed_s)
        if delay is not None:
            calls.append((attempts, elapsed_s, delay))
        return delay

    client._policy.next_delay = next_delay
    return calls


@contextlib.contextmanager
def _recorded_async_sleeps() -> Iterator[list[float]]:
    """Every delay `asyncio.sleep` is called with meanwhile (and still taken)."""
    slept: list[float] = []
    real_sleep = asyncio.sleep

    async def recording_sleep(delay: float, *args: Any) -> Any:
        slept.append(delay)
        return await real_sleep(delay, *args)

    asyncio.sleep = recording_sleep  # type: ignore[assignment]
    try:
        yield slept
    finally:
        asyncio.sleep = real_sleep  # type: ignore[assignment]


@with_fake
async def test_async_run_sleeps_each_delay_and_reports_elapsed_time(fake: FakeKV) -> None:
    _always_conflict(fake)

    async def body(tx: AsyncTransaction) -> None:
        tx.put(A1, b"x")

    client = fast_client(fake, max_attempts=4, backoff=Backoff(base_s=0.02, max_s=0.02))
    async with client:
        calls = _record_policy(client)
        with _recorded_async_sleeps() as slept, pytest.raises(TooManyRetries) as info:
            await client.run(body)
    assert info.value.attempts == 4
    delays = [d for _, _, d in calls]
    assert len(delays) == 3
    for d in delays:
        assert d > 0 and d in slept  # the pause was really taken
    # After k pauses at least their sum has passed: elapsed_s is measured, not 0.
    assert calls[-1][1] >= 0.99 * sum(delays[:-1]) > 0


def test_sync_run_sleeps_each_delay_runs_max_attempts_and_reports_elapsed_time(
    monkeypatch: Any,
) -> None:
    with fake_in_thread() as fake:
        _always_conflict(fake)
        me = threading.current_thread()
        slept: list[float] = []
        real_sleep = time.sleep

        def recording_sleep(delay: float) -> None:
            if threading.current_thread() is me:
                slept.append(delay)
            real_sleep(delay)

        runs = 0

        def body(tx: Transaction) -> None:
            nonlocal runs
            runs += 1
            tx.put(A1, b"x")

        with sync_client(fake, max_attempts=3, backoff=Backoff(base_s=0.02, max_s=0.02)) as client:
            calls = _record_policy(client)
            monkeypatch.setattr(time, "sleep", recording_sleep)
            with pytest.raises(TooManyRetries) as info:
                client.run(body)
        assert runs == 3 and info.value.attempts == 3
        delays = [d for _, _, d in calls]
        assert [a for a, _, _ in calls] == [1, 2]
        for d in delays:
            assert d > 0 and d in slept
        assert calls[-1][1] >= 0.99 * delays[0] > 0


def _conflicts_first(fake: FakeKV, times: int) -> None:
    """The first `times` one-phase commits meet a conflict on A1."""
    left = [times]

    def hook(node: int, request: Any) -> Any:
        if request.WhichOneof("op") == "commit_one_phase" and left[0] > 0:
            left[0] -= 1
            return conflict_response(request, A1, "commit")
        return None

    fake.hook = hook


@with_fake
async def test_on_retry_is_told_each_attempt_its_error_and_pause(fake: FakeKV) -> None:
    """Asked for by an application trial: `run` retried out of sight, so a transaction
    that took 16 attempts could not be explained. `on_retry` gets every retry's reason."""
    _conflicts_first(fake, 2)
    events: list[RetryEvent] = []

    async def body(tx: AsyncTransaction) -> str:
        tx.put(A1, b"x")
        return "done"

    async with fast_client(fake, on_retry=events.append) as client:
        with _recorded_async_sleeps() as slept:
            assert await client.run(body) == "done"
        assert [e.attempt for e in events] == [1, 2]
        for event in events:
            assert isinstance(event.error, Conflict) and event.error.key == A1
            assert event.error.phase == "commit" and event.pause_s in slept
        assert 0 <= events[0].elapsed_s <= events[1].elapsed_s
    # A transaction that wrote nothing, whose commit's answer was lost, runs again too.
    events.clear()
    fake.hook = on_kind("commit_one_phase", DROP)
    async with fast_client(
        fake, timeout_s=0.8, attempt_timeout_s=0.2, on_retry=events.append
    ) as client:
        tries = 0

        async def look(tx: AsyncTransaction) -> bytes | None:
            nonlocal tries
            tries += 1
            if tries == 2:
                fake.hook = None
            return await tx.get(A1)

        assert await client.run(look) == b"x"
        assert [type(e.error) for e in events] == [CommitUnknown]


def test_an_on_retry_that_raises_ends_the_run_in_the_calling_thread() -> None:
    with fake_in_thread() as fake:
        _conflicts_first(fake, 5)
        me = threading.current_thread()
        seen: list[tuple[int, bool]] = []

        def on_retry(event: RetryEvent) -> None:
            seen.append((event.attempt, threading.current_thread() is me))
            if event.attempt == 2:
                raise RuntimeError("stop retrying")

        runs = 0

        def body(tx: Transaction) -> None:
            nonlocal runs
            runs += 1
            tx.put(A1, b"%d" % runs)

        with sync_client(fake, on_retry=on_retry) as client:
            with pytest.raises(RuntimeError, match="stop retrying"):
                client.run(body)
            assert seen == [(1, True), (2, True)] and runs == 2
            fake.hook = None
            assert client.get(A1) is None  # nothing committed
            with pytest.raises(InvalidArgument, match="on_retry"):
                sync_client(fake, on_retry="log")  # type: ignore[arg-type]

            async def awaited(event: RetryEvent) -> None:
                """Found by review: called, and its coroutine never awaited."""

            with pytest.raises(InvalidArgument, match="on_retry is a plain function"):
                sync_client(fake, on_retry=awaited)  # type: ignore[arg-type]


def test_the_sync_helpers_call_on_retry_in_the_calling_thread() -> None:
    """Found by review: `add`, `put_fenced` and `delete_fenced` retried on the client's
    event loop thread, so an on_retry that used the client raised RuntimeError there."""
    with fake_in_thread() as fake:
        me = threading.current_thread()
        seen: list[tuple[int, bool, bytes | None]] = []
        holder: list[Any] = []

        def on_retry(event: RetryEvent) -> None:
            seen.append((event.attempt, threading.current_thread() is me, holder[0].get(A1)))

        with sync_client(fake, on_retry=on_retry) as client:
            holder.append(client)
            lock = client.put(b"apple-lock", b"me")  # group 1, as A1: one-phase commits
            for write in (
                lambda: client.add(b"counter", 1),
                lambda: client.put_fenced(A1, b"x", lock=b"apple-lock", token=lock),
                lambda: client.delete_fenced(A1, lock=b"apple-lock", token=lock),
            ):
                seen.clear()
                _conflicts_first(fake, 2)
                assert write() > 0
                assert [(a, here) for a, here, _ in seen] == [(1, True), (2, True)]
