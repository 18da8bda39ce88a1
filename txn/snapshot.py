"""A read-only snapshot of `AsyncClient`: lock-free reads at one timestamp."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator
from typing import TYPE_CHECKING

from txn.args import _as_flag, _as_key, _as_limit
from txn.errors import InvalidArgument, TransactionClosed

if TYPE_CHECKING:
    from txn.client import AsyncClient

__all__ = ["DEFAULT_PAGE_KEYS", "PAGE_BYTES", "AsyncSnapshot"]

DEFAULT_PAGE_KEYS = 1000
"""Most keys `iterate` reads per page."""

PAGE_BYTES = 4 * 1024 * 1024
"""About the most key and value bytes a page of `iterate` holds: a page ends once it has
read this many (a shard's reply more), whatever its key count allows."""


class AsyncSnapshot:
    """Read-only work at one timestamp, lock-free: every read sees the same snapshot.

    Create it with `client.snapshot()`; use as `async with client.snapshot() as snap:`
    (entering fetches the read timestamp) or directly (the first read fetches it).

    Semantics: every read sees exactly the transactions whose commit timestamp is at most
    `read_ts` — one consistent cut, across shards; the shard leader waits for prepared
    transactions below it to be decided rather than skip them. `read_ts` is at least the
    cluster clock when the snapshot began and every timestamp this client had seen, so the
    snapshot includes everything that committed before it began (and this client's own
    writes). A write that commits after the snapshot began may still get a timestamp below
    `read_ts` (node clocks differ a little) and be visible, but only until the shard serves
    a read of this snapshot: from then on that shard stamps its writes above `read_ts`.
    Nothing is locked and nothing is logged.
    """

    def __init__(self, client: AsyncClient, read_ts: int | None) -> None:
        self._client = client
        self._read_ts = read_ts
        self._closed = False
        # Reads started together on a fresh snapshot share one fetch: each fetching its own
        # timestamp, they read at two, and a commit between them showed half (found by
        # review).
        self._fetching = asyncio.Lock()

    @property
    def read_ts(self) -> int | None:
        """The snapshot's timestamp (None until entered or first read)."""
        return self._read_ts

    async def timestamp(self) -> int:
        """The snapshot's timestamp, fetched from the cluster on first use."""
        if self._closed:
            raise TransactionClosed("the snapshot is closed")
        if self._read_ts is None:
            async with self._fetching:
                if self._read_ts is None:
                    self._read_ts = await self._client._timestamp()
        return self._read_ts

    async def get(self, key: bytes) -> bytes | None:
        """The value of `key` at the snapshot's timestamp, or None.

        Raises:
            Unavailable, DeadlineExceeded: the key's shard could not serve the read in time.
            SnapshotTooOld: the snapshot is older than the shard's MVCC retention (10
                minutes by default); take a new one.
            TransactionClosed: the snapshot is closed.
        """
        key = _as_key(key)
        ts = await self.timestamp()
        value, _version = await self._client._read_at(key, ts)
        return value

    async def scan(
        self,
        start: bytes,
        end: bytes | None = None,
        limit: int | None = None,
        *,
        reverse: bool = False,
    ) -> list[tuple[bytes, bytes]]:
        """The (key, value) with start <= key < end at the snapshot's timestamp, in key
        order (`reverse`: from the last key down): every one, or the first `limit` (None: no
        limit).

        Unlike a client-level scan, the whole result is one consistent snapshot, also
        across shards.

        Raises:
            InvalidArgument: a bad `start`, `end`, `limit` or `reverse`.
            Unavailable, DeadlineExceeded, SnapshotTooOld, TransactionClosed: as `get`.
            ServerError: a node too old for reverse scans answered one.
        """
        start = _as_key(start, "start key")
        end = None if end is None else _as_key(end, "end key")
        count = _as_limit(limit)
        reverse = _as_flag(reverse, "reverse")
        ts = await self.timestamp()
        if end is not None and end <= start:
            return []
        items, _ = await self._client._scan_range(start, end, count, reverse=reverse, at_ts=ts)
        return [(k, v) for k, v, _ in items]

    def iterate(
        self,
        start: bytes,
        end: bytes | None = None,
        *,
        reverse: bool = False,
        page_keys: int = DEFAULT_PAGE_KEYS,
    ) -> AsyncGenerator[tuple[bytes, bytes], None]:
        """Every (key, value) with start <= key < end at the snapshot's timestamp, in key
        order (`reverse`: from the last key down), read lazily a page at a time:
        `async for key, value in snap.iterate(a, b):`.

        For ranges too large for one list. A page holds at most `page_keys` keys and about
        4 MiB (PAGE_BYTES) of keys and values; the next is read when the loop reaches it.
        The whole iteration is one snapshot, so it must end within the shards' MVCC
        retention (10 minutes) or a page read raises SnapshotTooOld.

        Raises:
            InvalidArgument: a bad `start`, `end`, `reverse` or `page_keys` (below 1), at
                the call itself (found by review: it came at the first read).
            Unavailable, DeadlineExceeded, SnapshotTooOld, TransactionClosed: as `get`,
                from the page read that met it.
            ServerError: a node too old for reverse scans answered one.
        """
        start = _as_key(start, "start key")
        end = None if end is None else _as_key(end, "end key")
        if isinstance(page_keys, bool) or not isinstance(page_keys, int) or page_keys < 1:
            raise InvalidArgument(f"page_keys is an int of at least 1, got {page_keys!r}")
        reverse = _as_flag(reverse, "reverse")
        return self._items(start, end, page_keys, reverse)

    async def _items(
        self, start: bytes, end: bytes | None, page_keys: int, reverse: bool
    ) -> AsyncGenerator[tuple[bytes, bytes], None]:
        async for page in self._pages(start, end, page_keys, reverse):
            for item in page:
                yield item

    async def _pages(
        self, start: bytes, end: bytes | None, page_keys: int, reverse: bool = False
    ) -> AsyncGenerator[list[tuple[bytes, bytes]], None]:
        """The pages `iterate` reads, each a list (txn.backup writes them a page at a time)."""
        ts = await self.timestamp()
        while end is None or start < end:
            if self._closed:
                raise TransactionClosed("the snapshot is closed")
            items, resume = await self._client._scan_range(
                start, end, page_keys, reverse=reverse, at_ts=ts, max_bytes=PAGE_BYTES
            )
            if items:
                yield [(k, v) for k, v, _ in items]
            if resume is None:
                return
            if reverse:
                end = resume
            else:
                start = resume

    def close(self) -> None:
        """Further reads raise TransactionClosed."""
        self._closed = True

    async def __aenter__(self) -> AsyncSnapshot:
        await self.timestamp()
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.close()
