"""The synchronous client: `AsyncClient` run on a private event loop in its own thread."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import functools
import inspect
import os
import random
import threading
import time
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Coroutine, Iterator, Sequence
from types import TracebackType
from typing import Any, Concatenate, ParamSpec, Protocol, TypeVar, overload

from router.cache import Backoff
from router.client import CasResult
from router.loop_end import finish_loop_tasks, pass_over_closed_loop_handovers
from router.tls import ClientTls
from router.watch_lanes import Change
from txn.args import _as_run_timeout, _as_timeout
from txn.atomic import AtomicOp
from txn.client import DEFAULT_MAX_ATTEMPTS, DEFAULT_TIMEOUT_S, AsyncClient
from txn.entry import Entry
from txn.errors import ClientClosed, CommitUnknown, TxnRef, WatchClosed
from txn.retry import (
    OnRetry,
    _refuse_generator,
    body_with_transaction_at,
    checked_body_error,
    delay_to_run_again,
    returning_transaction,
    transaction_position,
)
from txn.snapshot import DEFAULT_PAGE_KEYS, AsyncSnapshot
from txn.status import TransactionState, TxnStatus
from txn.transaction import AsyncTransaction
from txn.watch import CLOSED, DEFAULT_PROGRESS_S, AsyncWatch

__all__ = ["Client", "Snapshot", "Transaction", "Watch", "transactional"]

T = TypeVar("T")
T_co = TypeVar("T_co", covariant=True)
P = ParamSpec("P")

_LOOP_CHECK_S = 0.5  # how often a sync call checks that its loop thread still runs


class Transaction:
    """A read-write transaction of a synchronous `Client`; see `AsyncTransaction`.

    Use as `with client.transaction() as tx:` (commits on normal exit, aborts when the block
    raises). Not safe to share between threads.

    Attributes:
        txn_id: the transaction's id: its start timestamp and random bytes
            (txn/txn_ids.py).
    """

    def __init__(self, client: Client, inner: AsyncTransaction) -> None:
        self._client = client
        self._inner = inner
        self.txn_id = inner.txn_id

    @property
    def state(self) -> TransactionState:
        """Where the transaction is in its life."""
        return self._inner.state

    @property
    def commit_ts(self) -> int | None:
        """The commit timestamp once committed (0 for an empty transaction), else None."""
        return self._inner.commit_ts

    @property
    def ref(self) -> TxnRef | None:
        """The id and decision group for `client.txn_status`, once `commit()` started."""
        return self._inner.ref

    @property
    def read_set(self) -> dict[bytes, int]:
        """A copy of the keys read so far with their versions."""
        return self._inner.read_set

    @property
    def write_set(self) -> dict[bytes, bytes | None]:
        """A copy of the buffered writes (None: delete)."""
        return self._inner.write_set

    @property
    def atomic_ops(self) -> dict[bytes, list[tuple[AtomicOp, bytes]]]:
        """A copy of the buffered atomic operations, per key. See
        `AsyncTransaction.atomic_ops`."""
        return self._inner.atomic_ops

    @property
    def scanned_ranges(self) -> list[tuple[bytes, bytes | None]]:
        """A copy of the key ranges [start, end) scanned so far (end None: to the last key)."""
        return self._inner.scanned_ranges

    def get(self, key: bytes, *, for_update: bool = False, snapshot: bool = False) -> bytes | None:
        """See `AsyncTransaction.get`."""
        return self._client._call(
            self._inner.get(key, for_update=for_update, snapshot=snapshot), writes=False
        )

    def scan(
        self,
        start: bytes,
        end: bytes | None = None,
        limit: int | None = None,
        *,
        reverse: bool = False,
        for_update: bool = False,
        snapshot: bool = False,
    ) -> list[tuple[bytes, bytes]]:
        """See `AsyncTransaction.scan` (the range is protected against phantoms, unless
        `snapshot`)."""
        return self._client._call(
            self._inner.scan(
                start, end, limit, reverse=reverse, for_update=for_update, snapshot=snapshot
            ),
            writes=False,
        )

    def put(self, key: bytes, value: bytes, *, ttl_s: float | None = None) -> None:
        """Buffer a write (sent at commit). See `AsyncTransaction.put`."""
        self._inner.put(key, value, ttl_s=ttl_s)

    def delete(self, key: bytes) -> None:
        """Buffer a delete (sent at commit). See `AsyncTransaction.delete`."""
        self._inner.delete(key)

    def delete_range(self, start: bytes, end: bytes | None, limit: int | None = None) -> int:
        """Delete the keys of [start, end) (the first `limit`); returns how many. See
        `AsyncTransaction.delete_range` (phantom-safe: it scans the range first)."""
        return self._client._call(self._inner.delete_range(start, end, limit), writes=False)

    def atomic(self, key: bytes, op: AtomicOp, operand: bytes) -> None:
        """Buffer an atomic operation on `key` (applied at commit to its value then). See
        `AsyncTransaction.atomic`."""
        self._inner.atomic(key, op, operand)

    def add(self, key: bytes, delta: int) -> None:
        """Buffer an addition to the 8-byte counter at `key`. See `AsyncTransaction.add`."""
        self._inner.add(key, delta)

    def put_fenced(
        self,
        key: bytes,
        value: bytes,
        *,
        lock: bytes,
        token: int,
        ttl_s: float | None = None,
    ) -> None:
        """Buffer a write fenced by `lock`'s token. See `AsyncTransaction.put_fenced`."""
        self._inner.put_fenced(key, value, lock=lock, token=token, ttl_s=ttl_s)

    def delete_fenced(self, key: bytes, *, lock: bytes, token: int) -> None:
        """Buffer a delete fenced by `lock`'s token. See `AsyncTransaction.delete_fenced`."""
        self._inner.delete_fenced(key, lock=lock, token=token)

    def commit(self) -> int:
        """Commit; returns the commit timestamp. See `AsyncTransaction.commit`."""
        try:
            return self._client._call(self._inner.commit(), writes=True)
        except ClientClosed:
            ref = self._inner.ref
            if self._inner.state is not TransactionState.UNKNOWN or ref is None:
                raise
            raise CommitUnknown(
                "the client was closed while the commit was in flight: it may or may not "
                "have committed",
                ref=ref,
                advice="ask txn_status(err.ref) from another client",
            ) from None

    def abort(self) -> None:
        """Discard the transaction. See `AsyncTransaction.abort`."""

        async def on_the_client_loop() -> None:
            # Its release of update locks starts tasks on the client's loop.
            self._inner.abort()

        if not self._client._closed:
            try:
                self._client._call(on_the_client_loop(), writes=False)
                return
            except ClientClosed:
                # Closed meanwhile (found by review: the ClientClosed replaced the error that
                # `with` or run() was aborting for).
                pass
        self._inner._abort(release_locks=False)  # nothing can be sent any more

    def __enter__(self) -> Transaction:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is None:
            if self.state is TransactionState.OPEN:
                self.commit()
        elif self.state is TransactionState.OPEN:
            self.abort()

    def __repr__(self) -> str:
        return repr(self._inner).replace("AsyncTransaction", "Transaction", 1)


