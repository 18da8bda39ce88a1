"""The retry loop's rules: which functions may run again, and when to run them again."""

from __future__ import annotations

import asyncio
import functools
import inspect
import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from router.cache import Backoff
from txn.errors import CommitUnknown, DeadlineExceeded, PaxosKVError, TooManyRetries
from txn.status import TransactionState

if TYPE_CHECKING:
    from txn.transaction import AsyncTransaction


R = TypeVar("R")

#: How long `checked_body_error` may re-read before the body's own error is raised as it
#: is: with the cluster unreachable it held that error back a whole `timeout_s` (10 s by
#: default; found by review), where a reachable cluster answers in milliseconds.
VIEW_CHECK_S = 1.0

#: The least time a retry under a call's deadline starts with: MIN_TRY_SHARE of the
#: call's `timeout_s`, and at least MIN_TRY_S (a few round trips). A try begun with
#: almost nothing left could only time out, and a two-phase commit cut short that way
#: may end in CommitUnknown (found by review: 6 of 40 fenced writes at 50 ms did).
MIN_TRY_SHARE = 0.1
MIN_TRY_S = 0.02


def _refuse_generator(fn: Callable[..., Any]) -> None:
    """The body may run many times: a generator would run at most once, silently."""
    target = inspect.unwrap(fn)
    if inspect.isgeneratorfunction(target) or inspect.isasyncgenfunction(target):
        raise TypeError(
            f"{getattr(fn, '__qualname__', fn)!r} is a generator function; a transactional "
            "function may run several times, so it must return its result instead of yielding"
        )


def transaction_position(fn: Callable[..., Any]) -> int:
    """Where `fn` takes its transaction: its parameter named `tx` or `tr` (as FoundationDB's
    decorator finds `tr`), else its first. So a decorated method (`def m(self, tx, ...)`)
    gets its instance first and its transaction second (found by a client-API review: the
    transaction came first and the instance second)."""
    try:
        names = list(inspect.signature(fn).parameters)
    except (TypeError, ValueError):  # a builtin or a callable without a signature
        return 0
    for name in ("tx", "tr"):
        if name in names:
            return names.index(name)
    return 0


def body_with_transaction_at(fn: Callable[..., R], head: tuple[Any, ...]) -> Callable[..., R]:
    """`fn` as a body that takes its transaction first (what `run` calls), with the
    arguments that stand before the transaction (`head`, a method's instance) put back."""
    if not head:
        return fn

    @functools.wraps(fn)
    def body(tx: Any, *args: Any, **kwargs: Any) -> R:
        return fn(*head, tx, *args, **kwargs)

    return body


@dataclass(frozen=True, slots=True)
class RetryEvent:
    """Why `run` (`run_within`, `transactional`) runs a function again: given to the
    client's `on_retry` before the pause.

    Attributes:
        attempt: the attempt that just ended (1 for the first).
        error: the retryable error it ended with (a `Conflict` names the key, the other
            transaction and the phase; a `CommitUnknown` of a transaction that wrote
            nothing is run again too).
        pause_s: how long `run` now waits before the next attempt.
        elapsed_s: time since the call began.
    """

    attempt: int
    error: PaxosKVError
    pause_s: float
    elapsed_s: float


OnRetry = Callable[[RetryEvent], None]


Tx = TypeVar("Tx")


def returning_transaction(write: Callable[[Tx], None]) -> Callable[[Tx], Tx]:
    """The body of a one-transaction helper (`add`, `put_fenced`, `delete_fenced`): `write`,
    then the transaction itself, whose `commit_ts` `run` then sets."""

    def body(tx: Tx) -> Tx:
        write(tx)
        return tx

    return body


