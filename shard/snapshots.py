"""A shard group's snapshot: its blob format, and building and restoring it in bounded steps.

A snapshot of a shard with a few hundred thousand keys takes seconds of Python to build and
longer to restore (about 2.4 µs per record to build, 5 µs to restore, on the reference
machine): done in one event-loop turn it stalled the node past the election timeout, so the
groups it led elected new leaders, and the next leader stalled the same way building the
same snapshot for the same lagging follower. So both sides work in steps of a bounded number
of records and bytes, paced by the node (`shard.node.NodeCore.background`):

- `ShardSnapshotBuild` reads a point-in-time engine iterator (writes made after it was
  created are not seen), so the blob is one consistent state however many steps it takes.
- `ShardRestore` first walks the blob's frames and copies it into staging records of the
  engine, leaving the group's data untouched (a bad frame abandons the restore there). Then
  one batch deletes the group's keys and writes the staging marker, later batches write the
  records, and the last writes the meta record and drops the staging. The engine's log is
  ordered, so after a crash either the marker is lost, and with it every change to the
  group's data, or every staged part survived: the state machine then redoes the restore
  from them (`ShardRestore.redo`) before the group is loaded.

Blob: magic, ``>QQQ`` applied_index, max_version, gc_horizon, then per record ``>II`` key and
value lengths, the key (without the group prefix) and the value; ``>I`` CRC-32 of all before.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Iterator
from typing import Protocol

from shard.engine import KV, Engine, EngineBatch
from shard.errors import SnapshotCorrupt
from shard.mvcc import META_TAG, pack_meta, storage_prefix_end, unpack_meta

MAGIC = b"PKVSNAP\x01"
_HEADER = struct.Struct(">QQQ")
_FRAME = struct.Struct(">II")
_CRC = struct.Struct(">I")
_HEAD = len(MAGIC) + _HEADER.size
_PART = struct.Struct(">I")
# Staging keys, under the restore prefix of the group (`shard.mvcc.restore_prefix`).
_MARKER = b"!"
WALK_RECORDS_PER_RECORD = 8
_PART_TAG = b"p"


def check_header(data: bytes) -> tuple[int, int, int]:
    """Verify magic and checksum; return (applied_index, max_version, gc_horizon).

    Cheap enough for a snapshot's arrival (the CRC runs in C); the frames are walked by the
    restore, before it changes anything.
    """
    if len(data) < _HEAD + _CRC.size or not data.startswith(MAGIC):
        raise SnapshotCorrupt("not a shard snapshot (bad magic or too short)")
    stop = len(data) - _CRC.size
    (crc,) = _CRC.unpack_from(data, stop)
    if zlib.crc32(memoryview(data)[:stop]) != crc:
        raise SnapshotCorrupt("shard snapshot checksum mismatch")
    applied_index, max_version, gc_horizon = _HEADER.unpack_from(data, len(MAGIC))
    return applied_index, max_version, gc_horizon


def _walk_frames(data: bytes, pos: int, limit: int, max_bytes: int, sink: RestoreSink) -> int:
    """Check record frames from `pos`, up to `limit` of them or `max_bytes` of blob, and
    the records `sink.check_record` decodes; the position after the last one checked."""
    stop = len(data) - _CRC.size
    end = pos + max_bytes
    unpack = _FRAME.unpack_from
    for _ in range(limit):
        if pos >= stop or pos >= end:
            break
        if pos + _FRAME.size > stop:
            raise SnapshotCorrupt("truncated record frame in shard snapshot")
        key_len, value_len = unpack(data, pos)
        key_at = pos + _FRAME.size
        pos = key_at + key_len + value_len
        if pos > stop or key_len == 0:
            raise SnapshotCorrupt("bad record frame in shard snapshot")
        if data[key_at] in sink.checked_tags:
            sink.check_record(data[key_at : key_at + key_len], data[key_at + key_len : pos])
    return pos


class ShardSnapshotBuild:
    """The snapshot blob of one group, built from a point-in-time iterator in steps.

    `meta` is the group's meta record as of the iterator's view (read in the same loop
    turn that created it, so no write falls between them): the header goes first, and each
    step joins and checksums only its own records, so no step costs the whole blob but the
    last one's final copy.
    """

    def __init__(self, records: Iterator[KV], strip: int, meta: bytes | None) -> None:
        self._records = records
        self._strip = strip
        self.index, max_version, gc_horizon = unpack_meta(meta or pack_meta(0, 0, 0))
        head = MAGIC + _HEADER.pack(self.index, max_version, gc_horizon)
        self._chunks = [head]
        self._crc = zlib.crc32(head)
        self.records = 0

    def step(self, max_records: int, max_bytes: int) -> tuple[int, bytes] | None:
        """Read up to `max_records` records or `max_bytes` of them; (index, blob) at the end."""
        strip, frame = self._strip, _FRAME.pack
        parts: list[bytes] = []
        size = 0
        done = True
        for n, (key, value) in enumerate(self._records, 1):
            suffix = key[strip:]
            if suffix != META_TAG:
                parts.append(frame(len(suffix), len(value)))
                parts.append(suffix)
                parts.append(value)
                self.records += 1
            size += len(key) + len(value)
            if n >= max_records or size >= max_bytes:
                done = False
                break
        chunk = b"".join(parts)
        self._crc = zlib.crc32(chunk, self._crc)
        self._chunks.append(chunk)
        if not done:
            return None
        self._chunks.append(_CRC.pack(self._crc))
        blob = b"".join(self._chunks)
        self._chunks = []
        return self.index, blob


class RestoreSink(Protocol):
    """What a restore tells the state machine whose keys it replaces (its derived state)."""

    #: First bytes of the records `check_record` checks (the others are not asked about).
    checked_tags: frozenset[int]

    def check_record(self, suffix: bytes, value: bytes) -> None:
        """Raise SnapshotCorrupt if a record of `checked_tags` does not decode: met while
        the frames are walked, before the group's data changes."""

    def restore_started(self) -> None: ...

    def restore_record(self, suffix: bytes, value: bytes) -> None: ...

    def restore_finished(self, applied_index: int, max_version: int, gc_horizon: int) -> None: ...


