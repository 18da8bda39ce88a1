"""Node disks: one RocksDB per node for every group's Paxos state and data, or all in memory."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from rocksdict import Options, Rdict, WriteBatch, WriteOptions

from paxos import MemoryStorage, PersistBatch
from paxos.rocks import RocksStorage
from paxos.storage import DurableState
from shard.engine import MemEngine, RocksEngine


class RocksNodeDisk:
    """One rocksdict database (raw mode): Paxos state under b"p", data under b"d"/b"m"."""

    def __init__(self, path: str | Path) -> None:
        Path(path).mkdir(parents=True, exist_ok=True)
        self.db = Rdict(str(path), Options(raw_mode=True))
        self.engine = RocksEngine(db=self.db)
        self._storages: dict[int, RocksStorage] = {}
        self._sync = WriteOptions()
        self._sync.sync = True
        self._nosync = WriteOptions()

    def _storage(self, group_id: int) -> RocksStorage:
        storage = self._storages.get(group_id)
        if storage is None:
            storage = self._storages[group_id] = RocksStorage(self.db, group_id)
        return storage

    def load(self, group_id: int) -> DurableState:
        return self._storage(group_id).load()

    def persist(self, batches: Sequence[tuple[int, PersistBatch]]) -> None:
        """Group commit: every group's batch in one write, synced before returning if any
        batch needs it (the single WAL keeps unsynced writes in order behind it)."""
        wb = WriteBatch(raw_mode=True)
        sync = False
        for group_id, batch in batches:
            self._storage(group_id).stage(batch, wb)
            sync = sync or batch.needs_sync()
        self.db.write(wb, self._sync if sync else self._nosync)

    def close(self) -> None:
        self.db.close()


class MemoryNodeDisk:
    """In-memory node disk for the simulator: `crash()` loses whatever was not synced.

    A synced persist also makes every earlier write durable (other groups' unsynced
    watermarks, engine writes), as RocksDB's single WAL does for the real node.
    """

    def __init__(self) -> None:
        self.engine = MemEngine()
        self._storages: dict[int, MemoryStorage] = {}

    def _storage(self, group_id: int) -> MemoryStorage:
        return self._storages.setdefault(group_id, MemoryStorage())

    def load(self, group_id: int) -> DurableState:
        return self._storage(group_id).load()

    def persist(self, batches: Sequence[tuple[int, PersistBatch]]) -> None:
        for group_id, batch in batches:
            self._storage(group_id).save(batch, sync=False)
        if any(batch.needs_sync() for _, batch in batches):
            for storage in self._storages.values():
                storage.sync()
            self.engine.sync()

    def crash(self) -> None:
        for storage in self._storages.values():
            storage.crash()
        self.engine.crash()
