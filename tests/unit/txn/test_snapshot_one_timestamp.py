"""A snapshot used directly (no `with`) reads at one timestamp however its reads overlap.

Found by review: two reads started together on a fresh snapshot each fetched a timestamp and
read at their own, so a transfer committed between the two answers was seen half-applied.
"""

from __future__ import annotations

import asyncio
from typing import Any

from test_client_fakekv import FakeKV, fast_client, with_fake

from router import kv_pb2 as kv

A1 = b"apple"  # group 1
C1 = b"plum"  # group 3


def _transfer_after_the_first_timestamp(fake: FakeKV) -> Any:
    """A hook: a transfer of 10 from apple to plum commits between the first and the second
    timestamp answers."""
    seen = 0

    def hook(node: int, request: kv.Request) -> Any:
        nonlocal seen
        if request.WhichOneof("op") == "timestamp":
            seen += 1
            if seen == 2:
                ts = fake.store.tick()
                fake.store.write(A1, b"40", ts)
                fake.store.write(C1, b"60", ts)
        return None

    return hook


@with_fake
async def test_snapshot_used_directly_by_concurrent_reads_is_one_timestamp(fake: FakeKV) -> None:
    """AsyncSnapshot docs: 'use ... directly (the first read fetches it)'; every read sees
    the same snapshot. Two reads started together on a fresh snapshot both fetch a
    timestamp, and each reads at its own: a bank transfer committed between the two
    timestamp answers is seen half-applied."""
    async with fast_client(fake) as client:
        await client.put(A1, b"50")
        await client.put(C1, b"50")
        fake.hook = _transfer_after_the_first_timestamp(fake)
        snap = client.snapshot()
        a, c = await asyncio.gather(snap.get(A1), snap.get(C1))
        stamps = {r.get.at_version for _, r in fake.requests("get") if r.get.snapshot}
        assert int(a) + int(c) == 100, (
            f"torn snapshot: {A1!r}={a!r}, {C1!r}={c!r}, read at {len(stamps)} timestamps"
        )
        assert len(stamps) == 1


def test_sync_snapshot_read_from_two_threads_is_one_timestamp() -> None:
    """The same race through the synchronous Client: two threads share a Snapshot."""
    import threading

    from test_client_fakekv import fake_in_thread, sync_client

    with fake_in_thread() as fake, sync_client(fake) as client:
        client.put(A1, b"50")
        client.put(C1, b"50")
        gate = threading.Barrier(2)
        fake.hook = _transfer_after_the_first_timestamp(fake)
        snap = client.snapshot()
        out: dict[bytes, bytes | None] = {}

        def read(key: bytes) -> None:
            gate.wait()
            out[key] = snap.get(key)

        threads = [threading.Thread(target=read, args=(k,)) for k in (A1, C1)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(10)
        stamps = {r.get.at_version for _, r in fake.requests("get") if r.get.snapshot}
        assert len(stamps) == 1, f"one Snapshot read at {len(stamps)} timestamps ({out})"


@with_fake
async def test_a_snapshot_takes_no_lock_and_writes_nothing(fake: FakeKV) -> None:
    """Read-only transactions take no locks and log nothing (issue 4): a snapshot's reads
    across every group send a timestamp request and snapshot reads only, none for update,
    and nothing that any group would log (no Prepare, commit, Resolve or write)."""
    async with fast_client(fake) as client:
        await client.put(A1, b"50")
        await client.put(C1, b"50")
        with fake.lock:
            before = len(fake.seen)
        async with client.snapshot() as snap:
            assert await snap.get(A1) == b"50"
            assert await snap.get(b"kiwi") is None
            assert await snap.scan(b"") == [(A1, b"50"), (C1, b"50")]
        with fake.lock:
            sent = fake.seen[before:]
    assert {kind for _, kind, _ in sent} == {"timestamp", "get", "scan"}, sent
    reads = [getattr(r, kind) for _, kind, r in sent if kind in ("get", "scan")]
    assert all(read.snapshot for read in reads), reads
    assert not [r for _, kind, r in sent if kind == "get" and r.get.lock_txn_id], sent
