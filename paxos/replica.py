"""One replica of a Multi-Paxos group: proposer, acceptor and learner, as a sans-I/O object.

Theory of operation
-------------------
The replica never reads a clock, sleeps, opens a socket or touches a disk. Its inputs are
`step(message)`, `tick(now)`, `propose(command)` and `read(read_id, now)`; its output is a
`Ready` batch (see `paxos.ready` for the order in which a driver must execute it), after which
the driver calls `advance(ready)`. Time is the monotonic `now` the driver passes in.

Rules
-----
1. Ballots are (round, node id). A campaign takes a round above every round this replica has
   seen and persists it as its own promise before any Prepare leaves (ballots are never
   reused, even across restarts).
2. An acceptor's promise and accepted votes are durable before its Promise/Accepted leaves:
   those replies are only ever placed in `Ready.messages_after_persist`.
3. Phase 1 runs once per leadership over every slot above the candidate's chosen watermark
   (Paxos Made Simple §3). For each slot the new leader re-proposes the value a promiser knows
   chosen, else the value accepted under the highest ballot, else a no-op.
4. In steady state only Phase 2 runs. A slot is chosen once a quorum of voters accepted it
   under the leader's ballot; the leader's own vote counts only after its persist
   (`advance`). The chosen watermark (every slot at or below it is chosen) rides on Accepts
   and Heartbeats; a follower marks a slot chosen only if it accepted it under the very ballot
   of the leader announcing the watermark, otherwise it asks for the chosen value (catch-up).
5. Chosen slots are applied once each, in slot order, through `Ready.committed`, at most
   `max_apply_bytes` of them per Ready (at least one slot). A read is answered in the Ready
   whose committed entries reach its index, never before.
6. Leases (Paxos Made Live §5.2, "master leases"): a follower that heard the leader at local
   time t refuses to promise any other proposer until t + lease_duration. The leader, having
   sent heartbeat round n at t_n and heard a quorum acknowledge it, holds a lease until
   t_n + d - lease_drift, d the shortest of its own lease_duration and the ones the acks of
   the quorum say (`HeartbeatAck.lease_promise_s`: nodes configured differently, as in a
   rolling change of the setting, must not let the leader's outlast the followers'). The
   follower's window starts after t_n and lasts at least as long, so two leases never
   overlap. The follower measures its window from the
   first tick after it heard the leader (while the driver steps messages, `now` is the last
   tick's, which may be older than the message). A restarted replica may have forgotten a
   lease promise, so it promises nobody (itself included) for lease_duration after its first
   tick, and nobody at all before that tick; for longer when an earlier life promised longer
   leases: each replica records, durably and before its first ack, the longest lease it or
   an earlier life may have promised (`DurableState.lease_promise_s`), and lowers the record
   to its own once the block has passed. A heartbeat also says how long the leader's lease
   may still run (`Heartbeat.lease_remaining_s`: with the drift margin, and counting rounds
   sent but not yet confirmed), and a follower promises nobody else for at least that long
   after hearing it, and records it like its own until it has run out: a replica rebuilt
   on a new disk (rule 14), which has no record, learns it from the leader it must hear
   before it votes again, and keeps it across a restart.
7. Linearizable reads are answered as "may be served at index X" (`Ready.reads`): at once
   under a valid lease, otherwise after one heartbeat round confirms the leadership
   (read-index). X covers every slot the leader recovered in Phase 1.
8. A leader that has not heard from a quorum within the maximum election timeout steps down
   (check-quorum), so a partitioned leader stops accepting proposals it cannot get chosen.
9. Leadership transfer (to spread leaders over nodes): the leader first gives up its lease,
   then names the target in its heartbeats; followers may promise that target at once, and
   the target campaigns as soon as it is caught up (a target heard within the election
   timeout and within one catch-up reply of the leader may be chosen; it catches up
   first). A heartbeat that names no target revokes the permission before it is
   acknowledged, so a resumed lease never overlaps the target's; a heartbeat older than the
   newest round seen from that leader grants nothing (a delayed round of an abandoned
   transfer would otherwise reopen it under the resumed lease), and a restarted replica,
   which forgot that round, grants nothing before its restart block (rule 6) ends, nor
   campaigns as the target before then (found by review: a target restarted with the
   transfer abandoned took a delayed handoff round as fresh and was elected by a follower
   that still granted the transfer, while the old leader's lease, renewed by the target's
   own acks before its restart, still served reads). A
   candidate refused by a follower's lease gives up only once too few voters are left to
   make a quorum: a follower that missed the handoff does not sink a transfer that the old
   leader and the others grant.
10. A proposal is either chosen (reported with its id in `committed`), or reported in
   `dropped` with a NotLeader error once it certainly cannot be chosen, or reported in
   `outcome_unknown` when a snapshot covered its slot.
11. Snapshots and compaction never outrun the application state on disk. The driver writes
   application state unsynced, after the persist of the same Ready; the next synced persist
   makes it durable (one ordered log, as RocksDB's WAL). So the log below a slot is
   truncated only by a Ready returned after the Ready that applied or restored that slot;
   the Ready carrying a snapshot persists nothing that depends on it (no other message is
   handled until it is out); and a restart that finds the application ahead of the chosen
   watermark (the restore survived, the truncation did not) finishes the install.
   A leader asked for a snapshot by a follower keeps its log from I + 1, I the index the
   snapshot is built at (the applied index at the request until the snapshot is sent), or
   from the follower's acknowledged watermark + 1 once higher, until the follower has
   installed it and compaction would keep what it needs anyway; for at most
   `snapshot_hold_s`, while the log stays under twice `compact_threshold_bytes`, and not once
   the log was compacted past it (CockroachDB's snapshot log truncation constraint):
   compacting past I while the snapshot was built, sent and restored made the follower need
   another one, round after round, under sustained writes.
12. A leader nacked by a replica that promised a higher ballot and names no other leader,
   while the leader's lease holds, campaigns again at once with a higher ballot (it is the
   one candidate the followers' lease promises let through) instead of stepping down for an
   election timeout: a replica rejoining after a partition no longer costs every group it
   hosts an election.
13. Pre-vote (`pre_vote`; the Raft thesis §9.6): a follower or candidate whose election
   timer ran out first asks its peers whether they would promise it now, persisting nothing
   and raising no round; a peer says yes when its lease promise (rule 6) would not refuse
   the asker's Prepare (a leader says no unless the asker is its transfer target). Only a
   quorum of yeses (its own included) to the same pre-vote starts the campaign of rule 1;
   a pre-vote ends when its asker hears a leader, becomes one, campaigns, or starts the
   next. So a replica that cannot reach a quorum, or whose peers still hear a leader,
   keeps its round, and rule 12 is left for the races pre-vote cannot see. A leadership
   transfer's target (rule 9) and rule 12's leader campaign at once: their peers'
   promises are known. A leader never campaigns without first stepping down (its queued
   proposals and reads are dropped with NotLeader).
14. Rebuilding (Paxos Made Live §5.1): a replica whose durable state was lost (a replaced
   disk) starts with `DurableState.rebuilding` set and casts no vote of any kind — no
   Promise, no Accepted, no pre-vote yes, no campaign — while it stores Accepts and learns
   chosen slots as any follower does. It may have promised a ballot and accepted values
   it no longer remembers, so it votes again only once both are covered:
   (a) the floor: it asks every other replica for its promise (a PreVote; the reply's
   ballot) and waits until all of them that are not rebuilding themselves answered. Every
   ballot it ever promised was first promised durably by its own proposer (rule 1), one of
   those replicas, so the floor is at least every promise it forgot;
   (b) the target: the `next_slot` of a heartbeat from a leader whose ballot is at least
   the floor. That leader finished Phase 1 at a ballot at least every forgotten vote's, so
   every slot its Phase 1 or its own proposals could have found chosen with a forgotten
   vote is below `next_slot`;
   (c) its chosen watermark reaches target - 1, durably (not while a snapshot install is
   still being persisted).
   It then raises its promise to the floor and persists `rebuilding = False`, and votes
   as any replica. Leaders learn from heartbeat acks which followers are rebuilding: such
   a follower is never a thrifty Accept target nor a leadership transfer's. Its heartbeat
   acks count for no lease, read-index round or check-quorum: it promises nobody now, but
   its forgotten promise may have helped elect a higher ballot whose chosen slots this
   leader does not know (a deposed leader confirmed by it would serve stale reads).
15. Numbers from peers are bounded before they count (found by review). A message whose
   ballot round is above MAX_ROUND is dropped: its round became the replica's next
   campaign's minus one, and a round of 2**64 - 1 made that campaign's Prepare
   unencodable, which stopped the node; a Nack's reported promise above it counts for
   nothing either (found by a later review). So is one more than MAX_ROUND_STEP (2**32)
   above every round the replica holds (found by a fuzzer: one Prepare at MAX_ROUND left
   every campaign at a round the peers drop, and the group without a leader for good, a
   restart included, as the promise is durable); a peer that holds the secret can still
   run rounds up, but by 2**32 a message, not to the end at once. An acceptor stores no Accept entry more than
   MAX_SLOTS_AHEAD above its chosen watermark (nor votes for it), and a candidate drops a
   Promise showing a slot that far above its first slot: Phase 1 proposes every slot up to
   the highest one promised, so one made-up slot near 2**63 meant a Phase 1 without end.
   Dropping a vote is always safe; a follower that far behind learns the chosen slots by
   catch-up first, and a candidate that far behind loses to a replica that is not.
16. A Promise carries at most `max_batch_bytes` of chosen slots (found by review). Above
   that the promiser leaves every chosen slot out and sets `chosen_omitted`, and the
   candidate stands down and catches up from it (bounded replies), as when the promiser
   compacted those slots; it campaigns again once its timer runs out, or an up-to-date
   replica wins first. Before, a candidate that had been away while the group wrote up to
   its compaction threshold (64 MiB) was promised more than a peer message may carry, and
   its campaign could never finish. The unchosen slots a promise must carry (votes the
   candidate needs) are not bounded by this rule, but cut by rule 18.
17. A leader's own slots in flight (proposed, not known chosen) hold at most
   `max_inflight_bytes` of commands, and one slot more (found next to rule 16): it opens no
   new slot past that, as past `pipeline_window` slots. All of them may have to travel at
   once: an Accept re-sent to a follower that has not voted (cut into messages since, rule
   18), and a follower's votes in the next election's promise. Counted in slots alone, a
   window of 32 slots of 4 MiB made messages of 128 MiB, which a peer link (64 MiB) never
   delivers, so the follower never voted and a new leader never finished Phase 1. A slot
   in flight is always allowed, so the bound delays proposals but never stops them.
18. A promise carries at most `max_promise_bytes` of votes, counted as encoded: past it
   the acceptor cuts it after the last vote that fits (at least one goes) and names the
   first slot left out in `more_from`; the candidate merges the part and asks for the rest
   with a Prepare of the same ballot from that slot (again every two heartbeat intervals
   until it comes), and counts the acceptor for its quorum once the last part has come
   (Phase 1 in chunks). Safe because the acceptor holds the ballot between the parts: it
   takes no vote of a lower ballot, none of this ballot before the candidate leads, and it
   answers a part asked under a ballot it no longer holds with a Nack. What else may
   change between parts is marked: slots it learns chosen (catch-up stores them under the
   replier's ballot, which may be higher) go marked chosen and win (rule 3), and slots it
   compacts or replaces by a snapshot raise its `log_start` past the part's first slot,
   which makes the candidate stand down. So the highest vote per slot over the parts is
   the one Paxos requires, and parts of promises still coming may count too (a superset of
   a quorum's promises). Live because a Phase 1 in parts getting on is not cut short: each
   part that comes resets the candidate's election timer, each ask for a further part (not
   a copy of an earlier ask) the acceptor's; and for the shortest election timeout after
   either, that candidate and that acceptor refuse the pre-votes of every other replica
   (rule 13; a role change, a leader heard or a higher promise ends that at once),
   so a replica that promised at once and is not asked any more cannot take over (found
   by review: five replicas, two dead, the two with nothing to report cut each other's
   Phase 1 short in turn while the one with twenty parts to send, whose timer every ask
   reset, never campaigned). A candidate that stops asking loses all of that within an
   election timeout; one whose part was dropped (rule 15) does not ask for it again, and
   one whose timer runs out asks no more at that ballot.
   Usually a promise's votes are what leaders keep in flight (rule 17), but a follower
   whose learning stalled (a slot it missed stops rule 4 at the gap, and catch-up is
   paced) goes on voting under heavy writes, and its promise could grow past the 64 MiB a
   peer message carries: the receiving node refused it, which failed the link and dropped
   every group's messages queued on it, again at each re-sent Prepare (found by review).
   Before the cut, such an acceptor promised nothing, which left a group leaderless when
   every acceptor a quorum needs was past the bound (two followers each stalled at a
   different gap, their leader dead). For the same reason a leader cuts its Accepts into
   messages of at most `max_batch_bytes` of values each, counted as encoded: a new
   leader's first Accept re-proposes every slot a quorum's promises showed, and its
   re-sends every slot a follower has not voted for.
19. Retiring (a planned stop, as etcd's leadership transfer on shutdown): a replica whose
   node is about to stop is told `retire()`. From then on it never campaigns (no election
   timer, no pre-vote, no transfer target, no rule 12), so it takes no leadership it would
   lose again at once; it still votes, so the group keeps its quorum until it is gone. Its
   heartbeat acks say so, and a leader then never hands it leadership (a transfer already
   aimed at it ends at that ack, as at its timeout) nor prefers it for thrifty Accepts over
   a peer that answers: without that, another node spreading leaders (a driver's rebalancing)
   would name it as a transfer target again and again, each try holding that group's
   proposals back until the transfer timed out. The driver hands the retiring replica's
   leadership to a peer (rule 9) before the node stops. A campaign already out when it
   retired may still win (and is then handed on); once its election timeout runs out
   unwon, the replica gives it up and is a follower, so the stop waits no longer for it.
"""

