"""What a watch reads of one shard: every change of a key range in a window of versions.

A change is a version record (a value, or a deletion) with `after < version <= at`. A page
of changes covers a rectangle: the keys of [start, covered_end) and the versions of
(after, through]; every change inside it is in the page, none outside. The node walks the
range's version records in key order and closes the page at a key boundary once it has
examined `max_records` records or gathered `limit` changes or `max_bytes` of keys and values:
then `covered_end` is the next key and `through` is `at`. Only when the page's first key
alone holds more changes in the window than fit does it cut that key's changes by version
instead, keeping the oldest (`covered_end` just after the key, `through` below `at`), so
every page covers something and a client asking again from the page's edges makes progress.

The client (`router.watch_lanes.ChangesRound`) tracks those rectangles and delivers the changes of all of
them in version order.

With `prev_values`, each change also carries the value its key held just before it: the
key's next older record, which for its oldest change in the window is the newest record at
or below `after` (the reader offers it as the key's floor). A value there is never
collected: collection keeps each key's newest version at or below its horizon (a tombstone
there may go, and the key held nothing then either), and `after` is not below the horizon.
Without `prev_values` the floor is neither kept nor counted among the records examined.
"""

from __future__ import annotations

import dataclasses
import heapq
from dataclasses import dataclass

from router.watch_lanes import Change


@dataclass(frozen=True)
class ChangesPage:
    """Changes of [start, covered_end) in (after, through], oldest first (then by key).

    `covered_end` None: to the end of the range asked for."""

    changes: list[Change]
    covered_end: bytes | None
    through: int


class _OldestOfKey:
    """The oldest changes of one key, at most `limit`, and the lowest version dropped."""

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._heap: list[tuple[int, Change]] = []  # (-version, change): the newest on top
        self.cut: int | None = None

    def offer(self, change: Change) -> None:
        if self.cut is not None and change.version >= self.cut:
            return
        heapq.heappush(self._heap, (-change.version, change))
        if len(self._heap) > self._limit:
            dropped = -heapq.heappop(self._heap)[0]
            self.cut = dropped if self.cut is None else min(self.cut, dropped)

    def oldest_first(self) -> list[Change]:
        return sorted(change for _, change in self._heap)

    def __len__(self) -> int:
        return len(self._heap)


class ChangesCollector:
    """Builds a `ChangesPage` from version records offered in key order (a key's records
    in any order), closing it at the first key boundary past a budget (see module doc).

    Use: `start_key(key)` before each key's records (a page returned means the page ends
    there: stop), `offer` each record, and `end()` once the range's records are done."""

    def __init__(
        self,
        after: int,
        at: int,
        limit: int,
        max_bytes: int,
        max_records: int,
        prev_values: bool = False,
    ) -> None:
        self._after = after
        self._at = at
        self._prev_values = prev_values
        self._floor: Change | None = None  # the current key's newest record at or below after
        self._limit = max(1, limit)
        self._max_bytes = max(1, max_bytes)
        self._max_records = max(1, max_records)
        self._taken: list[Change] = []
        self._bytes = 0
        self._examined = 0
        self._key: bytes | None = None
        self._of_key = _OldestOfKey(self._limit)

    def start_key(self, key: bytes) -> ChangesPage | None:
        """The records of `key` follow; a page when it must end before `key`."""
        page = self._close_key()
        if page is None and self._key is not None and self._full():
            page = self._page_before(key)
        self._key = key
        return page

    def offer(self, version: int, value: bytes | None) -> None:
        """A version record of the current key (`value` None: a deletion)."""
        assert self._key is not None, "start_key first"
        self._examined += 1
        if self._after < version <= self._at:
            self._of_key.offer(Change(version, self._key, value))

    def offer_floor(self, version: int, value: bytes | None) -> None:
        """The current key's newest record at or below `after` (the value its oldest change
        in the window replaced); records older than it need not be offered."""
        assert self._key is not None and version <= self._after, "a floor below the window"
        if self._prev_values:  # else it examines nothing (found by review: counted, a read
            # over many unchanged keys was cut into pages, and a wait woke for nothing)
            self._examined += 1
            self._floor = Change(version, self._key, value)

    def end(self) -> ChangesPage:
        """The range's records are done: the page (covering the whole range, unless its
        last key had to be cut)."""
        return self._close_key() or self._page_before(None)

    def _page_before(self, key: bytes | None) -> ChangesPage:
        """The changes taken, covering the whole window up to `key` (None: the range's end)."""
        return ChangesPage(sorted(self._taken), key, self._at)

    def _full(self) -> bool:
        return (
            self._examined >= self._max_records
            or len(self._taken) >= self._limit
            or self._bytes >= self._max_bytes
        )

    def _close_key(self) -> ChangesPage | None:
        """Take the current key's changes into the page, or end the page before it (when
        it has changes already) or inside it (its first key, cut by version)."""
        of_key, self._of_key = self._of_key, _OldestOfKey(self._limit)
        floor, self._floor = self._floor, None
        if not len(of_key):
            return None
        assert self._key is not None
        changes = of_key.oldest_first()
        if self._prev_values:
            changes = _with_previous(changes, floor)
        size = sum(c.size for c in changes)
        fits = (
            of_key.cut is None
            and self._bytes + size <= self._max_bytes
            and len(self._taken) + len(changes) <= self._limit
        )
        if fits:
            self._taken.extend(changes)
            self._bytes += size
            return None
        if self._taken:
            return self._page_before(self._key)
        # The first key alone does not fit: its oldest changes, whole versions (one
        # change per version of a key), as many as the byte budget takes (at least one).
        kept: list[Change] = []
        used = 0
        for change in changes:
            if kept and used + change.size > self._max_bytes:
                break
            kept.append(change)
            used += change.size
        if len(kept) < len(changes):
            through = kept[-1].version
        elif of_key.cut is not None:
            through = of_key.cut - 1
        else:  # one change over the byte budget: the page's first, whole
            self._taken.extend(kept)
            self._bytes += used
            return None
        return ChangesPage(kept, self._key + b"\x00", through)


def _with_previous(changes: list[Change], floor: Change | None) -> list[Change]:
    """One key's changes, oldest first and without gaps, each with the value before it."""
    out = []
    before = floor
    for change in changes:
        if before is None or before.value is None:
            out.append(change)  # the key held no value just before
        else:
            out.append(
                dataclasses.replace(change, prev_value=before.value, prev_version=before.version)
            )
        before = change
    return out
