"""Waits for a change: what a watch parks at a replica between its rounds (node rule 16).

A wait (`ScanRequest.await_change`) asks whether [start, end) holds a version above
`changes_after`, and is answered as soon as it does, or unchanged once its time is up. It
is a hint, not a read: the watch's next round reads the changes at a snapshot timestamp
(node rule 3), which alone decides what is delivered. So any replica may answer from what
it has applied, and a wait answered `changed` for a version the round finds already
delivered, or outside the range, costs one idle round and nothing more. What must not
happen is the converse, a wait that sleeps through a change: it is checked against the
shard when it parks, and then against every version the group applies.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Generic, TypeVar

from shard.errors import ShardError
from shard.limits import MAX_CHANGES_RECORDS
from shard.state_machine import ShardStateMachine

P = TypeVar("P")


@dataclass
class _Wait(Generic[P]):
    start: bytes
    end: bytes | None
    after: int
    until: float
    pending: P

    def sees(self, key: bytes, version: int) -> bool:
        return version > self.after and self.start <= key and (self.end is None or key < self.end)


class ChangeWaits(Generic[P]):
    """The parked waits of a node, by group; each ends once, as changed or as due."""

    def __init__(self) -> None:
        self._by_group: dict[int, list[_Wait[P]]] = {}

    def __len__(self) -> int:
        return sum(len(waits) for waits in self._by_group.values())

    def park(
        self, group_id: int, start: bytes, end: bytes | None, after: int, until: float, pending: P
    ) -> None:
        """Hold `pending` until a version of [start, end) above `after` is applied in
        `group_id`, or until `until` (the core's clock)."""
        self._by_group.setdefault(group_id, []).append(_Wait(start, end, after, until, pending))

    def woken(self, group_id: int, written: Iterable[tuple[bytes, int]]) -> list[P]:
        """The waits of `group_id` that one of the (key, version) pairs it applied ends."""
        waits = self._by_group.get(group_id)
        if not waits:
            return []
        written = list(written)
        ended = [w for w in waits if any(w.sees(key, version) for key, version in written)]
        if ended:
            self._keep(group_id, [w for w in waits if w not in ended])
        return [w.pending for w in ended]

    def woken_all(self, group_id: int) -> list[P]:
        """Every wait of `group_id` (its state was replaced by a snapshot)."""
        return [w.pending for w in self._by_group.pop(group_id, [])]

    def due(self, now: float) -> list[P]:
        """The waits whose time is up at `now`, removed."""
        ended: list[P] = []
        for group_id, waits in list(self._by_group.items()):
            if any(w.until <= now for w in waits):
                ended += [w.pending for w in waits if w.until <= now]
                self._keep(group_id, [w for w in waits if w.until > now])
        return ended

    def take_all(self) -> list[P]:
        """Every wait, removed (the node is stopping)."""
        ended = [w.pending for waits in self._by_group.values() for w in waits]
        self._by_group.clear()
        return ended

    def _keep(self, group_id: int, waits: list[_Wait[P]]) -> None:
        if waits:
            self._by_group[group_id] = waits
        else:
            del self._by_group[group_id]


def changed_since(shard: ShardStateMachine, start: bytes, end: bytes | None, after: int) -> bool:
    """Whether [start, end) of `shard` holds a version above `after`, or may: a look cut by
    its record budget, or refused (below the GC horizon: the round's read says why)."""
    newest = shard.max_version
    if newest <= after:
        return False
    try:
        page = shard.changes(start, end, after, newest, 1, 1 << 20, MAX_CHANGES_RECORDS)
    except ShardError:
        return True
    return bool(page.changes) or page.covered_end is not None or page.through < newest
