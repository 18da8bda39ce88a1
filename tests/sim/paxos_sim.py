"""Seeded whole-group simulations: a workload, a fault schedule, the checkers, a verdict.

`run_group(profile, seed)` builds a `World` from `random.Random(seed)`, draws the knobs of
the profile (group size, network loss, fault mix, clock rates, batching, compaction) and a
fault schedule, then runs three phases in virtual time:

1. chaos: clients write and read registers while the nemesis partitions, cuts, clogs and
   crashes (also in the middle of executing a Ready); every event is checked (agreement,
   validity, integrity, at most one lease holder);
2. heal: the network heals, every crashed replica restarts, then probe writes and reads are
   submitted; each must complete within `TERMINATION_BOUND_S` of virtual time, and every
   replica must converge on the same applied log;
3. verdict: acknowledged writes are all in the log, the history linearizes, every read
   returned what the log says.

A failure raises `SafetyViolation` (or `LivenessViolation`) with the replay command in its
notes: `PAXOS_SIM_SEED=<profile>:<seed> python -m pytest tests/sim -k replay`.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field, replace

from checkers import (
    GroupOracle,
    SafetyViolation,
    check_linearizable,
    check_read_values,
)
from nemesis import PAUSE_HELD_BY_DISK, Fault, FaultMix, plan_faults
from paxos_group import (
    CrashPlan,
    Listener,
    PaxosHost,
    ReadOp,
    WriteOp,
    leader_of,
    new_group_disk,
)
from world import CrashMode, HostTiming, NetworkConfig, Stats, World

from paxos import Message, PersistBatch, ReplicaConfig, Role, Value
from paxos.messages import Promise
from shard.runtime import SYNC_COVER_ELECTION_TIMEOUTS

TERMINATION_BOUND_S = 5.0
REPLAY_HINT = (
    "PAXOS_SIM_SEED={profile}:{seed} python -m pytest tests/sim/test_paxos_properties.py -k replay"
)


class LivenessViolation(AssertionError):
    """Termination failed: a majority was up and connected, yet a request did not complete."""


# ---------------------------------------------------------------------- knobs


@dataclass(slots=True, kw_only=True)
class Knobs:
    """Everything a profile draws; printed with a failing seed."""

    voters: tuple[int, ...] = (1, 2, 3)
    net: NetworkConfig = field(default_factory=NetworkConfig)
    faults: FaultMix = field(default_factory=FaultMix)
    chaos_s: float = 2.0
    rates: tuple[float, ...] = ()
    timing: HostTiming = field(default_factory=HostTiming)
    replica: dict[str, object] = field(default_factory=dict)
    #: Closed-loop clients: each waits for its operation, thinks, then issues the next.
    clients: int = 6
    think_s: float = 0.01
    write_share: float = 0.65
    keys: int = 3
    heal_drop: float | None = None
    #: Per replica, settings over `replica`: nodes configured differently, as during a
    #: rolling change of the setting.
    per_node: dict[int, dict[str, object]] = field(default_factory=dict)
    #: A restarted replica takes a newly drawn lease setting (the rolling change itself).
    new_lease_on_restart: bool = False

    def describe(self) -> str:
        return (
            f"voters={self.voters} net={self.net} faults={self.faults} chaos={self.chaos_s}s "
            f"rates={self.rates} timing={self.timing} replica={self.replica} "
            f"per_node={self.per_node} new_lease_on_restart={self.new_lease_on_restart} "
            f"clients={self.clients} think={self.think_s}s writes={self.write_share}"
        )


PROFILES = (
    "churn",
    "lossy",
    "partitions",
    "crashes",
    "compaction",
    "clocks",
    "leadership",
    "chaos",
    "calm",
    "rebuild",
    "rebuild_stale",
    "redeliver",
    "parts",
    "mixed_leases",
)

#: The lease settings the `mixed_leases` profile draws from, each with election timeouts
#: that allow it (a lease at most the shortest election timeout).
LEASE_SETTINGS = (
    {"lease_duration_s": 0.06, "election_timeout_min_s": 0.15, "election_timeout_max_s": 0.3},
    {"lease_duration_s": 0.12, "election_timeout_min_s": 0.15, "election_timeout_max_s": 0.3},
    {"lease_duration_s": 0.4, "election_timeout_min_s": 0.45, "election_timeout_max_s": 0.9},
)


def draw_knobs(profile: str, rng: random.Random) -> Knobs:
    """The knobs of one run of `profile` (all randomness from `rng`)."""
    if profile not in PROFILES:
        raise ValueError(f"unknown profile {profile!r}; choose from {PROFILES}")
    n = rng.choice((3, 3, 5))
    voters = tuple(range(1, n + 1))
    k = Knobs(voters=voters)
    k.rates = tuple(1.0 for _ in voters)
    batch = rng.choice((1, 3, 1024))
    k.replica = {
        "max_batch_count": batch,
        "pipeline_window": rng.choice((1, 4, 32)),
        "thrifty_accepts": rng.random() < 0.75,
        # Derived, not drawn, so that the seeds of earlier runs keep their schedules.
        "election_fence": batch == 1024,
        # One slot per Ready: reads wait for the apply to reach them (rule 5).
        "max_apply_bytes": 1 if batch == 3 else 256 * 1024,
    }
    # Pre-vote (rule 13) in two runs of three; without it rule 12 carries the rejoins.
    k.replica["pre_vote"] = k.replica["pipeline_window"] != 4
    if profile == "calm":
        k.faults = FaultMix(rate_per_s=0)
        return k
    if profile in ("lossy", "chaos"):
        k.net = NetworkConfig(
            drop=rng.choice((0.01, 0.05, 0.2)),
            duplicate=rng.choice((0.0, 0.05, 0.2)),
            delay_max_s=rng.choice((0.001, 0.005, 0.03)),
            long_delay=rng.choice((0.0, 0.02, 0.1)),
            long_delay_max_s=rng.choice((0.1, 0.4)),
        )
    else:
        k.net = NetworkConfig(
            drop=rng.choice((0.0, 0.01)),
            duplicate=rng.choice((0.0, 0.01)),
            delay_max_s=rng.choice((0.001, 0.004)),
            long_delay=rng.choice((0.0, 0.005)),
        )
    if profile == "lossy":
        k.faults = FaultMix(rate_per_s=2, clog=1, heal=1, cut=0.5, transfer=1)
    elif profile == "partitions":
        k.faults = FaultMix(
            rate_per_s=5,
            partition=3,
            cut=2,
            isolate=3,
            clog=1,
            heal=3,
            transfer=1,
            pause=1,
            lease_attack=2,
            lease_race=2,
        )
    elif profile == "crashes":
        # Uneven delays: a crashed replica's vote is often the one that completed a quorum.
        k.net = NetworkConfig(
            drop=rng.choice((0.0, 0.02)),
            delay_max_s=rng.choice((0.002, 0.01)),
            long_delay=rng.choice((0.02, 0.1)),
            long_delay_max_s=0.05,
        )
        k.faults = FaultMix(
            rate_per_s=5, crash=2, crash_in_ready=4, crash_all=0.5, heal=0.5, pause=1
        )
    elif profile == "compaction":
        k.replica["compact_threshold"] = rng.choice((4, 8, 16))
        k.replica["compact_keep"] = rng.choice((1, 2, 3))
        k.replica["catchup_max_slots"] = rng.choice((1, 4, 256))
        if rng.random() < 0.4:
            # Compaction by held bytes (a slot holds 64 bytes plus its commands).
            k.replica["compact_threshold"] = 1000
            k.replica["compact_threshold_bytes"] = rng.choice((300, 2000))
        k.faults = FaultMix(
            rate_per_s=5,
            partition=2,
            isolate=2,
            crash=1,
            crash_in_ready=3,
            heal=2,
            clog=1,
            crash_on_install=3,
        )
    elif profile == "clocks":
        # Clock rates within the lease drift margin (lease 0.12 s, drift 0.02 s: ratio < 1.2),
        # a coarse tick (the core may see a `now` one tick old while it steps), loop delays.
        k.rates = tuple(rng.uniform(0.95, 1.05) for _ in voters)
        k.timing = HostTiming(
            tick_interval_s=rng.choice((0.002, 0.01, 0.03)),
            wake_delay_max_s=rng.choice((0.0, 0.003, 0.015)),
            tick_on_message=rng.random() < 0.5,
            deliver_before_tick=rng.random() < 0.5,
        )
        k.faults = FaultMix(
            rate_per_s=6,
            isolate=2,
            partition=2,
            cut=1,
            clog=2,
            heal=2,
            crash=1,
            transfer=5,
            pause=1,
            lease_attack=4,
            lease_race=4,
        )
    elif profile in ("churn", "parts"):
        # Leaders die right after getting slots chosen, links are slow and lossy, pipelines
        # are deep: new leaders recover slots with different values at different ballots.
        k.voters = voters = (1, 2, 3)
        k.rates = (1.0, 1.0, 1.0)
        k.chaos_s = 6.0
        k.replica["max_batch_count"] = rng.choice((1, 4))
        k.replica["pipeline_window"] = rng.choice((8, 32))
        # Derived: the deep pipelines of 4-command slots are also held to a few commands'
        # bytes (rule 17); those of 1-command slots keep 32 slots in flight.
        deep_and_held = k.replica["pipeline_window"] == 32 and k.replica["max_batch_count"] == 4
        k.replica["max_inflight_bytes"] = 64 if deep_and_held else 1 << 24
        k.net = NetworkConfig(
            drop=rng.choice((0.05, 0.15)),
            delay_max_s=rng.choice((0.005, 0.02)),
            long_delay=rng.choice((0.05, 0.15)),
            long_delay_max_s=0.1,
        )
        k.faults = FaultMix(rate_per_s=8, leader_churn=5, slow=2, cut=1, isolate=1, heal=2, pause=1)
        if profile == "parts":
            _promises_in_parts(k, rng)
    elif profile == "leadership":
        # Leadership transfers under reordering: slow links let old heartbeats arrive late.
        # A lighter load: a leader only starts a transfer to a target close behind it.
        k.rates = tuple(rng.uniform(0.97, 1.03) for _ in voters)
        k.clients = 3
        k.think_s = rng.choice((0.02, 0.1))
        k.faults = FaultMix(
            rate_per_s=8,
            transfer=3,
            slow_transfer=5,
            slow=3,
            isolate=1,
            cut=1,
            heal=2,
            pause=1,
            lease_attack=1,
            crash=0.5,
        )
    elif profile == "rebuild":
        # Followers lose their disks and rebuild under load, while leaders crash, are cut
        # off and hand over; with compaction half the time, so rebuilds need snapshots.
        _compact_half_the_time(k, rng)
        k.faults = FaultMix(
            rate_per_s=4,
            lose_disk=3,
            crash=1,
            isolate=1,
            partition=1,
            heal=2,
            transfer=1,
            pause=0.5,
        )
    elif profile == "rebuild_stale":
        k.faults = FaultMix(rate_per_s=2, stale_rebuild=3, heal=1)
    elif profile == "redeliver":
        # Old messages delivered again among leader churn, elections and transfers: every
        # reply must be counted for the ballot it answers, never for a newer one.
        k.net = replace(k.net, keep_sent=True)
        k.faults = FaultMix(
            rate_per_s=10,
            redeliver=5,
            leader_churn=2,
            isolate=1,
            partition=1,
            transfer=1,
            crash=1,
            heal=2,
        )
    elif profile == "chaos":
        k.rates = tuple(rng.uniform(0.97, 1.03) for _ in voters)
        k.timing = HostTiming(
            tick_interval_s=rng.choice((0.002, 0.005, 0.01)),
            wake_delay_max_s=rng.choice((0.0, 0.002)),
            tick_on_message=rng.random() < 0.7,
            deliver_before_tick=rng.random() < 0.5,
        )
        _compact_half_the_time(k, rng)
        k.faults = FaultMix(
            rate_per_s=6,
            partition=2,
            cut=1,
            isolate=2,
            clog=1,
            heal=2,
            crash=1,
            crash_in_ready=2,
            crash_all=0.3,
            transfer=1,
            pause=1,
            lease_attack=1,
            slow=1,
        )
        k.heal_drop = 0.02
    elif profile == "mixed_leases":
        # Replicas with different leases and election timeouts (a rolling change of the
        # setting), changed again at restarts: a leader's lease must end before any replica
        # of the quorum that renewed it may promise another, whichever it is configured with,
        # and a replica restarted with a shorter lease must still wait out its longer
        # promises (replica rule 6).
        k.per_node = {n: dict(rng.choice(LEASE_SETTINGS)) for n in voters}
        k.new_lease_on_restart = True
        k.chaos_s = 4.0
        k.faults = FaultMix(
            rate_per_s=6,
            isolate=3,
            partition=2,
            cut=1,
            clog=1,
            heal=2,
            crash=2,
            crash_all=0.3,
            transfer=1,
            pause=1,
            lease_attack=2,
            lease_shrink=4,
            lease_race=3,
        )
    return k


def _promises_in_parts(k: Knobs, rng: random.Random) -> None:
    """Promise parts of 2-5, 8-20 or 35-85 votes: Phase 1 asks for many promises part by
    part (replica rule 18), while leaders die, links drop and old messages come again, so
    parts are lost, copied, stale, asked under ballots given up, and merged across
    promisers."""
    k.replica["max_promise_bytes"] = rng.choice((256, 1024, 4096))
    k.net = replace(k.net, keep_sent=True)
    k.faults = replace(k.faults, redeliver=2)


def _compact_half_the_time(k: Knobs, rng: random.Random) -> None:
    """Small compaction thresholds in half the runs, so that catching up needs snapshots."""
    if rng.random() < 0.5:
        k.replica["compact_threshold"] = rng.choice((6, 20))
        k.replica["compact_keep"] = rng.choice((1, 4))


# ---------------------------------------------------------------------- clients


@dataclass(slots=True, kw_only=True)
class Logical:
    """A client-level operation, retried with fresh attempts until it completes."""

    key: bytes
    is_write: bool
    start: float
    probe: bool
    client: int = -1
    attempts: list[WriteOp | ReadOp] = field(default_factory=list)
    done_at: float | None = None
    gave_up: bool = False


class GroupSim(Listener):
    """One simulated Paxos group with clients, a nemesis and the checkers."""

    ATTEMPT_TIMEOUT_S = 0.6
    MAX_ATTEMPTS = 40

    def __init__(
        self,
        profile: str,
        seed: int,
        knobs: Knobs | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.profile = profile
        self.seed = seed
        self.rng = rng if rng is not None else random.Random(seed)
        self.knobs = knobs if knobs is not None else draw_knobs(profile, self.rng)
        k = self.knobs
        self.world = World(self.rng, k.net)
        self.oracle = GroupOracle(quorum=len(k.voters) // 2 + 1)
        self.hosts: dict[int, PaxosHost] = {}
        for node_id, rate in zip(k.voters, k.rates, strict=True):
            settings = {**k.replica, **k.per_node.get(node_id, {})}
            config = ReplicaConfig(node_id=node_id, voters=k.voters, **settings)  # type: ignore[arg-type]
            self.hosts[node_id] = PaxosHost(self.world, config, k.timing, self, rate=rate)
        self.writes: list[WriteOp] = []
        self.reads: list[ReadOp] = []
        self.logical: list[Logical] = []
        self._logical_of: dict[int, Logical] = {}
        self._next_op = 0
        self._guess: int | None = None
        self.faults: list[Fault] = []
        self.fault_log: list[str] = []
        #: The lease setting a host takes at its next restart (`lease_shrink`).
        self._next_lease: dict[int, dict[str, float]] = {}
        self.healed_at: float | None = None
        self.stats = Stats()
        host_list = list(self.hosts.values())
        oracle = self.oracle
        self.world.observers.append(lambda: oracle.check_leases(host_list))

    # ------------------------------------------------------------------ Listener

    def on_persist(self, host: PaxosHost, batch) -> None:  # type: ignore[no-untyped-def]
        self.oracle.on_persist(host, batch)

    def on_send(self, host: PaxosHost, msg: Message) -> None:
        self.oracle.on_send(host, msg)
        if isinstance(msg, Promise) and msg.more_from:
            self.stats.add("promise_parts_cut")

    def on_apply(self, host: PaxosHost, slot: int, value: Value) -> None:
        self.oracle.on_apply(host, slot, value)

    def on_restore(self, host: PaxosHost, index: int, log: list[tuple[int, Value]]) -> None:
        self.oracle.on_restore(host, index, log)
        self.stats.add("snapshot_installs")

    def on_boot(self, host: PaxosHost) -> None:
        self.oracle.on_boot(host)

    def on_crash_point(self, host: PaxosHost, phase: str) -> None:
        self.stats.add(f"crash@{phase}")

    def on_leader(self, host: PaxosHost) -> None:
        self.stats.add("elections")

    def on_write_done(self, op: WriteOp, hint: int | None) -> None:
        self.oracle.on_write_done(op)
        logical = self._logical_of.get(op.op_id)
        if logical is None or logical.done_at is not None or logical.gave_up:
            return
        if op.status == "acked":
            logical.done_at = self.world.now
            self._guess = op.host
            self._finished(logical)
            return
        if logical.attempts[-1] is not op:
            return  # an older attempt; a newer one is in flight
        self._retry(logical, hint)

    def on_read_done(self, op: ReadOp, hint: int | None) -> None:
        logical = self._logical_of.get(op.op_id)
        if logical is None or logical.done_at is not None or logical.gave_up:
            return
        if op.status == "served":
            logical.done_at = self.world.now
            self._guess = op.host
            self._finished(logical)
            return
        if logical.attempts[-1] is not op:
            return
        self._retry(logical, hint)

    # ------------------------------------------------------------------ clients

    def _retry(self, logical: Logical, hint: int | None) -> None:
        if len(logical.attempts) >= self.MAX_ATTEMPTS and not logical.probe:
            logical.gave_up = True
            self._finished(logical)
            return
        if hint is not None:
            self._guess = hint
        else:
            self._guess = None
        delay = self.rng.uniform(0.001, 0.01 if hint is not None else 0.03)
        self.world.schedule(self.world.now + delay, self._attempt, logical)

    def start_op(self, is_write: bool, probe: bool = False, client: int = -1) -> Logical:
        key = b"k%d" % self.rng.randrange(self.knobs.keys)
        logical = Logical(
            key=key, is_write=is_write, start=self.world.now, probe=probe, client=client
        )
        self.logical.append(logical)
        self._attempt(logical)
        return logical

    def _attempt(self, logical: Logical) -> None:
        if logical.done_at is not None or logical.gave_up:
            return
        target = self._guess
        if target is None or not self.hosts[target].up:
            up = [h for h in sorted(self.hosts) if self.hosts[h].up]
            target = self.rng.choice(up) if up else self.rng.choice(sorted(self.hosts))
        host = self.hosts[target]
        self._next_op += 1
        op_id = self._next_op
        now = self.world.now
        op: WriteOp | ReadOp
        if logical.is_write:
            command = logical.key + b"=v%d" % op_id
            op = WriteOp(op_id=op_id, command=command, host=target, invoke=now, probe=logical.probe)
            self.oracle.submitted[command] = op
            self.writes.append(op)
        else:
            op = ReadOp(op_id=op_id, key=logical.key, host=target, invoke=now)
            self.reads.append(op)
        logical.attempts.append(op)
        self._logical_of[op_id] = logical
        if not host.up:
            # Connection refused: certainly not proposed.
            op.status = "rejected" if isinstance(op, WriteOp) else "lost"
            self._guess = None
            self._retry(logical, None)
            return
        host.submit(op)
        self.world.schedule(now + self.ATTEMPT_TIMEOUT_S, self._check_timeout, logical, op)

    def _check_timeout(self, logical: Logical, op: WriteOp | ReadOp) -> None:
        if logical.done_at is not None or logical.gave_up or logical.attempts[-1] is not op:
            return
        if op.status == "pending":
            # Give up waiting on this attempt (it may still complete) and try elsewhere.
            self._guess = None
            self._retry(logical, None)

    def _client_step(self, client: int) -> None:
        if self.healed_at is not None:
            return
        is_write = self.rng.random() < self.knobs.write_share
        self.start_op(is_write, client=client)

    def _finished(self, logical: Logical) -> None:
        if logical.client >= 0 and self.healed_at is None:
            think = self.rng.expovariate(1 / self.knobs.think_s) if self.knobs.think_s else 0.0
            self.world.schedule(self.world.now + think, self._client_step, logical.client)

    # ------------------------------------------------------------------ nemesis

    def _apply_fault(self, fault: Fault) -> None:
        world = self.world
        if self.healed_at is not None:
            return
        self.fault_log.append(fault.describe())
        net = world.net
        if fault.kind == "partition":
            net.partition(*fault.sides)
        elif fault.kind == "cut":
            net.cut(fault.target, fault.other)
        elif fault.kind == "isolate":
            net.isolate(self._resolve(fault.target))
        elif fault.kind == "clog":
            net.clog(fault.target, fault.other, world.now + fault.duration)
        elif fault.kind == "heal":
            net.heal()
        elif fault.kind == "crash":
            self._crash(self.hosts[self._resolve(fault.target)], fault.mode, fault.duration)
        elif fault.kind in ("crash_in_ready", "crash_on_install"):
            host = self.hosts[self._resolve(fault.target)]
            if host.up:
                on_snapshot = fault.kind == "crash_on_install"
                host.crash_plan = CrashPlan(fault.phase, fault.k, fault.mode, on_snapshot)
                wait = 1.5 if on_snapshot else 0.5
                world.schedule(world.now + wait, self._restart_later, host, fault.duration)
        elif fault.kind == "slow":
            src = self._resolve(fault.target)
            dsts = [fault.other] if fault.target else [h for h in self.hosts if h != src]
            for dst in sorted(dsts):
                if dst != src:
                    net.slow(src, dst, world.now + fault.duration, fault.k / 1000)
        elif fault.kind == "pause":
            host = self.hosts[self._resolve(fault.target)]
            if host.up:
                host.pause(world.now + fault.duration)
                if fault.mode == PAUSE_HELD_BY_DISK:
                    cover = SYNC_COVER_ELECTION_TIMEOUTS * host.config.election_timeout_max_s
                    until = world.now + min(fault.duration, cover / host.rate)
                    self._repeat_heartbeats(host, host.incarnation, until)
        elif fault.kind in ("lease_attack", "lease_shrink"):
            self._lease_attack(fault)
        elif fault.kind == "lease_race":
            self._lease_race(fault)
        elif fault.kind == "transfer":
            self._try_transfer(fault.target, 40)
        elif fault.kind == "slow_transfer":
            self._try_transfer(fault.target, 40, fault)
        elif fault.kind == "crash_all":
            for host_id in sorted(self.hosts):
                stagger = self.rng.uniform(0, 0.05)
                self._crash(self.hosts[host_id], fault.mode, fault.duration + stagger)
        elif fault.kind == "lose_disk":
            self._lose_disk(fault)
        elif fault.kind == "stale_rebuild":
            self._stale_rebuild(fault)
        elif fault.kind == "redeliver":
            net.redeliver_until(world.now + fault.duration, fault.k, fault.lookback_s)

    def _repeat_heartbeats(self, host: PaxosHost, incarnation: int, until: float) -> None:
        """A host held by its disk runs no cycle, but re-sends its newest heartbeat round
        once per heartbeat interval (shard/runtime.py `_sync_aside`), up to `until`."""
        world = self.world
        if host.incarnation != incarnation or not host.up or world.now >= until:
            return
        assert host.replica is not None
        for msg in host.replica.repeat_heartbeats():
            self.on_send(host, msg)
            world.net.send(host.id, msg.dst, msg)
        self.stats.add("repeated_heartbeat_rounds")
        interval = host.config.heartbeat_interval_s / host.rate
        world.schedule(world.now + interval, self._repeat_heartbeats, host, incarnation, until)

    def _try_transfer(self, target: int, attempts: int, slow: Fault | None = None) -> None:
        """Ask the leader to hand over to `target`; it refuses until the target is caught
        up, so retry every 5 ms for a while.

        With `slow`, once the transfer starts the target hears nothing from the leader until
        the transfer has timed out (a clog) and the other links from the leader are slow:
        the transfer's heartbeats arrive late and out of order, after the leader resumed.
        """
        if self.healed_at is not None:
            return
        leader = leader_of(list(self.hosts.values()))
        if (
            leader is not None
            and leader.replica is not None
            and leader.id != target
            and leader.replica.transfer_leadership(target)
        ):
            self.stats.add("transfers")
            if slow is not None:
                net = self.world.net
                now = self.world.now
                timeout = leader.config.election_timeout_max_s
                net.clog(leader.id, target, now + timeout + 0.02 + slow.duration / 4)
                for dst in sorted(self.hosts):
                    if dst not in (leader.id, target):
                        net.slow(leader.id, dst, now + slow.duration, slow.k / 1000)
            leader.request_wake(self.world.now)
            return
        if attempts > 1:
            self.world.schedule(
                self.world.now + 0.005, self._try_transfer, target, attempts - 1, slow
            )

    def _lease_race(self, fault: Fault) -> None:
        leader = leader_of(list(self.hosts.values()))
        if leader is None:
            return
        others = [h for h in sorted(self.hosts) if h != leader.id and self.hosts[h].up]
        if not others:
            return
        candidate = others[fault.k % len(others)]
        net = self.world.net
        net.cut(leader.id, candidate)
        net.cut(candidate, leader.id)
        at = self.world.now + fault.duration
        self.world.schedule(at, self._lease_race_strike, leader.id, candidate, fault.other)

    def _lease_race_strike(self, leader_id: int, candidate_id: int, jitter_ms: int) -> None:
        candidate = self.hosts[candidate_id]
        replica = candidate.replica
        if self.healed_at is not None or replica is None or not candidate.up:
            return
        local = max(replica._election_deadline, replica._lease_block_until)
        campaign_at = candidate.clock.to_world(local)
        lease = replica.config.lease_duration_s
        when = max(self.world.now, campaign_at - lease - jitter_ms / 1000)
        self.world.schedule(when, self._isolate_now, leader_id)

    def _isolate_now(self, host_id: int) -> None:
        if self.healed_at is None:
            self.world.net.isolate(host_id)

    def _lease_attack(self, fault: Fault) -> None:
        """Cut the leader from one replica (both ways), keep a bridge that hears both, then
        crash and quickly restart the bridge just before the cut-off replica campaigns."""
        leader = leader_of(list(self.hosts.values()))
        if leader is None:
            return
        others = [h for h in sorted(self.hosts) if h != leader.id and self.hosts[h].up]
        if len(others) < 2:
            return
        candidate = others[fault.k % len(others)]
        bridge = others[(fault.k // len(others)) % len(others)]
        if bridge == candidate:
            bridge = others[(others.index(candidate) + 1) % len(others)]
        shrink = fault.kind == "lease_shrink"
        shortest = LEASE_SETTINGS[0]["lease_duration_s"]
        if shrink and shortest in (
            leader.config.lease_duration_s,
            self.hosts[bridge].config.lease_duration_s,
        ):
            return  # the bridge's restart could shorten no lease it promised
        net = self.world.net
        net.cut(leader.id, candidate)
        net.cut(candidate, leader.id)
        at = self.world.now + fault.duration
        self.world.schedule(
            at, self._lease_attack_strike, leader.id, candidate, bridge, fault.mode, shrink
        )

    def _lease_attack_strike(
        self, leader_id: int, candidate_id: int, bridge_id: int, mode: str, shrink: bool
    ) -> None:
        # The nemesis may look inside: time the bridge's restart to land just before the
        # candidate's next campaign, while the leader's lease (renewed by the bridge) holds.
        candidate = self.hosts[candidate_id]
        replica = candidate.replica
        if self.healed_at is not None or replica is None or not candidate.up:
            return
        local = max(replica._election_deadline, replica._lease_block_until)
        # A shrinking bridge restarts one short lease earlier: a block of only the new
        # setting would have just ended when the candidate asks.
        early = LEASE_SETTINGS[0]["lease_duration_s"] if shrink else 0.0
        campaign_at = candidate.clock.to_world(local)
        when = max(self.world.now, campaign_at - early - self.rng.uniform(0, 0.01))
        self.world.schedule(when, self._lease_attack_bounce, leader_id, bridge_id, mode, shrink)

    def _lease_attack_bounce(self, leader_id: int, bridge_id: int, mode: str, shrink: bool) -> None:
        if self.healed_at is not None:
            return
        if shrink:
            self._next_lease[bridge_id] = LEASE_SETTINGS[0]
        # The bridge restarts and, for a moment, misses the leader's heartbeats: only its
        # restart lease block stands between the candidate and the leader's lease (a
        # shrinking one until the candidate's campaign has come).
        net = self.world.net
        net.cut(leader_id, bridge_id)
        self.world.schedule(
            self.world.now + (0.3 if shrink else 0.08), net.uncut, leader_id, bridge_id
        )
        self._crash(self.hosts[bridge_id], mode, 0.0005)

    def _lose_disk(self, fault: Fault) -> None:
        """A follower's disk is replaced: it restarts empty, rebuilding (replica rule 14).

        One at a time, while every other replica is up with its disk: two replicas rebuilding
        at once, or one rebuilding while another is down for good, is a lost majority in a
        3-replica group, which no protocol survives.
        """
        hosts = list(self.hosts.values())
        if any(
            not h.up or (h.replica is not None and h.replica.status().rebuilding) for h in hosts
        ):
            return
        leader = leader_of(hosts)
        followers = [h for h in hosts if h is not leader]
        victim = followers[fault.k % len(followers)]
        self.stats.add("disk_losses")
        victim.crash(CrashMode.POWER_LOSS)
        victim.disk = new_group_disk()
        victim.disk.write(("persist", PersistBatch(rebuilding=True)), sync=True)
        self.world.schedule(self.world.now + fault.duration, self._restart, victim)
        if fault.other and leader is not None:
            # Once the victim is back, cut the leader off: the next leader's Phase 1 may
            # need the rebuilt replica, which must not promise yet.
            at = self.world.now + fault.duration + 0.01
            self.world.schedule(at, self._isolate_unless_healed, leader.id)

    def _stale_rebuild(self, fault: Fault) -> None:
        hosts = list(self.hosts.values())
        if any(
            not h.up or (h.replica is not None and h.replica.status().rebuilding) for h in hosts
        ):
            return
        leader = leader_of(hosts)
        if leader is None:
            return
        self.world.net.heal()
        self.world.net.isolate(leader.id)
        self._stale_poll(leader.id, self.world.now + 1.0, fault.duration)

    def _stale_poll(self, old_id: int, deadline: float, run_s: float) -> None:
        if self.healed_at is not None or self.world.now > deadline:
            return
        new = [
            h
            for h in self.hosts.values()
            if h.id != old_id and h.up and h.replica is not None and h.replica.role is Role.LEADER
        ]
        if not new:
            self.world.schedule(self.world.now + 0.002, self._stale_poll, old_id, deadline, run_s)
            return
        # Let the new leader get writes chosen, then swap.
        self.world.schedule(self.world.now + run_s, self._stale_swap, old_id, new[0].id)

    def _stale_swap(self, old_id: int, new_id: int) -> None:
        if self.healed_at is not None:
            return
        old, new = self.hosts[old_id], self.hosts[new_id]
        if not (old.up and new.up) or old.replica is None or old.replica.role is not Role.LEADER:
            return
        victims = [h for h in self.hosts.values() if h.id not in (old_id, new_id) and h.up]
        if not victims:
            return
        victim = victims[0]
        self.stats.add("stale_rebuilds")
        victim.crash(CrashMode.POWER_LOSS)
        victim.disk = new_group_disk()
        victim.disk.write(("persist", PersistBatch(rebuilding=True)), sync=True)
        self.world.net.heal()
        self.world.net.partition([new_id], [h for h in self.hosts if h != new_id])
        self._restart(victim)

    def _isolate_unless_healed(self, host_id: int) -> None:
        if self.healed_at is None:
            self.world.net.isolate(host_id)

    def _resolve(self, target: int) -> int:
        if target:
            return target
        leader = leader_of(list(self.hosts.values()))
        if leader is not None:
            return leader.id
        up = [h for h in sorted(self.hosts) if self.hosts[h].up]
        return self.rng.choice(up) if up else 1

    def _crash(self, host: PaxosHost, mode: str, downtime: float) -> None:
        if not host.up:
            return
        host.crash(mode)
        self.world.schedule(self.world.now + downtime, self._restart, host)

    def _restart_later(self, host: PaxosHost, downtime: float) -> None:
        # An armed crash fires at the host's next Ready; restart it once it did.
        if host.up:
            host.crash_plan = None
            return
        self.world.schedule(self.world.now + downtime, self._restart, host)

    def _restart(self, host: PaxosHost) -> None:
        if not host.up:
            if self.knobs.new_lease_on_restart:
                setting = self._next_lease.pop(host.id, None) or self.rng.choice(LEASE_SETTINGS)
                host.config = replace(host.config, **setting)  # type: ignore[arg-type]
                self.fault_log.append(
                    f"t={self.world.now:.3f} restart {host.id} with lease "
                    f"{setting['lease_duration_s']}"
                )
            host.start()

    # ------------------------------------------------------------------ run

    def run(self) -> SimResult:
        try:
            return self._run()
        except Exception as exc:
            exc.add_note(f"replay: {REPLAY_HINT.format(profile=self.profile, seed=self.seed)}")
            exc.add_note(f"knobs: {self.knobs.describe()}")
            exc.add_note(f"at t={self.world.now:.6f}s; faults so far: {self.fault_log}")
            raise

    def _run(self) -> SimResult:
        k = self.knobs
        self.start_hosts()
        self.faults = plan_faults(self.rng, k.faults, sorted(self.hosts), 0.2, k.chaos_s)
        for fault in self.faults:
            self.world.schedule(fault.at, self._apply_fault, fault)
        self.start_clients()
        self.world.run_until(k.chaos_s)
        return self.heal_and_judge()

    def start_hosts(self) -> None:
        """Boot every replica within the first 10 ms."""
        for host_id in sorted(self.hosts):
            self.world.schedule(self.rng.uniform(0, 0.01), self.hosts[host_id].start)

    def start_clients(self) -> None:
        """Start the closed-loop clients; they stop at heal."""
        for client in range(self.knobs.clients):
            self.world.schedule(self.rng.uniform(0, 0.05), self._client_step, client)

    def apply_fault(self, fault: Fault) -> None:
        """Apply one fault now (for callers that drive the nemesis themselves)."""
        self._apply_fault(fault)

    def heal_and_judge(self) -> SimResult:
        """Phases 2 and 3: heal, check termination and convergence, judge the history."""
        world = self.world
        k = self.knobs
        # Heal: a majority (here: everyone) is up and connected from now on.
        self.healed_at = world.now
        world.net.heal()
        world.net.stop_keeping()
        if k.heal_drop is not None:
            world.net.config.drop = min(world.net.config.drop, k.heal_drop)
        for host_id in sorted(self.hosts):
            host = self.hosts[host_id]
            host.crash_plan = None
            host.paused_until = 0.0
            if not host.up:
                host.start()
        probes: list[Logical] = []
        for i in range(6):
            world.schedule(
                world.now + 0.05 * i,
                lambda w=(i % 3 != 2): probes.append(self.start_op(w, probe=True)),
            )
        deadline = self.healed_at + TERMINATION_BOUND_S

        def settled() -> bool:
            return (
                len(probes) == 6
                and all(p.done_at is not None for p in probes)
                and self._converged()
            )

        if not world.run_until(deadline, settled):
            late = [p for p in probes if p.done_at is None]
            raise LivenessViolation(
                f"termination: {len(late)} of {len(probes)} probes incomplete and "
                f"converged={self._converged()} {TERMINATION_BOUND_S}s after heal; "
                f"applied={ {h: self.hosts[h].app.index for h in sorted(self.hosts)} } "
                f"roles={ {h: self._role(h) for h in sorted(self.hosts)} }"
            )
        for probe in probes:
            assert probe.done_at is not None
            if probe.done_at - probe.start > TERMINATION_BOUND_S:
                raise LivenessViolation("termination: probe slower than the bound")
        # Let in-flight work drain a little so late acks are observed, then judge.
        world.run_until(world.now + 0.3)
        return self._verdict(probes)

    def _role(self, host_id: int) -> str:
        host = self.hosts[host_id]
        if not host.up or host.replica is None:
            return "down"
        return host.replica.role.value

    def _converged(self) -> bool:
        hosts = self.hosts.values()
        if not all(h.up for h in hosts):
            return False
        top = self.oracle.max_slot
        # A replica that lost its disk votes again (replica rule 14) before the run settles.
        return all(
            h.app.index == top and h.replica is not None and not h.replica.status().rebuilding
            for h in hosts
        )

    def _verdict(self, probes: list[Logical]) -> SimResult:
        oracle = self.oracle
        oracle.check_acked_durable(self.writes)
        # Every replica holds the same log, which contains every acknowledged write.
        log = dict(oracle.applied)
        for host in self.hosts.values():
            for slot, value in host.app.log:
                if log.get(slot) != value:
                    raise SafetyViolation(f"host {host.id} log differs at slot {slot}")
        checked = check_linearizable(log, self.writes, self.reads)
        check_read_values(log, self.reads)
        for op in self.writes:
            if op.status == "acked":
                assert op.slot is not None and op.command in log[op.slot]
        return SimResult(
            digest=self.world.digest(),
            slots=oracle.max_slot,
            acked=sum(1 for w in self.writes if w.status == "acked"),
            served=sum(1 for r in self.reads if r.status == "served"),
            lease_reads=sum(1 for r in self.reads if r.status == "served" and r.via_lease),
            linearized=checked,
            crashes=sum(h.crashes for h in self.hosts.values()),
            events=self.world.events_run,
            faults=len(self.fault_log),
            stats=dict(sorted(self.stats.counters.items())),
        )


@dataclass(frozen=True, slots=True)
class SimResult:
    digest: str
    slots: int
    acked: int
    served: int
    lease_reads: int
    linearized: int
    crashes: int
    events: int
    faults: int
    stats: dict[str, int]


def run_group(profile: str, seed: int) -> SimResult:
    """Run one seeded simulation of `profile`; raises on any violation."""
    return GroupSim(profile, seed).run()


def parse_replay(text: str) -> tuple[str, int]:
    """`profile:seed` (or a bare seed, for the chaos profile)."""
    if ":" in text:
        profile, seed = text.split(":", 1)
        return profile, int(seed)
    return "chaos", int(text)


__all__ = [
    "PROFILES",
    "GroupSim",
    "Knobs",
    "LivenessViolation",
    "SimResult",
    "draw_knobs",
    "parse_replay",
    "run_group",
]
