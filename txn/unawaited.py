"""A transaction's reads handed out as coroutines, so that a commit after one that was never
awaited is refused (found by an application trial: `taken = tx.get(key)` without `await`
gave a coroutine, always true, and the transaction committed a uniqueness check that never
read the key; the only sign was a RuntimeWarning at garbage collection)."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Coroutine
from typing import Any, Concatenate, ParamSpec, Protocol, TypeVar

from txn.records import quote_key

P = ParamSpec("P")
T = TypeVar("T")

#: Tracked reads kept before the first pruning of those already started.
_FIRST_PRUNE = 32


class HandedOutReads:
    """The read coroutines one transaction returned, until its commit checks them."""

    def __init__(self) -> None:
        # Each coroutine with its method's name and first argument: the call is shown only
        # when refused, so a read pays no formatting.
        self._reads: list[tuple[Coroutine[Any, Any, Any], str, object]] = []
        self._prune_at = _FIRST_PRUNE

    def track(
        self, coro: Coroutine[Any, Any, T], method: str, first: object
    ) -> Coroutine[Any, Any, T]:
        """Keep `coro`, from `method` called with `first`, to check at commit; returns it."""
        if len(self._reads) >= self._prune_at:
            # Only the unstarted ones matter; pruned in amortized O(1) per read.
            self._reads = [read for read in self._reads if _unstarted(read[0])]
            self._prune_at = 2 * len(self._reads) + _FIRST_PRUNE
        self._reads.append((coro, method, first))
        return coro

    def never_awaited(self) -> list[str]:
        """The calls whose coroutine never started, each closed now (no RuntimeWarning:
        the commit's refusal says it); forgets them all."""
        calls = []
        for coro, method, first in self._reads:
            if _unstarted(coro):
                coro.close()
                shown = quote_key(first, 40) if isinstance(first, bytes) else ""
                calls.append(f"tx.{method}({shown})")
        self._reads = []
        self._prune_at = _FIRST_PRUNE
        return calls


def _unstarted(coro: Coroutine[Any, Any, Any]) -> bool:
    return inspect.getcoroutinestate(coro) == inspect.CORO_CREATED


class _Reader(Protocol):
    _handed_out: HandedOutReads


R = TypeVar("R", bound=_Reader)


def awaited_before_commit(
    method: Callable[Concatenate[R, P], Coroutine[Any, Any, T]],
) -> Callable[Concatenate[R, P], Coroutine[Any, Any, T]]:
    """Mark a transaction's async read: each call's coroutine is tracked until commit."""

    @functools.wraps(method)
    def read(self: R, /, *args: P.args, **kwargs: P.kwargs) -> Coroutine[Any, Any, T]:
        first = args[0] if args else None
        return self._handed_out.track(method(self, *args, **kwargs), method.__name__, first)

    return read
