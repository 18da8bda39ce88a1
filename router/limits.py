"""Size limits on client requests, and the one check of them that nodes and clients share.

A node refuses a request over a limit with LIMIT_EXCEEDED (`shard/node.py` rule 4, through
`request_refusal`); the routing client runs the same check before it queues a request, and
refuses it with `LimitExceeded` and the same message. That is not only a round trip saved:
a request over gRPC's message limit fails the whole Batch stream at the client's write, and
with it every other caller's request on that connection (found by review: an oversized put
was reported OutcomeUnknown, as was every write in flight beside it, and an oversized get
broke each replica's stream in turn until its deadline).

Pure: no I/O. `shard.limits` re-exports these limits with its validators of commands.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from router import kv_pb2 as kv

__all__ = [
    "DELETE_RANGE_KEYS",
    "MAX_ATOMIC_OPS",
    "MAX_COMMAND_BYTES",
    "MAX_KEY_BYTES",
    "MAX_PARTICIPANTS",
    "MAX_REQUEST_BYTES",
    "MAX_TTL_MS",
    "MAX_TTL_S",
    "MAX_TXN_ITEMS",
    "MAX_VALUE_BYTES",
    "Oversized",
    "key_oversized",
    "range_oversized",
    "request_refusal",
    "txn_part_refusal",
    "value_oversized",
]

MAX_KEY_BYTES = 4 * 1024
"""Largest key, in bytes. Keys are never empty."""

MAX_VALUE_BYTES = 1024 * 1024
"""Largest value, in bytes. Empty values are allowed."""

MAX_COMMAND_BYTES = MAX_KEY_BYTES * 2 + MAX_VALUE_BYTES * 2 + 1024
"""Largest encoded command (a compare-and-set carries a key, two values and framing); also
the most bytes of keys, values and range bounds one transaction part may carry."""

MAX_TXN_ITEMS = 4096
"""Most keys read, keys written and ranges scanned one transaction may have in one group (its
part there): a node validates, encodes and applies a part in one turn of its loop, so a part
of 100,000 small keys held a node for seconds and made every group elect (found by review).
Larger loads are split over several transactions (etcd allows 128 operations per txn)."""

MAX_TTL_MS = 366 * 24 * 3600 * 1000
"""Longest time to live of a value, in milliseconds (a year and a day): its deadline, a
hybrid timestamp, must stay within the timestamps' range."""

MAX_TTL_S = MAX_TTL_MS // 1000
"""MAX_TTL_MS in seconds, the unit of a client's `ttl_s` and the CLI's --ttl."""

DELETE_RANGE_KEYS = (MAX_TXN_ITEMS - 1) // 2
"""The most keys one `delete_range` deletes in a group: each is read and written, and with
the range that fits MAX_TXN_ITEMS items, what one transaction may have there."""

MAX_ATOMIC_OPS = 64
"""Atomic operations (txn/atomic.py) one transaction applies in one group, over all its
keys: each reads its key's current value (up to MAX_VALUE_BYTES) when its PREPARE or
one-phase commit is applied, which no other write does, so their count bounds that apply
(64 values of 1 MiB: about 70 ms here)."""

MAX_PARTICIPANTS = 1024
"""Most groups one transaction may span (the participants, and the votes a Resolve carries):
checked before any per-group work, which is what it bounds (found by review: a Decide or
Resolve naming a million groups in 3.5 MB held a node for 0.6 s, six million for 5-9 s,
and its groups elected new leaders, before the request was refused for what it named)."""

MAX_REQUEST_BYTES = 16 * 1024 * 1024
"""Largest serialized request the routing client sends (a client-side limit). The largest a
node accepts is a transaction part: MAX_COMMAND_BYTES of keys and values with the framing of
MAX_TXN_ITEMS items, under 3 MiB; this stops what the limits above do not describe (a raw
`RoutingClient.send`) before it reaches the stream. With a stream write's other requests
(`router.client.WRITE_BYTES`, 8 MiB) a write stays well under gRPC's 64 MiB message limit."""


@dataclass(frozen=True, slots=True)
class Oversized:
    """A key, value, range bound or command of `size` bytes, over its `limit` (`limit_name`)."""

    what: str
    size: int
    limit: int
    limit_name: str

    def __str__(self) -> str:
        if self.what.startswith("range"):
            advice = "a range bound is at most a largest key and one more byte"
        else:
            advice = f"split it or store a smaller {self.what}"
        return (
            f"{self.what} is {self.size} bytes, over the limit of {self.limit} bytes "
            f"({self.limit_name}); {advice}"
        )