from __future__ import annotations

import enum
import itertools
import random
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field

from paxos.ballot import ZERO_BALLOT, Ballot
from paxos.config import (
    COMMAND_FRAMING_BYTES,
    MAX_LEASE_S,
    MAX_PIPELINE_WINDOW,
    VOTE_FRAMING_BYTES,
    ReplicaConfig,
)
from paxos.errors import InvariantViolation, NotLeader, ProposalTooLarge
from paxos.messages import (
    NOOP,
    Accept,
    Accepted,
    AcceptedEntry,
    CatchUpReply,
    CatchUpRequest,
    Heartbeat,
    HeartbeatAck,
    InstallSnapshot,
    Message,
    Nack,
    Prepare,
    PreVote,
    PreVoteReply,
    Promise,
    SlotValue,
    Value,
)
from paxos.ready import CommittedEntry, PersistBatch, ReadState, Ready, SnapshotToInstall
from paxos.storage import DurableState

MAX_ROUND = 1 << 62
"""Rule 15: the highest ballot round a peer may show (no group holds that many elections;
its campaign's round + 1 stays a uint64)."""
MAX_ROUND_STEP = 1 << 32
"""Rule 15: how far above every round a replica holds a peer's round may be (no group holds
that many elections, so a rebuilt replica, which holds none, still takes every real one)."""

MAX_SLOTS_AHEAD = 1 << 18
"""Rule 15: how far above a replica's chosen watermark a vote may lie. A follower further
behind than this (minutes of a busy group's slots) catches up before it votes again."""


class Role(enum.Enum):
    FOLLOWER = "follower"
    CANDIDATE = "candidate"
    LEADER = "leader"


@dataclass(slots=True)
class _RoundAcks:
    """The followers that acknowledged a heartbeat round, and the shortest lease promise
    among them: the round's lease lasts no longer (rule 6)."""

    peers: set[int] = field(default_factory=set)
    promise_s: float = float("inf")


@dataclass(frozen=True, slots=True, kw_only=True)
class ReplicaStatus:
    """A read-only view for status pages and tests."""

    node_id: int
    role: Role
    promised: Ballot
    leader_hint: int | None
    chosen_watermark: int
    applied_index: int
    log_start: int
    next_slot: int
    lease_until: float
    rebuilding: bool = False
    #: Promise parts of cut promises (rule 18) the Phase 1 that made this replica leader
    #: took; 0 when no promise was cut (or it is not leading).
    phase1_parts: int = 0


