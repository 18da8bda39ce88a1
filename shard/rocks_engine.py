"""`RocksEngine`: the `shard.engine.Engine` on rocksdict in raw mode, the node's real disk.

See ../shared/REFERENCE.md for the two rocksdict bugs this module avoids (never
`set_iterate_lower_bound`; consistent scans use a plain iterator, not a snapshot).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from typing import cast

from rocksdict import Options, Rdict, ReadOptions, WriteBatch, WriteOptions

from shard.engine import KV, Engine, EngineBatch, MemEngine, OverlayBatch, take_bounded


class _Owning:
    """An iterator that keeps its ReadOptions alive (found by review): rocksdict 0.3.29's
    `set_iterate_upper_bound` keeps a pointer into the bound's bytes, which the ReadOptions
    holds; dropped while the iterator lived on (a snapshot build keeps one across wakes),
    the freed bound let it stop early or run into the next group's keys."""

    __slots__ = ("_items", "_read_options")

    def __init__(self, items: Iterator[KV], read_options: ReadOptions) -> None:
        self._items = items
        self._read_options = read_options

    def __iter__(self) -> _Owning:
        return self

    def __next__(self) -> KV:
        return next(self._items)


class RocksBatch(OverlayBatch):
    """A batch for `RocksEngine`: a rocksdict WriteBatch plus the read-your-writes overlay."""

    __slots__ = ("_db", "_wb")

    def __init__(self, engine: RocksEngine) -> None:
        super().__init__(engine)
        self._db = engine.db
        self._wb = WriteBatch(raw_mode=True)

    def _engine_get(self, key: bytes) -> bytes | None:
        value: bytes | None = self._db.get(key)
        return value

    def put(self, key: bytes, value: bytes) -> None:
        """Stage `key = value`."""
        self._check_open()
        self._staged[key] = value
        self._wb.put(key, value)
        self._count += 1

    def delete(self, key: bytes) -> None:
        """Stage the removal of `key`."""
        self._check_open()
        self._staged[key] = None
        self._wb.delete(key)
        self._count += 1

    def delete_range(self, lo: bytes, hi: bytes) -> None:
        """Stage the removal of every key in [lo, hi)."""
        self._check_open()
        self._stage_range(lo, hi)
        self._wb.delete_range(lo, hi)


class RocksEngine:
    """The engine on a rocksdict `Rdict` in raw mode; `.db` is shared with the Paxos storage."""

    def __init__(self, path: str | None = None, *, db: Rdict | None = None) -> None:
        if (path is None) == (db is None):
            raise ValueError("give exactly one of path or db")
        if db is None:
            assert path is not None
            db = Rdict(path, Options(raw_mode=True))
        self.db: Rdict = db
        self._sync_opts = WriteOptions()
        self._sync_opts.sync = True
        self._nosync_opts = WriteOptions()

    def get(self, key: bytes) -> bytes | None:
        """The value of `key`, or None."""
        value: bytes | None = self.db.get(key)
        return value

    def scan(
        self, lo: bytes, hi: bytes | None, limit: int | None, reverse: bool = False
    ) -> list[KV]:
        """Up to `limit` pairs with lo <= key < hi, ascending (descending if reverse)."""
        if limit == 0 or (hi is not None and hi <= lo):
            return []
        ro = ReadOptions()
        if hi is not None:
            # Only the upper bound: set_iterate_lower_bound is broken in rocksdict 0.3.29.
            ro.set_iterate_upper_bound(hi)
        if reverse:
            return self._scan_backwards(lo, ro, limit)
        forward = cast("Iterator[KV]", self.db.items(from_key=lo, read_opt=ro))
        if limit is None:
            return list(forward)
        return list(itertools.islice(forward, limit))

    def _scan_backwards(self, lo: bytes, ro: ReadOptions, limit: int | None) -> list[KV]:
        """`scan`'s descending case, from the upper bound `ro` holds down to `lo`.

        The iterator steps back only while the key it is on is above the range's lowest
        key, found going forward first: with no lower bound (see `scan`), a step back from
        the lowest key walks every deleted entry below `lo` until it meets a live key (a
        group's transaction records, just below its versions, come and go with every
        transaction), which took 73 ms a scan over 100,000 of them (found by review).
        """
        probe = self.db.iter(ro)
        probe.seek(lo)
        if not probe.valid():
            return []
        lowest = probe.key()
        del probe
        it = self.db.iter(ro)
        it.seek_to_last()
        out: list[KV] = []
        while it.valid():
            key = it.key()
            out.append((key, it.value()))
            if key <= lowest or (limit is not None and len(out) >= limit):
                break
            it.prev()
        return out

    def scan_bounded(self, lo: bytes, hi: bytes, limit: int, max_bytes: int) -> list[KV]:
        """See Engine.scan_bounded: the iterator is dropped there (having read at most the
        next record ahead), so a page of large values is not read whole."""
        if hi <= lo:
            return []
        ro = ReadOptions()
        ro.set_iterate_upper_bound(hi)
        forward = cast("Iterator[KV]", self.db.items(from_key=lo, read_opt=ro))
        return take_bounded(forward, limit, max_bytes)

    def iterate(self, lo: bytes, hi: bytes) -> Iterator[KV]:
        """See Engine.iterate: a RocksDB iterator pins its point-in-time view when created
        (`../shared/REFERENCE.md`; a `db.snapshot()` would not, its iteration is live)."""
        ro = ReadOptions()
        ro.set_iterate_upper_bound(hi)
        return _Owning(cast("Iterator[KV]", self.db.items(from_key=lo, read_opt=ro)), ro)

    def new_batch(self) -> RocksBatch:
        """A fresh, empty batch bound to this engine."""
        return RocksBatch(self)

    def write(self, batch: EngineBatch, sync: bool) -> None:
        """Apply `batch` atomically with one RocksDB write; fdatasync'ed when `sync`."""
        if not isinstance(batch, RocksBatch) or batch._engine is not self:
            raise ValueError("batch was not created by this engine's new_batch()")
        batch._check_open()
        batch._used = True
        self.db.write(batch._wb, self._sync_opts if sync else self._nosync_opts)

    def close(self) -> None:
        """Close the database (it closes for real once no iterator or view is alive)."""
        self.db.close()


def _conformance(mem: MemEngine, rocks: RocksEngine) -> tuple[Engine, Engine]:
    """Static check (mypy) that both engines satisfy the `Engine` protocol."""
    return mem, rocks
