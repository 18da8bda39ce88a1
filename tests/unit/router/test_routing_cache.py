"""RoutingCache (updates, NotLeader rotation, WrongShard staleness, routing, scan plans) and
Backoff (bounds, full jitter, determinism)."""

from __future__ import annotations

import itertools
import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from router import (
    Backoff,
    NodeAddress,
    RangeDescriptor,
    RoutingCache,
    ShardMap,
    ShardMapUnavailable,
    UnknownGroup,
    bootstrap,
)


def newer(m: ShardMap) -> ShardMap:
    return m.split(2, b"k", 7, (1, 2), 2)


def test_empty_cache(map3: ShardMap) -> None:
    cache = RoutingCache(["seed:1", "seed:2"])
    assert cache.shard_map is None and cache.map_version is None and cache.needs_refresh
    assert cache.leader_for(1) is None
    assert cache.refresh_targets() == ["seed:1", "seed:2"]
    with pytest.raises(ShardMapUnavailable, match="seed:1, seed:2"):
        cache.route(b"a")
    with pytest.raises(ShardMapUnavailable):
        cache.plan_scan(b"", None)
    cache.on_not_leader(1, 1, 2)  # ignored without a map
    assert cache.on_wrong_shard(3) is True


def test_update_keeps_newer_only(map3: ShardMap) -> None:
    cache = RoutingCache([])
    assert cache.update(map3)
    assert not cache.needs_refresh
    v2 = newer(map3)
    assert cache.update(v2) and cache.shard_map is v2
    assert not cache.update(map3)  # older: ignored
    assert not cache.update(v2)  # same: ignored
    assert cache.shard_map is v2 and cache.map_version == 2


def test_initial_leader_is_preferred(map3: ShardMap) -> None:
    cache = RoutingCache([])
    cache.update(map3)
    for g in map3.group_ids():
        assert cache.leader_for(g) == map3.preferred_leader(g)
    assert cache.leader_for(99) is None


def test_not_leader_with_hint(map3: ShardMap) -> None:
    cache = RoutingCache([])
    cache.update(map3)
    cache.on_not_leader(1, map3.preferred_leader(1), 3)
    assert cache.leader_for(1) == 3
    assert cache.route(b"a")[1] == map3.nodes[3].client_addr
    assert not cache.needs_refresh
    assert cache.leader_for(2) == map3.preferred_leader(2)  # other groups untouched


def test_not_leader_without_hint_rotates_through_replicas(map3: ShardMap) -> None:
    cache = RoutingCache([])
    cache.update(map3)
    replicas = map3.group(1).replicas
    seen = [cache.leader_for(1)]
    for _ in range(len(replicas)):
        cache.on_not_leader(1, seen[-1])
        seen.append(cache.leader_for(1))
    assert sorted(seen[:-1]) == sorted(replicas)  # visits every replica once...
    assert seen[-1] == seen[0]  # ...then comes back around


def test_not_leader_hint_naming_itself_rotates(map3: ShardMap) -> None:
    cache = RoutingCache([])
    cache.update(map3)
    current = cache.leader_for(2)
    assert current is not None
    cache.on_not_leader(2, current, current)
    assert cache.leader_for(2) != current


def test_not_leader_hint_outside_replicas_marks_stale(nodes3: list[NodeAddress]) -> None:
    m = bootstrap(nodes3, [b"m"], 2)  # group 1 on two of the three nodes
    outsider = next(n for n in (1, 2, 3) if n not in m.group(1).replicas)
    cache = RoutingCache([])
    cache.update(m)
    cache.on_not_leader(1, m.preferred_leader(1), outsider)
    assert cache.needs_refresh
    assert cache.leader_for(1) == outsider  # a known node: worth trying
    cache.update(m)  # refreshed, same version: no longer stale
    assert not cache.needs_refresh
    cache.on_not_leader(1, outsider, 42)  # unknown node: stale, and rotate instead
    assert cache.needs_refresh and cache.leader_for(1) in m.group(1).replicas


def test_only_an_answer_from_the_guessed_node_moves_the_guess(map3: ShardMap) -> None:
    """One rule for NOT_LEADER, UNAVAILABLE, no connection and no answer: concurrent requests
    failing at one node move the guess once, and a late answer does not move it off a
    leader another request found."""
    cache = RoutingCache([])
    cache.update(map3)
    first = map3.preferred_leader(1)
    replicas = map3.group(1).replicas
    after = replicas[(replicas.index(first) + 1) % len(replicas)]
    for _ in replicas:  # one failure per replica, all from the first guess
        cache.on_not_leader(1, first)
    assert cache.leader_for(1) == after
    leader = next(n for n in replicas if n not in (first, after))
    cache.on_not_leader(1, after, leader)
    cache.on_not_leader(1, after, leader)  # a second redirect naming the same leader
    assert cache.leader_for(1) == leader
    cache.on_not_leader(1, first, after)  # a late answer from an earlier guess
    cache.on_not_leader(1, after)
    assert cache.leader_for(1) == leader


