"""One round of a watch: which parts of (keys x versions) are still to be read, and which
changes may be delivered, in version order, without a later answer slipping in before them.

A round reads every change of the watched range in the versions (after, at]. It starts
with one lane per shard part of the range; a lane is a key range read up to some version.
A node's page of changes (`shard.changes`) covers the keys [start, covered_end) up to a
version `through`: the lane splits there, the covered part moves up to `through` and the
rest stays where it was. A change is delivered once every lane has been read up to its
version, so changes leave in (version, key) order whatever order the pages came in. The
round is done when every lane is at `at`. Sans-I/O: `router.client` sends the requests.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, order=True)
class Change:
    """`key` got `value` (None: deleted) at `version`; ordered as a watch delivers them.

    From a watch with `prev_values`, `prev_value` is the value the key held just before
    (None: none, as never written, deleted or expired) and `prev_version` its version (0:
    none); without it, both are always None and 0."""

    version: int
    key: bytes
    # Compared too (found by review: a deletion equalled a put of the same key and version);
    # one stream never holds two changes of one key at one version, so order never needs it.
    value: bytes | None
    prev_value: bytes | None = None
    prev_version: int = 0

    @property
    def size(self) -> int:
        """Bytes of its key and values (a page's budget counts them)."""
        return len(self.key) + len(self.value or b"") + len(self.prev_value or b"")


@dataclass(frozen=True)
class Lane:
    """The keys [start, end) (end None: no end), read up to version `after`."""

    start: bytes
    end: bytes | None
    after: int


class ChangesRound:
    """The lanes of one round over versions (after, at] and the changes read so far."""

    def __init__(self, parts: list[tuple[bytes, bytes | None]], after: int, at: int) -> None:
        """`parts`: the range cut at shard boundaries (each lane must lie in one shard)."""
        if at < after:
            raise ValueError(f"a round's end {at} is below its start {after}")
        self.at = at
        self._lanes = [Lane(start, end, after) for start, end in parts]
        self._held: list[Change] = []
        self.delivered_through = after

    @property
    def done(self) -> bool:
        """Every lane is read up to `at` (and `deliver` has nothing held back for it)."""
        return all(lane.after >= self.at for lane in self._lanes)

    def behind(self) -> list[Lane]:
        """The lanes still to be read (none once `done`): each may be read at once, in any
        order, as `take` and `split` change only the lane they are given."""
        return [lane for lane in self._lanes if lane.after < self.at]

    def split(self, lane: Lane, parts: list[tuple[bytes, bytes | None]]) -> None:
        """`lane` now lies across shards (the map changed): one lane per shard part, each
        read as far as `lane` was."""
        i = self._lanes.index(lane)
        self._lanes[i : i + 1] = [Lane(start, end, lane.after) for start, end in parts]

    def take(
        self, lane: Lane, changes: list[Change], covered_end: bytes | None, through: int
    ) -> None:
        """A page answering `lane`: its `changes` cover [lane.start, covered_end) (None: the
        whole lane) in versions (lane.after, through].

        Raises:
            ValueError: a page that covers nothing, or changes outside what it claims to
                cover (a node bug; taken, it would deliver out of order or twice).
        """
        whole = covered_end is None or (lane.end is not None and covered_end >= lane.end)
        if (
            through <= lane.after
            or through > self.at
            or (not whole and covered_end is not None and covered_end <= lane.start)
        ):
            raise ValueError(
                f"a page of changes covering nothing new: through {through} for a lane read "
                f"up to {lane.after} in a round ending at {self.at}"
            )
        for change in changes:
            bound = lane.end if whole else covered_end
            inside = lane.start <= change.key and (bound is None or change.key < bound)
            if not inside or not lane.after < change.version <= through:
                raise ValueError(
                    f"a change at version {change.version} of key {change.key!r} lies outside "
                    "the part of the lane its page covers"
                )
        i = self._lanes.index(lane)
        if whole:
            self._lanes[i] = Lane(lane.start, lane.end, through)
        else:
            assert covered_end is not None
            self._lanes[i : i + 1] = [
                Lane(lane.start, covered_end, through),
                Lane(covered_end, lane.end, lane.after),
            ]
        self._held.extend(changes)

    def deliver(self) -> list[Change]:
        """The changes no later page can precede, in (version, key) order; each once.
        Afterwards every change up to `delivered_through` has been delivered."""
        upto = min(lane.after for lane in self._lanes) if self._lanes else self.at
        ready = sorted(c for c in self._held if c.version <= upto)
        self._held = [c for c in self._held if c.version > upto]
        self.delivered_through = upto
        return ready
