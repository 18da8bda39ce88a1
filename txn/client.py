"""The paxoskv client: transactions with FoundationDB's ergonomics, asyncio and synchronous.

Quick start
-----------
::

    from txn import Client

    with Client("127.0.0.1:7001,127.0.0.1:7002") as client:

        @client.transactional
        def transfer(tx, src: bytes, dst: bytes, amount: int) -> None:
            a = int(tx.get(src) or b"0")
            b = int(tx.get(dst) or b"0")
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

Theory of operation
-------------------
A read-write transaction reads through the shard leaders (linearizable `Get`/`Scan`) and
remembers every key it read with the version it saw, also for absent keys (the version of the
key's newest tombstone, 0 when never written). Writes are buffered in the client; reads see
them (read-your-writes, scans included). Nothing is locked while the transaction runs
(optimistic concurrency, docs/ARCHITECTURE.md "Transactions").

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
   does the commit raise `CommitUnknown` — never a guess (PITFALLS.md, jetcd 0.8.2).
2. A transaction commits exactly when every participant has logged its PREPARE, whoever
   learns it (this client from the votes, or recovery). So a failed prepare is reported
   "not committed" only once the coordinator group has recorded the abort; a client that
   cannot record it raises `CommitUnknown`, never a guess.
3. `run` / `@transactional` retry the WHOLE function with a fresh transaction (new id, fresh
   reads) on retryable errors, with capped exponential backoff and full jitter, bounded by
   `max_attempts` and `retry_timeout_s` (PITFALLS.md, TiDB 2.1.7: retry the function, not the
   commit). `CommitUnknown` is never retried automatically.
4. A read that meets a prepared transaction's write intent waits at the leader for the
   intent's release (up to a second), and if still refused is re-sent after a short
   backoff until the read's deadline (the intent is resolved within about a second even if
   that transaction's client died); nothing is recorded from a refused read, so this is
   safe. A read for update is not re-sent: it already queued at the leader (shard.lock_wait)
   and its refusal (wounded, or queued too long) aborts the attempt.
5. The client's hybrid clock absorbs every timestamp it sees (versions, prepare and commit
   timestamps, snapshot timestamps) and proposes `ts = max(seen + 1, wall-clock)` to
   participants; a snapshot never reads below a timestamp the client already saw.

Fenced writes
-------------
`tx.put_fenced(key, value, lock=LOCK, token=T)` (and `delete_fenced`, `client.put_fenced`)
writes only while the lock key's latest version is still exactly `T`: the transaction's read
set gets `(LOCK, version=T)`, and every participant validates read versions inside the
replicated PREPARE / one-phase commit, so the STORE refuses the write once the lock was
re-acquired, renewed or released (each of those writes a new version of the lock key). The
refusal raises `FencingTokenRejected` (a `Conflict` that `run` does not retry: the token
can never become current again) and leaves nothing behind. The token of a lock is the
commit timestamp of the transaction that wrote the lock record (`tx.commit_ts`, the
version it wrote to the lock key; also `tx.read_set[LOCK]` after reading it). Tokens
increase: every later write of the lock key gets a higher version. Renewing writes a new
version, so a renewal is a new token. An expiry stored in the lock record is advisory data
for acquirers to check; the store knows nothing of it. (Kleppmann, "How to do distributed
locking", 2016; examples/lock_with_fencing.py.)

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
import concurrent.futures
import contextlib
import enum
import functools
import inspect
import random
import secrets
import threading
import time
from collections.abc import Awaitable, Callable, Collection, Coroutine, Iterable, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, TypeVar

from router import kv_pb2 as kv
from router.cache import Backoff
from router.client import SCAN_PAGE, CasResult, RoutingClient, response_error
from router.client_errors import ClientError
from router.errors import UnknownGroup, WrongShard
from router.shard_map import ShardMap
from router.tls import ClientTls
from txn.errors import (
    ClientClosed,
    CommitUnknown,
    Conflict,
    DeadlineExceeded,
    FencingTokenRejected,
    InvalidArgument,
    LimitExceeded,
    OutcomeUnknown,
    PaxosKVError,
    ServerError,
    TooManyRetries,
    TransactionClosed,
    TxnRef,
    Unavailable,
    from_routing_error,
)
from txn.hlc import LOGICAL_BITS, HybridClock, physical_us
from txn.records import MAX_TXN_ITEMS

__all__ = [
    "AsyncClient",
    "AsyncSnapshot",
    "AsyncTransaction",
    "CasResult",
    "Client",
    "FencingTokenRejected",
    "Snapshot",
    "Transaction",
    "TransactionState",
    "TxnState",
    "TxnStatus",
    "transactional",
]

T = TypeVar("T")

DEFAULT_TIMEOUT_S = 10.0
DEFAULT_MAX_ATTEMPTS = 20
DEFAULT_SCAN_LIMIT = 1000
TXN_ID_BYTES = 16

SETTLE_WINDOW_S = 60.0
"""How old a transaction may be to settle its outcome (txn_status(settle=True)): well below
shard.config.MIN_DECISION_RETENTION_S, so no decision record of it can have been purged."""
_DECIDE_TIMEOUT_S = 2.0  # budget of a Decide or Resolve sent after the prepares
_CLOSE_GRACE_S = 1.0  # close() lets background resolves finish this long
_CONFLICT_BACKOFF = Backoff(base_s=0.002, max_s=0.1)  # re-reads past an intent
_RESEND_BACKOFF = Backoff(base_s=0.005, max_s=0.2)  # re-sends of an idempotent commit request
_LOOP_CHECK_S = 0.5  # how often a sync call checks that its loop thread still runs
_FENCE_CHECK_TIMEOUT_S = 2.0  # the read that tells a stale fencing token from other conflicts


# ---------------------------------------------------------------------------- public types


class TransactionState(enum.Enum):
    """Where a transaction is in its life."""

    OPEN = "open"
    """Reading and buffering writes."""
    COMMITTING = "committing"
    """`commit()` is running."""
    COMMITTED = "committed"
    """Committed at `commit_ts`."""
    ABORTED = "aborted"
    """Aborted by the caller, by an exception, or by a failed commit: nothing was written."""
    UNKNOWN = "unknown"
    """The commit raised `CommitUnknown`, or was cancelled or interrupted part-way: it may
    have committed; ask `client.txn_status(tx.ref)`."""


class TxnState(enum.IntEnum):
    """A transaction's outcome as its decision group records it (`client.txn_status`)."""

    UNKNOWN = kv.TxnStatusResponse.UNKNOWN
    """No record: never prepared at the coordinator, or older than the retention window."""
    IN_PROGRESS = kv.TxnStatusResponse.IN_PROGRESS
    """Prepared at the coordinator group, and not every participant is prepared yet: it may
    still commit or abort. (A transaction whose every participant is prepared is reported
    COMMITTED even before its decision record is written: parallel commits.) If its client
    died, recovery decides it within about `txn.resolve_after_ms`."""
    COMMITTED = kv.TxnStatusResponse.COMMITTED
    ABORTED = kv.TxnStatusResponse.ABORTED


@dataclass(frozen=True, slots=True)
class TxnStatus:
    """The answer of `client.txn_status`: the state and, when committed, the commit ts."""

    state: TxnState
    commit_ts: int | None = None

    @property
    def committed(self) -> bool:
        return self.state is TxnState.COMMITTED


# ---------------------------------------------------------------------------- helpers


def _as_key(key: object, what: str = "key") -> bytes:
    if isinstance(key, bytes):
        data = key
    elif isinstance(key, bytearray | memoryview):
        data = bytes(key)
    else:
        hint = " (encode str keys, e.g. 'user/1'.encode())" if isinstance(key, str) else ""
        raise InvalidArgument(f"a {what} is bytes, got {type(key).__name__}{hint}")
    if what == "key" and not data:
        raise InvalidArgument("empty key: keys must be at least 1 byte")
    return data


def _as_value(value: object) -> bytes:
    return _as_key(value, "value")


def _conflict(error: kv.Error, phase: str, txn_id: bytes) -> Conflict:
    if error.HasField("conflict"):
        c = error.conflict
        return Conflict(
            c.key, c.other_txn, c.phase or phase, c.reason or error.message, txn_id=txn_id
        )
    return Conflict(b"", b"", phase, error.message, txn_id=txn_id)


def _refuse_generator(fn: Callable[..., Any]) -> None:
    """The body may run many times: a generator would run at most once, silently."""
    target = inspect.unwrap(fn)
    if inspect.isgeneratorfunction(target) or inspect.isasyncgenfunction(target):
        raise TypeError(
            f"{getattr(fn, '__qualname__', fn)!r} is a generator function; a transactional "
            "function may run several times, so it must return its result instead of yielding"
        )


class _NoAnswer(Exception):
    """An idempotent request got no answer before its deadline; `ambiguous`: some attempt
    may have been applied."""

    def __init__(self, ambiguous: bool, last: PaxosKVError) -> None:
        super().__init__(str(last))
        self.ambiguous = ambiguous
        self.last = last


class _RetryPolicy:
    """FoundationDB's `Transaction.on_error`: decide whether and when to run again."""

    def __init__(
        self, max_attempts: int, timeout_s: float | None, backoff: Backoff, rng: random.Random
    ) -> None:
        self.max_attempts = max_attempts
        self.timeout_s = timeout_s
        self.backoff = backoff
        self.rng = rng

    def next_delay(self, exc: BaseException, attempts: int, elapsed_s: float) -> float | None:
        """The pause before attempt `attempts + 1`, or None: re-raise `exc` as it is.

        Raises:
            TooManyRetries: `exc` is retryable but the budget is used up.
        """
        leaf = _retryable_leaf(exc)
        if leaf is None:
            return None
        exc = leaf
        if attempts >= self.max_attempts:
            raise TooManyRetries(exc, attempts) from exc
        delay = self.backoff.delay(attempts - 1, self.rng)
        if self.timeout_s is not None and elapsed_s + delay >= self.timeout_s:
            raise TooManyRetries(exc, attempts) from exc
        return delay


