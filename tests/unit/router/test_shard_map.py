"""ShardMap: the validation rules, locate at the boundaries, overlap queries, bootstrap, split."""

from __future__ import annotations

from collections import Counter

import pytest

from router import (
    META_GROUP_ID,
    InvalidShardMap,
    NodeAddress,
    RangeDescriptor,
    ShardMap,
    UnknownGroup,
    bootstrap,
)

N = {
    i: NodeAddress(node_id=i, name=f"n{i}", client_addr=f"c{i}", peer_addr=f"p{i}")
    for i in (1, 2, 3)
}


def rd(
    group_id: int, start: bytes, end: bytes | None, replicas: tuple[int, ...] = (1, 2, 3)
) -> RangeDescriptor:
    return RangeDescriptor(group_id, start, end, replicas)


def good_ranges() -> list[RangeDescriptor]:
    return [rd(1, b"", b"g"), rd(2, b"g", b"p"), rd(3, b"p", None)]


def test_valid_map_builds() -> None:
    m = ShardMap(1, good_ranges(), N, (1, 2, 3))
    assert m.version == 1
    assert m.meta_preferred_leader == 1
    assert [r.preferred_leader for r in m.ranges] == [1, 1, 1]
    assert m.group_ids() == [0, 1, 2, 3]


# ---- rule violations, one test each


def test_rejects_no_ranges() -> None:
    with pytest.raises(InvalidShardMap, match="no ranges"):
        ShardMap(1, [], N, (1,))


def test_rejects_first_range_not_at_empty_key() -> None:
    with pytest.raises(InvalidShardMap, match="must start at b''"):
        ShardMap(1, [rd(1, b"a", b"g"), rd(2, b"g", None)], N, (1,))


def test_rejects_last_range_bounded() -> None:
    with pytest.raises(InvalidShardMap, match=r"must end at \+inf"):
        ShardMap(1, [rd(1, b"", b"g"), rd(2, b"g", b"z")], N, (1,))


def test_rejects_gap() -> None:
    with pytest.raises(InvalidShardMap, match="gap"):
        ShardMap(1, [rd(1, b"", b"g"), rd(2, b"h", None)], N, (1,))


def test_rejects_overlap() -> None:
    with pytest.raises(InvalidShardMap, match="overlap"):
        ShardMap(1, [rd(1, b"", b"h"), rd(2, b"g", None)], N, (1,))


def test_rejects_unsorted() -> None:
    with pytest.raises(InvalidShardMap):
        ShardMap(1, [rd(2, b"g", None), rd(1, b"", b"g")], N, (1,))


def test_rejects_unbounded_range_before_the_last() -> None:
    with pytest.raises(InvalidShardMap, match="only the last range may be unbounded"):
        ShardMap(1, [rd(1, b"", None), rd(2, b"g", None)], N, (1,))


def test_rejects_empty_or_reversed_range() -> None:
    with pytest.raises(InvalidShardMap, match="empty or reversed"):
        rd(1, b"g", b"g")
    with pytest.raises(InvalidShardMap, match="empty or reversed"):
        rd(1, b"g", b"a")


def test_rejects_duplicate_group_ids() -> None:
    with pytest.raises(InvalidShardMap, match="group 1 serves two ranges"):
        ShardMap(1, [rd(1, b"", b"g"), rd(1, b"g", None)], N, (1,))


@pytest.mark.parametrize("group_id", [0, -1])
def test_rejects_group_id_not_positive(group_id: int) -> None:
    with pytest.raises(InvalidShardMap, match="group_id"):
        rd(group_id, b"", None)


def test_rejects_empty_replicas() -> None:
    with pytest.raises(InvalidShardMap, match="no replicas"):
        rd(1, b"", None, ())
    with pytest.raises(InvalidShardMap, match="meta group 0 has no replicas"):
        ShardMap(1, [rd(1, b"", None)], N, ())


def test_rejects_duplicate_replica() -> None:
    with pytest.raises(InvalidShardMap, match="twice"):
        rd(1, b"", None, (1, 1))


def test_rejects_unknown_replica() -> None:
    with pytest.raises(InvalidShardMap, match=r"unknown node\(s\) \[9\]"):
        ShardMap(1, [rd(1, b"", None, (1, 9))], N, (1,))
    with pytest.raises(InvalidShardMap, match="meta group 0 names unknown"):
        ShardMap(1, [rd(1, b"", None)], N, (1, 9))


