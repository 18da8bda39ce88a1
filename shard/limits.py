"""Size limits on client input, with one validator each.

The node validates client input before proposing it; the state machine validates again at
apply time (a command that somehow got chosen past the node applies as an error result).
"""

from __future__ import annotations

from shard.errors import InvalidArgument, LimitExceeded

MAX_KEY_BYTES = 4 * 1024
"""Largest key, in bytes. Keys are never empty."""

MAX_VALUE_BYTES = 1024 * 1024
"""Largest value, in bytes. Empty values are allowed."""

MAX_COMMAND_BYTES = MAX_KEY_BYTES * 2 + MAX_VALUE_BYTES * 2 + 1024
"""Largest encoded command (a compare-and-set carries a key, two values and framing)."""

MAX_SCAN_RESPONSE_BYTES = 4 * 1024 * 1024
"""Keys and values one scan answer carries at most (at least one item): a limit of many
large values would otherwise pass gRPC's 64 MiB message limit and never be answered."""

MAX_SCAN_ITEMS = 10_000
"""Items one scan answer carries at most, whatever its limit (it says `more` when cut): a
limit of millions of small keys held a node's loop for seconds (found by review)."""

MAX_TS = (1 << 63) - 1
"""Largest command timestamp; keeps every version below 2**64 with room to spare."""

MAX_STATUS_IDS = 1024
"""Transaction ids one txn_statuses request asks about at most (an answer of about 20 KiB
with three participants each)."""


def validate_key(key: bytes) -> None:
    """Raise `InvalidArgument` for an empty key, `LimitExceeded` for one over MAX_KEY_BYTES."""
    if not key:
        raise InvalidArgument("empty key: keys must be at least 1 byte")
    if len(key) > MAX_KEY_BYTES:
        raise LimitExceeded("key", len(key), MAX_KEY_BYTES, "MAX_KEY_BYTES")


def validate_range(start: bytes, end: bytes) -> None:
    """Raise `LimitExceeded` for a range bound longer than a key may be. Empty bounds are
    fine (an empty start is the first key, an empty end means no end), and either bound may
    be one byte longer than a key: a scan cut after its last key K ends at K + b"\\x00", and
    the next page starts there."""
    if len(start) > MAX_KEY_BYTES + 1:
        raise LimitExceeded("range start", len(start), MAX_KEY_BYTES + 1, "MAX_KEY_BYTES + 1")
    if len(end) > MAX_KEY_BYTES + 1:
        raise LimitExceeded("range end", len(end), MAX_KEY_BYTES + 1, "MAX_KEY_BYTES + 1")


def validate_value(value: bytes) -> None:
    """Raise `LimitExceeded` for a value over MAX_VALUE_BYTES."""
    if len(value) > MAX_VALUE_BYTES:
        raise LimitExceeded("value", len(value), MAX_VALUE_BYTES, "MAX_VALUE_BYTES")


def validate_command_size(command: bytes) -> None:
    """Raise `LimitExceeded` for one encoded command over MAX_COMMAND_BYTES."""
    if len(command) > MAX_COMMAND_BYTES:
        raise LimitExceeded("command", len(command), MAX_COMMAND_BYTES, "MAX_COMMAND_BYTES")


def validate_ts(ts: int) -> None:
    """Raise `InvalidArgument` for a timestamp outside [0, MAX_TS]."""
    if ts < 0 or ts > MAX_TS:
        raise InvalidArgument(f"timestamp {ts} is outside [0, {MAX_TS}]")
