"""Values with a time to live: their deadlines and the expiry records that index them.

A Put or CAS with `ttl_ms` writes, beside the version, the expiry record
``P + b"e" + >Q deadline + key`` -> ``>Q version`` (`shard.state_machine`), where the deadline
is the version's hybrid timestamp plus the time to live, and notes it as the key's own
(``P + b"x" + key``); a touch (a CAS renewing a lease) writes a later record for the same
version and notes that one instead. Records sort by deadline, so a leader
finds the due ones with one range read from the start (`ShardStateMachine.due_expiries`) and
proposes an Expire for each (`shard.expiry_duty`). Nothing removes a record when its key is
written again: its Expire then finds another latest version, deletes nothing and drops the
record, so a rewrite costs no lookup of the record it supersedes.
"""

from __future__ import annotations

import struct

from shard.limits import MAX_TS
from txn.hlc import LOGICAL_BITS, physical_us

EXPIRY_TAG = b"e"
"""``P + b"e" + >Q deadline + key``: an expiry record (value ``>Q`` version)."""

LIVES_TAG = b"x"
"""``P + b"x" + key``: ``>QQ`` version, deadline of the key's newest expiry record, which
alone may delete it: a touch moves the deadline of the same version on, and the record it
replaced then deletes nothing."""

_U64 = struct.Struct(">Q")
_LIVES = struct.Struct(">QQ")


def deadline_of(version: int, ttl_ms: int) -> int:
    """The first timestamp at which a value written at `version` with `ttl_ms` is due."""
    return min((physical_us(version) + ttl_ms * 1000) << LOGICAL_BITS, MAX_TS)


def expiry_suffix(deadline: int, key: bytes) -> bytes:
    """An expiry record's key after the group's expiry prefix."""
    return _U64.pack(deadline) + key


def split_expiry_suffix(suffix: bytes) -> tuple[int, bytes]:
    """(deadline, key) of an expiry record's key after the group's expiry prefix."""
    return _U64.unpack_from(suffix)[0], suffix[_U64.size :]


def pack_version(version: int) -> bytes:
    return _U64.pack(version)


def unpack_version(data: bytes) -> int:
    version: int = _U64.unpack(data)[0]
    return version


def pack_lives(version: int, deadline: int) -> bytes:
    return _LIVES.pack(version, deadline)


def unpack_lives(data: bytes) -> tuple[int, int]:
    version, deadline = _LIVES.unpack(data)
    return version, deadline
