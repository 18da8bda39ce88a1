"""NodeCore: the deterministic heart of a node, hosting one replica per Paxos group.

Theory of operation
-------------------
A node hosts a replica of the meta group (0, the shard map) and of every data group the
bootstrap map places on it. The core owns no socket, clock or thread: the runtime (real
process) or the simulator feeds it `tick(now, wall_ns)`, peer messages (`step`) and client
requests (`submit`), then runs `shard.execute.execute_cycle`, which persists the Ready
batches of all groups in one synced write (group commit), sends, applies every chosen slot
into one engine batch, and only then answers clients. Requests the node itself must send to
other groups (transaction resolution and recovery) are queued in `outbound` for the shell.

Rules
-----
1. A write is answered only after its slot was chosen (a quorum persisted it) and applied,
   and after the commit wait: not before every clock in the cluster (within the configured
   maximum offset) has passed the version it created, so a later transaction anywhere gets a
   larger timestamp (Spanner §4.1.2; strict serializability across machines).
2. A linearizable read is served only at an index the replica vouched for (lease or
   read-index), after that index was applied, and never while a prepared transaction holds
   a write intent on the key (its decision may already be made; unless the leader holds
   the proof of its commit, rule 14): it waits for the release
   (shard.lock_wait), then is confirmed again, or is refused with a retryable CONFLICT when
   its wait runs out. Every get or scan answer (linearizable or snapshot; not stale_ok)
   also waits for the commit wait of the newest version it shows, as a write's answer does
   (rule 1): a version stamped by a clock ahead of the others can be visible before the
   other clocks reach it, and a reader that saw it must not finish before they do, or a
   snapshot started after that reader could take a timestamp below the version and miss it
   (strict serializability; found by the simulator, seed append:clocks:186978151). A
   deletion shows too (found by reviews): a scan waits for the deletions it passed over,
   a snapshot get of a deleted key and a delete or compare-and-set that found its key
   deleted for that deletion, as a linearizable get of a deleted key does. A
   txn_status (or txn_statuses) answer waits likewise for the commit or prepare timestamp
   it shows (a client reports a commit at it; found by review).
3. A snapshot read at timestamp T needs the leader's lease, asked for only once the node's
   wall clock is within the maximum clock offset of T; then the leader raises its clock
   above T and waits until every write it stamped below T is applied (or known never to
   be: one whose request expired still counts until its slot's fate is known) and no
   undecided transaction prepared at or below T holds a write intent on the keys (safe
   time; a proven commit is decided, rule 14). A replica that stops leading refuses its
   waiting snapshot reads. A new leader raises its clock by twice the maximum clock offset:
   above any timestamp the previous leader could have served under its lease, as that one
   served none ahead of its own wall clock by more than the offset. It does so in the step
   or tick that elected it, before it stamps anything (found by review: taken at the next
   cycle, the commands the tick's duties proposed in between went out below it).
4. A request for another cluster, an unknown group, a key outside the group's range or over
   a size limit is refused with a typed error and changes nothing. The size limits are
   `router.limits.request_refusal`, which clients run before sending.
5. A write that was proposed but whose fate is unknown when its deadline passes is answered
   OUTCOME_UNKNOWN, never a guess; a write refused before any slot was assigned is NOT_LEADER.
6. The leader of a coordinator group delivers every recorded decision to every participant
   and then logs Finish; the leader of a participant group that holds a prepared transaction
   for too long asks the coordinator group (a recovery Decide), then logs the answer
   locally. A transaction is committed once all its PREPAREs are logged (parallel commits,
   txn.coordinator), so recovery may not simply abort: the coordinator group logs ABORT
   at once only while it holds no PREPARE of the transaction (rule D3); otherwise its leader
   runs the PREVENT ROUND: every other participant logs a Prevent (txn.participant rule V1),
   which answers its PREPARE or forbids it forever, and the leader logs COMMIT at
   max(prepare_ts) when all are prepared, ABORT when one never will be (and still holds the
   PREPARE, rule D5). After an outage longer than `decision_retention_s` the group asked
   may have purged the record that would answer: it answers `pending` (D4) or `unknown`
   (V2) and records nothing; with `checked` (every purge there that could have deleted a
   commit record of the txn was checked, rule G2) the asker aborts its own part if it
   still holds it prepared (D5, R6), else it asks again later. So no transaction stays in
   doubt while a majority of each involved group is up, unless a purge there, with a
   horizon above the txn's prepare timestamp, deleted a commit record no check covered
   (one an older version wrote: coordinator rule G1's unverified purge mark).
7. A yes vote is answered after the commit wait of its prepare_ts: the client may report the
   commit on the votes alone, at max(prepare_ts), so every clock must have passed each of
   them (rule 1).
8. A Resolve(commit) changes nothing anyone waits for until it is applied, so a participant
   leader may hold it (up to RESOLVE_HOLD_S) to ride, just ahead of it, in the slot of the
   next proposal of its group instead of paying a Paxos round of its own: the client already
   has its answer, and CockroachDB batches intent resolution the same way. It is proposed at
   once when a request waits on the group's intents (a read, write or Prepare parked on one,
   or a parked snapshot read; a wait for an update lock does not need it),
   when the replica stops leading (to be refused with the leader's address), and when its
   hold runs out. A Resolve(abort) is never held: it frees waiters and refuses a late
   Prepare.
9. A timestamp a request carries (a transaction's ts, a Resolve's commit
   timestamp, a read's at_version) is refused when it is further ahead of the node's wall
   clock than legitimate ones can be (`_max_ahead_us`), before the clock sees it: one such
   timestamp would move the clock, and with it every later version, the commit waits and
   the GC and purge horizons, ahead for good.
10. A node's clock starts above every timestamp its stored groups hold (versions, prepared
   transactions, recorded decisions, GC horizons: a snapshot below one is refused as
   garbage-collected), not at its wall clock: a restart after the wall clock
   stepped back (an NTP step, a VM resumed, a lost RTC; with the loopback default of
   max_clock_offset 0, a step of the one machine clock between two runs) handed out
   timestamps below writes it had acknowledged, and a snapshot begun after them read below
   them and missed them (found by review, tests/unit/shard/test_clock_restart.py). Replies
   showing those versions then wait, by rule 1, until the wall clock has passed them. The
   same holds for what the node learns after its start (the slots it applies while catching
   up, a snapshot it restores): else a node restarted, or rebuilt on an empty store, after
   such a step handed out timestamps below writes the others had acknowledged
   (tests/unit/shard/test_clock_catch_up.py).
11. A Decide from the wire only asks for an abort, and is always a recovery Decide
   (txn.coordinator rule D3): nobody sends a commit Decide (a commit's records come from
   the Resolves, sent after every yes vote, and from the prevent round), and taking one
   would let a single request record a commit over a missing vote, splitting the
   transaction. An abort may not be a plain one either: a vote whose answer its sender
   lost may have been the last yes, which committed.
12. A Resolve from the wire carries a proof of its outcome (txn/proofs.py): the MAC of
   every participant's yes vote, each answered with its Prepare under a key only the nodes
   hold, or the MAC of a recorded decision, which the node delivering it sends (a
   coordinator leader, or a group's leader re-sending a missed commit in its purge check). A Resolve(commit) without one is refused. A Resolve(abort) without
   one frees the update locks the leader holds for the transaction (and refuses its
   Prepares that have not been proposed yet, a no vote, which nobody records) but is not
   logged: the client sends one only for a transaction that sent no commit request, and
   logged, it would abort a prepared part of a transaction that may have committed, or,
   after a purge, record an abort over a commit.
13. A transaction id that carries its start timestamp (txn/txn_ids.py) speaks for the
   transaction's start: a Prepare or one-phase commit whose ts is below it is refused, and
   a Decide or Prevent of it is judged by that start (rules D4 and V2), whatever `asker_ts`
   it claims. A claim is wire data: with a claim of 0 or above the purge mark, a request
   for a committed transaction whose records were purged recorded its abort, and
   txn_status then answered aborted for a committed transaction. So a request that could
   leave a record or a lock of a transaction (Prepare, one-phase commit, read for update)
   is refused when its id carries no start; a claim is taken only about an id an older
   version recorded.
14. A Resolve(commit) that reaches the leader with its proof (rule 12) shows that its
   transaction committed at commit_ts, for good (shard.proven_commits), so until the Resolve
   ends its intents hold up no request: a linearizable get of a key under its write intent
   is answered at once with the intent's value at commit_ts (what the apply will write;
   participant rules R3 and R7 checked against the PREPARE here, a delete still waits); a
   snapshot get at T does not wait for it either (rule 3): it shows that value when
   commit_ts <= T, and reads past it when commit_ts > T; and a write or Prepare that would
   wait for it goes to the log, behind the Resolve (held ones ride just ahead of it, rule
   8). Before, each waited for the Resolve's own Paxos round. Scans still wait. Only this
   leader knows, and only while it leads.
15. A node about to stop (`retire`) hands every group it leads to a peer before it goes,
   its preferred leader first, trying again at every tick while it leads: its replicas
   campaign no more (paxos replica rule 19), so a client waits one transfer (a few
   milliseconds), not an election timeout, and no rebalancing hands a group back.
16. A wait for a change (a watch between rounds, `shard.change_waits`) is a hint, never a
   read: it is answered from what this replica has applied, changed as soon as a version
   of its range above its `changes_after` is (checked when it parks, then against every
   version applied; the answer names that version), unchanged once half its time is up
   (so the answer reaches a client still waiting for it), or at a stop. It holds nothing
   and blocks no write.
17. A value written with a time to live is deleted by its group's leader, by an Expire
   command through the group's log, once the leader's clock is past its deadline
   (`shard.expiry_duty`; state machine rule 7 decides on every replica). Until then no
   Prepare takes a new intent on the due key (`shard.lock_wait` rule L5, `shard.due_keys`).
"""

from __future__ import annotations

import math
import random
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any, Protocol

from paxos import NotLeader, ProposalTooLarge, Ready, Replica, ReplicaConfig, ReplicaStatus, Role
from paxos.messages import InstallSnapshot, Message
from paxos.ready import CommittedEntry
from paxos.storage import DurableState
from router import kv_pb2 as kv
from router.codec import decode_meta_snapshot, encode_meta_command
from router.limits import request_refusal
from router.meta import Bootstrap
from router.shard_map import META_GROUP_ID, ShardMap
from shard import codec
from shard.admission_checks import (
    _already_aborted,
    _already_finished,
    _check_changes,
    _check_disjoint,
    _check_new_txn_id,
    _check_participants,
    _check_scan_range,
    _check_txn_id,
    _check_update_lock,
    _check_writes,
    _conflict_error,
    _error,
    _Refusal,
    _wounded_error,
)
from shard.answers import _newest_version_read, _result_response, serve_read, snapshot_safe
from shard.apps import App, MetaApp, RestoreJob, _restorable
from shard.change_waits import ChangeWaits, changed_since
from shard.clock_limits import FUTURE_TS_MARGIN_S
from shard.engine import EngineBatch
from shard.errors import LimitExceeded, ShardError, SnapshotCorrupt, Status, WrongShard
from shard.expiry_duty import EXPIRY_CHECK_S, KeyExpiry
from shard.limits import (
    MAX_STATUS_IDS,
    MAX_TS,
    validate_command_size,
    validate_key,
    validate_ttl,
)
from shard.lock_wait import (
    LOCK_QUEUE_MAX_S,
    LOCK_WAIT_MAX_S,
    DueKeyRead,
    Grant,
    blocked,
    due_key_read,
    request_age,
)
from shard.map_mismatch import config_mismatch
from shard.node_records import GroupHost, _LockWait, _Pending
from shard.state_machine import ShardStateMachine
from shard.txn_duties import Outbound, TxnDuties
from txn.codec import write_item
from txn.hlc import LOGICAL_BITS, HybridClock, physical_us
from txn.proofs import decision_proves, proof_key, vote_mac, votes_prove_commit
from txn.records import (
    CommitOnePhase,
    Conflict,
    Decide,
    KeyRange,
    Prepare,
    Prevent,
    ReadItem,
    Resolve,
    WriteItem,
    quote_key,
)
from txn.txn_ids import start_ts_of

