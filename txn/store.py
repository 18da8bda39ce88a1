"""The store the transaction rules run on, and an in-memory implementation for tests.

`txn.participant` and `txn.coordinator` never import `shard/`: they read and write through
this `TxnStore` Protocol, which the shard state machine implements over its MVCC keyspace and
the engine batch of the slot being applied (so a later command of the same slot sees an
earlier one's writes). Every method is a point operation except `live_keys` and
`intents_in`, which read one range a transaction scanned (rule P6): their cost is the size
of that range, which the transaction's own scan already paid once, and they are lazy: the
phantom check stops at the first key the transaction did not read.

`MemTxnStore` is the reference implementation: plain dicts, used by the unit tests of the
rules and usable by simulators.
"""

from __future__ import annotations

import itertools
from collections import deque
from collections.abc import Iterator
from typing import Protocol

from txn.records import DecisionInfo, IntentInfo, KeyRange, PreparedInfo

__all__ = ["MAX_PURGE_PER_COMMAND", "MemTxnStore", "StoreInvariantError", "TxnStore"]

MAX_PURGE_PER_COMMAND = 4096
"""Decision records one PurgeDecisions command deletes at most (bounds one apply's work)."""


class StoreInvariantError(Exception):
    """The store's records contradict each other (a bug or a corrupt database)."""


class TxnStore(Protocol):
    """MVCC data, intents and transaction records of one shard group, as the rules see them."""

    def latest_version(self, key: bytes) -> tuple[int, bool]:
        """(version, is_tombstone) of the key's latest record; (0, True) if never written."""
        ...

    def latest_value(self, key: bytes) -> bytes | None:
        """The value of the key's latest record (None: never written, or a tombstone)."""
        ...

    def intents(self, key: bytes) -> list[IntentInfo]:
        """Every intent on `key`, ordered by txn_id (empty when none)."""
        ...

    def put_intent(self, key: bytes, intent: IntentInfo) -> None:
        """Add `intent` on `key` (replacing one of the same txn_id)."""
        ...

    def live_keys(self, key_range: KeyRange) -> Iterator[tuple[bytes, int]]:
        """(key, version) of every key of the range whose latest record is a value, in key
        order, lazily: a caller that stops early pays only for what it consumed."""
        ...

    def intents_in(self, key_range: KeyRange) -> Iterator[tuple[bytes, IntentInfo]]:
        """(key, intent) of every intent on a key of the range, in key order, lazily."""
        ...

    def scanners(self, key: bytes) -> list[bytes]:
        """Ids of the prepared transactions whose scanned ranges hold `key`, sorted."""
        ...

    def delete_intent(self, key: bytes, txn_id: bytes) -> None:
        """Remove `txn_id`'s intent on `key` (absent is fine)."""
        ...

    def write_version(self, key: bytes, value: bytes | None, version: int, ttl_ms: int = 0) -> None:
        """Write `value` (None: a tombstone) as `key`'s newest version, exactly at `version`;
        a value with `ttl_ms` lives that long after it (`shard.ttl`).

        The caller guarantees `version` is above every existing version of `key`; the store
        does not move max_version (the rules do).
        """
        ...

    def max_version(self) -> int:
        """The newest version the shard has handed out (its timestamp cache)."""
        ...

    def set_max_version(self, version: int) -> None:
        """Set max_version (the rules only ever raise it)."""
        ...

    def prepared(self, txn_id: bytes) -> PreparedInfo | None:
        """This group's prepared record of `txn_id`, or None."""
        ...

    def put_prepared(self, info: PreparedInfo) -> None:
        """Store a prepared record."""
        ...

    def delete_prepared(self, txn_id: bytes) -> None:
        """Remove a prepared record (absent is fine)."""
        ...

    def decision(self, txn_id: bytes) -> DecisionInfo | None:
        """This group's decision record of `txn_id`, or None."""
        ...

    def put_decision(self, info: DecisionInfo) -> None:
        """Store (or replace) a decision record.

        A record stored finished, or changing from unfinished to finished, joins the purge
        queue: `purge_decisions` meets records in the order they became finished.
        """
        ...

    def purge_decisions(
        self, before_ts: int, limit: int, verified: frozenset[bytes]
    ) -> tuple[int, bool]:
        """Delete finished decisions with decided_ts < before_ts, in the order they finished.

        A record that `needs_verification` and whose txn `verified` does not name is not
        deleted but moved to the back of the queue (coordinator rule G2). Stops at the first
        finished record decided at or after `before_ts` (records finish roughly in
        decided_ts order, and a late one is purged by a later command), at the records it
        moved, or after `limit` records deleted or moved. Raises the purge mark to
        `before_ts`, and the unverified purge mark too if it deleted a record that
        `purge_leaves_doubt`. Returns (deleted, more_may_remain).
        """
        ...

    def purge_mark(self) -> int:
        """The largest `before_ts` purged here (0 if none): a finished record decided before
        it may be gone, so "no record" no longer proves "never decided" below it."""
        ...

    def unverified_purge_mark(self) -> int:
        """The largest `before_ts` of a purge here that deleted a record which
        `purge_leaves_doubt` (0 if none): below it, "no record" no longer proves that a
        two-phase transaction never committed here."""
        ...


