"""The application state machines of a node's groups, as the node drives them."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from paxos.messages import InstallSnapshot
from router.errors import RouterError
from router.meta import MetaStateMachine
from router.shard_map import META_GROUP_ID
from shard.engine import Engine, EngineBatch
from shard.errors import ShardError


class App(Protocol):
    """The application state machine of one group, as the node drives it."""

    @property
    def applied_index(self) -> int: ...

    def apply(self, slot: int, commands: Sequence[bytes], batch: EngineBatch) -> list[Any]: ...

    def snapshot_build(self) -> SnapshotBuild:
        """A snapshot of the written state, built in steps (`shard.snapshots`)."""
        ...

    def begin_restore(self, index: int, data: bytes) -> RestoreJob:
        """A restore of snapshot `data` (as applied index `index`), run in steps."""
        ...

    def snapshot_index(self, data: bytes) -> int:
        """The index snapshot `data` covers; raises ShardError or RouterError if corrupt."""
        ...


class SnapshotBuild(Protocol):
    def step(self, max_records: int, max_bytes: int) -> tuple[int, bytes] | None:
        """Build some more; (index, blob) once done."""
        ...


class RestoreJob(Protocol):
    def step(self, batch: EngineBatch, max_records: int, max_bytes: int) -> bool:
        """Stage some more of the restore into `batch`; True once done."""
        ...

    def run(self, batch: EngineBatch) -> None:
        """The whole restore, in `batch`."""
        ...

    def abandon(self, batch: EngineBatch) -> None:
        """Drop what the steps staged (the restore met bad frames before touching data)."""
        ...


@dataclass(slots=True)
class _WholeSnapshot:
    """A snapshot small enough to take at once (the meta group's)."""

    index: int
    data: bytes

    def step(self, max_records: int, max_bytes: int) -> tuple[int, bytes] | None:
        return self.index, self.data


@dataclass(slots=True)
class _WholeRestore:
    restore: Callable[[EngineBatch], None]

    def step(self, batch: EngineBatch, max_records: int, max_bytes: int) -> bool:
        self.restore(batch)
        return True

    def run(self, batch: EngineBatch) -> None:
        self.restore(batch)

    def abandon(self, batch: EngineBatch) -> None:
        """Nothing was staged."""


class MetaApp:
    """The meta group's state machine, persisted as one snapshot record per applied batch."""

    def __init__(self, engine: Engine) -> None:
        self._key = b"m" + META_GROUP_ID.to_bytes(4, "big")
        self.machine = MetaStateMachine()
        data = engine.get(self._key)
        if data is not None:
            self.machine.restore(_meta_index(data), data)

    @property
    def applied_index(self) -> int:
        return self.machine.applied_index

    def apply(self, slot: int, commands: Sequence[bytes], batch: EngineBatch) -> list[Any]:
        results = self.machine.apply(slot, commands)
        batch.put(self._key, self.machine.snapshot())
        return results

    def snapshot_build(self) -> SnapshotBuild:
        return _WholeSnapshot(self.machine.applied_index, self.machine.snapshot())

    def begin_restore(self, index: int, data: bytes) -> RestoreJob:
        return _WholeRestore(lambda batch: self._restore(index, data, batch))

    def _restore(self, index: int, data: bytes, batch: EngineBatch) -> None:
        self.machine.restore(index, data)
        batch.put(self._key, data)

    def snapshot_index(self, data: bytes) -> int:
        return _meta_index(data)


def _restorable(app: App, msg: InstallSnapshot) -> bool:
    """Whether a snapshot from the wire is intact and covers the index it claims."""
    try:
        return app.snapshot_index(msg.data) == msg.index
    except (ShardError, RouterError):
        return False


def _meta_index(data: bytes) -> int:
    from router.codec import decode_meta_snapshot

    return decode_meta_snapshot(data)[0]