# ---------------------------------------------------------------------------- async client


class AsyncTransaction:
    """A read-write transaction of an `AsyncClient`; create it with `client.transaction()`.

    Use as `async with client.transaction() as tx:` (commits on normal exit, aborts when
    the block raises) or call `commit()` / `abort()` yourself. Not safe to share between
    threads; concurrent coroutines of one event loop may read through it at once.

    Attributes:
        txn_id: the transaction's id (16 random bytes), fixed at creation.
    """

    def __init__(self, client: AsyncClient, txn_id: bytes) -> None:
        self._client = client
        self.txn_id = txn_id
        self._started_ns = client._wall_ns()
        self._writes: dict[bytes, bytes | None] = {}  # insertion order: first write first
        self._reads: dict[bytes, int] = {}  # key -> version read, in read order
        self._values: dict[bytes, bytes | None] = {}  # what each read returned
        self._fences: dict[bytes, int] = {}  # lock key -> fencing token (also in _reads)
        # Ranges [start, end) scanned (end None: no end); every key seen in them is in _reads.
        self._scanned: list[tuple[bytes, bytes | None]] = []
        self._state = TransactionState.OPEN
        self._commit_ts: int | None = None
        self._ref: TxnRef | None = None
        # Wait-die age at the participants (0: this attempt's timestamp); see `_attempt`.
        self._priority = 0
        self._locked: set[bytes] = set()  # keys read for update
        self._lock_groups: set[int] = set()  # groups whose leaders hold those locks

    # -- state

    @property
    def state(self) -> TransactionState:
        """Where the transaction is in its life."""
        return self._state

    @property
    def commit_ts(self) -> int | None:
        """The commit timestamp once committed (0 for an empty transaction), else None."""
        return self._commit_ts

    @property
    def ref(self) -> TxnRef | None:
        """The id and decision group for `client.txn_status`, once `commit()` started
        (None before, and for an empty transaction)."""
        return self._ref

    @property
    def read_set(self) -> dict[bytes, int]:
        """A copy of the keys read so far with the version each had (0: never written)."""
        return dict(self._reads)

    @property
    def write_set(self) -> dict[bytes, bytes | None]:
        """A copy of the buffered writes (None: delete), in first-write order."""
        return dict(self._writes)

    def _check_open(self) -> None:
        if self._state is not TransactionState.OPEN:
            raise TransactionClosed(
                f"transaction {self.txn_id.hex()} is {self._state.value}; start a new one"
            )

    # -- reads

    async def get(self, key: bytes, *, for_update: bool = False) -> bytes | None:
        """The value of `key` as this transaction sees it: its own buffered write, else the
        latest committed value (recorded in the read set).

        Args:
            key: the key (non-empty bytes).
            for_update: take the key's update lock at its shard leader first (as SQL's
                SELECT FOR UPDATE), for a key this transaction will write and others
                write too: conflicting transactions then queue at this read instead of
                all reading the same version and all but one aborting at commit. The
                lock is a scheduling hint (wound-wait by age: an older transaction takes
                it from a younger one, which then aborts and retries); correctness never
                depends on it. Released when the commit or abort reaches the leader.

        Returns:
            The value, or None when the key does not exist.

        Raises:
            Conflict: the key is held by a prepared transaction past the read's deadline,
                it changed since this transaction first read it, or (for update) an older
                transaction holds or took its lock.
            Unavailable, DeadlineExceeded: the key's shard could not be read in time.
            TransactionClosed: the transaction is committed or aborted, or a commit of it
                began while this read was in flight (it did not validate the read).
        """
        key = _as_key(key)
        self._check_open()
        if key in self._writes:
            return self._writes[key]
        if key in self._values and (not for_update or key in self._locked):
            return self._values[key]
        if for_update:
            await self._client._ready(self._client._deadline())
            self._check_open()  # closed while connecting: its abort knew no lock group here
            self._priority = self._priority or self._client._clock.now(self._client._wall_ns())
            self._lock_groups.add(self._client._map().locate(key).group_id)
        value, version = await self._client._read_latest(
            key, self.txn_id, self._priority if for_update else 0
        )
        self._check_open()  # commit() began meanwhile: it did not validate this read
        if for_update:
            self._locked.add(key)  # only now: a failed read took no lock
        self._record_read(key, version, value)
        return value

    async def scan(
        self,
        start: bytes,
        end: bytes | None = None,
        limit: int = DEFAULT_SCAN_LIMIT,
        *,
        for_update: bool = False,
    ) -> list[tuple[bytes, bytes]]:
        """Up to `limit` (key, value) with start <= key < end, in key order, as this
        transaction sees them (its buffered writes and deletes applied).

        Every key returned from the store is recorded in the read set with its version, and
        the range itself (up to the last key returned when `limit` cut the scan) is recorded
        too: a key that another transaction adds to the range before this one commits is a
        phantom, and the commit raises `Conflict` (retryable), so "scan a prefix, then insert
        if nothing is there" is serializable. Until this transaction's commit is resolved,
        writes of others into the range wait at the shard leader (bounded; then they meet a
        retryable conflict).

        Args:
            start: the first key of the range (inclusive).
            end: the end of the range (exclusive); None: to the end of the key space.
            limit: at most this many items.
            for_update: take the update lock of every key the scan returns from the store,
                as `get(key, for_update=True)` does, and read each again under its lock
                (the values returned are those; a key deleted meanwhile is left out), so
                transactions that update the same rows queue instead of aborting. Keys
                added to the range later are not locked: the commit still refuses them as
                phantoms. At most MAX_TXN_ITEMS (4,096) items.

        Raises:
            Conflict, Unavailable, DeadlineExceeded, TransactionClosed: as `get`.
            LimitExceeded: `for_update` with a `limit` over MAX_TXN_ITEMS.
        """
        start = _as_key(start, "start key")
        end = None if end is None else _as_key(end, "end key")
        self._check_open()
        if for_update and limit > MAX_TXN_ITEMS:
            raise LimitExceeded(
                f"a scan for update locks every key it returns: its limit {limit} is over "
                f"MAX_TXN_ITEMS ({MAX_TXN_ITEMS}), the most one transaction may read per group"
            )
        if limit <= 0 or (end is not None and end <= start):
            return []
        buffered = sorted(
            (k, v) for k, v in self._writes.items() if k >= start and (end is None or k < end)
        )
        deletes = sum(1 for _, v in buffered if v is None)
        items, exhausted = await self._client._scan_range(
            start, end, limit + deletes, txn_id=self.txn_id
        )
        self._check_open()  # commit() began meanwhile: it did not validate this scan
        merged = {k: v for k, v, _ in items}
        last = items[-1][0] if items else None
        for k, v in buffered:
            if not exhausted and last is not None and k > last:
                break  # beyond what the store returned: keys in between are unknown
            if v is None:
                merged.pop(k, None)
            else:
                merged[k] = v
        ordered = sorted(merged.items())
        result = ordered[:limit]
        horizon = result[-1][0] if result else last
        # The whole range was seen when the store had no more and the limit cut nothing.
        whole = exhausted and len(ordered) <= limit
        # Read again under their locks (below): what the scan saw of them is not the read.
        relock = {k for k, _ in result if k not in self._writes} if for_update else set()
        for k, v, version in items:
            if not whole and horizon is not None and k > horizon:
                break
            # Every key the store returned, also one this transaction overwrites or deletes
            # (even past the last key shown): the range's content is what the commit
            # validates (rule P6).
            if k not in relock:
                self._record_read(k, version, v)
        if relock:
            locked = await self._read_for_update(sorted(relock))
            result = [
                (k, value)
                for k, v in result
                if (value := locked[k] if k in relock else v) is not None
            ]
        if whole:
            covered: tuple[bytes, bytes | None] | None = (start, end)
        else:
            # Seen up to `horizon` only: the range ends just after it.
            covered = None if horizon is None else (start, horizon + b"\x00")
        if covered is not None and covered not in self._scanned:
            self._scanned.append(covered)
        if relock and not whole and horizon is not None and len(result) < limit:
            # Keys deleted before their locked read left the page short although the range
            # goes on past `horizon`: fill it up, as a plain scan's page would be full.
            result += await self.scan(horizon + b"\x00", end, limit - len(result), for_update=True)
        return result

    async def _read_for_update(self, keys: list[bytes]) -> dict[bytes, bytes | None]:
        """`get(key, for_update=True)` of every key at once; raises the first error as
        soon as it comes (the transaction is bound to abort: the other reads stop queueing
        for locks; those already taken are freed by its abort)."""
        tasks = [asyncio.ensure_future(self.get(k, for_update=True)) for k in keys]
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
            for task in tasks:
                if task in done and task.exception() is not None:
                    raise task.exception()  # type: ignore[misc]
            return {k: t.result() for k, t in zip(keys, tasks, strict=True)}
        finally:
            for task in tasks:
                if not task.done():
                    task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    def _record_read(self, key: bytes, version: int, value: bytes | None) -> None:
        token = self._fences.get(key)
        if token is not None and version != token:
            raise FencingTokenRejected(key, token, version, txn_id=self.txn_id)
        seen = self._reads.get(key)
        if seen is None and value is not None and self._covered(key):
            raise self._phantom_read(key)  # an earlier scan saw the key absent (rule P6)
        if seen is not None and seen != version:
            raise Conflict(
                key,
                b"",
                "read",
                f"the key changed while this transaction ran (version {seen}, now {version})",
                txn_id=self.txn_id,
            )
        self._reads[key] = version
        self._values[key] = value

    def _covered(self, key: bytes) -> bool:
        """Whether a scan of this transaction covered `key`."""
        return any(s <= key and (e is None or key < e) for s, e in self._scanned)

    def _phantom_read(self, key: bytes) -> Conflict:
        return Conflict(
            key,
            b"",
            "read",
            "phantom: the key appeared in a range this transaction scanned, after the scan",
            txn_id=self.txn_id,
        )

    # -- writes

    def put(self, key: bytes, value: bytes) -> None:
        """Buffer a write of `value` under `key` (sent at commit; no I/O, no await).

        Raises:
            InvalidArgument: key or value is not bytes, or the key is empty.
            TransactionClosed: the transaction is committed or aborted.
        """
        key, value = _as_key(key), _as_value(value)
        self._check_open()
        self._writes[key] = value

    def delete(self, key: bytes) -> None:
        """Buffer a delete of `key` (sent at commit; no I/O, no await).

        Raises:
            InvalidArgument: the key is not bytes or empty.
            TransactionClosed: the transaction is committed or aborted.
        """
        key = _as_key(key)
        self._check_open()
        self._writes[key] = None

    def put_fenced(self, key: bytes, value: bytes, *, lock: bytes, token: int) -> None:
        """Buffer a write that commits only while `lock`'s latest version is `token`.

        The lock key joins the read set at version `token` (no I/O here), so the store
        validates it in the same replicated PREPARE / one-phase commit that writes `key`
        (module docstring, "Fenced writes").

        Args:
            key, value: the write.
            lock: the lock key whose record the token came from.
            token: the lock's fencing token: the commit timestamp of the transaction that
                wrote the lock record (> 0).

        Raises:
            FencingTokenRejected: this transaction already read `lock` at another version,
                or (at commit) the store refused the token.
            InvalidArgument: a bad key, value or token, or two tokens for one lock.
            TransactionClosed: the transaction is committed or aborted.
        """
        self._fence(lock, token)
        self.put(key, value)

    def delete_fenced(self, key: bytes, *, lock: bytes, token: int) -> None:
        """Buffer a delete that commits only while `lock`'s latest version is `token`.

        Raises:
            As `put_fenced`.
        """
        self._fence(lock, token)
        self.delete(key)

    def _fence(self, lock: bytes, token: int) -> None:
        lock = _as_key(lock, "key")
        self._check_open()
        if isinstance(token, bool) or not isinstance(token, int) or token <= 0:
            raise InvalidArgument(f"a fencing token is a commit timestamp > 0, got {token!r}")
        known = self._fences.get(lock)
        if known is not None and known != token:
            raise InvalidArgument(f"two fencing tokens ({known}, {token}) for lock {lock!r}")
        seen = self._reads.get(lock)
        if seen is not None and seen != token:
            raise FencingTokenRejected(lock, token, seen, txn_id=self.txn_id)
        if seen is None and self._covered(lock):
            # A scan of this transaction saw the lock absent: a retry's scan will see it.
            raise self._phantom_read(lock)
        self._fences[lock] = token
        self._reads[lock] = token

    # -- end of life

    async def commit(self) -> int:
        """Commit: one-phase on one group, two-phase across groups (module docstring).

        Returns:
            The commit timestamp (also `commit_ts` afterwards): every version this
            transaction wrote carries it, and it is above every commit it depends on, so it
            serves as a fencing token. 0 for an empty transaction (nothing read or written).

        Raises:
            Conflict: a participant refused (a read key changed, or another transaction
                holds a key), or recovery aborted the transaction first. Retryable.
            FencingTokenRejected: a fenced write's lock has a newer version than its token
                (a Conflict that is not retryable).
            CommitUnknown: the decision's answer was lost until the deadline; the
                transaction may have committed (`err.ref` for `client.txn_status`).
            Unavailable, DeadlineExceeded: a participant could not be reached; not committed.
            LimitExceeded, InvalidArgument: the transaction is too large or malformed.
            TransactionClosed: already committed or aborted.
        """
        self._check_open()
        self._state = TransactionState.COMMITTING
        try:
            commit_ts = await self._client._commit(self)
        except Conflict as exc:
            self._state = TransactionState.ABORTED
            if self._fences and not isinstance(exc, FencingTokenRejected):
                stale = await self._client._stale_fence(self)
                if stale is not None:
                    raise stale from exc
            raise
        except PaxosKVError as exc:  # a typed error says whether it may have committed
            self._state = (
                TransactionState.UNKNOWN if exc.maybe_committed else TransactionState.ABORTED
            )
            raise
        except BaseException:
            if self._ref is None:
                # Cancelled before any commit request was built (e.g. while connecting):
                # nothing was sent, so nothing can commit.
                self._state = TransactionState.ABORTED
                if self._lock_groups:
                    self._client._resolve_all(self.txn_id, self._lock_groups, False, 0)
                raise
            # Cancelled or interrupted part-way: the commit requests may be on the wire.
            self._state = TransactionState.UNKNOWN
            raise
        self._commit_ts = commit_ts
        self._state = TransactionState.COMMITTED
        return commit_ts

    def abort(self) -> None:
        """Discard the transaction: nothing was sent but reads, so nothing is undone.

        (A commit that fails after preparing aborts what it prepared by itself.) A no-op
        on an aborted or committed transaction, and on one whose commit outcome is unknown
        (it changes nothing there: `state` and `client.txn_status` say what happened), so
        `except: tx.abort(); raise` lets the commit's own error through.

        Raises:
            TransactionClosed: a commit of the transaction is in progress.
        """
        if self._state in (TransactionState.OPEN, TransactionState.ABORTED):
            if self._state is TransactionState.OPEN and self._lock_groups:
                # Let the transactions queued behind this one's update locks go now.
                self._client._resolve_all(self.txn_id, self._lock_groups, False, 0)
            self._state = TransactionState.ABORTED
            self._writes.clear()
            return
        if self._state in (TransactionState.COMMITTED, TransactionState.UNKNOWN):
            # As SQLAlchemy's rollback() after a commit. Raising here replaced the error in
            # flight in `except: tx.abort(); raise`: a CommitUnknown read as not committed.
            return
        raise TransactionClosed(
            f"transaction {self.txn_id.hex()} is {self._state.value}; it cannot be aborted"
        )

    async def __aenter__(self) -> AsyncTransaction:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is None:
            if self._state is TransactionState.OPEN:
                await self.commit()
        elif self._state is TransactionState.OPEN:
            self.abort()

    def __repr__(self) -> str:
        return (
            f"<AsyncTransaction {self.txn_id.hex()} {self._state.value} "
            f"reads={len(self._reads)} writes={len(self._writes)}>"
        )


