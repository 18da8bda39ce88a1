"""`tx.scan(..., for_update=True)`: every key the scan returns from the store is read again
under its update lock (as get(key, for_update=True)), against the fake cluster."""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from typing import Any

import pytest
from test_client_fakekv import (
    DROP,
    FakeKV,
    conflict_response,
    fake_in_thread,
    fast_client,
    sync_client,
    with_fake,
)
from test_client_scan_rules import HARNESSES, _replay, _snapshot

from router import kv_pb2 as kv
from shard.errors import Status
from txn import Conflict, LimitExceeded
from txn.records import MAX_TXN_ITEMS

# Split points g and p: three groups.
A1, A2, B1, C1 = b"apple", b"avocado", b"grape", b"plum"
K1, K2, K3 = b"a1", b"a2", b"a3"  # group 1


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


# Found by a review of scan(for_update=True), each failing before its fix where noted.


def delete_on_locked_read(fake: FakeKV, key: bytes) -> Any:
    def hook(node: int, request: kv.Request) -> Any:
        locked = request.WhichOneof("op") == "get" and request.get.lock_txn_id
        if locked and request.get.key == key and fake.store.value(key) is not None:
            fake.store.write(key, None, fake.store.tick())
        return None

    return hook


@with_fake
async def test_a_key_deleted_before_its_locked_read_does_not_shrink_a_limited_page(
    fake: FakeKV,
) -> None:
    """a1, a2, a3; scan(limit=2, for_update) while a2 is deleted between the scan and its
    locked read. Any serial order gives [a1, a3] (a2 gone) or [a1, a2]; the scan returns
    [a1] with a3 in the range: a page shorter than the limit, so a caller paging with
    `len(page) < limit` stops and never sees a3."""
    async with fast_client(fake) as client:
        for key in (K1, K2, K3):
            await client.put(key, b"v")
        fake.hook = delete_on_locked_read(fake, K2)
        tx = client.transaction()
        got = await tx.scan(b"a", b"b", 2, for_update=True)
        fake.hook = None
        tx.abort()
    assert got in ([(K1, b"v"), (K3, b"v")], [(K1, b"v"), (K2, b"v")]), got


@with_fake
async def test_a_reverse_page_short_of_a_key_deleted_before_its_locked_read_is_filled(
    fake: FakeKV,
) -> None:
    """The same from the end down: a3, a2, a1 with a2 deleted before its locked read; the
    page is filled from below a2's neighbour, not left one short."""
    async with fast_client(fake) as client:
        for key in (K1, K2, K3):
            await client.put(key, b"v")
        fake.hook = delete_on_locked_read(fake, K2)
        tx = client.transaction()
        got = await tx.scan(b"a", b"b", 2, reverse=True, for_update=True)
        fake.hook = None
        assert got in ([(K3, b"v"), (K1, b"v")], [(K3, b"v"), (K2, b"v")]), got
        assert locked_reads(fake, tx.txn_id) == sorted({K3, K2} | {k for k, _ in got})
        tx.abort()


@with_fake
async def test_paging_with_for_update_sees_every_key(fake: FakeKV) -> None:
    """The usual paging loop over a range; one key deleted between the scan and its locked
    read. The loop must still see every key that exists."""
    async with fast_client(fake) as client:
        keys = [b"a%02d" % i for i in range(6)]
        for key in keys:
            await client.put(key, b"v")
        fake.hook = delete_on_locked_read(fake, keys[1])
        tx = client.transaction()
        seen: list[bytes] = []
        cursor = b"a"
        while True:
            page = await tx.scan(cursor, b"b", 2, for_update=True)
            seen += [k for k, _ in page]
            if len(page) < 2:
                break
            cursor = page[-1][0] + b"\x00"
        fake.hook = None
        tx.abort()
    assert seen == [k for k in keys if k != keys[1]], seen


