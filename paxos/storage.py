"""The acceptor's durable state, and the storage interface with an in-memory implementation.

A replica is rebuilt from `Storage.load()` after a restart and must find its promise and its
accepted votes exactly as they were when its last persist returned (PITFALLS: "persist before
you answer"). `MemoryStorage` models a disk whose unsynced writes are lost on `crash()`.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Protocol

from paxos.ballot import ZERO_BALLOT, Ballot
from paxos.messages import Value
from paxos.ready import PersistBatch


@dataclass(slots=True, kw_only=True)
class DurableState:
    """What an acceptor must never forget."""

    promised: Ballot = ZERO_BALLOT
    accepted: dict[int, tuple[Ballot, Value]] = field(default_factory=dict)
    chosen_watermark: int = 0
    # First slot still held; slots below it are covered by the application's snapshot.
    log_start: int = 1
    # A replica whose data was lost and is being rebuilt: it votes again only once replica
    # rule 14 says it is safe.
    rebuilding: bool = False
    # The longest lease promise a restart must wait out (replica rule 6); 0: none recorded.
    lease_promise_s: float = 0.0

    def apply(self, batch: PersistBatch) -> None:
        """Fold a persist batch into this state (the same rule every storage implements)."""
        if batch.promised is not None:
            self.promised = batch.promised
        if batch.log_start is not None and batch.log_start > self.log_start:
            for slot in [s for s in self.accepted if s < batch.log_start]:
                del self.accepted[slot]
            self.log_start = batch.log_start
        for slot, vote in batch.accepted.items():
            if slot >= self.log_start:
                self.accepted[slot] = vote
        if batch.chosen_watermark is not None:
            self.chosen_watermark = max(self.chosen_watermark, batch.chosen_watermark)
        if batch.rebuilding is not None:
            self.rebuilding = batch.rebuilding
        if batch.lease_promise_s is not None:
            self.lease_promise_s = batch.lease_promise_s


class Storage(Protocol):
    """Durable acceptor state of one replica."""

    def load(self) -> DurableState:
        """The state as of the last completed `save`."""
        ...

    def save(self, batch: PersistBatch) -> None:
        """Make `batch` durable atomically; returns only once it would survive a crash."""
        ...


class MemoryStorage:
    """In-memory storage; `save(batch, sync=False)` then `crash()` loses the unsynced batch."""

    def __init__(self) -> None:
        self._synced = DurableState()
        self._unsynced: list[PersistBatch] = []

    def load(self) -> DurableState:
        state = copy.deepcopy(self._synced)
        for batch in self._unsynced:
            state.apply(batch)
        return state

    def save(self, batch: PersistBatch, sync: bool = True) -> None:
        self._unsynced.append(copy.deepcopy(batch))
        if sync:
            self.sync()

    def sync(self) -> None:
        for batch in self._unsynced:
            self._synced.apply(batch)
        self._unsynced.clear()

    def crash(self) -> None:
        """Forget everything not synced, as a power loss would."""
        self._unsynced.clear()
