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

A process dies with `kill()`: callbacks of the old life never run again (its tasks stay
suspended forever, as in a process that is gone). An exception a callback lets escape
(asyncio reports it to `call_exception_handler`) is kept in `errors`: a simulation that
finds one fails, since the real client must never leak one.

What asyncio features it does not provide (sockets, subprocesses, signals, executors) raise
NotImplementedError: the client never uses them.
"""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Callable, Coroutine
from typing import Any

from world import World

__all__ = ["SimLoop"]


class SimLoop(asyncio.AbstractEventLoop):
    """One client process's event loop, scheduled on `world`."""

    def __init__(self, world: World) -> None:
        self.world = world
        self.life = 0
        self.errors: list[str] = []
        self._exception_handler: Any = None

    # ------------------------------------------------------------------ the process

    def kill(self) -> None:
        """The process dies: nothing it scheduled runs any more."""
        self.life += 1

    def run_soon(self, fn: Callable[..., Any], *args: Any) -> None:
        """Run `fn(*args)` as a callback of this loop (from the world's events)."""
        self.call_soon(fn, *args)

    def _run(self, handle: asyncio.Handle, life: int) -> None:
        if life != self.life or handle.cancelled():
            return
        asyncio.events._set_running_loop(self)
        try:
            handle._run()
        finally:
            asyncio.events._set_running_loop(None)

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
        self.world.schedule(self.world.now, self._run, handle, self.life)
        return handle

    def call_soon_threadsafe(
        self,
        callback: Callable[..., object],
        *args: Any,
        context: contextvars.Context | None = None,
    ) -> asyncio.Handle:
        return self.call_soon(callback, *args, context=context)

    def call_at(
        self,
        when: float,
        callback: Callable[..., object],
        *args: Any,
        context: contextvars.Context | None = None,
    ) -> asyncio.TimerHandle:
        handle = asyncio.TimerHandle(when, callback, args, self, context)
        self.world.schedule(when, self._run, handle, self.life)
        return handle

    def call_later(
        self,
        delay: float,
        callback: Callable[..., object],
        *args: Any,
        context: contextvars.Context | None = None,
    ) -> asyncio.TimerHandle:
        return self.call_at(self.time() + delay, callback, *args, context=context)

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

    def is_running(self) -> bool:
        return True

    def is_closed(self) -> bool:
        return False

    def get_debug(self) -> bool:
        return False

    def set_debug(self, enabled: bool) -> None:
        pass

    # ------------------------------------------------------------------ errors

    def get_exception_handler(self) -> Any:
        return self._exception_handler

    def set_exception_handler(self, handler: Any) -> None:
        self._exception_handler = handler

    def default_exception_handler(self, context: dict[str, Any]) -> None:
        self.call_exception_handler(context)

    def call_exception_handler(self, context: dict[str, Any]) -> None:
        message = context.get("message", "")
        exception = context.get("exception")
        if message.startswith("Task was destroyed but it is pending"):
            return  # a killed process's task, collected
        self.errors.append(f"{message}: {exception!r}" if exception else message)
