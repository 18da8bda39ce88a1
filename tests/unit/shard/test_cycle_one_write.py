"""Group commit: one node cycle persists every group's Paxos records in ONE synced write.

A synced write holds the GIL through its fsync (../shared/PITFALLS.md, rocksdict 0.3.29),
so a node that wrote once per group would pay one fsync per group per cycle and hold its
loop that many times longer; the rule is one synced write batch per loop cycle, however
many groups have work. test_disk.py checks that one `persist()` call is one write; these
tests check the caller: a cycle across two groups with votes pending in both calls the
disk once, with both groups' records, in `shard.execute.execute_cycle` (the simulator's
and the rule's reference) and in the real runtime's cycle (`NodeRuntime._persist`), where
it must also be a single synced RocksDB write.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from paxos import Ballot, PersistBatch, Ready, Role
from paxos.messages import Accept, Accepted, Message, SlotValue
from paxos.storage import DurableState
from router import kv_pb2 as kv
from router.shard_map import NodeAddress, bootstrap
from shard import runtime as runtime_module
from shard.config import ClusterConfig, NodeConfig, PaxosSettings
from shard.disk import MemoryNodeDisk
from shard.engine import MemEngine
from shard.execute import execute_cycle, start_cycle
from shard.node import NodeCore
from shard.node_records import GroupHost
from shard.runtime import NodeRuntime
from tests.unit.shard.runtime_support import DEADLINE_S, wake_until
from tests.unit.shard.test_node_core import CLUSTER, OneNode, put

# Split at b"m": data groups 1 (keys below b"m") and 2 (from b"m"), plus the meta group 0.
SPLITS = (b"m",)
KEYS = {1: b"apple", 2: b"zebra"}


def _voted_groups(batches: Sequence[tuple[int, PersistBatch]]) -> set[int]:
    """The groups whose votes (accepted slots, synced) a write carries."""
    return {group_id for group_id, batch in batches if batch.accepted}


class _RecordingDisk:
    """A node disk that makes every `persist()` call on a MemoryNodeDisk and records it, in
    `persists` and, once it returned, as "persist" in `timeline` (which a test's send
    function may write to as well)."""

    def __init__(self, disk: MemoryNodeDisk) -> None:
        self._disk = disk
        self.persists: list[list[tuple[int, PersistBatch]]] = []
        self.timeline: list[str] = []

    @property
    def engine(self) -> MemEngine:
        return self._disk.engine

    def load(self, group_id: int) -> DurableState:
        return self._disk.load(group_id)

    def persist(self, batches: Sequence[tuple[int, PersistBatch]]) -> None:
        self.persists.append(list(batches))
        self._disk.persist(batches)
        self.timeline.append("persist")


def test_one_cycle_of_a_leader_of_two_groups_persists_both_proposals_in_one_write() -> None:
    """Node 1 alone leads groups 1 and 2; a put to each is pending when the cycle starts."""
    node = OneNode(splits=SPLITS)
    assert {g for g, h in node.core.hosts.items() if h.replica.role is Role.LEADER} >= {1, 2}
    answers: list[kv.Response] = []
    for group_id, key in KEYS.items():
        node.core.submit(put(key, b"v", group=group_id), answers.append)
    disk = _RecordingDisk(node.disk)

    assert execute_cycle(node.core, disk, lambda group_id, msgs: None)

    assert len(disk.persists) == 1, f"one cycle, {len(disk.persists)} persists"
    (batches,) = disk.persists
    assert _voted_groups(batches) == {1, 2}, batches
    assert any(batch.needs_sync() for _, batch in batches)
    # And the puts go on to be chosen and answered, from what that one write made durable.
    node.advance(0.1)
    assert [a.put.error.code for a in answers] == [kv.OK, kv.OK], answers


def test_one_cycle_of_a_follower_in_two_groups_persists_both_votes_in_one_write() -> None:
    """Node 2 of three steps an Accept from node 1 in each of two groups: one write, then
    both Accepteds."""
    nodes = [
        NodeAddress(node_id=i, name=f"n{i}", client_addr="x:1", peer_addr="x:1") for i in (1, 2, 3)
    ]
    memory = MemoryNodeDisk()
    core = NodeCore(
        cluster_id=CLUSTER,
        node_id=2,
        bootstrap_map=bootstrap(nodes, list(SPLITS), 3),
        disk=memory,
        paxos_settings=PaxosSettings(),
        rng=random.Random(1),
        request_timeout_s=5.0,
    )
    ballot = Ballot(1, 1)
    for group_id in (1, 2):
        core.step(
            group_id,
            Accept(
                src=1,
                dst=2,
                ballot=ballot,
                entries=(SlotValue(slot=1, value=(b"command",)),),
                chosen_watermark=0,
            ),
        )
    disk = _RecordingDisk(memory)

    def send(group_id: int, msgs: Sequence[Message]) -> None:
        disk.timeline.extend(f"vote {group_id}" for m in msgs if isinstance(m, Accepted))

    assert execute_cycle(core, disk, send)

    assert len(disk.persists) == 1, f"one cycle, {len(disk.persists)} persists"
    assert _voted_groups(disk.persists[0]) == {1, 2}, disk.persists
    assert disk.timeline == ["persist", "vote 1", "vote 2"], disk.timeline


@pytest.fixture
def config(tmp_path: Path) -> ClusterConfig:
    return ClusterConfig(
        cluster_id="one-write",
        nodes=(NodeConfig(id=1, name="n1", address="127.0.0.1:1"),),
        split_points=SPLITS,
        replication=1,
        data_dir=str(tmp_path),
    )


class _RecordingDb:
    """The node's RocksDB, recording whether each write through it was synced."""

    def __init__(self, db: Any, events: list[tuple[Any, ...]]) -> None:
        self._db = db
        self._events = events

    def write(self, batch: Any, options: Any) -> None:
        self._events.append(("write", bool(options.sync)))
        self._db.write(batch, options)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._db, name)