class AsyncSnapshot:
    """Read-only work at one timestamp, lock-free: every read sees the same snapshot.

    Create it with `client.snapshot()`; use as `async with client.snapshot() as snap:`
    (entering fetches the read timestamp) or directly (the first read fetches it).

    Semantics: every read sees exactly the transactions whose commit timestamp is at most
    `read_ts` — one consistent cut, across shards; the shard leader waits for prepared
    transactions below it to be decided rather than skip them. `read_ts` is at least the
    cluster clock when the snapshot began and every timestamp this client had seen, so the
    snapshot includes everything that committed before it began (and this client's own
    writes). A write that commits after the snapshot began may still get a timestamp below
    `read_ts` (node clocks differ a little) and be visible, but only until the shard serves
    a read of this snapshot: from then on that shard stamps its writes above `read_ts`.
    Nothing is locked and nothing is logged.
    """

    def __init__(self, client: AsyncClient, read_ts: int | None) -> None:
        self._client = client
        self._read_ts = read_ts
        self._closed = False
        # Reads started together on a fresh snapshot share one fetch: each fetching its own
        # timestamp, they read at two, and a commit between them showed half (found by
        # review).
        self._fetching = asyncio.Lock()

    @property
    def read_ts(self) -> int | None:
        """The snapshot's timestamp (None until entered or first read)."""
        return self._read_ts

    async def timestamp(self) -> int:
        """The snapshot's timestamp, fetched from the cluster on first use."""
        if self._closed:
            raise TransactionClosed("the snapshot is closed")
        if self._read_ts is None:
            async with self._fetching:
                if self._read_ts is None:
                    self._read_ts = await self._client._timestamp()
        return self._read_ts

    async def get(self, key: bytes) -> bytes | None:
        """The value of `key` at the snapshot's timestamp, or None.

        Raises:
            Unavailable, DeadlineExceeded: the key's shard could not serve the read in time.
            TransactionClosed: the snapshot is closed.
        """
        key = _as_key(key)
        ts = await self.timestamp()
        return await self._client._read_at(key, ts)

    async def scan(
        self, start: bytes, end: bytes | None = None, limit: int = DEFAULT_SCAN_LIMIT
    ) -> list[tuple[bytes, bytes]]:
        """Up to `limit` (key, value) with start <= key < end at the snapshot's timestamp.

        Unlike a client-level scan, the whole result is one consistent snapshot, also
        across shards.

        Raises:
            Unavailable, DeadlineExceeded, TransactionClosed: as `get`.
        """
        start = _as_key(start, "start key")
        end = None if end is None else _as_key(end, "end key")
        ts = await self.timestamp()
        if limit <= 0 or (end is not None and end <= start):
            return []
        items, _ = await self._client._scan_range(start, end, limit, at_ts=ts)
        return [(k, v) for k, v, _ in items]

    def close(self) -> None:
        """Further reads raise TransactionClosed."""
        self._closed = True

    async def __aenter__(self) -> AsyncSnapshot:
        await self.timestamp()
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.close()


