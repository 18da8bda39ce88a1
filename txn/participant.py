"""Participant rules of 2PC: PREPARE (validate, lock), RESOLVE (commit or abort), and 1PC.

Theory of operation
-------------------
Concurrency control is optimistic, validated deterministically inside the replicated apply
of PREPARE (the Paxos group has already chosen the command, so every replica validates the
same command against the same state and reaches the same vote). A yes vote takes INTENTS,
locks held from PREPARE until the coordinator's decision is resolved here:

- a WRITE intent on every key written: exclusive, it carries the new value;
- a READ intent on every key only read: shared, several transactions may hold one.

Nothing waits in the log: a command that meets a lock it cannot share when it is applied is
refused with a `Conflict` naming the key, the other transaction and the phase, and the
client re-runs the whole transaction from fresh reads. Waiting happens only before a
command is proposed (the shard leader parks such a request, bounded, see shard/lock_wait.py),
so nothing chosen ever waits for anything and there is no deadlock.

Why this is serializable: a transaction's reads are checked current at PREPARE, and its
intents keep every read and written key unchanged until RESOLVE, so all of them hold at
commit_ts. Versions are hybrid timestamps: commit_ts >= every prepare_ts > every version the
transaction read or overwrote; RESOLVE raises the shard's max_version to commit_ts (the
deterministic timestamp cache), so a later write to a key the transaction read gets a
version above commit_ts. Ties cannot happen: a version is strictly above max_version.

Every function here is pure over a `TxnStore` (point operations only) and deterministic:
no clock (the command's ts is an argument), no randomness, no iteration over sets.

Rules
-----
P1. Prepare is idempotent: if this group holds a prepared record of the txn, the answer is
    the recorded prepare_ts and nothing changes; a Prepare naming another coordinator or
    other participants than that record is refused (its yes vote's proof would name
    participants this group never logged, node rule 12).
P2. If this group holds a decision record of the txn (it is the coordinator group and
    recovery already decided, e.g. aborted it; or recovery prevented the txn here, V1), the
    Prepare is refused ("already aborted").
P3. For each read: a foreign WRITE intent on the key refuses; so does a latest version other
    than the one read (value or tombstone; 0 if never written). A read of version 0 also
    matches a tombstone: the transaction saw the key absent, and absent it still is.
P4. For each write: any foreign intent (read or write) refuses.
P5. Valid: prepare_ts = max(ts, max_version + 1); a write intent on each written key, a read
    intent on each key only read, and a prepared record listing those keys. An atomic write's
    intent carries the value its operations leave on the key's latest value (txn.atomic):
    that value is the one at commit_ts, as R2 says.
P7. A Prepare whose `began_ts` (at or below the timestamp of every record any group keeps
    of the txn and every prepare_ts, so at or below the `asker_ts` of every Prevent and
    every participant's recovery Decide) is below this group's purge mark is refused,
    after P1 and P2: this group may have answered such a question from "no record" (V2,
    coordinator rule D4: `checked`), and its asker may have aborted its own prepared part
    on that answer (D5, R6). Preparing now could complete a set of yes votes, the
    definition of committed, after that abort. Such an answer means asker_ts < mark, and
    the mark only rises, so from then on every Prepare of the txn is refused here. It also
    stands in for a purged record P2 would have met (a Prevent's abort, V1): stamped at or
    above `began_ts`, its purge raised the mark above it. It refuses only a request
    delayed longer than the retention window, from a client whose clock is that far
    behind, or (`began_ts` derives from the start a txn id carries, shard/node.py rule 13)
    of a transaction that began that long ago, which the client refuses to commit first
    (txn.commit.MAX_TXN_AGE_S); 0 (an older client) claims nothing.
A1. The atomic writes of a Prepare or one-phase commit may read and write at most
    ATOMIC_VALUE_BYTES (MAX_COMMAND_BYTES) of values in all (each reads its key's value,
    up to 1 MiB, and leaves one): more is refused, phase "limit" (LIMIT_EXCEEDED to the
    client, not retryable), before anything is written. The request's own bytes are
    bounded by MAX_COMMAND_BYTES at admission; these bytes come from the store, so only the
    apply can count them, the same on every replica. Without it a part of 64 appends of one
    byte to 1 MiB values wrote 64 MiB of intents on every replica, held them 0.8 s and made
    four groups elect (bench/bad_requests.py, found by its `atomic` attack).
R1. Resolve without a prepared record releases and writes nothing (a duplicate, or never
    prepared here); it may still leave a decision record (R5).
R2. Commit: each write intent becomes the version AT commit_ts (above every version of the
    key: the intent blocked every other writer since prepare_ts <= commit_ts); max_version
    = max(max_version, commit_ts). Deleting a key that is absent writes nothing, as a
    single-key Delete does.
R3. Commit with commit_ts < prepare_ts cannot be this prepare's decision (a decision's
    commit_ts is >= every prepare_ts): the prepare is a stale duplicate that re-took intents
    after the transaction was already resolved here. Its intents are released, nothing is
    written (writing would bury newer versions).
R4. Commit or abort: the transaction's intents and its prepared record are removed.
R5. Unless a decision record of the txn exists here, the Resolve stores one (finished, so
    purged after the retention window, as O3): a late copy of the txn's Prepare then finds
    it (P2) and is refused instead of preparing again. Without it, a re-sent Prepare that
    arrives after recovery resolved the txn would prepare anew at a later prepare_ts and
    vote yes, and the client would report a commit timestamp the decision does not have.
    A commit resolving this group's prepared record keeps that record's participants: such
    an outcome record is purged only once no other participant holds the txn prepared
    (coordinator rule G2), because it is the only record of the commit a participant still
    in doubt can be answered from (rules D4, V2). A commit with nothing prepared here is
    marked `late`: its purge leaves nobody in doubt (coordinator rule G1). A conditional
    abort (R6) with nothing prepared here stores nothing. Nor does a Resolve with nothing
    prepared here whose txn's id carries a start below this group's purge mark (found by
    review): this group's record of the txn may have been purged, and P7 and O5 refuse
    every late Prepare and one-phase commit of it anyway. Before, an abort recorded by a
    group outside a committed txn (a recovery Decide from a buggy or hostile client that
    named it) and delivered after the participants purged their records (its Resolve
    delayed, or that group's purges lagging) left ABORT records there, and `txn_status`
    answered aborted for a committed transaction.
O1. CommitOnePhase is idempotent by decision record: an existing one is the answer.
O2. A txn prepared here by two-phase commit cannot also commit in one phase: refused.
O3. Validation as P3 and P4, phase "commit"; a refusal records an abort decision, so a
    late copy of the same request is refused too instead of committing.
O4. commit_ts = max(ts, max_version + 1); every write becomes a version at commit_ts (an
    atomic write's value computed from the key's latest value, as in P5, refused as A1
    says, recorded as O3's);
    max_version = commit_ts; a finished decision record (committed, marked one-phase) is
    stored.
O5. As P7, after O1 and O2: a CommitOnePhase whose `began_ts` (at or below the decided_ts
    of any record an earlier copy of it left) is below this group's purge mark is
    refused, and nothing is recorded. An earlier copy may have committed and its record
    been purged since (G1): validating again would write the same values a second time
    over newer versions (a blind write), or record an abort of a committed transaction (a
    read that no longer matches, O3).
V1. Prevent (recovery, sent by the coordinator group's leader): with a prepared record, answer
    its prepare_ts and change nothing; with a committed decision record (the txn was
    prepared here and resolved by its commit, R5), answer "prepared" at its commit_ts (at
    least every prepare_ts, so the recovered commit_ts is the same); else record an abort
    decision (finished, as O3) unless one exists, so every later Prepare of the txn here is
    refused (P2), and answer "not prepared". Logged, so the answer holds against every
    Prepare ordered after it.
V2. As coordinator rule D4: a Prevent whose `asker_ts` (the coordinator's prepare_ts) is
    below this group's purge mark, and that finds neither a prepared record nor a decision
    record, records nothing and answers `unknown`: the record of a commit resolved here may
    have been purged (a group down longer than the retention window), and an abort recorded
    now would split the transaction. The answer is also `checked` when the unverified purge
    mark (coordinator rule G1) is at or below `asker_ts`: every purge here that could have
    deleted a commit record of the txn checked it with its other participants (G2). Then
    a coordinator group that still holds the txn prepared when its abort is applied (rule
    D5) knows the txn never committed: had it committed, this group prepared it before the
    commit and held a record of it since, prepared or resolved; a resolved commit's record
    keeps its participants and is purged only once none of them holds the txn prepared, and
    the coordinator group has held it prepared since before the commit. (A purged abort
    agrees with an abort; a one-phase commit is no two-phase txn.) Without `checked`, the
    coordinator's leader asks again later and the txn stays in doubt. Nothing is recorded
    here in either case: the question may be stale, its asker resolved by the commit and
    purged since, and an abort here would contradict that commit (the simulator's seed
    bank:purge:0 split a transaction so when an abort was recorded on this evidence).
V3. A Prevent naming the asker's participants, where this group holds the txn prepared (or
    its commit recorded) over other participants, answers "not prepared" and records
    nothing: the two groups were sent different transactions under one id (a buggy
    client), this group's PREPARE is no yes vote of the asker's, and by rule P1 it never
    will be one, so the asker's transaction can never commit. Answered "prepared", the
    asker recorded a commit this group never took (R7), while its own coordinator aborted
    it (found by review).
R6. Resolve(abort, if_prepared), a participant's own abort after a `checked` pending answer
    of its coordinator group (coordinator rule D4), changes nothing unless this group holds
    the txn prepared when it is applied, and then resolves it as R2-R5 do: the evidence
    says "never committed" only while this group still holds it prepared.
R7. A Resolve from the wire names the participants its proof vouches for (node rule 12):
    those whose yes votes it carries, or those of the recorded decision it delivers. Where
    this group holds the txn prepared over other participants, it changes nothing, not
    even an outcome record: it is about another transaction under the same id (found by
    review: a Decide(abort) naming one more group, sent to that group, which holds no
    PREPARE and so records the abort, had it delivered, vouched for, to the parts of a
    committed transaction). A decision over the same participants is the transaction's: a
    group takes a Decide only naming it among the participants, records a commit only when
    every PREPARE is logged, and an abort only when some participant cannot prepare (rules
    D3, D5), itself included.
W1. A single-key Put/Delete/CAS on a key holding any intent, or inside a range a prepared
    transaction scanned (P6), is refused (phase "write"). A touch (a CAS that renews a
    value's time to live, keeping its value and version) meets only write intents: what a
    prepared transaction read, or saw of a range, it leaves as it was (found by an
    application trial: in-doubt fenced writes, which read the lock key, made the lock's
    holder lose its lease while their coordinator's leader was frozen). So does a CAS
    whose condition fails on the key's latest value: it writes nothing, a read (found by an
    application trial: claiming a held lease that readers kept reading met a Conflict
    instead of the failed CAS it is). The shard's apply decides this from the command and
    its state alone, so every replica answers alike.

Scanned ranges (phantoms)
-------------------------
P6. A transaction that scanned a range [start, end) of this group claims it saw every key of
    it: each key the scan returned is in its reads (P3 checks their versions), and
    `read_ranges` names the range (cut after the last key returned when the scan's limit
    stopped it). The Prepare or one-phase commit is refused when a foreign WRITE intent sits
    on a key of the range (an insert, update or delete in flight), or when a key of the
    range holds a value and is not in the reads (a phantom: another transaction added it
    after the scan). The transaction's own writes are no exception: a key it writes after
    the scan must have been absent then, or the scan would have returned it as a read (the
    client records every key the scan returned, also those it overwrites). A yes vote takes
    a range intent: the prepared record lists the ranges, and until the Resolve every write
    of another transaction to a key of them is refused (P4 for Prepares and one-phase
    commits, W1 for single-key writes), as a read intent refuses writes to one key. Two
    scanners of one range share it. So the range stays as the transaction saw it from its
    scan to its commit timestamp: no insert can be serialized between them.
"""

