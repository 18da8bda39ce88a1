"""`tx.delete_range`: every key of a range, as the transaction sees it, deleted atomically
and phantom-safe; bounded by what one transaction may write."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from test_client_fakekv import (
    FakeKV,
    decided,
    fake_in_thread,
    fast_client,
    sync_client,
    with_fake,
)

import txn
from router.limits import MAX_TXN_ITEMS, txn_part_refusal
from txn import LimitExceeded

A1, A2 = b"apple", b"banana"  # group 1
B1, B2 = b"grape", b"kiwi"  # group 2
C1 = b"plum"  # group 3


@with_fake
async def test_delete_range_deletes_the_keys_of_the_range_across_shards(fake: FakeKV) -> None:
    async with fast_client(fake) as client:
        for key in (A1, A2, B1, B2, C1):
            await client.put(key, b"v")
        async with client.transaction() as tx:
            tx.put(b"cherry", b"new")  # its own write in the range is deleted too
            tx.delete(A2)  # and its own delete is not counted twice
            assert await tx.delete_range(b"b", b"l") == 3  # cherry, grape, kiwi
            assert await tx.scan(b"a") == [(A1, b"v"), (C1, b"v")]
        assert await client.scan(b"a") == [(A1, b"v"), (C1, b"v")]


@with_fake
async def test_the_commit_carries_the_deleted_range_for_the_phantom_check(fake: FakeKV) -> None:
    """The nodes refuse a commit whose scanned range gained a key (rule P6; end to end in
    tests/cluster/test_txn_client.py): delete_range's commit must carry its range."""
    async with fast_client(fake) as client:
        await client.put(B1, b"v")
        async with client.transaction() as tx:
            assert await tx.delete_range(b"g", b"l") == 1
        ((_, commit),) = fake.requests("commit_one_phase")
        op = commit.commit_one_phase
        assert [(r.start, r.end) for r in op.read_ranges] == [(b"g", b"l")]
        assert [(w.key, w.delete) for w in op.writes] == [(B1, True)]


