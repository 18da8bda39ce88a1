"""Shared fixtures of the router unit tests: three nodes, a three-shard map."""

from __future__ import annotations

import pytest

from router import NodeAddress, ShardMap, bootstrap


def make_nodes(count: int) -> list[NodeAddress]:
    return [
        NodeAddress(
            node_id=i,
            name=f"n{i}",
            client_addr=f"127.0.0.1:{7000 + i}",
            peer_addr=f"127.0.0.1:{8000 + i}",
        )
        for i in range(1, count + 1)
    ]


@pytest.fixture
def nodes3() -> list[NodeAddress]:
    return make_nodes(3)


@pytest.fixture
def map3(nodes3: list[NodeAddress]) -> ShardMap:
    """Groups 1 [b'', b'g'), 2 [b'g', b'p'), 3 [b'p', +inf) on nodes 1-3, plus meta group 0."""
    return bootstrap(nodes3, [b"g", b"p"], 3)
