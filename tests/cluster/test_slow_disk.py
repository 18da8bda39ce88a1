"""Real processes: a leader whose disk is slow keeps its groups while it syncs large writes.

A synced write of a large value held a node's whole process for 40-300 ms on this machine
(rocksdict keeps the GIL through it), past the election timeout, and its groups elected new
leaders. Large writes now sync aside while the node repeats its heartbeats
(shard/runtime.py `_sync_aside`). The fault hook's `disk-stall` (shard/faults.py) makes the
leader's synced writes slower than the election timeout, deterministically.
"""

from __future__ import annotations

from typing import Any

import pytest

from shard.chaos.netns import ChaosCluster
from shard.cluster import wait_for
from shard.faults import FaultsClient
from shard.runtime import SYNC_ASIDE_BYTES

pytestmark = pytest.mark.cluster

STALL_MS = 450  # over the default election timeout (150-300 ms), under the cover (900 ms)


def _ballots(cluster: ChaosCluster, name: str) -> dict[int, str]:
    return {g.group_id: g.ballot for g in cluster.status(name).groups}


def test_a_leader_with_a_slow_disk_keeps_its_groups_through_large_writes(
    faulty_cluster: ChaosCluster, kv_of: Any
) -> None:
    cluster = faulty_cluster
    leader = cluster.wait_for_leader(1)
    witness = next(name for name in cluster.names if name != leader)
    kv_ = kv_of(cluster)
    kv_.put(b"warm", b"up")
    before = _ballots(cluster, witness)
    stall = {"op": "disk-stall", "ms": STALL_MS, "min_bytes": SYNC_ASIDE_BYTES}
    FaultsClient.call(cluster.channel(leader), stall)

    value = bytes(SYNC_ASIDE_BYTES + 1000)
    for i in range(4):
        kv_.put(b"big-%d" % i, value)
    assert _ballots(cluster, witness) == before, "a group elected while its leader synced"
    state = FaultsClient.call(cluster.channel(leader), {"op": "status"})
    assert state["counters"]["disk_stalls"] >= 4, state  # the leader's own fsyncs, stalled
    assert cluster.leader_of(1) == leader
    assert kv_.get(b"big-3") == value

    # The control: the same stall on every synced write, small ones included, holds the
    # leader's loop itself, and its followers elect.
    FaultsClient.call(cluster.channel(leader), {**stall, "min_bytes": 0})
    kv_.put(b"small-0", b"v")
    wait_for(
        lambda: _ballots(cluster, witness) != before,
        20.0,
        "a group to elect while its leader's loop is held by its disk",
    )
