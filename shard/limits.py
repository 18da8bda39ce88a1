"""Size limits on client input, with one validator each.

The node validates client input before proposing it (the request sizes with
`router.limits.request_refusal`, the check clients run before sending); the state machine
validates again at apply time (a command that somehow got chosen past the node applies as
an error result). The key, value and command limits are `router.limits`', re-exported here.
"""

from __future__ import annotations

from router.limits import (
    MAX_COMMAND_BYTES,
    MAX_KEY_BYTES,
    MAX_TTL_MS,
    MAX_VALUE_BYTES,
    Oversized,
    key_oversized,
    range_oversized,
    value_oversized,
)
from shard.errors import InvalidArgument, LimitExceeded

__all__ = [
    "MAX_CHANGES_RECORDS",
    "MAX_COMMAND_BYTES",
    "MAX_KEY_BYTES",
    "MAX_SCAN_ITEMS",
    "MAX_SCAN_RESPONSE_BYTES",
    "MAX_STATUS_IDS",
    "MAX_TS",
    "MAX_TTL_MS",
    "MAX_VALUE_BYTES",
    "validate_command_size",
    "validate_key",
    "validate_range",
    "validate_ts",
    "validate_ttl",
    "validate_value",
]

MAX_SCAN_RESPONSE_BYTES = 4 * 1024 * 1024
"""Keys and values one scan answer carries at most (at least one item): a limit of many
large values would otherwise pass gRPC's 64 MiB message limit and never be answered."""

MAX_SCAN_ITEMS = 10_000
"""Items one scan answer carries at most, whatever its limit (it says `more` when cut): a
limit of millions of small keys held a node's loop for seconds (found by review)."""

MAX_CHANGES_RECORDS = 10_000
"""Version records one read of changes examines before it closes its page at the next key
(`shard.changes`): a watch of a range holding millions of versions would otherwise hold a
node's loop for as long as the walk over all of them takes."""

MAX_TS = (1 << 63) - 1
"""Largest command timestamp; keeps every version below 2**64 with room to spare."""

MAX_STATUS_IDS = 1024
"""Transaction ids one txn_statuses request asks about at most (an answer of about 20 KiB
with three participants each)."""


def validate_key(key: bytes) -> None:
    """Raise `InvalidArgument` for an empty key, `LimitExceeded` for one over MAX_KEY_BYTES."""
    if not key:
        raise InvalidArgument("empty key: keys must be at least 1 byte")
    _refuse(key_oversized(key))


def validate_range(start: bytes, end: bytes) -> None:
    """Raise `LimitExceeded` for a range bound longer than a key may be (one byte longer is
    fine: `router.limits.range_oversized`)."""
    _refuse(range_oversized(start, end))


def validate_value(value: bytes) -> None:
    """Raise `LimitExceeded` for a value over MAX_VALUE_BYTES."""
    _refuse(value_oversized(value))


def _refuse(oversized: Oversized | None) -> None:
    if oversized is not None:
        raise LimitExceeded(oversized)


def validate_command_size(command: bytes) -> None:
    """Raise `LimitExceeded` for one encoded command over MAX_COMMAND_BYTES."""
    if len(command) > MAX_COMMAND_BYTES:
        raise LimitExceeded(
            Oversized("command", len(command), MAX_COMMAND_BYTES, "MAX_COMMAND_BYTES")
        )


def validate_ttl(ttl_ms: int) -> None:
    """Raise `InvalidArgument` for a time to live over MAX_TTL_MS."""
    if ttl_ms > MAX_TTL_MS:
        raise InvalidArgument(
            f"a time to live of {ttl_ms} ms is over MAX_TTL_MS ({MAX_TTL_MS} ms, a year and a day)"
        )


def validate_ts(ts: int) -> None:
    """Raise `InvalidArgument` for a timestamp outside [0, MAX_TS]."""
    if ts < 0 or ts > MAX_TS:
        raise InvalidArgument(f"timestamp {ts} is outside [0, {MAX_TS}]")
