"""SimLoop: asyncio code in the world's virtual time, deterministic, killable."""

from __future__ import annotations

import asyncio
import gc
import random
import warnings

from sim_loop import SimLoop
from world import World


def test_tasks_sleeps_and_timeouts_run_in_virtual_time() -> None:
    world = World(random.Random(1))
    loop = SimLoop(world, [])
    seen: list[tuple[str, float]] = []

    async def sleeper(name: str, delay: float) -> None:
        await asyncio.sleep(delay)
        seen.append((name, loop.time()))

    async def waits_too_long() -> None:
        try:
            await asyncio.wait_for(asyncio.sleep(10.0), 0.5)
        except TimeoutError:
            seen.append(("timed out", loop.time()))

    loop.call_soon(lambda: loop.create_task(sleeper("b", 2.0)))
    loop.call_soon(lambda: loop.create_task(sleeper("a", 1.0)))
    loop.call_soon(lambda: loop.create_task(waits_too_long()))
    world.run_until(60.0)
    assert seen == [("timed out", 0.5), ("a", 1.0), ("b", 2.0)]
    assert loop.errors == []


def test_a_killed_process_runs_nothing_more() -> None:
    world = World(random.Random(1))
    loop = SimLoop(world, [])
    seen: list[float] = []

    async def ticker() -> None:
        while True:
            await asyncio.sleep(1.0)
            seen.append(loop.time())

    loop.call_soon(lambda: loop.create_task(ticker()))
    world.run_until(3.5)
    loop.kill()
    world.run_until(10.0)
    assert seen == [1.0, 2.0, 3.0]


def _die_right_after_creating_a_task() -> None:
    world = World(random.Random(1))
    loop = SimLoop(world, [])

    async def lane() -> None:
        await asyncio.sleep(1.0)

    loop.create_task(lane())  # its first step is scheduled, not run
    assert len(asyncio.all_tasks(loop)) == 1
    loop.kill()


def test_a_task_a_process_created_just_before_it_died_warns_of_nothing() -> None:
    """Its coroutine never started: collected, it warned "coroutine ... was never awaited"
    (seen in CI, a watch's round reading its lanes as tasks)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        _die_right_after_creating_a_task()
        gc.collect()
    assert [str(w.message) for w in caught] == []


def test_an_exception_a_callback_lets_escape_is_kept() -> None:
    world = World(random.Random(1))
    loop = SimLoop(world, [])

    def broken() -> None:
        loop.create_future().result()  # no result yet: InvalidStateError

    loop.call_soon(broken)
    world.run_until(1.0)
    assert len(loop.errors) == 1 and "InvalidStateError" in loop.errors[0]


def test_a_dead_process_schedules_nothing_and_reports_nothing() -> None:
    """The garbage collector runs a dead process's `finally` blocks whenever it finds its
    coroutines: they must not touch the world (a reentrant push broke its heap)."""
    world = World(random.Random(1))
    errors: list[str] = []
    loop = SimLoop(world, errors)
    loop.kill()
    events = world._heap[:]
    loop.call_soon(lambda: None)
    loop.call_later(1.0, lambda: None)
    loop.call_exception_handler({"message": "Task exception was never retrieved"})
    assert world._heap == events and errors == []


def test_a_handler_set_is_called_and_the_outer_running_loop_is_restored() -> None:
    world = World(random.Random(1))
    loop = SimLoop(world, [])
    seen: list[str] = []
    loop.set_exception_handler(lambda _loop, context: seen.append(context["message"]))
    running: list[asyncio.AbstractEventLoop] = []

    def inside() -> None:
        running.append(asyncio.get_running_loop())
        loop.call_exception_handler({"message": "reported"})

    loop.call_soon(inside)
    world.run_until(1.0)
    assert running == [loop] and seen == ["reported"] and loop.errors == []
    assert asyncio.events._get_running_loop() is None


def test_a_finalizers_call_fails_a_live_process_and_is_dropped_by_a_dead_one() -> None:
    """`AsyncTransaction.__del__` releases a dropped transaction's locks through
    `call_soon_threadsafe` at a moment the garbage collector picks, which no seed decides:
    a live process's run fails instead (the model never drops a transaction open), and a
    dead one's (its coroutines closed by the collector) schedules nothing."""
    from txn import AsyncClient

    world = World(random.Random(1))
    loop = SimLoop(world, [])
    client = AsyncClient(["127.0.0.1:1"])
    client._loop = loop
    client._release_dropped(b"t" * 16, {1})
    assert len(loop.errors) == 1 and "a call from outside the loop" in loop.errors[0]
    assert not loop.is_closed()
    loop.kill()
    assert loop.is_closed()
    client._release_dropped(b"t" * 16, {1})  # the loop is gone: nothing, and no error
    world.run_until(1.0)
    assert len(loop.errors) == 1
