"""The keys a leader found due for expiry, held for their Expire (shard.lock_wait rule L5).

An Expire, like any single-key write, is refused under a read intent or a prepared scan
(participant rule W1), and the expiry duty passes over a key such an intent holds (node
rule 17). So a value with a time to live that transactions keep reading, each Prepare
overlapping the one before (a leader pointer every request looks up), was never deleted
after its holder stopped renewing it (found by review). The leader therefore notes every
key its duty found due, and a Prepare that would read one, or scan a range holding one,
waits (bounded as every wait, rule L4) until the Expire has deleted it or the key is no
longer due: the read intents already there drain as their transactions end, the Expire
goes through, and the waiting Prepare finds its read stale and is refused as any.

Leader-local, never replicated: a new leader's duty finds the due records in its own state.
"""

from __future__ import annotations

import bisect
from typing import Any


class DueKeys:
    """Keys of one group whose value its leader found due for expiry, with the deadline and
    version of the expiry record it found; each is checked against the applied state when
    asked about, so a key written over, touched or expired since holds nothing up."""

    def __init__(self) -> None:
        self._records: dict[bytes, tuple[int, int]] = {}
        self._sorted: list[bytes] | None = []
        #: Bumped whenever a key leaves, so requests waiting for one decide again.
        self.changes = 0

    def __len__(self) -> int:
        return len(self._records)

    def add(self, key: bytes, deadline: int, version: int) -> None:
        """Note `key`'s expiry record (deadline, version) found due."""
        if key not in self._records:
            self._sorted = None
        self._records[key] = (deadline, version)

    def settle(self, shard: Any, key: bytes) -> None:
        """Forget `key` if its noted record no longer names its live value (deleted,
        written over or touched)."""
        if key in self._records and not self._still_due(shard, key):
            self._drop(key)

    def prune(self, shard: Any) -> None:
        """`settle` every key."""
        for key in [k for k in self._records if not self._still_due(shard, k)]:
            self._drop(key)

    def holds(self, shard: Any, key: bytes) -> bool:
        """Whether `key`'s value is due and not yet deleted."""
        return key in self._records and self._still_due(shard, key)

    def holds_any_in(self, shard: Any, start: bytes, end: bytes | None) -> bool:
        """Whether a key of [start, end) (`end` None: no end) is due and not yet deleted."""
        if self._sorted is None:
            self._sorted = sorted(self._records)
        keys = self._sorted
        stop = len(keys) if end is None else bisect.bisect_left(keys, end)
        return any(self.holds(shard, keys[i]) for i in range(bisect.bisect_left(keys, start), stop))

    def clear(self) -> None:
        """Forget every key (this replica stopped leading)."""
        if self._records:
            self._records.clear()
            self._sorted = []
            self.changes += 1

    def _still_due(self, shard: Any, key: bytes) -> bool:
        deadline, version = self._records[key]
        return bool(shard.expiry_of(key, version) == deadline)

    def _drop(self, key: bytes) -> None:
        del self._records[key]
        self._sorted = None
        self.changes += 1
