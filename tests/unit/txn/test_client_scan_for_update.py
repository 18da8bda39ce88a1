"""`tx.scan(..., for_update=True)`: every key the scan returns from the store is read again
under its update lock (as get(key, for_update=True)), against the fake cluster."""

from __future__ import annotations

from typing import Any

import pytest
from test_client_fakekv import FakeKV, fast_client, with_fake

from router import kv_pb2 as kv
from txn import LimitExceeded
from txn.records import MAX_TXN_ITEMS

# Split points g and p: three groups.
A1, A2, B1, C1 = b"apple", b"avocado", b"grape", b"plum"


def locked_reads(fake: FakeKV, txn_id: bytes) -> list[bytes]:
    return sorted(r.get.key for _, r in fake.requests("get") if r.get.lock_txn_id == txn_id)


@with_fake
async def test_every_key_returned_from_the_store_is_locked_and_read_again(fake: FakeKV) -> None:
    async with fast_client(fake) as client:
        for key in (A1, A2, B1, C1):
            await client.put(key, b"old-" + key)
        tx = client.transaction()
        tx.put(A2, b"mine")  # the transaction's own write: returned, not locked
        tx.delete(C1)  # its own delete: not returned
        got = await tx.scan(b"a", None, 10, for_update=True)
        assert got == [(A1, b"old-apple"), (A2, b"mine"), (B1, b"old-grape")]
        assert locked_reads(fake, tx.txn_id) == [A1, B1]
        assert set(tx.read_set) >= {A1, B1}
        tx.abort()
    # The abort frees the locks in both groups the scan locked keys in.
    resolved = {r.resolve.header.group_id for _, r in fake.requests("resolve")}
    assert resolved == {1, 2}


@with_fake
async def test_the_values_are_those_read_under_the_lock(fake: FakeKV) -> None:
    """A key written or deleted between the scan and its locked read: the scan shows what
    the locked read saw (the row as it is while locked), and the commit validates that."""

    def hook(node: int, request: kv.Request) -> Any:
        if request.WhichOneof("op") == "get" and request.get.lock_txn_id:
            key = request.get.key
            if key == A1:
                fake.store.write(A1, b"newer", fake.store.tick())
            elif key == B1:
                fake.store.write(B1, None, fake.store.tick())
        return None

    async with fast_client(fake) as client:
        for key in (A1, B1, C1):
            await client.put(key, b"old")
        fake.hook = hook
        tx = client.transaction()
        got = await tx.scan(b"a", None, 10, for_update=True)
        fake.hook = None
        assert got == [(A1, b"newer"), (C1, b"old")]
        for key, value in got:
            tx.put(key, value + b"+1")
        await tx.commit()
        assert await client.get(A1) == b"newer+1" and await client.get(C1) == b"old+1"


@with_fake
async def test_a_scan_for_update_is_bounded_like_a_transaction(fake: FakeKV) -> None:
    async with fast_client(fake) as client:
        tx = client.transaction()
        with pytest.raises(LimitExceeded, match="MAX_TXN_ITEMS"):
            await tx.scan(b"a", None, MAX_TXN_ITEMS + 1, for_update=True)
        assert fake.count("scan") == 0
        assert await tx.scan(b"a", None, MAX_TXN_ITEMS + 1) == []  # a plain scan may
