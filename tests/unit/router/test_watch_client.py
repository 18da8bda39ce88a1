"""`txn.AsyncClient.watch` against fake nodes (`test_client_routing.FakeCluster`, split at
g and p): pages cut at keys, a split under a watch, an old node, timeouts that lose nothing,
resuming from `through`, changes pushed by the shards' waits."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from unittest import mock

import pytest
from test_client_routing import FakeCluster, error_response, with_cluster

import txn
import txn.watch as watch_module
from router import kv_pb2 as kv
from router.watch_lanes import Change, ChangesRound


async def _writes(client: txn.AsyncClient, keys: list[bytes]) -> list[Change]:
    """Put each key (a deletion for a key seen before), the changes they make in order."""
    made = []
    seen: set[bytes] = set()
    for i, key in enumerate(keys):
        if key in seen:
            made.append(Change(await client.delete(key), key, None))
        else:
            made.append(Change(await client.put(key, b"%d" % i), key, b"%d" % i))
        seen.add(key)
    return made


async def _batches(watch: txn.AsyncWatch, want: int) -> list[list[Change]]:
    batches: list[list[Change]] = []
    while sum(len(b) for b in batches) < want:
        batch = await watch.next_batch(timeout_s=5)
        assert batch, f"no batch after {batches}"
        batches.append(batch)
    return batches


@with_cluster
async def test_changes_of_every_shard_arrive_in_version_order(cluster: FakeCluster) -> None:
    cluster.changes_keys_per_page = 1  # every page ends after one key: many lanes
    async with txn.AsyncClient(cluster.seeds(), timeout_s=5) as client:
        async with client.watch(b"a", b"z", progress_s=5) as watch:
            # Entering pinned every shard of the range at the start (a read there).
            assert cluster.count("scan") == 3
            made = await _writes(client, [b"q", b"b", b"h", b"c", b"b", b"y", b"zz", b"h"])
            batches = await _batches(watch, 7)
        got = [c for batch in batches for c in batch]
        assert got == [c for c in made if c.key != b"zz"]
        assert watch.through is not None and watch.through >= got[-1].version


@with_cluster
async def test_a_watch_goes_on_across_a_split(cluster: FakeCluster) -> None:
    async with txn.AsyncClient(cluster.seeds(), timeout_s=5) as client:
        async with client.watch(b"", None, progress_s=5) as watch:
            made = await _writes(client, [b"a", b"k", b"t"])
            assert await _batches(watch, 3) == [made]
            cluster.map = cluster.map.split(2, b"m", 4, (1, 2, 3), preferred_leader=1)
            cluster.leaders[4] = 1
            later = await _writes(client, [b"n", b"h", b"a"])
            got = [c for batch in await _batches(watch, 3) for c in batch]
        assert got == later


@with_cluster
async def test_an_old_node_answering_values_is_refused(cluster: FakeCluster) -> None:
    cluster.predates_watches = True
    async with txn.AsyncClient(cluster.seeds(), timeout_s=5) as client:
        watch = client.watch(b"a", b"b")
        with pytest.raises(txn.ServerError, match="predates watches; upgrade the nodes"):
            await watch.start()


@with_cluster
async def test_a_watch_with_prev_values_gets_what_each_change_replaced(
    cluster: FakeCluster,
) -> None:
    async with txn.AsyncClient(cluster.seeds(), timeout_s=5) as client:
        first = await client.put(b"a", b"1")
        async with client.watch(b"a", b"z", progress_s=5, prev_values=True) as watch:
            second = await client.put(b"a", b"2")
            gone = await client.delete(b"a")
            fresh = await client.put(b"q", b"x")
            got = [c for batch in await _batches(watch, 3) for c in batch]
    assert got == [
        Change(second, b"a", b"2", b"1", first),
        Change(gone, b"a", None, b"2", second),
        Change(fresh, b"q", b"x", None, 0),
    ]


@with_cluster
async def test_a_node_without_prev_values_is_refused_when_they_are_asked_for(
    cluster: FakeCluster,
) -> None:
    cluster.predates_prev_values = True
    async with txn.AsyncClient(cluster.seeds(), timeout_s=5) as client:
        async with client.watch(b"a", b"z", progress_s=5) as plain:
            await client.put(b"a", b"1")
            # Without prev_values, such a node serves a watch as before.
            assert [c.prev_value for b in await _batches(plain, 1) for c in b] == [None]
        watch = client.watch(b"a", b"b", prev_values=True)
        with pytest.raises(txn.ServerError, match="predates them; upgrade the nodes"):
            await watch.start()


@with_cluster
async def test_a_timed_out_wait_loses_nothing_and_a_watch_resumes_from_through(
    cluster: FakeCluster,
) -> None:
    async with txn.AsyncClient(cluster.seeds(), timeout_s=5) as client:
        async with client.watch(b"a", b"z", progress_s=5) as watch:
            assert await watch.next_batch(timeout_s=0.05) == []
            first = await _writes(client, [b"b"])
            assert await watch.next_batch(timeout_s=5) == first
            through = watch.through
        assert through is not None
        later = await _writes(client, [b"c", b"d"])
        async with client.watch(b"a", b"z", after=through, progress_s=5) as resumed:
            assert [c for b in await _batches(resumed, 2) for c in b] == later


@with_cluster
async def test_a_batch_left_by_a_timed_out_wait_is_not_counted_as_delivered(
    cluster: FakeCluster,
) -> None:
    """Found by the simulator's watcher: `through` moved when a batch was read, not when
    the caller got it, so a caller that gave up waiting and resumed from `through` never
    saw that batch."""
    async with (
        txn.AsyncClient(cluster.seeds(), timeout_s=5) as client,
        client.watch(b"a", b"z", progress_s=5) as watch,
    ):
        assert await watch.next_batch(timeout_s=0.01) == []  # the read goes on
        made = await _writes(client, [b"b"])
        pending = watch._pending
        assert pending is not None
        await asyncio.wait({pending}, timeout=5)  # the read found the change
        assert pending.done()
        assert watch.through is not None and watch.through < made[0].version
        assert await watch.next_batch(timeout_s=0) == made
        assert watch.through >= made[0].version


@with_cluster
async def test_a_start_beside_the_first_read_never_moves_through_back(
    cluster: FakeCluster,
) -> None:
    """Found by review: a `start` awaited while the first `next_batch` started the watch
    pinned again, slower, and set `through` back to `after`, below the batch delivered
    meanwhile (a caller saving `through` then would get it twice)."""
    async with txn.AsyncClient(cluster.seeds(), timeout_s=5) as client:
        after = await client.put(b"a", b"0")
        later = await client.put(b"b", b"1")
        watch = client.watch(b"a", b"z", after=after, progress_s=5)
        real_pin = watch._pin
        first_pin, delivered = asyncio.Event(), asyncio.Event()
        pins = 0

        async def pin(at: int) -> None:
            nonlocal pins
            pins += 1
            if pins == 1:
                first_pin.set()
            else:
                await delivered.wait()  # a second start's pins, slower than the first's
            await real_pin(at)

        watch._pin = pin  # type: ignore[method-assign]
        reader = asyncio.ensure_future(watch.next_batch(timeout_s=5))
        await first_pin.wait()
        starter = asyncio.ensure_future(watch.start())
        batch = await reader
        delivered.set()
        await starter
        assert [c.version for c in batch] == [later]
        assert watch.through is not None and watch.through >= later
        assert pins == 1
        await watch.aclose()


@with_cluster
async def test_closing_a_watch_with_a_read_waiting_ends_it(cluster: FakeCluster) -> None:
    async with txn.AsyncClient(cluster.seeds(), timeout_s=5) as client:
        watch = client.watch(b"a", b"z", progress_s=5)
        await watch.start()
        waiting = asyncio.ensure_future(watch.next_batch())
        await asyncio.sleep(0)  # it waits on the watch's read now
        assert not waiting.done()
        await watch.aclose()
        # Found by review: the waiter took the read the close had taken, and met None.
        with pytest.raises(StopAsyncIteration):
            await waiting
        with pytest.raises(StopAsyncIteration):
            await watch.next_batch()


@with_cluster
async def test_a_task_cancelled_while_it_closes_a_watch_is_cancelled(
    cluster: FakeCluster,
) -> None:
    """Found by a cancellation trial: the close waited for the watch's own read with
    CancelledError suppressed, which swallowed a cancellation of the closing task too, so
    it ran on past its `async with` (and `asyncio.timeout` raised nothing)."""
    ran_on: list[str] = []

    async def watcher(client: txn.AsyncClient) -> None:
        async with client.watch(b"a", b"z", progress_s=5) as watch:
            await watch.next_batch(timeout_s=0.01)  # leaves its read pending
            task = asyncio.current_task()
            assert task is not None
            asyncio.get_running_loop().call_soon(task.cancel)  # arrives in the close
        ran_on.append("past the block")

    async with txn.AsyncClient(cluster.seeds(), timeout_s=5) as client:
        task = asyncio.ensure_future(watcher(client))
        await asyncio.wait({task})
    assert task.cancelled() and ran_on == []


@with_cluster
async def test_two_callers_waiting_without_a_timeout_each_get_a_batch(
    cluster: FakeCluster,
) -> None:
    """Found by a cancellation trial: when one waiter took the read's batch, the other,
    which had asked to wait as long as it takes, got [] at once."""
    async with txn.AsyncClient(cluster.seeds(), timeout_s=5) as client:
        async with client.watch(b"a", b"z", progress_s=5) as watch:
            waiters = [asyncio.ensure_future(watch.next_batch()) for _ in range(2)]
            first = await _writes(client, [b"b"])
            done, _ = await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
            assert [t.result() for t in done] == [first]
            second = await _writes(client, [b"c"])
            got = await asyncio.gather(*waiters)
        assert sorted(got, key=lambda b: b[0].version) == [first, second]


@with_cluster
async def test_entering_a_closed_watch_is_refused(cluster: FakeCluster) -> None:
    """Found by a cancellation trial: it delivered nothing without a word."""
    async with txn.AsyncClient(cluster.seeds(), timeout_s=5) as client:
        watch = client.watch(b"a", b"z")
        async with watch:
            pass
        with pytest.raises(txn.WatchClosed, match="this watch is closed"):
            async with watch:
                pass


@with_cluster
async def test_a_watch_that_failed_raises_its_error_again(cluster: FakeCluster) -> None:
    """Found by review: the failed generator ended, so a loop that caught the error and
    went on ended as if the watch were done. An `after` ahead of the cluster's clock is no
    bare ValueError either: the client's clock takes it."""
    async with txn.AsyncClient(cluster.seeds(), timeout_s=1) as client:
        watch = client.watch(b"a", b"z", progress_s=5)
        await watch.start()
        await _writes(client, [b"b"])  # the fake's clock moves with its writes
        cluster.predates_watches = True  # every read now answers values: ServerError
        for _ in range(2):
            with pytest.raises(txn.ServerError, match="predates watches"):
                await watch.next_batch(timeout_s=5)
        await watch.aclose()
        cluster.predates_watches = False
        ahead = client.watch(b"a", b"z", after=cluster.clock + 1000, progress_s=5)
        assert await ahead.next_batch(timeout_s=0.2) == []
        await ahead.aclose()


