"""Real processes: a follower far behind catches up by a snapshot restored in steps, and a
kill -9 in the middle of that restore loses nothing.

The nodes compact their log after 50 slots, so a follower paused while 30,000 keys are
written needs the whole shard as a snapshot. It is killed while its status says
`restoring` (the restore runs in paced steps on the real RocksDB, about 0.4 s here), started
again, and must end with exactly the leader's data, read back through it with stale reads.
The kill lands as soon as the status says so, in practice while the blob is being staged
(the report says which): the redo of a restore interrupted after it began replacing the
data is covered at every cut point in tests/unit/shard/test_snapshot_steps.py and by the
simulator's power losses.
"""

from __future__ import annotations

import asyncio
import time

import grpc
import pytest

from router import kv_pb2 as kv
from router.client import RoutingClient
from shard.cluster import LocalCluster, wait_for
from shard.config import PaxosSettings

pytestmark = pytest.mark.cluster

GROUP = 1
KEYS = 30_000


async def _load(seeds: list[str]) -> None:
    async with RoutingClient(seeds) as client:
        next_key = 0

        async def worker() -> None:
            nonlocal next_key
            while next_key < KEYS:
                n = next_key
                next_key += 1
                await client.put(b"key%06d" % n, b"value-%06d" % n)

        await asyncio.gather(*(worker() for _ in range(64)))


def _group_status(cluster: LocalCluster, name: str) -> kv.GroupStatus | None:
    try:
        status = cluster.status(name, timeout_s=1.0)
    except grpc.RpcError:
        return None
    return next((g for g in status.groups if g.group_id == GROUP), None)


def _stale_scan(cluster: LocalCluster, name: str) -> list[tuple[bytes, bytes]]:
    """Every key of the group as `name`'s replica holds it (stale reads, paged)."""
    header = kv.Header(cluster_id=cluster.cluster_id, group_id=GROUP)
    items: list[tuple[bytes, bytes]] = []
    start = b""
    while True:
        request = kv.ScanRequest(header=header, start=start, limit=5_000, stale_ok=True)
        answer = cluster.stub(name).Scan(request, timeout=10.0)
        assert answer.error.code == kv.OK, answer.error
        items.extend((item.key, item.value) for item in answer.items)
        if not answer.more and len(answer.items) < 5_000:
            return items
        start = items[-1][0] + b"\x00"


def test_a_follower_killed_while_restoring_a_snapshot_catches_up_whole(
    make_cluster, report
) -> None:
    cluster = make_cluster(shards=1, paxos=PaxosSettings(compact_threshold=50, compact_keep=5))
    leader = cluster.wait_for_leader(GROUP)
    follower = next(n for n in cluster.names if n != leader)
    cluster.pause(follower)
    try:
        asyncio.run(_load([a for n, a in cluster.addresses.items() if n != follower]))
    finally:
        cluster.resume(follower)

    def restoring() -> bool:
        group = _group_status(cluster, follower)
        return group is not None and group.role == "restoring"

    wait_for(restoring, 60.0, f"{follower} to report its group restoring a snapshot")
    cluster.kill(follower)
    cluster.restart(follower)
    target = _group_status(cluster, cluster.wait_for_leader(GROUP))
    assert target is not None
    started = time.monotonic()

    def caught_up() -> bool:
        group = _group_status(cluster, follower)
        return group is not None and group.applied_index >= target.applied_index

    wait_for(caught_up, 120.0, f"{follower} to catch up to index {target.applied_index}")
    redone = "redid a snapshot restore" in cluster.log_tail(follower, 200)
    report(
        "catch-up after kill -9 mid-restore",
        keys=KEYS,
        catch_up_s=round(time.monotonic() - started, 2),
        # Killed after the restore began replacing the data (it was redone when the node
        # opened) or before (the old state was whole; the leader sent another snapshot).
        redone_at_open=redone,
    )
    expected = [(b"key%06d" % n, b"value-%06d" % n) for n in range(KEYS)]
    assert _stale_scan(cluster, follower) == expected
