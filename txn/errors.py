"""The errors of the transaction client: one table, flagged like FoundationDB's.

Rule (flow `error_definitions.h`): a separate error exists *iff* a caller could sensibly catch
it and react specifically. Every error carries three class-level flags (`fdb.options`
predicates):

- `code`: a stable name to match on (the server's `kv.ErrorCode` name where there is one);
- `retryable`: re-running the transaction (from fresh reads) may succeed; nothing was
  committed. `client.run` / `@client.transactional` retry these, except DeadlineExceeded:
  an attempt that waited out its whole deadline is not run again (another would wait as
  long; FoundationDB does not retry transaction_timed_out either);
- `maybe_committed`: the transaction (or write) may have been applied. Never retried
  automatically: check with `client.txn_status(err.ref)` or make the transaction idempotent
  (FoundationDB developer guide, "Transactions with unknown results").

=====================  ======================  =========  ===============  ==========================
class                  code                    retryable  maybe_committed  meaning
=====================  ======================  =========  ===============  ==========================
PaxosKVError           ERROR                   no         no               base class
Conflict               CONFLICT                yes        no               a key changed or is held
                                                                           by another transaction
FencingTokenRejected   FENCING_TOKEN_REJECTED  no         no               a fenced write's token is
                                                                           not the lock's latest
Unavailable            UNAVAILABLE             yes        no               no leader / node down /
                                                                           shard map changed
DeadlineExceeded       DEADLINE_EXCEEDED       yes        no               no answer before deadline
OutcomeUnknown         OUTCOME_UNKNOWN         no         yes              a single-key write's answer
                                                                           was lost
CommitUnknown          COMMIT_UNKNOWN          no         yes              a commit's answer was lost
LimitExceeded          LIMIT_EXCEEDED          no         no               key/value/txn too large
InvalidArgument        INVALID_ARGUMENT        no         no               malformed request
WatchClosed            WATCH_CLOSED            no         no               a closed watch read or
                                                                           entered
WrongCluster           WRONG_CLUSTER           no         no               seeds of another cluster
ServerError            INTERNAL                no         per instance     a node reported a bug
ClientClosed           CLIENT_CLOSED           no         per instance     the client was closed
                                                                           (mid-write: maybe)
TransactionClosed      TRANSACTION_CLOSED      no         no               use after commit/abort
TransactionTooOld      TRANSACTION_TOO_OLD     yes        no               committed too long after
                                                                           its start
SnapshotTooOld         SNAPSHOT_TOO_OLD        yes        no               a snapshot read older than
                                                                           the MVCC retention
TooManyRetries         TOO_MANY_RETRIES        no         no               retry budget used up
=====================  ======================  =========  ===============  ==========================

Routing errors. The routing layer (`router.client_errors`) has its own classes with the same
flags. Each class here that has a routing counterpart *also* subclasses it, and the
transaction client translates every routing error it meets into the class here. So both
`except txn.Unavailable` and `except router.client_errors.Unavailable` catch what the
transaction client raises, and `except txn.PaxosKVError` catches all of it.

This module is pure: no I/O, importable anywhere (it imports only `router.client_errors`
and the pure `txn.hlc` and `txn.txn_ids`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from router import client_errors as routing
from txn.hlc import physical_us
from txn.txn_ids import start_ts_of

if TYPE_CHECKING:
    from router import kv_pb2 as kv

__all__ = [
    "ERRORS",
    "ClientClosed",
    "CommitUnknown",
    "Conflict",
    "DeadlineExceeded",
    "InvalidArgument",
    "LimitExceeded",
    "OutcomeUnknown",
    "PaxosKVError",
    "ServerError",
    "SnapshotTooOld",
    "TooManyRetries",
    "TransactionClosed",
    "TransactionTooOld",
    "TxnRef",
    "Unavailable",
    "WrongCluster",
    "from_routing_error",
]


@dataclass(frozen=True, slots=True)
class TxnRef:
    """Where to ask about a transaction's outcome: its id and the group holding its decision.

    `group_id` is the coordinator group of a two-phase commit, or the only group of a
    one-phase commit. Pass it to `client.txn_status(ref)`. `started_ns` is when the
    transaction began, in wall-clock nanoseconds; settling an outcome needs it
    (`txn_status(ref, settle=True)`). Left out (or 0), it is the physical part of the start
    timestamp the id carries (txn/txn_ids.py), or 0 (unknown) for an id without one.
    """

    txn_id: bytes
    group_id: int
    started_ns: int = field(default=0, compare=False)

    def __post_init__(self) -> None:
        if not self.started_ns:
            start_ns = physical_us(start_ts_of(self.txn_id)) * 1000
            object.__setattr__(self, "started_ns", start_ns)

    def __repr__(self) -> str:
        return f"TxnRef(txn_id={self.txn_id.hex()!r}, group_id={self.group_id})"

    def __str__(self) -> str:
        """`TXN_ID_HEX:GROUP:STARTED_NS` (`:STARTED_NS` left out when unknown), the form
        `TxnRef.parse` and `paxoskv txn-status` read: log it to settle an outcome later."""
        text = f"{self.txn_id.hex()}:{self.group_id}"
        return f"{text}:{self.started_ns}" if self.started_ns else text

    @classmethod
    def parse(cls, text: str) -> TxnRef:
        """The ref `str(ref)` printed.

        Raises:
            InvalidArgument: not `TXN_ID_HEX:GROUP[:STARTED_NS]`.
        """
        parts = text.strip().split(":")
        try:
            if len(parts) not in (2, 3) or not parts[0]:
                raise ValueError("expected 2 or 3 fields")
            txn_id = bytes.fromhex(parts[0])
            group_id = int(parts[1])
            started_ns = int(parts[2]) if len(parts) == 3 else 0
            if group_id < 0 or started_ns < 0:
                raise ValueError("negative")
        except ValueError:
            raise InvalidArgument(
                f"{text!r} is not a transaction ref: expected TXN_ID_HEX:GROUP[:STARTED_NS], "
                "as a CommitUnknown error prints it"
            ) from None
        return cls(txn_id, group_id, started_ns)


class PaxosKVError(Exception):
    """Base class of every error the transaction client raises.

    Attributes:
        code: a stable name to match on.
        retryable: re-running the whole transaction may succeed; nothing was committed.
        maybe_committed: the transaction or write may have been applied.
    """

    code: str = "ERROR"
    retryable: bool = False
    maybe_committed: bool = False

    def __init__(self, message: str, *, maybe_committed: bool | None = None) -> None:
        super().__init__(message)
        if maybe_committed is not None:
            self.maybe_committed = maybe_committed

    def __reduce__(self) -> tuple[Any, ...]:
        # Pickling (multiprocessing, ProcessPoolExecutor, copy.copy) rebuilds an exception
        # as cls(*args): the subclasses' __init__ take other arguments than the message, so
        # a CommitUnknown failed to unpickle (TypeError) and a Conflict came back garbled.
        return (_rebuild, (type(self), self.args, dict(self.__dict__)))


def _rebuild(cls: type[PaxosKVError], args: tuple[Any, ...], state: dict[str, Any]) -> PaxosKVError:
    """The error `PaxosKVError.__reduce__` describes, without running its __init__."""
    err = cls.__new__(cls, *args)
    err.args = args
    err.__dict__.update(state)
    return err


class Conflict(PaxosKVError):
    """Another transaction got in the way; nothing of this transaction was written.

    Re-run the transaction from fresh reads (`client.run` does it for you).

    Attributes:
        key: the key in dispute (b"" when the conflict is not about one key).
        other_txn: the other transaction's id (b"" when unknown or none, e.g. a read whose
            version changed because of a committed write).
        phase: "read" (a read met a prepared write intent, or a key changed between two reads
            of this transaction), "prepare" (a participant voted no), "commit" (a one-phase
            commit was refused, or the coordinator had already recorded an abort) or "write"
            (a single-key write met an intent).
        reason: the node's explanation.
        txn_id: this transaction's id (b"" for single-key operations).
    """

    code = "CONFLICT"
    retryable = True
    maybe_committed = False

    def __init__(
        self,
        key: bytes,
        other_txn: bytes = b"",
        phase: str = "",
        reason: str = "",
        *,
        txn_id: bytes = b"",
    ) -> None:
        self.key = key
        self.other_txn = other_txn
        self.phase = phase
        self.reason = reason
        self.txn_id = txn_id
        who = f"transaction {other_txn.hex()}" if other_txn else "another transaction"
        text = f"conflict on key {key!r}" if key else "conflict"
        if phase:
            text += f" in the {phase} phase"
        if reason:
            text += f": {reason}"
        text += f" ({who}"
        if txn_id:
            text += f"; this transaction {txn_id.hex()}"
        self.summary = text + ")"  # without the advice: for messages that embed this one
        if phase == "write":  # a single-key write's (found by an application trial)
            text += "); nothing was written, send the write again"
        else:
            text += "); nothing was written, re-run the transaction from fresh reads"
        super().__init__(text)


class Unavailable(PaxosKVError, routing.Unavailable):
    """No replica could serve the request in time (no leader, nodes down, the shard map
    changed under a commit). Nothing was committed; retryable."""

    code = "UNAVAILABLE"
    retryable = True
    maybe_committed = False


class DeadlineExceeded(Unavailable, routing.DeadlineExceeded):
    """No answer before the deadline; nothing was committed, so trying again later is safe
    (`retryable`). `run` does not retry it: its attempt already waited a whole `timeout_s`,
    and another would wait as long while the cluster does not answer (as FoundationDB's
    transaction_timed_out)."""

    code = "DEADLINE_EXCEEDED"
    retryable = True
    maybe_committed = False


class OutcomeUnknown(PaxosKVError, routing.OutcomeUnknown):
    """A single-key write may or may not have been applied, and may still be applied later
    (`router.client_errors.OUTCOME_ADVICE` says what to do)."""

    code = "OUTCOME_UNKNOWN"
    retryable = False
    maybe_committed = True


SETTLE_ADVICE = "settle it with client.txn_status(err.ref, settle=True) before re-running it"
"""What a `CommitUnknown` tells its Python caller to do."""


class CommitUnknown(OutcomeUnknown):
    """The commit's outcome could not be learned: the transaction may or may not have
    committed (its answer was lost, or the abort it asked for was still undecided at the
    deadline).

    Not retried automatically (re-running could apply it twice). Ask
    `client.txn_status(err.ref)`, or make the transaction idempotent (e.g. write a unique
    marker key and check it at the start of the transaction).

    The message is "transaction ID: REASON (DETAILS) — ADVICE".

    Attributes:
        ref: the transaction's id and decision group, for `client.txn_status`.
        reason: what happened, in short: for a caller that gives its own advice (`paxoskv
            txn` prints the command that settles it; found by review: it printed the
            Python advice too, in a line of 900 characters).
    """

    code = "COMMIT_UNKNOWN"
    retryable = False
    maybe_committed = True

    def __init__(
        self, reason: str, *, ref: TxnRef, details: str = "", advice: str = SETTLE_ADVICE
    ) -> None:
        more = f" ({details})" if details else ""
        super().__init__(f"transaction {ref.txn_id.hex()}: {reason}{more} — {advice}")
        self.ref = ref
        self.reason = reason


class LimitExceeded(PaxosKVError, routing.LimitExceeded):
    """A key, value or transaction is over a documented size limit; nothing was applied."""

    code = "LIMIT_EXCEEDED"
    retryable = False
    maybe_committed = False


class InvalidArgument(PaxosKVError, routing.InvalidArgument):
    """A malformed request or call (e.g. an empty key); nothing was applied."""

    code = "INVALID_ARGUMENT"
    retryable = False
    maybe_committed = False


class WatchClosed(InvalidArgument):
    """The watch was closed (by `close()`, leaving its `with`, or another thread): make a new
    one, `after=watch.through` to go on without a gap. Iterating a watch ends instead."""

    code = "WATCH_CLOSED"
    retryable = False
    maybe_committed = False


class SnapshotTooOld(PaxosKVError, routing.SnapshotTooOld):
    """A snapshot read (or scan) at a timestamp older than the shard's MVCC retention
    (`mvcc_retention_s`, 10 minutes by default): its versions may be collected. Nothing
    was applied; take a new snapshot (retryable), as FoundationDB's `transaction_too_old`
    and etcd's "required revision has been compacted" ask."""

    code = "SNAPSHOT_TOO_OLD"
    retryable = True
    maybe_committed = False


