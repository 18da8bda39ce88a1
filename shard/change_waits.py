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

import bisect
import heapq
import itertools
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Generic, TypeVar

from shard.errors import VersionCompacted, WrongShard
from shard.limits import MAX_CHANGES_RECORDS
from shard.state_machine import ShardStateMachine

P = TypeVar("P")

#: Parked waits a node checks against every version it applies; past this, a new wait is
#: parked unchecked and answered unchanged when its time is up (found by review: each
#: applied batch looked at every parked wait of its group, 167 ms for 200,000, and clients'
#: streams may park 256 each). An unchecked wait costs its watch a round of `progress_s`
#: (1 s by default) at most, never a change: the watch reads a round that often anyway.
MAX_CHECKED_WAITS = 4096


@dataclass(eq=False)
class _Wait(Generic[P]):
    start: bytes
    end: bytes | None
    after: int
    until: float
    pending: P


class ChangeWaits(Generic[P]):
    """The parked waits of a node, by group; each ends once, as changed or as due."""

    def __init__(self) -> None:
        self._by_group: dict[int, list[_Wait[P]]] = {}
        self._checked = 0  # waits in _by_group
        # Waits past MAX_CHECKED_WAITS, by when they are due: (until, order, group, pending).
        self._unchecked: list[tuple[float, int, int, P]] = []
        self._order = itertools.count()

    def park(
        self, group_id: int, start: bytes, end: bytes | None, after: int, until: float, pending: P
    ) -> None:
        """Hold `pending` until a version of [start, end) above `after` is applied in
        `group_id`, or until `until` (the core's clock); past MAX_CHECKED_WAITS, only
        until `until`."""
        if self._checked >= MAX_CHECKED_WAITS:
            heapq.heappush(self._unchecked, (until, next(self._order), group_id, pending))
            return
        self._by_group.setdefault(group_id, []).append(_Wait(start, end, after, until, pending))
        self._checked += 1

    def woken(self, group_id: int, written: Iterable[tuple[bytes, int]]) -> list[tuple[P, int]]:
        """The waits of `group_id` that a (key, version) pair it applied ends, each with the
        newest such version (its answer's `through`)."""
        waits = self._by_group.get(group_id)
        if not waits:
            return []
        pairs = sorted(written)
        keys = [key for key, _ in pairs]
        ended: list[tuple[P, int]] = []
        kept: list[_Wait[P]] = []
        for wait in waits:
            lo = bisect.bisect_left(keys, wait.start)
            hi = len(keys) if wait.end is None else bisect.bisect_left(keys, wait.end, lo)
            newest = max((version for _, version in pairs[lo:hi]), default=0)
            if newest > wait.after:
                ended.append((wait.pending, newest))
            else:
                kept.append(wait)
        if ended:
            self._keep(group_id, kept)
        return ended

    def woken_all(self, group_id: int) -> list[P]:
        """Every wait of `group_id` (its state was replaced by a snapshot)."""
        ended = [w.pending for w in self._by_group.pop(group_id, [])]
        self._checked -= len(ended)
        if any(group == group_id for _, _, group, _ in self._unchecked):
            ended += [pending for _, _, group, pending in self._unchecked if group == group_id]
            self._unchecked = [item for item in self._unchecked if item[2] != group_id]
            heapq.heapify(self._unchecked)
        return ended

    def due(self, now: float) -> list[P]:
        """The waits whose time is up at `now`, removed."""
        ended: list[P] = []
        for group_id, waits in list(self._by_group.items()):
            if any(w.until <= now for w in waits):
                ended += [w.pending for w in waits if w.until <= now]
                self._keep(group_id, [w for w in waits if w.until > now])
        while self._unchecked and self._unchecked[0][0] <= now:
            ended.append(heapq.heappop(self._unchecked)[3])
        return ended

    def take_all(self) -> list[P]:
        """Every wait, removed (the node is stopping)."""
        ended = [w.pending for waits in self._by_group.values() for w in waits]
        ended += [pending for _, _, _, pending in sorted(self._unchecked)]
        self._by_group.clear()
        self._unchecked.clear()
        self._checked = 0
        return ended

    def _keep(self, group_id: int, waits: list[_Wait[P]]) -> None:
        self._checked += len(waits) - len(self._by_group[group_id])
        if waits:
            self._by_group[group_id] = waits
        else:
            del self._by_group[group_id]


def changed_since(shard: ShardStateMachine, start: bytes, end: bytes | None, after: int) -> int:
    """A version of [start, end) in `shard` above `after`, or the shard's newest when there
    may be one (a look cut by its record budget, or refused below the GC horizon: the
    round's read says why); 0 when there is none."""
    newest = shard.max_version
    if newest <= after:
        return 0
    try:
        page = shard.changes(start, end, after, newest, 1, 1 << 20, MAX_CHANGES_RECORDS)
    except (VersionCompacted, WrongShard):
        return newest
    if page.changes:
        return page.changes[0].version
    return newest if page.covered_end is not None or page.through < newest else 0