from __future__ import annotations

from collections.abc import Sequence

from router.limits import MAX_COMMAND_BYTES
from txn.atomic import apply_ops
from txn.records import (
    CommitOnePhase,
    Conflict,
    DecisionInfo,
    IntentInfo,
    IntentKind,
    KeyRange,
    OnePhaseResult,
    Prepare,
    PreparedInfo,
    PrepareResult,
    Prevent,
    PreventResult,
    ReadItem,
    Resolve,
    ResolveResult,
    WriteItem,
)
from txn.store import StoreInvariantError, TxnStore
from txn.txn_ids import start_ts_of

__all__ = [
    "commit_one_phase",
    "prepare",
    "prevent",
    "resolve",
    "single_key_conflict",
    "validate",
]

PHASE_PREPARE = "prepare"
PHASE_COMMIT = "commit"
PHASE_WRITE = "write"
#: A refusal for what the part would cost, not a conflict (rule A1): not retryable.
PHASE_LIMIT = "limit"

#: Rule A1: the most bytes of values the atomic writes of one part read and write.
ATOMIC_VALUE_BYTES = MAX_COMMAND_BYTES


def validate(
    store: TxnStore,
    txn_id: bytes,
    reads: Sequence[ReadItem],
    writes: Sequence[WriteItem],
    phase: str,
    read_ranges: Sequence[KeyRange] = (),
) -> Conflict | None:
    """Rules P3, P4 and P6: the first conflict in command order, or None when valid.

    Args:
        store: the group's state.
        txn_id: the validating transaction (its own intents never conflict).
        reads, writes: the transaction's read and write sets in this group.
        phase: "prepare" or "commit", copied into the conflict.
        read_ranges: the ranges it scanned in this group (P6).
    """
    for read in reads:
        key = read.key
        for intent in store.intents(key):
            if intent.kind is IntentKind.WRITE and intent.txn_id != txn_id:
                return Conflict(
                    key=key,
                    other_txn=intent.txn_id,
                    phase=phase,
                    reason="a key read is locked by another transaction's write intent",
                )
        latest, tombstone = store.latest_version(key)
        if latest != read.version and not (read.version == 0 and tombstone):
            return Conflict(
                key=key,
                other_txn=b"",
                phase=phase,
                reason=f"read version {read.version} is stale: the latest version is {latest}",
            )
    if read_ranges:
        conflict = _phantom(store, txn_id, reads, phase, read_ranges)
        if conflict is not None:
            return conflict
    for write in writes:
        key = write.key
        for intent in store.intents(key):
            if intent.txn_id != txn_id:
                kind = "write" if intent.kind is IntentKind.WRITE else "read"
                return Conflict(
                    key=key,
                    other_txn=intent.txn_id,
                    phase=phase,
                    reason=f"a key written is locked by another transaction's {kind} intent",
                )
        for other in store.scanners(key):
            if other != txn_id:
                return Conflict(
                    key=key,
                    other_txn=other,
                    phase=phase,
                    reason="a key written is inside a range another transaction scanned",
                )
    return None