class Replica:
    """A Multi-Paxos replica. Not thread-safe; drive it from one loop."""

    def __init__(
        self,
        config: ReplicaConfig,
        state: DurableState,
        applied_index: int,
        rng: random.Random,
    ) -> None:
        config.validate()
        if applied_index < state.log_start - 1:
            raise InvariantViolation(
                f"application applied index {applied_index} is below the compacted log "
                f"(log starts at slot {state.log_start}); the application state was lost"
            )
        self.config = config
        self.id = config.node_id
        self._peers = tuple(p for p in config.voters if p != config.node_id)
        self._quorum = config.quorum
        self._rng = rng

        # Durable state, mirrored in memory.
        self._promised = state.promised
        self._log: dict[int, tuple[Ballot, Value]] = dict(state.accepted)
        self._log_bytes = sum(_value_bytes(value) for _, value in self._log.values())
        self._chosen_watermark = state.chosen_watermark
        self._log_start = state.log_start
        self._applied = applied_index
        # What the driver has been asked to apply by Readys already returned: the only slots
        # whose application writes precede the next persist, so the only ones compaction may
        # drop (rule 11).
        self._applied_returned = applied_index
        self._deferred_persist: PersistBatch | None = None
        if applied_index > state.chosen_watermark:
            # Rule 11: a snapshot restore reached the disk but the truncation that follows it
            # did not. The application state is a snapshot at `applied_index`; the votes we
            # hold at or below it may be stale (never chosen) and must not be reported as
            # chosen by a Promise, so finish the install: drop them and move the log start.
            for slot in [s for s in self._log if s <= applied_index]:
                self._log_bytes -= _value_bytes(self._log.pop(slot)[1])
            self._chosen_watermark = applied_index
            self._log_start = applied_index + 1
            self._deferred_persist = PersistBatch(
                chosen_watermark=applied_index, log_start=applied_index + 1
            )

        self._role = Role.FOLLOWER
        self._leader_hint: int | None = None
        self._ballot = state.promised
        self._max_seen_round = state.promised.round

        self._now = 0.0
        self._started = False
        self._election_deadline = 0.0
        self._lease_block_until = 0.0
        # Rule 6's block after a restart: until then a handoff permission (rule 9) may come
        # from a heartbeat older than one acknowledged in the life before, which we forgot.
        self._restart_block_until = 0.0
        self._catchup_retry_at = 0.0
        self._snapshot_sent_at: dict[int, float] = {}
        # Per follower: (index, since) of the snapshot it asked for (rule 11's hold).
        self._snapshot_holds: dict[int, tuple[int, float]] = {}

        # Pre-vote state (rule 13): the yeses of pre-vote `_pre_vote_seq`, empty when none
        # is under way. The seq is not persisted: a yes to a pre-vote of this replica's
        # previous life may count, which costs at most an early campaign.
        self._pre_vote_seq = 0
        self._pre_votes: set[int] = set()
        # Candidate state: the replicas whose whole promise arrived (this one included), the
        # next slot asked of those whose promise came cut (rule 18), and the best vote per
        # slot of every promise part so far.
        self._promised_by: set[int] = set()
        self._promise_next: dict[int, int] = {}
        self._part_ask_again_at: dict[int, float] = {}
        self._phase1_best: dict[int, AcceptedEntry] = {}
        # Parts of cut promises merged in this Phase 1, and in the one that made us leader.
        self._phase1_parts = 0
        self._won_with_parts = 0
        # Acceptor state: the furthest slot a candidate asked a promise part from at the
        # ballot promised (rule 18), so that only an ask that moves on counts as progress.
        self._part_asked_from = 0
        # Rule 18: until then, pre-votes of replicas other than `_parts_candidate` are
        # refused (a Phase 1 in parts is getting on: this replica is its candidate, or an
        # acceptor it asks for parts).
        self._parts_block_until = 0.0
        self._parts_candidate = 0
        self._lease_refusals: set[int] = set()
        self._from_slot = 0

        # Leader state.
        self._next_slot = max(self._log, default=self._chosen_watermark) + 1
        self._votes: dict[int, set[int]] = {}
        self._chosen_above: set[int] = set()
        self._sent_at: dict[int, float] = {}
        self._recovered_until = 0
        # Queued commands: `_queue[_queue_pos:]`, oldest first. Their proposal ids are
        # consecutive and end just below `_next_proposal_id` (the queue is FIFO and only ever
        # cleared whole), so they are not stored; batches are cut with list slices.
        self._queue: list[bytes] = []
        self._queue_pos = 0
        self._last_ack: dict[int, float] = {}
        self._hb_seq = 0
        self._hb_sent: dict[int, float] = {}
        self._hb_acks: dict[int, _RoundAcks] = {}
        self._confirmed_seq = 0
        self._lease_until = 0.0
        self._read_round_wanted = False
        self._pending_reads: list[tuple[int, int, int]] = []  # (read_id, index, seq needed)
        # Reads confirmed at an index the application has not reached yet (rule 5).
        self._reads_after_apply: list[ReadState] = []
        self._peer_watermark: dict[int, int] = {}
        self._handoff_target: int | None = None
        self._handoff_deadline = 0.0
        # Rounds that carried a handoff never renew the lease, even if acknowledged late.
        self._hb_handoff_rounds: set[int] = set()
        # Follower side: the replica our leader is handing over to (rule 9), and the newest
        # heartbeat round followed, so a reordered older round cannot grant it again.
        self._handoff_allowed: int | None = None
        # As a transfer's target: the leader's watermark to catch up to before campaigning,
        # and the ballot of the leader that asked (a newer promise voids the request).
        self._handoff_watermark = 0
        self._handoff_ballot = ZERO_BALLOT
        self._newest_heartbeat: tuple[Ballot, int] = (ZERO_BALLOT, 0)
        # Leader side: the newest round's messages, for `repeat_heartbeats`.
        self._last_round: list[Heartbeat] = []

        # Proposals this replica placed in slots, by slot: (value, proposal ids).
        self._proposed: dict[int, tuple[Value, tuple[int, ...]]] = {}
        # Leader side, rule 17: the bytes of its own slots not known chosen, oldest first.
        self._inflight: deque[tuple[int, int]] = deque()
        self._inflight_bytes = 0
        self._next_proposal_id = 1
        # Set by an InstallSnapshot: its truncation, held back until the next Ready (rule 11).
        self._install_persist: PersistBatch | None = None
        self._installing = False
        # A follower's lease promise must be measured from a fresh `now` (rule 6), and so
        # must the longest lease a leader said it still held (`Heartbeat.lease_remaining_s`).
        self._lease_refresh = False
        self._heard_lease_s = 0.0
        # Until when the longest lease a leader said it held runs (its record stays till then).
        self._heard_lease_until = float("-inf")
        self._out = Ready()
        # Rule 6: the longest lease this life or an earlier one may have promised, as
        # recorded: raised with the first heartbeat ack that promises a longer one (acks
        # wait for the persist), so a restart under a shorter lease still waits out an
        # earlier life's longer promises.
        self._recorded_lease_s = state.lease_promise_s
        self._outcome_unknown: list[int] = []

        # Rule 14. Rebuilding side: the peers' promises reported so far, the floor once every
        # peer reported, the slot to learn up to, and the first pre-vote seq of this life
        # (random and high, so that no reply to a pre-vote of a life before the data was
        # lost, which may be older than the peer's newest promise, can count).
        self._rebuilding = state.rebuilding
        self._floor_reports: dict[int, Ballot] = {}
        self._floor: Ballot | None = None
        self._rebuild_target = 0
        self._floor_ask_at = 0.0
        if self._rebuilding:
            self._pre_vote_seq = (1 << 40) + self._rng.getrandbits(40)
        self._floor_first_seq = self._pre_vote_seq + 1
        # Leader side: the followers whose last heartbeat ack said they are rebuilding.
        self._rebuilding_peers: set[int] = set()
        # When a leader was last heard (a follower's `hears_leader`).
        self._leader_heard_at = float("-inf")
        # Rule 19: this replica's node is stopping; the peers whose acks said theirs is.
        self._retiring = False
        self._retiring_peers: set[int] = set()

    # ------------------------------------------------------------------ inputs

    def observe_time(self, now: float) -> None:
        """Move the clock forward without firing timers.

        A driver that was stalled calls this, then delivers the messages that queued up
        meanwhile, then ticks: so a leader does not step down, nor a follower campaign, on
        stale information while the heartbeats that prove otherwise wait in its inbox, and
        every message is still handled at the current time (lease promises count from it).
        """
        if self._started:
            self._now = max(self._now, now)

    def tick(self, now: float) -> None:
        """Advance time: elections, heartbeats, lease and retransmission timers."""
        self._now = now
        if not self._started:
            self._started = True
            # Rule 6: we may have promised a lease before a restart and forgotten it.
            self._lease_block_until = now + max(
                self.config.lease_duration_s, self._recorded_lease_s
            )
            self._restart_block_until = self._lease_block_until
            self._reset_election_deadline()
        if self._lease_refresh:
            # Rule 6: the leader was heard at some time after the previous tick; this `now` is
            # not earlier than that, so the promise measured from it covers the leader's lease.
            self._lease_refresh = False
            self._lease_block_until = max(
                self._lease_block_until,
                now + max(self.config.lease_duration_s, self._heard_lease_s),
            )
            self._heard_lease_until = max(self._heard_lease_until, now + self._heard_lease_s)
            self._heard_lease_s = 0.0
        if (
            self._recorded_lease_s > self.config.lease_duration_s
            and self._past_restart_block()
            and now >= self._heard_lease_until + self.config.election_timeout_max_s
        ):
            # The earlier lives' longer promises and the leases heard have run out: only
            # ours remain. Not at once after a heard lease ran out (found by review: a
            # leader's lease that ran out between its heartbeats was raised and lowered,
            # each a synced write, at every heartbeat): a leader that still leads is heard
            # again within an election timeout.
            self._record_lease(self.config.lease_duration_s)
        if self._rebuilding and self._floor is None and now >= self._floor_ask_at:
            self._ask_floor()
        if self._role is Role.LEADER:
            if not self._has_quorum_contact():
                self._become_follower(None)
                return
            if self._handoff_target is not None and now >= self._handoff_deadline:
                self._handoff_target = None
            if now >= self._next_heartbeat_at:
                self._heartbeat_round()
        elif now < max(self._election_deadline, self._lease_block_until):
            if self._role is Role.CANDIDATE:
                self._ask_parts_again()
        else:
            if self._retiring and self._role is Role.CANDIDATE:
                # Rule 19: a campaign sent before the retirement had its time; given up, it
                # leaves the node's stop nothing to wait for (it waited its whole budget).
                self._become_follower(None)
            elif self._rebuilding or self._retiring:
                self._reset_election_deadline()  # rules 14 and 19: no campaign
            elif self.config.pre_vote:
                self._pre_campaign()
            else:
                self._campaign()

    def sending_heartbeats(self) -> bool:
        """Whether the next Ready sends a heartbeat round or acks to one (a driver
        coalesces the rounds of its other groups with them).

        Not any message: under writes a leader sends Accepts and its followers Accepted at
        every cycle, and rounds coalesced with those came at twice the heartbeat rate,
        each a message to every peer and an ack back (measured: 15 % more node CPU per
        sequential put).
        """
        out = self._out
        return any(
            isinstance(m, (Heartbeat, HeartbeatAck))
            for m in itertools.chain(out.messages, out.messages_after_persist)
        )

    def heartbeat_early(self) -> bool:
        """As leader, send the next heartbeat round now if half an interval has passed since
        the last one; True if it did.

        A driver calls it when it writes heartbeat traffic to the peers anyway (an ack,
        another group's round), so that one write carries the rounds of every group it
        leads. An early round only makes the followers' timers and the lease fresher: the
        interval stays the longest gap between rounds, the lease still runs from a round's
        send time, and `tick` has just applied check-quorum at this time.
        """
        if self._role is not Role.LEADER:
            return False
        if self._now < self._next_heartbeat_at - self.config.heartbeat_interval_s / 2:
            return False
        self._heartbeat_round()
        return True

    def next_deadline(self) -> float:
        """When `tick` next has something to do if no message comes first: the next
        heartbeat (or the end of a leadership handoff) for a leader, else the time it may
        campaign. A shell that ticks at this time, and whenever messages arrive, runs
        every timer on time without ticking in between."""
        if self._role is Role.LEADER:
            due = self._next_heartbeat_at
            if self._handoff_target is not None:
                due = min(due, self._handoff_deadline)
            return due
        if not self._started:
            return self._now
        due = max(self._election_deadline, self._lease_block_until)
        if self._rebuilding and self._floor is None:
            due = min(due, self._floor_ask_at)
        if self._role is Role.CANDIDATE and self._part_ask_again_at:
            due = min(due, *self._part_ask_again_at.values())
        return due

    def _highest_round_taken(self) -> int:
        """Rule 15: the highest ballot round a peer's message may show to count."""
        held = max(self._max_seen_round, self._promised.round)
        return min(MAX_ROUND, held + MAX_ROUND_STEP)

    def step(self, msg: Message) -> None:
        """Handle one message from a peer. Stale or foreign messages are ignored or refused."""
        if msg.dst != self.id or msg.src not in self._peers:
            return
        if self._installing:
            # Rule 11: nothing else may change the durable state in the Ready that carries a
            # snapshot (a later watermark would outrun both the old log and the restore if
            # the restore were lost). Dropping a message is always allowed.
            return
        if msg.ballot.round > self._highest_round_taken():  # rule 15
            return
        self._max_seen_round = max(self._max_seen_round, msg.ballot.round)
        match msg:
            case PreVote():
                self._handle_pre_vote(msg)
            case PreVoteReply():
                self._handle_pre_vote_reply(msg)
            case Prepare():
                self._handle_prepare(msg)
            case Promise():
                self._handle_promise(msg)
            case Nack():
                self._handle_nack(msg)
            case Accept():
                self._handle_accept(msg)
            case Accepted():
                self._handle_accepted(msg)
            case Heartbeat():
                self._handle_heartbeat(msg)
            case HeartbeatAck():
                self._handle_heartbeat_ack(msg)
            case CatchUpRequest():
                self._handle_catchup_request(msg)
            case CatchUpReply():
                self._handle_catchup_reply(msg)
            case InstallSnapshot():
                self._handle_install_snapshot(msg)
        if self._rebuilding:
            self._maybe_finish_rebuild()

    def propose(self, command: bytes) -> int:
        """Queue a command for the next slot; returns its proposal id.

        Raises:
            NotLeader: this replica is not the leader (nothing was queued).
            ProposalTooLarge: the command alone exceeds max_batch_bytes.
        """
        if self._role is not Role.LEADER:
            raise NotLeader(self._leader_hint)
        if self._handoff_target is not None:
            raise NotLeader(self._handoff_target, "leadership is being transferred")
        if len(command) > self.config.max_batch_bytes:
            raise ProposalTooLarge(
                f"command of {len(command)} bytes exceeds max_batch_bytes "
                f"{self.config.max_batch_bytes}"
            )
        proposal_id = self._next_proposal_id
        self._next_proposal_id = proposal_id + 1
        self._queue.append(command)
        return proposal_id

    def read(self, read_id: int, now: float) -> None:
        """Ask for a linearizable read; answered in `Ready.reads` (rule 7).

        Raises:
            NotLeader: this replica is not the leader.
        """
        if self._role is not Role.LEADER:
            raise NotLeader(self._leader_hint)
        index = max(self._chosen_watermark, self._recovered_until)
        if now < self._lease_until and self._chosen_watermark >= self._recovered_until:
            self._out.reads.append(ReadState(read_id=read_id, index=index, via_lease=True))
            return
        self._pending_reads.append((read_id, index, self._hb_seq + 1))
        self._read_round_wanted = True

    def transfer_leadership(self, target: int) -> bool:
        """Hand leadership to `target` (rule 9); False if not started: the target must have
        acknowledged this leader within the election timeout and be within one catch-up
        reply of it, from the log (it catches up first, while proposals are held back).

        The lease is given up at once; proposals are refused with a NotLeader naming the
        target until it takes over or the attempt times out (election_timeout_max_s).
        """
        if (
            self._role is not Role.LEADER
            or target not in self._peers
            or target in self._rebuilding_peers
            or target in self._retiring_peers  # rule 19
            or self._handoff_target is not None
            # Acknowledged this leader, lately: a stopped target's old acknowledgement must
            # not make each retry of the driver hold proposals back for a handoff that
            # cannot end.
            or target not in self._peer_watermark
            or self._now - self._last_ack.get(target, float("-inf"))
            > self.config.election_timeout_min_s
            # Within one catch-up reply of us, from our log (no snapshot needed): under a
            # stream of writes its acknowledged watermark always trails ours a little, and
            # it catches up while the handoff holds new proposals back.
            or self._peer_watermark[target]
            < max(self._chosen_watermark - self.config.catchup_max_slots, self._log_start - 1)
        ):
            return False
        self._handoff_target = target
        self._handoff_deadline = self._now + self.config.election_timeout_max_s
        self._lease_until = 0.0
        self._broadcast_heartbeat()
        return True

    def retire(self) -> None:
        """Rule 19: campaign no more (this replica's node is about to stop), and say so to
        the leader; as leader, the driver hands leadership on with `transfer_leadership`.
        A campaign already sent its Prepares and may still win: the driver hands that
        leadership on too."""
        self._retiring = True
        self._pre_votes.clear()

    @property
    def handoff_target(self) -> int | None:
        """The peer this leader is handing leadership to (rule 9), if a transfer is on."""
        return self._handoff_target if self._role is Role.LEADER else None

    def send_snapshot(self, peer: int, index: int, data: bytes) -> None:
        """Answer a `Ready.snapshot_requests` entry with the application state at `index`."""
        self._snapshot_holds[peer] = (index, self._now)
        self._out.messages.append(
            InstallSnapshot(src=self.id, dst=peer, ballot=self._promised, index=index, data=data)
        )

    # ------------------------------------------------------------------ outputs

    def has_ready(self) -> bool:
        return (
            not self._out.is_empty()
            or self._applied < self._chosen_watermark
            or bool(self._reads_after_apply)
            or self._can_flush()
            or self._read_round_wanted
            or self._deferred_persist is not None
            or bool(self._outcome_unknown)
            or self._has_releasable_read()
        )

    def _has_releasable_read(self) -> bool:
        """A read-index read a heartbeat ack just confirmed (`_release_reads` serves it)."""
        return any(
            seq <= self._confirmed_seq and index <= self._chosen_watermark
            for _, index, seq in self._pending_reads
        )

    def _can_flush(self) -> bool:
        # Queued commands only make a Ready once the pipeline window has room; reporting them
        # while it is full would make a driver that loops on has_ready() spin forever.
        return (
            self._role is Role.LEADER
            and len(self._queue) > self._queue_pos
            and self._window_has_room()
        )

    def _window_has_room(self) -> bool:
        """Whether a leader may open a new slot: within `pipeline_window` slots in flight
        and `max_inflight_bytes` of its own (rule 17)."""
        inflight = self._inflight
        while inflight and inflight[0][0] <= self._chosen_watermark:
            self._inflight_bytes -= inflight.popleft()[1]
        return (
            self._next_slot - 1 - self._chosen_watermark < self.config.pipeline_window
            and self._inflight_bytes < self.config.max_inflight_bytes
        )

    def _forget_inflight(self) -> None:
        self._inflight.clear()
        self._inflight_bytes = 0

    def ready(self) -> Ready:
        """Collect everything to persist, send, apply and answer since the last call."""
        if self._deferred_persist is not None:
            # A truncation held back from an earlier Ready, whose restore is written by now.
            self._merge_persist(self._deferred_persist)
            self._deferred_persist = None
        self._flush_proposals()
        if self._read_round_wanted and self._role is Role.LEADER:
            self._broadcast_heartbeat()
        self._read_round_wanted = False
        self._collect_committed()
        self._release_reads()
        self._hold_reads_until_applied()
        self._maybe_compact(self._applied_returned)
        out, self._out = self._out, Ready()
        out.outcome_unknown, self._outcome_unknown = self._outcome_unknown, []
        # Rule 11: this Ready carries the snapshot; its truncation goes out with the next one.
        self._deferred_persist, self._install_persist = self._install_persist, None
        self._installing = False
        self._applied_returned = self._applied
        return out

    def advance(self, ready: Ready) -> None:
        """The driver executed `ready`: the leader's own accepts are now durable votes."""
        if self._role is not Role.LEADER:
            return
        for slot, (ballot, _) in ready.persist.accepted.items():
            if ballot == self._ballot and slot in self._votes:
                self._votes[slot].add(self.id)
                self._maybe_mark_chosen(slot)
        self._advance_chosen_watermark()

    # ------------------------------------------------------------------ queries

    @property
    def role(self) -> Role:
        return self._role

    @property
    def leader_hint(self) -> int | None:
        return self._leader_hint

    @property
    def applied_index(self) -> int:
        return self._applied

    @property
    def chosen_watermark(self) -> int:
        return self._chosen_watermark

    def repeat_heartbeats(self) -> list[Heartbeat]:
        """As leader, the messages of the newest heartbeat round once more; else none.

        For a driver whose loop is held past a heartbeat interval (a long fsync), so that
        its followers do not elect while it is alive. A copy is what a duplicating network
        delivers, so it grants nothing the round did not: a follower's window starts at
        receipt, after the round's send time on which the lease is counted (rule 6), and
        a round counts once by its (ballot, seq) (rule 9). Outside `ready()`: nothing here
        waits for a persist.
        """
        if self._role is not Role.LEADER:
            return []
        return [msg for msg in self._last_round if msg.ballot == self._ballot]

    def defer_election(self, now: float) -> None:
        """Start the election timer afresh at `now`: the driver held this replica paused (a
        long snapshot restore) right after hearing its leader, so the timer that ran out
        meanwhile says nothing about the leader. Waiting longer is always safe."""
        self.observe_time(now)
        if self._role is Role.FOLLOWER:
            self._pre_votes.clear()  # yeses from before the pause speak of an older state
            self._reset_election_deadline()

    def peer_watermark(self, peer: int) -> int:
        """The chosen watermark `peer` last acknowledged to this leader (-1: none)."""
        return self._peer_watermark.get(peer, -1)

    def hears_leader(self, now: float) -> bool:
        """Whether this replica knows a leader that is alive, for health checks: as leader,
        a quorum acknowledged it within the longest election timeout (rule 8); as follower,
        it heard its leader within that timeout. A replica cut off from its group says no."""
        if self._role is Role.LEADER:
            return self._has_quorum_contact(now)
        return (
            self._leader_hint is not None
            and now - self._leader_heard_at <= self.config.election_timeout_max_s
        )

    def has_valid_lease(self, now: float) -> bool:
        return self._role is Role.LEADER and now < self._lease_until

    def chosen_value(self, slot: int) -> Value | None:
        """The chosen value of `slot` if this replica knows it and still holds it."""
        if slot > self._chosen_watermark or slot not in self._log:
            return None
        return self._log[slot][1]

    def status(self) -> ReplicaStatus:
        return ReplicaStatus(
            node_id=self.id,
            role=self._role,
            promised=self._promised,
            leader_hint=self._leader_hint,
            chosen_watermark=self._chosen_watermark,
            applied_index=self._applied,
            log_start=self._log_start,
            next_slot=self._next_slot,
            lease_until=self._lease_until,
            rebuilding=self._rebuilding,
            phase1_parts=self._won_with_parts if self._role is Role.LEADER else 0,
        )

    # ------------------------------------------------------------------ roles

    def _reset_election_deadline(self) -> None:
        lo, hi = self.config.election_timeout_min_s, self.config.election_timeout_max_s
        self._election_deadline = self._now + self._rng.uniform(lo, hi)

    def _become_follower(self, leader_hint: int | None) -> None:
        was_leader = self._role is Role.LEADER
        self._role = Role.FOLLOWER
        self._leader_hint = leader_hint
        self._clear_phase1()
        self._pre_votes.clear()
        self._reset_election_deadline()
        if was_leader:
            error = NotLeader(leader_hint, "leadership lost")
            first = self._next_proposal_id - (len(self._queue) - self._queue_pos)
            self._out.dropped.extend((pid, error) for pid in range(first, self._next_proposal_id))
            self._out.dropped_reads.extend((rid, error) for rid, _, _ in self._pending_reads)
            # Confirmed but not answered yet (queued, or held for the apply by rule 5): this
            # replica may next install a snapshot whose data its node restores later, so
            # they are answered nowhere but here.
            for read in self._reads_after_apply + self._out.reads:
                self._out.dropped_reads.append((read.read_id, error))
            self._reads_after_apply.clear()
            self._out.reads.clear()
            self._queue.clear()
            self._queue_pos = 0
            self._pending_reads.clear()
            self._votes.clear()
            self._chosen_above.clear()
            self._sent_at.clear()
            self._forget_inflight()
            self._hb_sent.clear()
            self._hb_acks.clear()
            self._lease_until = 0.0
            self._read_round_wanted = False
            self._handoff_target = None
            self._hb_handoff_rounds.clear()

    def _pre_campaign(self) -> None:
        """Rule 13: ask the peers whether they would promise us, before raising any round."""
        self._pre_vote_seq += 1
        self._pre_votes = {self.id}
        self._part_ask_again_at.clear()  # rule 18: this Phase 1 timed out, asks end with it
        self._reset_election_deadline()
        for peer in self._peers:
            self._out.messages.append(
                PreVote(src=self.id, dst=peer, ballot=self._promised, seq=self._pre_vote_seq)
            )
        self._maybe_campaign_after_pre_vote()

    def _maybe_campaign_after_pre_vote(self) -> None:
        if len(self._pre_votes) >= self._quorum:
            self._campaign()

    def _campaign(self) -> None:
        """Rule 1 and 3: start Phase 1 with a fresh ballot over all unchosen slots."""
        if self._role is Role.LEADER:
            # Leadership ends before a campaign starts: what it held is dropped, reported.
            self._become_follower(None)
        self._pre_votes.clear()
        self._role = Role.CANDIDATE
        self._leader_hint = None
        self._ballot = Ballot(max(self._promised.round, self._max_seen_round) + 1, self.id)
        self._max_seen_round = self._ballot.round
        self._set_promised(self._ballot)
        self._from_slot = self._chosen_watermark + 1
        self._clear_phase1()
        self._promised_by.add(self.id)
        self._merge_votes(self._votes_from(self._from_slot)[0])  # its own: no message, no cut
        self._lease_refusals = set()
        self._reset_election_deadline()
        for peer in self._peers:
            self._out.messages_after_persist.append(
                Prepare(src=self.id, dst=peer, ballot=self._ballot, from_slot=self._from_slot)
            )
        self._maybe_become_leader()

    def _clear_phase1(self) -> None:
        """Candidate state, and rule 18's pre-vote block: a role change ends any Phase 1."""
        self._promised_by.clear()
        self._promise_next.clear()
        self._part_ask_again_at.clear()
        self._phase1_best.clear()
        self._phase1_parts = 0
        self._parts_block_until = 0.0

    def _ask_for_part(self, peer: int) -> None:
        """Rule 18: ask `peer` for the next part of its promise; again after two heartbeat
        intervals if it has not come (a copy of an ask holds no acceptor's timer)."""
        self._part_ask_again_at[peer] = self._now + 2 * self.config.heartbeat_interval_s
        self._out.messages.append(
            Prepare(src=self.id, dst=peer, ballot=self._ballot, from_slot=self._promise_next[peer])
        )

    def _ask_parts_again(self) -> None:
        for peer, due in list(self._part_ask_again_at.items()):
            if self._now >= due:
                self._ask_for_part(peer)

    def _busy_with_parts(self, for_id: int) -> None:
        """Rule 18: refuse the pre-votes of replicas other than `for_id` for the shortest
        election timeout."""
        self._parts_block_until = self._now + self.config.election_timeout_min_s
        self._parts_candidate = for_id

    def _merge_votes(self, entries: Sequence[AcceptedEntry]) -> None:
        """Rule 3, part by part: the best vote per slot of every promise so far. Parts of a
        promise still being asked for may count too (rule 18): the highest vote over a
        superset of a quorum's promises is still the one Paxos requires."""
        best = self._phase1_best
        for entry in entries:
            current = best.get(entry.slot)
            if current is None or _outranks(entry, current):
                best[entry.slot] = entry

    def _maybe_become_leader(self) -> None:
        if len(self._promised_by) < self._quorum:
            return
        best = self._phase1_best
        self._role = Role.LEADER
        self._leader_hint = self.id
        self._pre_votes.clear()  # a pre-vote started while a candidate is over
        first = max(self._from_slot, self._chosen_watermark + 1)
        last = max(best, default=self._chosen_watermark)
        last = max(last, self._chosen_watermark)
        if self.config.election_fence:
            # No-ops past what the promises show (see the config field); a stale no-op
            # changes nothing if a later leader chooses it.
            last += MAX_PIPELINE_WINDOW
        self._votes.clear()
        self._chosen_above.clear()
        self._sent_at.clear()
        self._forget_inflight()
        recovered = []
        for slot in range(first, last + 1):
            found = best.get(slot)
            value = found.value if found is not None else NOOP
            self._store_accept(slot, self._ballot, value)
            self._votes[slot] = set()
            self._sent_at[slot] = self._now
            recovered.append(SlotValue(slot=slot, value=value))
        self._won_with_parts = self._phase1_parts
        self._clear_phase1()  # the votes are in the log now; a leader holds no second copy
        self._next_slot = last + 1
        self._recovered_until = last
        self._last_ack = dict.fromkeys(self._peers, self._now)
        self._hb_sent.clear()
        self._hb_acks.clear()
        self._lease_until = 0.0
        self._handoff_target = None
        self._peer_watermark.clear()
        # To every peer: at election the recent-ack ranking of thrifty Accepts is a tie, and
        # the peer it would pick may be the old leader that just died (a heartbeat's delay).
        self._send_accepts(tuple(recovered), everyone=True)
        self._broadcast_heartbeat()

    # ------------------------------------------------------------------ handlers

    def _handle_pre_vote(self, msg: PreVote) -> None:
        # Rule 13: yes exactly when our lease promise would let the asker's Prepare through,
        # unless that would cut short a Phase 1 in parts getting on (rule 18).
        self._out.messages.append(
            PreVoteReply(
                src=self.id,
                dst=msg.src,
                ballot=self._promised,
                seq=msg.seq,
                granted=not self._rebuilding
                and not self._lease_blocks(msg.src)
                and not self._parts_block(msg.src),
                rebuilding=self._rebuilding,
            )
        )

    def _handle_pre_vote_reply(self, msg: PreVoteReply) -> None:
        if self._rebuilding:
            self._note_floor_report(msg)
            return
        if (
            self._role is Role.LEADER
            or not self._pre_votes
            or msg.seq != self._pre_vote_seq
            or not msg.granted
        ):
            return
        self._pre_votes.add(msg.src)
        self._maybe_campaign_after_pre_vote()

    def _handle_prepare(self, msg: Prepare) -> None:
        if self._rebuilding:
            return  # rule 14: no promise; the candidate needs the other replicas
        if msg.ballot < self._promised:
            self._nack(msg.src, msg.ballot)
            return
        if msg.ballot > self._promised:
            if self._lease_blocks(msg.src):
                self._out.messages.append(
                    Nack(
                        src=self.id,
                        dst=msg.src,
                        ballot=msg.ballot,
                        promised=self._promised,
                        leader_hint=self._leader_hint,
                        lease_held=True,
                    )
                )
                return
            self._set_promised(msg.ballot)
            self._become_follower(None)
            self._part_asked_from = msg.from_slot
        elif msg.from_slot > self._part_asked_from:
            # The candidate asks for the next part of a cut promise (rule 18): it is alive
            # and getting on, so a campaign here or a pre-vote granted to a third replica
            # would only cut its Phase 1 short. A copy of an earlier ask is no such sign.
            self._part_asked_from = msg.from_slot
            self._reset_election_deadline()
            self._busy_with_parts(msg.src)
        self._out.messages_after_persist.append(
            self._make_promise(msg.src, msg.ballot, msg.from_slot)
        )

    def _handle_promise(self, msg: Promise) -> None:
        if self._role is not Role.CANDIDATE or msg.ballot != self._ballot:
            return
        expected = self._promise_next.get(msg.src, self._from_slot)
        if msg.src in self._promised_by or msg.from_slot != expected:
            return  # a copy, or the answer to an earlier ask
        if msg.log_start > msg.from_slot or msg.chosen_omitted:
            # The promiser compacted chosen slots we lack (only a snapshot can bring us up), or
            # holds more of them than a promise carries (rule 16): catch up first.
            self._become_follower(None)
            self._request_catchup(msg.src, self._chosen_watermark + 1, msg.chosen_watermark)
            return
        if not _promise_in_bounds(msg, self._from_slot + MAX_SLOTS_AHEAD):  # rules 15 and 18
            self._part_ask_again_at.pop(msg.src, None)  # the same part would come again
            return
        self._merge_votes(msg.accepted)
        if msg.from_slot != self._from_slot or msg.more_from:
            # Rule 18: a Phase 1 in parts is getting on.
            self._phase1_parts += 1
            self._reset_election_deadline()
            self._busy_with_parts(self.id)
        if msg.more_from:
            # Ask for the next part at the same ballot, which the promiser holds (else it
            # refuses with a Nack); what may change meanwhile is marked (rule 18).
            self._promise_next[msg.src] = msg.more_from
            self._ask_for_part(msg.src)
            return
        self._promise_next.pop(msg.src, None)
        self._part_ask_again_at.pop(msg.src, None)
        self._promised_by.add(msg.src)
        self._maybe_become_leader()

    def _handle_nack(self, msg: Nack) -> None:
        if self._role is Role.FOLLOWER or msg.ballot != self._ballot:
            return
        if msg.lease_held:
            if self._role is Role.CANDIDATE:
                # Give up once no quorum is left to promise: one replica still under the
                # old leader's lease need not sink a transfer the old leader itself grants.
                self._lease_refusals.add(msg.src)
                if len(self._lease_refusals) > len(self.config.voters) - self._quorum:
                    self._become_follower(msg.leader_hint)
            return
        if msg.promised > self._ballot:
            if msg.promised.round <= self._highest_round_taken():  # rule 15, for its promise
                self._max_seen_round = max(self._max_seen_round, msg.promised.round)
            rejoined = msg.leader_hint in (None, self.id)
            lease = self._role is Role.LEADER and self._now < self._lease_until
            self._become_follower(msg.leader_hint)
            if rejoined and lease and not self._retiring:
                # Rule 12: the nacker names no other leader, and this leader's lease says a
                # quorum follows it: a replica back from a partition, whose round ran up in
                # campaigns nobody could grant. Take a higher ballot at once rather than
                # leave the group leaderless for an election timeout; the followers' lease
                # promises let this same leader through.
                self._campaign()

    def _handle_accept(self, msg: Accept) -> None:
        if not self._follow(msg.src, msg.ballot):
            return
        slots = []
        for entry in msg.entries:
            if entry.slot > self._chosen_watermark + MAX_SLOTS_AHEAD:  # rule 15
                continue
            if entry.slot >= self._log_start and entry.slot > self._chosen_watermark:
                self._store_accept(entry.slot, msg.ballot, entry.value)
            slots.append(entry.slot)
        if slots and not self._rebuilding:  # rule 14: stored, but not a vote
            self._out.messages_after_persist.append(
                Accepted(src=self.id, dst=msg.src, ballot=msg.ballot, slots=tuple(slots))
            )
        self._learn(msg.src, msg.ballot, msg.chosen_watermark)

    def _handle_heartbeat(self, msg: Heartbeat) -> None:
        if not self._follow(msg.src, msg.ballot):
            return
        self._learn(msg.src, msg.ballot, msg.chosen_watermark)
        # Rule 6: also the leader's own lease, as long as it still runs (found by review: a
        # replica rebuilt under a shorter lease forgot the longer one it had promised, and
        # a new leader was elected while the old lease ran).
        # Bounded (found by review: a peer's 71 minutes, recorded, blocked every election
        # after each restart of this replica).
        heard = min(msg.lease_remaining_s, MAX_LEASE_S)
        self._heard_lease_s = max(self._heard_lease_s, heard)
        self._lease_block_until = max(self._lease_block_until, self._now + heard)
        if heard > self._recorded_lease_s:
            # Durably too (found by review: a rebuilt replica restarted while the heard lease
            # ran, blocked for its own shorter lease only, and voted inside the leader's).
            self._record_lease(heard)
        if (
            self._rebuilding
            and self._floor is not None
            and msg.ballot >= self._floor
            and msg.next_slot
        ):
            # Rule 14 (b): every leader at or above the floor bounds the forgotten votes, so
            # the lowest bound heard counts: a later leader's next slot may be lower (its
            # Phase 1 did not see an earlier one's unchosen tail), and in an idle group the
            # earlier bound would never be reached.
            self._rebuild_target = min(self._rebuild_target or msg.next_slot, msg.next_slot)
        # Rule 9: only the newest round of this leader speaks for the transfer. A delayed
        # heartbeat of an abandoned transfer must not reopen it after the leader resumed its
        # lease with a later round (that round's ack promised to block the target).
        round_key = (msg.ballot, msg.seq)
        fresh = round_key >= self._newest_heartbeat
        if fresh:
            self._newest_heartbeat = round_key
        if msg.handoff_to and fresh:
            self._handoff_allowed = msg.handoff_to
            if msg.handoff_to == self.id and not self._rebuilding and not self._retiring:
                if self._chosen_watermark >= msg.chosen_watermark and self._past_restart_block():
                    self._campaign()
                    return
                self._handoff_watermark = msg.chosen_watermark  # see _handle_catchup_reply
                self._handoff_ballot = msg.ballot
        if self._recorded_lease_s < self.config.lease_duration_s:
            self._record_lease(self.config.lease_duration_s)  # before the ack promises it
        self._out.messages_after_persist.append(
            HeartbeatAck(
                src=self.id,
                dst=msg.src,
                ballot=msg.ballot,
                seq=msg.seq,
                chosen_watermark=self._chosen_watermark,
                rebuilding=self._rebuilding,
                retiring=self._retiring,
                lease_promise_s=self.config.lease_duration_s,
            )
        )

    def _handle_accepted(self, msg: Accepted) -> None:
        if self._role is not Role.LEADER or msg.ballot != self._ballot:
            return
        self._last_ack[msg.src] = self._now
        for slot in msg.slots:
            votes = self._votes.get(slot)
            if votes is not None:
                votes.add(msg.src)
                self._maybe_mark_chosen(slot)
        self._advance_chosen_watermark()

    def _handle_heartbeat_ack(self, msg: HeartbeatAck) -> None:
        if self._role is not Role.LEADER or msg.ballot != self._ballot:
            return
        self._peer_watermark[msg.src] = msg.chosen_watermark
        if msg.retiring:
            self._retiring_peers.add(msg.src)
            if msg.src == self._handoff_target:
                # Rule 19: it will not take over; end the transfer now, as its timeout would
                # (a restart of the target meets rule 9's restart block), rather than hold
                # proposals back until then.
                self._handoff_target = None
        else:
            self._retiring_peers.discard(msg.src)
        if msg.rebuilding:
            # Rule 14: its ack vouches for no promise of its previous life (it may have
            # helped elect a higher ballot, then lost that), so it counts for no lease,
            # read-index round or check-quorum.
            self._rebuilding_peers.add(msg.src)
            return
        self._rebuilding_peers.discard(msg.src)
        self._last_ack[msg.src] = self._now
        acks = self._hb_acks.get(msg.seq)
        if acks is None:
            return
        acks.peers.add(msg.src)
        # A node that does not say how long it promises (from before) is taken at ours.
        acks.promise_s = min(acks.promise_s, msg.lease_promise_s or self.config.lease_duration_s)
        if len(acks.peers) + 1 >= self._quorum:
            self._confirm_round(msg.seq)

    def _handle_catchup_request(self, msg: CatchUpRequest) -> None:
        if msg.from_slot < self._log_start:
            last = self._snapshot_sent_at.get(msg.src)
            if last is None or self._now - last >= self.config.election_timeout_max_s:
                self._snapshot_sent_at[msg.src] = self._now
                self._out.snapshot_requests.append(msg.src)
                # Held from the request: the driver may build the snapshot in steps for
                # seconds, at the applied index it starts from (found by review); a repeated
                # request keeps the lower index, which a build under way may have.
                held = self._snapshot_holds.get(msg.src)
                index = (
                    self._applied_returned if held is None else min(held[0], self._applied_returned)
                )
                self._snapshot_holds[msg.src] = (index, self._now)
            return
        last_slot = min(
            msg.to_slot,
            self._chosen_watermark,
            msg.from_slot + self.config.catchup_max_slots - 1,
        )
        # Bounded by bytes too: with thrifty Accepts catch-up carries a follower's whole
        # share of the writes, and one reply must stay a message the peer stream can take.
        entries: list[SlotValue] = []
        size = 0
        for slot in range(msg.from_slot, last_slot + 1):
            value = self._log[slot][1]
            size += _value_bytes(value)
            if entries and size > self.config.max_batch_bytes:
                break
            entries.append(SlotValue(slot=slot, value=value))
        if entries:
            self._out.messages.append(
                CatchUpReply(
                    src=self.id,
                    dst=msg.src,
                    ballot=self._promised,
                    entries=tuple(entries),
                    chosen_watermark=self._chosen_watermark,
                )
            )

    def _handle_catchup_reply(self, msg: CatchUpReply) -> None:
        if self._role is Role.LEADER:
            return
        before = self._chosen_watermark
        for entry in msg.entries:
            if entry.slot != self._chosen_watermark + 1:
                continue
            self._store_accept(entry.slot, msg.ballot, entry.value)
            self._chosen_watermark = entry.slot
        if self._chosen_watermark > before:
            self._out.persist.chosen_watermark = self._chosen_watermark
            self._catchup_retry_at = 0.0
            if (
                self._handoff_allowed == self.id
                and not self._rebuilding
                and not self._retiring
                and self._role is Role.FOLLOWER
                and self._promised == self._handoff_ballot
                and self._chosen_watermark >= self._handoff_watermark
                and self._past_restart_block()
            ):
                # Rule 9: a target that was behind campaigns once it has caught up, not a
                # heartbeat later (the old leader holds proposals back meanwhile).
                self._campaign()
                return
        if msg.chosen_watermark > self._chosen_watermark:
            self._request_catchup(msg.src, self._chosen_watermark + 1, msg.chosen_watermark)

    def _handle_install_snapshot(self, msg: InstallSnapshot) -> None:
        if self._role is Role.LEADER or msg.index <= self._applied:
            return
        self._out.snapshot = SnapshotToInstall(index=msg.index, data=msg.data)
        # Our log below the snapshot may hold votes that were never chosen: drop them.
        for slot in [s for s in self._log if s <= msg.index]:
            self._log_bytes -= _value_bytes(self._log.pop(slot)[1])
        for slot in [s for s in self._proposed if s <= msg.index]:
            self._outcome_unknown.extend(self._proposed.pop(slot)[1])
        self._applied = msg.index
        self._chosen_watermark = max(self._chosen_watermark, msg.index)
        self._log_start = msg.index + 1
        self._next_slot = max(self._next_slot, self._log_start)
        # Rule 11: the snapshot is restored after this Ready's persist; truncating the durable
        # log in the same Ready could leave neither the old slots nor the restored state after
        # a crash. So the truncation goes out with the next Ready, once the restore has been
        # written (and the next synced persist makes both durable), and no other message is
        # handled until this Ready is out.
        self._install_persist = PersistBatch(
            chosen_watermark=self._chosen_watermark, log_start=self._log_start
        )
        self._installing = True
        self._catchup_retry_at = 0.0

    # ------------------------------------------------------------------ helpers

    def _follow(self, src: int, ballot: Ballot) -> bool:
        """Accept `src` as leader at `ballot` if no higher promise forbids it."""
        if ballot < self._promised:
            self._nack(src, ballot)
            return False
        if ballot > self._promised:
            self._set_promised(ballot)
        if self._role is not Role.FOLLOWER:
            self._become_follower(src)
        self._pre_votes.clear()
        self._parts_block_until = 0.0  # rule 18: a leader is heard, its lease takes over
        self._part_asked_from = 0
        self._leader_hint = src
        self._leader_heard_at = self._now
        self._handoff_allowed = None
        self._reset_election_deadline()
        self._lease_block_until = max(
            self._lease_block_until, self._now + self.config.lease_duration_s
        )
        self._lease_refresh = True
        return True

    def _lease_blocks(self, candidate: int) -> bool:
        if not self._started:
            return True  # rule 6: before the first tick we cannot measure the restart block
        if self._role is Role.LEADER:
            return candidate != self._handoff_target
        return (
            self._now < self._lease_block_until
            and candidate != self._leader_hint
            # Rule 9's permission needs the newest round seen from the leader, which a
            # restart forgets: a delayed round of an abandoned transfer would let the target
            # through under the lease a later round's ack (before the restart) promised.
            and (candidate != self._handoff_allowed or self._now < self._restart_block_until)
        )

    def _parts_block(self, asker: int) -> bool:
        """Rule 18: a pre-vote of `asker` would cut short a Phase 1 in parts getting on."""
        return self._now < self._parts_block_until and asker != self._parts_candidate

    def _past_restart_block(self) -> bool:
        """Rule 6 for a transfer's target itself: a restarted replica promises nobody,
        itself included, before its restart block ends."""
        return self._started and self._now >= self._restart_block_until

    def _nack(self, dst: int, ballot: Ballot) -> None:
        self._out.messages.append(
            Nack(
                src=self.id,
                dst=dst,
                ballot=ballot,
                promised=self._promised,
                leader_hint=self._leader_hint,
            )
        )

    def _set_promised(self, ballot: Ballot) -> None:
        self._promised = ballot
        self._out.persist.promised = ballot

    def _store_accept(self, slot: int, ballot: Ballot, value: Value) -> None:
        old = self._log.get(slot)
        if old is not None:
            self._log_bytes -= _value_bytes(old[1])
        self._log_bytes += _value_bytes(value)
        self._log[slot] = (ballot, value)
        self._out.persist.accepted[slot] = (ballot, value)

    def _votes_from(
        self, from_slot: int, omit_chosen: bool = False, bound: int | None = None
    ) -> tuple[list[AcceptedEntry], int]:
        """This acceptor's votes from `from_slot` on, by slot, and the first slot left out
        (0 if none): without the chosen ones if `omit_chosen`, and cut once past `bound`
        bytes as encoded, at least one vote going (rule 18). Slot by slot from the first
        one held, not sorted: beyond one pass over the log's keys for its last slot, a part
        costs what it carries."""
        entries: list[AcceptedEntry] = []
        size = 0
        start = max(from_slot, self._log_start)
        if omit_chosen:
            start = max(start, self._chosen_watermark + 1)
        for slot in range(start, max(self._log, default=0) + 1):
            vote = self._log.get(slot)
            if vote is None:
                continue
            size += _wire_bytes(vote[1])
            if bound is not None and size > bound and entries:
                return entries, slot
            chosen = slot <= self._chosen_watermark
            entries.append(AcceptedEntry(slot=slot, ballot=vote[0], value=vote[1], chosen=chosen))
        return entries, 0

    def _chosen_bytes_past(self, from_slot: int, limit: int) -> bool:
        """Rule 16: whether the chosen slots from `from_slot` on hold more than `limit`."""
        total = 0
        for slot in range(max(from_slot, self._log_start), self._chosen_watermark + 1):
            vote = self._log.get(slot)
            total += _value_bytes(vote[1]) if vote is not None else 0
            if total > limit:
                return True
        return False

    def _make_promise(self, dst: int, ballot: Ballot, from_slot: int) -> Promise:
        omit_chosen = self._chosen_bytes_past(from_slot, self.config.max_batch_bytes)
        entries, more_from = self._votes_from(from_slot, omit_chosen, self.config.max_promise_bytes)
        return Promise(
            src=self.id,
            dst=dst,
            ballot=ballot,
            from_slot=from_slot,
            accepted=tuple(entries),
            chosen_watermark=self._chosen_watermark,
            log_start=self._log_start,
            chosen_omitted=omit_chosen,
            more_from=more_from,
        )

    def _learn(self, leader: int, ballot: Ballot, leader_watermark: int) -> None:
        """Rule 4: advance our watermark over slots we accepted under the leader's ballot."""
        before = self._chosen_watermark
        slot = before + 1
        while slot <= leader_watermark:
            vote = self._log.get(slot)
            if vote is None or vote[0] != ballot:
                break
            self._chosen_watermark = slot
            slot += 1
        if self._chosen_watermark > before:
            self._out.persist.chosen_watermark = self._chosen_watermark
        if self._chosen_watermark < leader_watermark:
            self._request_catchup(leader, self._chosen_watermark + 1, leader_watermark)

    def _request_catchup(self, peer: int, from_slot: int, to_slot: int) -> None:
        if self._now < self._catchup_retry_at:
            return
        self._catchup_retry_at = self._now + 2 * self.config.heartbeat_interval_s
        self._out.messages.append(
            CatchUpRequest(
                src=self.id,
                dst=peer,
                ballot=self._promised,
                from_slot=from_slot,
                to_slot=to_slot,
            )
        )

    def _ask_floor(self) -> None:
        """Rule 14 (a): ask every peer that has not reported yet for its promise."""
        self._pre_vote_seq += 1
        self._floor_ask_at = self._now + self.config.heartbeat_interval_s
        for peer in self._peers:
            if peer not in self._floor_reports:
                self._out.messages.append(
                    PreVote(src=self.id, dst=peer, ballot=self._promised, seq=self._pre_vote_seq)
                )

    def _note_floor_report(self, msg: PreVoteReply) -> None:
        if (
            self._floor is not None
            or msg.rebuilding
            or not self._floor_first_seq <= msg.seq <= self._pre_vote_seq
        ):
            return
        known = self._floor_reports.get(msg.src)
        self._floor_reports[msg.src] = msg.ballot if known is None else max(known, msg.ballot)
        if len(self._floor_reports) == len(self._peers):
            self._floor = max(self._floor_reports.values(), default=ZERO_BALLOT)

    def _maybe_finish_rebuild(self) -> None:
        """Rule 14 (c): vote again once the slots up to the target are durably known."""
        if (
            self._floor is None
            or not self._rebuild_target
            or self._installing
            or self._chosen_watermark < self._rebuild_target - 1
        ):
            return
        self._rebuilding = False
        self._out.persist.rebuilding = False
        if self._floor > self._promised:
            self._set_promised(self._floor)

    @property
    def _next_heartbeat_at(self) -> float:
        last = max(self._hb_sent.values(), default=float("-inf"))
        return last + self.config.heartbeat_interval_s

    def _heartbeat_round(self) -> None:
        """A leader's periodic round: a heartbeat to every follower, and the re-send of
        slots still unacknowledged after an interval."""
        self._broadcast_heartbeat()
        self._retransmit_accepts()

    def _broadcast_heartbeat(self) -> None:
        remaining = self._lease_remaining()
        self._hb_seq += 1
        seq = self._hb_seq
        self._hb_sent[seq] = self._now
        self._hb_acks[seq] = _RoundAcks()
        if self._handoff_target is not None:
            self._hb_handoff_rounds.add(seq)
        self._last_round = [
            Heartbeat(
                src=self.id,
                dst=peer,
                ballot=self._ballot,
                chosen_watermark=self._chosen_watermark,
                seq=seq,
                handoff_to=self._handoff_target or 0,
                next_slot=self._next_slot,
                lease_remaining_s=remaining,
            )
            for peer in self._peers
        ]
        self._out.messages.extend(self._last_round)
        if self._quorum == 1:
            self._confirm_round(seq)

    def _lease_remaining(self) -> float:
        """Rule 6: how long this leader's lease may still run as a follower's clock may count
        it: its lease, or the one a round sent but not yet confirmed would give (found by
        review: its acks may still arrive), plus the drift margin; never above its own
        lease (found by review: float rounding said 1 µs more, which every follower
        recorded, synced, in a cluster of one lease setting)."""
        drift = self.config.lease_drift_s
        unconfirmed = [sent for seq, sent in self._hb_sent.items() if seq > self._confirmed_seq]
        remaining = max(
            self._lease_until - self._now + drift,
            max(unconfirmed, default=float("-inf")) - self._now + self.config.lease_duration_s,
        )
        return min(max(0.0, remaining), self.config.lease_duration_s)

    def _confirm_round(self, seq: int) -> None:
        """A quorum acknowledged heartbeat round `seq`: renew the lease, release reads."""
        sent = self._hb_sent.get(seq)
        if sent is None:
            return
        self._confirmed_seq = max(self._confirmed_seq, seq)
        if self._handoff_target is None and seq not in self._hb_handoff_rounds:
            # Found by an operator trial: nodes configured with different leases (a rolling
            # change) served stale reads when the leader's lease outlasted the followers'
            # promises. The round's lease lasts the shortest promise of the quorum that
            # acknowledged it, the leader's own included.
            acks = self._hb_acks.get(seq)
            duration = min(self.config.lease_duration_s, acks.promise_s if acks else float("inf"))
            lease = sent + duration - self.config.lease_drift_s
            self._lease_until = max(self._lease_until, lease)
        # Keep only the newest round's send time, so the heartbeat timer still has a base.
        for old in [s for s in self._hb_sent if s < seq]:
            del self._hb_sent[old]
        for old in [s for s in self._hb_acks if s <= seq]:
            del self._hb_acks[old]
        self._hb_handoff_rounds = {s for s in self._hb_handoff_rounds if s > seq}

    def _has_quorum_contact(self, now: float | None = None) -> bool:
        horizon = (self._now if now is None else now) - self.config.election_timeout_max_s
        alive = 1 + sum(1 for peer in self._peers if self._last_ack.get(peer, 0.0) > horizon)
        return alive >= self._quorum

    def _retransmit_accepts(self) -> None:
        """Re-send unacknowledged in-flight slots (messages may have been lost)."""
        stale = self._now - self.config.heartbeat_interval_s
        per_peer: dict[int, list[SlotValue]] = {}
        for slot in range(self._chosen_watermark + 1, self._next_slot):
            if slot in self._chosen_above or self._sent_at.get(slot, self._now) > stale:
                continue
            self._sent_at[slot] = self._now
            value = self._log[slot][1]
            voters = self._votes.get(slot, set())
            for peer in self._peers:
                if peer not in voters:
                    per_peer.setdefault(peer, []).append(SlotValue(slot=slot, value=value))
        for peer, entries in sorted(per_peer.items()):
            self._accepts_to((peer,), tuple(entries))

    def _accepts_to(self, peers: Sequence[int], entries: tuple[SlotValue, ...]) -> None:
        """Accept messages of `entries` to each of `peers`, each message of at most
        `max_batch_bytes` of values (at least one slot), rule 18: a new leader recovers every
        slot its promises show in its first Accept, as many bytes as a quorum's promises
        together. Cut once for all the peers; a single slot (every Accept of a node's
        default window of 1) is not measured."""
        chunks = [entries] if len(entries) <= 1 else self._cut(entries)
        for peer in peers:
            for chunk in chunks:
                self._out.messages.append(
                    Accept(
                        src=self.id,
                        dst=peer,
                        ballot=self._ballot,
                        entries=chunk,
                        chosen_watermark=self._chosen_watermark,
                    )
                )

    def _cut(self, entries: tuple[SlotValue, ...]) -> list[tuple[SlotValue, ...]]:
        """`entries` in runs of at most `max_batch_bytes` as encoded (at least one each)."""
        chunks: list[tuple[SlotValue, ...]] = []
        start = size = 0
        for i, entry in enumerate(entries):
            entry_bytes = _wire_bytes(entry.value)
            if i > start and size + entry_bytes > self.config.max_batch_bytes:
                chunks.append(entries[start:i])
                start, size = i, 0
            size += entry_bytes
        chunks.append(entries[start:])
        return chunks

    def _accept_targets(self) -> Sequence[int]:
        """Every peer, or (thrifty) the quorum's worth that acknowledged most recently."""
        if not self.config.thrifty_accepts:
            return self._peers
        voters = [p for p in self._peers if p not in self._rebuilding_peers]
        # Rule 19: a retiring peer's vote still counts, but it is about to go, and a slot
        # whose Accept went to it would wait for the re-send to everyone. It yields only to
        # peers that answer: one silent for a heartbeat interval may be down.
        fresh_since = self._now - self.config.heartbeat_interval_s
        ranked = sorted(
            voters,
            key=lambda p: (
                self._last_ack.get(p, 0.0) < fresh_since,
                p in self._retiring_peers,
                -self._last_ack.get(p, 0.0),
                p,
            ),
        )
        return ranked[: self._quorum - 1]

    def _send_accepts(self, entries: tuple[SlotValue, ...], everyone: bool = False) -> None:
        if not entries:
            return
        self._accepts_to(self._peers if everyone else self._accept_targets(), entries)

    def _flush_proposals(self) -> None:
        """Pack queued commands into new slots, within the pipeline window (batching)."""
        queue = self._queue
        pos = self._queue_pos
        end = len(queue)
        if self._role is not Role.LEADER or pos == end:
            return
        cfg = self.config
        max_count = cfg.max_batch_count
        max_bytes = cfg.max_batch_bytes
        first_id = self._next_proposal_id - (end - pos)
        ballot = self._ballot
        now = self._now
        new_entries = []
        while pos < end and self._window_has_room():
            batch = queue[pos : pos + max_count]
            size = sum(map(len, batch))
            if len(batch) > 1 and size > max_bytes:
                # Cut at the byte limit; the first command always fits (propose checks it).
                size = 0
                cut = 0
                for command in batch:
                    if cut and size + len(command) > max_bytes:
                        break
                    size += len(command)
                    cut += 1
                batch = batch[:cut]
            n = len(batch)
            slot = self._next_slot
            self._next_slot = slot + 1
            value = tuple(batch)
            self._store_accept(slot, ballot, value)
            self._votes[slot] = set()
            self._sent_at[slot] = now
            self._proposed[slot] = (value, tuple(range(first_id, first_id + n)))
            self._inflight.append((slot, size))
            self._inflight_bytes += size
            new_entries.append(SlotValue(slot=slot, value=value))
            first_id += n
            pos += n
        if pos == end:
            queue.clear()
            pos = 0
        elif pos > 4096 and 2 * pos > end:
            del queue[:pos]
            pos = 0
        self._queue_pos = pos
        self._send_accepts(tuple(new_entries))

    def _maybe_mark_chosen(self, slot: int) -> None:
        votes = self._votes.get(slot)
        if votes is not None and len(votes) >= self._quorum:
            self._chosen_above.add(slot)
            del self._votes[slot]
            self._sent_at.pop(slot, None)

    def _advance_chosen_watermark(self) -> None:
        before = self._chosen_watermark
        while self._chosen_watermark + 1 in self._chosen_above:
            self._chosen_watermark += 1
            self._chosen_above.discard(self._chosen_watermark)
        if self._chosen_watermark > before:
            self._out.persist.chosen_watermark = self._chosen_watermark

    def _collect_committed(self) -> None:
        """Rule 5 and 9: hand chosen slots to the application in order, once each."""
        size = 0
        for slot in range(self._applied + 1, self._chosen_watermark + 1):
            vote = self._log.get(slot)
            if vote is None:
                raise InvariantViolation(f"slot {slot} is chosen but its value is not held")
            value = vote[1]
            size += _value_bytes(value)
            if self._out.committed and size > self.config.max_apply_bytes:
                break
            ids: tuple[int | None, ...] = (None,) * len(value)
            mine = self._proposed.pop(slot, None)
            if mine is not None:
                if mine[0] == value:
                    ids = mine[1]
                else:
                    error = NotLeader(self._leader_hint, "another value was chosen for the slot")
                    self._out.dropped.extend((pid, error) for pid in mine[1])
            self._out.committed.append(CommittedEntry(slot=slot, value=value, proposal_ids=ids))
            self._applied = slot

    def _hold_reads_until_applied(self) -> None:
        """Rule 5: a read is served from the application, so only once it reached the index."""
        reads = self._reads_after_apply + self._out.reads
        self._out.reads = [r for r in reads if r.index <= self._applied]
        self._reads_after_apply = [r for r in reads if r.index > self._applied]

    def _release_reads(self) -> None:
        if not self._pending_reads:
            return
        waiting = []
        for read_id, index, seq in self._pending_reads:
            if seq <= self._confirmed_seq and index <= self._chosen_watermark:
                self._out.reads.append(ReadState(read_id=read_id, index=index, via_lease=False))
            else:
                waiting.append((read_id, index, seq))
        self._pending_reads = waiting

    def _maybe_compact(self, applied_before: int) -> None:
        """Drop slots the application already holds (applied by a Ready already returned)."""
        cfg = self.config
        held = applied_before - self._log_start + 1
        if held > cfg.compact_threshold:
            keep = cfg.compact_keep
        elif self._log_bytes > cfg.compact_threshold_bytes and held > 1:
            keep = min(cfg.compact_keep, held // 2)
        else:
            return
        new_start = applied_before - keep + 1
        floor = self._snapshot_hold_floor(new_start)
        if floor is not None and self._log_bytes <= 2 * cfg.compact_threshold_bytes:
            new_start = min(new_start, floor)
        if new_start <= self._log_start:
            return
        for slot in range(self._log_start, new_start):
            vote = self._log.pop(slot, None)
            if vote is not None:
                self._log_bytes -= _value_bytes(vote[1])
        self._log_start = new_start
        self._out.persist.log_start = new_start

    def _snapshot_hold_floor(self, new_start: int) -> int | None:
        """The lowest slot below `new_start` that a follower sent a snapshot still needs
        from the log (rule 11); None if none."""
        floor = None
        for peer, (index, sent_at) in list(self._snapshot_holds.items()):
            acked = self._peer_watermark.get(peer, -1)
            need = max(index, acked) + 1
            if (
                self._now - sent_at > self.config.snapshot_hold_s
                or (acked >= index and need >= new_start)
                or need < self._log_start  # already compacted past: holding keeps nothing
            ):
                del self._snapshot_holds[peer]  # gone, or installed and back on the log
                continue
            floor = need if floor is None else min(floor, need)
        return floor

    def _record_lease(self, lease_s: float) -> None:
        self._recorded_lease_s = lease_s
        self._out.persist.lease_promise_s = lease_s

    def _merge_persist(self, batch: PersistBatch) -> None:
        out = self._out.persist
        if batch.chosen_watermark is not None:
            out.chosen_watermark = max(out.chosen_watermark or 0, batch.chosen_watermark)
        if batch.log_start is not None:
            out.log_start = max(out.log_start or 0, batch.log_start)


def _value_bytes(value: Value) -> int:
    """The memory a held value accounts for (its commands plus a small fixed cost)."""
    return 64 + sum(map(len, value))


def _wire_bytes(value: Value) -> int:
    """The bytes of a slot's value in a message (a vote or an Accept entry), at most."""
    return VOTE_FRAMING_BYTES + sum(len(command) + COMMAND_FRAMING_BYTES for command in value)


def _promise_in_bounds(promise: Promise, last_slot: int) -> bool:
    """Rules 15 and 18: every vote of `promise` lies between its `from_slot` and `last_slot`,
    and below its `more_from` when it was cut there."""
    end = promise.more_from or last_slot + 1
    if end > last_slot + 1 or end <= promise.from_slot:
        return False
    return all(promise.from_slot <= e.slot < end for e in promise.accepted)


def _outranks(entry: AcceptedEntry, other: AcceptedEntry) -> bool:
    """Rule 3: a value known chosen wins; otherwise the higher ballot wins."""
    if entry.chosen != other.chosen:
        return entry.chosen
    return entry.ballot > other.ballot
