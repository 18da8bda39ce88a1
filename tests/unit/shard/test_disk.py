"""Node disks: which persists are synced, and what a crash may take."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from paxos import Ballot, PersistBatch
from shard.disk import MemoryNodeDisk, RocksNodeDisk

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
