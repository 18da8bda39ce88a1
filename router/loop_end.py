"""Event loops that use grpc.aio in one process: ending one without leaving gRPC work behind
for another, and a loop that lives on passing over what another, closed, loop left."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

_log = logging.getLogger("paxoskv.client")

#: How asyncio names the failure of grpc.aio's poller, shared by every loop of the process,
#: when it hands a completion over to the closed loop whose call it was.
_HANDOVER = "Exception in callback PollerCompletionQueue._handle_events"

#: What a loop logs (DEBUG, logger "paxoskv.client") for each hand-over it passed over.
PASSED_OVER = "passed over a completion grpc.aio handed to a closed event loop"

#: How long the loop's last tasks get to finish on their own before they are cancelled.
WIND_DOWN_S = 1.0


async def finish_loop_tasks(wind_down_s: float = WIND_DOWN_S) -> None:
    """Let every other task of the running loop finish (at most `wind_down_s`), then cancel
    what is left and await it, as `asyncio.run` does at its end.

    Why wait first: a cancelled gRPC call leaves a task of grpc.aio's own awaiting the call's
    final status from the gRPC core. Cancelled in Python, that core operation still
    completes a moment later, and grpc.aio's poller hands its completion to this loop; once
    the loop is closed, another loop of the process that polls for gRPC (a second client, a
    second `asyncio.run`) prints "Exception in callback PollerCompletionQueue._handle_events
    ... RuntimeError: Event loop is closed" (up to one close in 25 of sync Clients made
    one after another). Finished on its own, the task takes its completion here. And
    why cancel the rest: a task still pending when the loop is collected prints "Task was
    destroyed but it is pending!".
    """
    current = asyncio.current_task()
    pending = {task for task in asyncio.all_tasks() if task is not current}
    if pending:
        _, pending = await asyncio.wait(pending, timeout=wind_down_s)
    for task in pending:
        task.cancel()
    await asyncio.gather(*pending, return_exceptions=True)
    await asyncio.get_running_loop().shutdown_asyncgens()


def pass_over_closed_loop_handovers(loop: asyncio.AbstractEventLoop) -> None:
    """Have `loop` pass over grpc.aio's failed hand-overs of a closed loop's completions.

    Why: one poller serves every loop of the process, and whichever loop reads a completion
    hands it to the loop whose call it was. A call of a loop that has ended (the caller's
    `asyncio.run`, while a sync `Client`'s loop lives on) may still complete in the gRPC
    core, past its deadline or its cancellation; the hand-over to the closed loop then
    raises "Event loop is closed" in the living loop, and asyncio prints it with a
    traceback, though nothing is lost: the closed loop's caller is gone (grpc/grpc#25364
    is the same poller's noise with loops in several threads). Every other error is
    reported as before.
    """
    loop.set_exception_handler(_handle_loop_exception)


def _handle_loop_exception(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
    error = context.get("exception")
    if (
        isinstance(error, RuntimeError)
        and str(error) == "Event loop is closed"
        and str(context.get("message", "")).startswith(_HANDOVER)
    ):
        _log.debug(PASSED_OVER)
        return
    loop.default_exception_handler(context)
