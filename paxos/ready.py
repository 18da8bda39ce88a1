"""The Ready batch: everything a replica asks its driver to do, and in which order.

The driver executes a Ready in exactly this order (etcd raft's "total state machine handling
loop"; raft-rs `messages()` vs `persisted_messages()`):

1. send `messages` (they do not depend on this Ready's persist);
2. write `persist`, synced whenever `persist.needs_sync()` (a promise, a vote or a
   truncation; never skip that sync), in order with every earlier and later write;
3. only then send `messages_after_persist` (promises and accepts: an acceptor's vote leaves
   only once it is durable);
4. restore `snapshot` if present, then apply `committed` in order;
5. answer `dropped` proposals and `reads` (a read may be served once the application has
   applied up to its index), and serve `snapshot_requests`;
6. call `replica.advance(ready)`.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from paxos.ballot import Ballot
from paxos.errors import NotLeader
from paxos.messages import Message, Value


@dataclass(slots=True, kw_only=True)
class PersistBatch:
    """Changes to the acceptor's durable state; empty when nothing changed."""

    promised: Ballot | None = None
    accepted: dict[int, tuple[Ballot, Value]] = field(default_factory=dict)
    chosen_watermark: int | None = None
    # When set, every slot below `log_start` is deleted: the application state (or an installed
    # snapshot) covers them. `log_start - 1` is the snapshot index.
    log_start: int | None = None
    # Whether the replica is rebuilding lost data and must not vote yet (replica rule 14).
    rebuilding: bool | None = None
    # The longest lease the replica may have promised its leaders whose end a restart must
    # still wait for (replica rule 6).
    lease_promise_s: float | None = None

    def is_empty(self) -> bool:
        return not self.accepted and not self.touches_meta()

    def touches_meta(self) -> bool:
        """Whether a field other than the accepted votes changed (storages keep those in
        one meta record)."""
        return (
            self.promised is not None
            or self.chosen_watermark is not None
            or self.log_start is not None
            or self.rebuilding is not None
            or self.lease_promise_s is not None
        )

    def with_votes(self, accepted: dict[int, tuple[Ballot, Value]]) -> PersistBatch:
        """The same changes with `accepted` as the votes."""
        return replace(self, accepted=accepted)

    def needs_sync(self) -> bool:
        """Whether this batch must be synced before the Ready goes on.

        A promise, a vote and a truncation are what replies and the application state vouch
        for, so they are synced. A chosen watermark alone is not (etcd raft's MustSync leaves
        out the commit index for the same reason): storage writes reach the disk in order, so
        a crash can only lose a suffix, which leaves the durable watermark at or below what
        was chosen and at or above what was applied (applies are written after it), and the
        replica learns the lost slots again from the leader or in Phase 1. The leader learns
        a slot chosen only when its last vote arrives, so syncing the watermark alone would
        put a second fsync between the quorum and the client's answer.
        """
        return (
            self.promised is not None
            or bool(self.accepted)
            or self.log_start is not None
            or self.rebuilding is not None
            or self.lease_promise_s is not None  # heartbeat acks vouch for it
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class CommittedEntry:
    """A chosen slot to apply. `proposal_ids[i]` is the local id of `value[i]`, or None."""

    slot: int
    value: Value
    proposal_ids: tuple[int | None, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class ReadState:
    """A linearizable read may be served once the application has applied `index`."""

    read_id: int
    index: int
    via_lease: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class SnapshotToInstall:
    """Application state as of slot `index`; restore it before applying `committed`."""

    index: int
    data: bytes


@dataclass(slots=True, kw_only=True)
class Ready:
    persist: PersistBatch = field(default_factory=PersistBatch)
    messages: list[Message] = field(default_factory=list)
    messages_after_persist: list[Message] = field(default_factory=list)
    snapshot: SnapshotToInstall | None = None
    committed: list[CommittedEntry] = field(default_factory=list)
    dropped: list[tuple[int, NotLeader]] = field(default_factory=list)
    reads: list[ReadState] = field(default_factory=list)
    dropped_reads: list[tuple[int, NotLeader]] = field(default_factory=list)
    # Peers that need a snapshot: the driver calls `replica.send_snapshot(peer, index, data)`.
    snapshot_requests: list[int] = field(default_factory=list)
    # Proposals whose slot a snapshot covered: they may or may not have been chosen.
    outcome_unknown: list[int] = field(default_factory=list)

    def is_empty(self) -> bool:
        return (
            self.persist.is_empty()
            and not self.messages
            and not self.messages_after_persist
            and self.snapshot is None
            and not self.committed
            and not self.dropped
            and not self.reads
            and not self.dropped_reads
            and not self.snapshot_requests
            and not self.outcome_unknown
        )
