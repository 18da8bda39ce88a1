"""Acceptor state in RocksDB (rocksdict, raw mode), shared by every group of a node.

Keyspace of group g (g as 4 bytes big-endian):
    b"p" g b"m"            -> promised ballot, chosen watermark, log start, flags, lease
    b"p" g b"s" slot(8 BE) -> accepted (ballot, value)

`stage()` adds a group's persist batch to a caller's WriteBatch so that a node writes the
Ready batches of all its groups with one synced write (group commit). `save()` is the
one-group convenience: stage, then write with sync=True. Nothing is acknowledged before that
write returns.
"""

from __future__ import annotations

import math
import struct
from typing import Any

from rocksdict import Options, Rdict, ReadOptions, WriteBatch, WriteOptions

from paxos.ballot import Ballot
from paxos.messages import Value
from paxos.ready import PersistBatch
from paxos.storage import DurableState

# Promised round, promised node, chosen watermark, log start, flags, lease promise (µs).
# Written before the lease promise existed: without it; before the flags: the first four.
_META = struct.Struct(">QQQQBI")
_META_NO_LEASE = struct.Struct(">QQQQB")
_META_NO_FLAGS = struct.Struct(">QQQQ")
_REBUILDING = 1
_VOTE_HEAD = struct.Struct(">QQI")  # ballot round, ballot node, command count
_LEN = struct.Struct(">I")
_SLOT = struct.Struct(">Q")


def encode_vote(ballot: Ballot, value: Value) -> bytes:
    parts = [_VOTE_HEAD.pack(ballot.round, ballot.node_id, len(value))]
    for command in value:
        parts.append(_LEN.pack(len(command)))
        parts.append(command)
    return b"".join(parts)


def decode_vote(data: bytes) -> tuple[Ballot, Value]:
    round_, node, count = _VOTE_HEAD.unpack_from(data, 0)
    offset = _VOTE_HEAD.size
    commands = []
    for _ in range(count):
        (length,) = _LEN.unpack_from(data, offset)
        offset += _LEN.size
        commands.append(data[offset : offset + length])
        offset += length
    return Ballot(round_, node), tuple(commands)


class RocksStorage:
    """Durable acceptor state of one group inside a node's RocksDB."""

    def __init__(self, db: Any, group_id: int) -> None:
        self._db = db
        prefix = b"p" + group_id.to_bytes(4, "big")
        self._meta_key = prefix + b"m"
        self._slot_prefix = prefix + b"s"
        self._meta = self._read_meta()

    @classmethod
    def open(cls, path: str, group_id: int) -> RocksStorage:
        """Open (or create) a standalone RocksDB for one group; used by tools and tests."""
        return cls(Rdict(path, Options(raw_mode=True)), group_id)

    def _slot_key(self, slot: int) -> bytes:
        return self._slot_prefix + _SLOT.pack(slot)

    def _read_meta(self) -> DurableState:
        meta = self._db.get(self._meta_key)
        if meta is None:
            return DurableState()
        lease_us = flags = 0
        if len(meta) == _META_NO_FLAGS.size:
            round_, node, watermark, log_start = _META_NO_FLAGS.unpack(meta)
        elif len(meta) == _META_NO_LEASE.size:
            round_, node, watermark, log_start, flags = _META_NO_LEASE.unpack(meta)
        else:
            round_, node, watermark, log_start, flags, lease_us = _META.unpack(meta)
        return DurableState(
            promised=Ballot(round_, node),
            chosen_watermark=watermark,
            log_start=log_start,
            rebuilding=bool(flags & _REBUILDING),
            lease_promise_s=lease_us / 1e6,
        )

    def load(self) -> DurableState:
        """The state as of the last completed write, read from the database."""
        state = self._read_meta()
        options = ReadOptions()
        options.set_iterate_upper_bound(self._slot_prefix + b"\xff" * 9)
        for key, value in self._db.items(from_key=self._slot_prefix, read_opt=options):
            (slot,) = _SLOT.unpack(key[len(self._slot_prefix) :])
            if slot >= state.log_start:
                state.accepted[slot] = decode_vote(value)
        return state

    def stage(self, batch: PersistBatch, wb: Any) -> None:
        """Add `batch` to the caller's write batch; the caller writes it with sync=True."""
        meta = self._meta
        old_start = meta.log_start
        meta.apply(batch.with_votes({}))
        if meta.log_start > old_start:
            wb.delete_range(self._slot_key(0), self._slot_key(meta.log_start))
        for slot, (ballot, value) in batch.accepted.items():
            if slot >= meta.log_start:
                wb.put(self._slot_key(slot), encode_vote(ballot, value))
        if batch.touches_meta():
            wb.put(
                self._meta_key,
                _META.pack(
                    meta.promised.round,
                    meta.promised.node_id,
                    meta.chosen_watermark,
                    meta.log_start,
                    _REBUILDING if meta.rebuilding else 0,
                    # Rounded up: a restart waits at least as long as was promised.
                    min(math.ceil(meta.lease_promise_s * 1e6), 2**32 - 1),
                ),
            )

    def save(self, batch: PersistBatch) -> None:
        wb = WriteBatch(raw_mode=True)
        self.stage(batch, wb)
        options = WriteOptions()
        options.sync = True
        self._db.write(wb, options)
