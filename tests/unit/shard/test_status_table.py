"""`paxoskv status`'s table (shard/cli_kv.status_table) from nodes' Status answers."""

from __future__ import annotations

from router import kv_pb2 as kv
from router.client import NodeStatus
from router.shard_map import NodeAddress, bootstrap
from shard.cli_kv import status_table

NAMES = {1: "n1", 2: "n2", 3: "n3"}


def node(node_id: int, roles: dict[int, str]) -> NodeStatus:
    groups = [
        kv.GroupStatus(group_id=g, role=role, ballot="2.1", chosen_index=70, applied_index=70)
        for g, role in roles.items()
    ]
    status = kv.StatusResponse(cluster_id="c", node_id=node_id, map_version=1, groups=groups)
    return NodeStatus(node_id, NAMES[node_id], f"127.0.0.1:{7000 + node_id}", status, None)


def test_a_replica_in_an_unusual_role_says_so() -> None:
    shard_map = bootstrap(
        [
            NodeAddress(node_id=i, name=n, client_addr=f"127.0.0.1:{7000 + i}", peer_addr="")
            for i, n in NAMES.items()
        ],
        [b"m"],
        3,
    )
    nodes = [
        node(1, {0: "leader", 1: "leader", 2: "follower"}),
        node(2, {0: "follower", 1: "follower", 2: "leader"}),
        node(3, {0: "follower", 1: "restoring", 2: "candidate"}),
    ]
    text, healthy = status_table(shard_map, nodes)
    rows = {line.split()[0]: line.split() for line in text.splitlines()[1:4]}
    assert rows["0"][2] == "n1,n2,n3"
    assert rows["1"][3] == "n1,n2,n3:restoring"
    assert rows["2"][3] == "n1,n2,n3:candidate"
    assert healthy