def _phantom(
    store: TxnStore,
    txn_id: bytes,
    reads: Sequence[ReadItem],
    phase: str,
    read_ranges: Sequence[KeyRange],
) -> Conflict | None:
    """Rule P6: the first change to a scanned range since the scan, or None."""
    seen = {r.key for r in reads}
    for key_range in read_ranges:
        for key, intent in store.intents_in(key_range):
            if intent.kind is IntentKind.WRITE and intent.txn_id != txn_id:
                return Conflict(
                    key=key,
                    other_txn=intent.txn_id,
                    phase=phase,
                    reason="a key in a scanned range is locked by another transaction's "
                    "write intent",
                )
        for key, version in store.live_keys(key_range):
            if key not in seen:
                return Conflict(
                    key=key,
                    other_txn=b"",
                    phase=phase,
                    reason=f"phantom: the key (version {version}) appeared in a scanned range "
                    "after the scan",
                )
    return None


def prepare(store: TxnStore, cmd: Prepare, ts: int) -> PrepareResult:
    """Rules P1-P5, P7: vote on `cmd` (command timestamp `ts`) and lock its keys on a yes.

    Returns:
        PrepareResult with prepare_ts (yes) or a conflict (no; nothing changed).
    """
    txn_id = cmd.txn_id
    existing = store.prepared(txn_id)
    if existing is not None:
        same_participants = set(existing.participants) == set(cmd.participants)
        if existing.coordinator_group != cmd.coordinator_group or not same_participants:
            # P1: a copy naming another coordinator or participants is no copy; its yes
            # would carry a vote proof over participants this group never logged (node
            # rule 12), letting a Resolve(commit) land under another set's recovery.
            return PrepareResult(
                conflict=_refused(
                    txn_id,
                    PHASE_PREPARE,
                    "prepared here with another coordinator or other participants",
                )
            )
        return PrepareResult(prepare_ts=existing.prepare_ts)
    decided = store.decision(txn_id)
    if decided is not None:
        outcome = "committed" if decided.committed else "aborted"
        return PrepareResult(
            conflict=_refused(
                txn_id,
                PHASE_PREPARE,
                f"already {outcome}: the transaction's decision is recorded here",
            )
        )
    if may_be_purged(store, cmd.began_ts):  # P7
        return PrepareResult(conflict=_began_before_purge(txn_id, PHASE_PREPARE))
    conflict = validate(store, txn_id, cmd.reads, cmd.writes, PHASE_PREPARE, cmd.read_ranges)
    if conflict is not None:
        return PrepareResult(conflict=conflict)
    values = _written_values(store, cmd.writes)
    if isinstance(values, Conflict):
        return PrepareResult(conflict=values)
    max_version = store.max_version()
    prepare_ts = ts if ts > max_version else max_version + 1
    write_keys = tuple(w.key for w in cmd.writes)
    written = set(write_keys)
    read_keys = tuple(r.key for r in cmd.reads if r.key not in written)
    for write in cmd.writes:
        store.put_intent(
            write.key,
            IntentInfo(
                txn_id=txn_id,
                kind=IntentKind.WRITE,
                prepare_ts=prepare_ts,
                value=values[write.key],
                ttl_ms=write.ttl_ms,
            ),
        )
    for key in read_keys:
        store.put_intent(
            key, IntentInfo(txn_id=txn_id, kind=IntentKind.READ, prepare_ts=prepare_ts)
        )
    store.put_prepared(
        PreparedInfo(
            txn_id=txn_id,
            coordinator_group=cmd.coordinator_group,
            participants=tuple(cmd.participants),
            prepare_ts=prepare_ts,
            write_keys=write_keys,
            read_keys=read_keys,
            read_ranges=cmd.read_ranges,
        )
    )
    return PrepareResult(prepare_ts=prepare_ts)


