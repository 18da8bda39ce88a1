"""A node refuses to start on a config that no longer matches the shard map its cluster
stored at bootstrap. Found by review: the groups a node hosts and their key ranges came from
the config, what it admitted and told clients from the stored map; a moved split point left
clients looping on WRONG_SHARD with the data out of reach, an added one crashed the loop, a
moved address was never served to clients."""

from __future__ import annotations

import random

import pytest
from test_node_core import CLUSTER, OneNode, put

from router import kv_pb2 as kv
from router.shard_map import NodeAddress, bootstrap
from shard.config import PaxosSettings
from shard.map_mismatch import ConfigMismatch
from shard.node import NodeCore, TxnSettings


def _restart(
    node: OneNode, split_points: list[bytes], address: str = "x:1", name: str = "n1"
) -> NodeCore:
    nodes = [NodeAddress(node_id=1, name=name, client_addr=address, peer_addr=address)]
    return NodeCore(
        cluster_id=CLUSTER,
        node_id=1,
        bootstrap_map=bootstrap(nodes, split_points, 1),
        disk=node.disk,
        paxos_settings=PaxosSettings(),
        rng=random.Random(2),
        request_timeout_s=5.0,
        txn_settings=TxnSettings(),
    )


@pytest.mark.parametrize(
    ("split_points", "address", "named"),
    [
        ([b"m"], "renamed", "nodes {1: 'alpha x:1'} in the config, {1: 'n1 x:1'} stored"),
        ([b"n"], "x:1", "ranges [('[-inf, n)', (1,)), ('[n, +inf)', (1,))] in the config"),
        ([b"m", b"t"], "x:1", "[t, +inf)"),
        ([b"m"], "newhost:1", "nodes {1: 'n1 newhost:1'} in the config, {1: 'n1 x:1'} stored"),
    ],
)
def test_a_changed_config_is_refused_at_start_naming_the_difference(
    split_points: list[bytes], address: str, named: str
) -> None:
    node = OneNode()  # bootstrapped with a split at b"m" and address x:1
    assert node.call(put(b"mango", b"v1", group=2)).put.error.code == kv.OK
    with pytest.raises(ConfigMismatch, match="cannot change after the first start") as err:
        if address == "renamed":  # the same address, another name
            _restart(node, split_points, name="alpha")
        else:
            _restart(node, split_points, address)
    assert named in str(err.value)


def test_the_same_config_restarts() -> None:
    node = OneNode()
    assert node.call(put(b"mango", b"v1", group=2)).put.error.code == kv.OK
    node.core = _restart(node, [b"m"])
    node.advance(1.0)
    assert node.core.shard_map.version == 1
