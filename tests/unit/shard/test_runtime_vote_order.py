"""Persist before you answer, on the real node shell: a follower's vote leaves only once durable.

PySyncObj answered with votes it had kept only in memory, so a restart of every member could
overwrite committed data (../shared/PITFALLS.md). The sans-I/O replica puts an acceptor's
Accepted in `messages_after_persist`, but the shell decides when those are sent, and the real
node does not run `shard.execute.persist_cycle`: `NodeRuntime._persist` writes the cycle's
batches itself and, for a large write, fsyncs aside in a worker thread while the loop runs on
(`_sync_aside`). Here a runtime of node 2 of three (one that votes, unlike test_runtime.py's
one-node cluster) steps an Accept from node 1, or a Prepare (a review of session 56 found
only the Accepted covered), and its vote (Accepted, Promise) must not reach the send function
before the synced write returned, nor before the fsync aside ended.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from pathlib import Path

import pytest

from paxos import Ballot, PersistBatch
from paxos.messages import Accept, Accepted, Message, Prepare, Promise, SlotValue
from shard import runtime as runtime_module
from shard.config import ClusterConfig
from shard.runtime import NodeRuntime
from tests.unit.shard.runtime_support import DEADLINE_S, HeldSync, three_node_config, until

GROUP = 1  # the data group; with replication 3 every node hosts it
LEADER = 1
FOLLOWER = 2
BALLOT = Ballot(1, LEADER)


@pytest.fixture
def config(tmp_path: Path) -> ClusterConfig:
    return three_node_config("vote-order", tmp_path)


def _accept(slot: int = 1) -> Accept:
    """Node 1's Accept of one slot at BALLOT, nothing chosen yet (so nothing to apply)."""
    return Accept(
        src=LEADER,
        dst=FOLLOWER,
        ballot=BALLOT,
        entries=(SlotValue(slot=slot, value=(b"some command",)),),
        chosen_watermark=0,
    )


PREPARE_BALLOT = Ballot(7, LEADER)


def _prepare() -> Prepare:
    """Node 1's Prepare at a ballot above any the follower knows: it owes a Promise."""
    return Prepare(src=LEADER, dst=FOLLOWER, ballot=PREPARE_BALLOT, from_slot=1)


async def _deliver(runtime: NodeRuntime, kind: str) -> None:
    """Hand the follower node 1's Accept, or its Prepare (after a first cycle, with the
    restart's lease block, rule 6, ended: a block would rightly refuse the Promise)."""
    if kind == "Accept":
        runtime._deliver(LEADER, GROUP, _accept())
        return
    await asyncio.wait_for(runtime._run_cycles(), DEADLINE_S)
    runtime.core.hosts[GROUP].replica._lease_block_until = 0.0
    runtime._deliver(LEADER, GROUP, _prepare())


def _is_vote(event: object) -> bool:
    """Event `event` hands send the vote for the Accept or the Prepare."""
    if not (isinstance(event, tuple) and event[0] == "send" and event[1] == GROUP):
        return False
    vote = event[2]
    if isinstance(vote, Accepted):
        return vote.dst == LEADER and vote.ballot == BALLOT and 1 in vote.slots
    return isinstance(vote, Promise) and vote.dst == LEADER and vote.ballot == PREPARE_BALLOT


