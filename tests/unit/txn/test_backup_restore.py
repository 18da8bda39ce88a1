"""txn/backup.py against the fake cluster: a backup is one snapshot however many pages it
reads, and a restore writes nothing unless the whole file is intact and the target fits."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from test_client_fakekv import FakeKV, fast_client, with_fake

from router import kv_pb2 as kv
from txn import backup as backup_module
from txn.backup import backup, restore
from txn.backup_file import BackupCorrupt, BackupError, BackupHeader, BackupReader, BackupWriter

# Split points "g" and "p": keys on all three groups.
KEYS = [b"apple", b"fig", b"grape", b"kiwi", b"lemon", b"pear", b"plum", b"quince"]


def _records(path: Path) -> dict[bytes, bytes]:
    with BackupReader(path) as reader:
        return dict(reader.records())


def _writes(fake: FakeKV) -> int:
    return sum(fake.count(kind) for kind in ("put", "prepare", "commit_one_phase", "decide"))


@with_fake
async def test_a_backup_over_many_pages_is_one_snapshot_across_shards(
    fake: FakeKV, tmp_path: Path
) -> None:
    async with fast_client(fake) as client:
        for key in KEYS:
            await client.put(key, b"old")
        scans = 0

        def write_after_the_first_page(node: int, request: kv.Request) -> Any:
            nonlocal scans
            if request.WhichOneof("op") == "scan":
                scans += 1
                if scans == 2:  # a commit between two pages, on keys of every group
                    ts = fake.store.tick()
                    for key in KEYS:
                        fake.store.write(key, b"new", ts)
                    fake.store.write(b"banana", b"new", ts)
            return None

        fake.hook = write_after_the_first_page
        path = tmp_path / "b"
        summary = await backup(client, path, page_keys=3)
        assert scans >= 3
        assert _records(path) == {key: b"old" for key in KEYS}
        assert summary.keys == len(KEYS)
        assert summary.header.cluster_id == client.cluster_id


@with_fake
async def test_a_backup_takes_only_its_range(fake: FakeKV, tmp_path: Path) -> None:
    async with fast_client(fake) as client:
        for key in KEYS:
            await client.put(key, b"v")
        await backup(client, tmp_path / "b", start=b"fig", end=b"pear", page_keys=2)
        assert list(_records(tmp_path / "b")) == [b"fig", b"grape", b"kiwi", b"lemon"]


def _backup_file(path: Path, records: list[tuple[bytes, bytes]], read_ts: int = 1) -> Path:
    header = BackupHeader(
        cluster_id="old", read_ts=read_ts, start=b"x", end=None, created_unix_s=0.0
    )
    writer = BackupWriter(path, header)
    for key, value in records:
        writer.add(key, value)
    writer.finish()
    return path


@with_fake
async def test_a_restore_writes_every_key_in_bounded_transactions(
    fake: FakeKV, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(backup_module, "RESTORE_BATCH_ITEMS", 4)
    records = [(b"x%02d" % i, b"value %d" % i) for i in range(10)]
    path = _backup_file(tmp_path / "b", records)
    progress: list[tuple[int, int]] = []
    async with fast_client(fake) as client:
        summary = await restore(client, path, progress=lambda k, b: progress.append((k, b)))
        for key, value in records:
            assert await client.get(key) == value
    assert (summary.keys, summary.transactions) == (10, 3)
    assert [keys for keys, _ in progress] == [4, 8, 10]
    assert 0 < summary.first_commit_ts < summary.last_commit_ts


@with_fake
async def test_a_restore_splits_a_batch_before_its_byte_budget(
    fake: FakeKV, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(backup_module, "RESTORE_BATCH_BYTES", 100)
    records = [(b"x%d" % i, b"." * 40) for i in range(5)]  # 42 bytes each: 2 per batch
    async with fast_client(fake) as client:
        summary = await restore(client, _backup_file(tmp_path / "b", records))
    assert summary.transactions == 3


@with_fake
async def test_a_restore_over_keys_needs_overwrite_and_then_writes_the_backup_back(
    fake: FakeKV, tmp_path: Path
) -> None:
    path = _backup_file(tmp_path / "b", [(b"xa", b"1"), (b"xb", b"2")])
    async with fast_client(fake) as client:
        await client.put(b"xb", b"changed")
        before = _writes(fake)
        with pytest.raises(BackupError, match=r"already holds keys.*xb"):
            await restore(client, path)
        assert _writes(fake) == before
        await restore(client, path, overwrite=True)
        assert [await client.get(k) for k in (b"xa", b"xb")] == [b"1", b"2"]


@with_fake
async def test_a_backup_from_the_clusters_future_is_refused(fake: FakeKV, tmp_path: Path) -> None:
    """Restored versions must be above the ones the keys had (fencing tokens grow)."""
    async with fast_client(fake) as client:
        now = await client.snapshot().timestamp()
        path = _backup_file(tmp_path / "b", [(b"xa", b"1")], read_ts=now + 10**15)
        with pytest.raises(BackupError, match="not past the backup's timestamp"):
            await restore(client, path)
        assert await client.get(b"xa") is None


@with_fake
async def test_a_damaged_backup_restores_nothing(fake: FakeKV, tmp_path: Path) -> None:
    path = _backup_file(tmp_path / "b", [(b"x%02d" % i, b"v") for i in range(50)])
    raw = bytearray(path.read_bytes())
    raw[-40] ^= 1  # in the last record: every earlier one reads fine
    path.write_bytes(bytes(raw))
    async with fast_client(fake) as client:
        with pytest.raises(BackupCorrupt):
            await restore(client, path)
        assert _writes(fake) == 0
        assert await client.get(b"x00") is None
