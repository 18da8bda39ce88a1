"""The client-side routing cache and the retry backoff, both sans-I/O.

Theory of operation
-------------------
A client (or a node forwarding a request) keeps the newest `ShardMap` it has seen and, per
group, a guess of the group's leader. It routes a key to the guessed leader of the range that
owns it. Answers from servers move the cache:

- `NotLeader(hint)`, UNAVAILABLE, no connection or no answer from the node asked: the guess
  moves to the hint; without a hint, to the next replica of the group (round-robin), so
  repeated misses visit every replica. Only while the guess is still the node asked
  (`on_not_leader`): concurrent requests that fail at one node move it once.
- `WrongShard(map_version)`: the server's map is newer than ours; the cache becomes stale
  (`needs_refresh`) until a map of at least that version is given to `update`.

Fetching a map, sleeping and retrying are the caller's business: this module never does I/O,
never reads a clock and draws randomness only from the `Rng` it is handed.
"""

from __future__ import annotations

import math
from typing import Protocol

from router.errors import ShardMapUnavailable
from router.shard_map import META_GROUP_ID, RangeDescriptor, ShardMap

ScanPart = tuple[RangeDescriptor, bytes, bytes | None]
"""One shard's part of a scan: (range, sub_start, sub_end), sub_end None = +inf."""


class RoutingCache:
    """The latest shard map a client was given, plus a leader guess per group."""

    __slots__ = ("_leaders", "_map", "_min_version", "_seeds", "_stale")

    def __init__(self, seeds: list[str]) -> None:
        self._seeds = tuple(seeds)
        self._map: ShardMap | None = None
        # The newest map version a server told us about; ours must reach it.
        self._min_version = 0
        # Set when an answer shows our map is wrong in a way the version does not capture.
        self._stale = False
        self._leaders: dict[int, int] = {}

    @property
    def seeds(self) -> tuple[str, ...]:
        """The client addresses to ask for a map when none of the map's nodes answer."""
        return self._seeds

    @property
    def shard_map(self) -> ShardMap | None:
        """The newest map given to `update`, or None."""
        return self._map

    @property
    def map_version(self) -> int | None:
        """The cached map's version, or None when there is no map."""
        return None if self._map is None else self._map.version

    @property
    def needs_refresh(self) -> bool:
        """Whether the caller should fetch a map (none yet, or a server has a newer one)."""
        return self._map is None or self._stale or self._map.version < self._min_version

    def update(self, shard_map: ShardMap) -> bool:
        """Offer a map; keep it only if it is newer than the cached one. Returns whether kept.

        Leader guesses survive for groups whose guessed node is still a replica; other groups
        start again from their preferred leader. A map of the cached version (the refresh
        found nothing newer) clears the stale mark set by `on_not_leader` and a newer version
        a server claimed (`on_wrong_shard`), and drops guesses outside the replicas.
        """
        current = self._map
        if current is not None and shard_map.version <= current.version:
            if shard_map.version == current.version:
                # The refresh found no newer map. A newer version some server claimed is
                # not the cluster's (yet): forget it, or one bad answer made every later
                # request fetch the map. A guess outside a group's replicas (a hint from a
                # stale or confused node) goes too: it answered UNKNOWN_GROUP until the
                # deadline, for every request of the group (both found by review).
                self._stale = False
                self._min_version = min(self._min_version, shard_map.version)
                self._keep_replica_guesses(shard_map)
            return False
        self._map = shard_map
        self._stale = False
        self._keep_replica_guesses(shard_map)
        return True

    def _keep_replica_guesses(self, shard_map: ShardMap) -> None:
        self._leaders = {
            g: leader
            for g, leader in self._leaders.items()
            if shard_map.has_group(g) and leader in shard_map.replicas(g)
        }

    def _require_map(self) -> ShardMap:
        if self._map is None:
            raise ShardMapUnavailable(self._seeds)
        return self._map

    def leader_for(self, group_id: int) -> int | None:
        """The guessed leader of `group_id` (initially its preferred leader), or None if the
        group (or any map) is unknown."""
        if self._map is None or not self._map.has_group(group_id):
            return None
        guess = self._leaders.get(group_id)
        return self._map.preferred_leader(group_id) if guess is None else guess

    def on_not_leader(self, group_id: int, asked: int, hint: int | None = None) -> None:
        """Node `asked`, sent a request as `group_id`'s guessed leader, did not serve it: it
        said NOT_LEADER (naming `hint` if it knows the leader) or UNAVAILABLE, could not be
        reached, or did not answer in time.

        The one rule for every such answer: it moves the guess only while the guess is still
        `asked`. Concurrent requests fail at the same node together; had each moved the guess
        one replica on, one failure per replica put it back on that node, a second redirect
        to the same leader rotated it off that leader, and a late answer moved it off a
        leader another request had found meanwhile (all found by review).

        A hint naming another node becomes the guess if the node is known (it can serve the
        request); a hint outside the group's replicas means our map is stale, and
        `needs_refresh` turns on. Otherwise the guess moves to the replica after `asked`, so
        repeated misses visit every replica in a fixed order.
        """
        shard_map = self._map
        if shard_map is None or not shard_map.has_group(group_id):
            return
        replicas = shard_map.replicas(group_id)
        if hint == asked:
            hint = None  # the node names itself: no news
        if hint is not None and hint not in replicas:
            self._stale = True
        if self.leader_for(group_id) != asked:
            return
        if hint is not None and hint in shard_map.nodes:
            self._leaders[group_id] = hint
            return
        # No (usable) hint: try the next replica in a fixed order.
        position = replicas.index(asked) if asked in replicas else -1
        self._leaders[group_id] = replicas[(position + 1) % len(replicas)]

    def on_wrong_shard(self, map_version: int) -> bool:
        """A server refused a key it does not own under its map of `map_version`.

        Returns `needs_refresh`: True when the server's map is newer than ours (or we have
        none). When it is not newer, the server is the stale one and a plain retry will do.
        """
        self._min_version = max(self._min_version, map_version)
        return self.needs_refresh

    def mark_stale(self) -> None:
        """Force a refresh, e.g. after UnknownGroup from a server."""
        self._stale = True

    def address_of(self, node_id: int) -> str:
        """The client address of a node of the cached map.

        Raises:
            ShardMapUnavailable: no map yet.
            InvalidShardMap: the node is not in the map.
        """
        return self._require_map().node(node_id).client_addr

    def route(self, key: bytes) -> tuple[RangeDescriptor, str]:
        """The range owning `key` and the client address of its guessed leader.

        Raises:
            ShardMapUnavailable: no map yet (fetch one from `refresh_targets()`).
        """
        shard_map = self._require_map()
        descriptor = shard_map.locate(key)
        return descriptor, self._leader_address(shard_map, descriptor.group_id)

    def route_group(self, group_id: int) -> str:
        """The client address of the guessed leader of `group_id` (0 = the meta group).

        Raises:
            ShardMapUnavailable: no map yet.
            UnknownGroup: the group is not in the cached map.
        """
        return self._leader_address(self._require_map(), group_id)

    def _leader_address(self, shard_map: ShardMap, group_id: int) -> str:
        guess = self._leaders.get(group_id)
        leader = shard_map.preferred_leader(group_id) if guess is None else guess
        return shard_map.node(leader).client_addr

    def plan_scan(self, start: bytes, end: bytes | None) -> list[ScanPart]:
        """Cut the scan [start, end) (end None = +inf) into one part per shard, in key order.

        Raises:
            ShardMapUnavailable: no map yet.
        """
        return self._require_map().split_range(start, end)

    def refresh_targets(self) -> list[str]:
        """Client addresses to ask for a fresh map, best first, without duplicates.

        The meta group's guessed leader, then its other replicas, then the data nodes, then
        the seeds: any node can answer from its own copy, the meta leader most freshly.
        """
        out: list[str] = []
        shard_map = self._map
        if shard_map is not None:
            leader = self.leader_for(META_GROUP_ID)
            order = [leader] if leader is not None else []
            order += [n for n in shard_map.meta_replicas if n != leader]
            order += [n for n in shard_map.nodes if n not in order]
            out += [shard_map.nodes[n].client_addr for n in order]
        out += self._seeds
        return list(dict.fromkeys(out))


