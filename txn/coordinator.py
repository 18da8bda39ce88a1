"""Coordinator rules of 2PC: the decision record, exactly one per transaction.

Theory of operation
-------------------
The coordinator of a transaction is a Paxos GROUP, not a process (Gray & Lamport, "Consensus
on Transaction Commit"; Spanner §4.2.1): its decision is a record chosen through the group's
log, so a crashed coordinator leader is replaced by another replica that reads the same
record and finishes the job. Whoever drives the transaction (the client's node, or a
recovering leader, or a participant asking about an intent whose coordinator went silent)
proposes a Decide; the state machine keeps the FIRST one and answers every later Decide with
it, so a late COMMIT after a recovery ABORT (or the reverse) cannot change the outcome.

A transaction is COMMITTED the moment every participant has logged its PREPARE (parallel
commits, as CockroachDB's): the client answers its user then and resolves every
participant afterwards, the coordinator group included, whose outcome record (participant
rule R5, finished from the start) is then the commit's record here: no Decide is needed
for a commit. So a decision record is a consequence, and whoever records one must respect
votes it has not seen: a client resolves with `commit` only after every yes vote, and
asks for `abort` (instead of reporting a commit) with a recovery Decide like everyone
else, since a vote whose answer it lost may have been the last yes; `abort` is recorded
only when some participant cannot have prepared (rule D3), found out by the prevent round
(`shard.node`, rule 6; each participant's answer is logged there, txn.participant rule
V1). Decide records come from aborts and from recovery.

A decision record moves through these states (the table is the whole protocol):

    (none)     --Decide-->          DECIDED     committed or aborted, answers TxnStatus
    DECIDED    --Decide-->          DECIDED     the recorded decision is the answer
    DECIDED    --Finish-->          FINISHED    every participant resolved
    FINISHED   --PurgeDecisions-->  (none)      decided before the retention horizon
    (none)     --CommitOnePhase-->  FINISHED    a single-group commit decides and finishes

Rules
-----
D1. The first Decide of a txn records (committed, commit_ts (0 for an abort), participants,
    decided_ts = the command's ts, finished = False); every later Decide returns it.
D2. The coordinator group is usually a participant too: a Decide that finds the txn's
    PREPARE in this group resolves it in the same command with the recorded decision
    (txn.participant rules R1-R4), so its own part needs no Resolve round of its own. A
    Prepare arriving after the decision is refused (participant rule P2), so once a
    Decide is applied here nothing of the txn is left to resolve in this group.
D3. A recovery Decide (`recover`, always an abort) that finds no decision but the txn's
    PREPARE in this group records nothing and answers `pending`: this group's yes vote may
    complete a set of yes votes a client already reported as committed. The coordinator's
    leader then asks every other participant to Prevent the txn and records `commit` at
    max(prepare_ts) when all are prepared, `abort` when one never will be (or answers
    `unknown` and `checked`, participant rule V2; rule D5). Without the PREPARE here, the
    recorded abort also stops any later Prepare here (rule P2), so no set of yes votes can
    ever be complete.
D4. A recovery Decide whose `asker_ts` (at or below every timestamp a commit record of the
    txn carries: the asking participant's prepare_ts, a client's start time) is below this
    group's purge mark, and that finds neither a decision nor a PREPARE, records nothing and
    answers `pending`: the group may have purged the txn's commit record (rule G1), so "no
    record" no longer proves "never committed", and recording ABORT could split a committed
    transaction. Unless the answer is `checked` (below), the txn stays in doubt instead.
    (A commit record's decided_ts is at least its commit_ts, itself at least every
    prepare_ts; a record decided at or after `asker_ts` is never purged below it.) The
    answer is also `checked` when the unverified purge mark is at or below `asker_ts`, as
    in participant rule V2, which gives the reason: the asking participant then aborts its
    own part if it still holds it prepared when that abort is applied (rule R6). So a
    participant back after an outage longer than the retention window gets out of a txn
    this group never prepared, instead of staying in doubt with its intents held.
D5. The prevent round's abort (`if_prepared`) is recorded only while this group holds the
    txn's PREPARE, the premise of the round; otherwise, without a decision, it records
    nothing and answers `pending`. The round may be stale: the txn resolved here by its
    commit since, and that record purged after its check, an abort recorded now would
    contradict the commit.
D6. A recovery Decide naming participants other than those of the decision or PREPARE
    this group holds for the txn answers "not committed" and records nothing, as a
    Prevent does under participant rule V3: the asker was sent another transaction under
    the same id (a buggy or hostile client), this group never votes for the asker's set
    (participant rules P1, P2), so that set can never commit. Answered with this group's
    commit, the asker committed its part of a transaction that never committed here
    (found by review: its recovery Resolve carries no participants for rule R7 to check).
F1. Finish marks the decision finished; without a record, or already finished, a no-op.
G1. PurgeDecisions(before_ts) deletes finished records with decided_ts < before_ts, in the
    order they finished, stopping at the first one decided later (and after
    MAX_PURGE_PER_COMMAND deletions). Logged, so every replica deletes the same records.
    It raises the purge mark to before_ts, and the unverified purge mark too when it
    deleted a commit record that may be a two-phase commit's and that no check covered
    (`DecisionInfo.purge_leaves_doubt`: one written before rule G2 kept participants, or
    a one-phase or late commit's written before records were marked so).
    Not a late Resolve's (`late`, arriving after the first outcome record of its txn here
    was purged): that first record replaced the PREPARE a commit needed here, kept its
    participants and was purged only after its check, so no participant is left in doubt;
    counting it let one late copy of any Resolve keep every never-committed txn prepared
    before it in doubt for good (found by review). Counters of an older version, which has
    no unverified mark, read it as the purge mark.
G2. A finished record of a commit with other participants (`DecisionInfo.needs_verification`:
    a participant's outcome record, R5) is deleted only if the command names it in
    `verified`; otherwise it goes to the back of the purge queue. The leader names a txn
    only after every other participant answered that it does not hold the txn prepared,
    and sends those that do a Resolve with the recorded commit (shard.txn_duties). So no
    group forgets a commit while another may still ask about it: a participant cut off
    for longer than the retention window, or a coordinator group still prepared while
    another participant resolved and would purge, gets its answer on return instead of
    staying in doubt (D4, V2). A txn cannot newly become prepared after that check: a
    participant that answered it holds a record of the txn (P2) or purged one decided after
    the txn began, and then refuses the Prepare by its `began_ts` (participant rule P7).
"""