def test_one_runtime_cycle_across_two_groups_is_one_synced_write(
    config: ClusterConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The real shell: in every cycle of a wake, at most one persist, and no synced RocksDB
    write but the persist's (applies are unsynced); the cycle that took both puts wrote both
    groups' votes in that one write."""
    events: list[tuple[Any, ...]] = []

    def recorded_start_cycle(core: NodeCore, send: Any) -> list[tuple[GroupHost, Ready]]:
        readies = start_cycle(core, send)
        if readies:
            events.append(("cycle",))
        return readies

    async def main() -> list[kv.Response]:
        runtime = NodeRuntime(config, config.nodes[0], first_start=True)
        try:
            hosts = runtime.core.hosts
            await wake_until(
                runtime, lambda: all(h.replica.role is Role.LEADER for h in hosts.values())
            )
            await wake_until(
                runtime, lambda: not any(h.replica.has_ready() for h in hosts.values())
            )
            disk = runtime.disk
            persist_owing_sync = disk.persist_owing_sync

            def recorded_persist(
                batches: Sequence[tuple[int, PersistBatch]], defer_from_bytes: int | None
            ) -> bool:
                events.append(("persist", _voted_groups(batches)))
                return persist_owing_sync(batches, defer_from_bytes)

            monkeypatch.setattr(runtime_module, "start_cycle", recorded_start_cycle)
            monkeypatch.setattr(disk, "persist_owing_sync", recorded_persist)
            # The Paxos records' writes and the engine's (applies) go to one RocksDB.
            recording = _RecordingDb(disk.db, events)
            monkeypatch.setattr(disk, "db", recording)
            monkeypatch.setattr(disk.engine, "db", recording)
            answers: list[kv.Response] = []
            for group_id, key in KEYS.items():
                request = kv.Request(id=group_id, put=kv.PutRequest(key=key, value=b"v"))
                request.put.header.cluster_id = config.cluster_id
                request.put.header.group_id = group_id
                runtime.submit(request, answers.append)
            await asyncio.wait_for(runtime._run_cycles(), DEADLINE_S)
            await wake_until(runtime, lambda: len(answers) == 2)
            return answers
        finally:
            runtime.disk.close()

    answers = asyncio.run(main())
    assert sorted(a.put.error.code for a in answers) == [kv.OK, kv.OK], answers
    cycles: list[list[tuple[Any, ...]]] = []
    for event in events:
        if event == ("cycle",):
            cycles.append([])
        else:
            assert cycles, f"a write outside a cycle: {events}"
            cycles[-1].append(event)
    for cycle in cycles:
        persists = [e for e in cycle if e[0] == "persist"]
        writes = [synced for kind, synced in cycle if kind == "write"]
        assert len(persists) <= 1, f"one cycle, several persists: {cycle}"
        # Only the persist's own write (the first) may be synced; the apply's is not.
        assert not any(writes[1:]), f"one cycle, several synced writes: {cycle}"
    # The first cycle took both puts: one persist holding both groups' votes, and the one
    # synced write it made.
    assert cycles[0] == [("persist", {1, 2}), ("write", True)], cycles