def _refused(txn_id: bytes, phase: str, reason: str) -> Conflict:
    """A refusal of the transaction as a whole: no key, and the other party is itself."""
    return Conflict(key=b"", other_txn=txn_id, phase=phase, reason=reason)


def _began_before_purge(txn_id: bytes, phase: str) -> Conflict:
    """Rules P7 and O5: the request is older than what this group still remembers."""
    return _refused(
        txn_id,
        phase,
        (
            "the transaction's start or timestamp is older than this group's purge mark "
            "(decision_retention_s): a request delayed that long, from a client whose "
            "clock is that far behind, or of a transaction begun that long ago cannot be "
            "taken"
        ),
    )


def _record_outcome(
    store: TxnStore,
    txn_id: bytes,
    committed: bool,
    commit_ts: int,
    ts: int,
    participants: tuple[int, ...] = (),
    one_phase: bool = False,
    late: bool = False,
) -> None:
    """Remember the txn's outcome in this group (rules O3, O4, R5, V1): a finished decision
    record, which every later Prepare or one-phase commit of the txn finds, purged after the
    retention window (a commit with other `participants` only once none of them still
    holds it prepared, coordinator rule G2)."""
    store.put_decision(
        DecisionInfo(
            txn_id=txn_id,
            committed=committed,
            commit_ts=commit_ts if committed else 0,
            participants=participants,
            decided_ts=ts,
            finished=True,
            one_phase=one_phase,
            late=late,
        )
    )


