"""`snapshot().iterate`: a range read lazily, a page at a time, all of it at the snapshot's
one timestamp, from asyncio and from the synchronous Client."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from test_client_fakekv import FakeKV, fake_in_thread, fast_client, sync_client, with_fake

from router import kv_pb2 as kv
from txn import InvalidArgument
from txn import client as client_module

# Split points "g" and "p": keys on all three groups.
KEYS = [b"apple", b"fig", b"grape", b"kiwi", b"lemon", b"pear", b"plum", b"quince"]


def _write_between_pages(fake: FakeKV) -> Any:
    """A hook: after the first scan, a commit overwrites every key and adds one."""
    scans = 0

    def hook(node: int, request: kv.Request) -> Any:
        nonlocal scans
        if request.WhichOneof("op") == "scan":
            scans += 1
            if scans == 2:
                ts = fake.store.tick()
                for key in KEYS:
                    fake.store.write(key, b"new", ts)
                fake.store.write(b"banana", b"new", ts)
        return None

    return hook


@with_fake
async def test_iterate_reads_page_by_page_and_sees_one_snapshot(fake: FakeKV) -> None:
    async with fast_client(fake) as client:
        for key in KEYS:
            await client.put(key, b"old")
        fake.hook = _write_between_pages(fake)
        async with client.snapshot() as snap:
            items = iterator = snap.iterate(b"a", page_keys=2)
            first = await anext(iterator)
            scans_after_first = len(fake.requests("scan"))
            rest = [item async for item in items]
        assert [first, *rest] == [(key, b"old") for key in KEYS]
        assert scans_after_first == 1, "iterate read ahead of its loop"
        assert len(fake.requests("scan")) >= len(KEYS) // 2


@with_fake
async def test_a_reverse_iterate_reads_from_the_last_key_down_at_one_timestamp(
    fake: FakeKV, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(client_module, "SCAN_PAGE", 2)  # a shard's reply: 2 keys
    async with fast_client(fake) as client:
        for key in KEYS:
            await client.put(key, b"old")
        fake.hook = _write_between_pages(fake)
        async with client.snapshot() as snap:
            got = [item async for item in snap.iterate(b"a", reverse=True, page_keys=3)]
            assert got == [(key, b"old") for key in reversed(KEYS)]
            assert await snap.scan(b"b", b"p", reverse=True) == [
                (key, b"old") for key in reversed(KEYS[1:5])
            ]
            assert await snap.scan(b"", None, 1, reverse=True) == [(KEYS[-1], b"old")]
        assert (await client.scan(b"", None, 2, reverse=True)) == [
            (b"quince", b"new"),
            (b"plum", b"new"),
        ]


@with_fake
async def test_iterate_stops_before_its_end_and_refuses_a_bad_page_size(fake: FakeKV) -> None:
    async with fast_client(fake) as client:
        for key in KEYS:
            await client.put(key, b"v")
        snap = client.snapshot()
        assert [k async for k, _ in snap.iterate(b"fig", b"pear", page_keys=3)] == KEYS[1:5]
        assert [k async for k, _ in snap.iterate(b"zz")] == []
        for bad in (0, -1, True, 1.5):
            with pytest.raises(InvalidArgument, match="page_keys"):
                snap.iterate(b"a", page_keys=bad)  # type: ignore[arg-type]
        # At the call, not at the first read (found by review).
        with pytest.raises(InvalidArgument, match="start key"):
            snap.iterate("a")  # type: ignore[arg-type]
        with pytest.raises(InvalidArgument, match="reverse is a bool"):
            snap.iterate(b"a", reverse=None)  # type: ignore[arg-type]


@pytest.fixture
def fake_thread() -> Iterator[FakeKV]:
    with fake_in_thread() as fake:
        yield fake


def test_the_sync_iterate_reads_lazily_and_a_loop_left_early_leaves_the_snapshot_usable(
    fake_thread: FakeKV, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(client_module, "SCAN_PAGE", 2)
    with sync_client(fake_thread) as client:
        for key in KEYS:
            client.put(key, b"v")
        with client.snapshot() as snap:
            with pytest.raises(InvalidArgument, match="page_keys"):
                snap.iterate(b"a", page_keys=0)  # at the call, as the async one
            assert [k for k, _ in snap.iterate(b"a", page_keys=3)] == KEYS
            for key, _ in snap.iterate(b"a", page_keys=2):
                if key == b"fig":
                    break
            assert snap.get(b"kiwi") == b"v"
            assert [k for k, _ in snap.iterate(b"a", reverse=True, page_keys=3)] == KEYS[::-1]
            assert snap.scan(b"a", None, 2, reverse=True) == [(KEYS[-1], b"v"), (KEYS[-2], b"v")]
        assert client.scan(b"a", b"kiwi", 1, reverse=True) == [(b"grape", b"v")]