def test_a_round_refuses_pages_that_break_its_order() -> None:
    """A node bug must not reorder or repeat changes: pages covering nothing new, or
    holding changes outside what they cover, are refused."""
    changes_round = ChangesRound([(b"a", b"m")], 10, 20)
    (lane,) = changes_round.behind()
    for changes, covered_end, through in (
        ([], None, 10),  # through not above the lane
        ([], None, 21),  # past the round
        ([], b"a", 20),  # covers no key
        ([Change(15, b"n", b"")], None, 20),  # key outside the lane
        ([Change(15, b"f", b"")], b"e", 20),  # key past covered_end
        ([Change(18, b"b", b"")], None, 17),  # version above through
        ([Change(10, b"b", b"")], None, 20),  # version not above the lane's start
    ):
        with pytest.raises(ValueError):
            changes_round.take(lane, changes, covered_end, through)
    changes_round.take(lane, [Change(12, b"c", b"x"), Change(11, b"b", None)], b"d", 20)
    # The rest of the lane is still at 10: nothing above it can be delivered yet.
    assert changes_round.deliver() == [] and changes_round.delivered_through == 10
    (rest,) = changes_round.behind()
    assert (rest.start, rest.end, rest.after) == (b"d", b"m", 10)
    changes_round.take(rest, [Change(11, b"k", b"y")], None, 20)
    assert changes_round.deliver() == [
        Change(11, b"b", None),
        Change(11, b"k", b"y"),
        Change(12, b"c", b"x"),
    ]
    assert changes_round.done and changes_round.behind() == []