Reply = Callable[[kv.Response], None]

EXPIRY_SWEEP_S = 0.05
# How often a leader checks whether its group's preferred leader should take over.
REBALANCE_S = 1.0
# How often coordinator leaders push decisions and participant leaders look for stuck prepares.
TXN_DUTY_S = 0.1
# How long a participant leader may hold a Resolve(commit) for a ride (rule 8).
RESOLVE_HOLD_S = 0.01
# Version records a shard's garbage collection reads per step (0.5 ms median here).
# A pass reads every version record of the shard (about 0.6 µs each), and one pass per
# cycle stalled a leader's loop for up to a second every gc_interval_s under sustained
# writes: its followers elected another leader (47 role changes in 70 s of `paxoskv bench
# --workload put --clients 256`, max latency 974 ms; none and 48 ms with steps).
GC_RECORDS_PER_STEP = 1_000
# ... or this many bytes of them (keys and values), whichever bound comes first: a step reads
# the values too, so with large values the record bound alone let one step read a gigabyte
# (600 versions of 1 MiB: 0.85 s in one cycle, measured here; with this bound a step
# reads 1 MiB per shard, plus the one record that crosses it, itself at most 1 MiB).
GC_BYTES_PER_STEP = 1 << 20
# ... and a node steps at most once per this interval while its passes keep up: under load a
# node runs about a thousand apply cycles a second, and a step in each made a pass over a
# store of large values read without pause (1 MiB and about 1.8 ms per cycle). Paced, a
# shard's steps take about 9 % of a node's loop with 1 MiB values and 2.5 % with small ones
# (median steps of 1.8 and 0.5 ms), and a pass reads up to about 50-100 MiB or 50,000 records
# a second per shard. A pass still going when the next is due is behind: the node then steps
# in every apply cycle until it ends, as garbage must not outgrow the collection.
GC_STEP_INTERVAL_S = 0.02
# Bytes of read answers (gets and scans) a node serves per wake of its loop (per `tick`); the
# reads past it wait in order for the next wake, which comes at once. Found by review: 256
# scans of 4 MiB answers in one Batch message were served in one wake, which held the loop
# 15 s (and 800 MB); with the budget, a wake serves at most one such scan before the peers'
# messages and the heartbeats get their turn.
READ_BYTES_PER_WAKE = 4 << 20
# After a snapshot that took steps to build, a peer gets the next one no sooner than this
# (or four times the build's duration, if longer): see NodeCore._send_snapshot.
SNAPSHOT_COOLDOWN_MIN_S = 1.0
WRITE_KINDS = frozenset({"put", "delete", "cas"})
READ_KINDS = frozenset({"get", "scan", "txn_status", "txn_statuses"})


class NodeDisk(Protocol):
    """Durable storage of a node: Paxos state of every group plus the engine for data."""

    @property
    def engine(self) -> Any: ...

    def load(self, group_id: int) -> DurableState: ...

    def persist(self, batches: Sequence[tuple[int, Any]]) -> None:
        """Make every group's PersistBatch durable with one synced write."""
        ...


