"""Replica configuration, validated before use."""

from __future__ import annotations

from dataclasses import dataclass

#: The largest pipeline window a node may use, and the length of every election fence.
MAX_PIPELINE_WINDOW = 64
#: The longest lease a replica may hold, and the most a follower takes of a leader's said
#: remaining lease (`Heartbeat.lease_remaining_s`): a peer's figure is recorded durably and
#: blocks elections after each restart (rule 6 of paxos.replica), so it is bounded.
MAX_LEASE_S = 60.0
#: The largest `max_batch_bytes`: a slot, an Accept message (paxos.replica cuts them at
#: max_batch_bytes) and a catch-up reply stay far within the 64 MiB of a peer message.
MAX_SLOT_BYTES = 8 * 1024 * 1024
#: What a vote costs in a Promise beyond its commands' bytes, counted by rule 18 of
#: paxos.replica: per vote (slot, ballot, flags, framing) and per command (its field tag
#: and length), at most.
VOTE_FRAMING_BYTES = 48
COMMAND_FRAMING_BYTES = 6


@dataclass(frozen=True, slots=True, kw_only=True)
class ReplicaConfig:
    """Timing, batching and compaction settings of one replica.

    Times are seconds of the monotonic clock the driver passes to `tick(now)`.
    """

    node_id: int
    voters: tuple[int, ...]
    #: A follower that hears no leader for a random time in [min, max) campaigns.
    election_timeout_min_s: float = 0.15
    election_timeout_max_s: float = 0.30
    #: The leader's heartbeat period; must be well below election_timeout_min_s.
    heartbeat_interval_s: float = 0.05
    #: How long a follower promises not to support another leader after hearing this one.
    #: Must not exceed election_timeout_min_s, or followers would refuse every candidate.
    lease_duration_s: float = 0.12
    #: Subtracted from the leader's lease: clock-rate drift plus processing delays.
    lease_drift_s: float = 0.02
    #: Most commands and bytes one slot (one chosen value) may carry.
    max_batch_count: int = 1024
    max_batch_bytes: int = 4 * 1024 * 1024
    #: Most slots a leader has in flight (proposed, not yet chosen) at once; at most
    #: MAX_PIPELINE_WINDOW, which every node's election fence covers whatever its own setting.
    pipeline_window: int = 32
    #: Most bytes of commands a leader's own slots in flight hold at once (a new slot may
    #: pass it by one slot; at least one slot always goes). Every slot in flight may travel
    #: in one message (a re-sent Accept, the promises of the next election), and a peer
    #: message carries at most 64 MiB: counted in slots alone, a window of 32 full slots
    #: was 128 MiB.
    max_inflight_bytes: int = 16 * 1024 * 1024
    #: Most bytes of votes one promise message carries, counted as encoded (rule 18 of
    #: paxos.replica), or one vote if that is more: past it, the promise goes in parts the
    #: candidate asks for one by one. Each part must come well within an election timeout,
    #: and before the candidate asks again (two heartbeat intervals): measured
    #: (bench/promise_parts.py), a part of 1 MiB of 300-byte votes takes about 35 ms to
    #: build, encode and decode, one of 43 MiB 1.6 s (the one promise of before came after
    #: its candidate had given up).
    max_promise_bytes: int = 1024 * 1024
    #: Most chosen slots sent in one catch-up reply (which also stops at max_batch_bytes).
    catchup_max_slots: int = 256
    #: Most bytes of chosen values one Ready hands to the application (at least one slot), so
    #: a replica with a backlog (a follower catching up) applies it over several Readies
    #: instead of holding its driver for one; reads wait until their index is applied.
    max_apply_bytes: int = 256 * 1024
    #: Compact the log once this many applied slots are held; keep the newest `compact_keep`.
    compact_threshold: int = 5_000
    compact_keep: int = 500
    #: Also compact once the held log exceeds this many bytes (big batches), keeping at most
    #: half of the applied slots held, so memory stays bounded whatever the batch size.
    compact_threshold_bytes: int = 64 * 1024 * 1024
    #: How long a leader keeps the log a follower needs after the snapshot it sent it (rule
    #: 11 of paxos.replica): its transfer and paced restore, then catch-up from the log.
    snapshot_hold_s: float = 30.0
    #: Thrifty Paxos: send a new slot's Accept only to the quorum's worth of followers that
    #: acknowledged most recently; the others learn chosen slots in bulk by catch-up (one
    #: message per heartbeat instead of one per slot). A slot still unchosen after a
    #: heartbeat interval is re-sent to every follower that has not voted, so a slow or dead
    #: follower costs one heartbeat interval, once.
    thrifty_accepts: bool = True
    #: After Phase 1, also fill the MAX_PIPELINE_WINDOW slots past the highest one the
    #: promises show with no-ops, and serve no lease read before they are chosen. A command
    #: was first proposed at most a pipeline window past a slot chosen at the time (which
    #: every promise quorum sees; recovery re-proposes commands only at their own slots), so
    #: none of an older ballot can be chosen later behind this leader's reads. A fixed length,
    #: not this node's window: nodes may be configured differently. Consensus does not need
    #: it; an application whose commands carry a timestamp fixed at proposal time does (the
    #: shard's snapshot reads: a recovered old command keeps its timestamp).
    election_fence: bool = False
    #: Pre-vote (rule 13 of paxos.replica; the Raft thesis §9.6, etcd's PreVote): before a
    #: campaign raises its round, ask the peers whether they would promise it; campaign only
    #: if a quorum would. A replica cut off from its group then never raises its round, so
    #: its return disturbs no leader.
    pre_vote: bool = True

    def validate(self) -> None:
        """Raise ValueError naming the first bad field."""
        if self.node_id <= 0:
            raise ValueError(f"node_id must be positive, got {self.node_id}")
        if len(set(self.voters)) != len(self.voters) or not self.voters:
            raise ValueError(f"voters must be non-empty and distinct, got {self.voters}")
        if self.node_id not in self.voters:
            raise ValueError(f"node_id {self.node_id} is not among voters {self.voters}")
        if not 0 < self.election_timeout_min_s < self.election_timeout_max_s:
            raise ValueError(
                "election_timeout_min_s must be positive and below election_timeout_max_s"
            )
        if not 0 < self.heartbeat_interval_s < self.election_timeout_min_s:
            raise ValueError("heartbeat_interval_s must be positive and below the election timeout")
        if not 0 <= self.lease_drift_s < self.lease_duration_s <= self.election_timeout_min_s:
            raise ValueError("need 0 <= lease_drift_s < lease_duration_s <= election_timeout_min_s")
        if self.lease_duration_s > MAX_LEASE_S:
            raise ValueError(f"lease_duration_s must be at most {MAX_LEASE_S:g}")
        if self.max_batch_count < 1 or self.max_batch_bytes < 1:
            raise ValueError("max_batch_count and max_batch_bytes must be at least 1")
        if self.max_batch_bytes > MAX_SLOT_BYTES:
            raise ValueError(f"max_batch_bytes must be at most {MAX_SLOT_BYTES}")
        if not 1 <= self.pipeline_window <= MAX_PIPELINE_WINDOW:
            raise ValueError(f"pipeline_window must be between 1 and {MAX_PIPELINE_WINDOW}")
        if self.max_inflight_bytes < 1:
            raise ValueError("max_inflight_bytes must be at least 1")
        if self.max_promise_bytes < 1:
            raise ValueError("max_promise_bytes must be at least 1")
        if self.catchup_max_slots < 1:
            raise ValueError("catchup_max_slots must be at least 1")
        if self.max_apply_bytes < 1:
            raise ValueError("max_apply_bytes must be at least 1")
        if not 0 < self.compact_keep < self.compact_threshold:
            raise ValueError("need 0 < compact_keep < compact_threshold")
        if self.compact_threshold_bytes < 1:
            raise ValueError("compact_threshold_bytes must be at least 1")

    @property
    def quorum(self) -> int:
        return len(self.voters) // 2 + 1
