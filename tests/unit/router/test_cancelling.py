"""`router.cancelling.cancel_and_wait`: the task ends, and the caller's own cancellation is
not swallowed."""

from __future__ import annotations

import asyncio
import gc

import pytest

from router.cancelling import cancel_and_wait


def test_the_task_is_cancelled_and_has_ended() -> None:
    async def main() -> asyncio.Task[None]:
        task = asyncio.ensure_future(asyncio.sleep(10))
        await cancel_and_wait(task)
        return task

    assert asyncio.run(main()).cancelled()


def test_a_cancellation_of_the_caller_still_raises_in_the_caller() -> None:
    async def stubborn() -> None:
        while True:  # takes one more loop turn to end than a plain sleep
            try:
                await asyncio.sleep(10)
            except asyncio.CancelledError:
                await asyncio.sleep(0)
                return

    async def caller(task: asyncio.Task[None]) -> str:
        await cancel_and_wait(task)
        return "ran on"

    async def main() -> None:
        task = asyncio.ensure_future(stubborn())
        await asyncio.sleep(0)
        closing = asyncio.ensure_future(caller(task))
        await asyncio.sleep(0)  # the caller waits for the task now
        closing.cancel()
        with pytest.raises(asyncio.CancelledError):
            await closing

    asyncio.run(main())


def test_a_task_that_failed_leaves_no_unretrieved_exception(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def failing() -> None:
        raise RuntimeError("boom")

    async def main() -> None:
        task = asyncio.ensure_future(failing())
        await asyncio.sleep(0)  # it failed before the cancel
        await cancel_and_wait(task)

    asyncio.run(main())
    gc.collect()
    assert "never retrieved" not in caplog.text
