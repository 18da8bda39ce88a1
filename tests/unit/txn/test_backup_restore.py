"""txn/backup.py against the fake cluster: a backup is one snapshot however many pages it
reads, and a restore writes nothing unless the whole file is intact and the target fits."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from test_client_fakekv import FakeKV, error_response, fast_client, with_fake

from router import kv_pb2 as kv
from router.limits import MAX_KEY_BYTES, MAX_TXN_ITEMS, MAX_VALUE_BYTES, txn_part_refusal
from txn import backup as backup_module
from txn import client as client_module
from txn import snapshot as snapshot_module
from txn.backup import (
    RESTORE_BATCH_BYTES,
    RESTORE_BATCH_ITEMS,
    RestoreIncomplete,
    backup,
    restore,
)
from txn.backup_file import BackupCorrupt, BackupError, BackupHeader, BackupReader, BackupWriter
from txn.errors import InvalidArgument

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


@with_fake
async def test_a_backup_pages_over_keys_that_differ_only_by_a_trailing_zero_byte(
    fake: FakeKV, tmp_path: Path
) -> None:
    """A page ending at K resumes at K + b"\\x00", itself a key; and one ending at the
    largest key there can be."""
    keys = [b"\x00", b"\x00\x00", b"q", b"q\x00", b"q\x00\x00", b"r", b"\xff" * MAX_KEY_BYTES]
    async with fast_client(fake) as client:
        for key in keys:
            await client.put(key, b"v")
        for page_keys in (1, 2, 3):
            path = tmp_path / f"b{page_keys}"
            await backup(client, path, page_keys=page_keys)
            assert list(_records(path)) == keys, page_keys


@with_fake
async def test_a_backup_page_is_bounded_by_bytes_whatever_its_key_count(
    fake: FakeKV, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Its memory is the budget and a shard's reply more, however large the values."""
    monkeypatch.setattr(snapshot_module, "PAGE_BYTES", 250)
    monkeypatch.setattr(client_module, "SCAN_PAGE", 2)  # a shard's reply: 2 keys
    records = {b"x%02d" % i: b"." * 97 for i in range(12)}  # 100 bytes each
    async with fast_client(fake) as client:
        for key, value in records.items():
            await client.put(key, value)
        pages: list[int] = []
        summary = await backup(
            client, tmp_path / "b", page_keys=1000, progress=lambda k, b: pages.append(k)
        )
    assert _records(tmp_path / "b") == records
    assert summary.keys == 12
    sizes = [b - a for a, b in zip([0, *pages], pages, strict=False)]
    assert max(sizes) == 4, f"a page went on past its byte budget: {sizes}"