def _written_values(
    store: TxnStore, writes: Sequence[WriteItem]
) -> dict[bytes, bytes | None] | Conflict:
    """Rules P5, O4 and A1: the value each write leaves (None: deleted), or the refusal of
    atomic writes whose values read and written come to over ATOMIC_VALUE_BYTES."""
    values: dict[bytes, bytes | None] = {}
    spent = 0
    for write in writes:
        if not write.ops:
            values[write.key] = write.value
            continue
        # The latest value is the one at commit_ts: no other writer gets in until this
        # transaction's decision is applied (rule P4).
        current = store.latest_value(write.key)
        value = apply_ops(current, write.ops)
        spent += len(current or b"") + len(value or b"")
        if spent > ATOMIC_VALUE_BYTES:
            return Conflict(
                key=write.key,
                other_txn=b"",
                phase=PHASE_LIMIT,
                reason=(
                    f"the atomic operations of this transaction's part read and write over "
                    f"{ATOMIC_VALUE_BYTES} bytes of values (ATOMIC_VALUE_BYTES): the values "
                    "they apply to are too large; split the transaction"
                ),
            )
        values[write.key] = value
    return values


def _write_committed(
    store: TxnStore, key: bytes, value: bytes | None, commit_ts: int, ttl_ms: int
) -> int:
    """Write one committed value at commit_ts (living `ttl_ms`, if any); returns 1, or 0 for
    a delete of an absent key."""
    if value is None and store.latest_version(key)[1]:
        return 0
    store.write_version(key, value, commit_ts, ttl_ms)
    return 1