class WrongCluster(PaxosKVError, routing.WrongCluster):
    """The seeds belong to another cluster than `cluster_id`."""

    code = "WRONG_CLUSTER"
    retryable = False
    maybe_committed = False


class ServerError(PaxosKVError, routing.ServerError):
    """A node reported an internal error (a bug). `maybe_committed` is set per instance."""

    code = "INTERNAL"
    retryable = False
    maybe_committed = False


class ClientClosed(PaxosKVError, routing.ClientClosed):
    """The client was closed; create a new one. `maybe_committed` is set when the close
    cut off a write or commit in flight (it may have been applied)."""

    code = "CLIENT_CLOSED"
    retryable = False
    maybe_committed = False


class TransactionClosed(PaxosKVError):
    """The transaction was already committed or aborted; start a new one."""

    code = "TRANSACTION_CLOSED"
    retryable = False
    maybe_committed = False


class TransactionTooOld(PaxosKVError):
    """The transaction began more than `txn.commit.MAX_TXN_AGE_S` before its commit, which
    was refused before anything was sent; nothing was written. Re-run it (`client.run`
    does), keeping its work between the first read and the commit short.

    Nodes judge a transaction's commit by the start its id carries and refuse one older
    than what they still remember (shard/node.py rule 13, participant rule P7), so a
    transaction kept open longer could never commit (FoundationDB's `transaction_too_old`
    limits a transaction to 5 s).
    """

    code = "TRANSACTION_TOO_OLD"
    retryable = True
    maybe_committed = False