class AsyncClient:
    """An asyncio client of a paxoskv cluster: transactions, snapshots, single-key helpers.

    One `AsyncClient` is safe for many concurrent coroutines of one event loop. It connects
    on first use (or `await client.connect()`); close it with `await client.close()` or use
    `async with AsyncClient(...) as client:`.

    Args:
        seeds: "host:port" addresses of some nodes (a list, or one comma-separated string);
            any node that answers will do.
        cluster_id: the cluster to talk to; learned from the first seed when None.
        timeout_s: the deadline of one operation (a read, a commit), retries included.
        max_attempts: `run` / `transactional` run a function at most this many times.
        retry_timeout_s: `run` gives up retrying once this much time has passed (None: only
            `max_attempts` bounds it).
        backoff: pauses between attempts of `run` (default: full jitter, 10 ms doubling up
            to 1 s).
        rng: randomness for jitter (default: a fresh `random.Random()`).
        attempt_timeout_s: how long one try of an idempotent commit request waits before it
            is re-sent (default: a quarter of `timeout_s`, at least 0.5 s).
        wall_ns: the wall clock, in ns (default `time.time_ns`).
        tls: the CA to trust and the certificate to present (`router.tls.TlsFiles`), or
            None for plaintext; by default the files PAXOSKV_TLS_CA/CERT/KEY name, if set.
        settle_unknown: `run` / `transactional` settle a commit whose answer was lost
            (`txn_status(ref, settle=True)`) instead of raising `CommitUnknown`: committed,
            they return as if the commit had answered (the transaction's `commit_ts` set);
            aborted for good, they run the function again. So a non-idempotent body (a
            transfer) is applied exactly once. `CommitUnknown` is still raised when the
            outcome cannot be settled before the deadline.

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
        tls: ClientTls = "env",
        settle_unknown: bool = False,
    ) -> None:
        self.settle_unknown = settle_unknown
        if max_attempts < 1:
            raise InvalidArgument(f"max_attempts must be >= 1, got {max_attempts}")
        if retry_timeout_s is not None and not retry_timeout_s > 0:
            raise InvalidArgument(f"retry_timeout_s must be > 0, got {retry_timeout_s}")
        if attempt_timeout_s is not None and not attempt_timeout_s > 0:
            raise InvalidArgument(f"attempt_timeout_s must be > 0, got {attempt_timeout_s}")
        self._rng = rng or random.Random()
        try:
            self._routing = RoutingClient(
                seeds, cluster_id=cluster_id, timeout_s=timeout_s, rng=self._rng, tls=tls
            )
        except ClientError as exc:
            raise from_routing_error(exc) from exc
        self._timeout_s = timeout_s
        self._attempt_timeout_s = attempt_timeout_s or max(0.5, timeout_s / 4)
        self._policy = _RetryPolicy(
            max_attempts, retry_timeout_s, backoff or Backoff(base_s=0.01, max_s=1.0), self._rng
        )
        self._wall_ns = wall_ns
        self._clock = HybridClock()
        self._tasks: set[asyncio.Task[None]] = set()
        self._closed = False
        self._draining = False  # closed, but the background tasks may still send

    # ------------------------------------------------------------------ lifecycle

    @property
    def routing(self) -> RoutingClient:
        """The underlying routing client (shard map, raw requests); for advanced use."""
        return self._routing

    @property
    def cluster_id(self) -> str | None:
        """The cluster's id (None until connected, unless given)."""
        return self._routing.cluster_id

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
        """Let background resolves finish briefly, then close every connection."""
        if self._closed:
            return
        # New work is refused from here, but the background Decides and Resolves already
        # spawned may still send (they record decisions recovery would otherwise wait for).
        self._closed = True
        self._draining = True
        if self._tasks:
            _done, pending = await asyncio.wait(set(self._tasks), timeout=_CLOSE_GRACE_S)
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.gather(*pending, return_exceptions=True)
        self._draining = False
        await self._routing.close()

    async def __aenter__(self) -> AsyncClient:
        return await self.connect()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def _ready(self, deadline: float | None = None) -> None:
        """Connect on first use, waiting at most until `deadline` (loop time)."""
        if self._closed and not self._draining:
            raise ClientClosed("the client is closed")
        if self._routing.shard_map is not None:
            return
        try:
            await self._routing.ready(deadline)
        except ClientError as exc:
            raise from_routing_error(exc) from exc

    # ------------------------------------------------------------------ transactions

    def transaction(self) -> AsyncTransaction:
        """A new read-write transaction with a fresh id (no I/O until the first read).

        Returns:
            An `AsyncTransaction`; use it as `async with client.transaction() as tx:`.
        """
        if self._closed:
            raise ClientClosed("the client is closed")
        return AsyncTransaction(self, secrets.token_bytes(TXN_ID_BYTES))

    def _attempt(self, priority: int) -> AsyncTransaction:
        """A transaction for one attempt of a retry loop, `priority` 0 on the first.

        Every attempt carries the first attempt's timestamp as its age, so the leaders'
        wait-die (shard.lock_wait) lets a transaction that lost a conflict win once it is
        the oldest: retries cannot starve.
        """
        tx = self.transaction()
        # peek, not now: the sync Client calls this from its caller's thread, where moving
        # the clock would race the loop thread's observe() (a lost update moves it back).
        # An age needs no uniqueness: ties go by transaction id.
        tx._priority = priority or self._clock.peek(self._wall_ns())
        return tx

    def snapshot(self, read_ts: int | None = None) -> AsyncSnapshot:
        """Read-only, lock-free reads at one timestamp.

        Args:
            read_ts: read at this timestamp (e.g. an earlier `commit_ts`); default: a fresh
                timestamp from the cluster, at or above everything this client has seen.

        Returns:
            An `AsyncSnapshot`; use it as `async with client.snapshot() as snap:`.
        """
        if read_ts is not None and read_ts <= 0:
            raise InvalidArgument(f"read_ts must be > 0, got {read_ts}")
        return AsyncSnapshot(self, read_ts)

    async def run(self, fn: Callable[..., Awaitable[T] | T], *args: Any, **kwargs: Any) -> T:
        """Run `fn(tx, *args, **kwargs)` in a transaction and commit; on a retryable error
        run it again from the start with a fresh transaction.

        `fn` may be a coroutine function or a plain function; it must not commit (its
        transaction is committed after it returns) and must not be a generator. Only its
        transaction's writes are undone by a retry: anything else `fn` does (appending to a
        list, sending a message) happens once per attempt, so keep such effects out of it
        or make them idempotent, as FoundationDB advises for its retry loop.

        Returns:
            What `fn` returned (in the attempt that committed).

        Raises:
            TooManyRetries: `max_attempts` or `retry_timeout_s` used up (wraps the last error).
            CommitUnknown: the last commit's outcome is unknown (not retried; with
                `settle_unknown`, only when it could not be settled in time).
            Whatever `fn` raises that is not retryable, or that it raises after its
                transaction committed (or may have), unchanged.
        """
        _refuse_generator(fn)
        loop = asyncio.get_running_loop()
        started = loop.time()
        attempts = 0
        priority = 0
        while True:
            attempts += 1
            tx = self._attempt(priority)
            priority = tx._priority
            try:
                result = fn(tx, *args, **kwargs)
                if inspect.isawaitable(result):
                    result = await result
                if tx.state is TransactionState.OPEN:
                    try:
                        await tx.commit()
                    except CommitUnknown as lost:
                        if not self.settle_unknown:
                            raise
                        await self._settle_lost_commit(tx, lost)
                return result
            except Exception as exc:
                if tx.state is TransactionState.OPEN:
                    tx.abort()
                if tx.state is not TransactionState.ABORTED:
                    raise  # committed (or may have): running the body again applies it twice
                delay = self._policy.next_delay(exc, attempts, loop.time() - started)
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
            status = await self.txn_status(lost.ref, settle=True)
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

    def transactional(
        self, fn: Callable[..., Awaitable[T] | T]
    ) -> Callable[..., Coroutine[Any, Any, T]]:
        """Decorator: a function whose first parameter is a transaction becomes retried.

        Called with an `AsyncTransaction` as first argument, the function just runs in it
        (no commit): transactional functions compose into one transaction. Called without,
        it runs through `run` (fresh transaction, commit, retries).

        Raises:
            TypeError: `fn` is a generator function.
        """
        _refuse_generator(fn)

        @functools.wraps(fn)
        async def wrapper(*args: Any, **kwargs: Any) -> T:
            if args and isinstance(args[0], AsyncTransaction):
                result = fn(*args, **kwargs)
                if inspect.isawaitable(result):
                    return await result
                return result
            return await self.run(fn, *args, **kwargs)

        return wrapper

    async def txn_status(
        self,
        ref: TxnRef | bytes,
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
        then refused. Settle before re-running the work of a `CommitUnknown`.

        Args:
            ref: a `TxnRef` (`tx.ref`, `CommitUnknown.ref`), or a transaction id together
                with `group_id` (its decision group) or `key` (a key of that group: the first
                key the transaction wrote, or read if it wrote none).
            group_id, key: where to ask, with a bare transaction id.
            timeout_s: the deadline (default: the client's).
            settle: record an outcome if there is none yet: the answer is then COMMITTED or
                ABORTED, and stays so. Needs `tx.ref` / `CommitUnknown.ref` of a transaction
                begun at most SETTLE_WINDOW_S (60 s) ago: an older one's record may have been
                purged, and an abort recorded then would contradict its real outcome.

        Returns:
            A `TxnStatus`: UNKNOWN, IN_PROGRESS, COMMITTED (with commit_ts) or ABORTED;
            with `settle`, COMMITTED or ABORTED.

        Raises:
            InvalidArgument: not exactly one of a TxnRef, group_id or key; or `settle` with
                a bare id or a transaction older than SETTLE_WINDOW_S.
            Unavailable, DeadlineExceeded: the group could not answer (or, with `settle`,
                record the outcome) in time; asking again is safe.
        """
        # The loop time by which a settle must be recorded (its window's end).
        settle_by = self._deadline(self._settle_window_left(ref)) if settle else 0.0
        if isinstance(ref, TxnRef):
            if group_id is not None or key is not None:
                raise InvalidArgument("a TxnRef already names the group: drop group_id/key")
            txn_id, gid = ref.txn_id, ref.group_id
        else:
            txn_id = _as_key(ref, "transaction id")
            if (group_id is None) == (key is None):
                raise InvalidArgument("with a bare transaction id give group_id= or key=")
            await self._ready(self._deadline(timeout_s))
            if key is not None:
                gid = self._map().locate(_as_key(key)).group_id
            else:
                assert group_id is not None
                gid = group_id
                if not self._map().has_group(gid):
                    raise InvalidArgument(
                        f"group {gid} is not in the shard map (its groups: "
                        f"{', '.join(map(str, self._map().group_ids()))})"
                    )
        body = await self._group_txn_status(txn_id, gid, timeout_s)
        state = TxnState(body.state)
        if state is TxnState.IN_PROGRESS:
            body = await self._implicit_commit(txn_id, gid, body, timeout_s)
            state = TxnState(body.state)
        if settle and state in (TxnState.UNKNOWN, TxnState.IN_PROGRESS):
            assert isinstance(ref, TxnRef)  # checked above
            return await self._settle(ref, list(body.participants), timeout_s, settle_by)
        if state is TxnState.COMMITTED:
            self._clock.observe(body.commit_ts)
            return TxnStatus(state, body.commit_ts)
        return TxnStatus(state)

    def _settle_window_left(self, ref: TxnRef | bytes) -> float:
        """Seconds `ref` may still be settled in; InvalidArgument if none.

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
        age_s = (self._wall_ns() - ref.started_ns) / 1e9
        if age_s > SETTLE_WINDOW_S:
            raise InvalidArgument(
                f"transaction {ref.txn_id.hex()} began {age_s:.0f} s ago: too old to settle "
                f"(at most {SETTLE_WINDOW_S:g} s), as its decision record may have been purged "
                "and settling would record an abort over it; its outcome is what "
                "txn_status reports"
            )
        return SETTLE_WINDOW_S - age_s

    async def _settle(
        self, ref: TxnRef, participants: list[int], timeout_s: float | None, settle_by: float
    ) -> TxnStatus:
        """`txn_status(settle=True)` for a transaction without a decision: the abort may
        be recorded only until `settle_by`, the end of its settle window."""
        end = min(self._deadline(timeout_s), settle_by)
        what = f"transaction {ref.txn_id.hex()}: group {ref.group_id} could not record an outcome"
        try:
            body = await self._record_abort(ref, participants, end)
        except _NoAnswer as exc:
            raise DeadlineExceeded(f"{what} in time (last: {exc.last}); ask again") from None
        except ClientClosed:
            raise
        except PaxosKVError as exc:
            raise Unavailable(f"{what} ({exc}); ask again") from exc
        if body is None:
            raise DeadlineExceeded(
                f"{what} in time: it is still asking the participants whether every one "
                "prepared; ask again"
            )
        if body.committed:
            self._clock.observe(body.commit_ts)
            return TxnStatus(TxnState.COMMITTED, body.commit_ts)
        return TxnStatus(TxnState.ABORTED)

    async def _group_txn_status(
        self, txn_id: bytes, group_id: int, timeout_s: float | None
    ) -> kv.TxnStatusResponse:
        request = kv.Request(txn_status=kv.TxnStatusRequest(txn_id=txn_id))
        return (await self._send_to_group(request, group_id, timeout_s)).txn_status

    async def _send_to_group(
        self, request: kv.Request, group_id: int, timeout_s: float | None
    ) -> kv.Response:
        """A read-only request for one group; a change of the shard map meanwhile is
        Unavailable (retryable: ask again), not the routing layer's own error."""
        try:
            return await self._send(request, group_id=group_id, write=False, timeout_s=timeout_s)
        except (WrongShard, UnknownGroup) as exc:
            raise Unavailable(f"the shard map changed; ask again ({exc})") from exc

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
        stamps = [body.prepare_ts]
        for answer in answers:
            if answer.state == kv.TxnStatusResponse.COMMITTED:
                return answer  # a participant already resolved it with the decision
            if answer.state != kv.TxnStatusResponse.IN_PROGRESS:
                return body
            stamps.append(answer.prepare_ts)
        return kv.TxnStatusResponse(state=kv.TxnStatusResponse.COMMITTED, commit_ts=max(stamps))

    # ------------------------------------------------------------------ single-key helpers

    async def get(self, key: bytes, *, timeout_s: float | None = None) -> bytes | None:
        """The latest value of `key` (linearizable), or None when absent.

        Raises:
            Conflict: a prepared transaction held the key until the deadline.
            Unavailable, DeadlineExceeded: the shard could not answer in time.
        """
        key = _as_key(key)
        request = kv.Request(get=kv.GetRequest(key=key))
        response = await self._single(request, key, False, timeout_s)
        self._clock.observe(response.get.version)
        return response.get.value if response.get.found else None

    async def put(self, key: bytes, value: bytes, *, timeout_s: float | None = None) -> int:
        """Write one key outside any transaction; returns the new version.

        Raises:
            Conflict: a prepared transaction held the key until the deadline (not written).
            OutcomeUnknown: the answer was lost; the write may have been applied.
            Unavailable, DeadlineExceeded, LimitExceeded, InvalidArgument: not written.
        """
        key, value = _as_key(key), _as_value(value)
        request = kv.Request(put=kv.PutRequest(key=key, value=value))
        response = await self._single(request, key, True, timeout_s)
        self._clock.observe(response.put.version)
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
        timeout_s: float | None = None,
    ) -> CasResult:
        """Compare-and-set one key: if it matches exactly one condition, apply one action.

        Args:
            key: the key.
            expected_value, expected_version, expect_absent: the condition (exactly one).
            new_value, delete: the action (exactly one).
            timeout_s: the deadline (default: the client's).

        Returns:
            A `CasResult` (`succeeded`, the new `version`, or the key's current state).

        Raises:
            InvalidArgument: not exactly one condition and one action.
            Others as `put`.
        """
        key = _as_key(key)
        conditions = (expected_value is not None) + (expected_version is not None) + expect_absent
        if conditions != 1:
            raise InvalidArgument(
                "compare-and-set needs exactly one condition: expected_value, "
                "expected_version or expect_absent"
            )
        if (new_value is not None) == delete:
            raise InvalidArgument("compare-and-set needs exactly one action: new_value or delete")
        op = kv.CasRequest(key=key)
        if expected_value is not None:
            op.expected_value = _as_value(expected_value)
        elif expected_version is not None:
            op.expected_version = expected_version
        else:
            op.expect_absent = True
        if new_value is not None:
            op.new_value = _as_value(new_value)
        else:
            op.delete = True
        response = await self._single(kv.Request(cas=op), key, True, timeout_s)
        body = response.cas
        self._clock.observe(max(body.version, body.current_version))
        return CasResult(
            succeeded=body.succeeded,
            version=body.version,
            current_value=body.current_value if body.found else None,
            current_version=body.current_version,
        )

    async def scan(
        self,
        start: bytes,
        end: bytes | None = None,
        limit: int = DEFAULT_SCAN_LIMIT,
        *,
        timeout_s: float | None = None,
    ) -> list[tuple[bytes, bytes]]:
        """Up to `limit` (key, value) with start <= key < end, outside any transaction.

        Each shard's part is linearizable; the whole is not one snapshot across shards (use
        `snapshot().scan` for that).

        Raises:
            Unavailable, DeadlineExceeded, Conflict: as `get`.
        """
        start = _as_key(start, "start key")
        end = None if end is None else _as_key(end, "end key")
        if limit <= 0 or (end is not None and end <= start):
            return []
        items, _ = await self._scan_range(start, end, limit, timeout_s=timeout_s)
        return [(k, v) for k, v, _ in items]

    async def put_fenced(self, key: bytes, value: bytes, *, lock: bytes, token: int) -> int:
        """Write one key in its own transaction, only while `lock`'s latest version is
        `token` (see `AsyncTransaction.put_fenced`); other conflicts are retried as `run`
        retries them.

        Returns:
            The commit timestamp (the new version of `key`).

        Raises:
            FencingTokenRejected: the store refused the token; nothing was written.
            Others as `run`.
        """

        def write(tx: AsyncTransaction) -> AsyncTransaction:
            tx.put_fenced(key, value, lock=lock, token=token)
            return tx

        tx = await self.run(write)
        assert tx.commit_ts is not None
        return tx.commit_ts

    async def delete_fenced(self, key: bytes, *, lock: bytes, token: int) -> int:
        """Delete one key in its own transaction, only while `lock`'s latest version is
        `token`; returns the commit timestamp. Raises as `put_fenced`."""

        def remove(tx: AsyncTransaction) -> AsyncTransaction:
            tx.delete_fenced(key, lock=lock, token=token)
            return tx

        tx = await self.run(remove)
        assert tx.commit_ts is not None
        return tx.commit_ts

    # ------------------------------------------------------------------ request plumbing

    def _map(self) -> ShardMap:
        shard_map = self._routing.shard_map
        if shard_map is None:
            raise Unavailable("no shard map yet: no node answered")
        return shard_map

    def _deadline(self, timeout_s: float | None = None) -> float:
        timeout = self._timeout_s if timeout_s is None else timeout_s
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
    ) -> kv.Response:
        """RoutingClient.send with its errors translated (WrongShard/UnknownGroup pass)."""
        deadline = self._deadline(timeout_s)
        await self._ready(deadline)
        try:
            return await self._routing.send(
                request,
                key=key,
                group_id=group_id,
                write=write,
                timeout_s=self._left_s(deadline),
                passthrough=passthrough,
            )
        except ClientError as exc:
            raise from_routing_error(exc) from exc

    async def _pause(self, backoff: Backoff, attempt: int, deadline: float) -> bool:
        """Sleep before a re-send; False when the deadline leaves no time for one."""
        loop = asyncio.get_running_loop()
        delay = backoff.delay(attempt, self._rng)
        if loop.time() + delay >= deadline:
            return False
        await asyncio.sleep(delay)
        return True

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
        for update is not re-sent (the leader already queued it: its refusal is final).

        Raises:
            Conflict: the intent was still there at the deadline (the last refusal).
        """
        loop = asyncio.get_running_loop()
        attempt = 0
        refused: Conflict | None = None
        while True:
            remaining = deadline - loop.time()
            try:
                if remaining <= 0:
                    raise DeadlineExceeded("the read got no answer before its deadline")
                response = await self._send(
                    request,
                    key=key,
                    group_id=group_id,
                    write=False,
                    timeout_s=remaining,
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
        self, request: kv.Request, key: bytes, write: bool, timeout_s: float | None
    ) -> kv.Response:
        """A single-key operation; a CONFLICT (nothing applied) is re-sent until the deadline."""
        if not write:
            return await self._read(request, key=key, deadline=self._deadline(timeout_s))
        loop = asyncio.get_running_loop()
        deadline = self._deadline(timeout_s)
        margin = min(0.5, (self._timeout_s if timeout_s is None else timeout_s) / 4)
        attempt = 0
        refused: Conflict | None = None
        while True:
            try:
                response = await self._send(
                    request,
                    key=key,
                    write=True,
                    timeout_s=max(deadline - loop.time(), 0.001),
                    passthrough=(kv.CONFLICT,),
                )
            except Unavailable:
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
                raise refused
            attempt += 1

    async def _read_latest(
        self, key: bytes, txn_id: bytes, lock_priority: int = 0
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
            deadline=self._deadline(),
            txn_id=txn_id,
            resend_conflicts=not lock_priority,
        )
        got = response.get
        self._clock.observe(got.version)
        return (got.value if got.found else None), got.version

    async def _read_at(self, key: bytes, ts: int) -> bytes | None:
        request = kv.Request(get=kv.GetRequest(key=key, snapshot=True, at_version=ts))
        response = await self._read(request, key=key, deadline=self._deadline())
        return response.get.value if response.get.found else None

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
        at_ts: int = 0,
        txn_id: bytes = b"",
        timeout_s: float | None = None,
    ) -> tuple[list[tuple[bytes, bytes, int]], bool]:
        """Up to `limit` (key, value, version) of [start, end), shard by shard.

        Returns:
            The items, and whether the range was exhausted (fewer than `limit` exist).
        """
        deadline = self._deadline(timeout_s)
        await self._ready(deadline)
        out: list[tuple[bytes, bytes, int]] = []
        cursor = start
        while len(out) < limit and (end is None or cursor < end):
            parts = self._routing.routing.plan_scan(cursor, end)
            if not parts:
                break
            descriptor, sub_start, sub_end = parts[0]
            want = min(limit - len(out), SCAN_PAGE)
            op = kv.ScanRequest(start=sub_start, limit=want)
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
            items = response.scan.items
            for item in items:
                self._clock.observe(item.version)
                out.append((item.key, item.value, item.version))
            if len(items) < want and not response.scan.more:
                if sub_end is None:
                    return out, True
                cursor = sub_end
            else:
                cursor = items[-1].key + b"\x00"
        return out, len(out) < limit

    # ------------------------------------------------------------------ commit

    async def _stale_fence(self, tx: AsyncTransaction) -> FencingTokenRejected | None:
        """After a refused commit of a fenced transaction: the error for a lock whose latest
        version is not its token any more, else None (the refusal had another cause).

        A version once superseded never becomes latest again, so a lock found at another
        version means the store refused (or would now refuse) the token. When the lock
        cannot be read in time the refusal stays an ordinary, retryable Conflict.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + min(self._timeout_s, _FENCE_CHECK_TIMEOUT_S)
        for lock, token in tx._fences.items():
            request = kv.Request(get=kv.GetRequest(key=lock))
            try:
                response = await self._read(request, key=lock, deadline=deadline)
            except PaxosKVError:
                return None
            version = response.get.version
            self._clock.observe(version)
            if version != token:
                return FencingTokenRejected(lock, token, version, txn_id=tx.txn_id)
        return None

    async def _commit(self, tx: AsyncTransaction) -> int:
        reads = list(tx._reads.items())
        writes = list(tx._writes.items())
        if not reads and not writes and not tx._scanned:
            return 0
        deadline = self._deadline()
        await self._ready(deadline)
        shard_map = self._map()
        parts: dict[int, _Part] = {}
        for key, version in reads:
            group = shard_map.locate(key).group_id
            parts.setdefault(group, _Part()).reads.append(kv.ReadItem(key=key, version=version))
        for key, value in writes:
            group = shard_map.locate(key).group_id
            item = kv.WriteItem(key=key, value=value or b"", delete=value is None)
            parts.setdefault(group, _Part()).writes.append(item)
        for start, end in tx._scanned:
            for desc, lo, hi in shard_map.split_range(start, end):
                part = parts.setdefault(desc.group_id, _Part())
                part.ranges.append(kv.KeyRange(start=lo, end=hi or b""))
        for group, part in parts.items():
            part.ranges = _union(part.ranges)  # nodes refuse overlapping scanned ranges
            items = len(part.reads) + len(part.writes) + len(part.ranges)
            if items > MAX_TXN_ITEMS:
                if tx._lock_groups:  # nothing was sent: free the update locks as abort() does
                    self._resolve_all(tx.txn_id, tx._lock_groups, False, 0)
                raise LimitExceeded(
                    f"the transaction reads, writes and scans {items} keys and ranges in group "
                    f"{group}, over the limit of {MAX_TXN_ITEMS} per group (MAX_TXN_ITEMS); "
                    "split it into several transactions"
                )
        first_key = writes[0][0] if writes else reads[0][0] if reads else tx._scanned[0][0]
        coordinator = shard_map.locate(first_key).group_id
        ts = self._clock.now(self._wall_ns())
        # Never after the Prepares' ts, even if the wall clock stepped back since the start:
        # an abort's asker_ts derives from it and must stay below every prepare_ts (rule D4).
        started_ns = min(tx._started_ns, physical_us(ts) * 1000)
        tx._ref = TxnRef(tx.txn_id, coordinator, started_ns)
        if len(parts) == 1:
            return await self._commit_one_phase(
                tx._ref, coordinator, ts, parts[coordinator], deadline
            )
        return await self._commit_two_phase(tx._ref, parts, ts, tx._priority or ts, deadline)

    async def _send_idempotent(
        self,
        request: kv.Request,
        group_id: int,
        deadline: float,
        passthrough: Collection[int] = (),
    ) -> kv.Response:
        """Send an idempotent write, re-sending the SAME request while its answer is lost or
        its group unavailable (rule 1).

        Raises:
            _NoAnswer: no answer before the deadline, or the shard map changed under a
                request an earlier attempt of which may have been applied.
            Unavailable: the shard map changed under the request (not applied).
            LimitExceeded, InvalidArgument, WrongCluster, ServerError: from the node.
        """
        loop = asyncio.get_running_loop()
        ambiguous = False
        last: PaxosKVError = DeadlineExceeded("no time was left to send the request")
        attempt = 0
        while True:
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise _NoAnswer(ambiguous, last)
            try:
                return await self._send(
                    request,
                    group_id=group_id,
                    write=True,
                    timeout_s=min(remaining, self._attempt_timeout_s),
                    passthrough=passthrough,
                )
            except OutcomeUnknown as exc:
                ambiguous, last = True, exc
            except Unavailable as exc:
                last = exc
            except (WrongShard, UnknownGroup) as exc:
                moved = Unavailable(f"the shard map changed during the commit ({exc})")
                if ambiguous:  # an earlier copy may have been applied before the change
                    raise _NoAnswer(True, moved) from exc
                raise Unavailable(f"{moved}; nothing was committed") from exc
            if not await self._pause(_RESEND_BACKOFF, attempt, deadline):
                raise _NoAnswer(ambiguous, last)
            attempt += 1

    async def _commit_one_phase(
        self,
        ref: TxnRef,
        group_id: int,
        ts: int,
        part: _Part,
        deadline: float,
    ) -> int:
        op = kv.CommitOnePhaseRequest(
            txn_id=ref.txn_id,
            ts=ts,
            reads=part.reads,
            writes=part.writes,
            read_ranges=part.ranges,
        )
        request = kv.Request(commit_one_phase=op)
        try:
            response = await self._send_idempotent(
                request, group_id, deadline, passthrough=(kv.CONFLICT,)
            )
        except _NoAnswer as exc:
            if exc.ambiguous:
                raise CommitUnknown(
                    f"transaction {ref.txn_id.hex()}: the one-phase commit at group "
                    f"{group_id} got no answer before the deadline (last: {exc.last}); it may "
                    "or may not have committed — settle it with "
                    "client.txn_status(err.ref, settle=True)",
                    ref=ref,
                ) from exc.last
            raise exc.last from None
        except (ServerError, ClientClosed) as exc:
            raise CommitUnknown(
                f"transaction {ref.txn_id.hex()}: the one-phase commit failed on the node "
                f"({exc}); it may or may not have committed",
                ref=ref,
            ) from exc
        body = response.commit_one_phase
        if body.error.code == kv.CONFLICT:
            raise _conflict(body.error, "commit", ref.txn_id)
        self._clock.observe(body.commit_ts)
        return body.commit_ts

    async def _commit_two_phase(
        self,
        ref: TxnRef,
        parts: dict[int, _Part],
        ts: int,
        priority: int,
        deadline: float,
    ) -> int:
        participants = sorted(parts)
        coordinator = ref.group_id
        try:
            outcomes = await asyncio.gather(
                *(
                    self._prepare(
                        ref,
                        group,
                        coordinator,
                        participants,
                        ts,
                        priority,
                        parts[group],
                        deadline,
                    )
                    for group in participants
                ),
                return_exceptions=True,
            )
        except asyncio.CancelledError:
            # Nobody was told it committed; recording the abort settles it sooner.
            self._spawn(self._send_after_outcome(_abort_request(ref, participants), ref.group_id))
            raise
        failures = [
            (group, outcome)
            for group, outcome in zip(participants, outcomes, strict=True)
            if isinstance(outcome, BaseException)
        ]
        if failures:
            return await self._abort_after_failed_prepare(ref, participants, failures, deadline)
        commit_ts = max(o for o in outcomes if isinstance(o, int))
        self._clock.observe(commit_ts)
        # Committed (rule 2). Every participant, the coordinator included, now resolves its
        # part; that leaves the record txn_status and recovery read (participant rule R5).
        self._resolve_all(ref.txn_id, participants, True, commit_ts)
        return commit_ts

    async def _prepare(
        self,
        ref: TxnRef,
        group_id: int,
        coordinator: int,
        participants: list[int],
        ts: int,
        priority: int,
        part: _Part,
        deadline: float,
    ) -> int:
        op = kv.PrepareRequest(
            txn_id=ref.txn_id,
            coordinator_group=coordinator,
            participants=participants,
            ts=ts,
            priority=priority,
            reads=part.reads,
            writes=part.writes,
            read_ranges=part.ranges,
        )
        try:
            response = await self._send_idempotent(
                kv.Request(prepare=op), group_id, deadline, passthrough=(kv.CONFLICT,)
            )
        except _NoAnswer as exc:
            raise Unavailable(
                f"group {group_id} did not answer the prepare before the deadline "
                f"({exc.last}); the transaction was aborted"
            ) from exc.last
        body = response.prepare
        if body.error.code == kv.CONFLICT:
            raise _conflict(body.error, "prepare", ref.txn_id)
        self._clock.observe(body.prepare_ts)
        return body.prepare_ts

    async def _abort_after_failed_prepare(
        self,
        ref: TxnRef,
        participants: list[int],
        failures: list[tuple[int, BaseException]],
        deadline: float,
    ) -> int:
        """Record ABORT at the coordinator group (whose leader then resolves every
        participant) and raise the prepare's failure; return the commit timestamp instead
        if the recorded decision is a commit (rule 2).

        A prepare whose answer was lost may have been logged, and then it may have been the
        last yes vote: the transaction committed the moment it was logged. So the abort is a
        recovery Decide (`_abort_request`): while the coordinator group holds its own
        PREPARE it records nothing and answers `pending`, and its leader asks the other
        participants to prevent the txn, recording COMMIT if every one had prepared. The
        Decide is re-sent until the answer is a recorded decision.
        """
        loop = asyncio.get_running_loop()
        end = max(deadline, loop.time() + _DECIDE_TIMEOUT_S)
        unknown = (
            f"transaction {ref.txn_id.hex()}: a prepare failed ({failures[0][1]}) and group "
            f"{ref.group_id} could not record the abort"
        )
        try:
            body = await self._record_abort(ref, participants, end)
        except asyncio.CancelledError:
            # As for a cancellation during the prepares: let the abort reach the coordinator
            # in the background, or the prepared intents wait for recovery.
            self._spawn(self._send_after_outcome(_abort_request(ref, participants), ref.group_id))
            raise
        except _NoAnswer as exc:
            raise CommitUnknown(
                f"{unknown} (last: {exc.last}); it may still commit if every participant "
                "prepared — settle it with client.txn_status(err.ref, settle=True)",
                ref=ref,
            ) from exc.last
        except (PaxosKVError, ClientClosed) as exc:
            raise CommitUnknown(f"{unknown} ({exc})", ref=ref) from exc
        if body is None:
            raise CommitUnknown(
                f"{unknown}: it is still asking the participants whether every one prepared "
                "(then the transaction committed) — settle it with "
                "client.txn_status(err.ref, settle=True)",
                ref=ref,
            )
        if body.committed:
            self._clock.observe(body.commit_ts)
            return body.commit_ts
        raise _prepare_failure(ref, failures)

    async def _record_abort(
        self, ref: TxnRef, participants: list[int], end: float
    ) -> kv.DecideResponse | None:
        """Ask `ref`'s decision group for ABORT with a recovery Decide (`_abort_request`),
        re-sent while it answers `pending` (its prevent round is finding out whether every
        participant prepared); the recorded decision, or None if still pending at `end`.

        Raises:
            _NoAnswer, PaxosKVError, ClientClosed: as `_send_idempotent`.
        """
        attempt = 0
        while True:
            response = await self._send_idempotent(
                _abort_request(ref, participants), ref.group_id, end
            )
            if not response.decide.pending:
                return response.decide
            attempt += 1
            if not await self._pause(_RESEND_BACKOFF, attempt, end):
                return None

    def _resolve_all(
        self, txn_id: bytes, participants: Iterable[int], commit: bool, commit_ts: int
    ) -> None:
        for group in participants:
            op = kv.ResolveRequest(txn_id=txn_id, commit=commit, commit_ts=commit_ts)
            self._spawn(self._send_after_outcome(kv.Request(resolve=op), group))

    async def _send_after_outcome(self, request: kv.Request, group_id: int) -> None:
        """Best effort, in the background, a Resolve or Decide(abort) sent once the outcome
        is known: if it fails, recovery records the same outcome in the end."""
        loop = asyncio.get_running_loop()
        with contextlib.suppress(PaxosKVError, _NoAnswer):
            await self._send_idempotent(request, group_id, loop.time() + _DECIDE_TIMEOUT_S)

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        if self._closed:
            coro.close()
            return
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


