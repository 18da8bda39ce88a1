"""The MVCC key encoding of a shard group's data in the node's shared engine.

Pure functions; the layout itself is documented at the top of `shard.state_machine`.

User keys inside version records are escaped so that byte order is preserved and no encoded
key is a prefix of another: every 0x00 becomes 0x00 0xFF and the key ends with 0x00 0x01
(the order-preserving encoding of CockroachDB's and FoundationDB's tuple layers). The version
follows as 8 big-endian bytes of (2**64 - 1 - version), so a forward scan meets a key's newest
version first.
"""

from __future__ import annotations

import struct
from typing import NamedTuple

from router import keys

DATA_TAG = b"d"
"""First byte of every shard data key (the Paxos library uses b"p")."""

RESTORE_TAG = b"r"
"""First byte of a restore's staging keys (`shard.snapshots`), outside every group's data."""

META_TAG = b"m"
LATEST_TAG = b"l"
VERSION_TAG = b"v"
INTENT_TAG = b"i"
"""``P + b"i" + key``: every intent on the key (`txn.codec.encode_intents`)."""
TXN_TAG = b"t"
"""``P + b"t" + sub-tag + ...``: transaction records (the sub-tags below)."""
PREPARED_TAG = TXN_TAG + b"p"
"""``+ txn_id``: a participant's prepared record (`txn.codec.encode_prepared`)."""
DECISION_TAG = TXN_TAG + b"d"
"""``+ txn_id``: a coordinator's decision record (`txn.codec.encode_decision`)."""
UNFINISHED_TAG = TXN_TAG + b"u"
"""``+ txn_id``: b"" while the decision of txn_id is not finished (recovery's worklist)."""
PURGE_QUEUE_TAG = TXN_TAG + b"q"
"""``+ >Q seq``: the txn id of the seq-th decision to become finished (purge order)."""
PURGE_COUNTERS_TAG = TXN_TAG + b"c"
"""``>QQQQ`` head, tail of the purge queue (entries [head, tail) exist), the purge mark (the
largest `before_ts` purged, `txn.store.TxnStore.purge_mark`) and the unverified purge mark
(`txn.store.TxnStore.unverified_purge_mark`; `PurgeCounters`). Stores written before the
unverified mark existed hold ``>QQQ`` (read as equal to the purge mark), and before the
purge mark existed ``>QQ`` (both marks 0)."""

KIND_VALUE = b"v"
KIND_TOMBSTONE = b"t"
KIND_VALUE_INT = KIND_VALUE[0]
KIND_TOMBSTONE_INT = KIND_TOMBSTONE[0]

MAX_U64 = (1 << 64) - 1
KEY_TERMINATOR = b"\x00\x01"
KEY_TERMINATOR_END = b"\x00\x02"
VERSION_SUFFIX_BYTES = 9  # 8 bytes of inverted version + 1 kind byte

_META = struct.Struct(">QQQ")
_COUNTERS = struct.Struct(">QQQQ")
_COUNTERS_WITHOUT_UNVERIFIED_MARK = struct.Struct(">QQQ")
_COUNTERS_WITHOUT_MARK = struct.Struct(">QQ")
_SEQ = struct.Struct(">Q")
_LATEST = struct.Struct(">Qc")


def group_prefix(group_id: int) -> bytes:
    """The prefix b"d" + group id (4 bytes, big-endian) under which a group's keys live."""
    if not 0 <= group_id < (1 << 32):
        raise ValueError(f"group id {group_id} is outside [0, 2**32)")
    return DATA_TAG + group_id.to_bytes(4, "big")


def restore_prefix(group_id: int) -> bytes:
    """The prefix b"r" + group id (4 bytes, big-endian) of a restore's staging keys."""
    return RESTORE_TAG + group_prefix(group_id)[len(DATA_TAG) :]


def storage_prefix_end(prefix: bytes) -> bytes:
    """The smallest key greater than every key starting with `prefix`, a storage prefix,
    which always has one (`router.keys.prefix_end` is None past a user prefix with none)."""
    end = keys.prefix_end(prefix)
    if end is None:
        raise ValueError(f"the prefix {prefix!r} has no finite end (empty, or only 0xFF bytes)")
    return end


def escape_key(key: bytes) -> bytes:
    """Order-preserving, prefix-free encoding of a user key (terminator included)."""
    return key.replace(b"\x00", b"\x00\xff") + KEY_TERMINATOR


def unescape_key(encoded: bytes) -> bytes:
    """Inverse of `escape_key` (the terminator must be present)."""
    return encoded[:-2].replace(b"\x00\xff", b"\x00")


def invert_version(version: int) -> bytes:
    """8 bytes that sort newest-first: big-endian (2**64 - 1 - version)."""
    return (MAX_U64 - version).to_bytes(8, "big")


def record_version(record_key: bytes) -> int:
    """The version of a version record key."""
    return MAX_U64 - int.from_bytes(record_key[-9:-1], "big")


def pack_meta(applied_index: int, max_version: int, gc_horizon: int) -> bytes:
    """Encode the group's meta record."""
    return _META.pack(applied_index, max_version, gc_horizon)


def unpack_meta(data: bytes) -> tuple[int, int, int]:
    """Decode the group's meta record: (applied_index, max_version, gc_horizon)."""
    applied_index, max_version, gc_horizon = _META.unpack(data)
    return applied_index, max_version, gc_horizon


def pack_latest(version: int, kind: bytes) -> bytes:
    """Encode a latest record: the key's newest version and its kind."""
    return _LATEST.pack(version, kind)


def unpack_latest(data: bytes) -> tuple[int, bytes]:
    """Decode a latest record: (version, kind)."""
    version, kind = _LATEST.unpack(data)
    return version, kind


class PurgeCounters(NamedTuple):
    """The purge queue's head and tail and the group's purge marks (coordinator rule G1)."""

    head: int = 0
    tail: int = 0
    mark: int = 0
    unverified_mark: int = 0


def pack_counters(counters: PurgeCounters) -> bytes:
    """Encode the purge queue's counters and the purge marks."""
    return _COUNTERS.pack(*counters)


def unpack_counters(data: bytes) -> PurgeCounters:
    """Decode the purge queue's counters. Those of older versions lack the marks: without
    the unverified one, every purge there may have left a commit in doubt, so it is the
    purge mark."""
    if len(data) == _COUNTERS_WITHOUT_MARK.size:
        return PurgeCounters(*_COUNTERS_WITHOUT_MARK.unpack(data))
    if len(data) == _COUNTERS_WITHOUT_UNVERIFIED_MARK.size:
        head, tail, mark = _COUNTERS_WITHOUT_UNVERIFIED_MARK.unpack(data)
        return PurgeCounters(head, tail, mark, mark)
    return PurgeCounters(*_COUNTERS.unpack(data))


def pack_seq(seq: int) -> bytes:
    """8 big-endian bytes of a purge queue position."""
    return _SEQ.pack(seq)
