"""The storage engine under the shard state machines: ordered bytes keys, atomic write batches.

One engine per node holds the data of every group the node hosts (each under its own key
prefix, see `shard.state_machine`). The node stages every apply of one event-loop cycle into
ONE `EngineBatch` and writes it with `write(batch, sync=False)`: the Paxos log is already
durable, and the applied index rides in the same batch as the data it covers, so a crash
loses both together and the node re-applies from the log.

Rules every implementation keeps (checked by `tests/unit/shard/test_engine_contract.py`):

1. Keys order as plain bytes; `scan(lo, hi, ...)` covers [lo, hi), `hi=None` is +inf.
2. A batch is atomic and applied in staging order (a `delete_range` then a `put` inside the
   range leaves the put). A batch is single-use.
3. `batch.get(key)` sees the batch's own staged writes first, then the engine.
4. `scan` is one point-in-time view: a full `scan(lo, hi, None)` is a consistent snapshot.
5. `write(batch, sync=True)` is durable on return, and so is every write before it.
   `write(batch, sync=False)` may be lost on a crash, but only together with the writes
   after it (a prefix of the write history survives, never a torn batch).

`MemEngine` models crashes (`crash()` forgets unsynced writes). `RocksEngine` is rocksdict in
raw mode, in `shard.rocks_engine`: this module touches no disk, so the sans-I/O cores import
their `Engine` and `EngineBatch` types from it.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterator
from typing import Protocol

KV = tuple[bytes, bytes]


class EngineBatch(Protocol):
    """Staged writes, applied atomically by `Engine.write`; reads see staged writes first."""

    def put(self, key: bytes, value: bytes) -> None:
        """Stage `key = value`."""
        ...

    def delete(self, key: bytes) -> None:
        """Stage the removal of `key` (absent keys are fine)."""
        ...

    def delete_range(self, lo: bytes, hi: bytes) -> None:
        """Stage the removal of every key in [lo, hi)."""
        ...

    def get(self, key: bytes) -> bytes | None:
        """The value of `key` as if this batch were already written."""
        ...

    def scan(self, lo: bytes, hi: bytes) -> list[KV]:
        """Every pair with lo <= key < hi, ascending, as if this batch were already written."""
        ...

    def iterate(self, lo: bytes, hi: bytes) -> Iterator[KV]:
        """`scan(lo, hi)`, lazily."""
        ...

    def __len__(self) -> int:
        """Number of staged operations."""
        ...


class Engine(Protocol):
    """An ordered bytes-to-bytes store with atomic batches."""

    def get(self, key: bytes) -> bytes | None:
        """The value of `key`, or None."""
        ...

    def scan(
        self, lo: bytes, hi: bytes | None, limit: int | None, reverse: bool = False
    ) -> list[KV]:
        """Up to `limit` (None: all) pairs with lo <= key < hi, ascending (descending if reverse)."""
        ...

    def scan_bounded(self, lo: bytes, hi: bytes, limit: int, max_bytes: int) -> list[KV]:
        """Pairs with lo <= key < hi, ascending: up to `limit` (>= 1) pairs, and no more once
        their keys and values reach `max_bytes` (the pair that reaches it is included, so
        a non-empty range gives at least one pair)."""
        ...

    def iterate(self, lo: bytes, hi: bytes) -> Iterator[KV]:
        """The pairs with lo <= key < hi, ascending, as they were when this was called:
        writes made later are not seen however long the iterator is kept."""
        ...

    def new_batch(self) -> EngineBatch:
        """A fresh, empty batch bound to this engine."""
        ...

    def write(self, batch: EngineBatch, sync: bool) -> None:
        """Apply `batch` atomically; durable on return when `sync`."""
        ...


def take_bounded(pairs: Iterator[KV], limit: int, max_bytes: int) -> list[KV]:
    """The first pairs of `pairs`: at most `limit`, and none after the one with which their
    keys and values reach `max_bytes`."""
    out: list[KV] = []
    size = 0
    for pair in pairs:
        out.append(pair)
        size += len(pair[0]) + len(pair[1])
        if len(out) >= limit or size >= max_bytes:
            break
    return out


class OverlayBatch:
    """Read-your-writes bookkeeping shared by both batch types."""

    __slots__ = ("_count", "_engine", "_ranges", "_sorted_staged", "_staged", "_used")

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        # key -> value, or None for a staged delete. A delete_range drops staged keys inside
        # it and is remembered, so a later get of a covered key answers None.
        self._staged: dict[bytes, bytes | None] = {}
        self._ranges: list[tuple[bytes, bytes]] = []
        self._count = 0
        self._used = False
        # The staged keys in order, and the `_count` they were sorted at (reused while no
        # operation was staged since: a Prepare's phantom check iterates many ranges).
        self._sorted_staged: tuple[int, list[bytes]] = (-1, [])

    def _engine_get(self, key: bytes) -> bytes | None:
        return self._engine.get(key)

    def _engine_iterate(self, lo: bytes, hi: bytes) -> Iterator[KV]:
        return self._engine.iterate(lo, hi)

    def iterate(self, lo: bytes, hi: bytes) -> Iterator[KV]:
        """Every pair with lo <= key < hi, ascending, as if this batch were already written,
        lazily: a caller that stops early reads only what it consumed, not the whole range
        (found by review: one Prepare whose scanned ranges covered a shard read all of it
        in the replicated apply)."""
        count, keys = self._sorted_staged
        if count != self._count:
            keys = sorted(self._staged)
            self._sorted_staged = (self._count, keys)
        staged, ranges = self._staged, self._ranges
        pending = keys[bisect.bisect_left(keys, lo) : bisect.bisect_left(keys, hi)]
        p = 0
        for key, value in self._engine_iterate(lo, hi):
            while p < len(pending) and pending[p] < key:
                staged_value = staged[pending[p]]
                if staged_value is not None:
                    yield pending[p], staged_value
                p += 1
            if p < len(pending) and pending[p] == key:
                p += 1
                staged_value = staged[key]
                if staged_value is not None:
                    yield key, staged_value
            elif not any(r_lo <= key < r_hi for r_lo, r_hi in ranges):
                yield key, value
        for key in pending[p:]:
            staged_value = staged[key]
            if staged_value is not None:
                yield key, staged_value

    def get(self, key: bytes) -> bytes | None:
        """The value of `key` as if this batch were already written."""
        staged = self._staged
        if key in staged:
            return staged[key]
        for lo, hi in self._ranges:
            if lo <= key < hi:
                return None
        return self._engine_get(key)

    def scan(self, lo: bytes, hi: bytes) -> list[KV]:
        """Every pair with lo <= key < hi, ascending, as if this batch were already written."""
        return list(self.iterate(lo, hi))

    def _stage_range(self, lo: bytes, hi: bytes) -> None:
        staged = self._staged
        for key in [k for k in staged if lo <= k < hi]:
            del staged[key]
        self._ranges.append((lo, hi))
        self._count += 1

    def _check_open(self) -> None:
        if self._used:
            raise RuntimeError("this batch was already written; batches are single-use")

    def __len__(self) -> int:
        """Number of staged operations."""
        return self._count


# --------------------------------------------------------------------------------------------
# MemEngine


class MemBatch(OverlayBatch):
    """A batch for `MemEngine`: an ordered list of operations."""

    __slots__ = ("_ops",)

    def __init__(self, engine: MemEngine) -> None:
        super().__init__(engine)
        # (key, value) put; (key, None) delete; (lo, hi, None) range delete, in staging order.
        self._ops: list[tuple[bytes, bytes | None] | tuple[bytes, bytes, None]] = []

    def put(self, key: bytes, value: bytes) -> None:
        """Stage `key = value`."""
        self._check_open()
        self._staged[key] = value
        self._ops.append((key, value))
        self._count += 1

    def delete(self, key: bytes) -> None:
        """Stage the removal of `key`."""
        self._check_open()
        self._staged[key] = None
        self._ops.append((key, None))
        self._count += 1

    def delete_range(self, lo: bytes, hi: bytes) -> None:
        """Stage the removal of every key in [lo, hi)."""
        self._check_open()
        self._stage_range(lo, hi)
        self._ops.append((lo, hi, None))


class MemEngine:
    """An in-memory engine over a sorted key list; `crash()` loses writes not yet synced."""

    def __init__(self) -> None:
        self._data: dict[bytes, bytes] = {}
        self._keys: list[bytes] = []
        # Undo records of writes since the last sync, newest last: (key, previous value|None).
        self._undo: list[tuple[bytes, bytes | None]] = []

    def get(self, key: bytes) -> bytes | None:
        """The value of `key`, or None."""
        return self._data.get(key)

    def scan(
        self, lo: bytes, hi: bytes | None, limit: int | None, reverse: bool = False
    ) -> list[KV]:
        """Up to `limit` pairs with lo <= key < hi, ascending (descending if reverse)."""
        keys = self._keys
        i = bisect.bisect_left(keys, lo)
        j = len(keys) if hi is None else bisect.bisect_left(keys, hi)
        if i >= j or limit == 0:
            return []
        if reverse:
            start = i if limit is None else max(i, j - limit)
            selected = keys[start:j]
            selected.reverse()
        else:
            selected = keys[i:j] if limit is None else keys[i : min(j, i + limit)]
        data = self._data
        return [(k, data[k]) for k in selected]

    def scan_bounded(self, lo: bytes, hi: bytes, limit: int, max_bytes: int) -> list[KV]:
        """See Engine.scan_bounded."""
        keys, data = self._keys, self._data
        i, j = bisect.bisect_left(keys, lo), bisect.bisect_left(keys, hi)
        return take_bounded(((keys[x], data[keys[x]]) for x in range(i, j)), limit, max_bytes)

    def iterate(self, lo: bytes, hi: bytes) -> Iterator[KV]:
        """See Engine.iterate (a copy of the range: the dict changes under a live view)."""
        return iter(self.scan(lo, hi, None))

    def new_batch(self) -> MemBatch:
        """A fresh, empty batch bound to this engine."""
        return MemBatch(self)

    def write(self, batch: EngineBatch, sync: bool) -> None:
        """Apply `batch` atomically; when `sync`, everything written so far becomes durable."""
        if not isinstance(batch, MemBatch) or batch._engine is not self:
            raise ValueError("batch was not created by this engine's new_batch()")
        batch._check_open()
        batch._used = True
        for op in batch._ops:
            if len(op) == 3:
                lo, hi, _ = op
                for key, _v in self.scan(lo, hi, None):
                    self._set(key, None)
            else:
                key, value = op
                self._set(key, value)
        if sync:
            self.sync()

    def sync(self) -> None:
        """Make every write so far durable (as a later synced RocksDB write does to the WAL)."""
        self._undo.clear()

    def crash(self) -> None:
        """Forget every write since the last sync, as a power loss would."""
        for key, previous in reversed(self._undo):
            self._raw_set(key, previous)
        self._undo.clear()

    def _set(self, key: bytes, value: bytes | None) -> None:
        self._undo.append((key, self._data.get(key)))
        self._raw_set(key, value)

    def _raw_set(self, key: bytes, value: bytes | None) -> None:
        data = self._data
        if value is None:
            if key in data:
                del data[key]
                keys = self._keys
                del keys[bisect.bisect_left(keys, key)]
        else:
            if key not in data:
                bisect.insort(self._keys, key)
            data[key] = value
