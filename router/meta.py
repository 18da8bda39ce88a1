"""The meta group's replicated state machine: the shard map, kept in Paxos group 0.

Theory of operation
-------------------
Group 0's chosen slots carry protobuf-encoded `MetaCommand`s (see `router.codec`). Every
replica applies them in slot order to a `MetaStateMachine`, which holds the one current
`ShardMap` (None before bootstrap) and the index of the last slot applied. As in Spanner's
placement data and CockroachDB's meta ranges, the map is thereby itself replicated and
totally ordered: its version rises by one with each change.

Rules:
1. Deterministic: the same slots applied in the same order give the same state and results
   on every replica; no clock, no randomness, no I/O.
2. A slot at or below `applied_index` is ignored (a replay after restart or a duplicate
   delivery); a slot above it is applied and becomes the new `applied_index` (gaps are legal:
   no-op slots need not be passed in).
3. `Bootstrap(map)` installs the map only when there is none. Every later Bootstrap (a node
   that restarts with the same config, a racing second node) changes nothing and is answered
   with the existing map, so the caller can compare it with the one it proposed.
4. `SplitRange` builds the next map version (`ShardMap.split`); when `expected_version` is set,
   it applies only against that version (a compare-and-set, so a split planned on a stale
   map is refused).
5. Bad input is an answer, never an exception: undecodable bytes give a MALFORMED result and a
   command that breaks a map rule a REJECTED one. An exception here would be a poison pill,
   halting every replica of group 0 at the same slot.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass

from router.errors import InvalidShardMap, MalformedMessage, RouterError, UnknownGroup
from router.shard_map import ShardMap, _check_id

# `router.codec` imports the command types below, so this module imports it inside functions.


@dataclass(frozen=True, slots=True, kw_only=True)
class Bootstrap:
    """Install the first shard map; a no-op answered with the existing map once one exists."""

    shard_map: ShardMap


@dataclass(frozen=True, slots=True, kw_only=True)
class SplitRange:
    """Move [split_key, end) of group `group_id` to a new group `new_group_id` on `replicas`.

    `preferred_leader` defaults to the first replica; `expected_version`, when set, makes the
    split conditional on the current map's version.
    """

    group_id: int
    split_key: bytes
    new_group_id: int
    replicas: tuple[int, ...]
    preferred_leader: int | None = None
    expected_version: int | None = None

    def __post_init__(self) -> None:
        _check_id("group_id", self.group_id, minimum=1)
        _check_id("new_group_id", self.new_group_id, minimum=1)
        if not isinstance(self.split_key, bytes):
            raise InvalidShardMap("split key must be bytes")
        if not isinstance(self.replicas, tuple):
            raise InvalidShardMap("replicas must be a tuple of node ids")
        if self.preferred_leader is not None:
            _check_id("preferred_leader", self.preferred_leader, minimum=1)
        if self.expected_version is not None:
            _check_id("expected_version", self.expected_version, minimum=0)


MetaCommand = Bootstrap | SplitRange


class MetaStatus(enum.Enum):
    """The outcome of one meta command."""

    APPLIED = "applied"
    ALREADY_BOOTSTRAPPED = "already_bootstrapped"
    REJECTED = "rejected"
    MALFORMED = "malformed"


@dataclass(frozen=True, slots=True, kw_only=True)
class MetaResult:
    """The answer to one meta command: its status, the map after it, and why if it failed."""

    status: MetaStatus
    shard_map: ShardMap | None
    error: str = ""

    @property
    def ok(self) -> bool:
        """Whether the command changed the map as asked."""
        return self.status is MetaStatus.APPLIED


class MetaStateMachine:
    """The replicated state of group 0: the current shard map and the applied index."""

    __slots__ = ("_applied_index", "_shard_map")

    def __init__(self) -> None:
        self._applied_index = 0
        self._shard_map: ShardMap | None = None

    @property
    def applied_index(self) -> int:
        """The last slot applied (0 before any)."""
        return self._applied_index

    @property
    def shard_map(self) -> ShardMap | None:
        """The current map, or None before bootstrap."""
        return self._shard_map

    def apply(self, slot: int, commands: Sequence[bytes]) -> list[MetaResult]:
        """Apply the commands chosen for `slot`, in order; one result per command.

        Returns [] without any effect when `slot <= applied_index` (rule 2).
        """
        if slot <= self._applied_index:
            return []
        results = [self._apply_one(command) for command in commands]
        self._applied_index = slot
        return results

    def _apply_one(self, data: bytes) -> MetaResult:
        from router.codec import decode_meta_command

        try:
            command = decode_meta_command(data)
        except MalformedMessage as exc:
            return MetaResult(
                status=MetaStatus.MALFORMED, shard_map=self._shard_map, error=str(exc)
            )
        except RouterError as exc:
            return MetaResult(status=MetaStatus.REJECTED, shard_map=self._shard_map, error=str(exc))
        match command:
            case Bootstrap():
                return self._apply_bootstrap(command)
            case SplitRange():
                return self._apply_split(command)

    def _apply_bootstrap(self, command: Bootstrap) -> MetaResult:
        if self._shard_map is not None:
            return MetaResult(
                status=MetaStatus.ALREADY_BOOTSTRAPPED,
                shard_map=self._shard_map,
                error=f"already bootstrapped with shard map version {self._shard_map.version}",
            )
        self._shard_map = command.shard_map
        return MetaResult(status=MetaStatus.APPLIED, shard_map=self._shard_map)

    def _apply_split(self, command: SplitRange) -> MetaResult:
        current = self._shard_map
        if current is None:
            return self._reject("cannot split: the meta group is not bootstrapped yet")
        if command.expected_version is not None and command.expected_version != current.version:
            return self._reject(
                f"split planned on shard map version {command.expected_version}, but the "
                f"current version is {current.version}; re-plan on the current map"
            )
        try:
            self._shard_map = current.split(
                command.group_id,
                command.split_key,
                command.new_group_id,
                command.replicas,
                command.preferred_leader,
            )
        except (InvalidShardMap, UnknownGroup) as exc:
            return self._reject(str(exc))
        return MetaResult(status=MetaStatus.APPLIED, shard_map=self._shard_map)

    def _reject(self, reason: str) -> MetaResult:
        return MetaResult(status=MetaStatus.REJECTED, shard_map=self._shard_map, error=reason)

    def snapshot(self) -> bytes:
        """The whole state as bytes, covering every slot up to `applied_index`."""
        from router.codec import encode_meta_snapshot

        return encode_meta_snapshot(self._applied_index, self._shard_map)

    def restore(self, index: int, data: bytes) -> None:
        """Replace the whole state by a snapshot taken at slot `index`.

        Raises:
            MalformedMessage: `data` is not a meta snapshot, or was taken at another index.
            InvalidShardMap: the map inside breaks a rule.
        """
        from router.codec import decode_meta_snapshot

        snapshot_index, shard_map = decode_meta_snapshot(data)
        if snapshot_index != index:
            raise MalformedMessage(
                "meta snapshot", f"taken at index {snapshot_index}, installed as index {index}"
            )
        self._applied_index = index
        self._shard_map = shard_map
