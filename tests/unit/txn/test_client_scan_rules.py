"""Scans in transactions (rule P6), end to end on the client side: what the client records
against the fake cluster, and its commit replayed on the real rules from the store as it was
before the commit (MemHarness: txn.participant over MemTxnStore; ShardHarness: the shard
state machine). The fake cluster itself does not validate scanned ranges."""

from __future__ import annotations

import random
from typing import Any

import pytest
from test_client_fakekv import FakeKV, fast_client, with_fake
from txn_harness import MemHarness, ShardHarness

from shard.errors import Status
from txn import Conflict
from txn.records import CommitOnePhase, KeyRange, ReadItem, WriteItem

HARNESSES = [MemHarness, ShardHarness]


def _snapshot(fake: FakeKV) -> list[tuple[int, bytes, bytes | None]]:
    return sorted((ver, k, val) for k, hist in fake.store.versions.items() for ver, val in hist)


def _replay(events: list[tuple[int, bytes, bytes | None]], fake: FakeKV, h: Any) -> Any:
    """Seed h with the store as it was before the commit, then apply the client's
    one-phase commit under the real rules."""
    for ver, key, val in events:
        assert h.put(key, val, ver).status is Status.OK
    [(_, req)] = fake.requests("commit_one_phase")
    op = req.commit_one_phase
    record = CommitOnePhase(
        txn_id=op.txn_id,
        reads=tuple(ReadItem(key=r.key, version=r.version) for r in op.reads),
        writes=tuple(WriteItem(key=w.key, value=None if w.delete else w.value) for w in op.writes),
        read_ranges=tuple(KeyRange(start=r.start, end=r.end) for r in op.read_ranges),
    )
    return h.txn(record, events[-1][0] + 100)


@pytest.mark.parametrize("harness", HARNESSES)
def test_delete_then_scan_of_the_last_key_of_a_range_commits(harness: Any) -> None:
    """tx.delete(a2); tx.scan(a, b) -> [a1]. The range is recorded whole (exhausted), but the
    store's a2 sorts after the merged result's last key (horizon a1), so the loop breaks
    before recording it. The real P6 rule then finds a2 live in the range and not in the
    reads: a phantom, on every retry, so this transaction can never commit."""
    out: dict[str, Any] = {}

    @with_fake
    async def run(fake: FakeKV) -> None:
        fake.store.write(b"a1", b"1", fake.store.tick())
        fake.store.write(b"a2", b"2", fake.store.tick())
        before = _snapshot(fake)
        async with fast_client(fake) as client:
            tx = client.transaction()
            tx.delete(b"a2")
            assert await tx.scan(b"a", b"b") == [(b"a1", b"1")]
            out["read_set"] = tx.read_set
            await tx.commit()  # the fake does not check P6
        out["result"] = _replay(before, fake, harness())

    run()
    r = out["result"]
    assert r.status is Status.OK, (out["read_set"], r)


@pytest.mark.parametrize("harness", HARNESSES)
def test_delete_then_limited_scan_exhausted(harness: Any) -> None:
    """Same with a limit above the result: delete a3, scan(a, b, limit=5) -> [a1, a2];
    store asked for 6, got 3 (exhausted), range recorded whole, a3 not recorded."""
    out: dict[str, Any] = {}

    @with_fake
    async def run(fake: FakeKV) -> None:
        fake.store.write(b"a1", b"1", fake.store.tick())
        fake.store.write(b"a2", b"2", fake.store.tick())
        fake.store.write(b"a3", b"3", fake.store.tick())
        before = _snapshot(fake)
        async with fast_client(fake) as client:
            tx = client.transaction()
            tx.delete(b"a3")
            assert await tx.scan(b"a", b"b", limit=5) == [(b"a1", b"1"), (b"a2", b"2")]
            await tx.commit()
        out["result"] = _replay(before, fake, harness())

    run()
    assert out["result"].status is Status.OK, out["result"]


@pytest.mark.parametrize("harness", HARNESSES)
def test_a_fenced_write_whose_lock_a_scan_saw_absent(harness: Any) -> None:
    """The scan saw [a/lock/, a/lock0) empty; then a/lock/x was taken (token t). put_fenced
    with lock=a/lock/x puts the lock into the reads at t without the `_covered` check that
    `_record_read` makes, so the transaction claims both "no lock in the range" and
    "a/lock/x at t". The real P6 rule accepts it (the key is in the reads). A get of the lock
    after the scan is a phantom Conflict; the fence should be one too."""
    out: dict[str, Any] = {}

    @with_fake
    async def run(fake: FakeKV) -> None:
        async with fast_client(fake) as client:
            tx = client.transaction()
            assert await tx.scan(b"a/lock/", b"a/lock0") == []
            token = fake.store.tick()
            fake.store.write(b"a/lock/x", b"holder", token)
            before = _snapshot(fake)
            try:
                tx.put_fenced(b"a/data", b"v", lock=b"a/lock/x", token=token)
                await tx.commit()
            except Conflict:
                out["conflict"] = True
                return
            out["result"] = _replay(before, fake, harness())

    run()
    assert out.get("conflict"), f"committed; real rules say {out['result'].status}"


