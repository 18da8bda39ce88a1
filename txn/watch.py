"""Watching a key range: every change, in commit order, as batches of whole versions.

A watch reads in rounds. Each round takes a fresh timestamp `at` and reads every change of
the range in (through, at] from the shards' MVCC history (`router.watch_lanes`: the
shards' pages, delivered in version order), then `through` becomes `at`. Because a round
reads at a snapshot timestamp, every change at or below it is final when delivered: a
transaction's writes arrive together, in its commit's version, and nothing delivered is
ever taken back or reordered.

A round that found nothing is followed by waits: one per shard of the range, parked at
the shard's leader until it applies a version of the range above `through` (node rule 16,
`shard.change_waits`). The first that answers changed starts the next round, so a change
is pushed, not polled for. A wait is only a hint (the round decides what is delivered),
so one lost, refused or answered late costs a round at the next `progress_s` at worst:
the watch reads a round at least that often, which also moves `through` while nothing
changes (etcd's progress notifications).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator
from typing import TYPE_CHECKING, Any

from router import kv_pb2 as kv
from router.cache import ScanPart
from router.cancelling import cancel_and_wait
from router.errors import UnknownGroup, WrongShard
from router.watch_lanes import Change, ChangesRound, Lane
from txn.errors import DeadlineExceeded, InvalidArgument, ServerError, Unavailable, WatchClosed
from txn.hlc import LOGICAL_BITS

#: What a closed watch says when it is entered or read (synchronously).
CLOSED = "this watch is closed: make a new one (after=watch.through goes on from where it ended)"

if TYPE_CHECKING:
    from txn.client import AsyncClient

DEFAULT_PROGRESS_S = 1.0
"""The longest a watch with nothing to deliver waits for a shard's word before it reads a
round anyway (and moves `through`)."""

WAIT_S = 2.0
"""How long one wait for a change asks to be held at a node (which answers unchanged at
half the request's time, at most half its own request timeout): twice this is its
request's timeout."""

ROUND_WINDOW = 1_000_000 << LOGICAL_BITS
"""The most history one round reads: 1 s of hybrid-clock time (a watch far behind catches
up a second at a time, each round's changes delivered before the next is read)."""

PAGE_CHANGES = 1000
"""Changes one page of a shard's answer holds at most (the node also cuts at 4 MiB)."""

RESUME_PAUSES_S = (0.05, 0.1, 0.2, 0.5, 1.0)
"""A resuming watch's pause before its next read after a failed one, by how many failed
since it last read a whole round (the last one from then on): a shard down for a while is
asked once a second."""


class AsyncWatch:
    """Every change of [start, end) after version `through`, in version order, as batches:
    `async with client.watch(a, b) as watch: async for changes in watch:` (each a list of
    `Change`). Without `after`, it starts when entered (or at its first read): every change
    committed from then on is delivered.

    A batch holds whole versions: every change of one commit in the range is in the same
    batch. `through` is the version up to which every change has been delivered; it
    advances while nothing changes too. To resume after an error or a restart, start a new
    watch with `after=watch.through` (or the last batch's `[-1].version`): it delivers
    exactly what came after, provided that is within the shards' MVCC retention (10
    minutes by default; else SnapshotTooOld). With `resume`, the watch does that itself
    after Unavailable and DeadlineExceeded, as etcd's clients do: it reads again from
    `through` after a pause, as long as it takes.
    """

    def __init__(
        self,
        client: AsyncClient,
        start: bytes,
        end: bytes | None,
        after: int | None,
        progress_s: float,
        prev_values: bool = False,
        resume: bool = False,
    ) -> None:
        self._client = client
        self._resume = resume
        self._failed_in_a_row = 0  # of reads, since the last whole round: the pause's step
        self._resumed = 0
        self._start = start
        self._end = end
        self._progress_s = progress_s
        self._prev_values = prev_values
        self._page_changes = PAGE_CHANGES  # the simulator's watcher reads smaller pages
        # The waits for a change in flight, by the shard part they wait on: one still
        # parked when a round starts is kept for the next idle time (it has seen nothing).
        self._waits: dict[tuple[int, bytes, bytes | None], asyncio.Task[bool]] = {}
        self._through = after
        self._batches = self._rounds()
        # The read of the next batch, kept across a `next_batch` that timed out.
        self._pending: asyncio.Future[tuple[list[Change], int]] | None = None
        self._closed = False
        self._failed: BaseException | None = None
        self._started = False
        # One start at a time (found by review: a `start` awaited beside the first
        # `next_batch`'s set `through` back below a batch already delivered).
        self._starting = asyncio.Lock()

    @property
    def through(self) -> int | None:
        """Every change up to this version has been delivered (None before the first read
        of a watch started without `after`)."""
        return self._through

    def __aiter__(self) -> AsyncWatch:
        return self

    async def __anext__(self) -> list[Change]:
        """The next batch of changes, waiting until there is one (see `next_batch`)."""
        return await self.next_batch()

    async def next_batch(self, timeout_s: float | None = None) -> list[Change]:
        """The next batch of changes, or [] when none came within `timeout_s` (None: wait
        as long as it takes). A timeout loses nothing: the read goes on for the next call.

        Raises:
            Unavailable, DeadlineExceeded: a shard could not be read within the client's
                timeout; resume with `after=watch.through` (a watch made with `resume`
                reads again from there itself once started, and raises these only from
                a start that failed).
            SnapshotTooOld: the watch fell further behind than the MVCC retention.
            ServerError: a node too old for watches answered.
            ClientClosed, InvalidArgument: the client was closed; an `after` too far
                ahead of the nodes' clocks.
            StopAsyncIteration: the watch was closed.
        A watch that raised raises the same error again: resume with a new watch from
        `through`.
        """
        loop = asyncio.get_running_loop()
        until = None if timeout_s is None else loop.time() + timeout_s
        while True:
            if self._failed is not None:
                raise self._failed  # a watch that failed stays failed: resume from `through`
            if self._closed:
                raise StopAsyncIteration
            pending = self._pending
            if pending is None:
                pending = self._pending = asyncio.ensure_future(anext(self._batches))
                pending.add_done_callback(_mark_retrieved)
            left = None if until is None else max(0.0, until - loop.time())
            done, _ = await asyncio.wait({pending}, timeout=left)
            # The read is ours to take only while it is still the watch's (found by review:
            # a close, or another waiter, took it meanwhile and this one met None).
            if done and self._pending is pending:
                break
            if self._pending is pending or (until is not None and loop.time() >= until):
                if self._closed:
                    raise StopAsyncIteration
                return []  # no batch in time: the read goes on for the next call
            # Another waiter took that batch (found by a cancellation trial: this one got []
            # at once although it had asked to wait as long as it takes): wait for the next.
        self._pending = None
        if pending.cancelled():
            raise StopAsyncIteration
        error = pending.exception()
        if error is not None:
            if not isinstance(error, StopAsyncIteration):
                self._failed = error
                self._cancel_waits()  # the watch reads no more: its waits are of no use
            raise error
        batch, self._through = pending.result()
        return batch

    @property
    def resumed(self) -> int:
        """How many times a watch made with `resume` read again after a failed read."""
        return self._resumed

    async def aclose(self) -> None:
        """Stop the watch (a read in progress is abandoned; a `next_batch` waiting on it
        ends with StopAsyncIteration)."""
        self._closed = True
        self._cancel_waits()
        if self._pending is not None:
            pending, self._pending = self._pending, None
            await cancel_and_wait(pending)
        await self._batches.aclose()

    def _cancel_waits(self) -> None:
        for task in self._waits.values():
            task.cancel()
        self._waits.clear()

    async def start(self) -> int:
        """Fix where the watch starts: every change committed after `after`, or, without
        one, from now on is delivered. Entering the watch (`async with`) calls it, or else
        its first read. Returns `through`.

        Raises:
            SnapshotTooOld: `after` is older than the shards' MVCC retention (`after=0`,
                which has nothing to pin: at the first read instead).
            InvalidArgument: `after` is further ahead of the nodes' clocks than they allow.
            WatchClosed: the watch was closed.
            Unavailable, DeadlineExceeded, ClientClosed: as `next_batch`.
        """
        if self._closed:
            # Found by a cancellation trial: `async with` a closed watch delivered nothing
            # without a word.
            raise WatchClosed(CLOSED)
        async with self._starting:
            if self._started:
                assert self._through is not None  # set when it started
                return self._through
            client = self._client
            if self._through is None:
                at = await client._timestamp()
            else:
                await client._ready(client._deadline())  # `_pin` plans by the shard map
                at = self._through
            if at:  # every write is stamped above 0: nothing to pin (nodes refuse a read at 0)
                await self._pin(at)
            # The rounds read up to fresh timestamps, which must not fall below `at`; the
            # client's clock takes it only now that the shards did (found by review: an
            # `after` of 2**64-1, taken at the call, broke every later transaction).
            client._clock.observe(at)
            self._through = at
            self._started = True
            return at

    async def _pin(self, at: int) -> None:
        """Have every shard of the range stamp its later writes above `at`: a read of the
        empty window (at, at] there, a snapshot read at `at` (node rule 3). Without it a
        shard whose clock was behind the one `at` came from could stamp a write made after
        the watch started at or below `at`, and no round would show it."""
        pending = self._plan(self._start, self._end)
        while pending:
            descriptor, start, end = pending.pop()
            if await self._read_changes(descriptor.group_id, start, end, at, at, 1) is None:
                pending.extend(self._plan(start, end))  # the map changed: plan again

    async def __aenter__(self) -> AsyncWatch:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def _rounds(self) -> AsyncGenerator[tuple[list[Change], int], None]:
        """Batches, each with the version up to which it completes the delivery; with
        `resume`, a round whose read failed for want of an answer in time is read again
        from `through` after a pause. The pause is part of the read `next_batch` shares
        (found by review: paused in `next_batch` itself, a caller's cancel or a second
        caller met the failed rounds' end, and the watch ended without a word). No pin
        again: every shard part was read at or above `through` (a lane is delivered up to
        a version only once read there), so it stamps its later writes above it."""
        client = self._client
        await self.start()
        assert self._through is not None
        while True:
            try:
                now = await client._timestamp()
                # A round reads at most ROUND_WINDOW of history (found by review: a watch
                # resumed after a long pause held the whole backlog in memory and handed it
                # over as one batch, its `through` moving only at the end).
                at = max(self._through, min(now, self._through + ROUND_WINDOW))
                parts = [(start, end) for _, start, end in self._plan(self._start, self._end)]
                changes_round = ChangesRound(parts, self._through, at)
                found = False
                while not changes_round.done:
                    batch = await self._read_pages(changes_round)
                    if batch:
                        found = True
                        # `through` moves when the caller gets the batch (`next_batch`),
                        # not now: a batch left waiting by a timed-out `next_batch` is not
                        # delivered, and a watch resumed from `through` must read it again
                        # (found by the simulator's watcher).
                        yield batch, changes_round.delivered_through
                    else:
                        self._through = changes_round.delivered_through
                self._through = at
                self._failed_in_a_row = 0  # a whole round read: a next outage pauses briefly
                if not found and at == now:
                    await self._wait_for_change()
            # A shard not read in time (down, leaderless, paused, partitioned; DeadlineExceeded
            # is one too). Others (SnapshotTooOld: the history is gone; ServerError;
            # ClientClosed) still end the watch.
            except Unavailable:
                if not self._resume:
                    raise
                await self._pause_to_read_again()

    async def _pause_to_read_again(self) -> None:
        self._cancel_waits()  # the round that parked them ended
        pause = RESUME_PAUSES_S[min(self._failed_in_a_row, len(RESUME_PAUSES_S) - 1)]
        self._failed_in_a_row += 1
        self._resumed += 1
        await asyncio.sleep(pause)  # a retry's backoff, as the client's own

    async def _wait_for_change(self) -> None:
        """Until a shard of the range says a version above `through` was applied there, or
        `progress_s` passed."""
        loop = asyncio.get_running_loop()
        until = loop.time() + self._progress_s
        while (left := until - loop.time()) > 0:
            # In the plan's order, never a set's: the simulator replays a run from its
            # seed only if the waits go out in the same order in every process.
            parts = [(d.group_id, s, e) for d, s, e in self._plan(self._start, self._end)]
            for part in [p for p in self._waits if p not in parts]:
                self._waits.pop(part).cancel()  # the map changed: not a part any more
            for part in parts:
                if part not in self._waits:
                    task = self._waits[part] = asyncio.ensure_future(self._await_change(*part))
                    task.add_done_callback(_mark_retrieved)
            done, _ = await asyncio.wait(
                self._waits.values(), timeout=left, return_when=asyncio.FIRST_COMPLETED
            )
            changed = False
            for part, task in list(self._waits.items()):
                if task in done:
                    del self._waits[part]
                    changed = task.result() or changed
            if changed:
                return

    async def _await_change(self, group_id: int, start: bytes, end: bytes | None) -> bool:
        """Whether group `group_id` applied a version of [start, end) above `through`
        within WAIT_S; True too when it cannot say (the round finds out)."""
        assert self._through is not None
        op = kv.ScanRequest(start=start, changes_after=self._through, await_change=True)
        if end is not None:
            op.end = end
        try:
            response = await self._client._send(
                kv.Request(scan=op), group_id=group_id, write=False, timeout_s=2 * WAIT_S
            )
        except (WrongShard, UnknownGroup, Unavailable, DeadlineExceeded):
            # The map changed, or no replica answered in time: a round plans again and
            # reads with the client's whole timeout, raising what it meets.
            return True
        except InvalidArgument as exc:
            # A node that reads changes but knows no waits takes one for a malformed read.
            raise _predates_waits(group_id, f"it refused a wait: {exc}") from None
        answer = response.scan
        if not answer.waited:
            raise _predates_waits(group_id, "it answered a wait with a read")
        if answer.changed:
            # The next round reads at least up to the version that changed: a round at a
            # timestamp from a clock behind it would find nothing, and this wait would
            # answer again at once, round after round, until that clock passed it.
            self._client._clock.observe(answer.through)
        return answer.changed

    def _plan(self, start: bytes, end: bytes | None) -> list[ScanPart]:
        return self._client._routing.routing.plan_scan(start, end)

    async def _read_pages(self, changes_round: ChangesRound) -> list[Change]:
        """Read a page of every lane still behind, all at once, into the round; the changes
        it may deliver then (asked once every page is taken, so the order the pages came
        in changes nothing)."""
        reads = await asyncio.gather(
            *(self._read_lane(changes_round, lane) for lane in changes_round.behind()),
            return_exceptions=True,
        )
        for outcome in reads:
            if isinstance(outcome, BaseException):
                raise outcome
        return changes_round.deliver()

    async def _read_lane(self, changes_round: ChangesRound, lane: Lane) -> None:
        """Read one page of `lane` into the round."""
        parts = self._plan(lane.start, lane.end)
        if len(parts) != 1:
            # The map changed: one lane per shard now.
            changes_round.split(lane, [(start, end) for _, start, end in parts])
            return
        group_id = parts[0][0].group_id
        answer = await self._read_changes(
            group_id, lane.start, lane.end, lane.after, changes_round.at, self._page_changes
        )
        if answer is None:
            return  # the lane is planned again
        changes = [
            Change(
                i.version,
                i.key,
                None if i.deleted else i.value,
                i.prev_value if i.HasField("prev_value") else None,
                i.prev_version,
            )
            for i in answer.items
        ]
        covered_end = answer.covered_end if answer.HasField("covered_end") else None
        try:
            changes_round.take(lane, changes, covered_end, answer.through)
        except ValueError as exc:
            raise ServerError(
                f"group {group_id} answered a read of changes wrongly: {exc}"
            ) from None

    async def _read_changes(
        self, group_id: int, start: bytes, end: bytes | None, after: int, at: int, limit: int
    ) -> kv.ScanResponse | None:
        """Group `group_id`'s page of the changes of [start, end) in (after, at]; None when
        the shard map changed under the read. (No clock to observe: `at` came from it.)"""
        op = kv.ScanRequest(
            start=start,
            limit=limit,
            snapshot=True,
            at_version=at,
            changes_after=after,
            prev_values=self._prev_values,
        )
        if end is not None:
            op.end = end
        client = self._client
        try:
            response = await client._read(
                kv.Request(scan=op), group_id=group_id, deadline=client._deadline()
            )
        except (WrongShard, UnknownGroup):
            return None
        _check_changes(response.scan, group_id, self._prev_values)
        return response.scan


def _predates_waits(group_id: int, what: str) -> ServerError:
    return ServerError(
        f"group {group_id}'s leader predates push watches ({what}); upgrade the nodes "
        "before watching"
    )


def _check_changes(answer: kv.ScanResponse, group_id: int, prev_values: bool) -> None:
    """A node that does not know reads of changes ignores the field and answers values;
    one that does not know previous values answers changes without them."""
    if not answer.changes:
        raise ServerError(
            f"group {group_id}'s leader answered a read of changes with values: it predates "
            "watches; upgrade the nodes before watching"
        )
    if prev_values and not answer.prev_values:
        raise ServerError(
            f"group {group_id}'s leader answered a read of changes without previous values: "
            "it predates them; upgrade the nodes before watching with prev_values"
        )


def _mark_retrieved(read: asyncio.Future[Any]) -> None:
    """A read's error is raised by the next `next_batch`, if one comes, and a wait's by the
    round that takes its answer: a watch left without one (failed, or its client closed
    under it) must not log "exception never retrieved"."""
    if not read.cancelled():
        read.exception()