def key_oversized(key: bytes) -> Oversized | None:
    if len(key) > MAX_KEY_BYTES:
        return Oversized("key", len(key), MAX_KEY_BYTES, "MAX_KEY_BYTES")
    return None


def value_oversized(value: bytes) -> Oversized | None:
    if len(value) > MAX_VALUE_BYTES:
        return Oversized("value", len(value), MAX_VALUE_BYTES, "MAX_VALUE_BYTES")
    return None


def range_oversized(start: bytes, end: bytes) -> Oversized | None:
    """A bound of the range [start, end) longer than a key may be. Either bound may be one
    byte longer than a key: a scan cut after its last key K ends at K + b"\\x00", and the next
    page starts there. Empty bounds are fine (an empty start is the first key, an empty end
    means no end)."""
    for what, bound in (("range start", start), ("range end", end)):
        if len(bound) > MAX_KEY_BYTES + 1:
            return Oversized(what, len(bound), MAX_KEY_BYTES + 1, "MAX_KEY_BYTES + 1")
    return None


def request_refusal(kind: str, op: Any) -> str | None:
    """Why a node refuses request `op` (of kind `kind`, its `kv.Request` op) for its size:
    the message of its LIMIT_EXCEEDED, or None when every size is within its limit."""
    oversized: Oversized | None = None
    if kind == "scan":
        oversized = range_oversized(op.start, op.end)
    elif kind in ("prepare", "decide", "prevent", "resolve"):
        groups = max(len(op.participants), len(op.votes) if kind == "resolve" else 0)
        if groups > MAX_PARTICIPANTS:
            return (
                f"transaction names {groups} participant groups or votes, over the limit of "
                f"{MAX_PARTICIPANTS} (MAX_PARTICIPANTS)"
            )
        if kind == "prepare":
            return txn_part_refusal(op.reads, op.writes, op.read_ranges)
    elif kind == "commit_one_phase":
        return txn_part_refusal(op.reads, op.writes, op.read_ranges)
    elif kind in ("get", "put", "delete", "cas"):
        oversized = key_oversized(op.key)
        if oversized is None and kind == "put":
            oversized = value_oversized(op.value)
        elif oversized is None and kind == "cas":
            # Unset, either field reads as b"": within the limit.
            oversized = value_oversized(op.new_value) or value_oversized(op.expected_value)
    return None if oversized is None else str(oversized)


def txn_part_refusal(
    reads: Sequence[kv.ReadItem], writes: Sequence[kv.WriteItem], ranges: Sequence[kv.KeyRange]
) -> str | None:
    """Why a node refuses a transaction's part in one group (a Prepare or one-phase commit
    of these reads, writes and scanned ranges) for its size, or None."""
    # Counted before any per-item work: that work is what the limit bounds.
    items = len(reads) + len(writes) + len(ranges)
    if items > MAX_TXN_ITEMS:
        return (
            f"transaction part has {items} keys and ranges, over the limit of "
            f"{MAX_TXN_ITEMS} per group (MAX_TXN_ITEMS); split the transaction"
        )
    ops = sum(len(write.ops) for write in writes)
    if ops > MAX_ATOMIC_OPS:
        return (
            f"transaction part has {ops} atomic operations, over the limit of "
            f"{MAX_ATOMIC_OPS} per group (MAX_ATOMIC_OPS); split the transaction"
        )
    size = 0
    for key in itertools.chain((read.key for read in reads), (write.key for write in writes)):
        oversized = key_oversized(key)
        if oversized is not None:
            return str(oversized)
        size += len(key)
    for write in writes:
        for value in itertools.chain((write.value,), (op.operand for op in write.ops)):
            oversized = value_oversized(value)
            if oversized is not None:
                return str(oversized)
            size += len(value)
    for key_range in ranges:
        oversized = range_oversized(key_range.start, key_range.end)
        if oversized is not None:
            return str(oversized)
        size += len(key_range.start) + len(key_range.end)
    if size > MAX_COMMAND_BYTES:
        return (
            f"transaction part is {size} bytes, over the limit of {MAX_COMMAND_BYTES} bytes "
            "per group (MAX_COMMAND_BYTES); split the transaction"
        )
    return None
