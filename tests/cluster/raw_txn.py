"""Transaction requests sent to a node by hand, for the states no client leaves behind on
purpose (a PREPARE logged in one participant alone)."""

from __future__ import annotations

from router import kv_pb2 as kv
from shard.cluster import LocalCluster
from txn.txn_ids import new_txn_id


def ask_group(cluster: LocalCluster, group: int, request: kv.Request) -> kv.Response:
    """`request`'s answer from `group`'s leader, over a Batch stream of its own."""
    leader = cluster.wait_for_leader(group, deadline_s=30.0)
    assert leader is not None
    request.id = 1
    stream = cluster.stub(leader).Batch(iter([kv.RequestBatch(requests=[request])]), timeout=10)
    answer: kv.Response = next(stream).responses[0]
    stream.cancel()
    return answer


def prepare_in_one_group(
    cluster: LocalCluster, key: bytes, *, group: int = 2, other: int = 3, coordinator: int = 3
) -> bytes:
    """The id of a transaction of groups `group` and `other`, coordinated by `coordinator`
    (one of them), writing `key` (of `group`), whose PREPARE is logged in `group` alone: as
    if its client stopped before the other's was sent."""
    ts = ask_group(cluster, group, kv.Request(timestamp=kv.TimestampRequest())).timestamp.ts
    txn_id = new_txn_id(ts)
    op = kv.PrepareRequest(
        header=kv.Header(cluster_id=cluster.cluster_id, group_id=group),
        txn_id=txn_id,
        coordinator_group=coordinator,
        participants=[other, group],
        ts=ts,
        writes=[kv.WriteItem(key=key, value=b"v")],
    )
    answer = ask_group(cluster, group, kv.Request(prepare=op))
    assert answer.prepare.error.code == kv.OK, answer
    return txn_id
