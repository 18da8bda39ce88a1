"""The records a node keeps per hosted group and per request in flight."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from paxos import Replica
from paxos.ready import CommittedEntry
from shard.apps import App, RestoreJob, SnapshotBuild
from shard.due_keys import DueKeys
from shard.lock_wait import LockTable
from shard.proven_commits import ProvenCommits
from shard.state_machine import ShardStateMachine


@dataclass(slots=True)
class _Pending:
    kind: str
    request: Any
    reply: Callable[[Any], None]
    deadline: float
    request_id: int
    # The hybrid timestamp stamped on the proposal (0 for reads).
    ts: int = 0
    # When its lock wait gives up (0.0: it has not waited).
    wait_until: float = 0.0
    # A read's answer: the newest deletion it shows without its version (a key absent from
    # a scan or a snapshot get), for node rule 2.
    absent_since: int = 0


@dataclass(slots=True)
class _LockWait:
    """A request parked until an intent or update lock of its group is released."""

    host: GroupHost
    pending: _Pending
    releases: int  # `shard.node._releases(host)` when it was parked: re-check once that moves
    resume: Callable[[], None]
    wake_at: float | None = None  # decide again at this time even if nothing was released
    # It met an intent (not only an update lock): held Resolves go now (rule 8).
    on_intents: bool = False


@dataclass(slots=True)
class _Resolving:
    """A coordinator's delivery of one decision to its participants (rule 6)."""

    confirmed: set[int] = field(default_factory=set)
    inflight: set[int] = field(default_factory=set)
    finishing: bool = False


@dataclass(slots=True)
class _Prevention:
    """A coordinator leader's prevent round for one transaction (rule 6)."""

    participants: tuple[int, ...]
    prepared: dict[int, int]  # group -> prepare_ts, for the groups that answered prepared
    deciding: bool = False
    #: Groups whose answer decided nothing (none, an error, `unknown` without `checked`).
    inconclusive: set[int] = field(default_factory=set)


@dataclass(slots=True)
class GroupHost:
    group_id: int
    replica: Replica
    app: App
    proposals: dict[int, _Pending] = field(default_factory=dict)
    reads: dict[int, _Pending] = field(default_factory=dict)
    # Participant side: when each prepared transaction was first seen, and the ones asked about.
    prepared_seen: dict[bytes, float] = field(default_factory=dict)
    querying: set[bytes] = field(default_factory=set)
    # Coordinator side: decisions being delivered, and prevent rounds running.
    resolving: dict[bytes, _Resolving] = field(default_factory=dict)
    preventing: dict[bytes, _Prevention] = field(default_factory=dict)
    # Leader side: wait-die age of each transaction whose Prepare arrived here, and when.
    ages: dict[bytes, tuple[tuple[int, bytes], float]] = field(default_factory=dict)
    # Leader side: update locks of reads for update (shard.lock_wait).
    locks: LockTable = field(default_factory=LockTable)
    # Leader side: transactions a Resolve(abort) reached before their Prepare (or a read for
    # update of theirs) did, and when.
    aborted: dict[bytes, float] = field(default_factory=dict)
    # Leader side: transactions whose Prepare or one-phase commit ended here, or whose
    # Resolve(commit) reached here, and when: their reads for update are refused (a read
    # still queued when its transaction committed took the lock after it, for nobody).
    # In the order noted (one per transaction: pruned from the front).
    finished: OrderedDict[bytes, float] = field(default_factory=OrderedDict)
    # How many were ever noted in `aborted` or `finished` (both pruned): parked requests
    # re-check once it moves.
    ends_noted: int = 0
    # Leader side: Resolve(commit)s held for a ride in another proposal's slot (rule 8).
    held_resolves: list[tuple[_Pending, Callable[[int], bytes]]] = field(default_factory=list)
    held_until: float = 0.0
    # Leader side: transactions a Resolve(commit) with its proof showed committed, until that
    # Resolve ends; a read meeting their intents is served at once (rule 14).
    proven: ProvenCommits = field(default_factory=ProvenCommits)
    # Leader side: the timestamps of proposals answered OUTCOME_UNKNOWN at their deadline,
    # until the replica says what became of their slot: they may still be chosen below a
    # parked snapshot read's timestamp (rule 3).
    expired: dict[int, int] = field(default_factory=dict)
    # Leader side: keys the expiry duty found due, held for their Expire (rule 17; a Prepare
    # that reads one waits, shard.lock_wait rule L5).
    due: DueKeys = field(default_factory=DueKeys)
    # Snapshots being built for lagging peers; a peer sent one is sent no other before
    # (until, index): that time, or its acknowledging the snapshot's index.
    builds: dict[int, tuple[SnapshotBuild, float]] = field(default_factory=dict)
    snapshot_cooldown: dict[int, tuple[float, int]] = field(default_factory=dict)
    # A snapshot being restored in steps: the replica is paused (no messages, no ticks, no
    # Ready) until it is done, and the slots chosen after it wait here.
    restore: RestoreJob | None = None
    after_restore: list[CommittedEntry] = field(default_factory=list)

    @property
    def shard(self) -> ShardStateMachine:
        assert isinstance(self.app, ShardStateMachine)
        return self.app
