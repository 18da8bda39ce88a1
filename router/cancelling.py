"""Cancelling a task of one's own without swallowing a cancellation of oneself."""

from __future__ import annotations

import asyncio
from typing import Any


async def cancel_and_wait(task: asyncio.Future[Any]) -> None:
    """Cancel `task` and wait until it has ended, its outcome retrieved (no "exception was
    never retrieved" warning). A cancellation of the caller meanwhile still raises
    CancelledError in the caller: `suppress(CancelledError)` around `await task` cannot
    tell the two apart and swallowed it (found by a cancellation trial: a task cancelled
    as it closed a watch ran on past its `async with`)."""
    task.cancel()
    await asyncio.wait({task})
    if not task.cancelled():
        task.exception()