class _Recorder:
    """One timeline of what the runtime handed its disk and its send function.

    Events: ("persist", synced_now), ("synced",) when an fsync aside returned, and
    ("send", group, message) for every message handed to `_send`. The fsync runs in a worker
    thread; list.append is atomic, and the test reads the list only from the loop.
    """

    def __init__(self, runtime: NodeRuntime, monkeypatch: pytest.MonkeyPatch) -> None:
        self.events: list[tuple[object, ...]] = []
        disk = runtime.disk
        persist_owing_sync = disk.persist_owing_sync
        sync = disk.sync

        def recorded_persist(
            batches: Sequence[tuple[int, PersistBatch]], defer_from_bytes: int | None
        ) -> bool:
            owed = persist_owing_sync(batches, defer_from_bytes)
            self.events.append(("persist", not owed and any(b.needs_sync() for _, b in batches)))
            return owed

        def recorded_sync() -> None:
            sync()
            self.events.append(("synced",))

        def recorded_send(group_id: int, msgs: Sequence[Message]) -> None:
            self.events.extend(("send", group_id, msg) for msg in msgs)

        monkeypatch.setattr(disk, "persist_owing_sync", recorded_persist)
        monkeypatch.setattr(disk, "sync", recorded_sync)
        monkeypatch.setattr(runtime, "_send", recorded_send)

    def votes(self) -> list[int]:
        """Where in the timeline the vote was handed to send."""
        return [i for i, event in enumerate(self.events) if _is_vote(event)]

    def first(self, event: tuple[object, ...]) -> int:
        assert event in self.events, f"no {event} in {self.events}"
        return self.events.index(event)


@pytest.mark.parametrize("kind", ["Accept", "Prepare"])
def test_a_followers_vote_waits_for_its_synced_write(
    config: ClusterConfig, monkeypatch: pytest.MonkeyPatch, kind: str
) -> None:
    """The normal path: a small write is a synced write, and the vote is handed to send
    only after that write returned."""

    async def main() -> None:
        runtime = NodeRuntime(config, config.nodes[FOLLOWER - 1], first_start=True)
        try:
            await _deliver(runtime, kind)
            recorder = _Recorder(runtime, monkeypatch)
            await asyncio.wait_for(runtime._run_cycles(), DEADLINE_S)
            votes = recorder.votes()
            assert len(votes) == 1, f"one vote for the Accept: {recorder.events}"
            assert ("synced",) not in recorder.events, "a small write was synced aside"
            assert recorder.first(("persist", True)) < votes[0], (
                f"the vote was handed to send before its synced write: {recorder.events}"
            )
        finally:
            runtime.disk.close()

    asyncio.run(main())


@pytest.mark.parametrize("kind", ["Accept", "Prepare"])
def test_a_followers_vote_waits_for_its_fsync_aside(
    config: ClusterConfig, monkeypatch: pytest.MonkeyPatch, kind: str
) -> None:
    """The aside path: the write is unsynced and its fsync held in the worker thread. While
    it is held (and the loop runs on, a heartbeat interval and more) no vote leaves; once it
    is released, the vote does, after the fsync returned."""
    monkeypatch.setattr(runtime_module, "SYNC_ASIDE_BYTES", 0)  # every synced write goes aside
    interval_s = config.paxos.heartbeat_interval_ms / 1000

    async def main() -> None:
        runtime = NodeRuntime(config, config.nodes[FOLLOWER - 1], first_start=True)
        held: HeldSync | None = None
        wake: asyncio.Task[None] | None = None
        try:
            await _deliver(runtime, kind)
            recorder = _Recorder(runtime, monkeypatch)
            held = HeldSync(runtime)  # wraps the recording sync: held, then recorded
            wake = asyncio.create_task(runtime._run_cycles())
            await until(held.started)
            assert ("persist", False) in recorder.events, "the write was not left owing a sync"
            assert recorder.votes() == [], f"a vote left before its fsync: {recorder.events}"
            # The loop runs on while the fsync is held (its heartbeat repeats, other tasks):
            # still no vote, however long the disk takes.
            held_from = time.monotonic()
            await until(lambda: time.monotonic() > held_from + 2 * interval_s)
            assert not wake.done()
            assert recorder.votes() == [], f"a vote left before its fsync: {recorder.events}"
            held.release_all()
            await asyncio.wait_for(wake, DEADLINE_S)
            votes = recorder.votes()
            assert len(votes) == 1, f"one vote for the Accept once durable: {recorder.events}"
            assert recorder.first(("synced",)) < votes[0], recorder.events
        finally:
            # A failed assertion leaves the fsync held: end it and the wake before the
            # database closes (never under a running flush_wal).
            if held is not None:
                held.release_all()
            if wake is not None:
                await asyncio.wait({wake}, timeout=DEADLINE_S)
            runtime.disk.close()

    asyncio.run(main())