def test_a_late_hint_outside_the_replicas_still_marks_the_map_stale(
    nodes3: list[NodeAddress],
) -> None:
    m = bootstrap(nodes3, [b"m"], 2)
    outsider = next(n for n in (1, 2, 3) if n not in m.group(1).replicas)
    other = next(n for n in m.group(1).replicas if n != m.preferred_leader(1))
    cache = RoutingCache([])
    cache.update(m)
    cache.on_not_leader(1, other, outsider)  # not the guess: the guess stays...
    assert cache.leader_for(1) == m.preferred_leader(1)
    assert cache.needs_refresh  # ...but the map is known stale


def test_leader_guesses_survive_update_if_still_replicas(map3: ShardMap) -> None:
    cache = RoutingCache([])
    cache.update(map3)
    cache.on_not_leader(1, map3.preferred_leader(1), 3)
    cache.on_not_leader(2, map3.preferred_leader(2), 1)
    v2 = map3.split(2, b"k", 7, (2, 3))
    # group 2 keeps [g, k) on the same replicas, so both guesses survive
    cache.update(v2)
    assert cache.leader_for(1) == 3 and cache.leader_for(2) == 1
    assert cache.leader_for(7) == 2
    v3 = ShardMap(
        3,
        [r if r.group_id != 1 else type(r)(1, r.start, r.end, (1, 2)) for r in v2.ranges],
        v2.nodes,
        v2.meta_replicas,
    )
    cache.update(v3)
    assert cache.leader_for(1) == 1  # guess 3 is no longer a replica: back to preferred


def test_wrong_shard_staleness(map3: ShardMap) -> None:
    cache = RoutingCache([])
    cache.update(map3)
    assert cache.on_wrong_shard(1) is False  # server is not newer: plain retry
    assert cache.on_wrong_shard(0) is False
    assert cache.on_wrong_shard(3) is True  # server has v3, we have v1
    v2 = newer(map3)
    cache.update(v2)
    assert cache.needs_refresh  # v2 < v3: still stale
    v3 = v2.split(7, b"m", 8, (3,))
    cache.update(v3)
    assert not cache.needs_refresh


def test_route(map3: ShardMap) -> None:
    cache = RoutingCache([])
    cache.update(map3)
    for key, group in [(b"", 1), (b"g", 2), (b"o", 2), (b"p", 3), (b"\xff", 3)]:
        descriptor, addr = cache.route(key)
        assert descriptor.group_id == group
        assert addr == map3.nodes[map3.preferred_leader(group)].client_addr
    assert cache.route_group(0) == map3.nodes[map3.meta_preferred_leader].client_addr
    with pytest.raises(UnknownGroup):
        cache.route_group(99)


def test_plan_scan_across_three_shards(map3: ShardMap) -> None:
    cache = RoutingCache([])
    cache.update(map3)
    plan = cache.plan_scan(b"c", b"r")
    assert [(r.group_id, s, e) for r, s, e in plan] == [
        (1, b"c", b"g"),
        (2, b"g", b"p"),
        (3, b"p", b"r"),
    ]
    plan = cache.plan_scan(b"", None)
    assert [(r.group_id, s, e) for r, s, e in plan] == [
        (1, b"", b"g"),
        (2, b"g", b"p"),
        (3, b"p", None),
    ]
    assert [(r.group_id, s, e) for r, s, e in cache.plan_scan(b"h", b"i")] == [(2, b"h", b"i")]
    assert [(r.group_id, s, e) for r, s, e in cache.plan_scan(b"q", None)] == [(3, b"q", None)]
    assert [(r.group_id, s, e) for r, s, e in cache.plan_scan(b"a", b"g")] == [(1, b"a", b"g")]
    assert cache.plan_scan(b"x", b"x") == []
    assert cache.plan_scan(b"x", b"a") == []


@given(
    st.lists(st.binary(min_size=1, max_size=3), unique=True, max_size=5).map(sorted),
    st.binary(max_size=3),
    st.none() | st.binary(max_size=3),
)
def test_plan_scan_partitions_the_interval(
    points: list[bytes], start: bytes, end: bytes | None
) -> None:
    nodes = [NodeAddress(node_id=1, name="n1", client_addr="c1", peer_addr="p1")]
    cache = RoutingCache([])
    cache.update(bootstrap(nodes, points, 1))
    plan = cache.plan_scan(start, end)
    if end is not None and end <= start:
        assert plan == []
        return
    assert plan[0][1] == start and plan[-1][2] == end
    for (_, _, e), (_, s2, _) in itertools.pairwise(plan):
        assert e == s2  # contiguous, no overlap
    for r, s, e in plan:
        assert r.contains(s) and (e is None or s < e)
        assert e is None or r.end is None or e <= r.end