@with_cluster
async def test_a_change_is_pushed_not_polled_for(cluster: FakeCluster) -> None:
    """With a progress interval of a minute, a change still arrives at once: the shard's
    wait answers and starts a round. Without one, the watch would wait out the minute."""
    waits: list[bytes] = []

    def note_waits(node: object, request: kv.Request) -> None:
        if request.WhichOneof("op") == "scan" and request.scan.await_change:
            waits.append(request.scan.start)

    cluster.hook = note_waits
    async with (
        txn.AsyncClient(cluster.seeds(), timeout_s=5) as client,
        client.watch(b"a", b"z", progress_s=60) as watch,
    ):
        assert await watch.next_batch(timeout_s=0.05) == []
        assert sorted(waits) == [b"a", b"g", b"p"]  # one wait per shard, parked
        made = await _writes(client, [b"h"])
        assert await watch.next_batch(timeout_s=5) == made
        assert await watch.next_batch(timeout_s=0.05) == []
        # The shard that changed was asked again; the two others' waits are still parked.
        assert sorted(waits) == [b"a", b"g", b"g", b"p"]
    assert watch._waits == {}


@with_cluster
async def test_while_nothing_changes_through_still_moves_every_progress_interval(
    cluster: FakeCluster,
) -> None:
    async with (
        txn.AsyncClient(cluster.seeds(), timeout_s=5) as client,
        client.watch(b"a", b"z", progress_s=0.02) as watch,
    ):
        first = watch.through
        assert first is not None
        deadline = asyncio.get_running_loop().time() + 5
        while watch.through == first and asyncio.get_running_loop().time() < deadline:
            assert await watch.next_batch(timeout_s=0.05) == []
        assert watch.through > first


