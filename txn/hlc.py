"""Hybrid logical clock (Kulkarni et al., 2014), packed into one u64, pure given wall time.

A timestamp is `physical_us << 12 | logical`: it never goes backwards, stays close to the
wall clock, and absorbs every timestamp the node receives, so causally later events always
get larger timestamps even across nodes whose clocks disagree.
"""

from __future__ import annotations

LOGICAL_BITS = 12


def physical_us(ts: int) -> int:
    """The wall-clock microseconds part of a timestamp."""
    return ts >> LOGICAL_BITS


def wall_ns_of(ts: int) -> int:
    """The wall-clock time (ns since the epoch, to the microsecond) a timestamp stands for:
    of a `commit_ts`, a version, a snapshot's `read_ts`."""
    return physical_us(ts) * 1000


def ts_at_wall_ns(wall_ns: int) -> int:
    """The first timestamp at wall-clock time `wall_ns` (ns since the epoch): what
    `client.snapshot(read_ts=...)` takes to read the store as it was then (found by a
    client-API review: a time in ns passed as a timestamp was refused as garbage-collected)."""
    return (wall_ns // 1000) << LOGICAL_BITS


class HybridClock:
    """A node's HLC. The caller passes wall time in; the clock never reads one."""

    __slots__ = ("_last",)

    def __init__(self, last: int = 0) -> None:
        self._last = last

    @property
    def last(self) -> int:
        """The newest timestamp issued or observed."""
        return self._last

    def now(self, wall_ns: int) -> int:
        """A timestamp above every earlier one and at least the wall clock."""
        self._last = self.peek(wall_ns)
        return self._last

    def peek(self, wall_ns: int) -> int:
        """What `now` would return, without moving the clock (only reads it)."""
        return max(self._last + 1, ts_at_wall_ns(wall_ns))

    def observe(self, ts: int) -> None:
        """Absorb a timestamp received from elsewhere (a message, a read)."""
        if ts > self._last:
            self._last = ts
