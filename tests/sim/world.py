"""A deterministic discrete-event world: virtual time, a seeded network, disks, hosts.

Theory of operation
-------------------
Everything runs in one thread, in virtual time. `World` keeps a heap of timed events and
jumps from one to the next (trio's autojumping `MockClock`, FoundationDB's `Sim2`); nothing
reads the wall clock or sleeps. The only source of randomness is `World.rng`, one
`random.Random` handed in by the caller (a seed, or Hypothesis's `st.randoms()`), so the same
seed gives the same run bit for bit. `World.digest()` hashes a trace of every delivery, wake and
fault, so a test can prove that.

The pieces are generic, so that later layers simulate whole nodes (many Paxos groups per
node) with the same world:

- `NodeClock`: each host reads a local monotonic clock `offset + rate * world.now`; the rate
  stays within a drift bound and the offset changes on every reboot (monotonic clocks restart).
- `SimNetwork`: `send(src, dst, payload)` never blocks and never raises. It drops, duplicates,
  delays and reorders at seeded rates, and supports symmetric partitions, one-way cuts,
  clogged links and heal (etcd `rafttest/network.go`, FDB `clogPair`); `redeliver` delivers
  again messages sent any time before (a copy held up anywhere, for any time).
- `SimDisk`: an ordered write log. A synced write makes itself and every earlier write durable
  (RocksDB's single WAL). A crash keeps the durable prefix plus, depending on the crash mode,
  none, all or a random prefix of the unsynced writes: power loss, `kill -9` (the page cache
  survives) or a torn tail.
- `Host`: a process with an inbox, a local clock and a disk. The world wakes it on its tick
  timer and when messages arrive; `crash()` bumps its incarnation so that every pending timer
  and delivery of the old incarnation is ignored, and `restart()` boots it from its disk.
  Subclasses implement `boot()` (rebuild memory from disk) and `on_wake(timer)`.
"""

from __future__ import annotations

import bisect
import hashlib
import heapq
import random
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from typing import Any, Generic, TypeVar

__all__ = [
    "CrashMode",
    "Host",
    "NetworkConfig",
    "NodeClock",
    "SimDisk",
    "SimNetwork",
    "World",
]

S = TypeVar("S")
R = TypeVar("R")


class World:
    """The virtual clock, the event heap, the single RNG, the hosts and the network."""

    def __init__(self, rng: random.Random, net_config: NetworkConfig | None = None) -> None:
        self.rng = rng
        self.now = 0.0
        self._heap: list[tuple[float, int, Callable[..., None], tuple[Any, ...]]] = []
        self._seq = 0
        self.hosts: dict[int, Host] = {}
        self.net = SimNetwork(self, net_config or NetworkConfig())
        self._trace: list[tuple[Any, ...]] = []
        #: Called after every event with no argument: invariant checks (hypothesis @invariant).
        self.observers: list[Callable[[], None]] = []
        self.events_run = 0

    # ------------------------------------------------------------------ events

    def schedule(self, at: float, fn: Callable[..., None], *args: Any) -> None:
        """Run `fn(*args)` at virtual time `at` (never in the past)."""
        self._seq += 1
        heapq.heappush(self._heap, (max(at, self.now), self._seq, fn, args))

    def run_until(self, deadline: float, stop: Callable[[], bool] | None = None) -> bool:
        """Run events up to `deadline`; returns True if `stop()` became true first."""
        heap = self._heap
        observers = self.observers
        while heap and heap[0][0] <= deadline:
            at, _, fn, args = heapq.heappop(heap)
            self.now = at
            fn(*args)
            self.events_run += 1
            for check in observers:
                check()
            if stop is not None and stop():
                return True
        self.now = max(self.now, deadline)
        return stop is not None and stop()

    # ------------------------------------------------------------------ hosts

    def add_host(self, host: Host) -> None:
        if host.id in self.hosts:
            raise ValueError(f"host {host.id} already exists")
        self.hosts[host.id] = host

    def up_hosts(self) -> list[Host]:
        return [h for h in self.hosts.values() if h.up]

    # ------------------------------------------------------------------ trace

    def trace(self, *parts: Any) -> None:
        """Record an event for the determinism digest (cheap: small tuples of scalars)."""
        self._trace.append((round(self.now, 9), *parts))

    def digest(self) -> str:
        """A stable hash of the whole trace (no `hash()`: it changes with PYTHONHASHSEED)."""
        h = hashlib.blake2b(digest_size=16)
        for item in self._trace:
            h.update(repr(item).encode())
        return h.hexdigest()