@with_cluster
async def test_a_node_that_answers_a_wait_with_a_read_is_refused(cluster: FakeCluster) -> None:
    """A node that predates push watches would not hold the wait: refused, not polled."""

    def as_a_read(node: object, request: kv.Request) -> kv.Response | None:
        if request.WhichOneof("op") == "scan" and request.scan.await_change:
            return kv.Response(id=request.id, scan=kv.ScanResponse(changes=True))
        return None

    cluster.hook = as_a_read
    async with (
        txn.AsyncClient(cluster.seeds(), timeout_s=5) as client,
        client.watch(b"a", b"z", progress_s=5) as watch,
    ):
        with pytest.raises(txn.ServerError, match="predates push watches"):
            await watch.next_batch(timeout_s=5)


@with_cluster
async def test_a_wait_answered_changed_has_the_next_round_read_up_to_its_version(
    cluster: FakeCluster,
) -> None:
    """A version stamped by a clock ahead of the one the watch's timestamps come from: the
    next round reads up to it, not at a timestamp below it (found by review: such rounds
    found nothing, and the wait answered changed again at once, round after round)."""
    ahead: list[int] = []
    reads: list[int] = []

    def hook(node: object, request: kv.Request) -> kv.Response | None:
        if request.WhichOneof("op") != "scan":
            return None
        if request.scan.await_change and not ahead:
            ahead.append(cluster.clock + 1000)
            answer = kv.ScanResponse(changed=True, through=ahead[0], waited=True)
            return kv.Response(id=request.id, scan=answer)
        if ahead and not request.scan.await_change:
            reads.append(request.scan.at_version)
        return None

    async with (
        txn.AsyncClient(cluster.seeds(), timeout_s=5) as client,
        client.watch(b"a", b"z", progress_s=60) as watch,
    ):
        cluster.hook = hook
        assert await watch.next_batch(timeout_s=0.1) == []
    assert ahead and reads and min(reads) >= ahead[0]


