"""The one-transaction helpers (`add`, `put_fenced`, `delete_fenced`) of both clients: their
`timeout_s` bounds the whole call, retries and the commit included, and a fenced write
may carry a time to live; a write refused by its own checks leaves no fence behind.
"""

from __future__ import annotations

import asyncio
import random
from typing import Any

import pytest
from test_client_fakekv import (
    DROP,
    LOSE,
    FakeKV,
    conflict_response,
    decided,
    fake_in_thread,
    fast_client,
    on_kind,
    sync_client,
    with_fake,
)

from router import kv_pb2 as kv
from router.cache import Backoff
from router.limits import MAX_VALUE_BYTES
from txn import (
    AsyncClient,
    CommitUnknown,
    Conflict,
    DeadlineExceeded,
    InvalidArgument,
    LimitExceeded,
)

DATA = b"apple"  # group 1
LOCK = b"lock/printer"  # group 2
COUNTER = b"apple/count"  # group 1: a one-phase commit

# Retries that would go on for minutes: only a call's own timeout_s ends them early.
PATIENT = {"max_attempts": 10_000, "backoff": Backoff(base_s=0.01, max_s=0.02)}


async def _token(client: AsyncClient) -> int:
    async with client.transaction() as tx:
        tx.put(LOCK, b"A")
    assert tx.commit_ts
    return tx.commit_ts


def _write_items(fake: FakeKV, kind: str) -> list[kv.WriteItem]:
    return [w for _, r in fake.requests(kind) for w in getattr(r, kind).writes]


@with_fake
async def test_a_fenced_write_carries_its_time_to_live(fake: FakeKV) -> None:
    async with fast_client(fake) as client:
        token = await _token(client)
        await client.put_fenced(DATA, b"leader=n1", lock=LOCK, token=token, ttl_s=2.5)
        await decided(fake)
        [item] = [w for w in _write_items(fake, "prepare") if w.key == DATA]
        assert item.ttl_ms == 2500
        async with client.transaction() as tx:
            tx.put_fenced(DATA, b"leader=n2", lock=LOCK, token=token, ttl_s=0.5)
            tx.put_fenced(DATA, b"leader=n3", lock=LOCK, token=token)  # the last write wins
        await decided(fake)
        last = [w for w in _write_items(fake, "prepare") if w.key == DATA][-1]
        assert (last.value, last.ttl_ms) == (b"leader=n3", 0)


@with_fake
async def test_a_refused_fenced_write_leaves_no_fence(fake: FakeKV) -> None:
    """The write is checked before the lock joins the read set: a call that raised left
    the transaction as it was (it used to validate the lock at commit all the same)."""
    async with fast_client(fake) as client:
        tx = client.transaction()
        with pytest.raises(InvalidArgument, match="ttl"):
            tx.put_fenced(DATA, b"v", lock=LOCK, token=7, ttl_s=-1)
        with pytest.raises(LimitExceeded):
            tx.put_fenced(DATA, b"v" * (MAX_VALUE_BYTES + 1), lock=LOCK, token=7)
        with pytest.raises(InvalidArgument):
            tx.delete_fenced(b"", lock=LOCK, token=7)
        assert not tx._fences and not tx._reads and not tx._writes
        tx.put_fenced(DATA, b"v", lock=LOCK, token=8)  # no "two fencing tokens" from above
        assert tx._fences == {LOCK: 8}
        tx.abort()


@pytest.mark.parametrize("helper", ["add", "put_fenced", "delete_fenced"])
@with_fake
async def test_timeout_s_ends_the_retries(fake: FakeKV, helper: str) -> None:
    """Every commit refused: without `timeout_s` the call retries max_attempts times; with
    it, it gives up at the deadline: DeadlineExceeded when no try was under way, or CommitUnknown when the deadline cut a two-phase commit's abort
    short (a refused Prepare is "not committed" only once its abort is recorded)."""
    async with fast_client(fake, **PATIENT) as client:
        token = await _token(client)
        fake.hook = lambda node, r: (
            conflict_response(r, DATA, "prepare")
            if r.WhichOneof("op") in ("prepare", "commit_one_phase")
            else None
        )
        calls: dict[str, Any] = {
            "add": lambda: client.add(COUNTER, 1, timeout_s=0.3),
            "put_fenced": lambda: client.put_fenced(
                DATA, b"v", lock=LOCK, token=token, timeout_s=0.3
            ),
            "delete_fenced": lambda: client.delete_fenced(
                DATA, lock=LOCK, token=token, timeout_s=0.3
            ),
        }
        loop = asyncio.get_running_loop()
        started = loop.time()
        with pytest.raises((DeadlineExceeded, CommitUnknown)) as info:
            await calls[helper]()
        assert loop.time() - started < 0.3 + 1.0  # not max_attempts (10,000) tries
        assert fake.count("prepare") + fake.count("commit_one_phase") >= 2  # it did retry
        if isinstance(info.value, DeadlineExceeded):
            assert not info.value.maybe_committed
        else:
            assert helper != "add"  # a one-phase commit's refusal is final
            assert info.value.ref is not None and "could not record the abort" in str(info.value)