@pytest.mark.parametrize("harness", HARNESSES)
def test_control_get_after_scan_is_a_phantom(harness: Any) -> None:
    @with_fake
    async def run(fake: FakeKV) -> None:
        async with fast_client(fake) as client:
            tx = client.transaction()
            assert await tx.scan(b"a/lock/", b"a/lock0") == []
            fake.store.write(b"a/lock/x", b"holder", fake.store.tick())
            with pytest.raises(Conflict):
                await tx.get(b"a/lock/x")
            tx.abort()

    run()


@with_fake
async def test_scan_in_a_transaction_matches_a_model_of_store_plus_buffer(fake: FakeKV) -> None:
    """Random stores over three groups, random buffered puts/deletes, random scans (limit
    cut, across shard boundaries, pages, either direction): the scan equals the model's
    merge (from a review, which found it holding)."""
    rng = random.Random(7)
    alphabet = [bytes([c]) for c in b"acegikmoqsuwy"]  # spans g and p (the split points)
    async with fast_client(fake) as client:
        for round_ in range(60):
            store: dict[bytes, bytes] = {}
            fake.store.versions.clear()
            for k in rng.sample(alphabet, rng.randint(0, len(alphabet))):
                key = k + bytes([rng.choice(b"01")])
                store[key] = b"s" + key
                fake.store.write(key, store[key], fake.store.tick())
            tx = client.transaction()
            model = dict(store)
            for _ in range(rng.randint(0, 8)):
                key = rng.choice(alphabet) + bytes([rng.choice(b"012")])
                if rng.random() < 0.5:
                    tx.put(key, b"t" + key)
                    model[key] = b"t" + key
                else:
                    tx.delete(key)
                    model.pop(key, None)
            for _ in range(4):
                a, b = sorted(rng.sample([*alphabet, b"z"], 2))
                end = None if rng.random() < 0.3 else b
                limit = rng.randint(1, 12)
                reverse = rng.random() < 0.5
                got = await tx.scan(a, end, limit, reverse=reverse)
                want = sorted(
                    ((k, v) for k, v in model.items() if k >= a and (end is None or k < end)),
                    reverse=reverse,
                )[:limit]
                assert got == want, (round_, a, end, limit, reverse, got, want)
            tx.abort()


@pytest.mark.parametrize("harness", HARNESSES)
@pytest.mark.parametrize(("inserted", "status"), [(b"a55", Status.OK), (b"a75", Status.CONFLICT)])
def test_a_reverse_scan_cut_by_its_limit_is_validated_down_to_its_last_key(
    harness: Any, inserted: bytes, status: Status
) -> None:
    """scan(a, b, 3, reverse=True) over a1..a9 with a8 deleted by the transaction shows
    a9, a7, a6: the range it read is [a6, b) (the keys below a6 it never saw), with a8 in
    its reads. A key another transaction inserts below a6 before the commit is no
    phantom; one inside [a6, b) is."""
    out: dict[str, Any] = {}

    @with_fake
    async def run(fake: FakeKV) -> None:
        for i in range(1, 10):
            fake.store.write(b"a%d" % i, b"%d" % i, fake.store.tick())
        before = _snapshot(fake)
        async with fast_client(fake) as client:
            tx = client.transaction()
            tx.delete(b"a8")
            got = await tx.scan(b"a", b"b", 3, reverse=True)
            assert got == [(b"a9", b"9"), (b"a7", b"7"), (b"a6", b"6")]
            assert tx.scanned_ranges == [(b"a6", b"b")]
            assert set(tx.read_set) == {b"a9", b"a8", b"a7", b"a6"}
            tx.put(b"b1", b"mine")
            await tx.commit()
        insert = (before[-1][0] + 1, inserted, b"theirs")
        out["result"] = _replay([*before, insert], fake, harness())

    run()
    assert out["result"].status is status, out["result"]


@pytest.mark.parametrize("harness", HARNESSES)
def test_random_reverse_scans_commit_under_the_real_rules(harness: Any) -> None:
    """Random stores in one group, random buffered writes, random reverse scans (limit cut
    or not, pages of 2): what the client records validates under the real rules (a key it
    left out of the reads inside a range it recorded would be a phantom on every retry)."""
    rng = random.Random(11)
    alphabet = [b"a%d" % i for i in range(10)]
    out: dict[str, Any] = {}
    for round_ in range(25):

        @with_fake
        async def run(fake: FakeKV) -> None:
            fake.store.write(b"0", b"outside the scans", fake.store.tick())
            for key in rng.sample(alphabet, rng.randint(0, len(alphabet))):
                fake.store.write(key, b"s" + key, fake.store.tick())
            before = _snapshot(fake)
            async with fast_client(fake) as client:
                tx = client.transaction()
                for _ in range(rng.randint(0, 4)):
                    key = rng.choice(alphabet)
                    if rng.random() < 0.5:
                        tx.put(key, b"t" + key)
                    else:
                        tx.delete(key)
                for _ in range(rng.randint(1, 3)):
                    lo, hi = sorted(rng.sample([*alphabet, b"b"], 2))
                    await tx.scan(lo, hi, rng.randint(1, 6), reverse=True)
                tx.put(b"b1", b"mine")
                await tx.commit()
            out["result"] = _replay(before, fake, harness())

        run()
        assert out["result"].status is Status.OK, (round_, out["result"])
