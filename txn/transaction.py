"""A read-write transaction of `AsyncClient`: reads recorded, writes buffered, commit."""

from __future__ import annotations

import asyncio
import itertools
import warnings
from collections import Counter
from types import TracebackType
from typing import TYPE_CHECKING

from router.client_errors import InvalidArgument as RoutingInvalidArgument
from router.limits import (
    DELETE_RANGE_KEYS,
    MAX_ATOMIC_OPS,
    MAX_COMMAND_BYTES,
    key_oversized,
    value_oversized,
)
from router.ttl import ttl_ms_of
from txn.args import _as_flag, _as_key, _as_limit, _as_value
from txn.atomic import AtomicOp, apply_op, apply_ops, encode_int
from txn.errors import (
    Conflict,
    DeadlineExceeded,
    FencingTokenRejected,
    InvalidArgument,
    LimitExceeded,
    PaxosKVError,
    TransactionClosed,
    TxnRef,
)
from txn.records import MAX_TXN_ITEMS
from txn.status import TransactionState
from txn.unawaited import HandedOutReads, awaited_before_commit

if TYPE_CHECKING:
    from txn.client import AsyncClient

__all__ = ["AsyncTransaction"]


class AsyncTransaction:
    """A read-write transaction of an `AsyncClient`; create it with `client.transaction()`.

    Use as `async with client.transaction() as tx:` (commits on normal exit, aborts when
    the block raises) or call `commit()` / `abort()` yourself. Not safe to share between
    threads; concurrent coroutines of one event loop may read through it at once.

    Attributes:
        txn_id: the transaction's id, fixed at creation: its start timestamp and random
            bytes (txn/txn_ids.py).
    """

    def __init__(self, client: AsyncClient, txn_id: bytes, timeout_s: float | None = None) -> None:
        self._client = client
        self.txn_id = txn_id
        self._started_ns = client._wall_ns()
        # Its age for MAX_TXN_AGE_S: a clock no wall-clock step moves.
        self._started_mono = client._monotonic()
        self._writes: dict[bytes, bytes | None] = {}  # insertion order: first write first
        self._ttls: dict[bytes, int] = {}  # key in _writes -> its value's ttl_ms, if it has one
        # Atomic operations on keys not in _writes, applied at commit to the stored value.
        self._ops: dict[bytes, list[tuple[AtomicOp, bytes]]] = {}
        self._reads: dict[bytes, int] = {}  # key -> version read, in read order
        self._values: dict[bytes, bytes | None] = {}  # what each read returned
        self._fences: dict[bytes, int] = {}  # lock key -> fencing token (also in _reads)
        # Ranges [start, end) scanned (end None: no end); every key seen in them is in _reads.
        self._scanned: list[tuple[bytes, bytes | None]] = []
        self._state = TransactionState.OPEN
        self._commit_ts: int | None = None
        self._ref: TxnRef | None = None
        self._participants: list[int] = []  # the groups its commit went to, once sent
        # Wait-die age at the participants (0: this attempt's timestamp); see
        # `AsyncClient._attempt`.
        self._priority = 0
        self._locked: set[bytes] = set()  # keys read for update
        self._lock_groups: set[int] = set()  # groups whose leaders hold those locks
        self._handed_out = HandedOutReads()  # read coroutines, checked at commit
        # Its own bound (`client.transaction(timeout_s=)`; `run_within` and the one-transaction
        # helpers set it for the whole call): every read and the commit end by `_ends_mono`
        # on the client's monotonic clock, the only clock the sync Client's callers share.
        self._timeout_s = timeout_s
        self._ends_mono = None if timeout_s is None else self._started_mono + timeout_s

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

    @property
    def atomic_ops(self) -> dict[bytes, list[tuple[AtomicOp, bytes]]]:
        """A copy of the buffered atomic operations of keys not in `write_set`, per key in
        the order given (an operation on a key in `write_set` is applied to that write)."""
        return {key: list(ops) for key, ops in self._ops.items()}

    @property
    def scanned_ranges(self) -> list[tuple[bytes, bytes | None]]:
        """A copy of the key ranges [start, end) scanned so far (end None: to the last key),
        which commit validates as the reads are."""
        return list(self._scanned)

    def _timeout_for(self, what: str) -> float | None:
        """The timeout of its next call (`what`, for the error): None (the client's) unless
        its own `timeout_s` ends sooner.

        Raises:
            DeadlineExceeded: its `timeout_s` has run out (nothing was sent).
        """
        if self._ends_mono is None:
            return None
        left = self._ends_mono - self._client._monotonic()
        if left <= 0:
            raise DeadlineExceeded(
                f"transaction {self.txn_id.hex()} ran out of its timeout_s "
                f"({self._timeout_s:g} s) before its {what}: nothing of it was committed"
            )
        return min(left, self._client._timeout_s)

    def _check_open(self) -> None:
        if self._state is not TransactionState.OPEN:
            raise TransactionClosed(
                f"transaction {self.txn_id.hex()} is {self._state.value}; start a new one"
            )

    # -- reads

    @awaited_before_commit
    async def get(
        self, key: bytes, *, for_update: bool = False, snapshot: bool = False
    ) -> bytes | None:
        """The value of `key` as this transaction sees it: its own buffered write, else the
        latest committed value (recorded in the read set, unless `snapshot`).

        Args:
            key: the key (non-empty bytes).
            for_update: take the key's update lock at its shard leader first (as SQL's
                SELECT FOR UPDATE), for a key this transaction will write and others
                write too: conflicting transactions then queue at this read instead of
                all reading the same version and all but one aborting at commit. The
                lock is a scheduling hint (wound-wait by age: an older transaction takes
                it from a younger one, which then aborts and retries); correctness never
                depends on it. Released when the commit or abort reaches the leader.
            snapshot: read without recording the read (FoundationDB's snapshot reads):
                the commit does not check it, so a change of the key by another
                transaction meanwhile aborts nothing. For what the transaction only
                reports or uses as a hint (a counter shown, a configuration value); the
                transaction is no longer serializable with respect to that key. A key the
                transaction read before is answered from that read.

        Returns:
            The value, or None when the key does not exist. A key with buffered atomic
            operations (`atomic`, `add`) is read from the store, recorded as any read
            (so, unless `snapshot`, its operations no longer spare it conflicts), and
            answered with the operations applied.

        Raises:
            Conflict: the key is held by a prepared transaction past the read's deadline,
                it changed since this transaction first read it, or (for update) an older
                transaction holds or took its lock.
            Unavailable, DeadlineExceeded: the key's shard could not be read in time.
            TransactionClosed: the transaction is committed or aborted, or a commit of it
                began while this read was in flight (it did not validate the read).
        """
        key = _as_key(key)
        snapshot = _as_flag(snapshot, "snapshot")
        if snapshot and for_update:
            raise InvalidArgument(
                "for_update and snapshot exclude each other: a snapshot read takes no lock"
            )
        self._check_open()
        if key in self._writes:
            return self._writes[key]
        stored = await self._get_stored(key, for_update, snapshot)
        ops = self._ops.get(key)
        return stored if ops is None else apply_ops(stored, ops)

    async def _get_stored(self, key: bytes, for_update: bool, snapshot: bool) -> bytes | None:
        """`get` of a key without a buffered write: its committed value."""
        if key in self._values and (not for_update or key in self._locked):
            return self._values[key]
        timeout_s = self._timeout_for(f"read of {key!r}")
        if snapshot:
            value, _version = await self._client._read_latest(key, self.txn_id, timeout_s=timeout_s)
            self._check_open()
            return value
        if for_update:
            await self._client._ready(self._client._deadline(timeout_s))
            self._check_open()  # closed while connecting: its abort knew no lock group here
            self._priority = self._priority or self._client._clock.now(self._client._wall_ns())
            self._lock_groups.add(self._client._map().locate(key).group_id)
            # What connecting left (found by review: the read had the whole time again).
            timeout_s = self._timeout_for(f"read of {key!r}")
        value, version = await self._client._read_latest(
            key, self.txn_id, self._priority if for_update else 0, timeout_s=timeout_s
        )
        self._check_open()  # commit() began meanwhile: it did not validate this read
        if for_update:
            self._locked.add(key)  # only now: a failed read took no lock
        self._record_read(key, version, value)
        return value

    @awaited_before_commit
    async def scan(
        self,
        start: bytes,
        end: bytes | None = None,
        limit: int | None = None,
        *,
        reverse: bool = False,
        for_update: bool = False,
        snapshot: bool = False,
    ) -> list[tuple[bytes, bytes]]:
        """The (key, value) with start <= key < end, in key order, as this transaction sees
        them (its buffered writes and deletes applied): every one, or the first `limit`
        (with `reverse`: from the last key down, so `limit=1` is the range's last key).

        Every key returned from the store is recorded in the read set with its version, and
        the range itself (up to the last key returned when `limit` cut the scan) is recorded
        too (a reverse scan cut by `limit`: down to the last key returned): a key that
        another transaction adds to the range before this one commits is a phantom, and the
        commit raises `Conflict` (retryable), so "scan a prefix, then insert if nothing is
        there" is serializable. Until this transaction's commit is resolved,
        writes of others into the range wait at the shard leader (bounded; then they meet a
        retryable conflict).

        Args:
            start: the first key of the range (inclusive).
            end: the end of the range (exclusive); None: to the end of the key space.
            limit: at most this many items; None: every item of the range, never cut (a
                transaction reads at most MAX_TXN_ITEMS keys per group, so its commit
                refuses a longer range with LimitExceeded; with `for_update`, this scan
                does).
            reverse: descending key order; the first `limit` items are the range's last.
            for_update: take the update lock of every key the scan returns from the store,
                as `get(key, for_update=True)` does, and read each again under its lock
                (the values returned are those; a key deleted meanwhile is left out), so
                transactions that update the same rows queue instead of aborting. Keys
                added to the range later are not locked: the commit still refuses them as
                phantoms. At most MAX_TXN_ITEMS (4,096) items.
            snapshot: record neither the keys nor the range (as `get(snapshot=True)`):
                keys added, changed or deleted in it by others meanwhile abort nothing.

        Raises:
            InvalidArgument: a bad `start`, `end`, `limit`, `reverse`, `for_update` or
                `snapshot`, or both of the last two.
            Conflict, Unavailable, DeadlineExceeded, TransactionClosed: as `get`.
            LimitExceeded: `for_update` with a `limit` over MAX_TXN_ITEMS, or without a
                limit over a range of more keys than that.
            ServerError: a node too old for reverse scans answered one.
        """
        start = _as_key(start, "start key")
        end = None if end is None else _as_key(end, "end key")
        unlimited = limit is None
        limit = _as_limit(limit)
        reverse = _as_flag(reverse, "reverse")
        for_update = _as_flag(for_update, "for_update")
        snapshot = _as_flag(snapshot, "snapshot")
        if snapshot and for_update:
            raise InvalidArgument(
                "for_update and snapshot exclude each other: a snapshot scan takes no locks"
            )
        self._check_open()
        if for_update and limit > MAX_TXN_ITEMS:
            if not unlimited:
                raise LimitExceeded(
                    f"a scan for update locks every key it returns: its limit {limit} is "
                    f"over MAX_TXN_ITEMS ({MAX_TXN_ITEMS}), the most one transaction may "
                    "read per group"
                )
            limit = MAX_TXN_ITEMS + 1  # one more than it may lock: a longer range is refused
        if end is not None and end <= start:
            return []
        buffered = sorted(
            (
                k
                for k in itertools.chain(self._writes, self._ops)
                if k >= start and (end is None or k < end)
            ),
            reverse=reverse,
        )
        # Buffered writes that may take a stored key out of the result.
        removals = sum(1 for k in buffered if self._writes.get(k, b"") is None or k in self._ops)
        items, resume = await self._client._scan_range(
            start,
            end,
            limit + removals,
            reverse=reverse,
            txn_id=self.txn_id,
            timeout_s=self._timeout_for(f"scan from {start!r}"),
        )
        self._check_open()  # commit() began meanwhile: it did not validate this scan

        def past(key: bytes, bound: bytes) -> bool:
            """`key` comes after `bound` in the scan's order."""
            return key < bound if reverse else key > bound

        merged = {k: v for k, v, _ in items}
        last = items[-1][0] if items else None
        for k in buffered:
            if resume is not None and last is not None and past(k, last):
                break  # beyond what the store returned: keys in between are unknown
            v = self._writes[k] if k in self._writes else apply_ops(merged.get(k), self._ops[k])
            if v is None:
                merged.pop(k, None)
            else:
                merged[k] = v
        ordered = sorted(merged.items(), reverse=reverse)
        result = ordered[:limit]
        if for_update and unlimited and len(result) > MAX_TXN_ITEMS:
            raise LimitExceeded(
                f"a scan for update locks every key it returns, and [{start!r}, {end!r}) "
                f"holds more than MAX_TXN_ITEMS ({MAX_TXN_ITEMS}) keys: give a limit, or "
                "split the work over several transactions"
            )
        if snapshot:
            return result
        horizon = result[-1][0] if result else last
        # The whole range was seen when the store had no more and the limit cut nothing.
        whole = resume is None and len(ordered) <= limit
        # Read again under their locks (below): what the scan saw of them is not the read.
        relock = {k for k, _ in result if k not in self._writes} if for_update else set()
        for k, v, version in items:
            if not whole and horizon is not None and past(k, horizon):
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
        elif horizon is None:
            covered = None
        elif reverse:
            covered = (horizon, end)  # seen down to `horizon` only
        else:
            covered = (start, horizon + b"\x00")  # seen up to `horizon` only
        if covered is not None and covered not in self._scanned:
            self._scanned.append(covered)
        if relock and not whole and horizon is not None and len(result) < limit:
            # Keys deleted before their locked read left the page short although the range
            # goes on past `horizon`: fill it up, as a plain scan's page would be full.
            rest = (start, horizon) if reverse else (horizon + b"\x00", end)
            result += await self.scan(*rest, limit - len(result), reverse=reverse, for_update=True)
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

    async def _view_changed(self) -> Conflict | None:
        """A Conflict naming a key this transaction read that changed since (or a range it
        scanned that holds other keys now), or None when every read is still current, or
        when there was one read and no scan (one moment's view: nothing to check).

        Reads of a read-write transaction see the latest data when each is made, not one
        snapshot: a body can read half before and half after another commit (the commit
        validation then refuses it, but a body that raises never gets there). When every
        read is still current, all of them were at one moment (the last read's: each stayed
        current from its read to its check), so the body's view was consistent.
        """
        keys = list(self._values)  # what the body read (a fenced lock is in the read set only)
        if len(keys) <= 1 and not self._scanned:
            # One read is a view of one moment by itself: a uniqueness check's refusal
            # ("taken") costs no second read round (found by an application trial).
            return None
        timeout_s = self._timeout_for("check of its reads")
        versions = await asyncio.gather(
            *(self._client._read_latest(k, self.txn_id, timeout_s=timeout_s) for k in keys)
        )
        for key, (_value, version) in zip(keys, versions, strict=True):
            if version != self._reads[key]:
                return self._changed(key, f"version {self._reads[key]}, now {version}")
        for start, end in self._scanned:
            seen = {
                k: v
                for k, v in self._reads.items()
                if self._values.get(k) is not None and k >= start and (end is None or k < end)
            }
            items, _ = await self._client._scan_range(
                start,
                end,
                len(seen) + 1,
                txn_id=self.txn_id,
                timeout_s=self._timeout_for("check of its reads"),  # what the reads before left
            )
            now = {k: version for k, _value, version in items}
            if now != seen:
                key = min(k for k in now.keys() | seen.keys() if now.get(k) != seen.get(k))
                return self._changed(key, "the scanned range holds other keys or versions now")
        return None

    def _changed(self, key: bytes, detail: str) -> Conflict:
        return Conflict(
            key,
            b"",
            "read",
            f"what the transaction read changed while its body ran ({detail}): the body's "
            "error may come from reading between another transaction's writes",
            txn_id=self.txn_id,
        )

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

    def put(self, key: bytes, value: bytes, *, ttl_s: float | None = None) -> None:
        """Buffer a write of `value` under `key` (sent at commit; no I/O, no await).

        With `ttl_s` the value lives that many seconds after the commit's timestamp, then
        the key's leader deletes it unless it was written again (as `AsyncClient.put`).

        Raises:
            InvalidArgument: key or value is not bytes, or the key is empty; a bad `ttl_s`.
            LimitExceeded: the key or the value is over its size limit (here, as
                FoundationDB's set() does, not only at commit: found by review).
            TransactionClosed: the transaction is committed or aborted.
        """
        key, value, ttl_ms = _checked_put(key, value, ttl_s)
        self._check_open()
        self._buffer_write(key, value, ttl_ms)

    def _buffer_write(self, key: bytes, value: bytes | None, ttl_ms: int) -> None:
        """Buffer a checked write (`value` None: a delete), replacing any earlier one."""
        self._ops.pop(key, None)
        self._writes[key] = value
        if ttl_ms:
            self._ttls[key] = ttl_ms
        else:
            self._ttls.pop(key, None)

    def delete(self, key: bytes) -> None:
        """Buffer a delete of `key` (sent at commit; no I/O, no await).

        Raises:
            InvalidArgument: the key is not bytes or empty.
            LimitExceeded: the key is over its size limit.
            TransactionClosed: the transaction is committed or aborted.
        """
        key = _checked_delete(key)
        self._check_open()
        self._buffer_write(key, None, 0)

    def atomic(self, key: bytes, op: AtomicOp, operand: bytes) -> None:
        """Buffer an atomic operation on `key` (FoundationDB's atomic mutations; no I/O).

        The shard applies it at commit to the key's value then, so the transaction reads
        nothing: transactions that only add to one counter never conflict over a read of
        it, and each operation is applied exactly once. Operations on one key apply in
        order; one after this transaction's own put or delete of the key applies to that
        write. `txn.atomic.AtomicOp` documents each operation.

        Args:
            key: the key.
            op: the operation, an `AtomicOp`.
            operand: its operand (bytes, at most the value size limit).

        Raises:
            InvalidArgument: a bad key, operation or operand.
            LimitExceeded: the key or operand is over its size limit, or the key has
                MAX_ATOMIC_OPS (64) operations already. (The commit refuses more than
                MAX_ATOMIC_OPS in one shard, over all keys: each reads its key's value
                where the commit is applied.)
            TransactionClosed: the transaction is committed or aborted.
        """
        key, operand = _as_key(key), _as_key(operand, "operand")
        if not isinstance(op, AtomicOp):
            raise InvalidArgument(f"an atomic operation is a txn.AtomicOp, got {op!r}")
        over = key_oversized(key) or value_oversized(operand)
        if over is not None:
            raise LimitExceeded(str(over))
        self._check_open()
        if key in self._writes:
            self._writes[key] = apply_op(op, self._writes[key], operand)
            return
        ops = self._ops.setdefault(key, [])
        if len(ops) >= MAX_ATOMIC_OPS:
            raise LimitExceeded(
                f"key {key!r} has {MAX_ATOMIC_OPS} atomic operations in this transaction, "
                "the most one shard takes (MAX_ATOMIC_OPS)"
            )
        ops.append((op, operand))

    def add(self, key: bytes, delta: int) -> None:
        """Buffer an addition of `delta` to the counter at `key`: `atomic(key, AtomicOp.ADD,
        encode_int(delta))`. The counter is 8 bytes, little-endian (an absent key counts
        0); read it with `txn.decode_int`. Two transactions adding to one counter do not
        conflict, on one shard or across shards.

        Raises:
            InvalidArgument: a bad key, or `delta` not an int in [-2**63, 2**64).
            LimitExceeded, TransactionClosed: as `atomic`.
        """
        try:
            operand = encode_int(delta)
        except ValueError as exc:
            raise InvalidArgument(str(exc)) from None
        self.atomic(key, AtomicOp.ADD, operand)

    @awaited_before_commit
    async def delete_range(self, start: bytes, end: bytes | None, limit: int | None = None) -> int:
        """Delete every key with start <= key < end as this transaction sees it (or the first
        `limit`); returns how many. `end` None is the end of the key space, given
        explicitly. FoundationDB's `clear_range`, etcd's `DeleteRange`, but not blind.

        It reads the range first, as `scan` does: phantom-safe, a key that another
        transaction adds to the range before this one commits makes the commit raise
        `Conflict` (retryable; `run` re-runs the body and deletes it too), and so does a
        change to a key it deletes (FoundationDB's clear_range reads nothing and conflicts
        with nothing). Each key is read and written, so one transaction deletes at most
        DELETE_RANGE_KEYS (2,047) keys in a group (MAX_TXN_ITEMS items there; fewer when
        the transaction also reads, writes or scans more there): clear a larger range a part per
        transaction, `while client.run(lambda tx: tx.delete_range(a, b, 1000)): pass`
        (each run returns how many it deleted).

        Raises:
            LimitExceeded: the keys to delete in one group are more than DELETE_RANGE_KEYS,
                or their bytes, read and written, more than MAX_COMMAND_BYTES; nothing is
                deleted, but the keys read stay in the read set: abort the transaction.
            InvalidArgument: `end` is not after `start`, or a bad argument as for `scan`.
            Conflict, Unavailable, DeadlineExceeded, TransactionClosed: as `scan`.
        """
        start = _as_key(start, "start key")
        end = None if end is None else _as_key(end, "end key")
        if end is not None and end <= start:
            raise InvalidArgument(f"delete_range of [{start!r}, {end!r}): end must be after start")
        cap = None
        if limit is None:
            # The shard map, below.
            await self._client._ready(self._client._deadline(self._timeout_for("delete_range")))
            # Enough to see any group hold one key too many, however the range spreads.
            cap = (DELETE_RANGE_KEYS + 1) * len(self._client._connected_map().group_ids())
        items = await self.scan(start, end, limit if cap is None else cap)
        refusal = self._delete_range_refusal(start, end, [key for key, _ in items])
        if refusal is None and cap is not None and len(items) >= cap:
            # Cut by the cap with no group over it: the shard map gained groups while the
            # range was read (review), so the keys past the cut were never looked at.
            refusal = f"delete_range read {cap} keys of the range and more may follow"
        if refusal is not None:
            raise LimitExceeded(
                f"{refusal}: give a limit and delete the range a part per transaction (the "
                "keys read stay in this transaction's read set: abort it first)"
            )
        for key, _ in items:
            self.delete(key)
        return len(items)

    def _delete_range_refusal(
        self, start: bytes, end: bytes | None, keys: list[bytes]
    ) -> str | None:
        """Why deleting `keys` (each read and written) is more than a transaction may carry
        in one group (router.limits.txn_part_refusal's bounds), or None."""
        count: Counter[int] = Counter()
        size: Counter[int] = Counter()
        for key in keys:
            group = self._client.group_of(key)
            count[group] += 1
            size[group] += 2 * len(key)
        bounds = len(start) + len(end or b"")
        for group in count:
            if count[group] > DELETE_RANGE_KEYS:
                return f"delete_range holds more than {DELETE_RANGE_KEYS} keys in group {group}"
            if size[group] + bounds > MAX_COMMAND_BYTES:
                return (
                    f"delete_range's keys in group {group}, read and deleted, are "
                    f"{size[group] + bounds} bytes, over {MAX_COMMAND_BYTES} (MAX_COMMAND_BYTES)"
                )
        return None

    def put_fenced(
        self,
        key: bytes,
        value: bytes,
        *,
        lock: bytes,
        token: int,
        ttl_s: float | None = None,
    ) -> None:
        """Buffer a write that commits only while `lock`'s latest version is `token`.

        The lock key joins the read set at version `token` (no I/O here), so the store
        validates it in the same replicated PREPARE / one-phase commit that writes `key`
        (`txn.client` docstring, "Fenced writes").

        Args:
            key, value: the write.
            lock: the lock key whose record the token came from.
            token: the lock's fencing token: the commit timestamp of the transaction that
                wrote the lock record (> 0).
            ttl_s: how long the value lives after the commit (as `put`'s): a leader
                pointer or a lease written under the lock goes away on its own when its
                holder stops renewing it.

        Raises:
            FencingTokenRejected: this transaction already read `lock` at another version,
                or (at commit) the store refused the token.
            InvalidArgument: a bad key, value, token or `ttl_s`, or two tokens for one lock.
            LimitExceeded: the key or the value is over its size limit.
            TransactionClosed: the transaction is committed or aborted.
        """
        key, value, ttl_ms = _checked_put(key, value, ttl_s)  # a bad write leaves no fence
        self._fence(lock, token)
        self._buffer_write(key, value, ttl_ms)

    def delete_fenced(self, key: bytes, *, lock: bytes, token: int) -> None:
        """Buffer a delete that commits only while `lock`'s latest version is `token`.

        Raises:
            As `put_fenced`.
        """
        key = _checked_delete(key)
        self._fence(lock, token)
        self._buffer_write(key, None, 0)

    def _fence(self, lock: bytes, token: int) -> None:
        lock = _as_key(lock, "key")
        self._check_open()
        if isinstance(token, bool) or not isinstance(token, int) or not 0 < token < 1 << 64:
            raise InvalidArgument(
                f"a fencing token is a commit timestamp in (0, 2**64), got {token!r}"
            )
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
        """Commit: one-phase on one group, two-phase across groups (`txn.client` docstring).

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
            TransactionTooOld: it began more than `txn.commit.MAX_TXN_AGE_S` (20 s) ago;
                nothing was sent. Retryable.
            TransactionClosed: already committed or aborted.
        """
        self._check_open()
        never_awaited = self._handed_out.never_awaited()
        if never_awaited:
            self._abort(release_locks=True)
            more = f" (and {len(never_awaited) - 1} more)" if len(never_awaited) > 1 else ""
            raise InvalidArgument(
                f"{never_awaited[0]}{more} was never awaited, so the transaction would commit "
                "without that read (a coroutine, not its value, reached the code after it): "
                "add await; the transaction is aborted"
            )
        self._state = TransactionState.COMMITTING
        try:
            commit_ts = await self._client._committer.commit(self)
        except Conflict as exc:
            self._state = TransactionState.ABORTED
            if self._fences and not isinstance(exc, FencingTokenRejected):
                stale = await self._client._committer.stale_fence(self)
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
                    self._client._committer.resolve_all(self.txn_id, self._lock_groups, False, 0)
                raise
            # Cancelled or interrupted part-way: the commit requests may be on the wire.
            self._state = TransactionState.UNKNOWN
            raise
        unresolved = self._lock_groups.difference(self._participants)
        if unresolved:
            # A read for update that failed may still have taken its lock there, and the
            # commit's Resolves go only to the participants (found by review: such a lock
            # held its key's writers until it expired).
            self._client._committer.resolve_all(self.txn_id, unresolved, False, 0)
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
        self._abort(release_locks=True)

    def _abort(self, release_locks: bool) -> None:
        """`abort`; `release_locks` False when nothing can be sent any more (the client is
        closed), and the update locks its reads took expire at their leaders."""
        if self._state in (TransactionState.OPEN, TransactionState.ABORTED):
            if release_locks and self._state is TransactionState.OPEN and self._lock_groups:
                # Let the transactions queued behind this one's update locks go now.
                self._client._committer.resolve_all(self.txn_id, self._lock_groups, False, 0)
            self._state = TransactionState.ABORTED
            self._writes.clear()
            self._ttls.clear()
            self._ops.clear()
            return
        if self._state in (TransactionState.COMMITTED, TransactionState.UNKNOWN):
            # As SQLAlchemy's rollback() after a commit. Raising here replaced the error in
            # flight in `except: tx.abort(); raise`: a CommitUnknown read as not committed.
            return
        raise TransactionClosed(
            f"transaction {self.txn_id.hex()} is {self._state.value}; it cannot be aborted"
        )

    def __del__(self) -> None:
        # A transaction dropped open (a handler that returned without commit or abort)
        # would hold its update locks until they expire (2 s), every writer of those keys
        # waiting behind them meanwhile.
        if not getattr(self, "_lock_groups", None) or self._state is not TransactionState.OPEN:
            return
        # Released first: with warnings as errors (-W error) the warning raises (found by
        # review: the locks were then kept).
        self._client._release_dropped(self.txn_id, set(self._lock_groups))
        warnings.warn(
            f"transaction {self.txn_id.hex()} was dropped open holding update locks: they "
            "are released now; end a transaction with commit() or abort(), or use "
            "`with client.transaction() as tx:`",
            ResourceWarning,
            stacklevel=1,  # a finalizer: no caller of its own to point at
            source=self,
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
            f"reads={len(self._reads)} writes={len(self._writes) + len(self._ops)}>"
        )


def _checked_put(key: bytes, value: bytes, ttl_s: float | None) -> tuple[bytes, bytes, int]:
    """A write's key, value and ttl_ms, checked before anything is buffered.

    Raises:
        InvalidArgument: a key or value not bytes, an empty key, a bad `ttl_s`.
        LimitExceeded: the key or the value over its size limit.
    """
    key, value = _as_key(key), _as_value(value)
    over = key_oversized(key) or value_oversized(value)
    if over is not None:
        raise LimitExceeded(str(over))
    try:
        return key, value, ttl_ms_of(ttl_s)
    except RoutingInvalidArgument as exc:
        raise InvalidArgument(str(exc)) from None


def _checked_delete(key: bytes) -> bytes:
    """A delete's key, checked before anything is buffered (raises as `_checked_put`)."""
    key = _as_key(key)
    over = key_oversized(key)
    if over is not None:
        raise LimitExceeded(str(over))
    return key
