"""The paxoskv client: transactions with FoundationDB's ergonomics, asyncio and synchronous.

Quick start
-----------
::

    from txn import Client

    with Client("127.0.0.1:7001,127.0.0.1:7002", settle_unknown=True) as client:

        @client.transactional
        def transfer(tx, src: bytes, dst: bytes, amount: int) -> None:
            if amount <= 0 or src == dst:
                raise ValueError("invalid transfer")  # aborts: nothing is written
            a = int(tx.get(src, for_update=True) or b"0")
            if a < amount:
                raise ValueError("insufficient funds")
            b = int(tx.get(dst, for_update=True) or b"0")
            tx.put(src, b"%d" % (a - amount))
            tx.put(dst, b"%d" % (b + amount))

        transfer(b"alice", b"bob", 10)          # runs, commits, retries on conflicts

        with client.transaction() as tx:        # commits on exit, aborts on exception
            tx.put(b"k", b"v")
        print(tx.commit_ts)                     # the commit timestamp (a fencing token)

        with client.snapshot() as snap:         # read-only, one consistent timestamp
            rows = snap.scan(b"a", b"z")

`AsyncClient` is the same API for asyncio (`async with client.transaction() as tx`, `await
tx.get(k)`; `tx.put` and `tx.delete` only buffer, so they are plain calls in both).

`AsyncClient` is defined here; its transactions in `txn.transaction`, its snapshots in
`txn.snapshot`, its commit protocol in `txn.commit`, the synchronous `Client` in
`txn.sync_client`. Import them from `txn`.

Theory of operation
-------------------
A read-write transaction reads through the shard leaders (linearizable `Get`/`Scan`) and
remembers every key it read with the version it saw, also for absent keys (the version of the
key's newest tombstone, 0 when never written). Writes are buffered in the client; reads see
them (read-your-writes, scans included). Nothing is locked while the transaction runs
(optimistic concurrency, docs/ARCHITECTURE.md "Transactions"). The reads are not one
snapshot: each sees the latest committed data when it is made, and the commit validates
them all. So `run` checks a body's error against what the body read
(`txn.retry.checked_body_error`): changed data makes it a retryable `Conflict` (a body
that read one key and scanned nothing saw one moment: its error stands unchecked).

Commit sends the read and write sets to the participants, the groups owning those keys:

- one group: `CommitOnePhase` — validate, write and decide in one Paxos round;
- several groups: `Prepare` to every participant in parallel (each gets only its own keys;
  the coordinator group is the group of the first written key, of the first read key for a
  transaction that only read). When all voted yes the transaction IS committed, at
  `commit_ts = max(prepare_ts)` (parallel commits, as CockroachDB's: one Paxos round on the
  commit path), and `commit` returns. Every participant, the coordinator group included,
  then gets `Resolve(commit, commit_ts)` in the background: its versions appear and its
  intents go, and it keeps a record of the outcome (participant rule R5), which at the
  coordinator group is what `txn_status` reads. No Decide is needed for a commit. If this
  client dies first, the participants left prepared ask the coordinator group, whose
  recovery finds every PREPARE logged (or resolved) and records the same commit (txn.
  coordinator rule D3).
  A `no` vote (or a participant that cannot be reached) records `Decide(abort)` and waits
  for its answer: the recorded decision is the outcome (a commit, if recovery found every
  vote yes first), and without an answer it is `CommitUnknown`. An aborted transaction that
  read for update resolves the groups holding its update locks, so the transactions queued
  behind them go on at once.

Rules
-----
1. The transaction id is fixed before the first commit request and every commit request is
   idempotent under it (Prepare, CommitOnePhase, Decide, Resolve), so a lost answer is
   answered by re-sending the SAME request. Only when no answer comes before the deadline
   does the commit raise `CommitUnknown` — never a guess (jetcd 0.8.2, in the project's
   shared PITFALLS.md, kept outside this repository). A
   Prepare or one-phase commit is re-sent for at most `txn.commit.RESEND_WINDOW_S` (60 s,
   half the minimum decision retention) whatever the deadline: later, a group may refuse it
   by its timestamp (participant rules P7, O5) after its first copy committed, and that
   refusal would read as a Conflict.
2. A transaction commits exactly when every participant has logged its PREPARE, whoever
   learns it (this client from the votes, or recovery). So a failed prepare is reported
   "not committed" only once the coordinator group has recorded the abort; a client that
   cannot record it raises `CommitUnknown`, never a guess.
3. `run` / `@transactional` retry the WHOLE function with a fresh transaction (new id, fresh
   reads) on retryable errors, with capped exponential backoff and full jitter, bounded by
   `max_attempts` and `retry_timeout_s` (TiDB 2.1.7 in the shared PITFALLS.md: retry the
   function, not the commit). `CommitUnknown` is never retried automatically, nor `DeadlineExceeded`: an
   attempt that waited out a whole `timeout_s` raises it at once (another would wait as long).
4. A read that meets a prepared transaction's write intent waits at the leader for the
   intent's release (up to a second), and if still refused is re-sent after a short
   backoff until the read's deadline (the intent is resolved within about a second even if
   that transaction's client died); nothing is recorded from a refused read, so this is
   safe. A read for update the leader refused is not re-sent: it already queued at the
   leader (shard.lock_wait) and its refusal (wounded, or queued too long) aborts the
   attempt (one that got no answer at all is re-sent, rule 6).
5. The client's hybrid clock absorbs every timestamp it sees (versions, prepare and commit
   timestamps, snapshot timestamps) and proposes `ts = max(seen + 1, wall-clock)` to
   participants; a snapshot never reads below a timestamp the client already saw.
6. A request that may be sent twice (every read, a read for update included; the snapshot
   timestamp; `txn_status`; the commit requests of rule 1) is given up at a node that
   turns out silent (`router.client._SilenceWatch`: nothing heard, not even the answer to
   a probe, for `attempt_timeout_s`) and sent again where the group's leader guess then
   points; a copy unanswered for an attempt timeout at a live node gets one more copy
   beside it, the first error-free answer winning, until the deadline (`txn.resend`,
   which says why a read for update may go twice). So a leader that goes silent (frozen, cut off) costs a
   read one attempt timeout, not its whole deadline, and a slow live one still answers. A
   single-key write is never sent twice: it waits for its answer until its deadline
   (`OutcomeUnknown` once it was written to the node), but a silent node loses the leader
   guess meanwhile, so the requests after it go to another replica (router.client).

Fenced writes
-------------
`tx.put_fenced(key, value, lock=LOCK, token=T)` (and `delete_fenced`, `client.put_fenced`)
writes only while the lock key's latest version is still exactly `T`: the transaction's read
set gets `(LOCK, version=T)`, and every participant validates read versions inside the
replicated PREPARE / one-phase commit, so the STORE refuses the write once the lock was
re-acquired or released, or its record rewritten (each writes a new version of the lock
key). The
refusal raises `FencingTokenRejected` (a `Conflict` that `run` does not retry: the token
can never become current again) and leaves nothing behind. The token of a lock is the
commit timestamp of the transaction that wrote the lock record (`tx.commit_ts`, the
version it wrote to the lock key; also `tx.read_set[LOCK]` after reading the record, when
it is present and names you: for a released lock that is the deletion's version, so a
token read from an absent lock fences nothing anyone holds). Tokens increase: every later
write of the lock key gets a higher version. A renewal that rewrites the record is a new
token; `cas(..., touch=True, ttl_s=...)` renews a lock written with a time to live and
keeps its version, so the token stays. A lock whose time to live ran out is deleted by its
leader, a new version that refuses the old token from then on; until that delete runs
(its leader's expiry check, a fraction of a second after the deadline) the old token is
still accepted, so a holder stops writing once its lease may have run out by its own
clock (README, "Time to live"). (Kleppmann, "How to do distributed locking", 2016;
examples/lock_with_fencing.py.)

Scans are protected against phantoms (rule P6 of `txn.participant`): a scan records the
versions of the keys it returned AND the range it covered (up to its last key when `limit`
cut it), each participant re-checks the range inside its PREPARE (a key added since is a
retryable `Conflict`), and until the decision is resolved other transactions' writes into
the range wait at the shard leader, as for a read intent (bounded; then refused, retryable). So
"scan a prefix, then insert if it is empty" is serializable. The cost: a long scan in a
read-write transaction is re-read by every replica of its groups at commit, and it holds
writers to the range off until the transaction's Resolve; a read-only `snapshot()` takes
no such range.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import inspect
import random
import time
from collections.abc import Awaitable, Callable, Collection, Coroutine, Iterator, Sequence
from typing import Any, Concatenate, ParamSpec, Protocol, TypeVar, overload

from router import kv_pb2 as kv
from router.cache import Backoff
from router.client import (
    CONNECT_TIMEOUT_S,
    SCAN_PAGE,
    CasResult,
    RoutingClient,
    default_attempt_timeout,
    response_error,
)
from router.client_errors import ClientError
from router.errors import UnknownGroup, WrongShard
from router.limits import key_oversized
from router.scan_cursor import ScanCursor
from router.shard_map import META_GROUP_ID, ShardMap
from router.tls import ClientTls
from router.ttl import cas_ttl_ms, check_expiry, found_expiry, ttl_ms_of
from txn.args import _as_flag, _as_key, _as_limit, _as_run_timeout, _as_timeout, _as_u64, _as_value
from txn.commit import Committer
from txn.entry import Entry
from txn.errors import (
    ClientClosed,
    CommitUnknown,
    Conflict,
    DeadlineExceeded,
    InvalidArgument,
    LimitExceeded,
    OutcomeUnknown,
    PaxosKVError,
    TxnRef,
    Unavailable,
    _conflict,
    from_routing_error,
)
from txn.hlc import HybridClock
from txn.resend import Copies, _NoAnswer, send_idempotent
from txn.retry import (
    OnRetry,
    _refuse_generator,
    _RetryPolicy,
    body_with_transaction_at,
    checked_body_error,
    delay_to_run_again,
    returning_transaction,
    transaction_position,
)
from txn.snapshot import AsyncSnapshot
from txn.status import TransactionState, TxnState, TxnStatus
from txn.transaction import AsyncTransaction
from txn.txn_ids import new_txn_id
from txn.watch import DEFAULT_PROGRESS_S, AsyncWatch

__all__ = ["AsyncClient"]

T = TypeVar("T")
T_co = TypeVar("T_co", covariant=True)
P = ParamSpec("P")


class AsyncTransactional(Protocol[P, T_co]):
    """What `AsyncClient.transactional` makes of a function of an `AsyncTransaction`: called
    without one it runs through `run`; with one first, in it (no commit)."""

    @overload
    def __call__(
        self, tx: AsyncTransaction, /, *args: P.args, **kwargs: P.kwargs
    ) -> Coroutine[Any, Any, T_co]: ...

    @overload
    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> Coroutine[Any, Any, T_co]: ...


DEFAULT_TIMEOUT_S = 10.0
DEFAULT_MAX_ATTEMPTS = 20

SETTLE_WINDOW_S = 60.0
"""How old a transaction may be to settle its outcome (txn_status(settle=True)): well below
shard.config.MIN_DECISION_RETENTION_S, so no decision record of it can have been purged."""
_CLOSE_GRACE_S = 1.0  # close() lets background resolves finish this long
_CONFLICT_BACKOFF = Backoff(base_s=0.002, max_s=0.1)  # re-reads past an intent


def _parallel_commit_outcome(
    answers: Sequence[kv.TxnStatusResponse | None],
) -> kv.TxnStatusResponse | None:
    """The COMMITTED answer of a transaction whose participants answered `answers`: one
    already resolved it so, or every one holds its PREPARE (parallel commits: committed at
    the largest prepare_ts); None when that is not known (a participant not prepared, or
    unheard)."""
    stamps = []
    for answer in answers:
        if answer is None:
            return None
        if answer.state == kv.TxnStatusResponse.COMMITTED:
            return answer  # a participant already resolved it with the decision
        if answer.state != kv.TxnStatusResponse.IN_PROGRESS:
            return None
        stamps.append(answer.prepare_ts)
    return kv.TxnStatusResponse(state=kv.TxnStatusResponse.COMMITTED, commit_ts=max(stamps))


def _outcome_unknown(last: Exception) -> OutcomeUnknown:
    """A single-key write one of whose copies may have been applied, and no later copy
    answered for it."""
    # A later copy's refusal says nothing of the lost one: not its "nothing was written"
    # (found by an application trial: a renewal's OutcomeUnknown read as a conflict).
    detail = f"a later copy was refused: {last.summary}" if isinstance(last, Conflict) else last
    return OutcomeUnknown(
        f"no answer before the deadline, and a copy may have been applied ({detail})"
    )


def _value_and_version(got: kv.GetResponse) -> tuple[bytes | None, int]:
    """(value, version) of a get's answer; the value None when the key was absent."""
    return (got.value if got.found else None), got.version


