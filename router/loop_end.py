"""Ending an event loop that used grpc.aio without leaving gRPC work behind for another loop."""

from __future__ import annotations

import asyncio

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