@with_fake
async def test_a_page_that_ends_where_a_shard_does_goes_on_at_the_next_shard(
    fake: FakeKV, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Byte-bounded pages across the "g" and "p" splits: every key once, in order, and no
    shard asked again past its last key (found by review: each such page cost a read
    of the shard it had just finished, which returned nothing)."""
    monkeypatch.setattr(snapshot_module, "PAGE_BYTES", 250)
    monkeypatch.setattr(client_module, "SCAN_PAGE", 2)
    records = {key: b"." * 98 for key in (b"f1", b"f2", b"f3", b"h1", b"h2", b"h3", b"q1", b"q2")}
    async with fast_client(fake) as client:
        for key, value in records.items():
            await client.put(key, value)
        starts: list[bytes] = []

        def record_scans(node: int, request: kv.Request) -> Any:
            if request.WhichOneof("op") == "scan":
                starts.append(request.scan.start)
            return None

        fake.hook = record_scans
        pages: list[int] = []
        await backup(client, tmp_path / "b", progress=lambda k, b: pages.append(k))
    assert _records(tmp_path / "b") == records
    assert pages == [3, 6, 8]
    assert starts == [b"", b"f2\x00", b"g", b"h2\x00", b"p", b"q2\x00"]


@with_fake
async def test_a_backup_may_end_a_byte_past_the_largest_key_and_reads_back(
    fake: FakeKV, tmp_path: Path
) -> None:
    """A range end of K + b"\\x00", as a scan cut after K gives (found by review: such a
    backup was written, then refused by its own reader)."""
    largest = b"\xff" * MAX_KEY_BYTES
    async with fast_client(fake) as client:
        await client.put(largest, b"v")
        summary = await backup(client, tmp_path / "b", end=largest + b"\x00")
    assert summary.header.end == largest + b"\x00"
    assert _records(tmp_path / "b") == {largest: b"v"}


@pytest.mark.parametrize(
    ("start", "end", "fault"),
    [
        (b"m", b"m", "must be above"),
        (b"m", b"a", "must be above"),
        (b"k" * (MAX_KEY_BYTES + 2), None, f"range start is {MAX_KEY_BYTES + 2} bytes"),
        (
            b"a",
            b"k" * (MAX_KEY_BYTES + 2),
            "range end is .* a largest key and one more byte",
        ),
        ("a", None, "encode a str start key"),
    ],
    ids=["empty", "falling", "oversized-start", "oversized-end", "str-start"],
)
@with_fake
async def test_a_backup_of_a_bad_range_is_refused_before_any_file(
    fake: FakeKV, tmp_path: Path, start: Any, end: Any, fault: str
) -> None:
    async with fast_client(fake) as client:
        with pytest.raises(InvalidArgument, match=fault):
            await backup(client, tmp_path / "b", start=start, end=end)
    assert list(tmp_path.iterdir()) == []


@with_fake
async def test_a_restore_writes_the_file_it_checked_when_another_is_renamed_over_its_path(
    fake: FakeKV, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = _backup_file(tmp_path / "b", [(b"xa", b"checked")])
    other = _backup_file(tmp_path / "other", [(b"xb", b"never checked")])
    verify = BackupReader.verify

    def verify_then_rename(reader: BackupReader) -> Any:
        summary = verify(reader)
        os.replace(other, path)  # a second backup lands on the path meanwhile
        return summary

    monkeypatch.setattr(BackupReader, "verify", verify_then_rename)
    async with fast_client(fake) as client:
        summary = await restore(client, path)
        assert summary.keys == 1
        assert [await client.get(k) for k in (b"xa", b"xb")] == [b"checked", None]


def test_the_largest_restore_batch_is_one_a_node_accepts() -> None:
    assert RESTORE_BATCH_ITEMS <= MAX_TXN_ITEMS
    assert MAX_KEY_BYTES + MAX_VALUE_BYTES <= RESTORE_BATCH_BYTES, "a largest record goes alone"
    largest_one = [kv.WriteItem(key=b"k" * MAX_KEY_BYTES, value=b"v" * MAX_VALUE_BYTES)]
    each = RESTORE_BATCH_BYTES // RESTORE_BATCH_ITEMS
    fullest = [
        kv.WriteItem(key=b"%08d" % i, value=b"v" * (each - 8)) for i in range(RESTORE_BATCH_ITEMS)
    ]
    for writes in (largest_one, fullest):
        assert txn_part_refusal([], writes, []) is None


@with_fake
async def test_a_restore_cut_short_says_what_is_written_and_a_rerun_over_it_finishes(
    fake: FakeKV, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(backup_module, "RESTORE_BATCH_ITEMS", 4)
    records = [(b"x%02d" % i, b"value %d" % i) for i in range(10)]
    path = _backup_file(tmp_path / "b", records)
    commits = 0

    def fail_the_second_batch(node: int, request: kv.Request) -> Any:
        nonlocal commits
        if request.WhichOneof("op") != "commit_one_phase":
            return None
        commits += 1
        return error_response(request, kv.INTERNAL) if commits == 2 else None

    async with fast_client(fake) as client:
        fake.hook = fail_the_second_batch
        with pytest.raises(RestoreIncomplete) as cut:
            await restore(client, path)
        fake.hook = None
        assert (cut.value.keys, cut.value.transactions, cut.value.last_key) == (4, 1, b"x03")
        assert "paxoskv restore" in str(cut.value) and "--overwrite" in str(cut.value)
        assert [await client.get(k) for k, _ in records[3:5]] == [b"value 3", None]
        with pytest.raises(BackupError, match="already holds keys"):
            await restore(client, path)
        summary = await restore(client, path, overwrite=True)
        assert summary.keys == 10
        for key, value in records:
            assert await client.get(key) == value