class Rng(Protocol):
    """The part of `random.Random` that Backoff uses (pass the caller's seeded instance)."""

    def random(self) -> float: ...


class Backoff:
    """Capped exponential backoff with full jitter (AWS Architecture Blog, "Exponential
    Backoff and Jitter", 2015): delay(n) is uniform in [0, min(max_s, base_s * multiplier**n)).
    """

    __slots__ = ("base_s", "max_s", "multiplier")

    def __init__(self, base_s: float = 0.01, max_s: float = 1.0, multiplier: float = 2.0) -> None:
        if not base_s > 0:
            raise ValueError(f"base_s must be > 0, got {base_s}")
        if not max_s >= base_s:
            raise ValueError(f"max_s ({max_s}) must be >= base_s ({base_s})")
        if not multiplier >= 1:
            raise ValueError(f"multiplier must be >= 1, got {multiplier}")
        self.base_s = base_s
        self.max_s = max_s
        self.multiplier = multiplier

    def ceiling(self, attempt: int) -> float:
        """The upper bound of the delay before retry number `attempt` (0 = the first retry)."""
        if attempt < 0:
            raise ValueError(f"attempt must be >= 0, got {attempt}")
        if self.multiplier == 1:
            return self.base_s
        # Compare in log space so that huge attempt numbers do not overflow a float.
        if attempt >= math.log(self.max_s / self.base_s, self.multiplier):
            return self.max_s
        return min(self.max_s, self.base_s * self.multiplier**attempt)

    def delay(self, attempt: int, rng: Rng) -> float:
        """The jittered delay in seconds before retry number `attempt`, in [0, ceiling)."""
        return rng.random() * self.ceiling(attempt)

    def __repr__(self) -> str:
        return f"Backoff(base_s={self.base_s}, max_s={self.max_s}, multiplier={self.multiplier})"