def scan_for_update_then_replay(
    harness: Any,
    stored: tuple[bytes, ...],
    before_locked_read: Callable[[FakeKV, bytes], None],
    shown: list[tuple[bytes, bytes]],
) -> Any:
    """Store `stored` (value b"old"), run `before_locked_read(fake, key)` ahead of each
    locked read, scan [a, b) for update (it must show `shown`), write each key shown, commit
    against the fake, and replay that commit on the real rules from the store it met."""
    out: dict[str, Any] = {}

    @with_fake
    async def run(fake: FakeKV) -> None:
        for key in stored:
            fake.store.write(key, b"old", fake.store.tick())

        def hook(node: int, request: kv.Request) -> Any:
            if request.WhichOneof("op") == "get" and request.get.lock_txn_id:
                before_locked_read(fake, request.get.key)
            return None

        async with fast_client(fake) as client:
            tx = client.transaction()
            fake.hook = hook
            got = await tx.scan(b"a", b"b", 10, for_update=True)
            fake.hook = None
            assert got == shown
            before = _snapshot(fake)
            for k, v in got:
                tx.put(k, v + b"+")
            await tx.commit()  # the fake does not check P6; the replay does
        out["result"] = _replay(before, fake, harness())

    run()
    return out["result"]


@pytest.mark.parametrize("harness", HARNESSES)
def test_for_update_scan_with_a_key_deleted_and_one_changed_commits_under_real_rules(
    harness: Any,
) -> None:
    def change_k1_delete_k2(fake: FakeKV, key: bytes) -> None:
        if key == K1 and fake.store.value(K1) == b"old":
            fake.store.write(K1, b"new", fake.store.tick())
        if key == K2 and fake.store.value(K2) is not None:
            fake.store.write(K2, None, fake.store.tick())

    result = scan_for_update_then_replay(
        harness, (K1, K2, K3), change_k1_delete_k2, [(K1, b"new"), (K3, b"old")]
    )
    assert result.status is Status.OK, result


@pytest.mark.parametrize("harness", HARNESSES)
def test_for_update_scan_a_key_inserted_before_the_locked_reads_is_a_phantom(
    harness: Any,
) -> None:
    def insert_k2(fake: FakeKV, key: bytes) -> None:
        if fake.store.value(K2) is None:
            fake.store.write(K2, b"ins", fake.store.tick())

    result = scan_for_update_then_replay(harness, (K1, K3), insert_k2, [(K1, b"old"), (K3, b"old")])
    assert result.status is not Status.OK, result


@with_fake
async def test_an_earlier_plain_scan_that_saw_the_key_absent_makes_it_a_phantom(
    fake: FakeKV,
) -> None:
    async with fast_client(fake) as client:
        await client.put(K1, b"v")
        tx = client.transaction()
        assert await tx.scan(b"a2", b"b") == []
        await client.put(K2, b"ins")
        with pytest.raises(Conflict):
            await tx.scan(b"a", b"b", 10, for_update=True)
        tx.abort()
    resolved = {r.resolve.header.group_id for _, r in fake.requests("resolve")}
    assert resolved == {1}


@with_fake
async def test_one_locked_read_refused_the_others_locked_abort_frees_every_group(
    fake: FakeKV,
) -> None:
    async with fast_client(fake) as client:
        await client.put(K1, b"v")
        await client.put(B1, b"v")

        def hook(node: int, request: kv.Request) -> Any:
            locked = request.WhichOneof("op") == "get" and request.get.lock_txn_id
            if locked and request.get.key == B1:
                return conflict_response(request, B1, "read")
            return None

        fake.hook = hook
        tx = client.transaction()
        with pytest.raises(Conflict):
            await tx.scan(b"a", None, 10, for_update=True)
        fake.hook = None
        tx.abort()
    resolved = {r.resolve.header.group_id for _, r in fake.requests("resolve")}
    assert resolved == {1, 2}