def replica_config(node_id: int, voters: Sequence[int], settings: Any) -> ReplicaConfig:
    """Translate the node config's Paxos settings (milliseconds) into a ReplicaConfig."""
    return ReplicaConfig(
        node_id=node_id,
        voters=tuple(voters),
        election_timeout_min_s=settings.election_timeout_min_ms / 1000,
        election_timeout_max_s=settings.election_timeout_max_ms / 1000,
        heartbeat_interval_s=settings.heartbeat_interval_ms / 1000,
        lease_duration_s=settings.lease_ms / 1000,
        lease_drift_s=settings.lease_drift_ms / 1000,
        max_batch_count=settings.max_batch_count,
        max_batch_bytes=settings.max_batch_bytes,
        pipeline_window=settings.pipeline_window,
        compact_threshold=settings.compact_threshold,
        compact_keep=settings.compact_keep,
        compact_threshold_bytes=settings.compact_threshold_bytes,
        thrifty_accepts=settings.thrifty_accepts,
        max_apply_bytes=settings.max_apply_bytes,
        pre_vote=settings.pre_vote,
        max_promise_bytes=settings.max_promise_bytes,
        # Commands carry timestamps fixed when proposed; snapshot reads need the fence.
        election_fence=True,
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class TxnSettings:
    """Timing of the transaction duties and background work of a node."""

    #: Maximum clock offset between any two nodes (TrueTime's epsilon); 0 on one machine.
    max_clock_offset_s: float = 0.0
    #: A participant asks the coordinator about a transaction prepared this long ago.
    resolve_after_s: float = 1.0
    #: Decision records are kept this long (for txn_status and idempotent commits).
    decision_retention_s: float = 600.0
    #: How often leaders purge expired decision records.
    purge_interval_s: float = 60.0
    #: MVCC versions shadowed longer ago than this are garbage-collected (snapshot reads
    #: further back are refused), checked every `gc_interval_s`.
    mvcc_retention_s: float = 600.0
    gc_interval_s: float = 30.0
    #: Snapshots are built and restored in steps of at most this many records and bytes,
    #: one step per `snapshot_step_interval_s` at most (`NodeCore.background`); a snapshot
    #: of at most `snapshot_whole_bytes` is restored at once, in the cycle it arrives.
    snapshot_step_records: int = 2_000
    snapshot_step_bytes: int = 1024 * 1024
    snapshot_step_interval_s: float = 0.01
    snapshot_whole_bytes: int = 64 * 1024


class NodeCore:
    """All groups of one node; deterministic given its inputs."""

    def __init__(
        self,
        *,
        cluster_id: str,
        node_id: int,
        bootstrap_map: ShardMap,
        disk: NodeDisk,
        paxos_settings: Any,
        rng: random.Random,
        request_timeout_s: float,
        txn_settings: TxnSettings | None = None,
        peer_secret: str = "",
    ) -> None:
        """`peer_secret`: the cluster's, from which the outcome proofs' key derives (rule
        12, txn/proofs.py)."""
        self.cluster_id = cluster_id
        self._proof_key = proof_key(cluster_id, peer_secret)
        self.node_id = node_id
        self._bootstrap_map = bootstrap_map
        self._engine = disk.engine
        self._disk = disk
        self._paxos_settings = paxos_settings
        self._rng = rng
        self._timeout_s = request_timeout_s
        self._txn = txn_settings or TxnSettings()
        self._offset_us = int(self._txn.max_clock_offset_s * 1_000_000)
        self._max_ahead_us = 4 * self._offset_us + int(FUTURE_TS_MARGIN_S * 1_000_000)
        # Rules P7, O5: how far below a request's ts a record of its transaction may be
        # stamped. At most a quarter of the retention window, or a fresh request would be
        # refused: only the simulator's windows are that short (a node's config refuses a
        # window under `fewest_decision_retention_s`, where the cap never binds).
        retention_us = int(self._txn.decision_retention_s * 1_000_000)
        self._began_margin = min(self._max_ahead_us, retention_us // 4) << LOGICAL_BITS
        self._hlc = HybridClock()
        self._now = 0.0
        self._wall_ns = 0
        self._next_sweep = 0.0
        self._next_rebalance = 0.0
        self._retiring = False
        self._next_txn_duty = 0.0
        self._next_purge = self._txn.purge_interval_s
        self._next_gc = self._txn.gc_interval_s
        self._next_gc_step = 0.0
        self._gc_behind = False
        self._next_background = 0.0
        self._background_turn = 0
        self._next_read_id = 1
        self._bootstrap_proposed = False
        self._leading: set[int] = set()
        self.hosts: dict[int, GroupHost] = {}
        for group_id in bootstrap_map.group_ids():
            voters = bootstrap_map.replicas(group_id)
            if node_id not in voters:
                continue
            app: App
            if group_id == META_GROUP_ID:
                app = MetaApp(disk.engine)
            else:
                desc = bootstrap_map.group(group_id)
                app = ShardStateMachine(group_id, (desc.start, desc.end), disk.engine)
                app.record_written()  # rule 16: what wakes the waits
            self.hosts[group_id] = GroupHost(group_id, self._load_replica(group_id, app), app)
        # Rule 10: the clock starts above every timestamp the stored groups show.
        self._hlc.observe(self._stored_timestamps_floor())
        self._answers: list[tuple[_Pending, Any]] = []
        # Reads ready to serve past this wake's READ_BYTES_PER_WAKE, in arrival order.
        self._read_backlog: deque[tuple[GroupHost, _Pending]] = deque()
        self._read_bytes_left = READ_BYTES_PER_WAKE
        # Snapshot reads waiting for safe time (rule 3), and replies held for the commit wait.
        self._parked: list[tuple[GroupHost, _Pending]] = []
        self._change_waits: ChangeWaits[_Pending] = ChangeWaits()  # rule 16
        # Snapshot reads whose timestamp is ahead of the wall clock (rule 3): their lease
        # read starts only once the clock is within the offset of it.
        self._clock_waits: list[tuple[GroupHost, _Pending]] = []
        self._lock_waits: list[_LockWait] = []
        # What the parked requests were last checked against (`_waits_signature`), and the
        # earliest deadline among them: until either moves, none of them is due.
        self._waits_seen: tuple[tuple[int, int, int, bool], ...] = ()
        self._waits_due_at = math.inf
        self._delayed: list[tuple[int, _Pending, kv.Response]] = []
        #: Requests for other groups; the shell sends them and calls back with the response.
        self.outbound: list[Outbound] = []
        self._duties = TxnDuties(
            cluster_id=cluster_id,
            proof_key=self._proof_key,
            request_timeout_s=request_timeout_s,
            resolve_after_s=self._txn.resolve_after_s,
            decision_retention_s=self._txn.decision_retention_s,
            now=lambda: self._now,
            retention_now_us=self._retention_now_us,
            propose=self._propose_internal,
            # Looked up on each send: the shell takes the list away by replacing it.
            send=lambda out: self.outbound.append(out),
        )
        self._key_expiry = KeyExpiry(self._propose_command)  # rule 17
        self._next_expiry_check = 0.0
        # InstallSnapshot messages dropped because their snapshot would not restore.
        self.snapshots_refused = 0
        self._check_config_matches_stored_map()

    def _stored_timestamps_floor(self) -> int:
        """Rule 10: the newest timestamp this node's stored groups hold: versions (a
        Resolve raises max_version to its commit_ts), prepared transactions (a client may
        have reported their commit at prepare_ts on the votes alone), recorded decisions
        and the GC horizons."""
        return max((h.shard.newest_timestamp for h in self._data_hosts()), default=0)

    def _check_config_matches_stored_map(self) -> None:
        """Refuse to run a config whose nodes, split points or replication differ from the
        map the cluster stored at its bootstrap: the groups this node hosts and their key
        ranges come from the config, what it admits and tells clients from the stored map
        (found by review: a moved split point looped clients on WRONG_SHARD, an added one
        crashed the loop)."""
        meta = self.hosts.get(META_GROUP_ID)
        if meta is None or not isinstance(meta.app, MetaApp):
            return
        stored = meta.app.machine.shard_map
        config = self._bootstrap_map
        if stored is None or stored.version != config.version or stored == config:
            return
        raise config_mismatch(config, stored)

    def _load_replica(self, group_id: int, app: App) -> Replica:
        """The group's replica as a restart finds it: from its durable state alone."""
        return Replica(
            replica_config(
                self.node_id, self._bootstrap_map.replicas(group_id), self._paxos_settings
            ),
            self._disk.load(group_id),
            app.applied_index,
            random.Random(self._rng.getrandbits(64)),
        )

    # ------------------------------------------------------------------ state

    @property
    def shard_map(self) -> ShardMap:
        """The meta group's map once it is chosen, else the bootstrap map from the config."""
        meta = self.hosts.get(META_GROUP_ID)
        if meta is not None and isinstance(meta.app, MetaApp):
            current = meta.app.machine.shard_map
            if current is not None:
                return current
        return self._bootstrap_map

    def leader_address(self, leader: int | None) -> str:
        if leader is None:
            return ""
        try:
            return self.shard_map.node(leader).client_addr
        except Exception:
            return ""

    # ------------------------------------------------------------------ inputs

    def tick(self, now: float, wall_ns: int) -> None:
        self._now = now
        self._wall_ns = wall_ns
        self._hlc.now(wall_ns)
        for host in self.hosts.values():
            if host.restore is None:
                host.replica.tick(now)
        # Rule 3 before the duties below stamp commands, and before any request: a group
        # elected in a step or a tick is noted at once, not at the next collect (found by
        # review: the simulator's order submitted requests between the two).
        self._note_new_leaders()
        self._coalesce_heartbeats()
        if now >= self._next_sweep:
            self._next_sweep = now + EXPIRY_SWEEP_S
            self._expire(now)
        if self._retiring:
            self._hand_off_leaders()
        elif now >= self._next_rebalance:
            self._next_rebalance = now + REBALANCE_S
            self._spread_leaders()
        if now >= self._next_txn_duty:
            self._next_txn_duty = now + TXN_DUTY_S
            self._duties.drive_decisions(self._data_leaders())
            self._duties.recover_prepared(self._data_leaders())
        if now >= self._next_purge:
            self._next_purge = now + self._txn.purge_interval_s
            self._duties.purge_decisions(self._data_leaders())
        if now >= self._next_expiry_check:
            self._next_expiry_check = now + EXPIRY_CHECK_S
            self._key_expiry.check(self._data_leaders(), now, self._expiry_due_ts(wall_ns))
        self._release_delayed()
        self._release_clock_waits()
        self._wake_lock_waits()
        self._maybe_bootstrap_meta()
        self._serve_read_backlog()
        # Also the answers of reads served outside a cycle (stale_ok ones, on arrival).
        self._flush_answers()

    def _expiry_due_ts(self, wall_ns: int) -> int:
        """Rule 17: values due by the wall clock less twice the offset, never by the HLC,
        which a new leadership or a request's timestamp may push ahead of real time."""
        return (wall_ns // 1000 - 2 * self._offset_us) << LOGICAL_BITS

    def _serve_read_backlog(self) -> None:
        """A new wake's READ_BYTES_PER_WAKE, first for the reads the last ones left."""
        self._read_bytes_left = READ_BYTES_PER_WAKE
        while self._read_backlog and self._read_bytes_left > 0:
            host, pending = self._read_backlog.popleft()
            if host.restore is not None:  # began restoring a snapshot since: half a shard
                self._reply_error(
                    pending, _error(kv.UNAVAILABLE, "the replica began restoring a snapshot")
                )
                continue
            self._serve(host, pending)

    def _coalesce_heartbeats(self) -> None:
        """When this wake sends heartbeat traffic anyway (a round came due, or acks to the
        rounds of the groups we follow), the groups we lead whose next round is half due
        send it now, in the same write (`Replica.heartbeat_early`).

        The nodes' rounds fall into step: an idle 3-node, 3-shard node wakes 65 times a
        second instead of 87 and uses 5.0 % of a core instead of 6.3 % (measured by a
        review helper, eight alternated rounds), with every round still at most one
        interval after the last and failover unchanged. Writes (Accepts, votes) do not
        bring rounds forward (`Replica.sending_heartbeats`).
        """
        live = [h.replica for h in self.hosts.values() if h.restore is None]
        quiet = [r for r in live if not r.sending_heartbeats()]
        if len(quiet) < len(live):
            for replica in quiet:
                replica.heartbeat_early()

    def next_deadline(self) -> float | None:
        """The earliest time (tick's clock) a short timer of this node is due, or None.

        Every timer finer than the shell's regular tick: each replica's (heartbeats,
        elections), a held Resolve's hold (rule 8), a reply held for its commit wait, and a
        parked request's wake-up or end of wait. The periodic sweeps are coarse and run at
        whichever tick comes.
        """
        due = [h.replica.next_deadline() for h in self.hosts.values() if h.restore is None]
        due += [h.held_until for h in self.hosts.values() if h.held_resolves]
        if self.has_background_work():
            due.append(self._next_background)
        if self._read_backlog:
            due.append(self._now)
        if self._delayed:
            # `_release_delayed` replies once the wall clock is past the held version; one
            # microsecond more covers the rounding of this float deadline.
            first_us = min(not_before_us for not_before_us, _, _ in self._delayed)
            due.append(self._now + ((first_us + 2) * 1000 - self._wall_ns) / 1e9)
        for _, pending in self._clock_waits:
            # Rule 3: a snapshot read ahead of the wall clock starts once the clock is near it.
            wait_ns = (physical_us(pending.request.at_version) - self._offset_us + 1) * 1000
            due.append(self._now + max(wait_ns - self._wall_ns, 0) / 1e9)
        if self._lock_waits:
            due.append(self._waits_due_at)
        return min(due) if due else None

    def observe_time(self, now: float, wall_ns: int) -> None:
        """Move the clock forward without running timers.

        The shell calls it right before `submit`, so a lease read is judged on the current
        time, not on the last tick's (which may be old after a stall or a SIGSTOP), and
        before delivering peer messages that queued up during a stall (see
        `Replica.observe_time`).
        """
        self._now = max(self._now, now)
        self._wall_ns = max(self._wall_ns, wall_ns)
        for host in self.hosts.values():
            host.replica.observe_time(self._now)

    def step(self, group_id: int, msg: Message) -> bool:
        """Deliver a peer message; False when this node hosts no such group."""
        host = self.hosts.get(group_id)
        if host is None:
            return False
        if host.restore is not None:
            return True  # the replica is paused while it restores; a message may be lost
        if isinstance(msg, InstallSnapshot) and not (
            _restorable(host.app, msg) and self._keeps_hosted_groups(group_id, msg)
        ):
            # Met in the apply, it would stop the node's loop; the leader sends another.
            self.snapshots_refused += 1
            return True
        host.replica.step(msg)
        if (host.replica.role is Role.LEADER) != (group_id in self._leading):
            self._note_new_leaders()  # before anything is stamped for the group (rule 3)
        return True

    def _keeps_hosted_groups(self, group_id: int, msg: InstallSnapshot) -> bool:
        """A meta snapshot's map names every data group this node hosts (found by a wire
        fuzz: a peer's snapshot without one was installed, and the node's next tick raised
        on the group no map knew). Called after `_restorable`: the snapshot decodes."""
        if group_id != META_GROUP_ID:
            return True
        _, shard_map = decode_meta_snapshot(msg.data)
        return shard_map is None or all(shard_map.has_group(h.group_id) for h in self._data_hosts())

    def submit(self, request: kv.Request, reply: Reply) -> None:
        """Start one client request; `reply` is called exactly once with its response."""
        if not self._lock_waits:
            self._start(request, reply)
            return
        released = self._lock_releases()
        self._start(request, reply)
        if self._lock_releases() != released:
            # A refused Prepare released its update locks, or a read wounded a holder: the
            # waiters decide again now, not at the next tick (up to 50 ms later).
            self._wake_lock_waits()

    def _lock_releases(self) -> int:
        return sum(_releases(host) for host in self._data_hosts())

    def _waits_signature(self) -> tuple[tuple[int, int, int, bool], ...]:
        """What a parked request's wait depends on, besides time: per data group (the meta
        group parks nothing), its releases, the aborts noted (both only grow) and whether
        this replica leads it (`_park` covers a role that changes back and forth)."""
        return tuple(
            (host.group_id, _releases(host), host.ends_noted, host.replica.role is Role.LEADER)
            for host in self._data_hosts()
        )

    def _start(self, request: kv.Request, reply: Reply) -> None:
        kind = request.WhichOneof("op")
        if kind is None:
            reply(kv.Response(id=request.id, error=_error(kv.INVALID_ARGUMENT, "empty request")))
            return
        op = getattr(request, kind)
        deadline = self._now + self._timeout_s
        header = getattr(op, "header", None)
        if header is not None and header.timeout_ms:
            # The client stops waiting then: lock waits must end in time for an answer
            # (a Conflict naming the key) to reach it, not after it gave up.
            deadline = min(deadline, self._now + header.timeout_ms / 1000)
        pending = _Pending(kind, op, reply, deadline, request.id)
        if kind == "timestamp":
            response = kv.Response(id=request.id)
            response.timestamp.ts = self._hlc.now(self._wall_ns)
            reply(response)
            return
        try:
            host = self._admit(kind, op)
            if kind in READ_KINDS:
                self._start_read(host, pending)
            else:
                command_for = self._command_for(kind, op)
                if kind in ("prepare", "commit_one_phase"):
                    if self._begin_commit(host, op, pending, command_for):
                        return
                elif kind == "resolve":
                    host.locks.release(op.txn_id)
                    if op.commit:
                        _note_finished(host, op.txn_id, self._now)
                        if host.replica.role is Role.LEADER:
                            # Rule 14 (vouched at admission, rule 12).
                            host.proven.add(op.txn_id, op.commit_ts, op.participants, pending)
                        # Held before the wake: a write parked on its intents, which the
                        # proof lets go, is then proposed behind it, in its slot (found by
                        # review: proposed first, it met the intent and was refused).
                        self._hold_resolve(host, pending, command_for)
                        self._wake_lock_waits()
                        return
                    _note_abort(host, op.txn_id, self._now)
                    self._wake_lock_waits()
                    if not self._vouched(op):
                        # Rule 12: it freed what this leader holds in memory; nothing more.
                        self._reply_done(pending)
                        return
                self._submit_write(host, pending, command_for)
        except _Refusal as refusal:
            self._reply_error(pending, refusal.error)
        except ValueError as exc:
            # Records validate themselves (e.g. a key listed twice in a transaction).
            self._reply_error(pending, _error(kv.INVALID_ARGUMENT, str(exc)))

    def _admit(self, kind: str, op: Any) -> GroupHost:
        """Rule 4: check cluster, group, range and limits before anything else."""
        header = op.header
        if header.cluster_id != self.cluster_id:
            raise _Refusal(
                _error(
                    kv.WRONG_CLUSTER,
                    f"request for cluster {quote_key(header.cluster_id)} reached a node of "
                    f"cluster {self.cluster_id!r}",
                )
            )
        shard_map = self.shard_map
        group_id = header.group_id
        host = self.hosts.get(group_id)
        if host is None or group_id == META_GROUP_ID:
            raise _Refusal(
                _error(
                    kv.UNKNOWN_GROUP,
                    f"node {self.node_id} hosts no data group {group_id}",
                    map_version=shard_map.version,
                )
            )
        desc = shard_map.group(group_id)
        # The size limits: the routing client runs this same check before it sends, so its
        # refusal and ours say the same.
        oversized = request_refusal(kind, op)
        if oversized is not None:
            raise _Refusal(_error(kv.LIMIT_EXCEEDED, oversized))
        try:
            if kind == "scan":
                _check_scan_range(op)
                _check_changes(op)
                end = op.end if op.HasField("end") else None
                # The whole scan inside the group's range, or WRONG_SHARD: a client
                # planning on an older map (the range since split) must re-plan, not take a
                # cut answer for the whole (found by review).
                inside = op.start >= desc.start and (
                    desc.end is None
                    or (op.start < desc.end and end is not None and end <= desc.end)
                )
                if not inside:
                    raise WrongShard.for_range(op.start, end or None, desc.start, desc.end)
            elif kind in ("prepare", "commit_one_phase"):
                _check_disjoint(op.read_ranges)
                _check_writes(op.writes)
                for item in list(op.reads) + list(op.writes):
                    validate_key(item.key)
                    if not desc.contains(item.key):
                        raise WrongShard(item.key, desc.start, desc.end)
                for key_range in op.read_ranges:
                    if not desc.contains(key_range.start) or (
                        desc.end is not None and (not key_range.end or key_range.end > desc.end)
                    ):
                        raise WrongShard.for_range(
                            key_range.start, key_range.end or None, desc.start, desc.end
                        )
                _check_new_txn_id(op.txn_id)
                if kind == "prepare":
                    _check_participants(shard_map, op.participants, group_id)
                    if op.coordinator_group not in op.participants:
                        raise _Refusal(
                            _error(kv.INVALID_ARGUMENT, "the coordinator group is no participant")
                        )
            elif kind == "txn_statuses":
                if not 0 < len(op.txn_ids) <= MAX_STATUS_IDS:
                    raise _Refusal(
                        _error(
                            kv.LIMIT_EXCEEDED if op.txn_ids else kv.INVALID_ARGUMENT,
                            f"txn_statuses asks about 1 to {MAX_STATUS_IDS} transactions "
                            f"(MAX_STATUS_IDS), not {len(op.txn_ids)}",
                        )
                    )
                for txn_id in op.txn_ids:
                    _check_txn_id(txn_id)
            elif kind in ("decide", "resolve", "txn_status", "prevent"):
                _check_txn_id(op.txn_id)
                if kind == "decide" and op.commit:
                    # Rule 11.
                    raise _Refusal(
                        _error(
                            kv.INVALID_ARGUMENT,
                            "a Decide only asks for an abort: a transaction commits when "
                            "every participant has logged its PREPARE, and is then resolved "
                            "with a Resolve(commit) at each participant",
                        )
                    )
                if kind == "resolve" and op.commit and op.commit_ts == 0:
                    # No commit is at timestamp 0 (found by review: one was recorded as
                    # committed while rule R3 dropped its writes).
                    raise _Refusal(
                        _error(kv.INVALID_ARGUMENT, f"a {kind} to commit needs its commit_ts")
                    )
                if kind == "resolve" and op.commit and not self._vouched(op):
                    # Rule 12.
                    raise _Refusal(
                        _error(
                            kv.INVALID_ARGUMENT,
                            "a Resolve(commit) needs the proof of every participant's yes "
                            "vote (the vote_mac of each Prepare's answer, with commit_ts "
                            "their largest prepare_ts) or of the recorded decision",
                        )
                    )
                if kind in ("decide", "prevent") and op.participants:
                    # A Prevent's too (found by review: groups 99 and 2**64-1 were taken).
                    _check_participants(shard_map, op.participants, group_id)
            else:
                validate_key(op.key)
                if not desc.contains(op.key):
                    raise WrongShard(op.key, desc.start, desc.end)
                if kind == "get" and op.lock_txn_id:
                    _check_update_lock(op)
        except WrongShard as exc:
            raise _Refusal(
                _error(kv.WRONG_SHARD, str(exc), map_version=shard_map.version)
            ) from None
        except ShardError as exc:
            code = kv.LIMIT_EXCEEDED if exc.status is Status.LIMIT_EXCEEDED else kv.INVALID_ARGUMENT
            raise _Refusal(_error(code, str(exc))) from None
        if host.restore is not None:
            raise _Refusal(
                _error(
                    kv.UNAVAILABLE,
                    f"group {group_id} on node {self.node_id} is restoring a snapshot; retry "
                    "(another replica, for a stale_ok read)",
                )
            )
        return host

    def _command_for(self, kind: str, op: Any) -> Callable[[int], bytes]:
        """The command a write request proposes, as a function of its timestamp."""
        if kind == "put":
            _check_ttl(op.ttl_ms)
            return lambda ts: codec.encode_put(op.key, op.value, ts, op.ttl_ms)
        if kind == "delete":
            return lambda ts: codec.encode_delete(op.key, ts)
        if kind == "cas":
            expect = op.WhichOneof("expect")
            action = op.WhichOneof("action")
            # A flag of a oneof set to false still names the oneof's field (found by a wire
            # fuzz: `delete: false` deleted the key).
            if (
                expect is None
                or action is None
                or (expect == "expect_absent" and not op.expect_absent)
                or (action == "delete" and not op.delete)
                or (action == "touch" and not op.touch)
            ):
                raise _Refusal(
                    _error(
                        kv.INVALID_ARGUMENT,
                        "compare-and-set needs one condition (expected_value, expected_version "
                        "or expect_absent: true) and one action (new_value, delete: true or "
                        "touch: true)",
                    )
                )
            if action == "delete" and op.ttl_ms:
                raise _Refusal(
                    _error(kv.INVALID_ARGUMENT, "a compare-and-set that deletes takes no ttl_ms")
                )
            if action == "touch" and (not op.ttl_ms or expect == "expect_absent"):
                raise _Refusal(
                    _error(
                        kv.INVALID_ARGUMENT,
                        "a touch needs a ttl_ms and a condition on the key's value or version",
                    )
                )
            _check_ttl(op.ttl_ms)
            return lambda ts: codec.encode_cas(
                op.key,
                ts,
                expected_value=op.expected_value if expect == "expected_value" else None,
                expected_version=op.expected_version if expect == "expected_version" else None,
                expect_absent=expect == "expect_absent",
                new_value=op.new_value if action == "new_value" else None,
                delete=action == "delete",
                ttl_ms=op.ttl_ms,
                touch=action == "touch",
            )
        if kind == "prepare":
            self._observe_from_request(op.ts, "the transaction timestamp")
            _refuse_started_after(op)
            record: Any = Prepare(
                txn_id=op.txn_id,
                coordinator_group=op.coordinator_group,
                participants=tuple(op.participants),
                reads=_reads(op.reads),
                writes=_writes(op.writes),
                read_ranges=_ranges(op.read_ranges),
                began_ts=self._began_bound(op),
            )
        elif kind == "commit_one_phase":
            self._observe_from_request(op.ts, "the transaction timestamp")
            _refuse_started_after(op)
            record = CommitOnePhase(
                txn_id=op.txn_id,
                reads=_reads(op.reads),
                writes=_writes(op.writes),
                read_ranges=_ranges(op.read_ranges),
                began_ts=self._began_bound(op),
            )
        elif kind == "decide":
            record = _wire_decide(op)
        elif kind == "prevent":
            record = Prevent(
                txn_id=op.txn_id,
                asker_ts=asker_ts(op.txn_id, op.asker_ts),
                participants=tuple(op.participants),
            )
        elif kind == "resolve":
            # Stamped above commit_ts, so the outcome record's decided_ts is at least it
            # (txn.coordinator rule D4 relies on that).
            self._observe_from_request(op.commit_ts, "the commit timestamp")
            # With what its proof names (participant rule R7).
            record = Resolve(
                txn_id=op.txn_id,
                commit=op.commit,
                commit_ts=op.commit_ts,
                participants=tuple(op.participants),
            )
        else:
            raise _Refusal(_error(kv.INVALID_ARGUMENT, f"unsupported request {kind!r}"))
        return lambda ts: codec.encode_txn(record, ts)

    def _vouched(self, op: kv.ResolveRequest) -> bool:
        """Rule 12: whether a Resolve carries a proof of its outcome."""
        if decision_proves(
            self._proof_key,
            op.txn_id,
            op.commit,
            op.commit_ts,
            op.participants,
            op.decision_mac,
        ):
            return True
        # Votes over another set of participants than this group's Prepare named prove
        # nothing here: its own vote, over that set, must be among them.
        if not op.commit or op.header.group_id not in op.participants:
            return False
        votes = ((v.group_id, v.prepare_ts, v.mac) for v in op.votes)
        return votes_prove_commit(self._proof_key, op.txn_id, op.participants, votes, op.commit_ts)

    def _observe_from_request(self, ts: int, what: str) -> None:
        """Rule 9, then let the clock absorb `ts`."""
        self._refuse_future(ts, what)
        self._hlc.observe(ts)

    def _began_bound(self, op: kv.PrepareRequest | kv.CommitOnePhaseRequest) -> int:
        """Rules P7 and O5: at or below the timestamp of every record any group keeps of a
        transaction whose request carries `op.ts` (each is stamped by a clock read after the
        client took it, and a clock may lag the client's by as much as rule 9 lets a
        request's timestamp run ahead; `_began_margin`), and at or below the start its id
        carries (rule 13), which stands for every asker's claim. 0 (no claim) stays 0."""
        ts = asker_ts(op.txn_id, op.ts)
        return max(1, ts - self._began_margin) if ts else 0

    def _refuse_future(self, ts: int, what: str) -> None:
        """Rule 9."""
        ahead_us = physical_us(ts) - self._wall_ns // 1000
        if ahead_us > self._max_ahead_us or ts > MAX_TS:
            raise _Refusal(
                _error(
                    kv.INVALID_ARGUMENT,
                    f"{what} {ts} is {ahead_us / 1e6:.3f} s ahead of node {self.node_id}'s "
                    f"clock (at most {self._max_ahead_us / 1e6:.3f} s): no version this "
                    "cluster wrote is, so check where it came from; one a client's clock "
                    "gave needs the clocks of nodes and clients within max_clock_offset_ms "
                    f"({self._offset_us // 1000} ms) of each other",
                )
            )

    def _start_write(
        self, host: GroupHost, pending: _Pending, command_for: Callable[[int], bytes]
    ) -> None:
        if host.held_resolves:
            self._propose_held_resolves(host)
        pending.ts = self._hlc.now(self._wall_ns)
        try:
            command = command_for(pending.ts)
            validate_command_size(command)
        except LimitExceeded as exc:
            raise _Refusal(_error(kv.LIMIT_EXCEEDED, str(exc))) from None
        except ShardError as exc:
            raise _Refusal(_error(kv.INVALID_ARGUMENT, str(exc))) from None
        try:
            proposal_id = host.replica.propose(command)
        except NotLeader as exc:
            raise _Refusal(self._not_leader(exc)) from None
        except ProposalTooLarge as exc:
            raise _Refusal(_error(kv.LIMIT_EXCEEDED, str(exc))) from None
        host.proposals[proposal_id] = pending

    def _start_read(self, host: GroupHost, pending: _Pending) -> None:
        op = pending.request
        if pending.kind == "scan" and op.await_change:
            self._await_change(host, pending)
            return
        if pending.kind in ("get", "scan"):
            if op.at_version > 0 and not op.stale_ok:
                # A read at a version is a snapshot read: only safe time makes it repeatable.
                op.snapshot = True
            if op.snapshot:
                if op.at_version <= 0:
                    raise _Refusal(_error(kv.INVALID_ARGUMENT, "a snapshot read needs at_version"))
                self._refuse_future(op.at_version, "the snapshot timestamp")
                if physical_us(op.at_version) > self._wall_ns // 1000 + self._offset_us:
                    self._clock_waits.append((host, pending))  # rule 3
                    return
                self._hlc.observe(op.at_version)
            elif op.stale_ok:
                self._serve(host, pending)
                return
            elif (
                pending.kind == "get"
                and op.lock_txn_id
                and not self._take_update_lock(host, pending)
            ):
                return
        read_id = self._next_read_id
        self._next_read_id += 1
        try:
            host.replica.read(read_id, self._now)
        except NotLeader as exc:
            raise _Refusal(self._not_leader(exc)) from None
        host.reads[read_id] = pending

    def _await_change(self, host: GroupHost, pending: _Pending) -> None:
        """Rule 16: answer a wait for a change now if its range changed, else park it."""
        op = pending.request
        end = op.end if op.HasField("end") else host.shard.key_range[1]
        # (A replica restoring a snapshot refused it at admission.)
        version = changed_since(host.shard, op.start, end, op.changes_after)
        if version:
            self._reply_wait(pending, version)
            return
        until = self._now + (pending.deadline - self._now) / 2
        self._change_waits.park(host.group_id, op.start, end, op.changes_after, until, pending)

    def _reply_wait(self, pending: _Pending, version: int = 0) -> None:
        """Answer a wait: changed at `version` (the client's next round reads at least up
        to it, or a clock behind it would have it read below it again and again), or not."""
        answer = kv.ScanResponse(changed=version > 0, through=version, waited=True)
        pending.reply(kv.Response(id=pending.request_id, scan=answer))

    def _wake_change_waits(self, host: GroupHost) -> None:
        """Rule 16: answer the waits a version this group just applied ends."""
        if isinstance(host.app, ShardStateMachine):
            written = host.app.take_written()
            if written:
                for pending, version in self._change_waits.woken(host.group_id, written):
                    self._reply_wait(pending, version)

    def _wake_restored(self, host: GroupHost) -> None:
        """Rule 16: a snapshot replaced the group's state; its waits all look again."""
        for pending in self._change_waits.woken_all(host.group_id):
            self._reply_wait(pending, max(host.shard.max_version, 1))

    def end_change_waits(self) -> None:
        """Rule 16: answer every wait for a change unchanged (the node is stopping)."""
        for pending in self._change_waits.take_all():
            self._reply_wait(pending)

    def _begin_commit(
        self,
        host: GroupHost,
        op: Any,
        pending: _Pending,
        command_for: Callable[[int], bytes],
    ) -> bool:
        """A Prepare or one-phase commit arrived: note its age; refuse it if its transaction
        was wounded. True when the request is answered from here."""
        if op.txn_id in host.ages:
            return False  # a re-sent Prepare: the first copy was admitted
        wound = host.locks.wound(op.txn_id)
        if wound is not None and isinstance(op, kv.PrepareRequest):
            # A no vote needs no log entry: the transaction cannot commit without this
            # group's yes, and recovery only ever decides abort.
            raise _Refusal(_wounded_error(wound, "prepare"))
        if wound is not None:
            self._refuse_wounded_one_phase(host, op, pending, wound, command_for)
            return True
        if isinstance(op, kv.PrepareRequest):
            host.ages[op.txn_id] = (request_age(op), self._now)
        host.locks.committing(op.txn_id)
        return False

    def _refuse_wounded_one_phase(
        self,
        host: GroupHost,
        op: Any,
        pending: _Pending,
        wound: tuple[bytes, bytes],
        command_for: Callable[[int], bytes],
    ) -> None:
        """A one-phase commit IS the decision, so its refusal goes through the log: a
        Prevent records the abort (participant rule V1), and a late copy of the request
        meets it (O1). Without this a wounded holder still committed, its wounder's read
        went stale, and the older transaction lost every retry (found by review)."""

        def prevented(result: Any) -> None:
            outcome = getattr(result, "txn", None)
            if outcome is not None and not outcome.prepared and not outcome.unknown:
                self._reply_error(pending, _wounded_error(wound, "commit"))
            elif outcome is not None and outcome.prepared:
                # Already decided here (a committed record: an earlier copy of this very
                # request committed before the wound) or prepared by 2PC: the request
                # itself goes through the log, where rules O1/O2 answer it.
                try:
                    self._submit_write(host, pending, command_for)
                except _Refusal as refusal:
                    self._reply_error(pending, refusal.error)
            else:  # not recorded (not leading any more, say): a re-send finds out
                message = "the wounded commit's abort is not recorded yet; retry"
                self._reply_error(pending, _error(kv.UNAVAILABLE, message))

        prevent = Prevent(txn_id=op.txn_id, asker_ts=asker_ts(op.txn_id, op.ts))
        self._propose_internal(host, prevent, prevented)

    def _submit_write(
        self, host: GroupHost, pending: _Pending, command_for: Callable[[int], bytes]
    ) -> None:
        if _ended_here(host, pending):
            # Its abort arrived first (e.g. while this Prepare waited for a lock): a no vote
            # needs no log entry, and proposing it would only take intents nobody resolves
            # until the recovery query.
            raise _already_aborted(b"", pending.request.txn_id, "prepare")
        if not self._wait_for_locks(
            host, pending, lambda: self._submit_write(host, pending, command_for)
        ):
            self._start_write(host, pending, command_for)

    def _hold_resolve(
        self, host: GroupHost, pending: _Pending, command_for: Callable[[int], bytes]
    ) -> None:
        """Rule 8: keep a Resolve(commit) for the next slot this group fills anyway."""
        if host.replica.role is not Role.LEADER:
            self._submit_write(host, pending, command_for)  # refused with the leader's address
            return
        if not host.held_resolves:
            host.held_until = self._now + RESOLVE_HOLD_S
        host.held_resolves.append((pending, command_for))

    def _release_held_resolves(self) -> None:
        """Rule 8: propose the held Resolves once they are needed or due."""
        for host in self.hosts.values():
            # A new proposal takes the held ones along by itself (`_start_write`).
            if host.held_resolves and (
                self._now >= host.held_until
                or host.replica.role is not Role.LEADER
                or any(wait.host is host and wait.on_intents for wait in self._lock_waits)
                or any(parked is host for parked, _ in self._parked)
            ):
                self._propose_held_resolves(host)

    def _propose_held_resolves(self, host: GroupHost) -> None:
        # Ahead of whatever proposal comes next: a Prepare that meets the committed
        # transaction's intents must find them resolved, as it would without the hold.
        held, host.held_resolves = host.held_resolves, []
        for pending, command_for in held:
            try:
                self._submit_write(host, pending, command_for)
            except _Refusal as refusal:
                self._reply_error(pending, refusal.error)

    def _wait_for_locks(
        self, host: GroupHost, pending: _Pending, resume: Callable[[], None]
    ) -> bool:
        """Park `pending` while it meets an intent it may wait for; True when parked.

        `resume` runs (and decides again) once an intent or lock of the group was released,
        when the wait ran out (shard.lock_wait rule L4), or when this replica stopped leading.
        """
        if host.group_id == META_GROUP_ID or host.replica.role is not Role.LEADER:
            return False  # a follower refuses at once, with the leader's address
        if pending.kind == "prepare":
            due = due_key_read(
                host.shard, pending.request, host.due, lambda t: _age(host, t), host.proven
            )
            if due is not None:
                self._wait_for_expiry(host, pending, resume, due)
                return True
        if pending.wait_until and self._now >= pending.wait_until:
            return False
        on_intents = blocked(
            host.shard, pending.kind, pending.request, lambda t: _age(host, t), host.proven
        )
        if not on_intents and not _behind_update_lock(host, pending):
            return False
        self._park(host, pending, resume, on_intents=on_intents)
        return True

    def _wait_for_expiry(
        self, host: GroupHost, pending: _Pending, resume: Callable[[], None], due: DueKeyRead
    ) -> None:
        """Rule L5: park a Prepare that reads a key due for expiry until the Expire deleted
        it; refuse it (taking no intent on the key) when it is younger than a transaction
        holding the key (wait-die) or when its wait ran out."""
        if due.older_holder is not None:
            reason = (
                "the key's value is due for expiry, and its delete waits for an older "
                "transaction that holds the key; retry"
            )
        elif pending.wait_until and self._now >= pending.wait_until:
            reason = "the key's value is due for expiry and was not deleted in time; retry"
        else:
            self._park(host, pending, resume, on_intents=True)
            return
        conflict = Conflict(
            key=due.key, other_txn=due.older_holder or b"", phase="prepare", reason=reason
        )
        raise _Refusal(_conflict_error(conflict))

    def _park(
        self,
        host: GroupHost,
        pending: _Pending,
        resume: Callable[[], None],
        wake_at: float | None = None,
        max_wait_s: float = LOCK_WAIT_MAX_S,
        on_intents: bool = False,
    ) -> None:
        if not pending.wait_until:
            pending.wait_until = self._wait_end(pending, max_wait_s)
        wait = _LockWait(host, pending, _releases(host), resume, wake_at, on_intents)
        self._lock_waits.append(wait)
        self._waits_due_at = min(self._waits_due_at, _wait_due_at(wait))
        # What `_wake_lock_waits` compares with, its last look, does not cover two states a
        # request may park in (found by review): its abort noted before it parked (a read for
        # update parked on an intent after its read index), and a group last seen not led
        # by this replica, which a step-down after this park would leave looking the same.
        if _ended_here(host, pending):
            self._waits_due_at = self._now
        if any(group == host.group_id and not leads for group, _, _, leads in self._waits_seen):
            self._waits_seen = ()

    def _wait_end(self, pending: _Pending, max_wait_s: float) -> float:
        """Rule L4: when a wait that starts now ends."""
        return min(self._now + max_wait_s, self._now + (pending.deadline - self._now) / 2)

    def _take_update_lock(self, host: GroupHost, pending: _Pending) -> bool:
        """A read for update: take the key's lock first (rule U2); False when parked."""
        op = pending.request
        if host.replica.role is not Role.LEADER:
            return True  # the read itself is refused with the leader's address
        if op.lock_txn_id in host.aborted:
            # Its abort (Resolve) already arrived, e.g. the client gave up on this read
            # while it queued: a lock granted now would be held by nobody until its TTL.
            raise _already_aborted(op.key, op.lock_txn_id, "read")
        if op.lock_txn_id in host.finished:
            # So did its commit (found by a cancellation trial: a read given up on, or
            # another task's, still queued when the transaction committed took the freed
            # lock for nobody, and the next reader for update waited for LOCK_TTL_S).
            raise _already_finished(op.key, op.lock_txn_id)
        age = (op.lock_priority, op.lock_txn_id)
        queue_until = pending.wait_until or self._wait_end(pending, LOCK_QUEUE_MAX_S)
        grant = host.locks.acquire(op.key, age, self._now, queue_until)
        if grant is Grant.GRANTED:
            return True
        if grant is Grant.WOUNDED:
            wound = host.locks.wound(op.lock_txn_id)
            assert wound is not None
            raise _Refusal(_wounded_error(wound, "read"))
        if pending.wait_until and self._now >= pending.wait_until:
            holder = host.locks.holder(op.key) or b""
            reason = "the key is locked for update by an older transaction"
            raise _Refusal(
                _conflict_error(Conflict(key=op.key, other_txn=holder, phase="read", reason=reason))
            )
        wake_at = host.locks.wound_at(op.key, age)
        self._park(
            host, pending, lambda: self._start_read(host, pending), wake_at, LOCK_QUEUE_MAX_S
        )
        return False

    def _wake_lock_waits(self) -> None:
        """Resume the parked requests whose group released something, whose wait ran out
        or whose replica stopped leading; each decides again (and may park again)."""
        if not self._lock_waits:
            return
        seen = self._waits_signature()
        if seen == self._waits_seen and self._now < self._waits_due_at:
            # Nothing a parked request waits for changed since they were last checked: under
            # a queue of many requests most calls are such, and each scan costs them all
            # (15 % of a hot leader's samples with 64 clients on 4 hot keys).
            return
        self._waits_seen = seen
        waiting, due = [], []
        for wait in self._lock_waits:
            host = wait.host
            if (
                _releases(host) == wait.releases
                and self._now < wait.pending.wait_until
                and (wait.wake_at is None or self._now < wait.wake_at)
                and host.replica.role is Role.LEADER
                and not _ended_here(host, wait.pending)
            ):
                waiting.append(wait)
            else:
                due.append(wait)
        self._lock_waits = waiting
        self._waits_due_at = min(map(_wait_due_at, waiting), default=math.inf)
        # Reads for update first, oldest first: a younger waiter that took a freed lock ahead
        # of an older one would only be wounded by it a grace period later, its work wasted;
        # and a plain write parked behind the lock (rule U4) that went ahead of them landed
        # after the new holder's read, which then aborted at its commit (found by review).
        due.sort(key=_wait_age)
        for wait in due:
            try:
                wait.resume()
            except _Refusal as refusal:
                self._reply_error(wait.pending, refusal.error)

    def _propose_internal(
        self, host: GroupHost, record: Any, on_result: Callable[[Any], None]
    ) -> None:
        """Propose a transaction record the node itself needs (recovery, delivery, purge)."""
        # A recorded commit is stamped above its commit timestamp (txn.coordinator rule D4).
        self._hlc.observe(getattr(record, "commit_ts", 0))
        self._propose_command(host, partial(_encode_txn_at, record), on_result)

    def _propose_command(
        self, host: GroupHost, encode: Callable[[int], bytes], on_result: Callable[[Any], None]
    ) -> None:
        """Propose the command `encode(ts)` the node itself needs, stamped now; `on_result`
        gets its applied `CommandResult`, or None when it was not applied here."""
        if host.held_resolves:
            self._propose_held_resolves(host)
        pending = _Pending("internal", None, on_result, self._now + self._timeout_s, 0)
        pending.ts = self._hlc.now(self._wall_ns)
        try:
            proposal_id = host.replica.propose(encode(pending.ts))
        except NotLeader:
            on_result(None)
            return
        host.proposals[proposal_id] = pending

    def _not_leader(self, exc: NotLeader) -> kv.Error:
        if exc.leader_hint is None:
            return _error(kv.UNAVAILABLE, f"{exc}; no leader known yet, retry shortly")
        return _error(
            kv.NOT_LEADER,
            str(exc),
            leader_id=exc.leader_hint,
            leader_addr=self.leader_address(exc.leader_hint),
        )

    # ------------------------------------------------------------------ background duties

    def _maybe_bootstrap_meta(self) -> None:
        """The meta leader records the bootstrap map once, so the map lives in group 0."""
        meta = self.hosts.get(META_GROUP_ID)
        if (
            meta is None
            or self._bootstrap_proposed
            or meta.replica.role is not Role.LEADER
            or not isinstance(meta.app, MetaApp)
            or meta.app.machine.shard_map is not None
        ):
            return
        command = encode_meta_command(Bootstrap(shard_map=self._bootstrap_map))
        try:
            meta.replica.propose(command)
        except NotLeader:
            return
        self._bootstrap_proposed = True

    def _spread_leaders(self) -> None:
        """Hand each group we lead to its preferred leader, so leaders spread over nodes."""
        shard_map = self.shard_map
        for group_id, host in self.hosts.items():
            if host.replica.role is not Role.LEADER:
                continue
            preferred = shard_map.preferred_leader(group_id)
            if preferred != self.node_id:
                host.replica.transfer_leadership(preferred)

    def retire(self) -> None:
        """Rule 15: this node is about to stop; hand every group it leads to a peer."""
        self._retiring = True
        for host in self.hosts.values():
            host.replica.retire()
        self._hand_off_leaders()

    def groups_without_leader(self) -> list[int]:
        """The groups hosted here whose replica knows no live leader (`Replica.hears_leader`):
        requests for them would wait or fail here. For the node's health service."""
        return [g for g, h in self.hosts.items() if not h.replica.hears_leader(self._now)]

    def led_groups(self) -> list[int]:
        """The groups (the meta group included) this node leads now."""
        return [g for g, h in self.hosts.items() if h.replica.role is Role.LEADER]

    def handing_off(self) -> list[int]:
        """The groups a retiring node still leads with a transfer under way or startable,
        or still campaigns for (a campaign sent before the retirement may win, and is then
        handed over; one unanswered is given up at its election timeout, paxos rule 19):
        its stop waits for these. A group no peer can take, all of them down or retiring,
        is not among them."""
        if not self._retiring:
            return []
        self._hand_off_leaders()
        return [
            g
            for g, h in self.hosts.items()
            if h.replica.handoff_target is not None or h.replica.role is Role.CANDIDATE
        ]

    def _hand_off_leaders(self) -> None:
        shard_map = self.shard_map
        for group_id, host in self.hosts.items():
            replica = host.replica
            if replica.role is not Role.LEADER or replica.handoff_target is not None:
                continue
            preferred = shard_map.preferred_leader(group_id)
            peers = sorted(
                (p for p in replica.config.voters if p != self.node_id),
                key=lambda p: (p != preferred, p),
            )
            for peer in peers:
                if replica.transfer_leadership(peer):
                    break

    def _data_hosts(self) -> list[GroupHost]:
        """The hosts of this node's data groups (every group but the meta group)."""
        return [h for g, h in self.hosts.items() if g != META_GROUP_ID]

    def _data_leaders(self) -> list[GroupHost]:
        return [h for h in self._data_hosts() if h.replica.role is Role.LEADER]

    def _retention_now_us(self) -> int:
        """The time retention windows (MVCC versions, decision records) run to: the wall
        clock when it is behind the hybrid one, as a request's timestamp from a clock ahead
        (node rule 9 takes them up to 4 offsets + 0.5 s ahead) pushes the hybrid clock ahead
        of real time, which would cut a retention short by as much (found by a soak:
        snapshots 0.15 s younger than a 0.3 s retention refused; found by review: decision
        records purged as early)."""
        return min(physical_us(self._hlc.last), self._wall_ns // 1000)

    def _start_garbage_collection(self, batch: EngineBatch) -> None:
        """Begin dropping MVCC versions shadowed before the retention horizon, on every
        replica; apply cycles then collect, one step per GC_STEP_INTERVAL_S at most unless a
        pass is behind, up to GC_RECORDS_PER_STEP versions or GC_BYTES_PER_STEP of them per
        shard, whichever comes first, so a large store is never swept in one go while
        heartbeats wait."""
        retention_us = int(self._txn.mvcc_retention_s * 1_000_000)
        horizon_us = self._retention_now_us() - retention_us
        if horizon_us <= 0:
            return
        for host in self._data_hosts():
            if host.restore is not None:
                continue  # its state is being replaced; the next pass covers it
            self._gc_behind = self._gc_behind or host.shard.gc_pending
            host.shard.start_gc(horizon_us << LOGICAL_BITS, batch)

    def _expire(self, now: float) -> None:
        """Rule 5: answer requests whose deadline passed; let old update locks go."""
        for host in self.hosts.values():
            host.locks.expire(now)
            for table, code, text in (
                (
                    host.proposals,
                    kv.OUTCOME_UNKNOWN,
                    "the write was proposed but its outcome is unknown (leadership changed or "
                    "the group lost its quorum)",
                ),
                (host.reads, kv.UNAVAILABLE, "the read could not be confirmed in time; retry"),
            ):
                expired = [k for k, p in table.items() if p.deadline <= now]
                for key in expired:
                    pending = table.pop(key)
                    if table is host.proposals and pending.ts:
                        host.expired[key] = pending.ts
                    self._reply_error(pending, _error(code, text))
        self._parked = self._unexpired(
            self._parked, now, "the snapshot read waited too long for a prepared transaction"
        )
        for pending in self._change_waits.due(now):
            self._reply_wait(pending)
        self._clock_waits = self._unexpired(
            self._clock_waits, now, "the snapshot timestamp stayed ahead of this node's clock"
        )

    # ------------------------------------------------------------------ cycle

    def collect(self) -> list[tuple[GroupHost, Ready]]:
        """The Ready batches of every group with work to do."""
        self._note_new_leaders()
        self._release_held_resolves()
        return [
            (h, h.replica.ready())
            for h in self.hosts.values()
            if h.restore is None and h.replica.has_ready()
        ]

    def _note_new_leaders(self) -> None:
        """Rule 3: a new leader's timestamps start above anything its predecessor served."""
        for group_id, host in self.hosts.items():
            leading = host.replica.role is Role.LEADER
            if leading and group_id not in self._leading:
                self._leading.add(group_id)
                self._hlc.now(self._wall_ns + 2 * self._offset_us * 1000)
            elif not leading:
                if group_id in self._leading:
                    self._refuse_snapshot_reads(host)
                self._leading.discard(group_id)
                host.expired.clear()
                host.proven.clear()
                host.ages.clear()
                host.aborted.clear()
                host.finished.clear()
                host.locks.clear()
                host.preventing.clear()
                host.due.clear()

    def apply(self, readies: Sequence[tuple[GroupHost, Ready]], batch: EngineBatch) -> None:
        """Restore snapshots and apply chosen slots into `batch`; stage the answers."""
        if self._now >= self._next_gc:
            self._next_gc = self._now + self._txn.gc_interval_s
            self._start_garbage_collection(batch)
        if self._gc_behind or self._now >= self._next_gc_step:
            self._next_gc_step = self._now + GC_STEP_INTERVAL_S
            pending = False
            for host in self._data_hosts():
                if host.restore is None and host.shard.gc_pending:
                    host.shard.gc_step(batch, GC_RECORDS_PER_STEP, GC_BYTES_PER_STEP)
                    pending = pending or host.shard.gc_pending
            self._gc_behind = self._gc_behind and pending
        for host, ready in readies:
            if ready.snapshot is not None:
                restore = host.app.begin_restore(ready.snapshot.index, ready.snapshot.data)
                if len(ready.snapshot.data) <= self._txn.snapshot_whole_bytes:
                    try:
                        restore.run(batch)
                    except SnapshotCorrupt:
                        self._abandon_restore(host, restore, batch)
                        continue
                    self._observe_newest(host)
                    self._wake_restored(host)
                else:
                    host.restore = restore
                    host.after_restore = list(ready.committed)
                    continue
            self._apply_committed(host, ready.committed, batch)

    def _apply_committed(
        self, host: GroupHost, committed: Sequence[CommittedEntry], batch: EngineBatch
    ) -> None:
        for entry in committed:
            results = host.app.apply(entry.slot, entry.value, batch)
            if not results:
                continue
            for proposal_id, result in zip(entry.proposal_ids, results, strict=True):
                if proposal_id is None:
                    continue
                host.expired.pop(proposal_id, None)
                pending = host.proposals.pop(proposal_id, None)
                if pending is not None:
                    self._answers.append((pending, result))
        if committed:
            self._observe_newest(host)
            self._wake_change_waits(host)

    # ------------------------------------------------------------------ background work

    def has_background_work(self) -> bool:
        """Whether a snapshot is being built or restored (see `background`)."""
        return any(h.restore is not None or h.builds for h in self.hosts.values())

    def background_due(self) -> bool:
        return self._now >= self._next_background and self.has_background_work()

    def background(self, batch: EngineBatch) -> None:
        """One step of one snapshot build or restore (each in turn); the shell writes
        `batch` unsynced, then calls `answer(())`.

        Paced (one step per `snapshot_step_interval_s`) and one step per call however many
        groups are building or restoring, so the loop is never held for more than a step
        and its other work goes on in between.
        """
        self._next_background = self._now + self._txn.snapshot_step_interval_s
        jobs: list[tuple[GroupHost, int | None]] = []
        for host in self.hosts.values():
            if host.restore is not None:
                jobs.append((host, None))
            jobs.extend((host, peer) for peer in host.builds)
        if not jobs:
            return
        host, peer = jobs[self._background_turn % len(jobs)]
        self._background_turn += 1
        records, size = self._txn.snapshot_step_records, self._txn.snapshot_step_bytes
        if peer is None:
            self._step_restore(host, batch, records, size)
            return
        build, started = host.builds[peer]
        done = build.step(records, size)
        if done is not None:
            del host.builds[peer]
            self._send_snapshot(host, peer, done, started)

    def _step_restore(self, host: GroupHost, batch: EngineBatch, records: int, size: int) -> None:
        restore = host.restore
        assert restore is not None
        try:
            finished = restore.step(batch, records, size)
        except SnapshotCorrupt:
            self._abandon_restore(host, restore, batch)
            return
        if finished:
            host.restore = None
            self._observe_newest(host)
            self._wake_restored(host)
            host.replica.defer_election(self._now)
            committed, host.after_restore = host.after_restore, []
            self._apply_committed(host, committed, batch)

    def _observe_newest(self, host: GroupHost) -> None:
        """Rule 10 after the boot: what a data group learned from the others (slots applied
        while catching up, a snapshot restored) moves the clock, or a node restarted (or
        rebuilt) after the wall clock stepped back hands out timestamps below writes the
        cluster acknowledged. The group tracks its newest timestamp as it applies and
        restores (reading a restore's records from the engine mid-batch found an unfinished
        marker without its decision, simulator seed append:2pc:829)."""
        if isinstance(host.app, ShardStateMachine):
            self._hlc.observe(host.app.newest_timestamp)

    def _abandon_restore(self, host: GroupHost, restore: RestoreJob, batch: EngineBatch) -> None:
        """A snapshot's frames are bad (a sender's bug: the checksum passed), met before the
        group's data was touched (shard.snapshots): drop the staging and take the replica
        back to its durable state, as a restart would; the leader sends another snapshot."""
        self.snapshots_refused += 1
        restore.abandon(batch)
        host.restore = None
        host.after_restore = []
        host.replica = self._load_replica(host.group_id, host.app)
        # The new replica numbers its proposals and reads afresh: settle the old ones.
        for pending in host.proposals.values():
            self._reply_error(
                pending, _error(kv.OUTCOME_UNKNOWN, "the replica restarted under this write")
            )
        for pending in host.reads.values():
            self._reply_error(pending, _error(kv.UNAVAILABLE, "the replica restarted; retry"))
        host.proposals.clear()
        host.reads.clear()

    def _start_snapshot(self, host: GroupHost, peer: int) -> None:
        """A lagging peer needs a snapshot: build it, at once if it is small."""
        if peer in host.builds:
            return
        until, index = host.snapshot_cooldown.get(peer, (0.0, 0))
        if self._now < until and host.replica.peer_watermark(peer) < index:
            return
        build = host.app.snapshot_build()
        done = build.step(self._txn.snapshot_step_records, self._txn.snapshot_step_bytes)
        if done is None:
            host.builds[peer] = (build, self._now)
            self._next_background = min(
                self._next_background, self._now + self._txn.snapshot_step_interval_s
            )
        else:
            self._send_snapshot(host, peer, done, self._now)

    def _send_snapshot(
        self, host: GroupHost, peer: int, done: tuple[int, bytes], started: float
    ) -> None:
        index, data = done
        host.replica.send_snapshot(peer, index, data)
        if started < self._now:
            # The replica asks again every election timeout while the peer lags, and the
            # peer takes longer to restore than this node took to build: rebuilding each
            # time would keep this node busy with copies the peer will ignore. Once the
            # peer acknowledges the index it has it, and may need a newer one at once.
            until = self._now + max(SNAPSHOT_COOLDOWN_MIN_S, 4 * (self._now - started))
            host.snapshot_cooldown[peer] = (until, index)

    def defer_elections(self, now: float) -> None:
        """Start every follower's election timer afresh (the shell saw this node stalled)."""
        for host in self.hosts.values():
            if host.restore is None:
                host.replica.defer_election(now)

    def close(self) -> None:
        """Drop what holds the engine open (the point-in-time iterators of builds)."""
        for host in self.hosts.values():
            host.builds.clear()

    def answer(self, readies: Sequence[tuple[GroupHost, Ready]]) -> None:
        """After the apply batch is written: reply to clients and advance the replicas."""
        for host, ready in readies:
            for proposal_id, exc in ready.dropped:
                host.expired.pop(proposal_id, None)
                pending = host.proposals.pop(proposal_id, None)
                if pending is not None:
                    self._reply_error(pending, self._not_leader(exc))
            for proposal_id in ready.outcome_unknown:
                host.expired.pop(proposal_id, None)
                pending = host.proposals.pop(proposal_id, None)
                if pending is not None:
                    self._reply_error(
                        pending,
                        _error(kv.OUTCOME_UNKNOWN, "a snapshot replaced the slot of this write"),
                    )
            for read_id, exc in ready.dropped_reads:
                pending = host.reads.pop(read_id, None)
                if pending is not None:
                    self._reply_error(pending, self._not_leader(exc))
            for read in ready.reads:
                pending = host.reads.pop(read.read_id, None)
                if pending is None:
                    continue
                if getattr(pending.request, "snapshot", False):
                    if not read.via_lease:
                        self._reply_error(
                            pending,
                            _error(kv.UNAVAILABLE, "the leader has no lease yet; retry shortly"),
                        )
                        continue
                    self._parked.append((host, pending))
                elif not self._wait_for_locks(
                    host, pending, partial(self._start_read, host, pending)
                ):
                    self._serve(host, pending)
            for peer in ready.snapshot_requests:
                self._start_snapshot(host, peer)
            host.replica.advance(ready)
        self._serve_parked()
        self._flush_answers()

    def _flush_answers(self) -> None:
        answers, self._answers = self._answers, []
        for pending, result in answers:
            self._finish(pending, result)
        # After `_finish`, which releases the update locks of applied Prepares: the waiters
        # must see a freed lock before a newly arriving request can take it.
        self._wake_lock_waits()

    def _serve(self, host: GroupHost, pending: _Pending) -> None:
        """Serve a read now, or, once this wake's READ_BYTES_PER_WAKE is spent, in a later
        wake (reads keep their order: a linearizable read may be served any time after its
        read index, and a snapshot read's answer does not change)."""
        if self._read_bytes_left <= 0:
            self._read_backlog.append((host, pending))
            return
        result = serve_read(host, pending, self.shard_map.version)
        if isinstance(result, kv.Response):
            self._read_bytes_left -= result.ByteSize()
        self._answers.append((pending, result))

    def _finish(self, pending: _Pending, result: Any) -> None:
        if pending.kind == "internal":
            pending.reply(result)
            return
        self._end_request(pending)
        if isinstance(result, kv.Error):
            self._reply_error(pending, result)
            return
        if isinstance(result, kv.Response):
            self._reply_after_commit_wait(pending, result, _newest_version_read(pending, result))
            return
        response, visible_ts = _result_response(pending, result)
        if pending.kind in WRITE_KINDS:
            # A touch or a write may have ended a key's being due: its waiters go on now.
            host = self.hosts.get(pending.request.header.group_id)
            if host is not None:
                host.due.settle(host.shard, pending.request.key)
        if pending.kind == "prepare" and response.prepare.prepare_ts:
            op = pending.request
            response.prepare.vote_mac = vote_mac(  # rule 12
                self._proof_key,
                op.txn_id,
                op.header.group_id,
                response.prepare.prepare_ts,
                op.participants,
            )
        if _records_abort(pending.kind, response):
            # The abort is recorded here: at the coordinator group it arrives as this Decide
            # (its own part needs no Resolve), at a participant as a Prevent. A Prepare of
            # the transaction parked here, or a queued read for update of it, is refused now
            # (the waiters wake after the answers), not at the end of its wait, holding
            # locks an older transaction could not wound (found by review). Only if the
            # group holds an abort: a "not prepared" or "not committed" about another
            # participant list (participant rule V3, coordinator rule D6) records nothing,
            # and the group's own PREPARE of the txn must still answer its re-sent copies
            # (found by review).
            host = self.hosts.get(pending.request.header.group_id)
            if host is not None and _holds_abort(host, pending.request.txn_id):
                _note_abort(host, pending.request.txn_id, self._now)
                host.locks.release(pending.request.txn_id)
        if pending.kind == "decide" and response.decide.error.code == kv.OK:
            if response.decide.pending:
                host = self.hosts.get(pending.request.header.group_id)
                if host is not None:
                    self._duties.start_prevention(host, pending.request.txn_id)
                if not pending.request.recover:
                    # Its sender asked for a plain abort and may not know `pending` (it would
                    # read "not committed"): a retryable refusal makes it ask again instead.
                    self._reply_error(
                        pending,
                        _error(
                            kv.UNAVAILABLE,
                            "the coordinator is finding out whether every participant "
                            "prepared; retry",
                        ),
                    )
                    return
            else:
                self._deliver_fresh(pending.request)
        self._reply_after_commit_wait(pending, response, visible_ts)

    def _deliver_fresh(self, op: kv.DecideRequest) -> None:
        """Deliver a decision the moment it is applied, not a duty period later."""
        host = self.hosts.get(op.header.group_id)
        if host is None or host.replica.role is not Role.LEADER:
            return
        decision = host.shard.decision(op.txn_id)
        if decision is not None and not decision.finished:
            self._duties.deliver(host, decision)

    def _reply_after_commit_wait(
        self, pending: _Pending, response: kv.Response, visible_ts: int
    ) -> None:
        """Rule 1: hold the reply until every clock has passed the version it reports."""
        if visible_ts:
            self._hlc.observe(visible_ts)
            not_before_us = physical_us(visible_ts) + self._offset_us
            if self._wall_ns // 1000 <= not_before_us:
                self._delayed.append((not_before_us, pending, response))
                return
        pending.reply(response)

    def _release_delayed(self) -> None:
        if not self._delayed:
            return
        wall_us = self._wall_ns // 1000
        still = []
        for not_before_us, pending, response in self._delayed:
            if wall_us > not_before_us:
                pending.reply(response)
            else:
                still.append((not_before_us, pending, response))
        self._delayed = still

    def _refuse_snapshot_reads(self, host: GroupHost) -> None:
        """Rule 3: a replica that stopped leading no longer knows every write below a
        waiting snapshot read's timestamp (its own in-flight ones may still be chosen by
        the next leader), so it refuses them with the leader it knows."""
        error = self._not_leader(NotLeader(host.replica.leader_hint, "stopped leading"))
        for waits in (self._parked, self._clock_waits):
            for _, pending in [w for w in waits if w[0] is host]:
                self._reply_error(pending, error)
            waits[:] = [w for w in waits if w[0] is not host]

    def _unexpired(
        self, waits: list[tuple[GroupHost, _Pending]], now: float, why: str
    ) -> list[tuple[GroupHost, _Pending]]:
        """`waits` without the reads whose deadline passed, which are answered UNAVAILABLE."""
        still = []
        for host, pending in waits:
            if pending.deadline <= now:
                self._reply_error(pending, _error(kv.UNAVAILABLE, f"{why}; retry"))
            else:
                still.append((host, pending))
        return still

    def _release_clock_waits(self) -> None:
        """Rule 3: start the snapshot reads whose timestamp the wall clock has come near."""
        if not self._clock_waits:
            return
        waits, self._clock_waits = self._clock_waits, []
        for host, pending in waits:
            try:
                self._start_read(host, pending)
            except _Refusal as refusal:
                self._reply_error(pending, refusal.error)

    def _serve_parked(self) -> None:
        """Rule 3: serve the snapshot reads whose timestamp is now safe."""
        if not self._parked:
            return
        still = []
        for host, pending in self._parked:
            if snapshot_safe(host, pending):
                self._serve(host, pending)
            else:
                still.append((host, pending))
        self._parked = still

    def _reply_done(self, pending: _Pending) -> None:
        """Answer OK, with nothing more to say."""
        response = kv.Response(id=pending.request_id)
        getattr(response, pending.kind).SetInParent()
        pending.reply(response)

    def _reply_error(self, pending: _Pending, error: kv.Error) -> None:
        if pending.kind == "internal":
            pending.reply(None)
            return
        self._end_request(pending)
        response = kv.Response(id=pending.request_id)
        getattr(response, pending.kind).error.CopyFrom(error)
        pending.reply(response)

    def _end_request(self, pending: _Pending) -> None:
        """What a request frees at the leader once applied (or failed): a Prepare's or
        one-phase commit's update locks (rule U3), a Resolve's proven commit (rule 14)."""
        if pending.kind not in ("prepare", "commit_one_phase", "resolve"):
            return
        host = self.hosts.get(pending.request.header.group_id)
        if host is None:
            return
        if pending.kind == "resolve":
            host.proven.discard(pending.request.txn_id, pending)
        else:
            host.locks.release(pending.request.txn_id)
            _note_finished(host, pending.request.txn_id, self._now)

    def has_client_requests(self) -> bool:
        """True while some client request is not answered yet (used to drain on stop)."""
        if self._parked or self._delayed or self._lock_waits or self._read_backlog:
            return True
        for host in self.hosts.values():
            if host.reads or host.held_resolves:
                return True
            if any(p.kind != "internal" for p in host.proposals.values()):
                return True
        return False

    @staticmethod
    def refusal(request: kv.Request, code: kv.ErrorCode, message: str) -> kv.Response:
        """An error response of the right shape for `request`."""
        response = kv.Response(id=request.id)
        kind = request.WhichOneof("op")
        target = response.error if kind is None else getattr(response, kind).error
        target.CopyFrom(_error(code, message))
        return response

    # ------------------------------------------------------------------ status

    def status(self) -> kv.StatusResponse:
        shard_map = self.shard_map
        groups = []
        for group_id, host in sorted(self.hosts.items()):
            st = host.replica.status()
            group = kv.GroupStatus(
                group_id=group_id,
                replicas=shard_map.replicas(group_id),
                role=_role_shown(host, st),
                leader_id=st.leader_hint or 0,
                ballot=str(st.promised),
                chosen_index=st.chosen_watermark,
                applied_index=host.app.applied_index,
                lease_valid=host.replica.has_valid_lease(self._now),
            )
            if group_id != META_GROUP_ID:
                desc = shard_map.group(group_id)
                group.start = desc.start
                if desc.end is not None:
                    group.end = desc.end
            groups.append(group)
        return kv.StatusResponse(
            cluster_id=self.cluster_id,
            node_id=self.node_id,
            map_version=shard_map.version,
            groups=groups,
        )


def _role_shown(host: GroupHost, status: ReplicaStatus) -> str:
    """The replica's role for status pages, with the states that keep it from serving."""
    if host.restore is not None:
        return "restoring"  # a snapshot restored in steps: paused, its data the old state
    if status.rebuilding:
        return "rebuilding"  # its data was lost: no vote until Paxos rule 14 allows one
    return status.role.value


def _reads(items: Sequence[Any]) -> tuple[ReadItem, ...]:
    return tuple(ReadItem(key=r.key, version=r.version) for r in items)


def _ranges(items: Sequence[Any]) -> tuple[KeyRange, ...]:
    return tuple(KeyRange(start=r.start, end=r.end) for r in items)


def _writes(items: Sequence[Any]) -> tuple[WriteItem, ...]:
    return tuple(write_item(w) for w in items)


def _wire_decide(op: kv.DecideRequest) -> Decide:
    """Rule 11: a Decide from the wire is a recovery abort, whatever its `recover` says."""
    return Decide(
        txn_id=op.txn_id,
        participants=tuple(op.participants),
        commit=False,
        recover=True,
        asker_ts=asker_ts(op.txn_id, op.asker_ts),
    )


def asker_ts(txn_id: bytes, claimed: int) -> int:
    """Rule 13: the timestamp a recovery Decide or Prevent of `txn_id` is judged by."""
    return start_ts_of(txn_id) or claimed


def _encode_txn_at(record: Any, ts: int) -> bytes:
    return codec.encode_txn(record, ts)


def _check_ttl(ttl_ms: int) -> None:
    """A time to live the state machine takes (`shard.limits.validate_ttl`)."""
    try:
        validate_ttl(ttl_ms)
    except ShardError as exc:
        raise _Refusal(_error(kv.INVALID_ARGUMENT, str(exc))) from None


def _refuse_started_after(op: kv.PrepareRequest | kv.CommitOnePhaseRequest) -> None:
    """Rule 13: every record of the transaction is stamped at or above its id's start."""
    start = start_ts_of(op.txn_id)
    if start > op.ts:
        raise _Refusal(
            _error(
                kv.INVALID_ARGUMENT,
                f"the transaction's timestamp {op.ts} is below the start {start} its id "
                "carries: take the commit's timestamp from the clock that made the id",
            )
        )


def _records_abort(kind: str, response: kv.Response) -> bool:
    """Whether an applied Decide or Prevent answer may say this group recorded the
    transaction's abort (txn.coordinator, participant rule V1); the record tells (rules V3
    and D6 answer so without one)."""
    if kind == "decide":
        body = response.decide
        return body.error.code == kv.OK and not body.committed and not body.pending
    if kind == "prevent":
        body = response.prevent
        return body.error.code == kv.OK and not body.prepared and not body.unknown
    return False


def _holds_abort(host: GroupHost, txn_id: bytes) -> bool:
    """Whether `host`'s group holds a decision record of `txn_id` that says aborted."""
    decided = host.shard.decision(txn_id)
    return decided is not None and not decided.committed


def _note_abort(host: GroupHost, txn_id: bytes, now: float) -> None:
    """A Resolve(abort) of `txn_id` reached this leader (its later Prepare and reads for
    update are refused)."""
    host.aborted[txn_id] = now
    host.ends_noted += 1


def _note_finished(host: GroupHost, txn_id: bytes, now: float) -> None:
    """`txn_id` committed or is committing here (its later reads for update are refused)."""
    host.finished[txn_id] = now
    host.finished.move_to_end(txn_id)
    host.ends_noted += 1


def _wait_due_at(wait: _LockWait) -> float:
    """When a parked request decides again even if nothing is released: its wait's end, or
    its wound time."""
    return (
        wait.pending.wait_until
        if wait.wake_at is None
        else min(wait.pending.wait_until, wait.wake_at)
    )


def _ended_here(host: GroupHost, pending: _Pending) -> bool:
    """A Prepare whose transaction's abort (Resolve) already reached this leader, or a read
    for update whose transaction's abort or commit did."""
    if pending.kind == "get" and pending.request.lock_txn_id:
        txn_id = pending.request.lock_txn_id
        return txn_id in host.aborted or txn_id in host.finished
    return pending.kind == "prepare" and pending.request.txn_id in host.aborted


def _wait_age(wait: _LockWait) -> tuple[bool, int, bytes]:
    """The wake order of a parked request: reads for update first, by wound-wait age; the
    others (they take no lock, and a plain write must find a freed lock taken, rule U4)
    after them."""
    op = wait.pending.request
    if wait.pending.kind == "get" and op.lock_txn_id:
        return (False, op.lock_priority, op.lock_txn_id)
    return (True, 0, b"")


def _behind_update_lock(host: GroupHost, pending: _Pending) -> bool:
    """Rule U4 (shard.lock_wait): a single-key write to a key locked for update waits; a
    touch does not, as it passes read intents (participant rule W1): it keeps the value and
    version the holder read, so it cannot make the holder's commit abort (found by review:
    a lease's renewal parked behind its holder's own read for update of the lease key)."""
    if pending.kind == "cas" and pending.request.touch:
        return False
    return pending.kind in WRITE_KINDS and host.locks.holder(pending.request.key) is not None


def _releases(host: GroupHost) -> int:
    """How often intents or update locks were released in the group, a commit proven (rule
    14) or a key due for expiry deleted (rule 17) (waiters re-check)."""
    return host.shard.intent_releases + host.locks.releases + host.proven.added + host.due.changes


def _age(host: GroupHost, txn_id: bytes) -> tuple[int, bytes] | None:
    known = host.ages.get(txn_id)
    return None if known is None else known[0]