@contextlib.contextmanager
def _translated() -> Iterator[None]:
    """Raise the routing client's errors as this package's (`from_routing_error`): every call
    into the routing client that can raise goes through here, so that `except PaxosKVError`
    catches everything the client raises (README, "errors")."""
    try:
        yield
    except ClientError as exc:
        raise from_routing_error(exc) from exc


class AsyncClient:
    """An asyncio client of a paxoskv cluster: transactions, snapshots, single-key helpers.

    One `AsyncClient` is safe for many concurrent coroutines of one event loop. It connects
    on first use, trying the seeds again within that call's `timeout_s` while none answers
    (nodes starting or restarting), or at `await client.connect()`, which tries each seed
    once and fails at once (a wrong address); close it with `await client.close()` or use
    `async with AsyncClient(...) as client:`.

    Args:
        seeds: "host:port" addresses of some nodes (a list, or one comma-separated string);
            any node that answers will do.
        cluster_id: the cluster to talk to; learned from the first seed when None.
        timeout_s: the deadline of one operation (a read, a commit), retries included (a
            commit's abort after a failed prepare too).
        max_attempts: `run` / `transactional` run a function at most this many times.
        retry_timeout_s: `run` gives up retrying once this much time has passed (None: only
            `max_attempts` bounds it).
        backoff: pauses between attempts of `run` (default: full jitter, 10 ms doubling up
            to 1 s).
        rng: randomness for jitter (default: a fresh `random.Random()`).
        attempt_timeout_s: how long a node may stay silent (answering nothing, not even a
            probe) while a request waits there before it stops being its group's leader
            guess, a read, a renewal (`cas(touch=True)`) or an idempotent commit request
            there is sent to another replica, and a copy unanswered at a live node gets one
            more beside it (default: a quarter of `timeout_s`, at least 0.5 s;
            `txn.resend`).
        wall_ns: the wall clock, in ns (default `time.time_ns`).
        monotonic: the clock a transaction's age is measured on, in seconds (default
            `time.monotonic`): the age bounds when it may commit (`MAX_TXN_AGE_S`), until
            when its commit's copies are sent (`RESEND_WINDOW_S`), and the reads and commit
            of a transaction given a `timeout_s` (`transaction`, `run_within`; the pauses
            between `run_within`'s attempts are measured on the event loop's clock).
        tls: the CA to trust and the certificate to present (`router.tls.TlsFiles`), or
            None for plaintext; by default the files PAXOSKV_TLS_CA/CERT/KEY name, if set.
        settle_unknown: `run` / `transactional` settle a commit whose answer was lost
            (`txn_status(ref, settle=True)`) instead of raising `CommitUnknown`: committed,
            they return as if the commit had answered (the transaction's `commit_ts` set);
            aborted for good, they run the function again. So a non-idempotent body (a
            transfer) is applied exactly once. `CommitUnknown` is still raised when the
            outcome cannot be settled before the deadline (the settle's own: `timeout_s`
            more, after the commit's).
        on_retry: called with a `RetryEvent` (the attempt, its retryable error, the pause
            before the next one) each time `run` / `run_within` / `transactional` is about
            to run a function again, in the client's event loop, before the pause: to log
            or count why transactions retry. An exception it raises ends that call. A plain
            function, not a coroutine function: it runs before the pause, not awaited.

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
        self.settle_unknown = settle_unknown
        # Checked here, so that a setting of the wrong type (timeout_s="5") is an
        # InvalidArgument naming it, not a TypeError from deep inside (found by review).
        if isinstance(max_attempts, bool) or not isinstance(max_attempts, int):
            raise InvalidArgument(f"max_attempts is an int, got {type(max_attempts).__name__}")
        if max_attempts < 1:
            raise InvalidArgument(f"max_attempts must be >= 1, got {max_attempts}")
        if _as_timeout(timeout_s) is None:
            raise InvalidArgument("timeout_s is a number of seconds, got None")
        _as_timeout(retry_timeout_s, "retry_timeout_s")
        _as_timeout(attempt_timeout_s, "attempt_timeout_s")
        if cluster_id is not None and (not isinstance(cluster_id, str) or not cluster_id):
            # Found by a client-API review: "" was taken, and meant no check at all.
            raise InvalidArgument(
                f"cluster_id is the cluster's id (a non-empty str) or None, got {cluster_id!r}"
            )
        self._rng = rng or random.Random()
        with _translated():
            self._routing = RoutingClient(
                seeds,
                cluster_id=cluster_id,
                timeout_s=timeout_s,
                attempt_timeout_s=attempt_timeout_s,
                rng=self._rng,
                tls=tls,
            )
        self._timeout_s = timeout_s
        self._attempt_timeout_s = attempt_timeout_s or default_attempt_timeout(timeout_s)
        if on_retry is not None and (
            not callable(on_retry) or inspect.iscoroutinefunction(inspect.unwrap(on_retry))
        ):
            # A coroutine function would be called and its coroutine dropped, unawaited.
            raise InvalidArgument(f"on_retry is a plain function or None, got {on_retry!r}")
        self._policy = _RetryPolicy(
            max_attempts,
            retry_timeout_s,
            backoff or Backoff(base_s=0.01, max_s=1.0),
            self._rng,
            on_retry=on_retry,
        )
        self._wall_ns = wall_ns
        self._monotonic = monotonic
        self._clock = HybridClock()
        self._tasks: set[asyncio.Task[None]] = set()
        self._closed = False
        self._draining = False  # closed, but the background tasks may still send
        self._closing: asyncio.Future[None] | None = None  # the one close, once begun
        self._loop: asyncio.AbstractEventLoop | None = None  # the loop of its first use
        self._committer = Committer(self)

    # ------------------------------------------------------------------ lifecycle

    @property
    def routing(self) -> RoutingClient:
        """The underlying routing client (shard map, raw requests); for advanced use."""
        return self._routing

    @property
    def cluster_id(self) -> str | None:
        """The cluster's id (None until connected, unless given)."""
        return self._routing.cluster_id

    def group_of(self, key: bytes) -> int:
        """The id of the shard group that holds `key` by the shard map the client holds
        (fetched by `connect`, refreshed when the cluster says it changed; the groups
        `paxoskv status` lists): for placement and printouts, as requests find their groups
        themselves.

        Raises:
            InvalidArgument: no shard map yet (call `connect()` first: a usage mistake, so
                not the retryable Unavailable), or `key` is not a valid key.
            LimitExceeded: `key` is over its size limit.
        """
        key = _as_key(key)
        oversized = key_oversized(key)
        if oversized is not None:
            raise LimitExceeded(str(oversized))
        return int(self._connected_map().locate(key).group_id)

    def _connected_map(self) -> ShardMap:
        shard_map = self._routing.shard_map
        if shard_map is None:
            # Found by a README trial: as Unavailable (retryable), a retry loop spun on it.
            raise InvalidArgument("no shard map yet: call connect() first")
        return shard_map

    @property
    def last_seen_ts(self) -> int:
        """The newest timestamp this client has seen or proposed (its hybrid clock)."""
        return self._clock.last

    async def connect(self) -> AsyncClient:
        """Fetch the shard map from the first seed that answers (done on first use too).

        Raises:
            WrongCluster: a seed belongs to another cluster.
            Unavailable: no seed answered.
        """
        await self._ready()
        return self

    async def close(self) -> None:
        """Let background resolves finish briefly, then close every connection. A second
        call waits for the first; a caller cancelled meanwhile (a timeout around `close`)
        leaves the closing to finish on its own."""
        if self._closing is None:
            # New work is refused from here, but the background Decides and Resolves
            # already spawned may still send (they record decisions recovery would
            # otherwise wait for).
            self._closed = True
            self._draining = True
            self._closing = asyncio.ensure_future(self._drain_and_close())
        # Shielded (found by a cancellation trial: a close cancelled during the drain left
        # the connections open for good, and a later close returned at once).
        await asyncio.shield(self._closing)

    async def _drain_and_close(self) -> None:
        try:
            loop = asyncio.get_running_loop()
            end = loop.time() + _CLOSE_GRACE_S
            # Also the Resolves of a commit that ends during the drain (found by review:
            # they were dropped, and its keys stayed locked until recovery, about a second).
            while self._tasks and (left := end - loop.time()) > 0:
                await asyncio.wait(set(self._tasks), timeout=left)
            pending = set(self._tasks)
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.gather(*pending, return_exceptions=True)
        finally:
            self._draining = False
            await self._routing.close()

    async def __aenter__(self) -> AsyncClient:
        """No I/O: the client connects on its first call, as `Client` does, and retries
        within that call's timeout while the nodes start (found by a client-API review:
        `async with` connected at once and failed on the first refusal). `connect()`
        checks the addresses at once."""
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def _ready(self, deadline: float | None = None) -> None:
        """Connect on first use, waiting at most until `deadline` (loop time)."""
        if self._closed and not self._draining:
            raise ClientClosed("the client is closed")
        loop = asyncio.get_running_loop()
        if self._loop is None:
            self._loop = loop
        elif loop is not self._loop:
            # Its streams belong to the first loop: they would wait out the deadline and
            # fail with a misleading "no answer" (found by review).
            raise InvalidArgument(
                "this AsyncClient was first used on another event loop (each asyncio.run "
                "makes a new one): create the client inside the loop that uses it"
            )
        if self._routing.shard_map is not None:
            return
        with _translated():
            await self._routing.ready(deadline)

    # ------------------------------------------------------------------ transactions

    def transaction(self, *, timeout_s: float | None = None) -> AsyncTransaction:
        """A new read-write transaction with a fresh id (no I/O until the first read). It
        must commit within `txn.commit.MAX_TXN_AGE_S` (20 s) of this call, or its commit
        raises the retryable `TransactionTooOld`.

        Args:
            timeout_s: its own deadline, as FoundationDB's transaction timeout: every read
                and the commit end within this many seconds of this call (each also within
                the client's `timeout_s`). Past it, a read or the commit raises
                `DeadlineExceeded` and nothing of the transaction is written; a commit
                still under way when it ends raises `CommitUnknown` (ask `txn_status`).
                None: only the client's per-call `timeout_s`.

        Returns:
            An `AsyncTransaction`; use it as `async with client.transaction() as tx:`.
        """
        timeout_s = _as_timeout(timeout_s)
        if self._closed:
            raise ClientClosed("the client is closed")
        # peek, as in _attempt: the sync Client calls this from its caller's thread. The
        # commit's clock reading observes this start first (shard/node.py rule 13).
        return AsyncTransaction(self, new_txn_id(self._clock.peek(self._wall_ns())), timeout_s)

    def _attempt(
        self, priority: int, timeout_s: float | None, started_mono: float
    ) -> AsyncTransaction:
        """A transaction for one attempt of a retry loop, `priority` 0 on the first; with
        `timeout_s`, it ends that long after `started_mono` (the loop's start), whenever
        the attempt begins.

        Every attempt carries the first attempt's timestamp as its age, so the leaders'
        wait-die (shard.lock_wait) lets a transaction that lost a conflict win once it is
        the oldest: retries cannot starve.
        """
        tx = self.transaction()
        if timeout_s is not None:
            tx._timeout_s = timeout_s
            tx._ends_mono = started_mono + timeout_s
        # peek, not now: the sync Client calls this from its caller's thread, where moving
        # the clock would race the loop thread's observe() (a lost update moves it back).
        # An age needs no uniqueness: ties go by transaction id.
        tx._priority = priority or self._clock.peek(self._wall_ns())
        return tx

    def snapshot(self, read_ts: int | None = None) -> AsyncSnapshot:
        """Read-only, lock-free reads at one timestamp.

        Args:
            read_ts: read at this timestamp (e.g. an earlier `commit_ts`, or
                `txn.ts_at_wall_ns(ns)` for a wall-clock time); default: a fresh
                timestamp from the cluster, at or above everything this client has seen.

        Returns:
            An `AsyncSnapshot`; use it as `async with client.snapshot() as snap:`.
        """
        if read_ts is not None and _as_u64(read_ts, "read_ts") == 0:
            raise InvalidArgument("read_ts must be > 0, got 0")
        return AsyncSnapshot(self, read_ts)

    def watch(
        self,
        start: bytes,
        end: bytes | None = None,
        *,
        after: int | None = None,
        progress_s: float = DEFAULT_PROGRESS_S,
        prev_values: bool = False,
        resume: bool = False,
    ) -> AsyncWatch:
        """Every change of the keys [start, end) committed after the watch is entered
        (`async with`, or `await watch.start()`; else its first read), or after version
        `after`, in commit order: `async for changes in client.watch(a, b):`, each batch a
        list of `Change(version, key, value)` (value None: deleted) holding whole commits.
        `end` None is no end (as `scan`'s), so `watch(key)` is not one key (found by an
        application trial, used to etcd's): one key is `(key, key + b"\\x00")`, a prefix
        `(prefix, txn.prefix_end(prefix))`.

        Args:
            after: deliver the changes above this version (a commit timestamp, a change's
                version, or an earlier watch's `through`), if the shards still hold them
                (their MVCC retention, 10 minutes by default); None: from now.
            progress_s: while nothing changes, the watch still reads a round this often
                (a change itself is pushed: each shard's leader answers the watch's wait
                as soon as it applies one), so `through` moves and a lost wait costs at
                most this much delay.
            prev_values: each change also carries the value its key held just before it,
                `Change.prev_value` (None: it held none) and `prev_version`, as etcd's
                prev_kv: what a deletion removed, or what a put replaced.
            resume: after a shard could not be read in time (Unavailable,
                DeadlineExceeded: a node down or paused, no majority for a while), read
                again from `through` after a pause (0.05 s, growing to 1 s), as etcd's
                clients do, instead of raising; the watch then waits out any outage that
                ends within the MVCC retention (past it: SnapshotTooOld). `watch.resumed`
                counts the times.

        Raises:
            InvalidArgument: a bad `start`, `end`, `after`, `progress_s` or `prev_values`, or
                an empty range, at the call. The watch's reads raise as
                `AsyncWatch.__anext__` says.
        """
        start = _as_key(start, "start key")
        end = None if end is None else _as_key(end, "end key")
        if end is not None and end <= start:
            raise InvalidArgument(
                f"the watched range [{start!r}, {end!r}) is empty: end must come after start"
            )
        if after is not None:
            after = _as_u64(after, "after")
        if (
            isinstance(progress_s, bool)
            or not isinstance(progress_s, int | float)
            or not 0 < progress_s <= 60
        ):
            raise InvalidArgument(
                f"progress_s is a number of seconds in (0, 60], got {progress_s!r}"
            )
        prev_values = _as_flag(prev_values, "prev_values")
        resume = _as_flag(resume, "resume")
        return AsyncWatch(self, start, end, after, float(progress_s), prev_values, resume)

    # Overloads so that mypy infers T from a coroutine function and from a plain one alike
    # (found by review: one `Awaitable[T] | T` rejected the README's usage).
    @overload
    async def run(
        self,
        fn: Callable[Concatenate[AsyncTransaction, P], Awaitable[T]],
        *args: P.args,
        **kwargs: P.kwargs,
    ) -> T: ...

    @overload
    async def run(
        self, fn: Callable[Concatenate[AsyncTransaction, P], T], *args: P.args, **kwargs: P.kwargs
    ) -> T: ...

    async def run(self, fn: Callable[..., Awaitable[T] | T], *args: Any, **kwargs: Any) -> T:
        """Run `fn(tx, *args, **kwargs)` in a transaction and commit; on a retryable error
        run it again from the start with a fresh transaction.

        `fn` may be a coroutine function or a plain function, not a generator. It need not
        commit: its transaction is committed after it returns (if `fn` committed it
        itself, `run` does not commit again). Only its transaction's writes are undone by
        a retry: anything else `fn` does (appending to a list, sending a message) happens
        once per attempt, so keep such effects out of it or make them idempotent, as
        FoundationDB advises for its retry loop. An attempt must
        reach its commit within `txn.commit.MAX_TXN_AGE_S` (20 s), or it is retried
        (`TransactionTooOld`): a body that always takes longer ends in `TooManyRetries`.
        Bound it with `run_within` (or the client's `timeout_s` / `retry_timeout_s`), not
        by cancelling it
        (`asyncio.timeout`): a cancellation in the middle of a commit cannot say whether
        it committed, while a deadline ends in `CommitUnknown` with the `ref` to ask
        `txn_status` (in a review, 154 of 264 runs cancelled mid-commit had committed).

        Returns:
            What `fn` returned (in the attempt that committed).

        Raises:
            TooManyRetries: `max_attempts` or `retry_timeout_s` used up (wraps the last error).
            DeadlineExceeded: a call of the attempt waited out its whole `timeout_s` (the
                cluster down or cut off): not retried, another attempt would wait as long.
            CommitUnknown: the last commit's outcome is unknown (not retried; with
                `settle_unknown`, only when it could not be settled in time; a transaction
                that wrote nothing runs again instead: nothing of it can apply twice).
            Whatever `fn` raises that is not retryable, or that it raises after its
                transaction committed (or may have), unchanged; but an error `fn` raises
                while what it read has changed since (its reads are not one snapshot, so it
                may have seen part of another commit) is retried as a `Conflict` whose
                `__cause__` is that error, unless it read one key and scanned nothing (one
                read is one moment's view).
        """
        return await self._run(fn, *args, **kwargs)

    @overload
    async def run_within(
        self,
        timeout_s: float,
        fn: Callable[Concatenate[AsyncTransaction, P], Awaitable[T]],
        /,
        *args: P.args,
        **kwargs: P.kwargs,
    ) -> T: ...

    @overload
    async def run_within(
        self,
        timeout_s: float,
        fn: Callable[Concatenate[AsyncTransaction, P], T],
        /,
        *args: P.args,
        **kwargs: P.kwargs,
    ) -> T: ...

    async def run_within(
        self, timeout_s: float, fn: Callable[..., Awaitable[T] | T], /, *args: Any, **kwargs: Any
    ) -> T:
        """`run(fn, *args, **kwargs)`, all of it within `timeout_s` seconds from now: every
        attempt's reads and commit, and the pauses between attempts (FoundationDB's
        transaction timeout, which its retries do not reset). Arguments reach `fn` as in
        `run`, `timeout_s` included if given twice: `run_within(2, fn, timeout_s=1)` calls
        `fn(tx, timeout_s=1)`.

        No attempt starts with less than a tenth of `timeout_s` (at least 20 ms) left.

        Returns:
            What `fn` returned (in the attempt that committed).

        Raises:
            DeadlineExceeded: `timeout_s` ran out before a commit was sent (nothing of any
                attempt was committed; the last attempt's error is its `__cause__` when the
                retries ran out of time).
            CommitUnknown: `timeout_s` ran out while a commit was under way (with
                `settle_unknown`, only when it could not be settled in that time).
            InvalidArgument: `timeout_s` is not a positive number of seconds.
            Otherwise as `run`.
        """
        bound = _as_run_timeout(timeout_s)
        return await self._run_within(bound, fn, args, kwargs)

    async def _run(self, fn: Callable[..., Awaitable[T] | T], *args: Any, **kwargs: Any) -> T:
        """`run`, for a function of either kind (the overloads of `run` type its callers)."""
        return await self._run_within(None, fn, args, kwargs)

    async def _run_within(
        self,
        timeout_s: float | None,
        fn: Callable[..., Awaitable[T] | T],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> T:
        """`run`; with `timeout_s`, every commit and the retries end within that many
        seconds from now (the retries' budget is the shorter of it and `retry_timeout_s`)."""
        _refuse_generator(fn)
        loop = asyncio.get_running_loop()
        started = loop.time()
        started_mono = self._monotonic()
        policy = self._policy if timeout_s is None else self._policy.within(timeout_s)
        attempts = 0
        priority = 0
        while True:
            attempts += 1
            tx = self._attempt(priority, timeout_s, started_mono)
            priority = tx._priority
            try:
                try:
                    result = fn(tx, *args, **kwargs)
                    if inspect.isawaitable(result):
                        result = await result
                except Exception as failed:
                    error = await checked_body_error(tx, failed)
                    if error is failed:
                        raise
                    raise error from failed
                if tx.state is TransactionState.OPEN:
                    try:
                        await tx.commit()
                    except CommitUnknown as lost:
                        elapsed_s = loop.time() - started
                        again = delay_to_run_again(policy, tx, lost, attempts, elapsed_s)
                        if again is not None:
                            await asyncio.sleep(again)
                            continue
                        if not self.settle_unknown:
                            raise
                        await self._settle_lost_commit(tx, lost)
                return result
            except Exception as exc:
                if tx.state is TransactionState.OPEN:
                    tx.abort()
                if tx.state is not TransactionState.ABORTED:
                    raise  # committed (or may have): running the body again applies it twice
                delay = policy.next_delay(exc, attempts, loop.time() - started)
                if delay is None:
                    raise
            except BaseException:
                if tx.state is TransactionState.OPEN:
                    tx.abort()
                raise
            await asyncio.sleep(delay)

    async def _settle_lost_commit(self, tx: AsyncTransaction, lost: CommitUnknown) -> None:
        """Settle the lost commit of `run`'s own transaction `tx` (`settle_unknown`).

        Returns when it committed (`tx` then says so, with its commit_ts).

        Raises:
            Conflict: it is aborted for good; retryable, so `run` runs the body again.
            CommitUnknown: `lost`, when the outcome could not be settled.
        """
        try:
            # Within the transaction's own timeout_s, if it has one (a call's, in run_within).
            timeout_s = tx._timeout_for("settle of its lost commit")
        except DeadlineExceeded:
            raise lost from None
        try:
            status = await self._txn_status(
                lost.ref,
                group_id=None,
                key=None,
                timeout_s=timeout_s,
                settle=True,
                participants=tx._participants,
            )
        except PaxosKVError:
            raise lost from None
        if not status.committed:
            tx._state = TransactionState.ABORTED  # settled: aborted for good
            raise Conflict(
                b"",
                phase="commit",
                reason="the commit's answer was lost and it was settled as aborted",
                txn_id=tx.txn_id,
            ) from lost
        assert status.commit_ts is not None
        tx._commit_ts = status.commit_ts
        tx._state = TransactionState.COMMITTED

    @overload
    def transactional(
        self, fn: Callable[Concatenate[AsyncTransaction, P], Awaitable[T]]
    ) -> AsyncTransactional[P, T]: ...

    @overload
    def transactional(
        self, fn: Callable[Concatenate[AsyncTransaction, P], T]
    ) -> AsyncTransactional[P, T]: ...

    def transactional(self, fn: Callable[..., Awaitable[T] | T]) -> AsyncTransactional[..., T]:
        """Decorator: a function that takes a transaction becomes retried.

        The transaction is its parameter named `tx` or `tr`, else its first (so a method,
        `def m(self, tx, ...)`, works too). Called with an `AsyncTransaction` there, the
        function just runs in it (no commit): transactional functions compose into one
        transaction. Called without, it runs through `run` (fresh transaction, commit,
        retries).

        Raises:
            TypeError: `fn` is a generator function.
        """
        _refuse_generator(fn)
        at = transaction_position(fn)

        @functools.wraps(fn)
        async def wrapper(*args: Any, **kwargs: Any) -> T:
            if len(args) > at and isinstance(args[at], AsyncTransaction):
                result = fn(*args, **kwargs)
                if inspect.isawaitable(result):
                    return await result
                return result
            return await self._run(body_with_transaction_at(fn, args[:at]), *args[at:], **kwargs)

        return wrapper

    async def txn_status(
        self,
        ref: TxnRef | str | bytes,
        *,
        group_id: int | None = None,
        key: bytes | None = None,
        timeout_s: float | None = None,
        settle: bool = False,
    ) -> TxnStatus:
        """The outcome of a transaction, from its decision group's records.

        UNKNOWN (no record) and IN_PROGRESS are not final: a commit request still in flight
        may yet be chosen. `settle=True` makes the answer final: without a decision, it
        records ABORT at the decision group (a recovery Decide: a transaction whose every
        PREPARE is logged is recorded COMMITTED instead), and a late copy of the commit is
        then refused. Settle before re-running the work of a `CommitUnknown`. Where the
        named group has no record, the other data groups are asked too (for at most
        CONNECT_TIMEOUT_S, 2 s): a commit found there is the answer, and a PREPARE there
        whose groups leave the named one out makes the ref a wrong one (InvalidArgument),
        not an abort to record; a settle records nothing while one of them cannot be
        asked (Unavailable).

        Args:
            ref: a `TxnRef` (`tx.ref`, `CommitUnknown.ref`) or its text (`str(ref)`, as
                logged; read as `TxnRef.parse` reads it), or a transaction id (bytes)
                together with `group_id` (its decision group) or `key` (a key of that group:
                the first key the transaction wrote, or read if it wrote none).
            group_id, key: where to ask, with a bare transaction id.
            timeout_s: the deadline (default: the client's).
            settle: record an outcome if there is none yet: the answer is then COMMITTED or
                ABORTED, and stays so. Needs `tx.ref` / `CommitUnknown.ref`; an outcome is
                recorded only for a transaction begun at most SETTLE_WINDOW_S (60 s) ago: an
                older one's record may have been purged, and an abort recorded then would
                contradict its real outcome (an outcome already final is answered however
                old the transaction).

        Returns:
            A `TxnStatus`: UNKNOWN, IN_PROGRESS, COMMITTED (with commit_ts) or ABORTED;
            with `settle`, COMMITTED or ABORTED.

        Raises:
            InvalidArgument: not exactly one of a TxnRef, group_id or key; a str that is
                not a ref's text; a group the transaction's PREPARE records leave out; or
                `settle` with a bare id, or of a transaction older than SETTLE_WINDOW_S
                whose outcome is not final.
            Unavailable, DeadlineExceeded: the group could not answer (or, with `settle`,
                record the outcome) in time; asking again is safe.
            ClientClosed: the client was closed meanwhile.
            WrongCluster: a node asked for a newer shard map belongs to another cluster.
        """
        if ref is None:
            # `tx.ref` of a transaction that never started its commit (found by review: it
            # was refused as "a transaction id is bytes, got NoneType").
            raise InvalidArgument(
                "no transaction ref: tx.ref is None until the transaction's commit starts, "
                "and stays None for one that read, scanned and wrote nothing (it commits "
                "nothing)"
            )
        if isinstance(ref, str):
            # The text the README says to log (found by review: it was refused as "a
            # transaction id is bytes", and encoding it as advised failed elsewhere).
            ref = TxnRef.parse(ref)
        return await self._txn_status(
            ref, group_id=group_id, key=key, timeout_s=timeout_s, settle=settle
        )

    async def _txn_status(
        self,
        ref: TxnRef | bytes,
        *,
        group_id: int | None,
        key: bytes | None,
        timeout_s: float | None,
        settle: bool,
        participants: Sequence[int] = (),
    ) -> TxnStatus:
        """`txn_status`; a settle records its abort for `participants` when the decision
        group's answer names none (it has no record: only the caller knows them, and an
        abort recorded for nobody leaves their intents until their own recovery asks)."""
        deadline = self._deadline(timeout_s)  # one for every step: the caller's bound
        # Seconds left to settle in, from now; an outcome already final is answered however
        # old the ref (found by a user's walk-through: a commit was refused as too old).
        settle_left = self._settle_window_left(ref) if settle else 0.0
        settle_by = asyncio.get_running_loop().time() + settle_left
        gid: int | None
        if isinstance(ref, TxnRef):
            if group_id is not None or key is not None:
                raise InvalidArgument("a TxnRef already names the group: drop group_id/key")
            txn_id, gid = ref.txn_id, ref.group_id
        else:
            txn_id = _as_key(ref, "transaction id")
            if (group_id is None) == (key is None):
                raise InvalidArgument("with a bare transaction id give group_id= or key=")
            # Found by review: group_id="1" was told "group 1 is not in the shard map".
            gid = None if group_id is None else _as_u64(group_id, "group_id")
        await self._ready(deadline)
        if key is not None:
            gid = self._map().locate(_as_key(key)).group_id
        assert gid is not None
        # A mistyped group (a REF's ":GROUP", or group_id=) is the caller's error, not a
        # shard map change to ask again about; the meta group decides no transaction. A
        # group the cached map lacks may be newer than it: refreshed once before refusing.
        if gid != META_GROUP_ID and not self._map().has_group(gid):
            # Bounded as a connection: an unreachable cluster must not spend the whole
            # deadline here before the (likely) answer that the group does not exist.
            loop = asyncio.get_running_loop()
            refresh_by = min(deadline, loop.time() + CONNECT_TIMEOUT_S)
            # Translated as every routing call is (found by review: a close() meanwhile
            # raised the routing client's ClientClosed, which no `except PaxosKVError` caught).
            with _translated():
                await self._routing.refresh_map(refresh_by)
        data_groups = [g for g in self._map().group_ids() if g != META_GROUP_ID]
        if gid not in data_groups:
            what = (
                "the meta group, which decides no transaction"
                if gid == META_GROUP_ID
                else "not in the shard map"
            )
            raise InvalidArgument(
                f"group {gid} is {what} (its data groups: {', '.join(map(str, data_groups))})"
            )
        body = await self._group_txn_status(txn_id, gid, self._left_s(deadline))
        if body.state == kv.TxnStatusResponse.UNKNOWN and not participants:
            others = [g for g in data_groups if g != gid]
            # Bounded as a connection: a group that cannot answer soon (down, leaderless)
            # must not hold the caller up for the whole deadline.
            asking_by = min(deadline, asyncio.get_running_loop().time() + CONNECT_TIMEOUT_S)
            body = await self._known_elsewhere(txn_id, gid, others, body, asking_by, settle)
        state = TxnState(body.state)
        if state is TxnState.IN_PROGRESS:
            body = await self._implicit_commit(txn_id, gid, body, self._left_s(deadline))
            state = TxnState(body.state)
        if settle and state in (TxnState.UNKNOWN, TxnState.IN_PROGRESS):
            assert isinstance(ref, TxnRef)  # checked above
            # Again now: the window may have run out while the groups answered.
            settle_left = settle_by - asyncio.get_running_loop().time()
            if settle_left <= 0:
                raise InvalidArgument(
                    f"transaction {ref.txn_id.hex()} began "
                    f"{SETTLE_WINDOW_S - settle_left:.0f} s ago: too old to settle (at most "
                    f"{SETTLE_WINDOW_S:g} s), as its decision record may have been purged and "
                    f"settling would record an abort over it; txn_status reports it "
                    f"{state.name.lower().replace('_', ' ')}"
                )
            groups = list(body.participants or participants)
            return await self._committer.settle(ref, groups, min(deadline, settle_by))
        if state is TxnState.COMMITTED:
            self._clock.observe(body.commit_ts)
            return TxnStatus(state, body.commit_ts)
        return TxnStatus(state)

    def _settle_window_left(self, ref: TxnRef | bytes) -> float:
        """Seconds `ref` may still be settled in (at most 0: too old); InvalidArgument
        when `ref` does not say when its transaction began.

        Settling records an abort where no record is found, so it must be sure that no
        record was ever purged: only refs of transactions that began within
        SETTLE_WINDOW_S, well inside the shortest decision retention a node accepts (this
        assumes the client's clock within a minute of the nodes', far looser than the
        `max_clock_offset_ms` strictness already needs)."""
        if not isinstance(ref, TxnRef) or not ref.started_ns:
            raise InvalidArgument(
                "settle=True needs the TxnRef of the transaction (tx.ref or CommitUnknown.ref), "
                "which says when it began"
            )
        return SETTLE_WINDOW_S - (self._wall_ns() - ref.started_ns) / 1e9

    async def _group_txn_status(
        self, txn_id: bytes, group_id: int, timeout_s: float | None
    ) -> kv.TxnStatusResponse:
        request = kv.Request(txn_status=kv.TxnStatusRequest(txn_id=txn_id))
        return (await self._send_to_group(request, group_id, timeout_s)).txn_status

    async def _send_to_group(
        self, request: kv.Request, group_id: int, timeout_s: float | None
    ) -> kv.Response:
        """A read-only request for one group (re-sent as `_send_read`); a change of the
        shard map meanwhile is Unavailable (retryable: ask again), not the routing layer's
        own error."""
        deadline = self._deadline(timeout_s)
        try:
            return await self._send_read(request, group_id=group_id, deadline=deadline)
        except (WrongShard, UnknownGroup) as exc:
            raise Unavailable(f"the shard map changed; ask again ({exc})") from exc

    async def _known_elsewhere(
        self,
        txn_id: bytes,
        group_id: int,
        others: Sequence[int],
        body: kv.TxnStatusResponse,
        asking_by: float,
        settle: bool,
    ) -> kv.TxnStatusResponse:
        """`body` (group `group_id` has no record of `txn_id`), unless another data group
        tells more by `asking_by` (loop time): a commit (final wherever it is learnt, also
        a parallel commit's, every participant prepared), or a PREPARE whose participants
        leave `group_id` out. Found by a user trial: `txn-status ID:2 --settle`, a mistyped
        group, recorded an abort in a group the transaction never touched and reported
        "aborted" for a committed transaction.

        Raises:
            InvalidArgument: `group_id` is not one of the transaction's groups.
            Unavailable: with `settle`, a group did not answer by `asking_by` (it may be
                the one that decided the transaction; a review found that skipping it
                let the mistyped group record its abort again).
        """
        loop = asyncio.get_running_loop()

        def left_s() -> float:
            return max(asking_by - loop.time(), 0.001)

        answers = await asyncio.gather(
            *(self._group_txn_status(txn_id, g, left_s()) for g in others),
            return_exceptions=True,
        )
        known: dict[int, kv.TxnStatusResponse] = {}
        silent = []
        for group, answer in zip(others, answers, strict=True):
            if isinstance(answer, Unavailable):  # DeadlineExceeded too
                silent.append(group)
            elif isinstance(answer, BaseException):
                raise answer
            else:
                known[group] = answer
        for answer in known.values():
            if answer.state == kv.TxnStatusResponse.COMMITTED:
                return answer
            if answer.participants and group_id not in answer.participants:
                # Every participant was asked above (all but `group_id`): a parallel
                # commit whose PREPAREs are all logged is decided without asking again.
                committed = _parallel_commit_outcome([known.get(g) for g in answer.participants])
                if committed is not None:
                    return committed
                groups = ", ".join(map(str, sorted(answer.participants)))
                raise InvalidArgument(
                    f"group {group_id} has no record of transaction {txn_id.hex()}, which is "
                    f"prepared in groups {groups}: check the group of its ref "
                    f"({txn_id.hex()}:GROUP, the group that decides it)"
                )
        if settle and silent:
            raise Unavailable(
                f"group {group_id} has no record of transaction {txn_id.hex()}, and group"
                f"{'s' if len(silent) > 1 else ''} {', '.join(map(str, silent))} could not "
                f"be asked within {CONNECT_TIMEOUT_S:g} s whether {'they' if len(silent) > 1 else 'it'} "
                f"decided it: nothing was recorded (an abort recorded in a group not the "
                f"transaction's would be wrong); ask again"
            )
        return body

    async def _implicit_commit(
        self, txn_id: bytes, coordinator: int, body: kv.TxnStatusResponse, timeout_s: float | None
    ) -> kv.TxnStatusResponse:
        """An undecided transaction IS committed once every participant holds its PREPARE
        (parallel commits): ask the others, with linearizable reads at their leaders.
        Returns a COMMITTED answer at max(prepare_ts), or `body` when some participant is
        not prepared (the transaction may still commit or abort: in progress)."""
        if coordinator not in body.participants:
            return body  # an answer without the participants: nothing to conclude
        others = [g for g in body.participants if g != coordinator]
        answers = await asyncio.gather(
            *(self._group_txn_status(txn_id, g, timeout_s) for g in others)
        )
        return _parallel_commit_outcome([body, *answers]) or body

    # ------------------------------------------------------------------ single-key helpers

    async def get(self, key: bytes, *, timeout_s: float | None = None) -> bytes | None:
        """The latest value of `key` (linearizable), or None when absent.

        Raises:
            Conflict: a prepared transaction held the key until the deadline.
            Unavailable, DeadlineExceeded: the shard could not answer in time.
        """
        value, _version = await self._get_versioned(_as_key(key), timeout_s)
        return value

    async def get_versioned(
        self, key: bytes, *, timeout_s: float | None = None
    ) -> tuple[bytes | None, int]:
        """The latest value of `key` and its version (linearizable), or (None, 0) when absent.

        The version is what `cas(expected_version=...)` compares (etcd's mod_revision): a
        read-modify-write without a transaction is `value, version = get_versioned(key)`,
        then `cas(key, expected_version=version, new_value=...)`, which fails if anything
        wrote the key between. Version 0 expects the key absent, whatever happened
        between (a put and a delete since go unseen).

        Raises:
            As `get`.
        """
        value, version = await self._get_versioned(_as_key(key), timeout_s)
        return value, version if value is not None else 0

    async def get_entry(self, key: bytes, *, timeout_s: float | None = None) -> Entry | None:
        """The latest value of `key` with its version and its time to live (linearizable), or
        None when absent: etcd's Range with the key's lease and TimeToLive, in one read.

        `entry.expires_at` is when the key's leader deletes the value (0: it lives for
        ever), and `entry.ttl_left_s()` the seconds left until then by this machine's clock.

        Raises:
            As `get`; ServerError: the key's leader predates this read (upgrade the nodes).
        """
        key = _as_key(key)
        got = await self._get_response(key, timeout_s)
        value, version = self._observed(got)
        if value is None:
            return None
        with _translated():
            return Entry(value, version, found_expiry(got, key))

    async def _get_versioned(
        self, key: bytes, timeout_s: float | None = None
    ) -> tuple[bytes | None, int]:
        """`get`, with the version it read (0: never written)."""
        return self._observed(await self._get_response(key, timeout_s))

    async def _get_response(self, key: bytes, timeout_s: float | None) -> kv.GetResponse:
        """A linearizable get's answer from `key`'s leader."""
        response = await self._single(kv.Request(get=kv.GetRequest(key=key)), key, False, timeout_s)
        return response.get

    async def put(
        self,
        key: bytes,
        value: bytes,
        *,
        ttl_s: float | None = None,
        timeout_s: float | None = None,
    ) -> int:
        """Write one key outside any transaction; returns the new version.

        With `ttl_s` the value lives that many seconds after its version (a lease, as
        etcd's): the key's leader then deletes it (a delete any watch sees), unless the key
        was written again meanwhile; write it again to keep it (README, "Time to live").

        Raises:
            Conflict: a prepared transaction held the key until the deadline (not written).
            OutcomeUnknown: the answer was lost; the write may have been applied.
            Unavailable, DeadlineExceeded, LimitExceeded, InvalidArgument: not written.
            ServerError: a `ttl_s` reached a node too old for it (written without one).
        """
        key, value = _as_key(key), _as_value(value)
        with _translated():
            ttl_ms = ttl_ms_of(ttl_s)
        request = kv.Request(put=kv.PutRequest(key=key, value=value, ttl_ms=ttl_ms))
        response = await self._single(request, key, True, timeout_s)
        self._clock.observe(response.put.version)
        with _translated():
            check_expiry(ttl_ms, response.put.expires_at, key)
        return response.put.version

    async def delete(self, key: bytes, *, timeout_s: float | None = None) -> int:
        """Delete one key outside any transaction; returns the delete's version (0: the key
        was absent).

        Raises:
            As `put`.
        """
        key = _as_key(key)
        request = kv.Request(delete=kv.DeleteRequest(key=key))
        response = await self._single(request, key, True, timeout_s)
        self._clock.observe(response.delete.version)
        return response.delete.version

    async def cas(
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
        """Compare-and-set one key: if it matches exactly one condition, apply one action.

        Args:
            key: the key.
            expected_value, expected_version, expect_absent: the condition (exactly one).
            new_value, delete, touch: the action (exactly one). `touch` writes nothing: it
                keeps the value and its version (a fencing token stays the same) and lets
                it live `ttl_s` from now on, never shortening the time it had (a lease's
                renewal; a value without a time to live keeps living for ever).
            ttl_s: how long `new_value` lives (as `put`'s), or a touched value from now on;
                not with `delete`.
            timeout_s: the deadline (default: the client's).

        Returns:
            A `CasResult` (`succeeded`, the new `version`, or the key's current state).

        Raises:
            InvalidArgument: not exactly one condition and one action; a `ttl_s` with
                `delete`, or a `touch` without one or with `expect_absent`.
            Others as `put`.
        """
        key = _as_key(key)
        conditions = (expected_value is not None) + (expected_version is not None) + expect_absent
        if conditions != 1:
            raise InvalidArgument(
                "compare-and-set needs exactly one condition: expected_value, "
                "expected_version or expect_absent"
            )
        if (new_value is not None) + delete + touch != 1:
            raise InvalidArgument(
                "compare-and-set needs exactly one action: new_value, delete or touch"
            )
        if touch and expect_absent:
            raise InvalidArgument("a touch keeps a value: expect its value or version")
        with _translated():
            op = kv.CasRequest(key=key, ttl_ms=cas_ttl_ms(ttl_s, delete, touch))
        if expected_value is not None:
            op.expected_value = _as_value(expected_value)
        elif expected_version is not None:
            op.expected_version = _as_u64(expected_version, "expected_version")
        else:
            op.expect_absent = True
        if new_value is not None:
            op.new_value = _as_value(new_value)
        elif touch:
            op.touch = True
        else:
            op.delete = True
        # A touch applied twice changes nothing but its deadline, from the later copy's
        # time: so it is re-sent where the guess moves off a silent leader (found by an
        # application trial: a renewal waiting the whole timeout at a frozen leader lost
        # a lease the cluster's new leader, elected in 0.3 s, would have renewed).
        response = await self._single(kv.Request(cas=op), key, True, timeout_s, idempotent=touch)
        body = response.cas
        self._clock.observe(max(body.version, body.current_version))
        if body.succeeded and not touch:  # a touch of a value with no ttl leaves none
            with _translated():
                check_expiry(op.ttl_ms, body.expires_at, key)
        return CasResult(
            succeeded=body.succeeded,
            version=body.version,
            current_value=body.current_value if body.found else None,
            current_version=body.current_version,
            expires_at=body.expires_at,
        )

    async def scan(
        self,
        start: bytes,
        end: bytes | None = None,
        limit: int | None = None,
        *,
        reverse: bool = False,
        timeout_s: float | None = None,
    ) -> list[tuple[bytes, bytes]]:
        """The (key, value) with start <= key < end, in key order, outside any transaction:
        every one, or the first `limit` (None: no limit; the range is read page by page).
        With `reverse`, from the last key down: `limit=1` gives the range's last key.

        Each shard's part is linearizable; the whole is not one snapshot across shards (use
        `snapshot().scan` for that).

        Raises:
            InvalidArgument: a bad `start`, `end`, `limit`, `reverse` or `timeout_s`.
            Unavailable, DeadlineExceeded, Conflict: as `get`.
            ServerError: a node too old for reverse scans answered one.
        """
        start = _as_key(start, "start key")
        end = None if end is None else _as_key(end, "end key")
        count = _as_limit(limit)
        reverse = _as_flag(reverse, "reverse")
        timeout_s = _as_timeout(timeout_s)
        if end is not None and end <= start:
            return []
        items, _ = await self._scan_range(start, end, count, reverse=reverse, timeout_s=timeout_s)
        return [(k, v) for k, v, _ in items]

    async def put_fenced(
        self,
        key: bytes,
        value: bytes,
        *,
        lock: bytes,
        token: int,
        ttl_s: float | None = None,
        timeout_s: float | None = None,
    ) -> int:
        """Write one key in its own transaction, only while `lock`'s latest version is
        `token` (see `AsyncTransaction.put_fenced`); other conflicts are retried as `run`
        retries them.

        Args:
            ttl_s: how long the value lives after the commit (as `put`'s).
            timeout_s: the whole call's deadline, retries and commit included, and with
                `settle_unknown` the settle of a lost commit too; no retry starts with
                less than a tenth of it left (default: each commit gets the client's
                `timeout_s`, and `run`'s retry budget bounds the rest; a shorter
                `retry_timeout_s` or `max_attempts` still ends the retries first, in
                TooManyRetries). A frozen leader is left after the client's
                `attempt_timeout_s`, whatever this is: keep this above about one and a
                half of those, or the call cannot get past one.

        Returns:
            The commit timestamp (the new version of `key`).

        Raises:
            FencingTokenRejected: the store refused the token; nothing was written.
            InvalidArgument: a bad key, value, token, `ttl_s` or `timeout_s`.
            DeadlineExceeded: `timeout_s` left no time for a try to commit; nothing was
                written (the last try's refusal is its `__cause__`).
            CommitUnknown: it passed during a commit that may have applied (as any
                commit's deadline: a two-phase commit's refused prepare is "not committed"
                only once its abort is recorded).
            Others as `run`.
        """
        return await self._alone(
            lambda tx: tx.put_fenced(key, value, lock=lock, token=token, ttl_s=ttl_s), timeout_s
        )

    async def delete_fenced(
        self, key: bytes, *, lock: bytes, token: int, timeout_s: float | None = None
    ) -> int:
        """Delete one key in its own transaction, only while `lock`'s latest version is
        `token`; returns the commit timestamp. Raises as `put_fenced`."""
        return await self._alone(
            lambda tx: tx.delete_fenced(key, lock=lock, token=token), timeout_s
        )

    async def add(self, key: bytes, delta: int, *, timeout_s: float | None = None) -> int:
        """Add `delta` to the 8-byte counter at `key` (`AsyncTransaction.add`: an atomic add,
        reading nothing) in a transaction of its own; returns the commit timestamp. Retried
        as `run` retries, within `timeout_s` when given (as `put_fenced`'s); a commit whose
        outcome is unknown is not sent again unless the client settles unknown outcomes
        (`settle_unknown`), so the addition lands at most once.

        Raises:
            InvalidArgument: a bad key, or `delta` not an int in [-2**63, 2**64).
            Others as `run`.
        """
        return await self._alone(lambda tx: tx.add(key, delta), timeout_s)

    async def _alone(
        self, write: Callable[[AsyncTransaction], None], timeout_s: float | None
    ) -> int:
        """Run `write` in a transaction of its own (as `run`, within `timeout_s` when given);
        returns its commit timestamp."""
        body: Callable[[AsyncTransaction], AsyncTransaction] = returning_transaction(write)
        tx = await self._run_within(_as_timeout(timeout_s), body, (), {})
        assert tx.commit_ts is not None
        return tx.commit_ts

    # ------------------------------------------------------------------ request plumbing

    def _map(self) -> ShardMap:
        shard_map = self._routing.shard_map
        if shard_map is None:
            raise Unavailable("no shard map yet: no node answered")
        return shard_map

    def _deadline(self, timeout_s: float | None = None) -> float:
        given = _as_timeout(timeout_s)
        timeout = self._timeout_s if given is None else given
        return asyncio.get_running_loop().time() + timeout

    @staticmethod
    def _left_s(deadline: float) -> float:
        """The time left until `deadline`, as a positive timeout."""
        return max(deadline - asyncio.get_running_loop().time(), 0.001)

    async def _send(
        self,
        request: kv.Request,
        *,
        key: bytes | None = None,
        group_id: int | None = None,
        write: bool,
        timeout_s: float | None = None,
        passthrough: Collection[int] = (),
        idempotent: bool = False,
    ) -> kv.Response:
        """RoutingClient.send with its errors translated (WrongShard/UnknownGroup pass)."""
        deadline = self._deadline(timeout_s)
        await self._ready(deadline)
        with _translated():
            return await self._routing.send(
                request,
                key=key,
                group_id=group_id,
                write=write,
                timeout_s=self._left_s(deadline),
                passthrough=passthrough,
                idempotent=idempotent,
            )

    async def _pause(self, backoff: Backoff, attempt: int, deadline: float) -> bool:
        """Sleep before a re-send; False when the deadline leaves no time for one."""
        loop = asyncio.get_running_loop()
        delay = backoff.delay(attempt, self._rng)
        if loop.time() + delay >= deadline:
            return False
        await asyncio.sleep(delay)
        return True

    async def _send_read(
        self,
        request: kv.Request,
        *,
        key: bytes | None = None,
        group_id: int | None = None,
        deadline: float,
        passthrough: Collection[int] = (),
    ) -> kv.Response:
        """A read-only request, re-sent to another replica when its node turns out silent,
        and doubled at a live node after each attempt timeout without an answer (rule 6,
        `txn.resend`), until `deadline`.

        Raises:
            DeadlineExceeded: no answer before the deadline.
            WrongShard, UnknownGroup: `group_id` routing, and the shard map changed.
            Others as `RoutingClient.send`, translated.
        """
        try:
            return await send_idempotent(
                self,
                request,
                key=key,
                group_id=group_id,
                write=False,
                deadline=deadline,
                passthrough=passthrough,
            )
        except _NoAnswer as exc:
            if isinstance(exc.last, DeadlineExceeded):
                raise exc.last from None
            raise DeadlineExceeded(f"gave up at the deadline; last: {exc.last}") from exc.last

    async def _read(
        self,
        request: kv.Request,
        *,
        key: bytes | None = None,
        group_id: int | None = None,
        deadline: float,
        txn_id: bytes = b"",
        resend_conflicts: bool = True,
    ) -> kv.Response:
        """A read, re-sent while it meets a prepared transaction's intent (rule 4); a read
        for update is not re-sent then (the leader already queued it: its refusal is
        final). A try without an answer is re-sent in both cases (rule 6).

        Raises:
            Conflict: the intent was still there at the deadline (the last refusal).
        """
        attempt = 0
        refused: Conflict | None = None
        while True:
            try:
                response = await self._send_read(
                    request,
                    key=key,
                    group_id=group_id,
                    deadline=deadline,
                    passthrough=(kv.CONFLICT,),
                )
            except Unavailable:
                if refused is not None:
                    raise refused from None
                raise
            error = response_error(response, request.WhichOneof("op"))
            if error is None:
                return response
            refused = _conflict(error, "read", txn_id)
            if not resend_conflicts or not await self._pause(_CONFLICT_BACKOFF, attempt, deadline):
                raise refused
            attempt += 1

    async def _single(
        self,
        request: kv.Request,
        key: bytes,
        write: bool,
        timeout_s: float | None,
        *,
        idempotent: bool = False,
    ) -> kv.Response:
        """A single-key operation; a CONFLICT (nothing applied) is re-sent until the deadline.
        An `idempotent` write (a touch) is also re-sent as a read is (`txn.resend`)."""
        if not write:
            return await self._read(request, key=key, deadline=self._deadline(timeout_s))
        loop = asyncio.get_running_loop()
        deadline = self._deadline(timeout_s)
        margin = min(0.5, (self._timeout_s if timeout_s is None else timeout_s) / 4)
        attempt = 0
        refused: Conflict | None = None
        copies = Copies()
        while True:
            try:
                if idempotent:
                    response = await self._send_again_until(request, key, deadline, copies)
                else:
                    response = await self._send(
                        request,
                        key=key,
                        write=True,
                        timeout_s=max(deadline - loop.time(), 0.001),
                        passthrough=(kv.CONFLICT,),
                    )
            except Unavailable as exc:
                if copies.maybe_applied:
                    raise _outcome_unknown(exc) from exc
                if refused is not None:
                    raise refused from None  # the earlier refusals say more; nothing applied
                raise
            error = response_error(response, request.WhichOneof("op"))
            if error is None:
                return response
            refused = _conflict(error, "write", b"")
            # Re-send only with time left for an answer: a re-sent write still in flight at
            # the deadline could only be reported as OutcomeUnknown.
            if not await self._pause(_CONFLICT_BACKOFF, attempt, deadline - margin):
                if copies.maybe_applied:
                    raise _outcome_unknown(refused) from refused
                raise refused
            attempt += 1

    async def _send_again_until(
        self, request: kv.Request, key: bytes, deadline: float, copies: Copies
    ) -> kv.Response:
        """An idempotent single-key write, re-sent while its answer is lost or its node
        silent, until `deadline` (`txn.resend.send_idempotent`); `copies` records whether
        one may have been applied, over the caller's calls.

        Raises:
            OutcomeUnknown: no answer, and a copy may have been applied.
            Others as `_send`, when no copy was applied.
        """
        try:
            return await send_idempotent(
                self,
                request,
                key=key,
                write=True,
                deadline=deadline,
                passthrough=(kv.CONFLICT,),
                copies=copies,
            )
        except _NoAnswer as exc:
            if exc.ambiguous:
                raise _outcome_unknown(exc.last) from exc.last
            raise exc.last from None

    async def _read_latest(
        self, key: bytes, txn_id: bytes, lock_priority: int = 0, *, timeout_s: float | None = None
    ) -> tuple[bytes | None, int]:
        """(value or None, version) of `key` for a read-write transaction; with a
        `lock_priority`, a read for update (the leader gives `txn_id` the key's lock)."""
        get = kv.GetRequest(key=key)
        if lock_priority:
            get.lock_txn_id = txn_id
            get.lock_priority = lock_priority
        request = kv.Request(get=get)
        response = await self._read(
            request,
            key=key,
            deadline=self._deadline(timeout_s),
            txn_id=txn_id,
            resend_conflicts=not lock_priority,
        )
        return self._observed(response.get)

    def _observed(self, got: kv.GetResponse) -> tuple[bytes | None, int]:
        """(value or None, version) of a latest read's answer, its version observed by the
        clock (a later snapshot or commit is not below what this client saw)."""
        self._clock.observe(got.version)
        return _value_and_version(got)

    async def _read_at(self, key: bytes, ts: int) -> tuple[bytes | None, int]:
        """(value or None, version) of `key` at timestamp `ts` (a snapshot's read)."""
        request = kv.Request(get=kv.GetRequest(key=key, snapshot=True, at_version=ts))
        response = await self._read(request, key=key, deadline=self._deadline())
        return _value_and_version(response.get)

    async def _timestamp(self) -> int:
        """A snapshot timestamp: a node's hybrid clock, never below what this client saw."""
        deadline = self._deadline()
        await self._ready(deadline)
        group_id = self._map().locate(b"").group_id
        request = kv.Request(timestamp=kv.TimestampRequest())
        response = await self._send_to_group(request, group_id, self._left_s(deadline))
        ts = max(response.timestamp.ts, self._clock.last)
        self._clock.observe(ts)
        return ts

    async def _scan_range(
        self,
        start: bytes,
        end: bytes | None,
        limit: int,
        *,
        reverse: bool = False,
        at_ts: int = 0,
        txn_id: bytes = b"",
        timeout_s: float | None = None,
        max_bytes: int | None = None,
    ) -> tuple[list[tuple[bytes, bytes, int]], bytes | None]:
        """Up to `limit` (key, value, version) of [start, end), shard by shard, in key order
        (`reverse`: from the end down); with `max_bytes`, no more server replies once that
        many key and value bytes are in.

        Returns:
            The items, and where a further read of the range begins (its start, or in
            reverse its end): None when it is exhausted (no key follows them). When the
            byte budget cut them just as a shard had answered its last key, the next
            shard's bound, so a reader going on does not ask that shard again for nothing
            (a cut by `limit` cannot tell: a full answer does not say whether the shard
            holds more).
        """
        deadline = self._deadline(timeout_s)
        await self._ready(deadline)
        out: list[tuple[bytes, bytes, int]] = []
        size = 0
        cursor = ScanCursor(start, end, reverse)
        while len(out) < limit:
            if max_bytes is not None and size >= max_bytes:
                break
            part = cursor.next_part(self._routing.routing.plan_scan)
            if part is None:
                break
            descriptor, sub_start, sub_end = part
            want = min(limit - len(out), SCAN_PAGE)
            op = kv.ScanRequest(start=sub_start, limit=want, reverse=reverse)
            if at_ts:
                op.snapshot = True
                op.at_version = at_ts
            if sub_end is not None:
                op.end = sub_end
            try:
                response = await self._read(
                    kv.Request(scan=op),
                    group_id=descriptor.group_id,
                    deadline=deadline,
                    txn_id=txn_id,
                )
            except (WrongShard, UnknownGroup):
                continue  # the map changed under us: re-plan from the cursor
            with _translated():
                cursor.advance(part, response.scan, want)
            for item in response.scan.items:
                self._clock.observe(item.version)
                out.append((item.key, item.value, item.version))
                size += len(item.key) + len(item.value)
        return out, cursor.resume

    def _release_dropped(self, txn_id: bytes, groups: set[int]) -> None:
        """Free the update locks of a transaction the garbage collector found open; from
        a finalizer, so from any thread."""
        loop = self._loop
        if loop is None or loop.is_closed() or self._closed:
            return
        with contextlib.suppress(RuntimeError):  # the loop closed since
            loop.call_soon_threadsafe(self._committer.resolve_all, txn_id, groups, False, 0)

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        if self._closed and not self._draining:
            coro.close()
            return
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
