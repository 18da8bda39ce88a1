"""A transaction whose read was never awaited is not committed (found by an application
trial: `taken = tx.get(key)` without await committed a uniqueness check that read nothing)."""

from __future__ import annotations

import asyncio
import inspect

import pytest
from test_client_fakekv import FakeKV, fast_client, with_fake

from txn import AsyncTransaction, InvalidArgument, TransactionState
from txn.unawaited import HandedOutReads

NAME, ACCOUNT = b"apple", b"grape"  # groups 1 and 2 of the fake map


@with_fake
async def test_a_commit_after_a_read_never_awaited_is_refused(fake: FakeKV) -> None:
    async with fast_client(fake) as client:

        def claim(tx: AsyncTransaction) -> None:
            taken = tx.get(NAME)  # the bug: no await
            if not taken:  # a coroutine: always true, so this never runs
                tx.put(NAME, b"me")
            tx.put(ACCOUNT, b"record")

        with pytest.raises(InvalidArgument, match=r"tx.get\(b'apple'\) was never awaited"):
            await client.run(claim)
    assert fake.count("commit_one_phase") == fake.count("prepare") == 0
    assert fake.store.value(ACCOUNT) is None


@with_fake
async def test_reads_awaited_in_any_way_commit(fake: FakeKV) -> None:
    async with fast_client(fake) as client:
        async with client.transaction() as tx:
            await tx.get(NAME)
            await asyncio.gather(tx.get(ACCOUNT), tx.scan(b"a", b"c"))
            await asyncio.create_task(tx.delete_range(b"x", b"y"))
            tx.put(NAME, b"me")
        assert tx.state is TransactionState.COMMITTED
        tx2 = client.transaction()
        tx2.scan(b"a")  # never awaited: its description names the call
        tx2.get(b"k" * 100)
        with pytest.raises(InvalidArgument, match=r"tx.scan\(b'a'\) \(and 1 more\) was never"):
            await tx2.commit()
        assert tx2.state is TransactionState.ABORTED


def test_handed_out_reads_keep_only_the_unstarted_ones_as_they_grow() -> None:
    async def read() -> int:
        return 1

    reads = HandedOutReads()
    for n in range(1000):
        coro = reads.track(read(), "get", b"r%d" % n)
        if n == 7:
            unawaited = coro
        else:
            asyncio.run(coro)  # awaited: started and done
    assert len(reads._reads) < 100
    assert reads.never_awaited() == ["tx.get(b'r7')"] and reads.never_awaited() == []
    # Closed by the check, so no "never awaited" RuntimeWarning follows the refusal.
    assert inspect.getcoroutinestate(unawaited) == inspect.CORO_CLOSED
