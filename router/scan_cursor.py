"""Where a scan that reads a key range shard by shard and page by page reads next, in key
order or in reverse.

A scan reads one shard's part of the range at a time: forward, the first part from its
start on; in reverse, the last part from its end down. A page cut by its limit (or the
node's byte budget) goes on from just after its last key, or, in reverse, below it: the
last key returned is the next page's exclusive end.
"""

from __future__ import annotations

from collections.abc import Callable

from router import kv_pb2 as kv
from router.cache import ScanPart
from router.client_errors import ServerError


class ScanCursor:
    """The part [start, end) of a scan's range not read yet (end None: no end)."""

    def __init__(self, start: bytes, end: bytes | None, reverse: bool = False) -> None:
        self.start = start
        self.end = end
        self.reverse = reverse
        self._past_last_shard = False  # forward: the shard with no end answered its last key

    @property
    def done(self) -> bool:
        """Nothing of the range is left to read."""
        return self._past_last_shard or (self.end is not None and self.end <= self.start)

    @property
    def resume(self) -> bytes | None:
        """Where a further read of the range begins: its start, or in reverse its end (None:
        nothing is left)."""
        if self.done:
            return None
        return self.end if self.reverse else self.start

    def next_part(self, plan: Callable[[bytes, bytes | None], list[ScanPart]]) -> ScanPart | None:
        """The shard part to read next, from `plan` (the shard map's cut of a range)."""
        if self.done:
            return None
        parts = plan(self.start, self.end)
        if not parts:
            return None
        return parts[-1] if self.reverse else parts[0]

    def advance(self, part: ScanPart, answer: kv.ScanResponse, asked: int) -> None:
        """After `answer`, a page of `part` for a request of `asked` items: more may follow
        its last key when it is full or the node's byte budget cut it (`more`), else the
        part is read to its end.

        Raises:
            ServerError: a page with no keys that says there are more (a node bug), or a
                page in key order for a reverse scan (a node too old for reverse scans).
        """
        descriptor, part_start, part_end = part
        items, more = answer.items, answer.more
        if more and not items:
            raise ServerError(
                f"group {descriptor.group_id} answered a scan page with no items that says "
                "there are more (a node bug)"
            )
        if self.reverse and not answer.reverse:
            raise ServerError(
                f"group {descriptor.group_id}'s leader answered a reverse scan in key order: "
                "it predates reverse scans; upgrade the nodes before reading in reverse"
            )
        last_key = items[-1].key if more or len(items) >= asked else None
        if self.reverse:
            self.end = part_start if last_key is None else last_key
        elif last_key is not None:
            self.start = last_key + b"\x00"
        elif part_end is None:
            self._past_last_shard = True
        else:
            self.start = part_end