def test_rejects_preferred_leader_outside_replicas() -> None:
    with pytest.raises(InvalidShardMap, match="preferred leader 3"):
        RangeDescriptor(1, b"", None, (1, 2), 3)
    with pytest.raises(InvalidShardMap, match="preferred leader 3"):
        ShardMap(1, [rd(1, b"", None)], N, (1, 2), 3)


def test_rejects_node_table_key_mismatch() -> None:
    with pytest.raises(InvalidShardMap, match="the key must be its id"):
        ShardMap(1, [rd(1, b"", None, (1,))], {1: N[1], 5: N[2]}, (1,))


def test_rejects_bad_node_and_version() -> None:
    with pytest.raises(InvalidShardMap, match="node_id"):
        NodeAddress(node_id=0, name="x", client_addr="c", peer_addr="p")
    with pytest.raises(InvalidShardMap, match="version"):
        ShardMap(-1, good_ranges(), N, (1,))
    with pytest.raises(InvalidShardMap, match="must be an int"):
        ShardMap(True, good_ranges(), N, (1,))


def test_map_is_immutable(map3: ShardMap) -> None:
    with pytest.raises(AttributeError):
        map3.version = 9  # type: ignore[misc]
    with pytest.raises(TypeError):
        map3.nodes[9] = N[1]  # type: ignore[index]


# ---- locate


def test_locate_boundaries(map3: ShardMap) -> None:
    assert map3.locate(b"").group_id == 1
    assert map3.locate(b"f\xff\xff").group_id == 1
    assert map3.locate(b"g").group_id == 2  # start inclusive
    assert map3.locate(b"g\x00").group_id == 2
    assert map3.locate(b"o\xff").group_id == 2
    assert map3.locate(b"p").group_id == 3  # end exclusive
    assert map3.locate(b"\xff" * 100).group_id == 3  # toward +inf


def test_locate_single_range() -> None:
    m = ShardMap(1, [rd(1, b"", None, (1,))], N, (1,))
    for key in (b"", b"a", b"\xff\xff"):
        assert m.locate(key).group_id == 1


def test_locate_agrees_with_contains(map3: ShardMap) -> None:
    for key in (b"", b"a", b"g", b"gg", b"p", b"pq", b"zzz"):
        owners = [r for r in map3.ranges if r.contains(key)]
        assert owners == [map3.locate(key)]


# ---- ranges_overlapping


def test_ranges_overlapping(map3: ShardMap) -> None:
    ids = lambda s, e: [r.group_id for r in map3.ranges_overlapping(s, e)]  # noqa: E731
    assert ids(b"", None) == [1, 2, 3]
    assert ids(b"a", b"b") == [1]
    assert ids(b"a", b"g") == [1]  # end exclusive: b"g" itself not included
    assert ids(b"a", b"g\x00") == [1, 2]
    assert ids(b"g", b"p") == [2]
    assert ids(b"h", None) == [2, 3]
    assert ids(b"p", None) == [3]
    assert ids(b"b", b"b") == []
    assert ids(b"z", b"a") == []


# ---- group lookups


def test_group_lookups(map3: ShardMap) -> None:
    assert map3.group(2).start == b"g"
    with pytest.raises(UnknownGroup, match="group 9 is not in shard map version 1"):
        map3.group(9)
    with pytest.raises(UnknownGroup):
        map3.group(META_GROUP_ID)  # the meta group has no range
    assert map3.replicas(META_GROUP_ID) == map3.meta_replicas
    assert map3.preferred_leader(META_GROUP_ID) == map3.meta_preferred_leader
    assert map3.has_group(0) and map3.has_group(3) and not map3.has_group(4)
    assert map3.groups_of_node(1) == [0, 1, 2, 3]
    with pytest.raises(InvalidShardMap, match="node 9"):
        map3.node(9)


# ---- bootstrap


def test_bootstrap_three_nodes_three_shards(map3: ShardMap) -> None:
    assert len(map3.ranges) == 3
    assert [(r.start, r.end) for r in map3.ranges] == [(b"", b"g"), (b"g", b"p"), (b"p", None)]
    assert [r.group_id for r in map3.ranges] == [1, 2, 3]
    assert map3.meta_replicas == (1, 2, 3)
    leaders = Counter([map3.meta_preferred_leader] + [r.preferred_leader for r in map3.ranges])
    assert max(leaders.values()) <= 2
    assert len(leaders) == 3  # every node leads something


