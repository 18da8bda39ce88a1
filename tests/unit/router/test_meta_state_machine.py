"""MetaStateMachine: bootstrap once, split, replay, snapshot/restore, malformed input."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from router import (
    Bootstrap,
    MalformedMessage,
    MetaStateMachine,
    MetaStatus,
    ShardMap,
    SplitRange,
    bootstrap,
    encode_meta_command,
)
from router.shard_map import NodeAddress


def boot(m: ShardMap) -> bytes:
    return encode_meta_command(Bootstrap(shard_map=m))


def split(**kw: object) -> bytes:
    args: dict[str, object] = {
        "group_id": 2,
        "split_key": b"k",
        "new_group_id": 7,
        "replicas": (1, 2),
    }
    args.update(kw)
    return encode_meta_command(SplitRange(**args))  # type: ignore[arg-type]


def test_starts_empty() -> None:
    sm = MetaStateMachine()
    assert sm.applied_index == 0 and sm.shard_map is None


def test_bootstrap_once(map3: ShardMap, nodes3: list[NodeAddress]) -> None:
    sm = MetaStateMachine()
    [first] = sm.apply(1, [boot(map3)])
    assert first.status is MetaStatus.APPLIED and first.ok and first.shard_map == map3
    assert sm.shard_map == map3 and sm.applied_index == 1

    other = bootstrap(nodes3, [b"x"], 1)
    [second] = sm.apply(2, [boot(other)])
    assert second.status is MetaStatus.ALREADY_BOOTSTRAPPED and not second.ok
    assert second.shard_map == map3  # answered with the existing map
    assert sm.shard_map == map3 and sm.applied_index == 2


def test_two_bootstraps_in_one_slot_first_wins(map3: ShardMap, nodes3: list[NodeAddress]) -> None:
    other = bootstrap(nodes3, [b"x"], 1)
    sm = MetaStateMachine()
    results = sm.apply(5, [boot(other), boot(map3)])
    assert [r.status for r in results] == [MetaStatus.APPLIED, MetaStatus.ALREADY_BOOTSTRAPPED]
    assert sm.shard_map == other and sm.applied_index == 5


def test_replayed_slot_is_ignored(map3: ShardMap) -> None:
    sm = MetaStateMachine()
    sm.apply(1, [boot(map3)])
    sm.apply(2, [split()])
    assert sm.shard_map is not None and sm.shard_map.version == 2
    assert sm.apply(2, [split(split_key=b"h", new_group_id=8)]) == []
    assert sm.apply(1, [boot(map3)]) == []
    assert sm.shard_map.version == 2 and sm.applied_index == 2


def test_noop_slot_advances_index() -> None:
    sm = MetaStateMachine()
    assert sm.apply(3, []) == []
    assert sm.applied_index == 3


def test_split_bumps_version(map3: ShardMap) -> None:
    sm = MetaStateMachine()
    sm.apply(1, [boot(map3)])
    [r] = sm.apply(2, [split(preferred_leader=2, expected_version=1)])
    assert r.ok and r.shard_map is not None
    assert r.shard_map.version == 2
    assert r.shard_map.locate(b"k").group_id == 7
    assert r.shard_map.group(7).preferred_leader == 2
    assert sm.shard_map == r.shard_map


@pytest.mark.parametrize(
    ("command", "match"),
    [
        (dict(expected_version=5), "planned on shard map version 5"),
        (dict(group_id=9), "group 9 is not in shard map"),
        (dict(new_group_id=3), "already in use"),
        (dict(split_key=b"g"), "not strictly inside"),
        (dict(replicas=(1, 99)), "unknown node"),
        (dict(replicas=()), "no replicas"),
    ],
)
def test_split_rejections_change_nothing(
    map3: ShardMap, command: dict[str, object], match: str
) -> None:
    sm = MetaStateMachine()
    sm.apply(1, [boot(map3)])
    [r] = sm.apply(2, [split(**command)])
    assert r.status is MetaStatus.REJECTED and not r.ok
    assert match in r.error
    assert sm.shard_map == map3 and r.shard_map == map3
    assert sm.applied_index == 2


def test_split_before_bootstrap_rejected() -> None:
    sm = MetaStateMachine()
    [r] = sm.apply(1, [split()])
    assert r.status is MetaStatus.REJECTED and "not bootstrapped" in r.error
    assert sm.shard_map is None


def test_malformed_commands_give_error_results(map3: ShardMap) -> None:
    sm = MetaStateMachine()
    results = sm.apply(1, [b"\xff\xfe garbage", b"", boot(map3)])
    assert [r.status for r in results] == [
        MetaStatus.MALFORMED,
        MetaStatus.MALFORMED,
        MetaStatus.APPLIED,
    ]
    assert "malformed meta command" in results[0].error
    assert sm.shard_map == map3


MAP3 = bootstrap(
    [
        NodeAddress(node_id=i, name=f"n{i}", client_addr=f"c{i}", peer_addr=f"p{i}")
        for i in (1, 2, 3)
    ],
    [b"g", b"p"],
    3,
)


@given(st.data())
def test_corrupted_commands_never_raise(data: st.DataObject) -> None:
    """Flip, cut and extend valid encodings: the SM answers, it never raises (a poison pill)."""
    map3 = MAP3
    valid = data.draw(st.sampled_from([boot(map3), split(), split(expected_version=1)]))
    position = data.draw(st.integers(min_value=0, max_value=len(valid) - 1))
    mutated = bytearray(valid)
    mutated[position] = data.draw(st.integers(min_value=0, max_value=255))
    candidates = [bytes(mutated), valid[:position], valid + data.draw(st.binary(max_size=8))]
    sm = MetaStateMachine()
    sm.apply(1, [boot(map3)])
    results = sm.apply(2, candidates)
    assert len(results) == 3
    assert sm.applied_index == 2


def test_snapshot_restore(map3: ShardMap) -> None:
    sm = MetaStateMachine()
    sm.apply(1, [boot(map3)])
    sm.apply(4, [split()])
    data = sm.snapshot()

    fresh = MetaStateMachine()
    fresh.restore(4, data)
    assert fresh.applied_index == 4 and fresh.shard_map == sm.shard_map
    # The restored replica continues exactly like the original.
    a = sm.apply(5, [split(group_id=7, split_key=b"m", new_group_id=8, expected_version=2)])
    b = fresh.apply(5, [split(group_id=7, split_key=b"m", new_group_id=8, expected_version=2)])
    assert a == b and a[0].ok
    assert fresh.snapshot() == sm.snapshot()


def test_snapshot_before_bootstrap() -> None:
    sm = MetaStateMachine()
    sm.apply(2, [])
    fresh = MetaStateMachine()
    fresh.restore(2, sm.snapshot())
    assert fresh.applied_index == 2 and fresh.shard_map is None


def test_restore_rejects_bad_snapshots(map3: ShardMap) -> None:
    sm = MetaStateMachine()
    sm.apply(3, [boot(map3)])
    fresh = MetaStateMachine()
    with pytest.raises(MalformedMessage, match="installed as index 4"):
        fresh.restore(4, sm.snapshot())
    with pytest.raises(MalformedMessage):
        fresh.restore(3, b"\xff\xff")
    assert fresh.applied_index == 0 and fresh.shard_map is None


def test_replicas_agree(map3: ShardMap, nodes3: list[NodeAddress]) -> None:
    """Determinism: two replicas fed the same slots hold byte-identical state."""
    slots = [
        (1, [split()]),
        (2, [boot(map3), boot(bootstrap(nodes3, [], 1))]),
        (3, [split(), b"junk"]),
        (5, [split(group_id=7, split_key=b"n", new_group_id=8, replicas=(3,))]),
    ]
    a, b = MetaStateMachine(), MetaStateMachine()
    out_a = [a.apply(s, c) for s, c in slots]
    out_b = [b.apply(s, c) for s, c in slots]
    assert out_a == out_b and a.snapshot() == b.snapshot()
    assert a.shard_map is not None and a.shard_map.version == 3