class ShardRestore:
    """Replaces one group's keys by a snapshot's in steps; see the module docstring."""

    def __init__(
        self, data: bytes, group_prefix: bytes, stage_prefix: bytes, sink: RestoreSink
    ) -> None:
        self._data = data
        self._header = check_header(data)
        self._prefix = group_prefix
        self._stage = stage_prefix
        self._sink = sink
        self._walked = _HEAD  # frames checked up to here
        self._staged = 0  # blob bytes copied into staging parts
        self._parts = 0
        self._pos = _HEAD  # next record to write
        self._started = False

    @property
    def index(self) -> int:
        return self._header[0]

    def step(self, batch: EngineBatch, max_records: int, max_bytes: int) -> bool:
        """Stage the next bounded piece of work into `batch`; True once the restore is done.

        Raises:
            SnapshotCorrupt: a bad frame, met before the group's data was touched.
        """
        stop = len(self._data) - _CRC.size
        if self._walked < stop:
            # A frame costs a tenth of a record's write: walk more of them per step.
            walk = WALK_RECORDS_PER_RECORD * max_records
            self._walked = _walk_frames(self._data, self._walked, walk, max_bytes, self._sink)
            self._stage_up_to(batch, self._walked)
            return False
        if self._staged < len(self._data):
            self._stage_up_to(batch, len(self._data))
            return False
        if not self._started:
            self._started = True
            batch.delete_range(self._prefix, storage_prefix_end(self._prefix))
            batch.put(self._stage + _MARKER, _PART.pack(self._parts))
            self._sink.restore_started()
        self._pos = self._write_records(batch, self._pos, max_records, max_bytes)
        if self._pos < stop:
            return False
        batch.delete_range(self._stage, storage_prefix_end(self._stage))
        self._finish(batch)
        return True

    def run(self, batch: EngineBatch) -> None:
        """The whole restore in one batch (one atomic write: no staging needed)."""
        self._begin_at_once(batch)
        self._write_records(batch, _HEAD, len(self._data), len(self._data))
        self._finish(batch)

    def redo(self, engine: Engine, max_bytes: int) -> None:
        """Redo a restore a crash interrupted after its marker (`interrupted_restore`) into
        `engine`, in unsynced batches of about `max_bytes` of records (not one batch as large
        as the shard). The marker goes with the last one: a crash before it leaves the redo
        to do again, and the engine's log is ordered, so the next synced write covers it."""
        batch = engine.new_batch()
        self._begin_at_once(batch)
        pos, stop = _HEAD, len(self._data) - _CRC.size
        while (pos := self._write_records(batch, pos, len(self._data), max_bytes)) < stop:
            engine.write(batch, sync=False)
            batch = engine.new_batch()
        stage_cleared(batch, self._stage)
        self._finish(batch)
        engine.write(batch, sync=False)

    def _begin_at_once(self, batch: EngineBatch) -> None:
        """Check every frame, then replace the group's keys (`run`, `redo`: no staging)."""
        _walk_frames(self._data, _HEAD, len(self._data), len(self._data), self._sink)
        batch.delete_range(self._prefix, storage_prefix_end(self._prefix))
        self._sink.restore_started()

    def abandon(self, batch: EngineBatch) -> None:
        """Drop the staged blob: the restore met bad frames, before the group's data changed."""
        stage_cleared(batch, self._stage)

    def _stage_up_to(self, batch: EngineBatch, end: int) -> None:
        if end > self._staged:
            batch.put(
                self._stage + _PART_TAG + _PART.pack(self._parts), self._data[self._staged : end]
            )
            self._parts += 1
            self._staged = end

    def _write_records(self, batch: EngineBatch, pos: int, max_records: int, max_bytes: int) -> int:
        data, prefix, sink = self._data, self._prefix, self._sink
        stop = len(data) - _CRC.size
        view = memoryview(data)
        unpack = _FRAME.unpack_from
        size = 0
        records = 0
        while pos < stop and records < max_records and size < max_bytes:
            key_len, value_len = unpack(data, pos)
            pos += _FRAME.size
            suffix = bytes(view[pos : pos + key_len])
            pos += key_len
            value = bytes(view[pos : pos + value_len])
            pos += value_len
            batch.put(prefix + suffix, value)
            sink.restore_record(suffix, value)
            records += 1
            size += key_len + value_len
        return pos

    def _finish(self, batch: EngineBatch) -> None:
        applied_index, max_version, gc_horizon = self._header
        batch.put(self._prefix + META_TAG, pack_meta(applied_index, max_version, gc_horizon))
        self._sink.restore_finished(applied_index, max_version, gc_horizon)


def interrupted_restore(engine: Engine, stage_prefix: bytes) -> bytes | None:
    """The staged blob of a restore a crash interrupted after it began changing the group's
    data, or None; staging left by a restore that had not begun is dropped (the data is the
    old state, whole)."""
    marker = engine.get(stage_prefix + _MARKER)
    parts_lo = stage_prefix + _PART_TAG
    if marker is None:
        if engine.scan(stage_prefix, storage_prefix_end(stage_prefix), 1):
            batch = engine.new_batch()
            batch.delete_range(stage_prefix, storage_prefix_end(stage_prefix))
            engine.write(batch, sync=False)
        return None
    (count,) = _PART.unpack(marker)
    parts = engine.scan(parts_lo, storage_prefix_end(parts_lo), None)
    if len(parts) != count:
        raise SnapshotCorrupt(f"interrupted restore staged {len(parts)} parts of {count}")
    return b"".join(value for _, value in parts)


def stage_cleared(batch: EngineBatch, stage_prefix: bytes) -> None:
    """Drop a restore's staging (an abandoned restore)."""
    batch.delete_range(stage_prefix, storage_prefix_end(stage_prefix))