class Snapshot:
    """Read-only reads at one timestamp for a synchronous `Client`; see `AsyncSnapshot`."""

    def __init__(self, client: Client, inner: AsyncSnapshot) -> None:
        self._client = client
        self._inner = inner

    @property
    def read_ts(self) -> int:
        """The snapshot's timestamp (fetched from the cluster on first use)."""
        ts = self._inner.read_ts
        if ts is None:
            ts = self._client._call(self._inner.timestamp(), writes=False)
        return ts

    def get(self, key: bytes) -> bytes | None:
        """See `AsyncSnapshot.get`."""
        return self._client._call(self._inner.get(key), writes=False)

    def scan(
        self,
        start: bytes,
        end: bytes | None = None,
        limit: int | None = None,
        *,
        reverse: bool = False,
    ) -> list[tuple[bytes, bytes]]:
        """See `AsyncSnapshot.scan` (one consistent snapshot across shards)."""
        return self._client._call(
            self._inner.scan(start, end, limit, reverse=reverse), writes=False
        )

    def iterate(
        self,
        start: bytes,
        end: bytes | None = None,
        *,
        reverse: bool = False,
        page_keys: int = DEFAULT_PAGE_KEYS,
    ) -> Iterator[tuple[bytes, bytes]]:
        """See `AsyncSnapshot.iterate`: `for key, value in snap.iterate(a, b):`, a page
        read at a time."""
        return self._items(self._inner.iterate(start, end, reverse=reverse, page_keys=page_keys))

    def _items(
        self, items: AsyncGenerator[tuple[bytes, bytes], None]
    ) -> Iterator[tuple[bytes, bytes]]:
        """`items` read one at a time on the client's loop, closed there when done."""
        try:
            while True:
                try:
                    yield self._client._call(_next_item(items), writes=False)
                except StopAsyncIteration:
                    return
        finally:
            self._client._clean_up(items.aclose())

    def close(self) -> None:
        """Further reads raise TransactionClosed."""
        self._inner.close()

    def __enter__(self) -> Snapshot:
        self._client._call(self._inner.timestamp(), writes=False)
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class Watch:
    """See `AsyncWatch`: `for changes in client.watch(a, b):`, each a list of `Change`;
    `with client.watch(a, b) as watch:` stops it on leaving."""

    def __init__(self, client: Client, inner: AsyncWatch) -> None:
        self._client = client
        self._inner = inner

    @property
    def through(self) -> int | None:
        """See `AsyncWatch.through`: resume with `after=watch.through`."""
        return self._inner.through

    @property
    def resumed(self) -> int:
        """See `AsyncWatch.resumed`: how many times a `resume` watch read again."""
        return self._inner.resumed

    def __iter__(self) -> Watch:
        return self

    def __next__(self) -> list[Change]:
        """The next batch, waiting until there is one (see `next_batch`); the loop ends
        once the watch is closed."""
        try:
            return self.next_batch()
        except WatchClosed:
            raise StopIteration from None

    def next_batch(self, timeout_s: float | None = None) -> list[Change]:
        """See `AsyncWatch.next_batch`: the next batch, or [] after `timeout_s`.

        Raises:
            WatchClosed: the watch was closed (found by an application trial: a reader
                thread met the async StopAsyncIteration); others as `AsyncWatch.next_batch`.
        """
        try:
            return self._client._call(self._inner.next_batch(timeout_s), writes=False)
        except StopAsyncIteration:
            raise WatchClosed(CLOSED) from None

    def close(self) -> None:
        """Stop the watch."""
        with contextlib.suppress(ClientClosed):
            self._client._call(self._inner.aclose(), writes=False)

    def __enter__(self) -> Watch:
        self.start()
        return self

    def start(self) -> int:
        """See `AsyncWatch.start`: fix where the watch starts (its `after`, or now)."""
        return self._client._call(self._inner.start(), writes=False)

    def __exit__(self, *exc: object) -> None:
        self.close()


