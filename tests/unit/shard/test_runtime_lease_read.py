"""A lease read is judged on the time of its arrival, not on the last wake's.

Leases need disjointness (/work/shared/PITFALLS.md; etcd 0.4.1 served stale reads): a
leader serves a read from its lease only while the lease surely holds. The node's core
sees time only when its shell tells it; between wakes (a stalled loop, a SIGSTOP) its
clock stands still, and a read that arrives after the lease ran out would look covered by
it. So `NodeRuntime.submit` moves the core's clock to now before the read is judged.
Here node 1 runs as a real `NodeRuntime` and leads, its two peers are sans-I/O
`NodeCore`s joined by hand; after the lease was confirmed, the peers go silent and more
than a lease passes with no wake (a stall), and a linearizable get must then wait for a
heartbeat round instead of being answered from the expired lease.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Sequence
from pathlib import Path

import pytest

from paxos import Role
from paxos.messages import Heartbeat, Message
from router import kv_pb2 as kv
from shard.config import ClusterConfig, NodeConfig, PaxosSettings
from shard.disk import MemoryNodeDisk
from shard.execute import execute_cycle
from shard.node import NodeCore
from shard.runtime import NodeRuntime, bootstrap_map
from tests.unit.shard.test_runtime import DEADLINE_S

GROUP = 1
PEERS = (2, 3)


@pytest.fixture
def config(tmp_path: Path) -> ClusterConfig:
    return ClusterConfig(
        cluster_id="lease-read",
        nodes=tuple(NodeConfig(id=i, name=f"n{i}", address=f"127.0.0.1:{i}") for i in (1, 2, 3)),
        replication=3,
        data_dir=str(tmp_path),
    )


class _Peers:
    """Nodes 2 and 3 as cores in memory, joined to the runtime while `connected`. Their
    election timers are long, so node 1 is the one that campaigns."""

    def __init__(self, config: ClusterConfig, runtime: NodeRuntime) -> None:
        self.runtime = runtime
        self.connected = True
        self.to_peers: list[tuple[int, Message]] = []
        self.sent_by_runtime: list[Message] = []
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
            self.sent_by_runtime.extend(msgs)
            self.to_peers.extend((group_id, m) for m in msgs)

        runtime._send = runtime_send  # type: ignore[method-assign]

    def pump(self) -> None:
        """Deliver what the runtime sent, run one cycle of each peer, deliver their answers
        (all dropped while not connected)."""
        inbox, self.to_peers = self.to_peers, []
        for group_id, msg in inbox:
            if self.connected:
                self.cores[msg.dst].step(group_id, msg)
        for i, core in self.cores.items():
            core.tick(time.monotonic(), time.time_ns())

            def send(group_id: int, msgs: Sequence[Message], src: int = i) -> None:
                for msg in msgs:
                    if self.connected and msg.dst == 1:
                        self.runtime._deliver(src, group_id, msg)

            while execute_cycle(core, self.disks[i], send):
                pass


async def _run_until(runtime: NodeRuntime, peers: _Peers, condition: object) -> None:
    assert callable(condition)
    deadline = time.monotonic() + DEADLINE_S
    while not condition():
        assert time.monotonic() < deadline, "condition not reached before the deadline"
        await runtime._run_cycles()
        peers.pump()
        await asyncio.sleep(0.001)


def _get(config: ClusterConfig, key: bytes, request_id: int) -> kv.Request:
    request = kv.Request(id=request_id, get=kv.GetRequest(key=key))
    request.get.header.cluster_id = config.cluster_id
    request.get.header.group_id = GROUP
    return request


def test_a_read_after_a_stall_longer_than_the_lease_waits_for_a_quorum_round(
    config: ClusterConfig,
) -> None:
    lease_s = config.paxos.lease_ms / 1000

    async def main() -> None:
        runtime = NodeRuntime(config, config.nodes[0], first_start=True)
        try:
            peers = _Peers(config, runtime)
            replica = runtime.core.hosts[GROUP].replica
            await _run_until(runtime, peers, lambda: replica.role is Role.LEADER)
            # A read served from the lease while it holds: the setup works as intended.
            answers: list[kv.Response] = []
            await _run_until(runtime, peers, lambda: replica.has_valid_lease(time.monotonic()))
            runtime.submit(_get(config, b"k", 1), answers.append)
            await _run_until(runtime, peers, lambda: len(answers) == 1)
            assert answers[0].get.error.code == kv.OK, answers

            # The peers go silent, and the node's loop stalls for more than a lease.
            peers.connected = False
            stalled_from = time.monotonic()
            while time.monotonic() < stalled_from + 2 * lease_s:
                await asyncio.sleep(lease_s / 4)  # the stall itself: no wake runs
            peers.sent_by_runtime.clear()
            runtime.submit(_get(config, b"k", 2), answers.append)
            await runtime._run_cycles()
            assert len(answers) == 1, "a read was answered from a lease that had run out"
            assert [m for m in peers.sent_by_runtime if isinstance(m, Heartbeat)], (
                "the read did not ask its followers for a round"
            )
            # Back in touch with a quorum, the round confirms the leader and the read is
            # answered.
            peers.connected = True
            await _run_until(runtime, peers, lambda: len(answers) == 2)
            assert answers[1].get.error.code == kv.OK, answers
        finally:
            runtime.disk.close()

    asyncio.run(main())