@dataclass(slots=True)
class NodeClock:
    """A host's monotonic clock: `offset + rate * world_time`."""

    offset: float
    rate: float

    def local(self, world_now: float) -> float:
        return self.offset + self.rate * world_now

    def to_world(self, local: float) -> float:
        return (local - self.offset) / self.rate


@dataclass(slots=True, kw_only=True)
class NetworkConfig:
    """Seeded fault rates of the network. Delays are in seconds of world time."""

    drop: float = 0.0
    duplicate: float = 0.0
    delay_min_s: float = 0.0002
    delay_max_s: float = 0.002
    #: Probability of a long delay (up to `long_delay_max_s`): heavy reordering.
    long_delay: float = 0.0
    long_delay_max_s: float = 0.2
    #: Keep every message sent (also those dropped or cut off), so that
    #: `SimNetwork.redeliver` can deliver old ones again: a copy held up anywhere for any
    #: time (an asynchronous network's worst reordering). Off (or `stop_keeping`), it ends
    #: `SimNetwork.redeliver_until`.
    keep_sent: bool = False


#: How often `SimNetwork.redeliver_until` delivers old messages again.
REDELIVER_EVERY_S = 0.005
#: How far back the simulators' redeliver faults draw old messages from (0: since the start).
REDELIVER_LOOKBACKS_S = (0.02, 0.1, 0.5, 0.0)


def describe_lookback(lookback_s: float) -> str:
    """How far back a redelivery draws its messages from, for a fault log."""
    return f"lookback={lookback_s}s" if lookback_s else "lookback=all"


