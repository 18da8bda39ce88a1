"""The keys a leader found due for expiry, held for their Expire (shard.lock_wait rule L5).

An Expire, like any single-key write, is refused under a read intent or a prepared scan
(participant rule W1), and the expiry duty passes over a key such an intent holds (node
rule 17). So a value with a time to live that transactions keep reading, each Prepare
overlapping the one before (a leader pointer every request looks up), was never deleted
after its holder stopped renewing it (found by review). The leader therefore notes every
key its duty found due, and a Prepare that would read one, or scan a range holding one,
takes no new intent on it while it is due: it waits for the Expire, or is refused (rule
L5). The intents already there end with their transactions, the Expire goes through, and
the readers' retries find the key gone.

Leader-local, never replicated: a new leader's duty finds the due records in its own state.
"""

from __future__ import annotations

import bisect
from collections import OrderedDict
from typing import Any

MAX_DUE_KEYS = 1024
"""Keys noted per group at most (four pages of the duty's): a key found due past it is
noted once earlier ones are deleted, and its readers are not held meanwhile."""


class DueKeys:
    """Keys of one group whose value its leader found due for expiry, with the deadline and
    version of the expiry record it found; each is checked against the applied state when
    asked about, so a key written over, touched or expired since holds nothing up."""

    def __init__(self) -> None:
        # In the order they were last checked (`prune` goes round from the front).
        self._records: OrderedDict[bytes, tuple[int, int]] = OrderedDict()
        self._sorted: list[bytes] | None = []
        #: Bumped whenever a key leaves or is found held, so requests waiting for one
        #: decide again.
        self.changes = 0

    def __len__(self) -> int:
        return len(self._records)

    def add(self, shard: Any, key: bytes, deadline: int, version: int) -> None:
        """Note `key`'s expiry record (deadline, version) found due, if it still names the
        key's live value (a record left by a rewrite without a TTL does not), up to
        MAX_DUE_KEYS."""
        if key not in self._records:
            if len(self._records) >= MAX_DUE_KEYS or shard.expiry_of(key, version) != deadline:
                return
            self._sorted = None
        self._records[key] = (deadline, version)

    def recheck(self) -> None:
        """A noted key was found held (an intent, a prepared scan): the requests waiting for
        these keys decide again, as the holder may be older than they are (wait-die)."""
        self.changes += 1

    def settle(self, shard: Any, key: bytes) -> None:
        """Forget `key` if its noted record no longer names its live value (deleted,
        written over or touched)."""
        if key in self._records and not self._still_due(shard, key):
            self._drop(key)

    def prune(self, shard: Any, limit: int) -> None:
        """`settle` up to `limit` keys, going on from where the last prune stopped (a
        check's cost stays a page, however many keys are noted)."""
        for _ in range(min(limit, len(self._records))):
            key, record = self._records.popitem(last=False)
            self._records[key] = record
            if not self._still_due(shard, key):
                self._drop(key)

    def holds(self, shard: Any, key: bytes) -> bool:
        """Whether `key`'s value is due and not yet deleted."""
        return key in self._records and self._still_due(shard, key)

    def first_in(self, shard: Any, start: bytes, end: bytes | None) -> bytes | None:
        """The first key of [start, end) (`end` None: no end) whose value is due and not
        yet deleted, or None."""
        if self._sorted is None:
            self._sorted = sorted(self._records)
        keys = self._sorted
        stop = len(keys) if end is None else bisect.bisect_left(keys, end)
        for i in range(bisect.bisect_left(keys, start), stop):
            if self.holds(shard, keys[i]):
                return keys[i]
        return None

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