def test_refresh_targets_order(map3: ShardMap) -> None:
    cache = RoutingCache(["seed:9", map3.nodes[1].client_addr])
    cache.update(map3)
    targets = cache.refresh_targets()
    meta_leader = map3.nodes[map3.meta_preferred_leader].client_addr
    assert targets[0] == meta_leader
    assert targets[-1] == "seed:9"
    assert len(targets) == len(set(targets)) == 4
    cache.on_not_leader(0, map3.meta_preferred_leader, 3)
    assert cache.refresh_targets()[0] == map3.nodes[3].client_addr
    assert cache.address_of(2) == map3.nodes[2].client_addr


def test_mark_stale(map3: ShardMap) -> None:
    cache = RoutingCache([])
    cache.update(map3)
    cache.mark_stale()
    assert cache.needs_refresh
    cache.update(map3)
    assert not cache.needs_refresh


# ---- Backoff


def test_backoff_ceiling_grows_and_caps() -> None:
    b = Backoff(base_s=0.01, max_s=1.0, multiplier=2.0)
    assert [b.ceiling(n) for n in range(4)] == [0.01, 0.02, 0.04, 0.08]
    assert b.ceiling(7) == 1.0  # 1.28 capped
    assert b.ceiling(10**9) == 1.0  # no overflow
    assert Backoff(0.5, 0.5, 3.0).ceiling(0) == 0.5
    assert Backoff(0.1, 5.0, 1.0).ceiling(50) == 0.1


@given(st.integers(min_value=0, max_value=10_000), st.integers(min_value=0, max_value=2**32))
def test_backoff_delay_in_bounds(attempt: int, seed: int) -> None:
    b = Backoff(base_s=0.005, max_s=2.0, multiplier=1.7)
    delay = b.delay(attempt, random.Random(seed))
    assert 0.0 <= delay < b.ceiling(attempt) <= 2.0


def test_backoff_full_jitter_is_deterministic_and_spread() -> None:
    b = Backoff(base_s=0.01, max_s=1.0)
    a = [b.delay(9, random.Random(7)) for _ in range(3)]
    assert a[0] == a[1] == a[2]  # same seed, same delay
    rng = random.Random(1)
    delays = [b.delay(9, rng) for _ in range(500)]
    assert min(delays) < 0.1 and max(delays) > 0.9  # full jitter: spread over [0, 1)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (dict(base_s=0.0), "base_s"),
        (dict(base_s=1.0, max_s=0.5), "max_s"),
        (dict(multiplier=0.5), "multiplier"),
    ],
)
def test_backoff_rejects_bad_parameters(kwargs: dict[str, float], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        Backoff(**kwargs)
    with pytest.raises(ValueError, match="attempt"):
        Backoff().ceiling(-1)


def test_a_hint_naming_a_node_missing_from_the_map_rotates_and_marks_stale(
    nodes3: list[NodeAddress],
) -> None:
    """A NOT_LEADER hint naming a node our map does not have (one added since) cannot be
    routed to: the guess moves to the next replica and the map is stale. (The last lines
    of test_not_leader_hint_outside_replicas_marks_stale ask from a node that is no longer
    the guess, so they return before the hint is looked at; adopting the unknown node
    survived there, and made every request of the group fail with InvalidShardMap.)"""
    m = bootstrap(nodes3, [b"m"], 2)
    cache = RoutingCache([])
    cache.update(m)
    asked = cache.leader_for(1)
    assert asked is not None
    cache.on_not_leader(1, asked, 42)
    assert cache.needs_refresh
    guess = cache.leader_for(1)
    assert guess in m.group(1).replicas and guess != asked
    cache.address_of(guess)  # routable


def test_refresh_targets_ask_the_meta_replicas_before_the_other_nodes(
    nodes3: list[NodeAddress],
) -> None:
    """refresh_targets: the meta leader guess, then the other meta replicas, then the data
    nodes, then the seeds (mutation audit: leaving the meta replicas out of the order went
    unnoticed with map3, whose meta replicas are every node)."""
    extra = [
        NodeAddress(
            node_id=i,
            name=f"n{i}",
            client_addr=f"127.0.0.1:{7000 + i}",
            peer_addr=f"127.0.0.1:{8000 + i}",
        )
        for i in (4, 5)
    ]
    nodes = {n.node_id: n for n in [*nodes3, *extra]}
    m = ShardMap(
        1,
        [RangeDescriptor(1, b"", None, (1, 2, 3), 1)],
        nodes,
        meta_replicas=(3, 4, 5),
        meta_preferred_leader=4,
    )
    cache = RoutingCache(["seed:9"])
    cache.update(m)
    address = {i: n.client_addr for i, n in nodes.items()}
    assert cache.refresh_targets() == [
        address[4],
        address[3],
        address[5],
        address[1],
        address[2],
        "seed:9",
    ]
