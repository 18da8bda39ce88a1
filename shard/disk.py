"""Node disks: one RocksDB per node for every group's Paxos state and data, or all in memory.

Every vote waits for an fdatasync of RocksDB's write-ahead log, so its cost is on the
critical path of every write. Appending to a file makes each fdatasync commit the file
system journal too (the file size changed), and three nodes on one disk then queue behind
each other's journal commits: measured here, 0.22 ms per synced write with three writers,
against 0.14 ms when the log overwrites blocks it already holds. etcd gets the same effect
by preallocating its WAL segments; RocksDB gets it by recycling old log files
(`recycle_log_file_num`, safe with point-in-time recovery since RocksDB 9.1), and
`RocksNodeDisk` fills and retires one log at open so that even a fresh node writes into a
recycled one.

A log lives as long as the memtable it covers, so the write buffer is the same 16 MiB as the
warmed-up log. With RocksDB's default 64 MiB, a fresh node's first log went on growing past
its recycled 16 MiB, and the skip list of a large memtable makes every read and insert
dearer (which of the two weighs more was not measured apart).
Measured here (`bench/cpu_per_op.py --modes txn2w,put`, twelve 4 s runs in a row on one
fresh 3-shard cluster, about 70 s): with the default the 2-shard commit p50 drifted from
about 2.2-2.4 ms to 2.9-3.3 ms and the put p50 from 1.03-1.10 to 1.24-1.50 ms (two
clusters); with 16 MiB it stayed at 2.21-2.55 and 1.06-1.26 ms.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

from rocksdict import BlockBasedOptions, Options, Rdict, WriteBatch, WriteOptions

from paxos import MemoryStorage, PersistBatch
from paxos.rocks import RocksStorage
from paxos.storage import DurableState
from shard.engine import MemEngine
from shard.private_dirs import make_private_dir
from shard.rocks_engine import RocksEngine

# Logs kept for reuse; the memtable size, which is also how much of a log the warm-up at
# open writes (a log covers one memtable).
RECYCLED_LOGS = 4
WRITE_BUFFER_BYTES = 16 << 20
WAL_WARMUP_BYTES = WRITE_BUFFER_BYTES
# Memtable bloom filter size (share of the write buffer) and SST filter bits per key.
MEMTABLE_BLOOM_RATIO = 0.1
BLOOM_BITS_PER_KEY = 10
# Outside every prefix the node uses (b"p" Paxos, b"d"/b"m" data): no scan ever meets it.
_WARMUP_KEY = b"~wal-warmup"


class DataDirInUse(OSError):
    """Another process (or this one) holds the node's RocksDB open."""


def _held_by_another(message: str) -> bool:
    """Whether RocksDB's open failed because someone holds its LOCK (not, say, because
    the lock file cannot be opened: that error must keep its own words; found by review)."""
    return "lock hold by current process" in message or (
        "While lock file" in message and "Resource temporarily unavailable" in message
    )


class RocksNodeDisk:
    """One rocksdict database (raw mode): Paxos state under b"p", data under b"d"/b"m"."""

    def __init__(self, path: str | Path, *, claim: Callable[[Rdict], None] | None = None) -> None:
        """Open (or create) the database at `path`; `claim`, if given, checks whose it is
        (and may record it) before the open writes anything (shard/node_identity.py)."""
        make_private_dir(Path(path))  # every key is in there: owner-only
        options = Options(raw_mode=True)
        # With recycling RocksDB refuses writes with the WAL disabled: every write here,
        # synced or not, goes through the log (and must, for the crash rules in execute.py).
        options.set_recycle_log_file_num(RECYCLED_LOGS)
        # Room for the whole warm-up in one memtable (RocksDB flushes a memtable before it is
        # full), then the size every later generation keeps to, under its recycled log's.
        options.set_write_buffer_size(2 * WRITE_BUFFER_BYTES)
        _filter_point_misses(options)
        try:
            self.db = Rdict(str(path), options)
        except Exception as exc:
            if not _held_by_another(str(exc)):
                raise
            raise DataDirInUse(
                f"the data directory {path} is in use by another process: is this node "
                f"already running? (`paxoskv cluster status` or `ps` shows it; {exc})"
            ) from None
        if claim is not None:
            try:
                claim(self.db)
            except BaseException:
                self.db.close()
                raise
        _recycle_a_full_log(self.db)
        self.db.set_options({"write_buffer_size": str(WRITE_BUFFER_BYTES)})
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
        self.persist_owing_sync(batches, defer_from_bytes=None)

    def persist_owing_sync(
        self, batches: Sequence[tuple[int, PersistBatch]], defer_from_bytes: int | None
    ) -> bool:
        """`persist`, except that a write of at least `defer_from_bytes` that needs a sync
        is written unsynced and True returned: the caller owes `sync()` before anything
        depends on the write (a vote, an answer, an apply)."""
        wb = WriteBatch(raw_mode=True)
        sync = False
        for group_id, batch in batches:
            self._storage(group_id).stage(batch, wb)
            sync = sync or batch.needs_sync()
        owed = sync and defer_from_bytes is not None and wb.size_in_bytes() >= defer_from_bytes
        self.db.write(wb, self._sync if sync and not owed else self._nosync)
        return owed

    def sync(self) -> None:
        """fdatasync the write-ahead log: every write so far becomes durable.

        Unlike a synced write, which holds the GIL through its fdatasync (REFERENCE.md),
        rocksdict's flush_wal releases it, so a worker thread may run this while the
        process's loop goes on.
        """
        self.db.flush_wal(True)

    def close(self) -> None:
        self.db.close()


def _filter_point_misses(options: Options) -> None:
    """Bloom filters on whole keys, in the memtable and in every SST.

    Most point reads of a transaction miss (no decision, no prepared record, no intent
    yet). Without a filter a miss searches the memtable's skip list (measured here: 1.7-2.0
    µs in a 300,000-entry memtable, 0.26 µs with the filter) and the index and a data block
    of every table that may hold the key, and small memtables make many tables.
    """
    options.set_memtable_prefix_bloom_ratio(MEMTABLE_BLOOM_RATIO)
    options.set_memtable_whole_key_filtering(True)
    table = BlockBasedOptions()
    table.set_bloom_filter(BLOOM_BITS_PER_KEY, False)
    options.set_block_based_table_factory(table)


def _recycle_a_full_log(db: Rdict) -> None:
    """Leave the database writing into a recycled log at least WAL_WARMUP_BYTES long.

    Flush 1 retires the log holding the filler; RocksDB recycles it at the next switch,
    which flush 2 causes. The filler is one key overwritten, so no SST keeps it.
    """
    filler = bytes(256 << 10)
    for _ in range(WAL_WARMUP_BYTES // len(filler)):
        db.put(_WARMUP_KEY, filler)
    db.delete(_WARMUP_KEY)
    db.flush(True)
    db.delete(_WARMUP_KEY)
    db.flush(True)


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
