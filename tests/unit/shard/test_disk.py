"""Node disks: which persists are synced, and what a crash may take."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from paxos import Ballot, PersistBatch
from shard.disk import (
    WAL_WARMUP_BYTES,
    WRITE_BUFFER_BYTES,
    DataDirInUse,
    MemoryNodeDisk,
    RocksNodeDisk,
)

B1 = Ballot(1, 1)


def test_only_a_bare_chosen_watermark_goes_unsynced() -> None:
    assert not PersistBatch(chosen_watermark=3).needs_sync()
    assert PersistBatch(promised=B1).needs_sync()
    assert PersistBatch(accepted={1: (B1, (b"a",))}).needs_sync()
    assert PersistBatch(accepted={1: (B1, (b"a",))}, chosen_watermark=1).needs_sync()
    assert PersistBatch(log_start=2, chosen_watermark=1).needs_sync()


def test_memory_disk_crash_loses_an_unsynced_watermark() -> None:
    disk = MemoryNodeDisk()
    disk.persist([(1, PersistBatch(promised=B1, accepted={1: (B1, (b"a",))}))])
    disk.persist([(1, PersistBatch(chosen_watermark=1))])
    assert disk.load(1).chosen_watermark == 1
    disk.crash()
    state = disk.load(1)
    assert state.chosen_watermark == 0
    assert state.accepted == {1: (B1, (b"a",))}


def test_memory_disk_synced_persist_covers_earlier_writes_of_every_group() -> None:
    # One WAL: a synced write makes every earlier write durable, other groups' included.
    disk = MemoryNodeDisk()
    disk.persist([(1, PersistBatch(promised=B1, accepted={1: (B1, (b"a",))}))])
    disk.persist([(1, PersistBatch(chosen_watermark=1))])
    disk.persist([(2, PersistBatch(promised=B1))])
    disk.crash()
    assert disk.load(1).chosen_watermark == 1
    assert disk.load(2).promised == B1


class _RecordingDb:
    """Passes everything to the real database; records the sync flag of each write."""

    def __init__(self, db: Any) -> None:
        self._db = db
        self.syncs: list[bool] = []

    def write(self, batch: Any, options: Any) -> None:
        self.syncs.append(options.sync)
        self._db.write(batch, options)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._db, name)


def test_rocks_disk_syncs_votes_but_not_a_bare_watermark(tmp_path: Path) -> None:
    disk = RocksNodeDisk(tmp_path / "db")
    recorder = _RecordingDb(disk.db)
    disk.db = recorder  # type: ignore[assignment]
    disk.persist([(1, PersistBatch(promised=B1, accepted={1: (B1, (b"a",))}))])
    disk.persist([(1, PersistBatch(chosen_watermark=1))])
    disk.persist([(1, PersistBatch(chosen_watermark=2)), (2, PersistBatch(promised=B1))])
    assert recorder.syncs == [True, False, True]
    disk.db = recorder._db
    disk.close()
    reopened = RocksNodeDisk(tmp_path / "db")
    try:
        assert reopened.load(1).chosen_watermark == 2
        assert reopened.load(1).accepted == {1: (B1, (b"a",))}
    finally:
        reopened.close()


def test_rocks_disk_leaves_a_large_writes_fsync_to_its_caller(tmp_path: Path) -> None:
    """`persist_owing_sync`: a synced write of at least the threshold goes unsynced and
    says so; smaller ones, and bare watermarks of any size, are written as `persist` does;
    `sync()` then makes the large one durable."""
    disk = RocksNodeDisk(tmp_path / "db")
    recorder = _RecordingDb(disk.db)
    disk.db = recorder  # type: ignore[assignment]
    large = PersistBatch(accepted={2: (B1, (bytes(300_000),))})
    small = [(1, PersistBatch(promised=B1, accepted={1: (B1, (b"a",))}))]
    assert disk.persist_owing_sync(small, defer_from_bytes=256 << 10) is False
    assert disk.persist_owing_sync([(1, large)], defer_from_bytes=256 << 10) is True
    assert disk.persist_owing_sync([(1, large)], defer_from_bytes=None) is False
    watermark = [(1, PersistBatch(chosen_watermark=1))]
    assert disk.persist_owing_sync(watermark, defer_from_bytes=0) is False
    assert recorder.syncs == [True, False, True, False]
    disk.sync()
    disk.db = recorder._db
    disk.close()
    reopened = RocksNodeDisk(tmp_path / "db")
    try:
        assert reopened.load(1).accepted[2] == (B1, (bytes(300_000),))
    finally:
        reopened.close()


def _live_log(path: Path) -> Path:
    # RocksDB numbers files in creation order; the open log is the newest one.
    return max(path.glob("*.log"), key=lambda p: int(p.stem))


def test_rocks_disk_writes_into_a_recycled_full_log_from_the_start(tmp_path: Path) -> None:
    # A log that is already as long as the writes into it: each fdatasync then flushes data
    # blocks only, not a journal commit for the growing file size (see shard/disk.py).
    disk = RocksNodeDisk(tmp_path / "db")
    try:
        assert _live_log(tmp_path / "db").stat().st_size >= WAL_WARMUP_BYTES
        assert disk.db.get(b"~wal-warmup") is None
    finally:
        disk.close()


def test_rocks_disk_bounds_the_memtable_and_filters_point_misses(tmp_path: Path) -> None:
    # RocksDB writes the options in force to OPTIONS-<n>; the newest one is this open's.
    disk = RocksNodeDisk(tmp_path / "db")
    disk.close()
    newest = max((tmp_path / "db").glob("OPTIONS-*"), key=lambda p: int(p.name.split("-")[1]))
    lines = {line.strip() for line in newest.read_text().splitlines()}
    assert f"write_buffer_size={WRITE_BUFFER_BYTES}" in lines
    assert WRITE_BUFFER_BYTES == WAL_WARMUP_BYTES  # a generation fits its recycled log
    assert "memtable_whole_key_filtering=true" in lines
    assert "memtable_prefix_bloom_size_ratio=0.100000" in lines
    assert "filter_policy=bloomfilter" in lines
    assert "whole_key_filtering=true" in lines


_CRASH_AFTER_SYNCED_WRITES = """
import os, sys
from paxos import Ballot, PersistBatch
from shard.disk import RocksNodeDisk
disk = RocksNodeDisk(sys.argv[1])
for slot in range(1, 201):
    disk.persist([(1, PersistBatch(accepted={slot: (Ballot(1, 1), (b"v%d" % slot,))}))])
