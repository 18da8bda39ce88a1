"""Errors of the router package, sorted by what the caller can do about them.

`retryable` says whether the same request may succeed after the caller refreshes its shard map
(or waits): WrongShard, UnknownGroup and ShardMapUnavailable are; InvalidShardMap and
MalformedMessage are not (the input itself is wrong).
"""

from __future__ import annotations


class RouterError(Exception):
    """Base class of every error raised by the router package."""

    retryable: bool = False


class WrongShard(RouterError):
    """The contacted group does not own `key` under its shard map (of version `map_version`).

    The caller's routing is stale: refresh the shard map, then retry against the owner.
    """

    retryable = True

    def __init__(self, key: bytes, map_version: int, group_id: int | None = None) -> None:
        self.key = key
        self.map_version = map_version
        self.group_id = group_id
        where = f"group {group_id}" if group_id is not None else "the contacted group"
        super().__init__(
            f"key {key!r} is not served by {where} under shard map version {map_version}; "
            f"refresh the shard map (need version >= {map_version}) and retry"
        )


class UnknownGroup(RouterError):
    """`group_id` is not in the shard map (of version `map_version`, when known)."""

    retryable = True

    def __init__(self, group_id: int, map_version: int | None = None) -> None:
        self.group_id = group_id
        self.map_version = map_version
        version = f" version {map_version}" if map_version is not None else ""
        super().__init__(
            f"group {group_id} is not in shard map{version}; the map may be stale "
            f"(refresh it) or the group id is wrong"
        )


class InvalidShardMap(RouterError, ValueError):
    """A shard map (or a change to one) breaks a rule; `reason` names the rule and the culprit."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(f"invalid shard map: {reason}")


class ShardMapUnavailable(RouterError):
    """The routing cache holds no shard map yet: fetch one from the meta group or the seeds."""

    retryable = True

    def __init__(self, seeds: tuple[str, ...] = ()) -> None:
        self.seeds = seeds
        hint = f" (seeds: {', '.join(seeds)})" if seeds else " (no seeds configured)"
        super().__init__(f"no shard map cached yet; fetch one from the meta group{hint}")


class MalformedMessage(RouterError, ValueError):
    """Bytes that do not decode as the expected router protobuf message."""

    def __init__(self, what: str, reason: str) -> None:
        self.what = what
        self.reason = reason
        super().__init__(f"malformed {what}: {reason}")