@with_fake
async def test_timeout_s_bounds_a_commit_left_unanswered(fake: FakeKV) -> None:
    """A commit nobody answers waits the call's `timeout_s`, not the client's (5 s here),
    and ends as CommitUnknown: it may have applied."""
    async with fast_client(fake, **PATIENT) as client:
        fake.hook = on_kind("commit_one_phase", DROP)
        loop = asyncio.get_running_loop()
        started = loop.time()
        with pytest.raises(CommitUnknown):
            await client.add(COUNTER, 1, timeout_s=0.4)
        assert loop.time() - started < 0.4 + 1.0  # the client's timeout_s is 5 s


@with_fake
async def test_timeout_s_is_checked(fake: FakeKV) -> None:
    async with fast_client(fake) as client:
        for bad in (0, -1, "1", True):
            with pytest.raises(InvalidArgument, match="timeout_s"):
                await client.add(COUNTER, 1, timeout_s=bad)  # type: ignore[arg-type]
    assert not fake.seen


def test_sync_helpers_take_ttl_s_and_timeout_s() -> None:
    with fake_in_thread() as fake, sync_client(fake, **PATIENT) as client:
        with client.transaction() as tx:
            tx.put(LOCK, b"A")
        token = tx.commit_ts
        assert token
        client.put_fenced(DATA, b"v", lock=LOCK, token=token, ttl_s=3, timeout_s=2)
        assert [w.ttl_ms for w in _write_items(fake, "prepare") if w.key == DATA] == [3000]
        assert client.add(COUNTER, 2, timeout_s=2) > 0
        fake.hook = on_kind("commit_one_phase", lambda r: conflict_response(r, COUNTER, "commit"))
        with pytest.raises(DeadlineExceeded) as info:
            client.add(COUNTER, 1, timeout_s=0.2)
        assert not info.value.maybe_committed
        fake.hook = None
        assert client.delete_fenced(DATA, lock=LOCK, token=token, timeout_s=2) > 0
        assert client.get(DATA) is None


class _Half(random.Random):
    """Jitter fixed at half the ceiling: the pause before a retry is known."""

    def random(self) -> float:  # type: ignore[override]
        return 0.5


@with_fake
async def test_no_pause_outlasts_timeout_s(fake: FakeKV) -> None:
    """A pause that would end past the call's deadline is not taken: the call ends at the
    first refusal, as DeadlineExceeded caused by it (mutant: run's loop pausing by the
    client's own policy slept 0.5 s past a 0.2 s timeout_s)."""
    slow = Backoff(base_s=1.0, max_s=1.0, multiplier=1)
    async with fast_client(fake, backoff=slow, rng=_Half(0), max_attempts=100) as client:
        fake.hook = on_kind("commit_one_phase", lambda r: conflict_response(r, COUNTER, "commit"))
        loop = asyncio.get_running_loop()
        started = loop.time()
        with pytest.raises(DeadlineExceeded) as info:
            await client.add(COUNTER, 1, timeout_s=0.2)
        assert loop.time() - started < 0.2
        assert isinstance(info.value.__cause__, Conflict)
        assert fake.count("commit_one_phase") == 1


@with_fake
async def test_timeout_s_bounds_the_stale_fence_check(fake: FakeKV) -> None:
    """A refused fenced commit reads its lock (is the token stale?) within the call's
    deadline, not for _FENCE_CHECK_TIMEOUT_S (2 s) (mutant: the old bound)."""
    async with fast_client(fake, **PATIENT) as client:
        token = await _token(client)

        def hook(node: int, r: kv.Request) -> Any:
            kind = r.WhichOneof("op")
            return (
                conflict_response(r, DATA, "prepare")
                if kind == "prepare"
                else (DROP if kind == "get" else None)
            )

        fake.hook = hook
        loop = asyncio.get_running_loop()
        started = loop.time()
        with pytest.raises((DeadlineExceeded, CommitUnknown)):
            await client.put_fenced(DATA, b"v", lock=LOCK, token=token, timeout_s=0.3)
        assert loop.time() - started < 0.3 + 0.5


@with_fake
async def test_timeout_s_bounds_the_settle_of_a_lost_commit(fake: FakeKV) -> None:
    """settle_unknown: the settle of a commit whose answer was lost ends by the call's
    deadline too (mutant: the client's 5 s), and the loss stands."""
    async with fast_client(fake, settle_unknown=True, **PATIENT) as client:
        fake.hook = on_kind("commit_one_phase", LOSE)
        fake.answer_delay_s["txn_status"] = 3.0
        loop = asyncio.get_running_loop()
        started = loop.time()
        with pytest.raises(CommitUnknown):
            await client.add(COUNTER, 1, timeout_s=0.3)
        assert loop.time() - started < 0.3 + 0.5


@with_fake
async def test_a_commit_with_no_time_to_send_its_prepares_did_not_commit(fake: FakeKV) -> None:
    """A deadline too short to send anything: no Prepare left the client, so no group can
    vote and the transaction cannot commit; the answer is definite (DeadlineExceeded), not
    CommitUnknown (found by review: it said "could not record the abort" with nothing
    sent)."""
    async with fast_client(fake, **PATIENT) as client:
        token = await _token(client)
        with pytest.raises(DeadlineExceeded) as info:
            await client.put_fenced(DATA, b"v", lock=LOCK, token=token, timeout_s=1e-4)
    assert not info.value.maybe_committed
    assert fake.count("prepare") == 0  # none sent