def _proof_matches(cmd: Resolve, info: PreparedInfo) -> bool:
    """Rule R7."""
    return same_participants(cmd.participants, info.participants)


def commit_writes_here(info: PreparedInfo, participants: Sequence[int], commit_ts: int) -> bool:
    """Whether a Resolve(commit) at `commit_ts` naming `participants` writes the values of
    the transaction prepared here as `info` when applied (rules R3 and R7)."""
    return same_participants(participants, info.participants) and commit_ts >= info.prepare_ts


def resolve(store: TxnStore, cmd: Resolve, ts: int) -> ResolveResult:
    """Rules R1-R5: apply the decision `cmd` (command timestamp `ts`) to this group's
    prepared record of the txn.

    Raises:
        StoreInvariantError: a written key lacks the transaction's write intent (a corrupt
            store; the prepared record and the intents are written together).
    """
    txn_id = cmd.txn_id
    info = store.prepared(txn_id)
    if info is None and cmd.if_prepared:  # R6
        return ResolveResult(found=False)
    if info is not None and not _proof_matches(cmd, info):  # R7
        return ResolveResult(found=False)
    if info is None and may_be_purged(store, start_ts_of(txn_id)):  # R5's exception
        return ResolveResult(found=False)
    if store.decision(txn_id) is None:
        # A commit resolved here keeps its participants (R5): the record must outlive every
        # other participant's prepared record (G2), or recovery there would find no record.
        participants = info.participants if info is not None and cmd.commit else ()
        # A commit with nothing prepared here is a late copy: the PREPARE a commit needed
        # here was replaced by a record with its participants, purged only after its check
        # (G2), so this record's purge leaves nobody in doubt (it does not raise the
        # unverified purge mark, G1).
        late = info is None and cmd.commit
        _record_outcome(store, txn_id, cmd.commit, cmd.commit_ts, ts, participants, late=late)
    if info is None:
        return ResolveResult(found=False)
    written = 0
    apply_writes = cmd.commit and commit_writes_here(info, cmd.participants, cmd.commit_ts)
    for key in info.write_keys:
        if apply_writes:
            mine = [i for i in store.intents(key) if i.txn_id == txn_id and i.is_write]
            if not mine:
                raise StoreInvariantError(
                    f"txn {txn_id!r} is prepared but holds no write intent on {key!r}"
                )
            intent = mine[0]
            written += _write_committed(store, key, intent.value, cmd.commit_ts, intent.ttl_ms)
        store.delete_intent(key, txn_id)
    for key in info.read_keys:
        store.delete_intent(key, txn_id)
    if apply_writes and cmd.commit_ts > store.max_version():
        store.set_max_version(cmd.commit_ts)
    store.delete_prepared(txn_id)
    return ResolveResult(found=True, versions_written=written)