class SimNetwork:
    """Point-to-point datagrams between hosts, with seeded faults and partitions."""

    def __init__(self, world: World, config: NetworkConfig) -> None:
        self.world = world
        self.config = config
        self._blocked: set[tuple[int, int]] = set()
        self._clogged_until: dict[tuple[int, int], float] = {}
        self._slow: dict[tuple[int, int], tuple[float, float]] = {}
        self.sent = 0
        self.delivered = 0
        #: Copies of kept messages scheduled for delivery again.
        self.redelivered = 0
        #: Which payloads `NetworkConfig.keep_sent` keeps (a simulator may leave out what its
        #: real transport can never deliver twice).
        self.keepable: Callable[[Any], bool] = lambda _: True
        # Per destination: the send times (ascending) and (src, payload) of kept messages.
        self._kept: dict[int, tuple[list[float], list[tuple[int, Any]]]] = {}
        # A connection's messages (`send(reliable=True)`) held back by a cut link, with the
        # destination's incarnation then (a restarted process resets the connection), and
        # the latest delivery time each link gave one (a connection delivers in order).
        self._held: list[tuple[int, int, Any, int]] = []
        self._reliable_last: dict[tuple[int, int], float] = {}

    # ------------------------------------------------------------------ faults

    def partition(self, *sides: Iterable[int]) -> None:
        """Cut every link between different sides, both ways (hosts not named are untouched)."""
        groups = [sorted(s) for s in sides]
        for i, a_side in enumerate(groups):
            for b_side in groups[i + 1 :]:
                for a in a_side:
                    for b in b_side:
                        self._blocked.add((a, b))
                        self._blocked.add((b, a))
        self.world.trace("partition", tuple(tuple(g) for g in groups))

    def cut(self, src: int, dst: int) -> None:
        """A one-way cut: `src` can no longer reach `dst` (the reverse still works)."""
        self._blocked.add((src, dst))
        self.world.trace("cut", src, dst)

    def uncut(self, src: int, dst: int) -> None:
        """Restore one direction of one link."""
        self._blocked.discard((src, dst))
        self.world.trace("uncut", src, dst)
        self._release_held()

    def isolate(self, host: int) -> None:
        others = [h for h in sorted(self.world.hosts) if h != host]
        self.partition([host], others)

    def clog(self, src: int, dst: int, until: float) -> None:
        """Hold every message from `src` to `dst` until world time `until` (FDB clogPair)."""
        self._clogged_until[(src, dst)] = max(self._clogged_until.get((src, dst), 0.0), until)
        self.world.trace("clog", src, dst, round(until, 9))

    def slow(self, src: int, dst: int, until: float, extra_max_s: float) -> None:
        """Until `until`, messages from `src` to `dst` take up to `extra_max_s` longer, so
        the ones sent after the window overtake them (route flap, retransmissions)."""
        self._slow[(src, dst)] = (until, extra_max_s)
        self.world.trace("slow", src, dst, round(until, 9))

    def redeliver(self, to: int, count: int, lookback_s: float = 0.0) -> None:
        """Deliver to host `to` again `count` messages drawn from those kept that were sent
        to it in the last `lookback_s` seconds (0: since the start), each after a normal
        delay."""
        kept = self._kept.get(to)
        if kept is None:
            return
        times, messages = kept
        first = bisect.bisect_left(times, self.world.now - lookback_s) if lookback_s else 0
        if first == len(messages):
            return
        cfg = self.config
        rng = self.world.rng
        for _ in range(count):
            src, payload = messages[rng.randrange(first, len(messages))]
            self.redelivered += 1
            at = self.world.now + rng.uniform(cfg.delay_min_s, cfg.delay_max_s)
            self.world.schedule(at, self._deliver, src, to, payload)
        self.world.trace("redeliver", to, count)

    def redeliver_until(self, until: float, count: int, lookback_s: float = 0.0) -> None:
        """Every `REDELIVER_EVERY_S` until world time `until`, while the network keeps what
        is sent, deliver `count` old messages again to each host (as `redeliver`): whenever
        a replica is elected or campaigns, replies to its older ballots reach it."""
        if not self.config.keep_sent or self.world.now >= until:
            return
        for host_id in sorted(self.world.hosts):
            self.redeliver(host_id, count, lookback_s)
        self.world.schedule(
            self.world.now + REDELIVER_EVERY_S, self.redeliver_until, until, count, lookback_s
        )

    def stop_keeping(self) -> None:
        """Keep nothing more and forget what was kept (the faults are over)."""
        self.config = replace(self.config, keep_sent=False)
        self._kept.clear()

    def heal(self) -> None:
        self._blocked.clear()
        self._clogged_until.clear()
        self._slow.clear()
        self.world.trace("heal")
        self._release_held()

    def _release_held(self) -> None:
        """Send on the connection messages whose link works again, as TCP retransmits them,
        unless the destination process restarted meanwhile (it reset the connection)."""
        held, self._held = self._held, []
        for src, dst, payload, incarnation in held:
            if (src, dst) in self._blocked:
                self._held.append((src, dst, payload, incarnation))
            elif self._incarnation(dst) == incarnation:
                self.send(src, dst, payload, reliable=True)

    def _incarnation(self, host_id: int) -> int:
        host = self.world.hosts.get(host_id)
        return host.incarnation if host is not None and host.up else -1

    def connected(self, src: int, dst: int) -> bool:
        return (src, dst) not in self._blocked

    # ------------------------------------------------------------------ traffic

    def send(self, src: int, dst: int, payload: Any, reliable: bool = False) -> None:
        """Hand a payload to the network. It may be dropped, duplicated, delayed, reordered;
        `reliable` (a TCP connection's): never dropped or duplicated, delivered in order per
        link, and held back by cuts and partitions until the link works again (dropped if
        the destination process restarted meanwhile, which resets the connection)."""
        self.sent += 1
        cfg = self.config
        if cfg.keep_sent and self.keepable(payload):
            times, messages = self._kept.setdefault(dst, ([], []))
            times.append(self.world.now)
            messages.append((src, payload))
        if (src, dst) in self._blocked:
            if reliable:
                self._held.append((src, dst, payload, self._incarnation(dst)))
            return
        rng = self.world.rng
        if cfg.drop and not reliable and rng.random() < cfg.drop:
            return
        copies = 2 if cfg.duplicate and not reliable and rng.random() < cfg.duplicate else 1
        for _ in range(copies):
            if cfg.long_delay and rng.random() < cfg.long_delay:
                delay = rng.uniform(cfg.delay_max_s, cfg.long_delay_max_s)
            else:
                delay = rng.uniform(cfg.delay_min_s, cfg.delay_max_s)
            at = self.world.now + delay
            slow = self._slow.get((src, dst)) if self._slow else None
            if slow is not None and slow[0] > self.world.now:
                at += rng.uniform(0, slow[1])
            clog = self._clogged_until.get((src, dst))
            if clog is not None and clog > at:
                at = clog + delay
            if reliable:
                at = max(at, self._reliable_last.get((src, dst), 0.0))
                self._reliable_last[(src, dst)] = at
                self.world.schedule(at, self._deliver_reliable, src, dst, payload)
            else:
                self.world.schedule(at, self._deliver, src, dst, payload)

    def _deliver_reliable(self, src: int, dst: int, payload: Any) -> None:
        if (src, dst) in self._blocked:
            self._held.append((src, dst, payload, self._incarnation(dst)))
            return
        self._deliver(src, dst, payload)

    def _deliver(self, src: int, dst: int, payload: Any) -> None:
        if (src, dst) in self._blocked:
            return
        host = self.world.hosts.get(dst)
        if host is None or not host.up:
            return
        self.delivered += 1
        host.receive(src, payload)