class MemTxnStore:
    """A `TxnStore` in plain dicts: versions per key, intents, records, a purge queue."""

    def __init__(self) -> None:
        self.versions: dict[bytes, list[tuple[int, bytes | None]]] = {}
        self.ttls: dict[tuple[bytes, int], int] = {}  # (key, version) -> its time to live
        self.intent_map: dict[bytes, dict[bytes, IntentInfo]] = {}
        self.prepared_map: dict[bytes, PreparedInfo] = {}
        self.decision_map: dict[bytes, DecisionInfo] = {}
        self.finished_queue: deque[bytes] = deque()
        self.max_ver = 0
        self.mark = 0
        self.unverified_mark = 0

    def latest_version(self, key: bytes) -> tuple[int, bool]:
        """(version, is_tombstone) of the newest version; (0, True) if never written."""
        versions = self.versions.get(key)
        if not versions:
            return 0, True
        version, value = versions[-1]
        return version, value is None

    def latest_value(self, key: bytes) -> bytes | None:
        """The newest value of `key` (None: absent or deleted)."""
        versions = self.versions.get(key)
        return versions[-1][1] if versions else None

    def intents(self, key: bytes) -> list[IntentInfo]:
        """Every intent on `key`, ordered by txn_id."""
        on_key = self.intent_map.get(key, {})
        return [on_key[t] for t in sorted(on_key)]

    def put_intent(self, key: bytes, intent: IntentInfo) -> None:
        """Add `intent` on `key`."""
        self.intent_map.setdefault(key, {})[intent.txn_id] = intent

    def live_keys(self, key_range: KeyRange) -> Iterator[tuple[bytes, int]]:
        """(key, version) of every key of the range holding a value, in key order."""
        return iter(
            [
                (key, versions[-1][0])
                for key, versions in sorted(self.versions.items())
                if key in key_range and versions and versions[-1][1] is not None
            ]
        )

    def intents_in(self, key_range: KeyRange) -> Iterator[tuple[bytes, IntentInfo]]:
        """(key, intent) of every intent on a key of the range, in key order."""
        return iter(
            [
                (key, intent)
                for key in sorted(self.intent_map)
                if key in key_range
                for intent in self.intents(key)
            ]
        )

    def scanners(self, key: bytes) -> list[bytes]:
        """Prepared transactions whose scanned ranges hold `key`."""
        return sorted(
            txn_id
            for txn_id, info in self.prepared_map.items()
            if any(key in r for r in info.read_ranges)
        )

    def delete_intent(self, key: bytes, txn_id: bytes) -> None:
        """Remove `txn_id`'s intent on `key`."""
        on_key = self.intent_map.get(key)
        if on_key is not None:
            on_key.pop(txn_id, None)
            if not on_key:
                del self.intent_map[key]

    def write_version(self, key: bytes, value: bytes | None, version: int, ttl_ms: int = 0) -> None:
        """Append a version (and its time to live, in `ttls`); refuses one at or below the
        newest (a broken caller)."""
        versions = self.versions.setdefault(key, [])
        if versions and versions[-1][0] >= version:
            raise AssertionError(f"version {version} of {key!r} is not above {versions[-1][0]}")
        versions.append((version, value))
        if ttl_ms and value is not None:
            self.ttls[(key, version)] = ttl_ms

    def max_version(self) -> int:
        """The shard's max version."""
        return self.max_ver

    def set_max_version(self, version: int) -> None:
        """Set the max version."""
        self.max_ver = version

    def prepared(self, txn_id: bytes) -> PreparedInfo | None:
        """The prepared record of `txn_id`."""
        return self.prepared_map.get(txn_id)

    def put_prepared(self, info: PreparedInfo) -> None:
        """Store a prepared record."""
        self.prepared_map[info.txn_id] = info

    def delete_prepared(self, txn_id: bytes) -> None:
        """Remove a prepared record."""
        self.prepared_map.pop(txn_id, None)

    def decision(self, txn_id: bytes) -> DecisionInfo | None:
        """The decision record of `txn_id`."""
        return self.decision_map.get(txn_id)

    def put_decision(self, info: DecisionInfo) -> None:
        """Store a decision record; a newly finished one joins the purge queue."""
        old = self.decision_map.get(info.txn_id)
        if info.finished and (old is None or not old.finished):
            self.finished_queue.append(info.txn_id)
        self.decision_map[info.txn_id] = info

    def purge_decisions(
        self, before_ts: int, limit: int, verified: frozenset[bytes]
    ) -> tuple[int, bool]:
        """Delete finished decisions decided before `before_ts`, in finish order; move the
        unverified ones that need it to the back (rule G2)."""
        self.mark = max(self.mark, before_ts)
        deleted = handled = 0
        queue = self.finished_queue
        for _ in range(len(queue)):  # the records moved to the back are not met again
            if handled >= limit:
                return deleted, True
            info = self.decision_map.get(queue[0])
            if info is not None and info.decided_ts >= before_ts:
                break
            txn_id = queue.popleft()
            handled += 1
            if info is None:
                continue
            if info.needs_verification() and txn_id not in verified:
                queue.append(txn_id)
            else:
                del self.decision_map[txn_id]
                deleted += 1
                if info.purge_leaves_doubt():
                    self.unverified_mark = max(self.unverified_mark, before_ts)
        return deleted, False

    def purge_candidates(self, before_ts: int, limit: int) -> list[DecisionInfo]:
        """The records the next purge below `before_ts` would meet first (at most `limit`)
        that need verification (rule G2), in queue order."""
        found = []
        for txn_id in itertools.islice(self.finished_queue, limit):
            info = self.decision_map.get(txn_id)
            if info is not None and info.decided_ts >= before_ts:
                break
            if info is not None and info.needs_verification():
                found.append(info)
        return found

    def purge_mark(self) -> int:
        """The largest `before_ts` purged (0 if none)."""
        return self.mark

    def unverified_purge_mark(self) -> int:
        """The largest `before_ts` of a purge that deleted a record which may leave a
        two-phase commit in doubt (0 if none)."""
        return self.unverified_mark