class TooManyRetries(PaxosKVError):
    """`client.run` gave up after its attempt or time budget; nothing was committed.

    Attributes:
        last_error: the last retryable error (also the `__cause__`).
        attempts: how many times the transaction ran.
    """

    code = "TOO_MANY_RETRIES"
    retryable = False
    maybe_committed = False

    def __init__(self, last_error: PaxosKVError, attempts: int) -> None:
        self.last_error = last_error
        self.attempts = attempts
        super().__init__(
            f"gave up after {attempts} attempt{'s' if attempts != 1 else ''}; last error: "
            f"{last_error}"
        )


class FencingTokenRejected(Conflict):
    """A fenced write was refused: the lock key no longer has the token's version (someone
    re-acquired or released the lock, it expired, or its record was rewritten). Nothing of
    the transaction was written.

    Not retryable: a newer version never goes away, so re-running cannot succeed with this
    token. Re-acquire the lock for a new token instead.

    Attributes:
        lock: the lock key.
        token: the token the write carried.
        latest_version: the lock key's version the client saw when classifying the refusal
            (None when unknown).
    """

    code = "FENCING_TOKEN_REJECTED"
    retryable = False
    maybe_committed = False

    def __init__(
        self, lock: bytes, token: int, latest_version: int | None = None, *, txn_id: bytes = b""
    ) -> None:
        now = "" if latest_version is None else f" (its latest version is {latest_version})"
        reason = f"fencing token {token} is not the current version of lock {lock!r}{now}"
        super().__init__(lock, b"", "commit", reason, txn_id=txn_id)
        self.lock = lock
        self.token = token
        self.latest_version = latest_version
        if latest_version == 0:
            why = "the lock key was never written, so no token fences it"
        else:
            why = (
                "the lock was re-acquired, released or expired (its time to live ran out), "
                "or its record rewritten"
            )
        self.args = (
            f"{reason}: {why}, so the store refused the fenced write; nothing was written. "
            "Acquire the lock again for a new token",
        )