class CrashMode:
    """What survives of the unsynced writes when a host dies."""

    POWER_LOSS = "power_loss"  # nothing unsynced survives (MemoryStorage.crash)
    KILL = "kill"  # kill -9: the OS page cache keeps every write
    TORN = "torn"  # a random prefix of the unsynced writes survives

    ALL = (POWER_LOSS, KILL, TORN)


class SimDisk(Generic[S, R]):
    """An ordered write log folded into a state; unsynced writes may be lost on crash.

    Args:
        initial: the state of an empty disk.
        fold: `fold(state, record)` applies one record in place.
        copy: returns an independent copy of a state (used by `load`).
    """

    def __init__(
        self,
        initial: S,
        fold: Callable[[S, R], None],
        copy: Callable[[S], S],
    ) -> None:
        self._durable = initial
        self._fold = fold
        self._copy = copy
        self._unsynced: list[R] = []
        self.syncs = 0
        self.writes = 0

    def write(self, record: R, sync: bool = False) -> None:
        self.writes += 1
        self._unsynced.append(record)
        if sync:
            self.sync()

    def sync(self) -> None:
        """Make every write so far durable (one fsync)."""
        self.syncs += 1
        for record in self._unsynced:
            self._fold(self._durable, record)
        self._unsynced.clear()

    def crash(self, mode: str, rng: random.Random) -> int:
        """Lose unsynced writes as `mode` says; returns how many unsynced writes survived."""
        if mode == CrashMode.KILL:
            keep = len(self._unsynced)
        elif mode == CrashMode.TORN:
            keep = rng.randint(0, len(self._unsynced))
        else:
            keep = 0
        for record in self._unsynced[:keep]:
            self._fold(self._durable, record)
        self._unsynced.clear()
        return keep

    def load(self) -> S:
        """The state a process would read after a restart (durable plus unsynced writes)."""
        state = self._copy(self._durable)
        for record in self._unsynced:
            self._fold(state, record)
        return state

    @property
    def durable(self) -> S:
        """The state that survives any crash (read-only view for checkers)."""
        return self._durable


@dataclass(slots=True, kw_only=True)
class HostTiming:
    """How a host's event loop runs.

    Attributes:
        tick_interval_s: period of the tick timer, in local seconds.
        wake_delay_max_s: a message wakes the host after a random delay up to this, so that
            several messages may be handled in one cycle (group commit).
        tick_on_message: the loop calls `tick(now)` on every wake, not only on the timer;
            when false the core sees a `now` up to one tick interval old while it steps.
        deliver_before_tick: see the attribute.
    """

    tick_interval_s: float = 0.005
    wake_delay_max_s: float = 0.0
    tick_on_message: bool = True
    #: The loop first moves the core's clock without firing timers, delivers the inbox, and
    #: only then ticks (shard/runtime.py after a stall: timers never act on stale inboxes).
    deliver_before_tick: bool = False


