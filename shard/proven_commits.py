"""Transactions a leader knows committed while their intents still stand (node rule 14).

A Resolve(commit) that carries its proof (node rule 12: every participant's yes vote, or a
recorded decision) shows that its transaction committed at `commit_ts`; the outcome can no
longer change. Until the Resolve is applied, the transaction's intents still stand, and a
request that met one waited for the Resolve's own Paxos round. The leader keeps each proven
commit here from the Resolve's arrival to its end, so that such a read is served at once
with what the apply will write (the intent's value at `commit_ts`), and such a write goes to
the log behind the Resolve instead of waiting (shard.lock_wait rule L0).
"""

from __future__ import annotations

from collections.abc import Sequence

from shard.state_machine import ShardStateMachine
from shard.ttl import deadline_of
from txn.participant import commit_writes_here
from txn.records import IntentInfo


class ProvenCommits:
    """The proven commits of one group, at its leader. In memory only: a new leader starts
    empty, and its readers wait for the intents' release as before."""

    def __init__(self) -> None:
        self._by_txn: dict[bytes, tuple[int, tuple[int, ...], object]] = {}
        #: How many were added; waiters parked on an intent decide again when it moves.
        self.added = 0

    def add(
        self, txn_id: bytes, commit_ts: int, participants: Sequence[int], resolve: object
    ) -> None:
        """Note a transaction whose Resolve(commit) request `resolve`, with a valid proof,
        reached the leader (a later copy of it takes over)."""
        self._by_txn[txn_id] = (commit_ts, tuple(participants), resolve)
        self.added += 1

    def discard(self, txn_id: bytes, resolve: object) -> None:
        """Resolve request `resolve` ended (applied or refused): if it is the one noted, the
        applied state speaks for its transaction again. Another request for the same
        transaction that ends (a refused copy, a made-up one) changes nothing."""
        if self._by_txn.get(txn_id, (0, (), None))[2] is resolve:
            del self._by_txn[txn_id]

    def clear(self) -> None:
        """The replica stopped leading."""
        self._by_txn.clear()

    def commit_ts(self, shard: ShardStateMachine, txn_id: bytes) -> int | None:
        """The commit timestamp of `txn_id` when its proven commit resolves what it holds
        prepared here, so that its intents and scanned ranges conflict with nothing proposed
        from now on: its Resolve, held or in flight, is applied ahead of any later proposal
        (rule 8), and writes the intents' values (participant rules R3 and R7). None when
        its commit is not proven here, or its Resolve would not write by that proof."""
        proven = self._by_txn.get(txn_id)
        if proven is None:
            return None
        info = shard.prepared(txn_id)
        commit_ts, participants, _ = proven
        if info is None or not commit_writes_here(info, participants, commit_ts):
            return None
        return commit_ts

    def resolves(self, shard: ShardStateMachine, txn_id: bytes) -> bool:
        """Whether `txn_id`'s proven commit resolves what it holds prepared here
        (`commit_ts`)."""
        return self.commit_ts(shard, txn_id) is not None

    def read_through(
        self, shard: ShardStateMachine, intents: Sequence[IntentInfo], at: int | None = None
    ) -> tuple[bytes, int, int] | None:
        """(value, version, expiry deadline or 0) that a read of the key holding `intents`
        (the latest, or at timestamp `at`) shows once the proven commit of the transaction
        holding its one write intent is applied here; None when there is no such intent, its
        commit is not proven here, it deletes the key, or it lands above `at`."""
        if not self._by_txn:
            return None  # the common case: no lookups
        writes = [i for i in intents if i.is_write]
        if len(writes) != 1:
            return None
        txn_id, value, ttl_ms = writes[0].txn_id, writes[0].value, writes[0].ttl_ms
        if value is None:
            return None
        commit_ts = self.commit_ts(shard, txn_id)
        if commit_ts is None or (at is not None and commit_ts > at):
            return None
        return value, commit_ts, deadline_of(commit_ts, ttl_ms) if ttl_ms else 0

    def __len__(self) -> int:
        return len(self._by_txn)
