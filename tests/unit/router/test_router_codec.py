"""router.codec: round trips of maps, commands, results and snapshots; hostile bytes."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from router import (
    Bootstrap,
    InvalidShardMap,
    MalformedMessage,
    MetaResult,
    MetaStatus,
    NodeAddress,
    RangeDescriptor,
    RouterError,
    ShardMap,
    SplitRange,
    decode_meta_command,
    decode_meta_result,
    decode_meta_snapshot,
    decode_shard_map,
    encode_meta_command,
    encode_meta_result,
    encode_meta_snapshot,
    encode_shard_map,
)
from router import router_pb2 as pb

ids = st.integers(min_value=1, max_value=2**64 - 1)
small_ids = st.integers(min_value=1, max_value=50)


@st.composite
def shard_maps(draw: st.DrawFn) -> ShardMap:
    node_ids = draw(st.lists(ids, min_size=1, max_size=6, unique=True))
    nodes = {
        n: NodeAddress(
            node_id=n,
            name=draw(st.text(max_size=8)),
            client_addr=draw(st.text(max_size=12)),
            peer_addr=draw(st.text(max_size=12)),
        )
        for n in node_ids
    }
    points = sorted(draw(st.sets(st.binary(min_size=1, max_size=6), max_size=6)))
    group_ids = draw(st.lists(ids, min_size=len(points) + 1, max_size=len(points) + 1, unique=True))
    starts: list[bytes] = [b"", *points]
    ends: list[bytes | None] = [*points, None]

    def replica_set() -> tuple[tuple[int, ...], int]:
        reps = tuple(draw(st.lists(st.sampled_from(node_ids), min_size=1, unique=True)))
        return reps, draw(st.sampled_from(reps))

    ranges = []
    for g, s, e in zip(group_ids, starts, ends, strict=True):
        reps, leader = replica_set()
        ranges.append(RangeDescriptor(g, s, e, reps, leader))
    meta, meta_leader = replica_set()
    version = draw(st.integers(min_value=0, max_value=2**64 - 1))
    return ShardMap(version, ranges, nodes, meta, meta_leader)


@given(shard_maps())
def test_shard_map_round_trip(m: ShardMap) -> None:
    data = encode_shard_map(m)
    back = decode_shard_map(data)
    assert back == m
    assert back.ranges == m.ranges and dict(back.nodes) == dict(m.nodes)
    assert encode_shard_map(back) == data  # deterministic encoding


split_ranges = st.builds(
    SplitRange,
    group_id=ids,
    split_key=st.binary(max_size=8),
    new_group_id=ids,
    replicas=st.lists(ids, max_size=4).map(tuple),
    preferred_leader=st.none() | ids,
    expected_version=st.none() | st.integers(min_value=0, max_value=2**64 - 1),
)


@given(st.one_of(shard_maps().map(lambda m: Bootstrap(shard_map=m)), split_ranges))
def test_meta_command_round_trip(command: Bootstrap | SplitRange) -> None:
    assert decode_meta_command(encode_meta_command(command)) == command


@given(
    st.sampled_from(MetaStatus),
    st.none() | shard_maps(),
    st.text(max_size=20),
)
def test_meta_result_round_trip(status: MetaStatus, m: ShardMap | None, error: str) -> None:
    result = MetaResult(status=status, shard_map=m, error=error)
    assert decode_meta_result(encode_meta_result(result)) == result


@given(st.integers(min_value=0, max_value=2**63), st.none() | shard_maps())
def test_meta_snapshot_round_trip(index: int, m: ShardMap | None) -> None:
    assert decode_meta_snapshot(encode_meta_snapshot(index, m)) == (index, m)


@given(st.binary(max_size=200))
def test_garbage_never_escapes_as_another_exception(data: bytes) -> None:
    for decode in (decode_shard_map, decode_meta_command, decode_meta_result, decode_meta_snapshot):
        with contextlib.suppress(RouterError):
            decode(data)


def test_malformed_bytes_raise_malformed_message() -> None:
    with pytest.raises(MalformedMessage, match="malformed shard map"):
        decode_shard_map(b"\xff\xff\xff")
    with pytest.raises(MalformedMessage, match="no command set"):
        decode_meta_command(b"")
    with pytest.raises(MalformedMessage, match="expected bytes"):
        decode_meta_command("text")  # type: ignore[arg-type]


def test_decoded_map_is_validated() -> None:
    msg = pb.ShardMap(version=1)
    msg.nodes.add(node_id=1, name="n1", client_addr="c", peer_addr="p")
    msg.ranges.add(group_id=1, start=b"a", replicas=[1])  # does not start at b""
    msg.meta_replicas.append(1)
    with pytest.raises(InvalidShardMap, match="must start at b''"):
        decode_shard_map(msg.SerializeToString())
    del msg.ranges[:]
    msg.ranges.add(group_id=1, start=b"", end=b"m", replicas=[1])  # does not reach +inf
    with pytest.raises(InvalidShardMap, match=r"\+inf"):
        decode_shard_map(msg.SerializeToString())


def test_duplicate_node_in_wire_map_rejected() -> None:
    msg = pb.ShardMap(version=1, meta_replicas=[1])
    msg.nodes.add(node_id=1, name="a")
    msg.nodes.add(node_id=1, name="b")
    msg.ranges.add(group_id=1, start=b"", replicas=[1])
    with pytest.raises(InvalidShardMap, match="listed twice"):
        decode_shard_map(msg.SerializeToString())


def test_bootstrap_without_map_is_malformed() -> None:
    msg = pb.MetaCommand()
    msg.bootstrap.SetInParent()
    with pytest.raises(MalformedMessage, match="without a map"):
        decode_meta_command(msg.SerializeToString())


def test_split_with_zero_ids_is_malformed() -> None:
    msg = pb.MetaCommand()
    msg.split_range.split_key = b"k"
    with pytest.raises(MalformedMessage, match="group_id"):
        decode_meta_command(msg.SerializeToString())


def test_unknown_result_status_is_malformed() -> None:
    with pytest.raises(MalformedMessage, match="unknown status"):
        decode_meta_result(pb.MetaResult().SerializeToString())