async def _next_item(items: AsyncIterator[T]) -> T:
    return await anext(items)


class Client:
    """A synchronous client of a paxoskv cluster: the `AsyncClient` API without `await`.

    It runs an `AsyncClient` on a private event loop in a background thread, so it works
    from plain scripts and from many threads at once (each thread with its own
    transactions). From asyncio code use `AsyncClient`: a `Client` call blocks its thread
    until the answer.

    Args:
        seeds, cluster_id, timeout_s, max_attempts, retry_timeout_s, backoff, rng,
        attempt_timeout_s, wall_ns, monotonic, tls, settle_unknown: as `AsyncClient`.
        on_retry: as `AsyncClient`'s, called in the thread that runs `run` (or `add`,
            `put_fenced`, `delete_fenced`), so it may use this client.

    Raises:
        InvalidArgument: no seed, or a bad setting.
    """

    def __init__(
        self,
        seeds: str | Sequence[str],
        *,
        cluster_id: str | None = None,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        max_attempts: int = DEFAULT_MAX_ATTEMPTS,
        retry_timeout_s: float | None = None,
        backoff: Backoff | None = None,
        rng: random.Random | None = None,
        attempt_timeout_s: float | None = None,
        wall_ns: Callable[[], int] = time.time_ns,
        monotonic: Callable[[], float] = time.monotonic,
        tls: ClientTls = "env",
        settle_unknown: bool = False,
        on_retry: OnRetry | None = None,
    ) -> None:
        self._async = AsyncClient(
            seeds,
            cluster_id=cluster_id,
            timeout_s=timeout_s,
            max_attempts=max_attempts,
            retry_timeout_s=retry_timeout_s,
            backoff=backoff,
            rng=rng,
            attempt_timeout_s=attempt_timeout_s,
            wall_ns=wall_ns,
            monotonic=monotonic,
            tls=tls,
            settle_unknown=settle_unknown,
            on_retry=on_retry,
        )
        self._policy = self._async._policy
        self._closed = False
        # Held by close() throughout, and by each call while it checks and submits: a call
        # either reaches the loop before close() winds it down or is refused.
        self._close_lock = threading.RLock()
        self._closing = False  # close() began: a cancelled call is ClientClosed
        self._loop = asyncio.new_event_loop()
        pass_over_closed_loop_handovers(self._loop)
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="paxoskv-client", daemon=True
        )
        self._thread.start()
        self._pid = os.getpid()

    # ------------------------------------------------------------------ plumbing

    def _call(self, coro: Coroutine[Any, Any, T], *, writes: bool, closing: bool = False) -> T:
        """Run `coro` on the client's loop and wait for it (cancelled if we are interrupted);
        `closing`: close()'s own calls, the only ones taken once it began; `writes`: `coro`
        may write (a commit, a single-key write), so a close() cutting it off leaves its
        outcome open (`maybe_committed`)."""
        if self._closed:
            coro.close()
            raise ClientClosed("the client is closed")
        if os.getpid() != self._pid:
            # A forked child has no copy of the loop thread: nothing would ever run the call
            # (found by review: "the client is closed", after a wait, with no reason given).
            coro.close()
            raise ClientClosed(
                f"this Client was made in process {self._pid}, not this one ({os.getpid()}): "
                "a Client does not survive a fork, and nor does gRPC once a client used it: "
                "start worker processes with multiprocessing.get_context('spawn') and make "
                "a Client in each"
            )
        if threading.current_thread() is self._thread:
            coro.close()
            raise RuntimeError(
                "a synchronous paxoskv Client was called from its own event loop thread; "
                "use AsyncClient from asyncio code"
            )
        started, finished = threading.Event(), threading.Event()

        async def tracked() -> T:
            started.set()
            try:
                return await coro
            finally:
                finished.set()

        job = tracked()
        future: concurrent.futures.Future[T] | None = None
        # One handler from the submission on: a signal's exception (Ctrl-C) landing between
        # the hand-over and the wait escaped both handlers of a first form, and the commit
        # it had handed over went ahead while the caller was told it was interrupted
        # (found by review).
        try:
            with self._close_lock:
                if self._closed or (self._closing and not closing):
                    # Found by review: submitted while close() wound the loop down, the call
                    # never ran, and its cancellation called into the closed loop.
                    raise ClientClosed("the client is closed")
                future = asyncio.run_coroutine_threadsafe(job, self._loop)
            return self._wait(future)
        except concurrent.futures.CancelledError:
            if future is None or not self._closing:
                raise
            # close() (from another thread) cancelled what was still running on the loop;
            # a cancellation is no error of ours (found by review).
            if not writes:
                raise ClientClosed(
                    "the client was closed while this call was in flight (a read: it changed "
                    "nothing)"
                ) from None
            raise ClientClosed(
                "the client was closed while this call was in flight: the write or commit "
                "may or may not have happened",
                maybe_committed=True,
            ) from None
        except BaseException:
            if future is None:  # refused, or interrupted before the hand-over
                job.close()
                coro.close()
                raise
            future.cancel()
            if started.is_set():
                # Let the loop run the cancellation (a commit then records UNKNOWN) before
                # the caller looks at the transaction's state.
                finished.wait(1.0)
            else:
                # Cancelled before it began, the task never runs `coro` (found by a SIGTERM
                # to `paxoskv watch`: "coroutine ... was never awaited" on stderr). This
                # runs on the loop after the task is made and before its first step.
                with contextlib.suppress(RuntimeError):  # the loop is closed already
                    self._loop.call_soon_threadsafe(_close_unstarted, started, coro)
            raise

    def _wait(self, future: concurrent.futures.Future[T]) -> T:
        """The result of `future`; ClientClosed if the loop thread ended without running it
        (nothing would ever finish it, and the caller would wait forever)."""
        while True:
            try:
                return future.result(timeout=_LOOP_CHECK_S)
            except TimeoutError:
                if future.done():
                    raise  # the coroutine's own TimeoutError
                if not self._thread.is_alive():
                    raise ClientClosed("the client is closed") from None

    # ------------------------------------------------------------------ lifecycle

    @property
    def async_client(self) -> AsyncClient:
        """The `AsyncClient` underneath (it lives on this client's private loop)."""
        return self._async

    @property
    def cluster_id(self) -> str | None:
        """The cluster's id (None until connected, unless given)."""
        return self._async.cluster_id

    def group_of(self, key: bytes) -> int:
        """As `AsyncClient.group_of`: the shard group holding `key`, by the cached map."""
        return self._async.group_of(key)

    def connect(self) -> Client:
        """Fetch the shard map now instead of on first use.

        Raises:
            WrongCluster, Unavailable: as `AsyncClient.connect`.
        """
        self._call(self._async.connect(), writes=False)
        return self

    def _clean_up(self, closing: Coroutine[Any, Any, None]) -> None:
        """Run `closing` on the loop: waited for from a caller's thread, only started from
        the loop's own thread (a generator the garbage collector finalizes there: found by
        review, the wait raised RuntimeError into "Exception ignored" on stderr)."""
        if threading.current_thread() is self._thread:
            self._async._spawn(closing)
            return
        with contextlib.suppress(ClientClosed):
            self._call(closing, writes=False)

    def close(self) -> None:
        """Close the connections and stop the background thread (idempotent)."""
        if os.getpid() != self._pid:
            # A forked child has no loop thread to stop, may hold the lock as a thread of the
            # parent left it, and closing its copy of the loop would take the parent's
            # wake-up pipe out of the epoll set they share: there is nothing to release
            # (found by review: `with Client(...)` left in a child raised RuntimeError, or
            # hung on the lock).
            self._closed = True
            return
        with self._close_lock:
            if self._closed:
                return
            self._closing = True
            if threading.current_thread() is not self._thread:
                with contextlib.suppress(Exception):
                    self._call(self._async.close(), writes=False, closing=True)
                with contextlib.suppress(Exception):
                    self._call(finish_loop_tasks(), writes=False, closing=True)
            self._closed = True
            self._loop.call_soon_threadsafe(self._loop.stop)
        if threading.current_thread() is not self._thread:
            self._thread.join(timeout=5.0)
            if not self._thread.is_alive():
                self._loop.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ transactions

    def transaction(self, *, timeout_s: float | None = None) -> Transaction:
        """A new read-write transaction; use as `with client.transaction() as tx:`. With
        `timeout_s`, its reads and commit end within that many seconds of this call (see
        `AsyncClient.transaction`)."""
        if self._closed:
            raise ClientClosed("the client is closed")
        return Transaction(self, self._async.transaction(timeout_s=timeout_s))

    def snapshot(self, read_ts: int | None = None) -> Snapshot:
        """Read-only reads at one timestamp; use as `with client.snapshot() as snap:`.

        Args:
            read_ts: as `AsyncClient.snapshot`.
        """
        return Snapshot(self, self._async.snapshot(read_ts))

    def watch(
        self,
        start: bytes,
        end: bytes | None = None,
        *,
        after: int | None = None,
        progress_s: float = DEFAULT_PROGRESS_S,
        prev_values: bool = False,
        resume: bool = False,
    ) -> Watch:
        """Every change of [start, end) from now on (or after version `after`), in commit
        order: `for changes in client.watch(a, b):`; with `prev_values`, each with the value
        its key held before; with `resume`, reading on through outages. `end` None is no
        end: one key is `(key, key + b"\\x00")`. See `AsyncClient.watch`."""
        inner = self._async.watch(
            start, end, after=after, progress_s=progress_s, prev_values=prev_values, resume=resume
        )
        return Watch(self, inner)

    def run(
        self, fn: Callable[Concatenate[Transaction, P], T], *args: P.args, **kwargs: P.kwargs
    ) -> T:
        """Run `fn(tx, *args, **kwargs)` in a transaction and commit, retrying the whole
        function with a fresh transaction on retryable errors. See `AsyncClient.run`.

        Raises:
            TypeError: `fn` is a generator or coroutine function, or returned an awaitable
                (nothing is committed).
            TooManyRetries, CommitUnknown: as `AsyncClient.run`.
        """
        return self._run_within(None, fn, args, kwargs)

    def run_within(
        self,
        timeout_s: float,
        fn: Callable[Concatenate[Transaction, P], T],
        /,
        *args: P.args,
        **kwargs: P.kwargs,
    ) -> T:
        """`run(fn, *args, **kwargs)`, all of it (every attempt's reads and commit, and the
        pauses between attempts) within `timeout_s` seconds from now. See
        `AsyncClient.run_within`.

        Raises:
            DeadlineExceeded, CommitUnknown, InvalidArgument: as `AsyncClient.run_within`.
            Otherwise as `run`.
        """
        bound = _as_run_timeout(timeout_s)
        return self._run_within(bound, fn, args, kwargs)

    def _run_within(
        self,
        timeout_s: float | None,
        fn: Callable[..., T],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> T:
        """`run`; with `timeout_s`, all of it within that many seconds from now."""
        _refuse_generator(fn)
        if inspect.iscoroutinefunction(inspect.unwrap(fn)):
            raise TypeError(
                f"{getattr(fn, '__qualname__', fn)!r} is a coroutine function; use AsyncClient"
            )
        started = time.monotonic()
        started_mono = self._async._monotonic()
        policy = self._policy if timeout_s is None else self._policy.within(timeout_s)
        attempts = 0
        priority = 0
        while True:
            attempts += 1
            if self._closed:
                raise ClientClosed("the client is closed")
            inner = self._async._attempt(priority, timeout_s, started_mono)
            priority = inner._priority
            tx = Transaction(self, inner)
            try:
                try:
                    result = fn(tx, *args, **kwargs)
                except Exception as failed:
                    try:
                        error = self._call(checked_body_error(inner, failed), writes=False)
                    except ClientClosed:
                        error = failed  # closed meanwhile: the body's own error stands
                    if error is failed:
                        raise
                    raise error from failed
                if inspect.isawaitable(result):
                    # A coroutine function behind a plain wrapper: its body has not run, and
                    # committing now would commit nothing and drop its writes silently.
                    if inspect.iscoroutine(result):
                        result.close()
                    raise TypeError(
                        f"{getattr(fn, '__qualname__', fn)!r} returned an awaitable: its "
                        "body did not run; use AsyncClient for asynchronous functions"
                    )
                if tx.state is TransactionState.OPEN:
                    try:
                        tx.commit()
                    except CommitUnknown as lost:
                        again = delay_to_run_again(
                            policy, inner, lost, attempts, time.monotonic() - started
                        )
                        if again is not None:
                            time.sleep(again)
                            continue
                        if not self._async.settle_unknown:
                            raise
                        try:
                            self._call(self._async._settle_lost_commit(inner, lost), writes=True)
                        except ClientClosed:
                            # Closed by another thread before it settled: the loss stands
                            # (found by review: "the client is closed" read as nothing
                            # committed, for a commit that had landed).
                            raise lost from None
                return result
            except Exception as exc:
                if tx.state is TransactionState.OPEN:
                    tx.abort()
                if tx.state is not TransactionState.ABORTED:
                    raise  # committed (or may have): running the body again applies it twice
                delay = policy.next_delay(exc, attempts, time.monotonic() - started)
                if delay is None:
                    raise
            except BaseException:
                if tx.state is TransactionState.OPEN:
                    tx.abort()
                raise
            time.sleep(delay)

    def transactional(self, fn: Callable[Concatenate[Transaction, P], T]) -> Transactional[P, T]:
        """Decorator: see `AsyncClient.transactional` (a `Transaction` where `fn` takes
        it, its parameter `tx` or `tr`, else its first: compose without committing;
        otherwise run, commit and retry).

        Raises:
            TypeError: `fn` is a generator function.
        """
        _refuse_generator(fn)
        at = transaction_position(fn)

        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> T:
            if len(args) > at and isinstance(args[at], Transaction):
                return fn(*args, **kwargs)
            return self.run(body_with_transaction_at(fn, args[:at]), *args[at:], **kwargs)

        return wrapper

    def txn_status(
        self,
        ref: TxnRef | str | bytes,
        *,
        group_id: int | None = None,
        key: bytes | None = None,
        timeout_s: float | None = None,
        settle: bool = False,
    ) -> TxnStatus:
        """The outcome of a transaction; see `AsyncClient.txn_status`."""
        return self._call(
            self._async.txn_status(
                ref, group_id=group_id, key=key, timeout_s=timeout_s, settle=settle
            ),
            writes=settle,  # a settle records a decision (found by review)
        )

    # ------------------------------------------------------------------ single-key helpers

    def get(self, key: bytes, *, timeout_s: float | None = None) -> bytes | None:
        """See `AsyncClient.get`."""
        return self._call(self._async.get(key, timeout_s=timeout_s), writes=False)

    def get_versioned(
        self, key: bytes, *, timeout_s: float | None = None
    ) -> tuple[bytes | None, int]:
        """The latest value of `key` and its version, or (None, 0); see
        `AsyncClient.get_versioned`."""
        return self._call(self._async.get_versioned(key, timeout_s=timeout_s), writes=False)

    def get_entry(self, key: bytes, *, timeout_s: float | None = None) -> Entry | None:
        """The latest value of `key` with its version and time to live, or None; see
        `AsyncClient.get_entry`."""
        return self._call(self._async.get_entry(key, timeout_s=timeout_s), writes=False)

    def put(
        self,
        key: bytes,
        value: bytes,
        *,
        ttl_s: float | None = None,
        timeout_s: float | None = None,
    ) -> int:
        """See `AsyncClient.put`."""
        return self._call(
            self._async.put(key, value, ttl_s=ttl_s, timeout_s=timeout_s), writes=True
        )

    def delete(self, key: bytes, *, timeout_s: float | None = None) -> int:
        """See `AsyncClient.delete`."""
        return self._call(self._async.delete(key, timeout_s=timeout_s), writes=True)

    def cas(
        self,
        key: bytes,
        *,
        expected_value: bytes | None = None,
        expected_version: int | None = None,
        expect_absent: bool = False,
        new_value: bytes | None = None,
        delete: bool = False,
        touch: bool = False,
        ttl_s: float | None = None,
        timeout_s: float | None = None,
    ) -> CasResult:
        """See `AsyncClient.cas`."""
        return self._call(
            self._async.cas(
                key,
                expected_value=expected_value,
                expected_version=expected_version,
                expect_absent=expect_absent,
                new_value=new_value,
                delete=delete,
                touch=touch,
                ttl_s=ttl_s,
                timeout_s=timeout_s,
            ),
            writes=True,
        )

    def scan(
        self,
        start: bytes,
        end: bytes | None = None,
        limit: int | None = None,
        *,
        reverse: bool = False,
        timeout_s: float | None = None,
    ) -> list[tuple[bytes, bytes]]:
        """See `AsyncClient.scan`."""
        return self._call(
            self._async.scan(start, end, limit, reverse=reverse, timeout_s=timeout_s), writes=False
        )

    def put_fenced(
        self,
        key: bytes,
        value: bytes,
        *,
        lock: bytes,
        token: int,
        ttl_s: float | None = None,
        timeout_s: float | None = None,
    ) -> int:
        """See `AsyncClient.put_fenced`; returns the commit timestamp."""
        return self._alone(
            lambda tx: tx.put_fenced(key, value, lock=lock, token=token, ttl_s=ttl_s), timeout_s
        )

    def delete_fenced(
        self, key: bytes, *, lock: bytes, token: int, timeout_s: float | None = None
    ) -> int:
        """See `AsyncClient.delete_fenced`; returns the commit timestamp."""
        return self._alone(lambda tx: tx.delete_fenced(key, lock=lock, token=token), timeout_s)

    def add(self, key: bytes, delta: int, *, timeout_s: float | None = None) -> int:
        """Add `delta` to the counter at `key` in a transaction of its own (an atomic add);
        returns the commit timestamp. See `AsyncClient.add`."""
        return self._alone(lambda tx: tx.add(key, delta), timeout_s)

    def _alone(self, write: Callable[[Transaction], None], timeout_s: float | None) -> int:
        """Run `write` in a transaction of its own, retried by this thread's `run` loop (so
        `on_retry` runs here, as for `run`), within `timeout_s` when given; returns its
        commit timestamp."""
        body: Callable[[Transaction], Transaction] = returning_transaction(write)
        tx = self._run_within(_as_timeout(timeout_s), body, (), {})
        assert tx.commit_ts is not None
        return tx.commit_ts


# ---------------------------------------------------------------------------- decorator


class Transactional(Protocol[P, T_co]):
    """What `Client.transactional` makes of a function of a `Transaction`: called without
    one it runs through `run`; with one first, in it (no commit)."""

    @overload
    def __call__(self, tx: Transaction, /, *args: P.args, **kwargs: P.kwargs) -> T_co: ...

    @overload
    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> T_co: ...


class ComposableTransactional(Protocol[P, T_co]):
    """What `@transactional` makes of a function of a `Transaction`: called with a `Client`
    (its own transaction, retried) or with a `Transaction` (in it, no commit)."""

    def __call__(self, db: Client | Transaction, /, *args: P.args, **kwargs: P.kwargs) -> T_co: ...


class AsyncComposableTransactional(Protocol[P, T_co]):
    """What `@transactional` makes of a coroutine function of an `AsyncTransaction`: awaited
    with an `AsyncClient` or an `AsyncTransaction`."""

    def __call__(
        self, db: AsyncClient | AsyncTransaction, /, *args: P.args, **kwargs: P.kwargs
    ) -> Coroutine[Any, Any, T_co]: ...


@overload
def transactional(
    fn: Callable[Concatenate[AsyncTransaction, P], Coroutine[Any, Any, T]],
) -> AsyncComposableTransactional[P, T]: ...


@overload
def transactional(
    fn: Callable[Concatenate[Transaction, P], T],
) -> ComposableTransactional[P, T]: ...


def transactional(fn: Callable[..., Any]) -> Any:
    """FoundationDB's `@fdb.transactional`: the argument in the transaction's place (the
    parameter named `tx` or `tr`, else the first; so methods work too) picks what happens.

    - a `Client` / `AsyncClient`: run `fn` in a fresh transaction, commit, retry on
      retryable errors (`client.run`); with an `AsyncClient` the call returns an awaitable;
    - a `Transaction` / `AsyncTransaction`: just call `fn` in it (no commit), so
      transactional functions compose into one transaction.

    Example::

        @transactional
        def add(tx, key: bytes, n: int) -> int:
            total = int(tx.get(key) or b"0") + n
            tx.put(key, b"%d" % total)
            return total

        add(client, b"counter", 1)      # its own transaction
        with client.transaction() as tx:
            add(tx, b"a", 1); add(tx, b"b", 1)   # both in one

    Raises:
        TypeError: `fn` is a generator function, or the argument in the transaction's place
            (its `tx`/`tr` parameter, else the first) is neither a client nor a transaction.
    """
    _refuse_generator(fn)

    at = transaction_position(fn)

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        db_or_tx = args[at] if len(args) > at else None
        if isinstance(db_or_tx, Transaction | AsyncTransaction):
            return fn(*args, **kwargs)
        if isinstance(db_or_tx, Client | AsyncClient):
            return db_or_tx.run(body_with_transaction_at(fn, args[:at]), *args[at + 1 :], **kwargs)
        raise TypeError(
            f"{getattr(fn, '__qualname__', fn)}() needs a Client, AsyncClient, Transaction or "
            f"AsyncTransaction as its transaction argument (position {at}), "
            f"got {type(db_or_tx).__name__}"
        )

    return wrapper


def _close_unstarted(started: threading.Event, coro: Coroutine[Any, Any, Any]) -> None:
    """On the loop: close a cancelled call's coroutine that never began."""
    if not started.is_set():
        coro.close()
