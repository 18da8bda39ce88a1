"""A Hypothesis state machine over one simulated Paxos group (STYLE §5, §8.7 item 12).

The rules are the nemesis and the workload: let time pass, partition, cut one way, isolate
the leader, crash (now or at a chosen point of the next Ready), restart, pause, hand over the
leadership, deliver old messages again, burst client operations. The world's only RNG is
drawn with `st.randoms()` (seeded by Hypothesis, so a failure replays), and a failure
prints a minimal program of steps. Every event inside a step is checked by the oracle
(agreement, validity, integrity, durability, one lease holder); teardown heals everything
and checks termination, convergence, durability of acknowledged writes and linearizability.
"""

from __future__ import annotations

import random

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule
from nemesis import PHASES, Fault, FaultMix
from paxos_sim import GroupSim, Knobs
from world import REDELIVER_LOOKBACKS_S, CrashMode, HostTiming, NetworkConfig

HOSTS = st.integers(min_value=1, max_value=5)
MODES = st.sampled_from(CrashMode.ALL)


class PaxosGroupMachine(RuleBasedStateMachine):
    sim: GroupSim

    @initialize(
        # A simulation makes tens of thousands of draws: recorded draws would overrun
        # Hypothesis's buffer, so the world RNG is a Random seeded by Hypothesis (replayable)
        # and shrinking works on the rules, i.e. on the fault schedule.
        rng=st.randoms(use_true_random=True),
        size=st.sampled_from((3, 5)),
        drop=st.sampled_from((0.0, 0.02, 0.1)),
        duplicate=st.sampled_from((0.0, 0.05)),
        long_delay=st.sampled_from((0.0, 0.05)),
        batch=st.sampled_from((1, 1024)),
        compact=st.booleans(),
        tick_on_message=st.booleans(),
        deliver_before_tick=st.booleans(),
    )
    def setup(
        self,
        rng: random.Random,
        size: int,
        drop: float,
        duplicate: float,
        long_delay: float,
        batch: int,
        compact: bool,
        tick_on_message: bool,
        deliver_before_tick: bool,
    ) -> None:
        voters = tuple(range(1, size + 1))
        replica: dict[str, object] = {"max_batch_count": batch, "pipeline_window": 8}
        if compact:
            replica.update(compact_threshold=6, compact_keep=2)
        knobs = Knobs(
            voters=voters,
            net=NetworkConfig(
                drop=drop, duplicate=duplicate, long_delay=long_delay, keep_sent=True
            ),
            faults=FaultMix(rate_per_s=0),
            rates=tuple(rng.uniform(0.97, 1.03) for _ in voters),
            timing=HostTiming(
                tick_interval_s=0.005,
                tick_on_message=tick_on_message,
                deliver_before_tick=deliver_before_tick,
            ),
            replica=replica,
            clients=4,
        )
        self.sim = GroupSim("stateful", 0, knobs=knobs, rng=rng)
        self.sim.start_hosts()
        self.sim.start_clients()
        self.sim.world.run_until(0.3)

    def _host(self, host: int) -> int:
        return (host - 1) % len(self.sim.hosts) + 1

    def _fault(self, **kwargs: object) -> None:
        self.sim.apply_fault(Fault(at=self.sim.world.now, **kwargs))  # type: ignore[arg-type]

    # ------------------------------------------------------------------ time and load

    @rule(dt=st.floats(min_value=0.001, max_value=0.6))
    def let_time_pass(self, dt: float) -> None:
        self.sim.world.run_until(self.sim.world.now + dt)

    @rule(writes=st.integers(min_value=1, max_value=10), reads=st.integers(0, 5))
    def burst(self, writes: int, reads: int) -> None:
        for _ in range(writes):
            self.sim.start_op(True)
        for _ in range(reads):
            self.sim.start_op(False)

    # ------------------------------------------------------------------ nemesis

    @rule(cut=st.integers(min_value=1, max_value=4), order=st.permutations(range(5)))
    def partition(self, cut: int, order: list[int]) -> None:
        hosts = [h + 1 for h in order if h < len(self.sim.hosts)]
        cut = min(cut, len(hosts) - 1)
        self._fault(kind="partition", sides=(tuple(hosts[:cut]), tuple(hosts[cut:])))

    @rule(a=HOSTS, b=HOSTS)
    def cut_one_way(self, a: int, b: int) -> None:
        a, b = self._host(a), self._host(b)
        if a != b:
            self._fault(kind="cut", target=a, other=b)

    @rule()
    def isolate_leader(self) -> None:
        self._fault(kind="isolate")

    @rule()
    def heal(self) -> None:
        self._fault(kind="heal")

    @rule(host=st.one_of(st.just(0), HOSTS), mode=MODES, downtime=st.floats(0.0, 1.0))
    def crash(self, host: int, mode: str, downtime: float) -> None:
        target = self._host(host) if host else 0
        self._fault(kind="crash", target=target, mode=mode, duration=downtime)

    @rule(
        host=st.one_of(st.just(0), HOSTS),
        mode=MODES,
        phase=st.sampled_from(PHASES),
        k=st.integers(0, 3),
        downtime=st.floats(0.0, 1.0),
    )
    def crash_in_next_ready(
        self, host: int, mode: str, phase: str, k: int, downtime: float
    ) -> None:
        target = self._host(host) if host else 0
        self._fault(
            kind="crash_in_ready", target=target, mode=mode, phase=phase, k=k, duration=downtime
        )

    @precondition(lambda self: any(not h.up for h in self.sim.hosts.values()))
    @rule()
    def restart_all(self) -> None:
        for host_id in sorted(self.sim.hosts):
            host = self.sim.hosts[host_id]
            if not host.up:
                host.start()

    @rule(host=st.one_of(st.just(0), HOSTS), duration=st.floats(0.01, 1.0))
    def pause(self, host: int, duration: float) -> None:
        target = self._host(host) if host else 0
        self._fault(kind="pause", target=target, duration=duration)

    @rule(to=HOSTS)
    def transfer_leadership(self, to: int) -> None:
        self._fault(kind="transfer", target=self._host(to))

    @rule(
        count=st.integers(1, 5),
        lookback=st.sampled_from(REDELIVER_LOOKBACKS_S),
        window=st.floats(0.01, 0.3),
    )
    def redeliver_old_messages(self, count: int, lookback: float, window: float) -> None:
        """For `window` seconds, every replica gets old messages sent to it again (the
        "redeliver" fault): replies to older ballots among them."""
        self._fault(kind="redeliver", k=count, lookback_s=lookback, duration=window)

    @rule(delay=st.floats(0.2, 0.5), k=st.integers(0, 100), mode=MODES)
    def lease_attack(self, delay: float, k: int, mode: str) -> None:
        self._fault(kind="lease_attack", duration=delay, k=k, mode=mode)

    # ------------------------------------------------------------------ checks

    @invariant()
    def at_most_one_lease(self) -> None:
        # Also checked after every event inside each step; this covers the step boundary.
        self.sim.oracle.check_leases(self.sim.hosts.values())

    def teardown(self) -> None:
        if hasattr(self, "sim"):
            self.sim.heal_and_judge()


TestPaxosGroupMachine = PaxosGroupMachine.TestCase
TestPaxosGroupMachine.settings = settings(settings(), stateful_step_count=40)