class _RetryPolicy:
    """FoundationDB's `Transaction.on_error`: decide whether and when to run again."""

    def __init__(
        self,
        max_attempts: int,
        timeout_s: float | None,
        backoff: Backoff,
        rng: random.Random,
        deadline_s: float | None = None,
        on_retry: OnRetry | None = None,
    ) -> None:
        self.max_attempts = max_attempts
        self.timeout_s = timeout_s
        self.backoff = backoff
        self.rng = rng
        # A call's own `timeout_s` (the one-transaction helpers'): when it ends the retries
        # they end in DeadlineExceeded, as a single write's deadline does.
        self.deadline_s = deadline_s
        self.on_retry = on_retry

    def within(self, timeout_s: float) -> _RetryPolicy:
        """This policy for a call that must end within `timeout_s` seconds: no retry
        starts with less than MIN_TRY_SHARE of it (at least MIN_TRY_S) left."""
        return _RetryPolicy(
            self.max_attempts, self.timeout_s, self.backoff, self.rng, timeout_s, self.on_retry
        )

    def next_delay(self, exc: BaseException, attempts: int, elapsed_s: float) -> float | None:
        """The pause before attempt `attempts + 1`, or None: re-raise `exc` as it is.

        Raises:
            TooManyRetries: `exc` is retryable but the budget is used up.
            DeadlineExceeded: `exc` is retryable but the call's deadline leaves no time.
        """
        leaf = _retryable_leaf(exc)
        if leaf is None:
            return None
        delay, end = self._pause(attempts, elapsed_s)
        if end == "deadline":
            raise DeadlineExceeded(
                f"timeout_s ({self.deadline_s:g} s) left no time for attempt {attempts + 1} "
                f"after {elapsed_s:.3f} s; the last ended: {leaf}"
            ) from leaf
        if end is not None:
            raise TooManyRetries(leaf, attempts) from leaf
        return self._retrying(leaf, attempts, delay, elapsed_s)

    def delay_within_budget(
        self, error: PaxosKVError, attempts: int, elapsed_s: float
    ) -> float | None:
        """The pause before attempt `attempts + 1` after `error`, or None when
        `max_attempts`, `timeout_s` or the call's deadline is used up."""
        delay, end = self._pause(attempts, elapsed_s)
        return None if end is not None else self._retrying(error, attempts, delay, elapsed_s)

    def _retrying(
        self, error: PaxosKVError, attempts: int, delay: float, elapsed_s: float
    ) -> float:
        """Tell `on_retry` (its exception, if any, ends the call) and return `delay`."""
        if self.on_retry is not None:
            self.on_retry(RetryEvent(attempts, error, delay, elapsed_s))
        return delay

    def _pause(self, attempts: int, elapsed_s: float) -> tuple[float, str | None]:
        """The pause before attempt `attempts + 1`, and what ends the retries instead:
        "attempts", "timeout" (`retry_timeout_s`), "deadline" (the call's), or None."""
        if attempts >= self.max_attempts:
            return 0.0, "attempts"
        delay: float = self.backoff.delay(attempts - 1, self.rng)
        if self.deadline_s is not None:
            least = max(self.deadline_s * MIN_TRY_SHARE, MIN_TRY_S)
            if elapsed_s + delay + least > self.deadline_s:
                return delay, "deadline"
        if self.timeout_s is not None and elapsed_s + delay >= self.timeout_s:
            return delay, "timeout"
        return delay, None


def _leaves(exc: BaseException) -> list[BaseException]:
    """`exc`, or the errors of an exception group (a TaskGroup in the body), flattened."""
    leaves: list[BaseException] = []
    stack: list[BaseException] = [exc]
    while stack:
        e = stack.pop()
        if isinstance(e, BaseExceptionGroup):
            stack.extend(e.exceptions)
        else:
            leaves.append(e)
    return leaves


def _retryable_leaf(exc: BaseException) -> PaxosKVError | None:
    """The error to retry on for `exc`, or None when it must not be retried: `exc` itself,
    or the first leaf of an exception group (a TaskGroup of reads in the body), when every
    error in it is retryable and none may have committed."""
    leaves = _leaves(exc)
    # A DeadlineExceeded is retryable, but not by `run`: its attempt waited out a whole
    # deadline, and another would wait as long while the cluster does not answer,
    # max_attempts times over (found by review: 208 s with the defaults, the cluster down,
    # before TooManyRetries; FoundationDB's transaction_timed_out is not retried either).
    retryable = [
        e
        for e in leaves
        if isinstance(e, PaxosKVError)
        and e.retryable
        and not e.maybe_committed
        and not isinstance(e, DeadlineExceeded)
    ]
    return retryable[0] if leaves and len(retryable) == len(leaves) else None


async def checked_body_error(tx: AsyncTransaction, exc: Exception) -> Exception:
    """The error `run` handles for `exc`, raised by its body while `tx` was open.

    A retryable Conflict (caused by `exc`) when what the body read has changed since: its
    reads were not one snapshot, so its view may have mixed data from before and after
    another commit, and its error with it (FoundationDB's bodies read one version and never
    see such a mix). Otherwise `exc` itself: the reads were all current at one moment (or
    there was one read, which is a view of one moment by itself).

    Only the body's own errors are checked: a paxoskv error is the store's or the client's
    answer (retried as it is, or raised as it is; one that says a write may have been
    applied must never turn into a retry: found by review).
    """
    if tx.state is not TransactionState.OPEN or any(
        isinstance(leaf, PaxosKVError) for leaf in _leaves(exc)
    ):
        return exc
    try:
        changed = await asyncio.wait_for(tx._view_changed(), VIEW_CHECK_S)
    except (PaxosKVError, TimeoutError):
        return exc  # the reads could not be checked: the body's own error stands
    if changed is None:
        return exc
    changed.__cause__ = exc
    return changed


def delay_to_run_again(
    policy: _RetryPolicy,
    tx: AsyncTransaction,
    lost: CommitUnknown,
    attempts: int,
    elapsed_s: float,
) -> float | None:
    """`run`, when `tx`'s commit answer was lost: the pause before running the body again,
    when `tx` wrote nothing (nothing of it can apply twice) and the retry budget allows;
    None when the CommitUnknown stands (found by an application trial: a lookup that found
    nothing to do ended in a CommitUnknown that no txn_status could settle once the settle
    window was past). Never reported as anything but CommitUnknown: the commit may have
    been chosen, and `txn_status` of its ref would say so (found by the simulator, when a
    Conflict stood in for it)."""
    if tx._writes or tx._ops:
        return None
    return policy.delay_within_budget(lost, attempts, elapsed_s)
