"""Shard map and routing: key ranges -> Paxos group -> replicas.

The supported surface of the package; import from here, not from the submodules.
Pure and deterministic throughout: no clocks, no I/O, no global randomness.
"""

from router.cache import Backoff, Rng, RoutingCache, ScanPart
from router.codec import (
    decode_meta_command,
    decode_meta_result,
    decode_meta_snapshot,
    decode_shard_map,
    encode_meta_command,
    encode_meta_result,
    encode_meta_snapshot,
    encode_shard_map,
)
from router.errors import (
    InvalidShardMap,
    MalformedMessage,
    RouterError,
    ShardMapUnavailable,
    UnknownGroup,
    WrongShard,
)
from router.meta import (
    Bootstrap,
    MetaCommand,
    MetaResult,
    MetaStateMachine,
    MetaStatus,
    SplitRange,
)
from router.shard_map import META_GROUP_ID, NodeAddress, RangeDescriptor, ShardMap, bootstrap

__all__ = [
    "META_GROUP_ID",
    "Backoff",
    "Bootstrap",
    "InvalidShardMap",
    "MalformedMessage",
    "MetaCommand",
    "MetaResult",
    "MetaStateMachine",
    "MetaStatus",
    "NodeAddress",
    "RangeDescriptor",
    "Rng",
    "RouterError",
    "RoutingCache",
    "ScanPart",
    "ShardMap",
    "ShardMapUnavailable",
    "SplitRange",
    "UnknownGroup",
    "WrongShard",
    "bootstrap",
    "decode_meta_command",
    "decode_meta_result",
    "decode_meta_snapshot",
    "decode_shard_map",
    "encode_meta_command",
    "encode_meta_result",
    "encode_meta_snapshot",
    "encode_shard_map",
]