@with_fake
async def test_a_refused_locked_read_is_raised_without_waiting_for_the_others(
    fake: FakeKV,
) -> None:
    """One locked read is refused at once (the txn is wounded: it must abort); another
    waits at its leader (a lock queue, here an answer that never comes). The scan raises
    only when the slow read ends: the doomed transaction keeps queueing for (and may take)
    the other lock for the whole wait."""
    async with fast_client(fake, timeout_s=2.0) as client:
        await client.put(K1, b"v")
        await client.put(B1, b"v")

        def hook(node: int, request: kv.Request) -> Any:
            if request.WhichOneof("op") == "get" and request.get.lock_txn_id:
                if request.get.key == K1:
                    return conflict_response(request, K1, "read")
                if request.get.key == B1:
                    return DROP
            return None

        fake.hook = hook
        tx = client.transaction()
        started = time.monotonic()
        with pytest.raises(Conflict):
            await tx.scan(b"a", None, 10, for_update=True)
        waited = time.monotonic() - started
        fake.hook = None
        tx.abort()
    assert waited < 0.5, f"the refusal surfaced after {waited:.2f} s"


def test_sync_scan_for_update() -> None:
    with fake_in_thread() as fake, sync_client(fake) as client:
        client.put(K1, b"1")
        client.put(B1, b"2")
        with client.transaction() as tx:
            got = tx.scan(b"a", None, 10, for_update=True)
            assert got == [(K1, b"1"), (B1, b"2")]
            for k, v in got:
                tx.put(k, v + b"+")
        assert client.get(K1) == b"1+" and client.get(B1) == b"2+"


@with_fake
async def test_for_update_scan_equals_plain_scan_on_a_quiet_store(fake: FakeKV) -> None:
    """Random stores over three groups, random buffered puts/deletes, random limits and
    ranges, either direction: with nothing changing meanwhile, scan(for_update) == scan()."""
    rng = random.Random(11)
    alphabet = [bytes([c]) + bytes([d]) for c in b"adhmqz" for d in b"0123"]
    async with fast_client(fake) as client:
        for key in alphabet:
            if rng.random() < 0.6:
                await client.put(key, b"s" + key)
        for _ in range(60):
            plain, upd = client.transaction(), client.transaction()
            for key in rng.sample(alphabet, 5):
                value = None if rng.random() < 0.5 else b"w" + key
                for tx in (plain, upd):
                    tx.put(key, value) if value is not None else tx.delete(key)
            lo, hi = sorted(rng.sample(alphabet, 2))
            end = None if rng.random() < 0.3 else hi
            limit = rng.randint(1, 12)
            reverse = rng.random() < 0.5
            want = await plain.scan(lo, end, limit, reverse=reverse)
            got = await upd.scan(lo, end, limit, reverse=reverse, for_update=True)
            assert got == want, (lo, end, limit, reverse)
            assert set(plain.read_set) <= set(upd.read_set) | set(upd.write_set)
            plain.abort()
            upd.abort()


@with_fake
async def test_a_key_this_transaction_overwrote_is_read_at_its_store_version(
    fake: FakeKV,
) -> None:
    """A scan for update returns a key this transaction already wrote as its own write and
    takes no lock for it, but still records the store's version (the range's content is
    what rule P6 validates; mutant: re-reading it "under its lock" returned the buffered
    value and recorded nothing, a phantom at every commit on the real rules)."""
    fake.store.write(b"m1", b"old", 11)
    fake.store.write(b"m2", b"old", 12)
    async with fast_client(fake) as client:
        tx = client.transaction()
        tx.put(b"m1", b"mine")
        assert await tx.scan(b"m", b"n", for_update=True) == [(b"m1", b"mine"), (b"m2", b"old")]
        assert tx.read_set == {b"m1": 11, b"m2": 12}
        await tx.commit()
    locked = [r.get.key for _, r in fake.requests("get") if r.get.lock_txn_id]
    assert locked == [b"m2"]
