"""One key as a read found it, with its time to live: what `client.get_entry` returns."""

from __future__ import annotations

import time
from dataclasses import dataclass

from txn.hlc import wall_ns_of


@dataclass(frozen=True, slots=True)
class Entry:
    """A key's value, its version (what `cas(expected_version=...)` compares, etcd's
    mod_revision) and `expires_at`: the hybrid timestamp from which the key's leader deletes
    this value (README, "Time to live"), 0 when it lives for ever."""

    value: bytes
    version: int
    expires_at: int = 0

    def ttl_left_s(self, now_ns: int | None = None) -> float | None:
        """Seconds until `expires_at` by this machine's wall clock (`now_ns`, ns since the
        epoch; default now), never below 0; None when the value lives for ever.

        The leader deletes the value once its own wall clock, less twice the cluster's
        `max_clock_offset_ms`, passes the deadline: on a machine whose clock is off, this
        answer is off by as much.
        """
        if not self.expires_at:
            return None
        now = time.time_ns() if now_ns is None else now_ns
        return max(0.0, (wall_ns_of(self.expires_at) - now) / 1e9)