from __future__ import annotations

import enum
from dataclasses import replace

from txn import participant
from txn.records import (
    Decide,
    DecisionInfo,
    DecisionResult,
    Finish,
    PurgeDecisions,
    PurgeResult,
    Resolve,
)
from txn.store import MAX_PURGE_PER_COMMAND, TxnStore

__all__ = [
    "TRANSITIONS",
    "DecisionState",
    "decide",
    "decision_state",
    "finish",
    "purge_decisions",
]


class DecisionState(enum.Enum):
    """The state of one transaction's decision record at its coordinator group."""

    NONE = "none"
    DECIDED = "decided"
    FINISHED = "finished"


TRANSITIONS: dict[DecisionState, dict[str, DecisionState]] = {
    DecisionState.NONE: {
        "Decide": DecisionState.DECIDED,
        "CommitOnePhase": DecisionState.FINISHED,
    },
    DecisionState.DECIDED: {
        "Decide": DecisionState.DECIDED,
        "Finish": DecisionState.FINISHED,
    },
    DecisionState.FINISHED: {
        "Decide": DecisionState.FINISHED,
        "Finish": DecisionState.FINISHED,
        "PurgeDecisions": DecisionState.NONE,
    },
}
"""Documentation and test oracle of the decision record's life (see the module docstring)."""


def decision_state(info: DecisionInfo | None) -> DecisionState:
    """The state of a decision record."""
    if info is None:
        return DecisionState.NONE
    return DecisionState.FINISHED if info.finished else DecisionState.DECIDED


def decide(store: TxnStore, cmd: Decide, ts: int) -> DecisionResult:
    """Rules D1-D6: record `cmd`'s decision unless one exists (or, for a recovery abort,
    this group holds the txn's PREPARE), resolve this group's own prepared part with the
    recorded decision; answer the recorded one."""
    existing = store.decision(cmd.txn_id)
    held = existing if existing is not None else store.prepared(cmd.txn_id)
    if (
        cmd.recover
        and held is not None
        and not participant.same_participants(cmd.participants, held.participants)
    ):  # D6
        return DecisionResult(committed=False)
    if existing is None and cmd.recover:
        if store.prepared(cmd.txn_id) is not None:  # D3
            return DecisionResult(committed=False, pending=True)
        if participant.may_be_purged(store, cmd.asker_ts):  # D4
            checked = participant.purges_checked(store, cmd.asker_ts)
            return DecisionResult(committed=False, pending=True, checked=checked)
    if existing is None and cmd.if_prepared and store.prepared(cmd.txn_id) is None:  # D5
        return DecisionResult(committed=False, pending=True)
    if existing is not None:
        result = DecisionResult(committed=existing.committed, commit_ts=existing.commit_ts)
    else:
        result = DecisionResult(committed=cmd.commit, commit_ts=cmd.commit_ts if cmd.commit else 0)
        store.put_decision(
            DecisionInfo(
                txn_id=cmd.txn_id,
                committed=result.committed,
                commit_ts=result.commit_ts,
                participants=tuple(cmd.participants),
                decided_ts=ts,
                finished=False,
            )
        )
    participant.resolve(
        store,
        Resolve(txn_id=cmd.txn_id, commit=result.committed, commit_ts=result.commit_ts),
        ts,
    )
    return result


def finish(store: TxnStore, cmd: Finish) -> DecisionResult | None:
    """Rule F1: mark the decision finished. Returns the decision, or None without one."""
    existing = store.decision(cmd.txn_id)
    if existing is None:
        return None
    if not existing.finished:
        store.put_decision(replace(existing, finished=True))
    return DecisionResult(committed=existing.committed, commit_ts=existing.commit_ts)


def purge_decisions(store: TxnStore, cmd: PurgeDecisions) -> PurgeResult:
    """Rules G1, G2: delete finished decisions decided before `cmd.before_ts`, except the
    commits with other participants that `cmd.verified` does not name."""
    purged, more = store.purge_decisions(
        cmd.before_ts, MAX_PURGE_PER_COMMAND, frozenset(cmd.verified)
    )
    return PurgeResult(purged=purged, more=more)