class Host:
    """A process in the world: a clock, an inbox, a disk, and a crash/restart life cycle."""

    def __init__(self, world: World, host_id: int, timing: HostTiming, rate: float = 1.0) -> None:
        self.world = world
        self.id = host_id
        self.timing = timing
        self.rate = rate
        self.clock = NodeClock(offset=0.0, rate=rate)
        self.up = False
        self.incarnation = 0
        self.inbox: list[tuple[int, Any]] = []
        self._wake_at: float | None = None
        self.paused_until = 0.0
        self.crashes = 0
        world.add_host(self)

    # ------------------------------------------------------------------ life cycle

    def start(self) -> None:
        """Boot (first start or restart): a new incarnation with a fresh monotonic clock."""
        self.incarnation += 1
        self.up = True
        self.inbox = []
        self._wake_at = None
        self.paused_until = 0.0
        offset = self.world.rng.uniform(0.0, 1000.0)
        # Monotonic time keeps going forward across the reboot in no particular relation to
        # the last incarnation: only durations measured inside one incarnation mean anything.
        self.clock = NodeClock(offset=offset - self.rate * self.world.now, rate=self.rate)
        self.world.trace("start", self.id, self.incarnation)
        self.boot()
        self._schedule_tick(self.world.now)

    def crash(self, mode: str) -> None:
        """Die now: memory is gone, unsynced writes are lost as `mode` says."""
        if not self.up:
            return
        self.up = False
        self.crashes += 1
        self.inbox = []
        self.world.trace("crash", self.id, mode)
        self.on_crash(mode)

    def local_now(self) -> float:
        return self.clock.local(self.world.now)

    # ------------------------------------------------------------------ wakes

    def receive(self, src: int, payload: Any) -> None:
        """Called by the network: queue the payload and wake the loop."""
        self.inbox.append((src, payload))
        delay = self.timing.wake_delay_max_s
        self.request_wake(self.world.now + (self.world.rng.uniform(0, delay) if delay else 0.0))

    def request_wake(self, at: float) -> None:
        """Run a cycle at world time `at` (coalesced with an earlier pending wake)."""
        if self._wake_at is not None and self._wake_at <= at:
            return
        self._wake_at = at
        self.world.schedule(at, self._on_wake_event, self.incarnation, False)

    def _schedule_tick(self, at: float) -> None:
        self.world.schedule(at, self._on_wake_event, self.incarnation, True)

    def pause(self, until: float) -> None:
        """Stop running cycles until world time `until` (SIGSTOP, a long GC or fsync stall).

        Messages keep arriving into the inbox; the clock keeps running.
        """
        self.paused_until = max(self.paused_until, until)
        self.world.trace("pause", self.id, round(until, 9))

    def _on_wake_event(self, incarnation: int, timer: bool) -> None:
        if incarnation != self.incarnation or not self.up:
            return
        if self.world.now < self.paused_until:
            if timer:
                self._schedule_tick(self.paused_until)
            else:
                self._wake_at = None
                self.request_wake(self.paused_until)
            return
        if timer:
            interval = self.timing.tick_interval_s / self.rate
            self._schedule_tick(self.world.now + interval)
        elif self._wake_at is None or self._wake_at > self.world.now:
            return  # superseded by an earlier wake that already ran
        else:
            self._wake_at = None
        self.on_wake(timer)

    # ------------------------------------------------------------------ subclass hooks

    def boot(self) -> None:
        """Rebuild the in-memory state from the disk."""
        raise NotImplementedError

    def on_wake(self, timer: bool) -> None:
        """One loop cycle: tick, step the inbox, execute what the core asks."""
        raise NotImplementedError

    def on_crash(self, mode: str) -> None:
        """Drop memory and tell the disk to lose what `mode` loses."""
        raise NotImplementedError


@dataclass(slots=True)
class Stats:
    """Counters a run reports (for humans and benchmarks, never for assertions on time)."""

    counters: dict[str, int] = field(default_factory=dict)

    def add(self, name: str, n: int = 1) -> None:
        self.counters[name] = self.counters.get(name, 0) + n
