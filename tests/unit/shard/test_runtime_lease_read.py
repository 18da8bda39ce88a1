"""A lease read is judged on the time of its arrival, not on the last wake's.

Leases need disjointness (../shared/PITFALLS.md; etcd 0.4.1 served stale reads): a
leader serves a read from its lease only while the lease surely holds. The node's core
sees time only when its shell tells it; between wakes (a stalled loop, a SIGSTOP) its
clock stands still, and a read that arrives after the lease ran out would look covered by
it. So `NodeRuntime.submit` moves the core's clock to now before the read is judged.
Here node 1 runs as a real `NodeRuntime` and leads, its two peers are sans-I/O
`NodeCore`s joined by hand, and every clock is one fake monotonic clock the test moves:
after a read served from the lease, the peers go silent and a lease passes with no wake
(a stall shorter than any election timeout), and a linearizable get must then wait for a
heartbeat round instead of being answered from the expired lease.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from types import SimpleNamespace

import pytest

from paxos import Role
from paxos.messages import Message
from router import kv_pb2 as kv
from shard import runtime as runtime_module
from shard.config import ClusterConfig, PaxosSettings
from shard.disk import MemoryNodeDisk
from shard.execute import execute_cycle
from shard.node import NodeCore
from shard.runtime import NodeRuntime, bootstrap_map
from tests.unit.shard.runtime_support import three_node_config

GROUP = 1
PEERS = (2, 3)
STEP_S = 0.005  # how far the fake clock moves per wake while the test waits on a condition
MAX_WAKES = 2_000


@pytest.fixture
def config(tmp_path: Path) -> ClusterConfig:
    return three_node_config("lease-read", tmp_path)


class _Clock:
    """The monotonic clock of the runtime and of the peers, moved by the test only."""

    def __init__(self) -> None:
        self.now = 1_000.0

    def monotonic(self) -> float:
        return self.now


class _Peers:
    """Nodes 2 and 3 as cores in memory, joined to the runtime while `connected`. Their
    election timers are long, so node 1 is the one that campaigns."""

    def __init__(self, config: ClusterConfig, runtime: NodeRuntime, clock: _Clock) -> None:
        self.runtime = runtime
        self.clock = clock
        self.connected = True
        self.to_peers: list[tuple[int, Message]] = []
        slow = PaxosSettings(election_timeout_min_ms=60_000, election_timeout_max_ms=61_000)
        self.disks = {i: MemoryNodeDisk() for i in PEERS}
        self.cores = {
            i: NodeCore(
                cluster_id=config.cluster_id,
                node_id=i,
                bootstrap_map=bootstrap_map(config),
                disk=self.disks[i],
                paxos_settings=slow,
                rng=random.Random(i),
                request_timeout_s=5.0,
            )
            for i in PEERS
        }

        def runtime_send(group_id: int, msgs: Sequence[Message]) -> None:
            self.to_peers.extend((group_id, m) for m in msgs)

        runtime._send = runtime_send  # type: ignore[method-assign]

    def pump(self) -> None:
        """Deliver what the runtime sent, run the peers' cycles, deliver their answers (all
        dropped while not connected)."""
        inbox, self.to_peers = self.to_peers, []
        for group_id, msg in inbox:
            if self.connected:
                self.cores[msg.dst].step(group_id, msg)
        for i, core in self.cores.items():
            core.tick(self.clock.now, time.time_ns())

            def send(group_id: int, msgs: Sequence[Message], src: int = i) -> None:
                for msg in msgs:
                    if self.connected and msg.dst == 1:
                        self.runtime._deliver(src, group_id, msg)

            while execute_cycle(core, self.disks[i], send):
                pass


async def _run_until(
    runtime: NodeRuntime, peers: _Peers, clock: _Clock, condition: Callable[[], bool]
) -> None:
    """Wake the runtime and the peers, the clock moving STEP_S a wake, until `condition`."""
    for _ in range(MAX_WAKES):
        if condition():
            return
        clock.now += STEP_S
        await runtime._run_cycles()
        peers.pump()
    raise AssertionError(f"condition not reached in {MAX_WAKES} wakes")


def _get(config: ClusterConfig, key: bytes, request_id: int) -> kv.Request:
    request = kv.Request(id=request_id, get=kv.GetRequest(key=key))
    request.get.header.cluster_id = config.cluster_id
    request.get.header.group_id = GROUP
    return request


def test_a_read_after_a_stall_longer_than_the_lease_waits_for_a_quorum_round(
    config: ClusterConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = _Clock()
    fake_time = SimpleNamespace(
        monotonic=clock.monotonic, time_ns=time.time_ns, perf_counter=time.perf_counter
    )
    monkeypatch.setattr(runtime_module, "time", fake_time)  # the runtime module's clock only
    lease_s = config.paxos.lease_ms / 1000
    assert lease_s < config.paxos.election_timeout_min_ms / 1000

    async def main() -> None:
        runtime = NodeRuntime(config, config.nodes[0], first_start=True)
        try:
            peers = _Peers(config, runtime, clock)
            replica = runtime.core.hosts[GROUP].replica
            await _run_until(runtime, peers, clock, lambda: replica.role is Role.LEADER)
            await _run_until(runtime, peers, clock, lambda: replica.has_valid_lease(clock.now))
            # Served from the lease: the peers are silent, and it is answered in one wake.
            peers.connected = False
            answers: list[kv.Response] = []
            runtime.submit(_get(config, b"k", 1), answers.append)
            await runtime._run_cycles()
            assert [a.get.error.code for a in answers] == [kv.OK], answers

            # The loop stalls for a lease, shorter than any election timeout: still leader.
            clock.now += lease_s
            runtime.submit(_get(config, b"k", 2), answers.append)
            await runtime._run_cycles()
            assert replica.role is Role.LEADER
            assert len(answers) == 1, "a read was answered from a lease that had run out"
            # Back in touch with a quorum, a round confirms the leader and the read is served.
            peers.connected = True
            await _run_until(runtime, peers, clock, lambda: len(answers) == 2)
            assert answers[1].get.error.code == kv.OK, answers
        finally:
            runtime.disk.close()

    asyncio.run(main())