@with_fake
async def test_a_range_past_one_transactions_writes_is_deleted_a_part_at_a_time(
    fake: FakeKV, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(txn.transaction, "DELETE_RANGE_KEYS", 3)
    async with fast_client(fake) as client:
        keys = [b"k%02d" % i for i in range(8)]  # all in group 2
        for key in keys:
            await client.put(key, b"v")
        tx = client.transaction()
        with pytest.raises(LimitExceeded, match="give a limit"):
            await tx.delete_range(b"k", b"l")
        tx.abort()
        parts = []
        while deleted := await client.run(lambda tx: tx.delete_range(b"k", b"l", 3)):
            parts.append(deleted)
        assert parts == [3, 3, 2]
        assert await client.scan(b"k", b"l") == []


@pytest.fixture
def fake_sync() -> Iterator[FakeKV]:
    with fake_in_thread() as fake:
        yield fake


def test_the_sync_client_deletes_a_range(fake_sync: FakeKV) -> None:
    with sync_client(fake_sync) as client:
        client.put(A1, b"v")
        client.put(A2, b"v")
        assert client.run(lambda tx: tx.delete_range(b"a", b"c")) == 2
        assert client.scan(b"a") == []


@with_fake
async def test_the_most_keys_one_delete_range_takes_is_a_part_the_nodes_accept(
    fake: FakeKV,
) -> None:
    """Each key deleted is read and written: DELETE_RANGE_KEYS keys and the range are within
    MAX_TXN_ITEMS items, the most a node accepts of one transaction in a group, and one key
    more would not be; delete_range refuses it itself, before the commit."""
    most = txn.DELETE_RANGE_KEYS
    async with fast_client(fake) as client:
        async with client.transaction() as tx:
            for i in range(most + 1):
                tx.put(b"k%05d" % i, b"v")  # all in group 2
        tx = client.transaction()
        with pytest.raises(LimitExceeded):
            await tx.delete_range(b"k", b"l")
        tx.abort()
        await client.delete(b"k%05d" % most)
        async with client.transaction() as tx:
            assert await tx.delete_range(b"k", b"l") == most
        op = fake.requests("commit_one_phase")[-1][1].commit_one_phase
        assert txn_part_refusal(op.reads, op.writes, op.read_ranges) is None
        assert len(op.reads) + len(op.writes) + len(op.read_ranges) <= MAX_TXN_ITEMS
        assert 2 * (most + 1) + 1 > MAX_TXN_ITEMS  # one key more would not be accepted


@with_fake
async def test_the_bound_is_per_group_and_holds_with_a_limit_too(
    fake: FakeKV, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Found by a trial: the bound counted the whole range, so 1,500 keys in each of two
    groups were refused although each group's part was within it; and a limit past the
    bound was refused only by the nodes at commit, in other words."""
    monkeypatch.setattr(txn.transaction, "DELETE_RANGE_KEYS", 3)
    async with fast_client(fake) as client:
        async with client.transaction() as tx:
            for key in (b"a1", b"a2", b"a3", b"k1", b"k2", b"k3"):  # groups 1 and 2
                tx.put(key, b"v")
        await decided(fake)  # resolved: the fake's scans see them
        async with client.transaction() as tx:
            assert await tx.delete_range(b"a", b"l") == 6
        await decided(fake)
        async with client.transaction() as tx:
            for i in range(5):
                tx.put(b"k%d" % i, b"v")
        tx = client.transaction()
        with pytest.raises(LimitExceeded, match="more than 3 keys in group 2"):
            await tx.delete_range(b"k", b"l", limit=10)
        assert tx.write_set == {}  # nothing buffered
        tx.abort()


@with_fake
async def test_a_range_whose_end_is_not_after_its_start_is_refused(fake: FakeKV) -> None:
    """FoundationDB refuses an inverted range; quietly deleting nothing hid a swapped pair."""
    async with fast_client(fake) as client:
        tx = client.transaction()
        for start, end in ((b"b", b"a"), (b"a", b"a")):
            with pytest.raises(txn.InvalidArgument, match="end must be after start"):
                await tx.delete_range(start, end)
        tx.abort()


@with_fake
async def test_a_read_cut_by_the_cap_with_no_group_over_is_refused_not_half_done(
    fake: FakeKV, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Found by review: the cap comes from the map before the read, the count from the map
    after it; a map that gained groups meanwhile left every group under the bound while
    the read stopped at the cap, and 16 keys of 24 were deleted with no error. Here every
    key counts in a group of its own, as if the map had split between each."""
    monkeypatch.setattr(txn.transaction, "DELETE_RANGE_KEYS", 1)
    async with fast_client(fake) as client:
        async with client.transaction() as tx:
            for i in range(12):
                tx.put(b"a%02d" % i, b"v")  # group 1
        cap = 2 * len(client._connected_map().group_ids())
        assert cap < 12
        monkeypatch.setattr(client, "group_of", lambda key: int(key[1:]))
        tx = client.transaction()
        with pytest.raises(LimitExceeded, match=f"read {cap} keys of the range and more may"):
            await tx.delete_range(b"a", b"b")
        assert tx.write_set == {}
        tx.abort()


@with_fake
async def test_the_bytes_of_the_keys_count_twice_against_a_groups_bound(
    fake: FakeKV, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A key deleted is read and written: 2,047 keys of 515 bytes are within the count but
    over MAX_COMMAND_BYTES, which the nodes would refuse at commit (review)."""
    monkeypatch.setattr(txn.transaction, "MAX_COMMAND_BYTES", 60)
    async with fast_client(fake) as client:
        async with client.transaction() as tx:
            for i in range(3):
                tx.put(b"k-%08d" % i, b"v")  # 10-byte keys in group 2
        tx = client.transaction()
        with pytest.raises(LimitExceeded, match="are 62 bytes, over 60"):
            await tx.delete_range(b"k", b"l")  # 2 x 30 + the bounds: 2
        tx.abort()
        async with client.transaction() as tx:
            assert await tx.delete_range(b"k", b"l", limit=2) == 2  # 40 + 2
