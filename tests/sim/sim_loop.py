"""An asyncio event loop in the simulator's virtual time, so real asyncio code runs in it.

Theory of operation
-------------------
The real client (`txn.AsyncClient` over `router.client.RoutingClient`) is asyncio code:
tasks, futures, `asyncio.sleep`, `wait_for`, timers. `SimLoop` is the smallest event loop
that code needs, and it owns no time and no I/O: every callback asyncio asks for
(`call_soon`, `call_at`, `call_later`) becomes an event of the `World`'s heap, at the
world's time, so it runs interleaved with the nodes' wakes and the network's deliveries in
one deterministic order, and `time()` is the world's clock. A callback runs with this loop
set as the running loop (what `asyncio.get_running_loop()` and the tasks' steps need).

A process dies with `kill()`: no callback runs again, scheduled before or after (its tasks
stay suspended forever, as in a process that is gone), and it schedules nothing more, not
even from the `finally` blocks the garbage collector runs when it closes the process's
coroutines. What asyncio reports to the exception handler of a live process (an exception
a callback let escape, a task's exception never retrieved, a pending task destroyed) is
appended to `errors`, which the simulation shares among its client processes and fails
on: the real client must never leak one. Such reports come when the garbage collector
finds the object, so the simulation collects before it judges (`ClusterSim._result`).

What asyncio features it does not provide (sockets, subprocesses, signals, executors,
threads, running or closing the loop) raise NotImplementedError: the client never uses
them.
"""

from __future__ import annotations

import asyncio
import contextvars
import inspect
from collections.abc import Callable, Coroutine
from typing import Any

from world import World

__all__ = ["SimLoop"]


class SimLoop(asyncio.AbstractEventLoop):
    """One client process's event loop, scheduled on `world`."""

    def __init__(self, world: World, errors: list[str]) -> None:
        self.world = world
        self.dead = False
        self.errors = errors
        self._exception_handler: Any = None

    # ------------------------------------------------------------------ the process

    def kill(self) -> None:
        """The process dies: nothing it scheduled, or schedules later, runs."""
        self.dead = True
        # A task created just before the death never took its first step: its coroutine,
        # never started, would warn "never awaited" when collected (seen in CI once a
        # watch's round read its lanes as tasks). Closing it runs none of its code.
        for task in asyncio.all_tasks(self):
            coro = task.get_coro()
            if (
                inspect.iscoroutine(coro)
                and inspect.getcoroutinestate(coro) == inspect.CORO_CREATED
            ):
                coro.close()

    def _schedule(self, at: float, handle: asyncio.Handle) -> None:
        # A dead process's coroutines are closed when the garbage collector finds them,
        # which runs their `finally` blocks at moments no seed decides, maybe in the middle
        # of a `World.schedule` (a reentrant push broke the heap): they schedule nothing.
        if not self.dead:
            self.world.schedule(at, self._run, handle)

    def _run(self, handle: asyncio.Handle) -> None:
        if self.dead or handle.cancelled():
            return
        outer = asyncio.events._get_running_loop()
        asyncio.events._set_running_loop(self)
        try:
            handle._run()
        finally:
            asyncio.events._set_running_loop(outer)

    # ------------------------------------------------------------------ scheduling

    def time(self) -> float:
        return self.world.now

    def call_soon(
        self,
        callback: Callable[..., object],
        *args: Any,
        context: contextvars.Context | None = None,
    ) -> asyncio.Handle:
        handle = asyncio.Handle(callback, args, self, context)
        self._schedule(self.world.now, handle)
        return handle

    def call_at(
        self,
        when: float,
        callback: Callable[..., object],
        *args: Any,
        context: contextvars.Context | None = None,
    ) -> asyncio.TimerHandle:
        handle = asyncio.TimerHandle(when, callback, args, self, context)
        self._schedule(when, handle)
        return handle

    def call_later(
        self,
        delay: float,
        callback: Callable[..., object],
        *args: Any,
        context: contextvars.Context | None = None,
    ) -> asyncio.TimerHandle:
        return self.call_at(self.time() + delay, callback, *args, context=context)

    def call_soon_threadsafe(
        self,
        callback: Callable[..., object],
        *args: Any,
        context: contextvars.Context | None = None,
    ) -> asyncio.Handle:
        """What a finalizer calls (`AsyncTransaction.__del__`): the garbage collector runs
        it at moments no seed decides, maybe inside a `World.schedule`, so a live process
        must never reach it here: its call fails the run instead of scheduling anything."""
        handle = asyncio.Handle(callback, args, self, context)
        handle.cancel()
        if not self.dead:
            self.errors.append(f"a call from outside the loop (a finalizer?): {callback!r}")
        return handle

    def is_closed(self) -> bool:
        return self.dead

    def _timer_handle_cancelled(self, handle: asyncio.TimerHandle) -> None:
        pass  # a cancelled handle is skipped when its event comes

    def create_future(self) -> asyncio.Future[Any]:
        return asyncio.Future(loop=self)

    def create_task(
        self,
        coro: Coroutine[Any, Any, Any],
        *,
        name: str | None = None,
        context: contextvars.Context | None = None,
    ) -> asyncio.Task[Any]:
        return asyncio.Task(coro, loop=self, name=name, context=context)

    # ------------------------------------------------------------------ state

    def get_debug(self) -> bool:
        return False  # asked by every Future and Task made

    # ------------------------------------------------------------------ errors

    def set_exception_handler(self, handler: Any) -> None:
        self._exception_handler = handler

    def default_exception_handler(self, context: dict[str, Any]) -> None:
        if self.dead:
            return  # a dead process's tasks, collected: nothing of it runs or reports
        message = context.get("message", "")
        exception = context.get("exception")
        self.errors.append(f"{message}: {exception!r}" if exception else message)

    def call_exception_handler(self, context: dict[str, Any]) -> None:
        if self._exception_handler is not None:
            self._exception_handler(self, context)
        else:
            self.default_exception_handler(context)
