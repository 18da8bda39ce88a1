"""Fault schedules: partitions, one-way cuts, clogs, crashes (also in the middle of a Ready).

A schedule is plain data drawn from the world's RNG before the run starts, so it prints and
replays. Actions that name "the leader" resolve at run time (the adaptive nemesis of Jepsen's
"partition the leader"), deterministically, since the run is.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from world import REDELIVER_LOOKBACKS_S, CrashMode, describe_lookback


@dataclass(frozen=True, slots=True)
class Fault:
    """One scheduled fault. `target` 0 means "the current leader, else any up host"."""

    at: float
    kind: str
    target: int = 0
    other: int = 0
    sides: tuple[tuple[int, ...], ...] = ()
    duration: float = 0.0
    mode: str = CrashMode.POWER_LOSS
    phase: str = ""
    k: int = 0
    #: "redeliver": messages sent this long before are delivered again (0: any).
    lookback_s: float = 0.0

    def describe(self) -> str:
        parts = [f"{self.at:.3f}s {self.kind}"]
        if self.target:
            parts.append(f"host={self.target}")
        elif self.kind in ("crash", "crash_in_ready", "isolate", "pause"):
            parts.append("host=leader")
        if self.other:
            parts.append(f"other={self.other}")
        if self.kind == "redeliver":
            parts.append(f"count={self.k} {describe_lookback(self.lookback_s)}")
        if self.sides:
            parts.append("sides=" + "|".join(",".join(map(str, s)) for s in self.sides))
        if self.duration:
            parts.append(f"for={self.duration:.3f}s")
        if self.kind.startswith("crash") or self.kind == "pause":
            parts.append(f"mode={self.mode}")
        if self.phase:
            parts.append(f"phase={self.phase}/{self.k}")
        return " ".join(parts)


@dataclass(frozen=True, slots=True, kw_only=True)
class FaultMix:
    """Relative weights of fault kinds, and how many faults per second of chaos."""

    rate_per_s: float = 4.0
    partition: float = 0.0
    cut: float = 0.0
    isolate: float = 0.0
    clog: float = 0.0
    heal: float = 0.0
    crash: float = 0.0
    crash_in_ready: float = 0.0
    crash_all: float = 0.0
    #: The leader hands leadership to `target` (Replica.transfer_leadership).
    transfer: float = 0.0
    #: Stop a host's loop for a while (SIGSTOP, GC or fsync stall).
    pause: float = 0.0
    #: Cut the leader from one replica only, then restart a replica that still hears both
    #: quickly: the restarted bridge must not promise the cut-off candidate inside the lease.
    lease_attack: float = 0.0
    #: `lease_attack` whose bridge restarts with a shorter lease than it promised before
    #: (GroupSim's `mixed_leases` profile): its restart must still wait out the longer one.
    lease_shrink: float = 0.0
    #: For a while, messages on one link (or all links from the leader) take up to 0.4 s
    #: longer: later messages overtake them.
    slow: float = 0.0
    #: Slow every link out of the leader, then hand leadership over: the transfer may time
    #: out while its heartbeats are still on the way.
    slow_transfer: float = 0.0
    #: Crash the leader in the Ready that applies what it just got chosen (its followers
    #: have not heard the watermark yet), restarting it soon: leader churn over in-flight
    #: slots, where Phase 1 must pick the highest-ballot value per slot.
    leader_churn: float = 0.0
    #: Crash a replica in the next Ready that installs a snapshot (at a random point of it).
    crash_on_install: float = 0.0
    #: Cut the leader from one replica (which campaigns, refused by the others' lease
    #: promises), then isolate the leader one lease duration before that replica's next
    #: campaign: the promises expire just in time for it; the old lease must be over too.
    lease_race: float = 0.0
    #: A follower loses its disk (a replaced drive) and restarts with nothing, rebuilding
    #: (replica rule 14); then, half the time, the leader is isolated soon after, so that an
    #: election may need the rebuilt replica while it knows little.
    lose_disk: float = 0.0
    #: Isolate the leader; once another replica leads (the old one has not noticed yet),
    #: replace the disk of the follower that elected it and move the partition so that
    #: only the old leader hears the rebuilding replica: its acks must not keep the old
    #: leader's lease or read-index rounds going (rule 14).
    stale_rebuild: float = 0.0
    #: For up to 0.5 s, every 5 ms, deliver again to each host a few of the messages sent to
    #: it in the last 0.02, 0.1 or 0.5 s or since the start (the network must keep them:
    #: `NetworkConfig.keep_sent`): Promises, Accepteds and acks of older ballots reach
    #: a leader or candidate of a newer one, whenever it is elected.
    redeliver: float = 0.0


# A paused host is stopped (SIGSTOP, a GC), or held by its disk: no cycle runs, but the
# loop re-sends the newest heartbeat round of each group it leads (shard/runtime.py
# `_sync_aside`).
PAUSE_STOPPED = "stopped"
PAUSE_HELD_BY_DISK = "held_by_disk"
PAUSE_MODES = (PAUSE_STOPPED, PAUSE_HELD_BY_DISK)

PHASES = ("start", "send", "persist", "after_persist", "send_after", "apply", "answer", "advance")


def plan_faults(
    rng: random.Random, mix: FaultMix, hosts: list[int], start: float, end: float
) -> list[Fault]:
    """Draw a fault schedule for [start, end)."""
    kinds = [
        (name, weight)
        for name, weight in (
            ("partition", mix.partition),
            ("cut", mix.cut),
            ("isolate", mix.isolate),
            ("clog", mix.clog),
            ("heal", mix.heal),
            ("crash", mix.crash),
            ("crash_in_ready", mix.crash_in_ready),
            ("crash_all", mix.crash_all),
            ("transfer", mix.transfer),
            ("pause", mix.pause),
            ("lease_attack", mix.lease_attack),
            ("lease_shrink", mix.lease_shrink),
            ("slow", mix.slow),
            ("slow_transfer", mix.slow_transfer),
            ("leader_churn", mix.leader_churn),
            ("crash_on_install", mix.crash_on_install),
            ("lease_race", mix.lease_race),
            ("lose_disk", mix.lose_disk),
            ("stale_rebuild", mix.stale_rebuild),
            ("redeliver", mix.redeliver),
        )
        if weight > 0
    ]
    faults: list[Fault] = []
    if not kinds or mix.rate_per_s <= 0:
        return faults
    names = [k for k, _ in kinds]
    weights = [w for _, w in kinds]
    t = start
    while True:
        t += rng.expovariate(mix.rate_per_s)
        if t >= end:
            break
        kind = rng.choices(names, weights)[0]
        target = rng.choice([0, *hosts])
        if kind == "partition":
            shuffled = list(hosts)
            rng.shuffle(shuffled)
            cut = rng.randint(1, len(hosts) - 1)
            sides = (tuple(sorted(shuffled[:cut])), tuple(sorted(shuffled[cut:])))
            faults.append(Fault(at=t, kind=kind, sides=sides))
        elif kind == "cut":
            a, b = rng.sample(hosts, 2)
            faults.append(Fault(at=t, kind=kind, target=a, other=b))
        elif kind == "isolate":
            faults.append(Fault(at=t, kind=kind, target=target))
        elif kind == "clog":
            a, b = rng.sample(hosts, 2)
            faults.append(Fault(at=t, kind=kind, target=a, other=b, duration=rng.uniform(0.05, 1)))
        elif kind == "heal":
            faults.append(Fault(at=t, kind=kind))
        elif kind == "crash":
            faults.append(
                Fault(
                    at=t,
                    kind=kind,
                    target=target,
                    mode=rng.choice(CrashMode.ALL),
                    duration=_downtime(rng),
                )
            )
        elif kind == "crash_in_ready":
            phase = rng.choice(PHASES)
            faults.append(
                Fault(
                    at=t,
                    kind=kind,
                    target=target,
                    mode=rng.choice(CrashMode.ALL),
                    duration=_downtime(rng),
                    phase=phase,
                    k=rng.randint(0, 3),
                )
            )
        elif kind == "pause":
            mode = rng.choice(PAUSE_MODES)
            faults.append(Fault(at=t, kind=kind, target=target, duration=_downtime(rng), mode=mode))
        elif kind == "lease_race":
            faults.append(
                Fault(
                    at=t,
                    kind=kind,
                    duration=rng.uniform(0.2, 0.5),
                    k=rng.randint(0, 1000),
                    other=rng.randint(0, 20),
                )
            )
        elif kind in ("lease_attack", "lease_shrink"):
            faults.append(
                Fault(
                    at=t,
                    kind=kind,
                    duration=rng.uniform(0.2, 0.5),
                    mode=rng.choice(CrashMode.ALL),
                    k=rng.randint(0, 1000),
                )
            )
        elif kind == "redeliver":
            lookback = rng.choice(REDELIVER_LOOKBACKS_S)
            window = rng.uniform(0.05, 0.5)
            faults.append(
                Fault(at=t, kind=kind, k=rng.randint(1, 3), duration=window, lookback_s=lookback)
            )
        elif kind == "stale_rebuild":
            faults.append(Fault(at=t, kind=kind, duration=rng.uniform(0.02, 0.1)))
        elif kind == "lose_disk":
            faults.append(
                Fault(
                    at=t,
                    kind=kind,
                    duration=_downtime(rng),
                    other=rng.randint(0, 1),
                    k=rng.randint(0, 1000),
                )
            )
        elif kind == "slow":
            a, b = rng.sample(hosts, 2)
            faults.append(
                Fault(
                    at=t,
                    kind=kind,
                    target=rng.choice([0, a]),
                    other=b,
                    duration=rng.uniform(0.02, 0.3),
                    k=rng.choice([50, 150, 400]),
                )
            )
        elif kind == "leader_churn":
            faults.append(
                Fault(
                    at=t,
                    kind="crash_in_ready",
                    target=0,
                    mode=rng.choice(CrashMode.ALL),
                    duration=rng.uniform(0.0, 0.3),
                    phase=rng.choice(("apply", "answer", "advance", "send")),
                    k=rng.randint(0, 2),
                )
            )
        elif kind == "crash_on_install":
            faults.append(
                Fault(
                    at=t,
                    kind=kind,
                    target=rng.choice(hosts),
                    mode=rng.choice(CrashMode.ALL),
                    duration=_downtime(rng),
                    phase=rng.choice(("persist", "after_persist", "apply", "answer", "advance")),
                    k=rng.randint(0, 2),
                )
            )
        elif kind == "slow_transfer":
            faults.append(
                Fault(
                    at=t,
                    kind=kind,
                    target=rng.choice(hosts),
                    duration=rng.uniform(0.05, 0.3),
                    k=rng.choice([150, 400]),
                )
            )
        elif kind == "transfer":
            faults.append(Fault(at=t, kind=kind, target=rng.choice(hosts)))
        elif kind == "crash_all":
            faults.append(
                Fault(at=t, kind=kind, mode=rng.choice(CrashMode.ALL), duration=_downtime(rng))
            )
    return faults


def _downtime(rng: random.Random) -> float:
    # Mostly short (a restart inside a lease or an election timeout), sometimes long.
    return rng.choice([rng.uniform(0.0, 0.05), rng.uniform(0.05, 0.4), rng.uniform(0.4, 1.5)])
