"""The shard map: ordered key ranges -> Paxos group -> replica nodes, versioned.

Theory of operation
-------------------
The key space (all byte strings, ordered bytewise) is cut into contiguous half-open ranges
[start, end); the first starts at b"" and the last ends at +infinity (`end is None`). Each range
is served by exactly one Paxos group (ids > 0). Group 0 is the meta group: it owns no key range
and hosts the map itself (`meta_replicas`, `meta_preferred_leader`).

Rules (each checked on construction; a violation raises `InvalidShardMap`):
1. version >= 0; node ids and group ids are ints, node ids > 0, data group ids > 0.
2. `nodes[i].node_id == i` for every entry.
3. ranges are sorted, contiguous and cover everything: ranges[0].start == b"", each
   range's end is the next range's start, only the last range has end None; no range is
   empty (start < end).
4. group ids are unique across ranges.
5. every replica set (the meta group's included) is non-empty, without duplicates, and names
   only known nodes; each preferred leader is one of its group's replicas.

A map is immutable; changes (a split) build a new map with a higher version. Everything is
pure and deterministic.
"""

from __future__ import annotations

import bisect
import itertools
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType

from router.errors import InvalidShardMap, UnknownGroup

META_GROUP_ID = 0
"""The group that hosts the shard map itself; it owns no key range."""

_UINT64_MAX = 2**64 - 1


def _check_id(what: str, value: object, *, minimum: int) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise InvalidShardMap(f"{what} must be an int, got {value!r}")
    if not minimum <= value <= _UINT64_MAX:
        raise InvalidShardMap(f"{what} must be in [{minimum}, 2**64), got {value}")
    return value


