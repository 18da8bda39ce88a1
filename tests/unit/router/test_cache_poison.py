"""One bad answer from a node must not poison a client's routing cache for good (found by
review): a WRONG_SHARD naming a version the cluster does not have made every later request
fetch the map, and a NOT_LEADER hint naming a node outside the group sent every later
request of the group there (UNKNOWN_GROUP until the deadline)."""

from __future__ import annotations

from typing import Any

from router import bootstrap
from router import kv_pb2 as kv
from router.cache import RoutingCache
from tests.unit.router.conftest import make_nodes
from tests.unit.router.test_client_routing import (
    FakeCluster,
    FakeNode,
    client_for,
    error_response,
    first_request_refused,
    with_cluster,
)


def test_a_wrong_shard_naming_a_future_version_keeps_the_cache_stale_forever() -> None:
    cache = RoutingCache(["seed:1"])
    current = bootstrap(make_nodes(3), [b"g"], 3)
    cache.update(current)
    cache.on_wrong_shard(2**64 - 1)  # one answer from a confused or hostile node
    cache.update(current)  # the refresh: the cluster's map really is version 1
    assert not cache.needs_refresh


@with_cluster
async def test_one_bad_wrong_shard_makes_every_later_request_fetch_the_map(
    cluster: FakeCluster,
) -> None:
    async with client_for(cluster) as client:
        cluster.hook = first_request_refused(kv.WRONG_SHARD, map_version=2**64 - 1)
        assert await client.put(b"a", b"1") > 0
        fetches = cluster.map_fetches
        for _ in range(20):
            await client.get(b"a")
        assert cluster.map_fetches == fetches, (
            f"{cluster.map_fetches - fetches} map fetches for 20 reads after one bad answer"
        )


def test_cache_keeps_a_non_replica_guess_after_the_refresh() -> None:
    cache = RoutingCache(["seed:1"])
    current = bootstrap(make_nodes(4), [b"g"], 3)
    cache.update(current)
    group = current.locate(b"a").group_id
    outsider = next(n for n in current.nodes if n not in current.replicas(group))
    cache.on_not_leader(group, current.preferred_leader(group), outsider)  # not a replica
    assert cache.needs_refresh
    cache.on_wrong_shard(current.version)
    cache.mark_stale()  # the outsider answers UNKNOWN_GROUP
    cache.update(current)  # the refresh finds the same map
    assert cache.leader_for(group) in current.replicas(group), cache.leader_for(group)


@with_cluster(count=4)
async def test_one_not_leader_hint_naming_a_non_replica_cuts_the_group_off(
    cluster: FakeCluster,
) -> None:
    async with client_for(cluster, timeout_s=1.5) as client:
        shard_map = cluster.map
        group = shard_map.locate(b"a").group_id
        outsider = next(n for n in shard_map.nodes if n not in shard_map.replicas(group))
        hinted = False

        def hook(node: FakeNode, request: kv.Request) -> Any:
            nonlocal hinted
            op = getattr(request, request.WhichOneof("op"))
            if node.node_id not in shard_map.replicas(op.header.group_id):
                # What a real node answers for a group it does not host (NodeCore._admit).
                return error_response(request, kv.UNKNOWN_GROUP, map_version=shard_map.version)
            if not hinted:
                hinted = True
                return error_response(request, kv.NOT_LEADER, leader_id=outsider)
            return None

        cluster.hook = hook
        failures = []
        for _ in range(3):
            try:
                await client.put(b"a", b"1")
            except Exception as exc:
                failures.append(type(exc).__name__)
        assert failures == [], failures