ERRORS: tuple[type[PaxosKVError], ...] = (
    PaxosKVError,
    Conflict,
    FencingTokenRejected,
    Unavailable,
    DeadlineExceeded,
    OutcomeUnknown,
    CommitUnknown,
    LimitExceeded,
    InvalidArgument,
    WatchClosed,
    WrongCluster,
    ServerError,
    ClientClosed,
    TransactionClosed,
    TransactionTooOld,
    SnapshotTooOld,
    TooManyRetries,
)
"""Every error class, in the order of the table above."""

# Routing class -> ours; most specific first (DeadlineExceeded is an Unavailable).
_TRANSLATION: tuple[tuple[type[routing.ClientError], type[PaxosKVError]], ...] = (
    (routing.DeadlineExceeded, DeadlineExceeded),
    (routing.Unavailable, Unavailable),
    (routing.OutcomeUnknown, OutcomeUnknown),
    (routing.LimitExceeded, LimitExceeded),
    (routing.InvalidArgument, InvalidArgument),
    (routing.SnapshotTooOld, SnapshotTooOld),
    (routing.WrongCluster, WrongCluster),
    (routing.ServerError, ServerError),
    (routing.ClientClosed, ClientClosed),
)


def from_routing_error(exc: routing.ClientError) -> PaxosKVError:
    """The error of this module that stands for a routing client error.

    Args:
        exc: an error raised by `router.client.RoutingClient`.

    Returns:
        `exc` itself when it already is a `PaxosKVError`; otherwise a new error of the
        matching class with the same message and `maybe_committed` (chain it with
        `raise ... from exc`).
    """
    if isinstance(exc, PaxosKVError):
        return exc
    for source, target in _TRANSLATION:
        if isinstance(exc, source):
            return target(str(exc), maybe_committed=exc.maybe_committed)
    return ServerError(str(exc), maybe_committed=exc.maybe_committed)


def _conflict(error: kv.Error, phase: str, txn_id: bytes) -> Conflict:
    if error.HasField("conflict"):
        c = error.conflict
        return Conflict(
            c.key, c.other_txn, c.phase or phase, c.reason or error.message, txn_id=txn_id
        )
    return Conflict(b"", b"", phase, error.message, txn_id=txn_id)
