"""The error of a node whose config gives another shard map than its cluster stored.

Kept apart from `shard.node_identity` (which reads and writes the records on disk) so that
the sans-I/O `NodeCore` can raise it too, for the map in its meta group.
"""

from __future__ import annotations

from router.shard_map import ShardMap


class ConfigMismatch(ValueError):
    """The node's config no longer matches the shard map its cluster stored."""


def config_mismatch(config: ShardMap, stored: ShardMap) -> ConfigMismatch:
    """The error for a config whose map is not the one stored at the first start."""
    return ConfigMismatch(
        f"the config does not match the shard map stored at the first start "
        f"({_map_difference(config, stored)}): nodes' addresses, split points and "
        f"replication cannot change after the first start. Restore the config; or, if the "
        f"other nodes run this one, this node was first started on a wrong config: move "
        f"its data directory aside and start it with --rebuild (--bootstrap only if the "
        f"cluster was never started)"
    )


def _map_difference(config: ShardMap, stored: ShardMap) -> str:
    """What differs between two maps, as the config would say it."""

    def nodes(m: ShardMap) -> dict[int, str]:
        return {i: f"{n.name} {n.client_addr}" for i, n in sorted(m.nodes.items())}

    def ranges(m: ShardMap) -> list[tuple[str, tuple[int, ...]]]:
        return [(r.label, r.replicas) for r in m.ranges]

    parts = []
    if nodes(config) != nodes(stored):
        parts.append(f"nodes {nodes(config)} in the config, {nodes(stored)} stored")
    if ranges(config) != ranges(stored):
        parts.append(f"ranges {ranges(config)} in the config, {ranges(stored)} stored")
    return "; ".join(parts) or "the maps differ"