def commit_one_phase(store: TxnStore, cmd: CommitOnePhase, ts: int) -> OnePhaseResult:
    """Rules O1-O5: commit a single-group transaction at once, or refuse it unchanged."""
    txn_id = cmd.txn_id
    decided = store.decision(txn_id)
    if decided is not None:
        if decided.committed:
            return OnePhaseResult(commit_ts=decided.commit_ts)
        return OnePhaseResult(
            conflict=_refused(
                txn_id,
                PHASE_COMMIT,
                "already aborted: this group recorded an abort of the transaction",
            )
        )
    if store.prepared(txn_id) is not None:
        return OnePhaseResult(
            conflict=_refused(
                txn_id, PHASE_COMMIT, "the transaction is prepared here by two-phase commit"
            )
        )
    if may_be_purged(store, cmd.began_ts):  # O5: nothing recorded, the commit may be purged
        return OnePhaseResult(conflict=_began_before_purge(txn_id, PHASE_COMMIT))
    conflict = validate(store, txn_id, cmd.reads, cmd.writes, PHASE_COMMIT, cmd.read_ranges)
    values = _written_values(store, cmd.writes) if conflict is None else conflict
    if isinstance(values, Conflict):
        # Recorded, so a late duplicate of this request (retried after a lost answer) finds
        # the abort instead of validating again and committing what the client was told
        # had failed.
        _record_outcome(store, txn_id, False, 0, ts)
        return OnePhaseResult(conflict=values)
    max_version = store.max_version()
    commit_ts = ts if ts > max_version else max_version + 1
    for write in cmd.writes:
        _write_committed(store, write.key, values[write.key], commit_ts, write.ttl_ms)
    store.set_max_version(commit_ts)
    _record_outcome(store, txn_id, True, commit_ts, ts, one_phase=True)
    return OnePhaseResult(commit_ts=commit_ts)


def prevent(store: TxnStore, cmd: Prevent, ts: int) -> PreventResult:
    """Rules V1-V2: report the txn's PREPARE here, or make sure it never happens here."""
    info = store.prepared(cmd.txn_id)
    if info is not None:
        if not same_participants(cmd.participants, info.participants):  # V3
            return PreventResult(prepared=False)
        return PreventResult(prepared=True, prepare_ts=info.prepare_ts)
    decided = store.decision(cmd.txn_id)
    if decided is not None and not same_participants(cmd.participants, decided.participants):
        return PreventResult(prepared=False)  # V3
    if decided is None:
        if may_be_purged(store, cmd.asker_ts):
            return PreventResult(
                prepared=False, unknown=True, checked=purges_checked(store, cmd.asker_ts)
            )
        _record_outcome(store, cmd.txn_id, False, 0, ts)
    elif decided.committed:
        return PreventResult(prepared=True, prepare_ts=decided.commit_ts)
    return PreventResult(prepared=False)


def same_participants(asked: Sequence[int], held: Sequence[int]) -> bool:
    """Rules V3 and coordinator D6 (either side empty: nothing to compare)."""
    return not asked or not held or set(asked) == set(held)


def may_be_purged(store: TxnStore, asker_ts: int) -> bool:
    """Rules V2 and coordinator D4: with no record of a txn here, whether one may have been
    purged (a commit record is decided at or after `asker_ts`; 0: the asker makes no claim)."""
    return 0 < asker_ts < store.purge_mark()


def purges_checked(store: TxnStore, asker_ts: int) -> bool:
    """Rules V2 and coordinator D4: whether every purge here that could have deleted a commit
    record decided at or after `asker_ts` checked it with its other participants (G2)."""
    return store.unverified_purge_mark() <= asker_ts


def single_key_conflict(
    key: bytes,
    intents: Sequence[IntentInfo],
    scanners: Sequence[bytes] = (),
    *,
    touch: bool = False,
) -> Conflict | None:
    """Rule W1: the conflict of a single-key write on `key` given its intents and the
    prepared transactions that scanned a range holding it, or None; a `touch` meets only
    the write intents."""
    if touch:
        intents = [i for i in intents if i.is_write]
        scanners = ()
    if not intents:
        if scanners:
            return Conflict(
                key=key,
                other_txn=scanners[0],
                phase=PHASE_WRITE,
                reason="the key is inside a range a prepared transaction scanned; retry later",
            )
        return None
    first = intents[0]
    kind = "write" if first.kind is IntentKind.WRITE else "read"
    return Conflict(
        key=key,
        other_txn=first.txn_id,
        phase=PHASE_WRITE,
        reason=f"the key is locked by a prepared transaction's {kind} intent; retry later",
    )
