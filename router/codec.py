"""Router dataclasses <-> protobuf bytes; the only importer of `router_pb2`.

Decoding never trusts its input: bytes that do not parse raise `MalformedMessage`, and a map
that parses but breaks a shard-map rule raises `InvalidShardMap` (both `RouterError`s and
`ValueError`s), never anything else.
"""

from __future__ import annotations

from typing import TypeVar

from google.protobuf.message import DecodeError

from router import router_pb2 as pb
from router.errors import InvalidShardMap, MalformedMessage, RouterError
from router.meta import Bootstrap, MetaCommand, MetaResult, MetaStatus, SplitRange
from router.shard_map import NodeAddress, RangeDescriptor, ShardMap

# ---- shard map


def _shard_map_to_pb(shard_map: ShardMap, out: pb.ShardMap) -> None:
    out.version = shard_map.version
    for r in shard_map.ranges:
        out.ranges.add(
            group_id=r.group_id,
            start=r.start,
            end=r.end,
            replicas=r.replicas,
            preferred_leader=r.preferred_leader,
        )
    for node in shard_map.nodes.values():
        out.nodes.add(
            node_id=node.node_id,
            name=node.name,
            client_addr=node.client_addr,
            peer_addr=node.peer_addr,
        )
    out.meta_replicas.extend(shard_map.meta_replicas)
    out.meta_preferred_leader = shard_map.meta_preferred_leader


def _shard_map_from_pb(msg: pb.ShardMap) -> ShardMap:
    nodes: dict[int, NodeAddress] = {}
    for n in msg.nodes:
        if n.node_id in nodes:
            raise InvalidShardMap(f"node {n.node_id} is listed twice")
        nodes[n.node_id] = NodeAddress(
            node_id=n.node_id, name=n.name, client_addr=n.client_addr, peer_addr=n.peer_addr
        )
    ranges = [
        RangeDescriptor(
            r.group_id,
            r.start,
            r.end if r.HasField("end") else None,
            tuple(r.replicas),
            r.preferred_leader or None,
        )
        for r in msg.ranges
    ]
    return ShardMap(
        msg.version,
        ranges,
        nodes,
        tuple(msg.meta_replicas),
        msg.meta_preferred_leader or None,
    )


_M = TypeVar("_M", pb.ShardMap, pb.MetaCommand, pb.MetaResult, pb.MetaSnapshot)


def _parse(msg: _M, data: bytes, what: str) -> _M:
    if not isinstance(data, bytes | bytearray | memoryview):
        raise MalformedMessage(what, f"expected bytes, got {type(data).__name__}")
    try:
        msg.ParseFromString(bytes(data))
    except (DecodeError, ValueError, RuntimeError) as exc:
        raise MalformedMessage(what, str(exc) or type(exc).__name__) from None
    return msg


def encode_shard_map(shard_map: ShardMap) -> bytes:
    """The protobuf encoding of `shard_map`."""
    msg = pb.ShardMap()
    _shard_map_to_pb(shard_map, msg)
    return bytes(msg.SerializeToString(deterministic=True))


def decode_shard_map(data: bytes) -> ShardMap:
    """Parse and validate a shard map.

    Raises:
        MalformedMessage: the bytes are not a ShardMap message.
        InvalidShardMap: they are, but the map breaks a rule.
    """
    return _shard_map_from_pb(_parse(pb.ShardMap(), data, "shard map"))


# ---- meta group commands, results, snapshots


def encode_meta_command(command: MetaCommand) -> bytes:
    """The protobuf encoding of a meta group command, as proposed to group 0."""
    msg = pb.MetaCommand()
    match command:
        case Bootstrap(shard_map=shard_map):
            _shard_map_to_pb(shard_map, msg.bootstrap.map)
        case SplitRange():
            split = msg.split_range
            split.group_id = command.group_id
            split.split_key = command.split_key
            split.new_group_id = command.new_group_id
            split.replicas.extend(command.replicas)
            split.preferred_leader = command.preferred_leader or 0
            if command.expected_version is not None:
                split.expected_version = command.expected_version
    return bytes(msg.SerializeToString(deterministic=True))


def decode_meta_command(data: bytes) -> MetaCommand:
    """Parse a meta group command.

    Raises:
        MalformedMessage: not a MetaCommand, no command set, or invalid fields.
        InvalidShardMap: a Bootstrap whose map breaks a rule.
    """
    msg = _parse(pb.MetaCommand(), data, "meta command")
    kind = msg.WhichOneof("command")
    if kind == "bootstrap":
        if not msg.bootstrap.HasField("map"):
            raise MalformedMessage("meta command", "Bootstrap without a map")
        return Bootstrap(shard_map=_shard_map_from_pb(msg.bootstrap.map))
    if kind == "split_range":
        s = msg.split_range
        try:
            return SplitRange(
                group_id=s.group_id,
                split_key=s.split_key,
                new_group_id=s.new_group_id,
                replicas=tuple(s.replicas),
                preferred_leader=s.preferred_leader or None,
                expected_version=s.expected_version if s.HasField("expected_version") else None,
            )
        except RouterError as exc:
            raise MalformedMessage("meta command", str(exc)) from None
    raise MalformedMessage("meta command", "no command set")


_STATUS_TO_PB = {
    MetaStatus.APPLIED: pb.MetaResult.APPLIED,
    MetaStatus.ALREADY_BOOTSTRAPPED: pb.MetaResult.ALREADY_BOOTSTRAPPED,
    MetaStatus.REJECTED: pb.MetaResult.REJECTED,
    MetaStatus.MALFORMED: pb.MetaResult.MALFORMED,
}
_STATUS_FROM_PB = {v: k for k, v in _STATUS_TO_PB.items()}


def encode_meta_result(result: MetaResult) -> bytes:
    """The protobuf encoding of a meta group result, for a reply to the proposer."""
    msg = pb.MetaResult(status=_STATUS_TO_PB[result.status], error=result.error)
    if result.shard_map is not None:
        _shard_map_to_pb(result.shard_map, msg.map)
    return bytes(msg.SerializeToString(deterministic=True))


def decode_meta_result(data: bytes) -> MetaResult:
    """Parse a meta group result.

    Raises:
        MalformedMessage: not a MetaResult, or an unknown status.
        InvalidShardMap: the map it carries breaks a rule.
    """
    msg = _parse(pb.MetaResult(), data, "meta result")
    status = _STATUS_FROM_PB.get(msg.status)
    if status is None:
        raise MalformedMessage("meta result", f"unknown status {msg.status}")
    shard_map = _shard_map_from_pb(msg.map) if msg.HasField("map") else None
    return MetaResult(status=status, shard_map=shard_map, error=msg.error)


def encode_meta_snapshot(applied_index: int, shard_map: ShardMap | None) -> bytes:
    """The meta group's snapshot: its applied index and its map (None before bootstrap)."""
    msg = pb.MetaSnapshot(applied_index=applied_index)
    if shard_map is not None:
        _shard_map_to_pb(shard_map, msg.map)
    return bytes(msg.SerializeToString(deterministic=True))


def decode_meta_snapshot(data: bytes) -> tuple[int, ShardMap | None]:
    """Parse a meta group snapshot into (applied_index, map or None).

    Raises:
        MalformedMessage: not a MetaSnapshot.
        InvalidShardMap: the map it holds breaks a rule.
    """
    msg = _parse(pb.MetaSnapshot(), data, "meta snapshot")
    shard_map = _shard_map_from_pb(msg.map) if msg.HasField("map") else None
    return msg.applied_index, shard_map
