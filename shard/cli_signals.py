"""Stop signals as Ctrl-C: SIGTERM (a service manager, `timeout`, `kill`) and SIGHUP (the
terminal went away) end a long command with `Stopped`, once, so it cleans up and says where
it stopped instead of dying mid-way (a backup left its `FILE.*.part` behind; found by an
operator trial). A signal the process ignores (`nohup`) stays ignored; a second one acts as
it would have.

Two forms: `stop_signals_raise` for a command that waits in the main thread (the sync
client's calls), where the handler raises; `run_until_stopped` for an asyncio one, where a
handler raising inside the loop's callbacks is only logged (asyncio passes on no exception
but KeyboardInterrupt and SystemExit from them), so the signal cancels the main task
instead, as `asyncio.run` does on Ctrl-C.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import threading
from collections.abc import Callable, Coroutine, Iterator
from typing import Any, TypeVar

T = TypeVar("T")

#: How long a command cancelled by a stop signal has to end before it is cancelled again.
RECANCEL_S = 1.0

#: What each stop signal is called in a command's last note.
_WORDS = {signal.SIGTERM: "terminated", signal.SIGHUP: "hung up"}


class Stopped(BaseException):
    """A stop signal arrived: a BaseException, as KeyboardInterrupt is, so no `except
    Exception` on the way takes it for an error of the command."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum

    @property
    def word(self) -> str:
        """`terminated` or `hung up`, for the command's note."""
        return _WORDS[signal.Signals(self.signum)]

    @property
    def exit_status(self) -> int:
        """128 + the signal's number: what a shell reports for a process the signal killed
        (as 130 after Ctrl-C)."""
        return 128 + self.signum


@contextlib.contextmanager
def stop_signals_raise() -> Iterator[None]:
    """In the block, SIGTERM and SIGHUP raise `Stopped`, once (a second one meets the
    handler from before); outside the main thread, where no handler can be set, nothing
    changes."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def stopped(signum: int, _frame: object) -> None:
        for each, previous in saved.items():
            if signal.getsignal(each) is stopped:
                signal.signal(each, previous)
        raise Stopped(signum)

    saved = {each: _handler(each) for each in _heeded()}
    for each in saved:
        signal.signal(each, stopped)
    try:
        yield
    finally:
        for each, previous in saved.items():
            signal.signal(each, previous)


def how_stopped(stop: KeyboardInterrupt | Stopped) -> tuple[str, int]:
    """The note's word and the exit status of a command stopped by `stop` (Ctrl-C:
    `interrupted`, 130)."""
    if isinstance(stop, Stopped):
        return stop.word, stop.exit_status
    return "interrupted", 130


def _heeded() -> list[signal.Signals]:
    """The stop signals this process does not ignore."""
    return [each for each in _WORDS if signal.getsignal(each) is not signal.SIG_IGN]


def _handler(each: signal.Signals) -> Any:
    """The handler of `each` now, to put back later (one set outside Python: the default)."""
    found = signal.getsignal(each)
    return signal.SIG_DFL if found is None else found


def run_until_stopped(main: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """`asyncio.run(main())`, where SIGTERM and SIGHUP cancel it, as Ctrl-C does, and then
    raise `Stopped` (its cancellation's way out; another error it ends with stands)."""

    async def guarded() -> T:
        loop = asyncio.get_running_loop()
        task = asyncio.current_task()
        assert task is not None
        got: list[int] = []
        heeded = _heeded() if threading.current_thread() is threading.main_thread() else []
        before = {each: _handler(each) for each in heeded}

        def put_back(each: signal.Signals) -> None:
            # remove_signal_handler leaves SIG_DFL: an embedding program's handler comes
            # back (found by review).
            loop.remove_signal_handler(each)
            signal.signal(each, before[each])

        def stop(each: signal.Signals) -> None:
            if got:  # the second: what it would have done
                put_back(each)
                signal.raise_signal(each)
                return
            got.append(each)
            cancel_until_done()

        def cancel_until_done() -> None:
            # Again while it runs: Python 3.11's asyncio.wait_for can swallow a cancellation
            # that meets its inner call's completion (gh-86296), and a backup then read on
            # to its end (a test under load).
            if not task.done():
                task.cancel()
                loop.call_later(RECANCEL_S, cancel_until_done)

        for each in heeded:
            loop.add_signal_handler(each, stop, each)
        try:
            return await main()
        except asyncio.CancelledError:
            if got:
                raise Stopped(got[0]) from None
            raise
        finally:
            for each in heeded:
                if signal.getsignal(each) is not before[each]:
                    put_back(each)

    return asyncio.run(guarded())
