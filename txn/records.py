"""Transaction records: the commands a shard group logs for 2PC, their results, stored state.

Frozen, slotted, keyword-only dataclasses that validate their shape on construction (h11
`_events.py`): a record that exists is well-formed, so the rules in `txn.participant` and
`txn.coordinator` never meet a duplicate key or an empty transaction id. Key and value SIZES
and key RANGES are the shard's business (`shard.limits`), checked where the record is applied.

Commands (each carried in a shard `Command`, whose `ts` is the command's hybrid timestamp):
`Prepare`, `Resolve`, `Decide`, `Finish`, `PurgeDecisions`, `CommitOnePhase`, `Prevent`.
Results: `PrepareResult`, `ResolveResult`, `DecisionResult`, `OnePhaseResult`, `PurgeResult`,
`PreventResult`;
a refusal is a `Conflict` (retryable: nothing was written).
Stored state: `IntentInfo` (per key), `PreparedInfo` (per prepared txn at a participant),
`DecisionInfo` (per decided txn at its coordinator group).
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass

# Re-exported: the limit belongs to the request check nodes and clients share.
from router.limits import MAX_ATOMIC_OPS, MAX_TXN_ITEMS
from txn.atomic import AtomicOp

__all__ = [
    "MAX_TXN_ID_BYTES",
    "MAX_TXN_ITEMS",
    "CommitOnePhase",
    "Conflict",
    "Decide",
    "DecisionInfo",
    "DecisionResult",
    "Finish",
    "IntentInfo",
    "IntentKind",
    "KeyRange",
    "OnePhaseResult",
    "Prepare",
    "PrepareResult",
    "PreparedInfo",
    "Prevent",
    "PreventResult",
    "PurgeDecisions",
    "PurgeResult",
    "ReadItem",
    "Resolve",
    "ResolveResult",
    "TxnCommand",
    "TxnResult",
    "WriteItem",
    "quote_key",
]

MAX_TXN_ID_BYTES = 256
"""Largest transaction id, in bytes. Ids are never empty (a client makes 24 bytes,
txn/txn_ids.py)."""

_MAX_U64 = (1 << 64) - 1


def _check_txn_id(txn_id: bytes) -> None:
    if not isinstance(txn_id, bytes) or not txn_id:
        raise ValueError("a transaction id is a non-empty bytes")
    if len(txn_id) > MAX_TXN_ID_BYTES:
        raise ValueError(f"transaction id is {len(txn_id)} bytes, over {MAX_TXN_ID_BYTES}")


def _check_u64(name: str, value: int) -> None:
    if not 0 <= value <= _MAX_U64:
        raise ValueError(f"{name} {value} is outside [0, 2**64)")


def quote_key(raw: bytes | str, limit: int = 64) -> str:
    """`raw` (a key, or other text a request carries) for an error message, cut at `limit`
    bytes or characters: a refusal must not echo a request's megabytes back (found by wire
    fuzzes: a 16 MiB request drew a 64 MiB answer; later, a 16 MiB cluster id came back
    whole in every refusal, and in the log lines of refused peer streams)."""
    if len(raw) <= limit:
        return repr(raw)
    unit = "bytes" if isinstance(raw, bytes) else "characters"
    return f"{raw[:limit]!r}... ({len(raw)} {unit})"


def _check_group_ids(participants: Sequence[int]) -> None:
    for group in participants:
        _check_u64("participant group", group)
    if len(set(participants)) != len(participants):
        raise ValueError(
            f"duplicate participant groups ({len(participants)} listed, "
            f"{len(set(participants))} distinct)"
        )


def _check_ranges(ranges: Sequence[KeyRange]) -> None:
    if len(set(ranges)) != len(ranges):
        raise ValueError("a key range appears twice in the scanned ranges")


def _check_items(reads: Sequence[ReadItem], writes: Sequence[WriteItem]) -> None:
    read_keys = [r.key for r in reads]
    if len(set(read_keys)) != len(read_keys):
        raise ValueError("a key appears twice in the read set")
    write_keys = [w.key for w in writes]
    if len(set(write_keys)) != len(write_keys):
        raise ValueError("a key appears twice in the write set")


# --------------------------------------------------------------------------------------------
# Items


@dataclass(frozen=True, slots=True, kw_only=True)
class ReadItem:
    """A key the transaction read, and the version it saw (0: never written).

    The version is the key's latest record, value or tombstone: a transaction that saw a
    deleted key may name the tombstone's version or 0 (see `txn.participant`, rule P3).
    """

    key: bytes
    version: int

    def __post_init__(self) -> None:
        if not isinstance(self.key, bytes):
            raise ValueError("a read key is bytes")
        _check_u64("read version", self.version)


@dataclass(frozen=True, slots=True, kw_only=True)
class KeyRange:
    """Keys start <= key < end that a transaction scanned; `end` b"" means no end.

    With the range the transaction claims it saw EVERY key of it (the keys are in its read
    set with their versions): a key added to the range by another transaction is a phantom
    (rule P6 of `txn.participant`).
    """

    start: bytes
    end: bytes

    def __post_init__(self) -> None:
        if not isinstance(self.start, bytes) or not isinstance(self.end, bytes):
            raise ValueError("a key range's start and end are bytes")
        if self.end and self.end <= self.start:
            raise ValueError(f"empty key range [{self.start!r}, {self.end!r})")

    def __contains__(self, key: object) -> bool:
        return isinstance(key, bytes) and self.start <= key and (not self.end or key < self.end)


@dataclass(frozen=True, slots=True, kw_only=True)
class WriteItem:
    """A key the transaction writes: `value` None deletes it, unless `ops` is given: then
    the value is the key's latest value after those atomic operations, in order
    (`txn.atomic`; computed where the PREPARE or one-phase commit is applied)."""

    key: bytes
    value: bytes | None
    ops: tuple[tuple[AtomicOp, bytes], ...] = ()
    ttl_ms: int = 0  # the value lives this long after the commit (0: for ever; shard.ttl)

    def __post_init__(self) -> None:
        if not isinstance(self.key, bytes):
            raise ValueError("a write key is bytes")
        if self.value is not None and not isinstance(self.value, bytes):
            raise ValueError("a write value is bytes or None (delete)")
        if self.ops and self.value is not None:
            raise ValueError("an atomic write carries operations, not a value")
        if len(self.ops) > MAX_ATOMIC_OPS:
            raise ValueError(f"more than {MAX_ATOMIC_OPS} atomic operations on one key")
        if self.ttl_ms and self.value is None and not self.ops:
            raise ValueError("a delete takes no time to live")
        for op, operand in self.ops:
            if not isinstance(op, AtomicOp) or not isinstance(operand, bytes):
                raise ValueError("an atomic operation is an AtomicOp and a bytes operand")


# --------------------------------------------------------------------------------------------
# Commands


@dataclass(frozen=True, slots=True, kw_only=True)
class Prepare:
    """Phase 1 at one participant group: validate `reads`, take intents, record PREPARED.

    `coordinator_group` and `participants` are stored for recovery: a participant whose
    coordinator is silent asks that group for the decision. `began_ts`: at or below the
    timestamp of every record any group keeps of the txn and every prepare_ts, so at or
    below the `asker_ts` of every Prevent and participant's recovery Decide (the node puts
    the request's ts less how far a clock may run ahead, its rule 9; 0: no claim; rule P7).
    """

    txn_id: bytes
    coordinator_group: int
    participants: tuple[int, ...]
    reads: tuple[ReadItem, ...] = ()
    writes: tuple[WriteItem, ...] = ()
    read_ranges: tuple[KeyRange, ...] = ()
    began_ts: int = 0

    def __post_init__(self) -> None:
        _check_txn_id(self.txn_id)
        _check_u64("coordinator group", self.coordinator_group)
        _check_u64("began_ts", self.began_ts)
        _check_group_ids(self.participants)
        _check_items(self.reads, self.writes)
        _check_ranges(self.read_ranges)


@dataclass(frozen=True, slots=True, kw_only=True)
class Resolve:
    """Apply the coordinator's decision at a participant: commit at `commit_ts`, or abort.

    `if_prepared`: an abort that changes nothing unless this group holds the txn prepared
    (txn.participant rule R6; a participant's own recovery, never from the wire).
    `participants`: those the Resolve's proof names (rule R7; empty: nothing to match).
    """

    txn_id: bytes
    commit: bool
    commit_ts: int = 0
    if_prepared: bool = False
    participants: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        _check_txn_id(self.txn_id)
        _check_u64("commit_ts", self.commit_ts)
        if self.if_prepared and self.commit:
            raise ValueError("only an abort can be conditional on the prepared record")


@dataclass(frozen=True, slots=True, kw_only=True)
class Decide:
    """Record the decision at the coordinator group; the first recorded decision wins.

    `recover`: an abort asked for by recovery, recorded only while this group does not hold
    the transaction's PREPARE (txn.coordinator rule D3). `if_prepared`: the prevent round's
    abort, recorded only while this group holds it (rule D5; never from the wire).
    """

    txn_id: bytes
    participants: tuple[int, ...]
    commit: bool
    commit_ts: int = 0
    recover: bool = False
    asker_ts: int = 0
    if_prepared: bool = False

    def __post_init__(self) -> None:
        _check_txn_id(self.txn_id)
        _check_group_ids(self.participants)
        _check_u64("commit_ts", self.commit_ts)
        if (self.recover or self.if_prepared) and self.commit:
            raise ValueError("a recovery or prevent-round Decide can only ask for abort")


@dataclass(frozen=True, slots=True, kw_only=True)
class Finish:
    """Every participant resolved: the decision record becomes purgeable."""

    txn_id: bytes

    def __post_init__(self) -> None:
        _check_txn_id(self.txn_id)


@dataclass(frozen=True, slots=True, kw_only=True)
class PurgeDecisions:
    """Delete finished decision records decided (command ts) before `before_ts`.

    A record that must be verified first (`needs_verification`) is deleted only if its txn
    is in `verified`: the leader found no other participant still holding it prepared.
    """

    before_ts: int
    verified: tuple[bytes, ...] = ()

    def __post_init__(self) -> None:
        _check_u64("before_ts", self.before_ts)
        for txn_id in self.verified:
            _check_txn_id(txn_id)


@dataclass(frozen=True, slots=True, kw_only=True)
class CommitOnePhase:
    """A transaction whose keys all live in this group: validate, write and decide at once.

    `began_ts`: as Prepare's, at or below the timestamp of every record of the txn (rule O5).
    """

    txn_id: bytes
    reads: tuple[ReadItem, ...] = ()
    writes: tuple[WriteItem, ...] = ()
    read_ranges: tuple[KeyRange, ...] = ()
    began_ts: int = 0

    def __post_init__(self) -> None:
        _check_txn_id(self.txn_id)
        _check_items(self.reads, self.writes)
        _check_ranges(self.read_ranges)
        _check_u64("began_ts", self.began_ts)


@dataclass(frozen=True, slots=True, kw_only=True)
class Prevent:
    """Recovery at a participant: report the PREPARE of the txn here, or forbid it.

    `asker_ts`: at or below every timestamp a commit record of the txn carries (rule V2).
    `participants`: the asker's (rule V3; empty: nothing to match).
    """

    txn_id: bytes
    asker_ts: int = 0
    participants: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        _check_txn_id(self.txn_id)


TxnCommand = Prepare | Resolve | Decide | Finish | PurgeDecisions | CommitOnePhase | Prevent
"""Every transaction command a shard group applies."""


# --------------------------------------------------------------------------------------------
# Results


@dataclass(frozen=True, slots=True, kw_only=True)
class Conflict:
    """Why a transaction, or a single-key write, was refused. Retryable: nothing was written.

    `phase` is "prepare" (a participant voted no), "commit" (a one-phase commit was refused)
    or "write" (a single-key Put/Delete/CAS met an intent). `other_txn` is the transaction
    in the way (b"" when none, e.g. a read-version mismatch).
    """

    key: bytes
    other_txn: bytes
    phase: str
    reason: str


@dataclass(frozen=True, slots=True, kw_only=True)
class PrepareResult:
    """Prepared at `prepare_ts` (the participant votes yes), or refused with `conflict`."""

    prepare_ts: int = 0
    conflict: Conflict | None = None

    @property
    def prepared(self) -> bool:
        """True when the participant voted yes."""
        return self.conflict is None


@dataclass(frozen=True, slots=True, kw_only=True)
class DecisionResult:
    """The decision recorded at the coordinator group (may differ from the one asked for).

    `pending`: nothing was recorded (a recovery abort met this group's PREPARE of the txn, or
    this group may have purged its record, or a prevent-round abort met no PREPARE, D5).
    `checked`: pending only because this group may have purged its record, and every purge
    here that could have deleted a commit record of the txn was checked with its other
    participants: one still holding the txn prepared may abort (rule D4).
    """

    committed: bool
    commit_ts: int = 0
    pending: bool = False
    checked: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class ResolveResult:
    """`found`: a prepared record existed (else the Resolve was a no-op)."""

    found: bool
    versions_written: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class OnePhaseResult:
    """Committed at `commit_ts`, or refused with `conflict` (nothing written)."""

    commit_ts: int = 0
    conflict: Conflict | None = None

    @property
    def committed(self) -> bool:
        """True when the transaction committed."""
        return self.conflict is None


@dataclass(frozen=True, slots=True, kw_only=True)
class PurgeResult:
    """`purged` decision records deleted; `more` when the per-command bound stopped it."""

    purged: int
    more: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class PreventResult:
    """The txn is prepared here at `prepare_ts`, or (`prepared` False) never will be, or
    (`unknown`) this group may have purged the record that would say; `checked` with
    `unknown`: every purge here that could have deleted a commit record of the txn was
    checked with its other participants, so an asker still holding it prepared may abort
    (rule V2)."""

    prepared: bool
    prepare_ts: int = 0
    unknown: bool = False
    checked: bool = False


TxnResult = (
    PrepareResult | DecisionResult | ResolveResult | OnePhaseResult | PurgeResult | PreventResult
)
"""The result of a transaction command (`Finish` answers a DecisionResult or nothing)."""


# --------------------------------------------------------------------------------------------
# Stored state


class IntentKind(enum.IntEnum):
    """What an intent locks: READ intents are shared, a WRITE intent is exclusive."""

    READ = 1
    WRITE = 2


@dataclass(frozen=True, slots=True, kw_only=True)
class IntentInfo:
    """A prepared transaction's lock on one key; a WRITE intent carries the new value."""

    txn_id: bytes
    kind: IntentKind
    prepare_ts: int
    value: bytes | None = None  # WRITE: the new value, None = delete; READ: always None
    ttl_ms: int = 0  # WRITE: the new value's time to live (0: for ever)

    @property
    def is_write(self) -> bool:
        """True for a write intent."""
        return self.kind is IntentKind.WRITE


@dataclass(frozen=True, slots=True, kw_only=True)
class PreparedInfo:
    """A participant's record of a prepared, undecided transaction.

    It lists the keys holding the transaction's intents, and the ranges holding its range
    intents, so a Resolve releases them with point lookups only.
    """

    txn_id: bytes
    coordinator_group: int
    participants: tuple[int, ...]
    prepare_ts: int
    write_keys: tuple[bytes, ...]
    read_keys: tuple[bytes, ...]
    read_ranges: tuple[KeyRange, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class DecisionInfo:
    """The coordinator group's record of a decision (`decided_ts`: the Decide command's ts).

    A participant's outcome record (`txn.participant` rule R5) has the same shape; for a
    commit resolved here it lists the participants of the prepared record it replaced.
    """

    txn_id: bytes
    committed: bool
    commit_ts: int
    participants: tuple[int, ...]
    decided_ts: int
    finished: bool = False
    one_phase: bool = False
    #: A commit a Resolve recorded without a prepared record here (participant rule R5):
    #: a late copy, after the txn's first outcome record here was purged, checked (G2).
    late: bool = False

    def needs_verification(self) -> bool:
        """A commit with other participants: purged only once none of them still holds
        the transaction prepared (coordinator rule G2)."""
        return self.committed and len(self.participants) > 1

    def purge_leaves_doubt(self) -> bool:
        """A commit whose purge no check covers that may be a two-phase commit's last record
        here: one written before rule G2 kept participants (or before `one_phase` or `late`
        existed). Its purge raises the unverified mark (G1). A `late` record is not one: a
        commit was prepared here first, and the outcome record that replaced that PREPARE
        kept the participants and was purged only after its check (G2), so no participant
        holds the txn prepared any more; counting it let one late copy of any Resolve keep
        every never-committed txn prepared before it in doubt for good (found by review)."""
        return (
            self.committed
            and not self.one_phase
            and not self.late
            and not self.needs_verification()
        )