@with_cluster
async def test_a_node_that_refuses_a_wait_as_malformed_is_named_too_old(
    cluster: FakeCluster,
) -> None:
    def refuse(node: object, request: kv.Request) -> kv.Response | None:
        if request.WhichOneof("op") == "scan" and request.scan.await_change:
            return error_response(request, kv.INVALID_ARGUMENT)
        return None

    cluster.hook = refuse
    async with (
        txn.AsyncClient(cluster.seeds(), timeout_s=5) as client,
        client.watch(b"a", b"z", progress_s=5) as watch,
    ):
        with pytest.raises(txn.ServerError, match=r"predates push watches \(it refused a wait"):
            await watch.next_batch(timeout_s=5)
        assert watch._waits == {}  # a failed watch waits no more


class _Outage:
    """A FakeCluster hook: while `on`, every read of changes (not a wait) is answered
    UNAVAILABLE, so a round fails once the client's timeout runs out."""

    def __init__(self) -> None:
        self.on = False

    def __call__(self, node: object, request: kv.Request) -> kv.Response | None:
        reading = request.WhichOneof("op") == "scan" and request.scan.HasField("changes_after")
        if self.on and reading and not request.scan.await_change:
            return error_response(request, kv.UNAVAILABLE)
        return None


async def _until(condition: Callable[[], bool], what: str) -> None:
    """Wait (10 s at most) until `condition()` holds."""
    loop = asyncio.get_running_loop()
    give_up = loop.time() + 10
    while not condition():
        assert loop.time() < give_up, what
        await asyncio.sleep(0.01)


@with_cluster
async def test_a_resuming_watch_reads_on_through_an_outage(cluster: FakeCluster) -> None:
    """`resume=True`: a round that failed is read again from `through` after a pause (a
    plain watch raises), whatever the caller does meanwhile: a `next_batch` cancelled
    during the pause, a second caller during it (found by review: with the pause in
    `next_batch`, both met the failed rounds' end and the watch ended without a word)."""
    outage = _Outage()
    cluster.hook = outage
    with mock.patch.object(watch_module, "RESUME_PAUSES_S", (1.0,)):
        async with txn.AsyncClient(cluster.seeds(), timeout_s=0.3) as client:
            plain = client.watch(b"a", b"z", progress_s=0.1)
            resuming = client.watch(b"a", b"z", progress_s=0.1, resume=True)
            await plain.start()
            await resuming.start()
            outage.on = True
            with pytest.raises(txn.Unavailable):
                await plain.next_batch(timeout_s=5)
            reader = asyncio.ensure_future(resuming.next_batch())
            await _until(lambda: resuming.resumed == 1, "no read failed")  # now it pauses
            reader.cancel()
            assert await resuming.next_batch(timeout_s=0.2) == []  # a caller in the pause
            made = await _writes(client, [b"b", b"q"])
            outage.on = False
            got = [c for batch in await _batches(resuming, 2) for c in batch]
            assert got == made
            await plain.aclose()
            await resuming.aclose()


@with_cluster
async def test_closing_a_resuming_watch_during_an_outage_ends_its_reader(
    cluster: FakeCluster,
) -> None:
    outage = _Outage()
    cluster.hook = outage
    async with txn.AsyncClient(cluster.seeds(), timeout_s=0.3) as client:
        watch = client.watch(b"a", b"z", progress_s=0.1, resume=True)
        await watch.start()
        outage.on = True
        waiting = asyncio.ensure_future(watch.next_batch())
        await _until(lambda: watch.resumed >= 2, "the watch never read again")
        await watch.aclose()
        with pytest.raises(StopAsyncIteration):
            await asyncio.wait_for(waiting, 5.0)
