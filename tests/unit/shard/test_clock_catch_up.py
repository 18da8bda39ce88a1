"""Node rule 10 beyond the boot: a node that restarts (or is rebuilt) after the machine's
wall clock stepped back starts its clock above its *own* stored timestamps only; the writes
it then learns from the others (log catch-up, snapshot) never move its clock. A snapshot
timestamp it hands out afterwards lies below writes the cluster acknowledged before it was
asked, and a snapshot read at it misses them (strict serializability).

Loopback default: max_clock_offset 0, one machine clock for every node; nodes 1 and 2 keep
running through the step (their clocks are monotonic in-process), node 3 restarts.

The `prepared` cases end with a transaction prepared and not resolved: a client may report
it committed at its prepare_ts on the votes alone (parallel commits), so that timestamp
must move the clock too. The node observed only a restored snapshot's newest version, not
its prepared records, until the shard state machine tracked its newest timestamp itself.
"""

from __future__ import annotations

import pytest

from router import kv_pb2 as kv
from shard.config import PaxosSettings
from shard.disk import MemoryNodeDisk
from shard.node import TxnSettings
from tests.unit.shard.test_node_core import ThreeNodes, header, prepare_request, put

STEP_BACK_NS = 10 * 10**9


def _restart_node3_after_a_step_back(
    nodes: ThreeNodes, *, lose_data: bool, then_prepare: bool = False
) -> int:
    """Node 3 misses writes, restarts after the step back and catches up; returns the
    newest timestamp the cluster showed a client meanwhile (a version, or with
    `then_prepare` the prepare_ts of a last transaction, which a client may report as its
    commit on the votes alone)."""
    nodes.cut = 3
    written = nodes.call(nodes.leader(1), put(b"apple", b"red")).put
    assert written.error.code == kv.OK
    newest = written.version
    for i in range(nodes.paxos_settings.compact_threshold + 5):  # only when compacting
        if nodes.paxos_settings.compact_threshold < 100:
            assert nodes.call(nodes.leader(1), put(b"k%d" % i, b"v")).put.error.code == kv.OK
    if then_prepare:
        vote = nodes.call(nodes.leader(1), prepare_request(1, b"banana", ts=1)).prepare
        assert vote.error.code == kv.OK
        newest = vote.prepare_ts
        assert newest > nodes.cores[nodes.leader(1)].hosts[1].shard.max_version
    if lose_data:
        nodes.disks[3] = MemoryNodeDisk()
    nodes.wall -= STEP_BACK_NS
    nodes.cores[3] = nodes.boot(3)
    nodes.cut = None
    nodes.advance(1.0)  # node 3 catches up from the others
    return newest


def _timestamp(nodes: ThreeNodes, node_id: int) -> int:
    return nodes.call(node_id, kv.Request(timestamp=kv.TimestampRequest())).timestamp.ts


@pytest.mark.parametrize("then_prepare", [False, True], ids=["write", "prepared"])
@pytest.mark.parametrize(
    ("lose_data", "by_snapshot", "in_steps"),
    [(False, False, False), (True, False, False), (True, True, False), (True, True, True)],
    ids=["restarted", "empty-store", "empty-store-snapshot", "empty-store-snapshot-steps"],
)
def test_a_node_restarted_after_a_step_back_hands_out_timestamps_above_what_it_caught_up(
    lose_data: bool, by_snapshot: bool, in_steps: bool, then_prepare: bool
) -> None:
    paxos = PaxosSettings(compact_threshold=20, compact_keep=2) if by_snapshot else None
    txn = TxnSettings(snapshot_whole_bytes=16) if in_steps else None
    nodes = ThreeNodes(paxos, txn)
    newest = _restart_node3_after_a_step_back(nodes, lose_data=lose_data, then_prepare=then_prepare)
    assert (
        nodes.cores[3].hosts[1].shard.applied_index == nodes.cores[1].hosts[1].shard.applied_index
    )
    if by_snapshot:
        assert nodes.cores[3].hosts[1].replica.status().chosen_watermark > 20
    at = _timestamp(nodes, 3)
    assert at > newest, "a snapshot begun after what a client was told would miss it"


def test_a_snapshot_at_a_caught_up_nodes_timestamp_sees_an_acknowledged_write() -> None:
    nodes = ThreeNodes()
    _restart_node3_after_a_step_back(nodes, lose_data=False)
    at = _timestamp(nodes, 3)
    read = kv.Request(
        get=kv.GetRequest(header=header(1), key=b"apple", snapshot=True, at_version=at)
    )
    answers: list[kv.Response] = []
    nodes.cores[nodes.leader(1)].submit(read, answers.append)
    for _ in range(20_000):
        if answers:
            break
        nodes.advance(0.001)
    got = answers[0].get
    # Refused (the clocks) or served with the write: never served from below it.
    assert got.error.code != kv.OK or got.found, got
