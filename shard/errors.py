"""Errors of the shard state machine and its storage engine.

Local misuse (a read outside the shard, an oversized client input, a corrupt snapshot) raises
one of these. Inside `apply`, a bad chosen command never raises: it becomes an error
`CommandResult` carrying the same `Status` code, identically on every replica.
"""

from __future__ import annotations

import enum

from router.limits import Oversized
from txn.records import quote_key


class Status(enum.IntEnum):
    """Outcome code of one command; the wire values of `shard.proto` `Status`."""

    OK = 0
    CAS_FAILED = 1  # the compare-and-set condition did not hold; nothing was written
    MALFORMED = 2  # the command bytes do not decode to a well-formed command
    LIMIT_EXCEEDED = 3  # a key, value or batch is over its size limit
    INVALID_ARGUMENT = 4  # e.g. an empty key or a timestamp out of range
    WRONG_SHARD = 5  # the key is outside this shard's key range
    CONFLICT = 6  # a transaction's intent (or a stale read) refused the command; retryable


class ShardError(Exception):
    """Base class of every error raised by the shard package."""

    status: Status = Status.INVALID_ARGUMENT


class InvalidArgument(ShardError):
    """A request argument is not acceptable (empty key, timestamp out of range, ...)."""

    status = Status.INVALID_ARGUMENT


class LimitExceeded(InvalidArgument):
    """A key, value or batch is larger than its limit; the message names both sizes (as the
    client's, which checks the same limits before sending: `router.limits`)."""

    status = Status.LIMIT_EXCEEDED

    def __init__(self, oversized: Oversized) -> None:
        self.what = oversized.what
        self.size = oversized.size
        self.limit = oversized.limit
        self.limit_name = oversized.limit_name
        super().__init__(str(oversized))


class MalformedCommand(ShardError):
    """Command bytes that do not decode to a well-formed command."""

    status = Status.MALFORMED


class WrongShard(ShardError):
    """The key (or range) lies outside this shard's key range [start, end)."""

    status = Status.WRONG_SHARD

    def __init__(self, key: bytes, start: bytes, end: bytes | None, *, subject: str = "") -> None:
        self.key = key
        self.start = start
        self.end = end
        subject = subject or f"key {quote_key(key)}"
        super().__init__(f"{subject} is outside this shard's range [{start!r}, {end!r})")

    @classmethod
    def for_range(
        cls, range_start: bytes, range_end: bytes | None, start: bytes, end: bytes | None
    ) -> WrongShard:
        """The range [range_start, range_end) (None: no end) is not inside [start, end)."""
        to = "+inf" if range_end is None else quote_key(range_end)
        return cls(range_start, start, end, subject=f"range [{quote_key(range_start)}, {to})")


class VersionCompacted(ShardError):
    """A read below the garbage-collection horizon: the versions it needs may be gone."""

    def __init__(self, at_version: int, horizon: int) -> None:
        self.at_version = at_version
        self.horizon = horizon
        super().__init__(
            f"cannot read at version {at_version}: versions below {horizon} were "
            "garbage-collected; read at a newer version"
        )


class SnapshotCorrupt(ShardError):
    """Snapshot bytes that fail their checksum or framing, or do not match the given index."""


class ApplyOrderError(ShardError):
    """A slot applied out of order (a gap above `applied_index`): a bug in the caller."""


class InvariantViolation(ShardError):
    """The stored data breaks an invariant of the layout: a bug or a corrupt database."""
