"""`paxoskv status`'s table (shard/cli_kv.status_table) from nodes' Status answers."""

from __future__ import annotations

import re

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


def test_each_node_shows_its_client_memory_and_what_it_shed() -> None:
    shard_map = bootstrap(
        [
            NodeAddress(node_id=i, name=n, client_addr=f"127.0.0.1:{7000 + i}", peer_addr="")
            for i, n in NAMES.items()
        ],
        [],
        3,
    )
    nodes = [node(i, {0: "leader" if i == 1 else "follower"}) for i in NAMES]
    for n in nodes:
        n.status.client_bytes_limit = 1 << 30
    nodes[0].status.client_bytes_held = 3 << 19
    nodes[1].status.answers_shed = 12
    nodes[2] = NodeStatus(3, "n3", "127.0.0.1:7003", None, "connection refused")
    text, _ = status_table(shard_map, nodes)
    cells = [re.split(r" {2,}", line) for line in text.split("\n\n")[1].splitlines()]
    assert cells[0] == ["NODE", "NAME", "ADDRESS", "CLIENT MEMORY", "STATE"]
    assert cells[1][3:] == ["1.5/1024 MiB", "up (map v1)"]
    assert cells[2][3:] == ["0.0/1024 MiB, 12 shed", "up (map v1)"]
    assert cells[3][3:] == ["-", "UNREACHABLE: connection refused"]


def test_a_node_that_reports_no_client_memory_shows_a_dash() -> None:
    """A node of an older version sends no budget: not a budget of 0 MiB (found by review)."""
    shard_map = bootstrap(
        [
            NodeAddress(node_id=i, name=n, client_addr=f"127.0.0.1:{7000 + i}", peer_addr="")
            for i, n in NAMES.items()
        ],
        [],
        3,
    )
    nodes = [node(i, {0: "leader" if i == 1 else "follower"}) for i in NAMES]
    text, _ = status_table(shard_map, nodes)
    cells = [re.split(r" {2,}", line) for line in text.split("\n\n")[1].splitlines()]
    assert [row[3] for row in cells[1:]] == ["-", "-", "-"]