def test_bootstrap_spreads_replicas() -> None:
    nodes = [N[1], N[2], N[3]] + [
        NodeAddress(node_id=i, name=f"n{i}", client_addr=f"c{i}", peer_addr=f"p{i}") for i in (4, 5)
    ]
    m = bootstrap(nodes, [b"b", b"d", b"f", b"h"], 3)
    load = Counter(n for g in m.group_ids() for n in m.replicas(g))
    # 6 groups x 3 replicas over 5 nodes: 18 / 5 -> every node holds 3 or 4.
    assert sorted(load.values()) == [3, 3, 4, 4, 4]
    leaders = Counter(m.preferred_leader(g) for g in m.group_ids())
    assert max(leaders.values()) <= 2  # ceil(6 / 5)
    for g in m.group_ids():
        assert len(m.replicas(g)) == 3
        assert m.preferred_leader(g) in m.replicas(g)


def test_bootstrap_single_node_no_splits() -> None:
    m = bootstrap([N[1]], [], 1)
    assert len(m.ranges) == 1 and m.ranges[0].end is None
    assert m.meta_replicas == (1,) and m.version == 1


@pytest.mark.parametrize(
    ("split_points", "rf", "match"),
    [
        ([b"b", b"a"], 3, "strictly increasing"),
        ([b"a", b"a"], 3, "strictly increasing"),
        ([b""], 3, "non-empty"),
        ([b"a"], 4, "replication factor"),
        ([b"a"], 0, "replication factor"),
    ],
)
def test_bootstrap_rejects(split_points: list[bytes], rf: int, match: str) -> None:
    with pytest.raises(InvalidShardMap, match=match):
        bootstrap(list(N.values()), split_points, rf)


def test_bootstrap_rejects_no_or_duplicate_nodes() -> None:
    with pytest.raises(InvalidShardMap, match="at least one node"):
        bootstrap([], [], 1)
    with pytest.raises(InvalidShardMap, match="duplicate"):
        bootstrap([N[1], N[1]], [], 1)


def test_bootstrap_is_deterministic() -> None:
    a = bootstrap(list(N.values()), [b"g", b"p"], 3)
    b = bootstrap(list(reversed(N.values())), [b"g", b"p"], 3)
    assert a == b and hash(a) == hash(b)


# ---- split


def test_split_middle(map3: ShardMap) -> None:
    new = map3.split(2, b"k", 7, (1, 2), 2)
    assert new.version == map3.version + 1
    assert [(r.group_id, r.start, r.end) for r in new.ranges] == [
        (1, b"", b"g"),
        (2, b"g", b"k"),
        (7, b"k", b"p"),
        (3, b"p", None),
    ]
    assert new.group(7).replicas == (1, 2) and new.group(7).preferred_leader == 2
    assert new.locate(b"k").group_id == 7 and new.locate(b"j").group_id == 2
    assert map3.locate(b"k").group_id == 2  # the old map is unchanged


def test_split_last_range(map3: ShardMap) -> None:
    new = map3.split(3, b"x", 4, (3,))
    assert new.group(4).end is None and new.group(3).end == b"x"


@pytest.mark.parametrize("key", [b"g", b"p", b"a", b"z"])
def test_split_key_outside_or_on_start(map3: ShardMap, key: bytes) -> None:
    with pytest.raises(InvalidShardMap, match="not strictly inside"):
        map3.split(2, key, 7, (1,))


def test_split_rejects_taken_group_id_and_unknown_group(map3: ShardMap) -> None:
    with pytest.raises(InvalidShardMap, match="already in use"):
        map3.split(2, b"k", 3, (1,))
    with pytest.raises(InvalidShardMap, match="already in use"):
        map3.split(2, b"k", 0, (1,))
    with pytest.raises(UnknownGroup):
        map3.split(9, b"k", 10, (1,))
    with pytest.raises(InvalidShardMap, match="unknown node"):
        map3.split(2, b"k", 7, (1, 42))


def test_describe_mentions_every_group(map3: ShardMap) -> None:
    text = map3.describe()
    assert "v1" in text and "g1" in text and "g3" in text and "+inf" in text


def test_a_range_label_is_what_status_and_cluster_print() -> None:
    assert RangeDescriptor(1, b"", b"j", [1]).label == "[-inf, j)"
    assert RangeDescriptor(2, b"j", b"r", [1]).label == "[j, r)"
    assert RangeDescriptor(3, b"r", None, [1]).label == "[r, +inf)"
    assert RangeDescriptor(4, b"\x00\xff", None, [1]).label == "[\\x00\\xff, +inf)"