@dataclass
class _Part:
    """One participant group's share of a transaction's commit."""

    reads: list[kv.ReadItem] = field(default_factory=list)
    writes: list[kv.WriteItem] = field(default_factory=list)
    ranges: list[kv.KeyRange] = field(default_factory=list)


def _union(ranges: list[kv.KeyRange]) -> list[kv.KeyRange]:
    """Scanned ranges as disjoint ones, in key order (an empty end is +inf): two scans of a
    transaction may overlap, and the phantom check of their union is the same check."""
    out: list[kv.KeyRange] = []
    for key_range in sorted(ranges, key=lambda r: r.start):
        last = out[-1] if out else None
        if last is None or (last.end and last.end < key_range.start):
            out.append(key_range)
        elif last.end and (not key_range.end or key_range.end > last.end):
            out[-1] = kv.KeyRange(start=last.start, end=key_range.end)
    return out


def _abort_request(ref: TxnRef, participants: list[int]) -> kv.Request:
    """The client's abort of a 2PC commit: a recovery Decide (txn.coordinator rule D3), never
    recorded over a set of yes votes that may be complete. Its `asker_ts`, the start time,
    is below every timestamp of the transaction (rule D4)."""
    return kv.Request(
        decide=kv.DecideRequest(
            txn_id=ref.txn_id,
            participants=participants,
            commit=False,
            recover=True,
            asker_ts=(ref.started_ns // 1000) << LOGICAL_BITS,
        )
    )


def _retryable_leaf(exc: BaseException) -> PaxosKVError | None:
    """The error to retry on for `exc`, or None when it must not be retried: `exc` itself,
    or the first leaf of an exception group (a TaskGroup of reads in the body), when every
    error in it is retryable and none may have committed."""
    leaves: list[BaseException] = []
    stack: list[BaseException] = [exc]
    while stack:
        e = stack.pop()
        if isinstance(e, BaseExceptionGroup):
            stack.extend(e.exceptions)
        else:
            leaves.append(e)
    retryable = [
        e for e in leaves if isinstance(e, PaxosKVError) and e.retryable and not e.maybe_committed
    ]
    return retryable[0] if leaves and len(retryable) == len(leaves) else None


def _prepare_failure(ref: TxnRef, failures: list[tuple[int, BaseException]]) -> BaseException:
    """The error to raise for failed prepares: a Conflict first; all are "not committed"."""
    for _, exc in failures:
        if isinstance(exc, Conflict):
            return exc
    _, exc = failures[0]
    if isinstance(exc, PaxosKVError) and exc.maybe_committed:
        exc.maybe_committed = False  # rule 2: the abort is recorded
    return exc


# ---------------------------------------------------------------------------- sync client


class Transaction:
    """A read-write transaction of a synchronous `Client`; see `AsyncTransaction`.

    Use as `with client.transaction() as tx:` (commits on normal exit, aborts when the block
    raises). Not safe to share between threads.

    Attributes:
        txn_id: the transaction's id (16 random bytes).
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

    def get(self, key: bytes, *, for_update: bool = False) -> bytes | None:
        """See `AsyncTransaction.get`."""
        return self._client._call(self._inner.get(key, for_update=for_update))

    def scan(
        self,
        start: bytes,
        end: bytes | None = None,
        limit: int = DEFAULT_SCAN_LIMIT,
        *,
        for_update: bool = False,
    ) -> list[tuple[bytes, bytes]]:
        """See `AsyncTransaction.scan` (the range is protected against phantoms)."""
        return self._client._call(self._inner.scan(start, end, limit, for_update=for_update))

    def put(self, key: bytes, value: bytes) -> None:
        """Buffer a write (sent at commit). See `AsyncTransaction.put`."""
        self._inner.put(key, value)

    def delete(self, key: bytes) -> None:
        """Buffer a delete (sent at commit). See `AsyncTransaction.delete`."""
        self._inner.delete(key)

    def put_fenced(self, key: bytes, value: bytes, *, lock: bytes, token: int) -> None:
        """Buffer a write fenced by `lock`'s token. See `AsyncTransaction.put_fenced`."""
        self._inner.put_fenced(key, value, lock=lock, token=token)

    def delete_fenced(self, key: bytes, *, lock: bytes, token: int) -> None:
        """Buffer a delete fenced by `lock`'s token. See `AsyncTransaction.delete_fenced`."""
        self._inner.delete_fenced(key, lock=lock, token=token)

    def commit(self) -> int:
        """Commit; returns the commit timestamp. See `AsyncTransaction.commit`."""
        try:
            return self._client._call(self._inner.commit())
        except ClientClosed:
            ref = self._inner.ref
            if self._inner.state is not TransactionState.UNKNOWN or ref is None:
                raise
            raise CommitUnknown(
                "the client was closed while the commit was in flight: it may or may not "
                "have committed; ask txn_status(err.ref) from another client",
                ref=ref,
            ) from None

    def abort(self) -> None:
        """Discard the transaction. See `AsyncTransaction.abort`."""
        if self._client._closed:
            self._inner.abort()  # nothing can be sent any more
            return

        async def on_the_client_loop() -> None:
            # Its release of update locks starts tasks on the client's loop.
            self._inner.abort()

        self._client._call(on_the_client_loop())

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
            ts = self._client._call(self._inner.timestamp())
        return ts

    def get(self, key: bytes) -> bytes | None:
        """See `AsyncSnapshot.get`."""
        return self._client._call(self._inner.get(key))

    def scan(
        self, start: bytes, end: bytes | None = None, limit: int = DEFAULT_SCAN_LIMIT
    ) -> list[tuple[bytes, bytes]]:
        """See `AsyncSnapshot.scan` (one consistent snapshot across shards)."""
        return self._client._call(self._inner.scan(start, end, limit))

    def close(self) -> None:
        """Further reads raise TransactionClosed."""
        self._inner.close()

    def __enter__(self) -> Snapshot:
        self._client._call(self._inner.timestamp())
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


async def _finish_loop_tasks() -> None:
    """Cancel and await every other task of the loop, as `asyncio.run` does at its end:
    gRPC's own tasks left pending when the loop stops print "Task was destroyed but it is
    pending!" when they are collected (seen after successful runs)."""
    current = asyncio.current_task()
    pending = [task for task in asyncio.all_tasks() if task is not current]
    for task in pending:
        task.cancel()
    await asyncio.gather(*pending, return_exceptions=True)
    await asyncio.get_running_loop().shutdown_asyncgens()


class Client:
    """A synchronous client of a paxoskv cluster: the `AsyncClient` API without `await`.

    It runs an `AsyncClient` on a private event loop in a background thread, so it works
    from plain scripts and from many threads at once (each thread with its own
    transactions). Do not call it from inside its own callbacks; from asyncio code use
    `AsyncClient`.

    Args:
        seeds, cluster_id, timeout_s, max_attempts, retry_timeout_s, backoff, rng,
        attempt_timeout_s, wall_ns, tls, settle_unknown: as `AsyncClient`.

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
        tls: ClientTls = "env",
        settle_unknown: bool = False,
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
            tls=tls,
            settle_unknown=settle_unknown,
        )
        self._policy = self._async._policy
        self._closed = False
        self._close_lock = threading.Lock()
        self._closing = False  # close() began: a cancelled call is ClientClosed
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="paxoskv-client", daemon=True
        )
        self._thread.start()

    # ------------------------------------------------------------------ plumbing

    def _call(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run `coro` on the client's loop and wait for it (cancelled if we are interrupted)."""
        if self._closed:
            coro.close()
            raise ClientClosed("the client is closed")
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
        try:
            future = asyncio.run_coroutine_threadsafe(job, self._loop)
        except RuntimeError:  # close() closed the loop since the check above
            job.close()
            coro.close()
            raise ClientClosed("the client is closed") from None
        try:
            return self._wait(future)
        except concurrent.futures.CancelledError:
            if not self._closing:
                raise
            # close() (from another thread) cancelled what was still running on the loop;
            # a cancellation is no error of ours (found by review).
            raise ClientClosed(
                "the client was closed while this call was in flight; a write or commit it "
                "made may or may not have happened"
            ) from None
        except BaseException:
            future.cancel()
            if started.is_set():
                # Let the loop run the cancellation (a commit then records UNKNOWN) before
                # the caller looks at the transaction's state.
                finished.wait(1.0)
            raise

    def _wait(self, future: concurrent.futures.Future[T]) -> T:
        """The result of `future`; ClientClosed if the loop thread ended without running it
        (close() stopped the loop after `_call` checked `_closed`: nothing would ever finish
        it, and the caller waited forever)."""
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

    def connect(self) -> Client:
        """Fetch the shard map now instead of on first use.

        Raises:
            WrongCluster, Unavailable: as `AsyncClient.connect`.
        """
        self._call(self._async.connect())
        return self

    def close(self) -> None:
        """Close the connections and stop the background thread (idempotent)."""
        with self._close_lock:
            if self._closed:
                return
            self._closing = True
            if threading.current_thread() is not self._thread:
                with contextlib.suppress(Exception):
                    self._call(self._async.close())
                with contextlib.suppress(Exception):
                    self._call(_finish_loop_tasks())
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

    def transaction(self) -> Transaction:
        """A new read-write transaction; use as `with client.transaction() as tx:`."""
        if self._closed:
            raise ClientClosed("the client is closed")
        return Transaction(self, self._async.transaction())

    def snapshot(self, read_ts: int | None = None) -> Snapshot:
        """Read-only reads at one timestamp; use as `with client.snapshot() as snap:`.

        Args:
            read_ts: as `AsyncClient.snapshot`.
        """
        return Snapshot(self, self._async.snapshot(read_ts))

    def run(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run `fn(tx, *args, **kwargs)` in a transaction and commit, retrying the whole
        function with a fresh transaction on retryable errors. See `AsyncClient.run`.

        Raises:
            TypeError: `fn` is a generator or coroutine function, or returned an awaitable
                (nothing is committed).
            TooManyRetries, CommitUnknown: as `AsyncClient.run`.
        """
        _refuse_generator(fn)
        if inspect.iscoroutinefunction(inspect.unwrap(fn)):
            raise TypeError(
                f"{getattr(fn, '__qualname__', fn)!r} is a coroutine function; use AsyncClient"
            )
        started = time.monotonic()
        attempts = 0
        priority = 0
        while True:
            attempts += 1
            if self._closed:
                raise ClientClosed("the client is closed")
            inner = self._async._attempt(priority)
            priority = inner._priority
            tx = Transaction(self, inner)
            try:
                result = fn(tx, *args, **kwargs)
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
                        if not self._async.settle_unknown:
                            raise
                        self._call(self._async._settle_lost_commit(inner, lost))
                return result
            except Exception as exc:
                if tx.state is TransactionState.OPEN:
                    tx.abort()
                if tx.state is not TransactionState.ABORTED:
                    raise  # committed (or may have): running the body again applies it twice
                delay = self._policy.next_delay(exc, attempts, time.monotonic() - started)
                if delay is None:
                    raise
            except BaseException:
                if tx.state is TransactionState.OPEN:
                    tx.abort()
                raise
            time.sleep(delay)

    def transactional(self, fn: Callable[..., T]) -> Callable[..., T]:
        """Decorator: see `AsyncClient.transactional` (first argument a `Transaction`:
        compose without committing; otherwise run, commit and retry).

        Raises:
            TypeError: `fn` is a generator function.
        """
        _refuse_generator(fn)

        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> T:
            if args and isinstance(args[0], Transaction):
                return fn(*args, **kwargs)
            return self.run(fn, *args, **kwargs)

        return wrapper

    def txn_status(
        self,
        ref: TxnRef | bytes,
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
            )
        )

    # ------------------------------------------------------------------ single-key helpers

    def get(self, key: bytes, *, timeout_s: float | None = None) -> bytes | None:
        """See `AsyncClient.get`."""
        return self._call(self._async.get(key, timeout_s=timeout_s))

    def put(self, key: bytes, value: bytes, *, timeout_s: float | None = None) -> int:
        """See `AsyncClient.put`."""
        return self._call(self._async.put(key, value, timeout_s=timeout_s))

    def delete(self, key: bytes, *, timeout_s: float | None = None) -> int:
        """See `AsyncClient.delete`."""
        return self._call(self._async.delete(key, timeout_s=timeout_s))

    def cas(
        self,
        key: bytes,
        *,
        expected_value: bytes | None = None,
        expected_version: int | None = None,
        expect_absent: bool = False,
        new_value: bytes | None = None,
        delete: bool = False,
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
                timeout_s=timeout_s,
            )
        )

    def scan(
        self,
        start: bytes,
        end: bytes | None = None,
        limit: int = DEFAULT_SCAN_LIMIT,
        *,
        timeout_s: float | None = None,
    ) -> list[tuple[bytes, bytes]]:
        """See `AsyncClient.scan`."""
        return self._call(self._async.scan(start, end, limit, timeout_s=timeout_s))

    def put_fenced(self, key: bytes, value: bytes, *, lock: bytes, token: int) -> int:
        """See `AsyncClient.put_fenced`; returns the commit timestamp."""
        return self._call(self._async.put_fenced(key, value, lock=lock, token=token))

    def delete_fenced(self, key: bytes, *, lock: bytes, token: int) -> int:
        """See `AsyncClient.delete_fenced`; returns the commit timestamp."""
        return self._call(self._async.delete_fenced(key, lock=lock, token=token))


# ---------------------------------------------------------------------------- decorator


def transactional(fn: Callable[..., T]) -> Callable[..., T]:
    """FoundationDB's `@fdb.transactional`: the first argument picks what happens.

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
        TypeError: `fn` is a generator function, or the first argument is neither a client
            nor a transaction.
    """
    _refuse_generator(fn)

    @functools.wraps(fn)
    def wrapper(db_or_tx: Any, *args: Any, **kwargs: Any) -> Any:
        if isinstance(db_or_tx, Transaction | AsyncTransaction):
            return fn(db_or_tx, *args, **kwargs)
        if isinstance(db_or_tx, Client | AsyncClient):
            return db_or_tx.run(fn, *args, **kwargs)
        raise TypeError(
            f"{getattr(fn, '__qualname__', fn)}() needs a Client, AsyncClient, Transaction or "
            f"AsyncTransaction as its first argument, got {type(db_or_tx).__name__}"
        )

    return wrapper