os._exit(0)  # no close, no flush of the memtable: the reopen must replay the recycled log
"""


def test_rocks_disk_recovers_every_synced_write_from_a_recycled_log(tmp_path: Path) -> None:
    # The log format, not power loss: os._exit keeps the page cache. A recycled log holds
    # an older log's records past the new ones, and recovery must stop exactly between.
    path = tmp_path / "db"
    RocksNodeDisk(path).close()  # a restart: the second open recycles the first's logs too
    subprocess.run([sys.executable, "-c", _CRASH_AFTER_SYNCED_WRITES, str(path)], check=True)
    disk = RocksNodeDisk(path)
    try:
        accepted = disk.load(1).accepted
        assert sorted(accepted) == list(range(1, 201))
        assert accepted[200] == (B1, (b"v200",))
    finally:
        disk.close()


def test_a_data_directory_open_elsewhere_is_refused_with_a_clear_error(tmp_path: Path) -> None:
    first = RocksNodeDisk(tmp_path / "db")
    try:
        with pytest.raises(DataDirInUse, match=r"in use by another process: is this node"):
            RocksNodeDisk(tmp_path / "db")
    finally:
        first.close()
    RocksNodeDisk(tmp_path / "db").close()  # free again once closed


def test_an_unusable_lock_file_keeps_rocksdbs_own_error(tmp_path: Path) -> None:
    """Found by review: any RocksDB error naming LOCK was reported as a running node."""
    RocksNodeDisk(tmp_path / "db").close()
    (tmp_path / "db" / "LOCK").unlink()
    (tmp_path / "db" / "LOCK").mkdir()  # stands for any I/O error on the lock file
    with pytest.raises(Exception, match="LOCK") as err:
        RocksNodeDisk(tmp_path / "db")
    assert not isinstance(err.value, DataDirInUse)


def test_a_data_directory_held_by_another_process_is_named_as_such(tmp_path: Path) -> None:
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys; from shard.disk import RocksNodeDisk; "
            f"d = RocksNodeDisk({str(tmp_path / 'db')!r}); print('open', flush=True); "
            "sys.stdin.read()",
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "open"
        with pytest.raises(DataDirInUse, match="Resource temporarily unavailable"):
            RocksNodeDisk(tmp_path / "db")
    finally:
        holder.kill()
        holder.wait(timeout=10)


def test_a_vote_before_a_bare_watermark_in_one_cycle_is_synced(tmp_path: Path) -> None:
    """The cycle's one write is synced when any group's batch needs it, wherever that group
    comes in the cycle, not only when the last one does (found untested by an audit)."""
    disk = RocksNodeDisk(tmp_path / "db")
    recorder = _RecordingDb(disk.db)
    disk.db = recorder  # type: ignore[assignment]
    try:
        disk.persist(
            [
                (2, PersistBatch(promised=B1, accepted={1: (B1, (b"a",))})),
                (1, PersistBatch(chosen_watermark=1)),
            ]
        )
        assert recorder.syncs == [True]
        owing = disk.persist_owing_sync(
            [(2, PersistBatch(accepted={2: (B1, (b"b",))})), (1, PersistBatch(chosen_watermark=2))],
            defer_from_bytes=1,
        )
        assert owing is True  # the vote needs a sync, owed to the fsync run aside
        assert recorder.syncs == [True, False]
    finally:
        disk.db = recorder._db
        disk.close()