def _check_replicas(what: str, replicas: Sequence[int], preferred_leader: int | None) -> None:
    if len(replicas) == 0:
        raise InvalidShardMap(f"{what} has no replicas")
    for node_id in replicas:
        _check_id(f"{what} replica", node_id, minimum=1)
    if len(set(replicas)) != len(replicas):
        raise InvalidShardMap(f"{what} lists a replica twice: {tuple(replicas)}")
    if preferred_leader is not None and preferred_leader not in replicas:
        raise InvalidShardMap(
            f"{what} preferred leader {preferred_leader} is not one of its replicas "
            f"{tuple(replicas)}"
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class NodeAddress:
    """A node of the cluster: its id, a human name, and where clients and peers reach it."""

    node_id: int
    name: str
    client_addr: str
    peer_addr: str

    def __post_init__(self) -> None:
        _check_id("node_id", self.node_id, minimum=1)
        for attr in ("name", "client_addr", "peer_addr"):
            if not isinstance(getattr(self, attr), str):
                raise InvalidShardMap(f"node {self.node_id} {attr} must be a str")


@dataclass(frozen=True, slots=True, init=False)
class RangeDescriptor:
    """The keys [start, end) (end None = +inf), served by Paxos group `group_id` on `replicas`.

    `preferred_leader` (default: the first replica) is where leadership should settle, and
    the first guess of a client that has not heard of the group's leader yet.
    """

    group_id: int
    start: bytes
    end: bytes | None
    replicas: tuple[int, ...]
    preferred_leader: int

    def __init__(
        self,
        group_id: int,
        start: bytes,
        end: bytes | None,
        replicas: Iterable[int],
        preferred_leader: int | None = None,
    ) -> None:
        replicas = tuple(replicas)
        what = f"range of group {group_id}"
        _check_id("group_id", group_id, minimum=1)
        if not isinstance(start, bytes):
            raise InvalidShardMap(f"{what}: start must be bytes, got {type(start).__name__}")
        if end is not None:
            if not isinstance(end, bytes):
                raise InvalidShardMap(f"{what}: end must be bytes or None (+inf)")
            if end <= start:
                raise InvalidShardMap(f"{what} is empty or reversed: [{start!r}, {end!r})")
        _check_replicas(what, replicas, preferred_leader)
        object.__setattr__(self, "group_id", group_id)
        object.__setattr__(self, "start", start)
        object.__setattr__(self, "end", end)
        object.__setattr__(self, "replicas", replicas)
        leader = replicas[0] if preferred_leader is None else preferred_leader
        object.__setattr__(self, "preferred_leader", leader)

    def contains(self, key: bytes) -> bool:
        """Whether `key` falls in [start, end)."""
        return self.start <= key and (self.end is None or key < self.end)

    @property
    def label(self) -> str:
        """The range as people read it: "[-inf, j)", "[j, r)", "[r, +inf)"."""
        left = _show_key(self.start) if self.start else "-inf"
        right = "+inf" if self.end is None else _show_key(self.end)
        return f"[{left}, {right})"

    def __str__(self) -> str:
        end = "+inf" if self.end is None else repr(self.end)
        return f"g{self.group_id}[{self.start!r}, {end}) on {list(self.replicas)}"


def _show_key(key: bytes) -> str:
    text = key.decode("ascii", errors="replace")
    return text if key.isascii() and text.isprintable() else repr(key)[2:-1]


@dataclass(frozen=True, slots=True, init=False)
class ShardMap:
    """A versioned, validated, immutable map of the key space; see the module rules."""

    version: int
    ranges: tuple[RangeDescriptor, ...]
    nodes: Mapping[int, NodeAddress]
    meta_replicas: tuple[int, ...]
    meta_preferred_leader: int
    _starts: tuple[bytes, ...] = field(repr=False, compare=False)
    _by_group: Mapping[int, int] = field(repr=False, compare=False)

    def __init__(
        self,
        version: int,
        ranges: Iterable[RangeDescriptor],
        nodes: Mapping[int, NodeAddress],
        meta_replicas: Iterable[int],
        meta_preferred_leader: int | None = None,
    ) -> None:
        ranges = tuple(ranges)
        meta_replicas = tuple(meta_replicas)
        _check_id("version", version, minimum=0)
        # Rule 2: the node table.
        node_table: dict[int, NodeAddress] = {}
        for node_id in sorted(nodes):
            address = nodes[node_id]
            if not isinstance(address, NodeAddress):
                raise InvalidShardMap(f"nodes[{node_id}] must be a NodeAddress")
            if address.node_id != node_id:
                raise InvalidShardMap(
                    f"nodes[{node_id}] describes node {address.node_id}; the key must be its id"
                )
            node_table[node_id] = address
        # Rule 3: sorted, contiguous, complete, non-overlapping.
        if not ranges:
            raise InvalidShardMap("no ranges: the map must cover the key space from b'' to +inf")
        for r in ranges:
            if not isinstance(r, RangeDescriptor):
                raise InvalidShardMap(f"ranges must hold RangeDescriptor, got {type(r).__name__}")
        if ranges[0].start != b"":
            raise InvalidShardMap(
                f"the first range starts at {ranges[0].start!r}; it must start at b'' so every "
                f"key is covered"
            )
        for left, right in itertools.pairwise(ranges):
            if left.end is None:
                raise InvalidShardMap(
                    f"range of group {left.group_id} ends at +inf but is followed by the range "
                    f"of group {right.group_id}; only the last range may be unbounded"
                )
            if left.end < right.start:
                raise InvalidShardMap(
                    f"gap [{left.end!r}, {right.start!r}) between groups {left.group_id} and "
                    f"{right.group_id}: those keys would be served by no group"
                )
            if left.end > right.start:
                raise InvalidShardMap(
                    f"groups {left.group_id} and {right.group_id} overlap on "
                    f"[{right.start!r}, {left.end!r}) (or ranges are out of order)"
                )
        if ranges[-1].end is not None:
            raise InvalidShardMap(
                f"the last range (group {ranges[-1].group_id}) ends at {ranges[-1].end!r}; it "
                f"must end at +inf (None) so every key is covered"
            )
        # Rule 4: unique group ids.
        by_group: dict[int, int] = {}
        for index, r in enumerate(ranges):
            if r.group_id in by_group:
                raise InvalidShardMap(f"group {r.group_id} serves two ranges")
            by_group[r.group_id] = index
        # Rule 5: replicas are known nodes.
        _check_replicas("meta group 0", meta_replicas, meta_preferred_leader)
        for what, replicas in [("meta group 0", meta_replicas)] + [
            (f"range of group {r.group_id}", r.replicas) for r in ranges
        ]:
            unknown = [n for n in replicas if n not in node_table]
            if unknown:
                raise InvalidShardMap(f"{what} names unknown node(s) {unknown}")
        object.__setattr__(self, "version", version)
        object.__setattr__(self, "ranges", ranges)
        object.__setattr__(self, "nodes", MappingProxyType(node_table))
        object.__setattr__(self, "meta_replicas", meta_replicas)
        leader = meta_replicas[0] if meta_preferred_leader is None else meta_preferred_leader
        object.__setattr__(self, "meta_preferred_leader", leader)
        object.__setattr__(self, "_starts", tuple(r.start for r in ranges))
        object.__setattr__(self, "_by_group", MappingProxyType(by_group))

    def __hash__(self) -> int:
        return hash(
            (
                self.version,
                self.ranges,
                tuple(self.nodes.items()),
                self.meta_replicas,
                self.meta_preferred_leader,
            )
        )

    # ---- lookups

    def locate(self, key: bytes) -> RangeDescriptor:
        """The range that owns `key` (start inclusive, end exclusive)."""
        # ranges[0].start == b"" <= key, so the index is never -1.
        return self.ranges[bisect.bisect_right(self._starts, key) - 1]

    def ranges_overlapping(self, start: bytes, end: bytes | None) -> list[RangeDescriptor]:
        """The ranges that hold some key of [start, end) (end None = +inf), in key order."""
        if end is not None and end <= start:
            return []
        first = bisect.bisect_right(self._starts, start) - 1
        out: list[RangeDescriptor] = []
        for r in self.ranges[first:]:
            if end is not None and r.start >= end:
                break
            out.append(r)
        return out

    def split_range(
        self, start: bytes, end: bytes | None
    ) -> list[tuple[RangeDescriptor, bytes, bytes | None]]:
        """[start, end) (end None = +inf) cut at the shard boundaries: (range, part start,
        part end) for each range it overlaps, in key order."""
        parts = []
        for r in self.ranges_overlapping(start, end):
            if r.end is None:
                part_end = end
            elif end is None:
                part_end = r.end
            else:
                part_end = min(end, r.end)
            parts.append((r, max(start, r.start), part_end))
        return parts

    def group(self, group_id: int) -> RangeDescriptor:
        """The range of data group `group_id`.

        Raises:
            UnknownGroup: no range has that group (group 0, the meta group, has none).
        """
        index = self._by_group.get(group_id)
        if index is None:
            raise UnknownGroup(group_id, self.version)
        return self.ranges[index]

    def has_group(self, group_id: int) -> bool:
        """Whether `group_id` is the meta group or a data group of this map."""
        return group_id == META_GROUP_ID or group_id in self._by_group

    def group_ids(self) -> list[int]:
        """Every group of the map, the meta group 0 first, then data groups in key order."""
        return [META_GROUP_ID, *(r.group_id for r in self.ranges)]

    def replicas(self, group_id: int) -> tuple[int, ...]:
        """The replica nodes of any group, the meta group 0 included.

        Raises:
            UnknownGroup: `group_id` is not in this map.
        """
        if group_id == META_GROUP_ID:
            return self.meta_replicas
        return self.group(group_id).replicas

    def preferred_leader(self, group_id: int) -> int:
        """The preferred leader of any group, the meta group 0 included.

        Raises:
            UnknownGroup: `group_id` is not in this map.
        """
        if group_id == META_GROUP_ID:
            return self.meta_preferred_leader
        return self.group(group_id).preferred_leader

    def groups_of_node(self, node_id: int) -> list[int]:
        """The groups (meta group first) that have a replica on `node_id`."""
        return [g for g in self.group_ids() if node_id in self.replicas(g)]

    def node(self, node_id: int) -> NodeAddress:
        """The address of `node_id`.

        Raises:
            InvalidShardMap: the node is not in the map.
        """
        address = self.nodes.get(node_id)
        if address is None:
            raise InvalidShardMap(f"node {node_id} is not in shard map version {self.version}")
        return address

    # ---- changes

    def split(
        self,
        group_id: int,
        split_key: bytes,
        new_group_id: int,
        replicas: Iterable[int],
        preferred_leader: int | None = None,
    ) -> ShardMap:
        """A new map (version + 1) where [split_key, end) of `group_id` moves to a new group.

        Raises:
            UnknownGroup: `group_id` has no range.
            InvalidShardMap: the split key is not strictly inside the range, or the new group
                id is taken (the meta group's included), or the replicas are invalid.
        """
        old = self.group(group_id)
        if not isinstance(split_key, bytes):
            raise InvalidShardMap("split key must be bytes")
        if split_key <= old.start or (old.end is not None and split_key >= old.end):
            raise InvalidShardMap(
                f"split key {split_key!r} is not strictly inside {old}; both halves must be "
                f"non-empty"
            )
        if self.has_group(new_group_id):
            raise InvalidShardMap(f"new group id {new_group_id} is already in use")
        left = RangeDescriptor(
            old.group_id, old.start, split_key, old.replicas, old.preferred_leader
        )
        right = RangeDescriptor(new_group_id, split_key, old.end, replicas, preferred_leader)
        index = self._by_group[group_id]
        ranges = (*self.ranges[:index], left, right, *self.ranges[index + 1 :])
        return ShardMap(
            self.version + 1, ranges, self.nodes, self.meta_replicas, self.meta_preferred_leader
        )

    def describe(self) -> str:
        """A multi-line human description, for logs and the CLI."""
        lines = [f"shard map v{self.version}: meta group 0 on {list(self.meta_replicas)}"]
        lines += [f"  {r}, preferred leader {r.preferred_leader}" for r in self.ranges]
        return "\n".join(lines)


def bootstrap(
    nodes: Sequence[NodeAddress],
    split_points: Sequence[bytes],
    replication_factor: int,
    *,
    version: int = 1,
) -> ShardMap:
    """The initial map: len(split_points) + 1 data groups (ids 1..n) plus the meta group 0.

    Node ids are sorted; group number g (0 for meta, then 1..n in key order) is placed on the
    `replication_factor` nodes starting at position g mod len(nodes), and its preferred leader
    is the first of them. Replicas and leaders are thus spread round-robin: no node is the
    preferred leader of more than ceil(groups / nodes) groups.

    Raises:
        InvalidShardMap: no nodes, duplicate node ids, a replication factor outside
            [1, len(nodes)], or split points that are not strictly increasing non-empty bytes.
    """
    if not nodes:
        raise InvalidShardMap("bootstrap needs at least one node")
    node_ids = sorted(n.node_id for n in nodes)
    if len(set(node_ids)) != len(node_ids):
        raise InvalidShardMap(f"duplicate node ids in {node_ids}")
    if not isinstance(replication_factor, int) or not 1 <= replication_factor <= len(node_ids):
        raise InvalidShardMap(
            f"replication factor {replication_factor} must be between 1 and the number of "
            f"nodes ({len(node_ids)})"
        )
    points = list(split_points)
    for point in points:
        if not isinstance(point, bytes) or point == b"":
            raise InvalidShardMap(f"split point {point!r} must be non-empty bytes")
    for a, b in itertools.pairwise(points):
        if a >= b:
            raise InvalidShardMap(f"split points must be strictly increasing: {a!r} >= {b!r}")

    def placement(g: int) -> tuple[tuple[int, ...], int]:
        chosen = [node_ids[(g + j) % len(node_ids)] for j in range(replication_factor)]
        return tuple(sorted(chosen)), chosen[0]

    starts: list[bytes] = [b"", *points]
    ends: list[bytes | None] = [*points, None]
    ranges = []
    for i, (start, end) in enumerate(zip(starts, ends, strict=True)):
        replicas, leader = placement(i + 1)
        ranges.append(RangeDescriptor(i + 1, start, end, replicas, leader))
    meta_replicas, meta_leader = placement(META_GROUP_ID)
    return ShardMap(version, ranges, {n.node_id: n for n in nodes}, meta_replicas, meta_leader)
