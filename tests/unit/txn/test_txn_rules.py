"""The participant and coordinator rules, one test per rule, on both harnesses.

Each test names the rule of `txn.participant` (P*, R*, O*, V*, W*) or `txn.coordinator`
(D*, F1, G*) it checks, and runs twice: on `MemTxnStore` (the rules alone) and on the shard
state machine (encoded commands through apply, one slot per call).
"""

from __future__ import annotations

from dataclasses import replace

import pytest
from txn_harness import Harness, MemHarness, ShardHarness

from shard.codec import encode_txn
from shard.errors import Status
from txn import coordinator, participant
from txn.coordinator import TRANSITIONS, DecisionState, decision_state
from txn.records import (
    CommitOnePhase,
    Decide,
    DecisionInfo,
    DecisionResult,
    Finish,
    IntentInfo,
    IntentKind,
    KeyRange,
    OnePhaseResult,
    Prepare,
    PrepareResult,
    Prevent,
    PreventResult,
    PurgeDecisions,
    PurgeResult,
    ReadItem,
    Resolve,
    ResolveResult,
    WriteItem,
)
from txn.store import MAX_PURGE_PER_COMMAND

T1, T2, T3 = b"txn-1", b"txn-2", b"txn-3"


@pytest.fixture(params=["mem", "shard"])
def h(request: pytest.FixtureRequest) -> Harness:
    return MemHarness() if request.param == "mem" else ShardHarness()


def prep(
    txn_id: bytes,
    reads: dict[bytes, int] | None = None,
    writes: dict[bytes, bytes | None] | None = None,
    ranges: tuple[tuple[bytes, bytes], ...] = (),
    began_ts: int = 0,
) -> Prepare:
    return Prepare(
        txn_id=txn_id,
        coordinator_group=3,
        participants=(3, 4),
        reads=tuple(ReadItem(key=k, version=v) for k, v in (reads or {}).items()),
        writes=tuple(WriteItem(key=k, value=v) for k, v in (writes or {}).items()),
        read_ranges=tuple(KeyRange(start=s, end=e) for s, e in ranges),
        began_ts=began_ts,
    )


def one_phase(
    txn_id: bytes,
    reads: dict[bytes, int] | None = None,
    writes: dict[bytes, bytes | None] | None = None,
    ranges: tuple[tuple[bytes, bytes], ...] = (),
    began_ts: int = 0,
) -> CommitOnePhase:
    return CommitOnePhase(
        txn_id=txn_id,
        reads=tuple(ReadItem(key=k, version=v) for k, v in (reads or {}).items()),
        writes=tuple(WriteItem(key=k, value=v) for k, v in (writes or {}).items()),
        read_ranges=tuple(KeyRange(start=s, end=e) for s, e in ranges),
        began_ts=began_ts,
    )


def prepared_ts(h: Harness, record: Prepare, ts: int) -> int:
    r = h.txn(record, ts)
    assert r.status is Status.OK, r
    assert isinstance(r.txn, PrepareResult) and r.txn.prepared
    return r.txn.prepare_ts


# --------------------------------------------------------------------------------------------
# Prepare


def test_p1_prepare_is_idempotent(h: Harness) -> None:
    h.put(b"a", b"1", 10)
    record = prep(T1, reads={b"a": 10}, writes={b"b": b"x"})
    first = prepared_ts(h, record, 20)
    assert first == 20
    h.put(b"z", b"1", 100)  # max_version moves on
    again = h.txn(record, 200)
    assert again.txn == PrepareResult(prepare_ts=20)
    # Even a retry whose reads would now fail answers the first vote: it is the same txn.
    stale = h.txn(prep(T1, reads={b"a": 1}), 300)
    assert stale.txn == PrepareResult(prepare_ts=20)
    assert [i.txn_id for i in h.intents(b"b")] == [T1]


def test_p2_late_prepare_after_coordinator_abort_is_refused(h: Harness) -> None:
    # This group is the coordinator; recovery aborted T1 before its own Prepare arrived.
    d = h.txn(Decide(txn_id=T1, participants=(3, 4), commit=False), 10)
    assert d.txn == DecisionResult(committed=False)
    r = h.txn(prep(T1, writes={b"a": b"1"}), 20)
    assert r.status is Status.CONFLICT
    assert r.conflict is not None and r.conflict.phase == "prepare"
    assert "already aborted" in r.conflict.reason
    assert isinstance(r.txn, PrepareResult) and r.txn.conflict == r.conflict
    assert h.intents(b"a") == [] and h.prepared(T1) is None


def test_p7_a_prepare_that_began_below_the_purge_mark_is_refused(h: Harness) -> None:
    """A question about T2 answered `checked` below the purge mark (V2) may have let its
    asker abort its own part: a Prepare of T2 arriving later must not vote yes, or every
    PREPARE of T2 would be logged after that abort. P1 and P2 still come first."""
    ts = prepared_ts(h, prep(T1, writes={b"b": b"1"}, began_ts=10), 20)
    h.txn(PurgeDecisions(before_ts=1_000))
    assert h.txn(Prevent(txn_id=T2, asker_ts=500), 1_100).txn == PreventResult(
        prepared=False, unknown=True, checked=True
    )
    late = prep(T2, writes={b"a": b"1"}, began_ts=400)
    r = h.txn(late, 1_200)
    assert r.status is Status.CONFLICT and r.conflict is not None
    assert r.conflict.phase == "prepare" and r.conflict.other_txn == T2
    assert "purge mark" in r.conflict.reason
    assert h.intents(b"a") == [] and h.prepared(T2) is None and h.decision(T2) is None
    again = h.txn(prep(T1, writes={b"b": b"1"}, began_ts=10), 1_300)
    assert again.txn == PrepareResult(prepare_ts=ts)  # P1: its vote was cast before
    for began in (0, 1_000):  # no claim (an older client), and at the mark
        txn_id = b"txn-%d" % began
        assert prepared_ts(h, prep(txn_id, began_ts=began), 1_400) > 1_000


def test_p3_read_version_mismatch_conflicts_naming_both_versions(h: Harness) -> None:
    h.put(b"a", b"1", 10)
    h.put(b"a", b"2", 20)
    r = h.txn(prep(T1, reads={b"a": 10}, writes={b"b": b"x"}), 30)
    assert r.status is Status.CONFLICT and r.conflict is not None
    assert r.conflict.key == b"a" and r.conflict.other_txn == b""
    assert "10" in r.conflict.reason and "20" in r.conflict.reason
    assert h.intents(b"b") == [] and h.prepared(T1) is None
    # A key never written reads as version 0; naming any other version conflicts.
    assert h.txn(prep(T1, reads={b"n": 0}), 30).status is Status.OK
    assert h.txn(prep(T2, reads={b"m": 5}), 30).status is Status.CONFLICT


def test_p3_a_tombstone_matches_its_version_or_zero(h: Harness) -> None:
    h.put(b"a", b"1", 10)
    h.put(b"a", None, 20)
    assert h.latest(b"a") == (20, True)
    assert h.txn(prep(T1, reads={b"a": 20}), 30).status is Status.OK
    assert h.txn(prep(T2, reads={b"a": 0}), 30).status is Status.OK  # seen absent, still absent
    assert h.txn(prep(T3, reads={b"a": 10}), 30).status is Status.CONFLICT


def test_p3_foreign_write_intent_on_a_read_key_conflicts(h: Harness) -> None:
    h.put(b"a", b"1", 10)
    prepared_ts(h, prep(T1, writes={b"a": b"2"}), 20)
    r = h.txn(prep(T2, reads={b"a": 10}), 30)
    assert r.status is Status.CONFLICT and r.conflict is not None
    assert (r.conflict.key, r.conflict.other_txn, r.conflict.phase) == (b"a", T1, "prepare")


def test_p3_read_intents_are_shared(h: Harness) -> None:
    h.put(b"a", b"1", 10)
    prepared_ts(h, prep(T1, reads={b"a": 10}, writes={b"x": b"1"}), 20)
    prepared_ts(h, prep(T2, reads={b"a": 10}, writes={b"y": b"1"}), 21)
    intents = h.intents(b"a")
    assert [(i.txn_id, i.kind) for i in intents] == [(T1, IntentKind.READ), (T2, IntentKind.READ)]


def test_p4_write_conflicts_with_a_foreign_read_intent(h: Harness) -> None:
    h.put(b"a", b"1", 10)
    prepared_ts(h, prep(T1, reads={b"a": 10}), 20)
    r = h.txn(prep(T2, writes={b"a": b"2"}), 30)
    assert r.status is Status.CONFLICT and r.conflict is not None
    assert (r.conflict.key, r.conflict.other_txn) == (b"a", T1)
    assert "read intent" in r.conflict.reason


def test_p4_write_conflicts_with_a_foreign_write_intent(h: Harness) -> None:
    prepared_ts(h, prep(T1, writes={b"a": b"1"}), 20)
    r = h.txn(prep(T2, writes={b"a": b"2"}), 30)
    assert r.status is Status.CONFLICT and r.conflict is not None
    assert (r.conflict.key, r.conflict.other_txn) == (b"a", T1)
    assert "write intent" in r.conflict.reason
    assert [i.txn_id for i in h.intents(b"a")] == [T1]


def test_p5_prepare_ts_intents_and_record(h: Harness) -> None:
    h.put(b"a", b"1", 50)
    # ts below max_version: prepare_ts = max_version + 1.
    record = prep(T1, reads={b"a": 50, b"r": 0}, writes={b"a": b"2", b"w": None})
    assert prepared_ts(h, record, 5) == 51
    assert h.max_version == 50  # prepare does not move the shard's versions
    info = h.prepared(T1)
    assert info is not None
    assert info.prepare_ts == 51 and info.coordinator_group == 3 and info.participants == (3, 4)
    assert info.write_keys == (b"a", b"w") and info.read_keys == (b"r",)
    (a,) = h.intents(b"a")  # read and written: one write intent
    assert (a.kind, a.value, a.prepare_ts) == (IntentKind.WRITE, b"2", 51)
    (w,) = h.intents(b"w")
    assert (w.kind, w.value) == (IntentKind.WRITE, None)
    (r,) = h.intents(b"r")
    assert r.kind is IntentKind.READ
    # ts above max_version: prepare_ts = ts.
    assert prepared_ts(h, prep(T2, writes={b"q": b"1"}), 70) == 70


# --------------------------------------------------------------------------------------------
# Resolve


def test_r1_resolve_of_an_unknown_txn_is_a_noop(h: Harness) -> None:
    h.put(b"a", b"1", 10)
    before = h.data_without_txn_records() if isinstance(h, ShardHarness) else None
    r = h.txn(Resolve(txn_id=T1, commit=True, commit_ts=100), 50)
    assert r.status is Status.OK and r.txn == ResolveResult(found=False)
    assert h.max_version == 10 and h.value(b"a") == (b"1", 10)
    # Only the purgeable resolution record (rule R5) is left.
    assert h.decision(T1) == DecisionInfo(
        txn_id=T1,
        committed=True,
        commit_ts=100,
        participants=(),
        decided_ts=50,
        finished=True,
        late=True,
    )
    assert h.txn(PurgeDecisions(before_ts=51)).txn == PurgeResult(purged=1)
    if isinstance(h, ShardHarness):
        assert h.data_without_txn_records() == before


def test_r2_resolve_commit_writes_versions_at_commit_ts_and_bumps_max_version(
    h: Harness,
) -> None:
    h.put(b"r", b"1", 10)
    h.put(b"d", b"1", 11)
    prepared_ts(h, prep(T1, reads={b"r": 10}, writes={b"a": b"A", b"d": None, b"n": None}), 20)
    h.put(b"other", b"1", 30)  # unrelated keys still take writes
    r = h.txn(Resolve(txn_id=T1, commit=True, commit_ts=100))
    # b"n" was absent: deleting it writes nothing, as a single-key delete.
    assert r.txn == ResolveResult(found=True, versions_written=2)
    assert h.value(b"a") == (b"A", 100)
    assert h.value(b"d") is None and h.latest(b"d") == (100, True)
    assert h.latest(b"n") == (0, True)
    assert h.max_version == 100
    assert h.intents(b"a") == h.intents(b"r") == [] and h.prepared(T1) is None
    # Timestamp cache: a later write to a key the txn only READ lands above commit_ts.
    w = h.put(b"r", b"2", 50)
    assert w.ok and w.version == 101


def test_r2_commit_ts_below_max_version_still_writes_at_commit_ts(h: Harness) -> None:
    prepared_ts(h, prep(T1, writes={b"a": b"A"}), 20)
    h.put(b"other", b"1", 500)
    h.txn(Resolve(txn_id=T1, commit=True, commit_ts=25))
    assert h.value(b"a") == (b"A", 25)
    assert h.max_version == 500


def test_r5_a_late_prepare_after_the_resolve_is_refused(h: Harness) -> None:
    record = prep(T1, writes={b"a": b"A"})
    prepared_ts(h, record, 20)
    h.txn(Resolve(txn_id=T1, commit=True, commit_ts=30), 31)
    r = h.txn(record, 40)
    assert r.status is Status.CONFLICT and "already committed" in r.message
    assert h.intents(b"a") == [] and h.prepared(T1) is None
    assert h.value(b"a") == (b"A", 30)


def test_r3_stale_duplicate_prepare_after_resolve_writes_nothing(h: Harness) -> None:
    record = prep(T1, writes={b"a": b"A"})
    prepared_ts(h, record, 20)
    h.txn(Resolve(txn_id=T1, commit=True, commit_ts=30))
    h.put(b"a", b"newer", 40)
    # The resolution record (R5) is past its retention, and rule G2 found T1 prepared nowhere.
    h.txn(PurgeDecisions(before_ts=1, verified=(T1,)))
    # A delayed duplicate of the Prepare arrives after that: it re-takes intents...
    assert prepared_ts(h, record, 20) == 41
    # ...and the decision, delivered again by recovery, only releases them.
    r = h.txn(Resolve(txn_id=T1, commit=True, commit_ts=30))
    assert r.txn == ResolveResult(found=True, versions_written=0)
    assert h.value(b"a") == (b"newer", 40)
    assert h.intents(b"a") == [] and h.prepared(T1) is None


def test_r4_resolve_abort_leaves_no_trace(h: Harness) -> None:
    h.put(b"a", b"1", 10)
    before_max = h.max_version
    before = h.data_without_txn_records() if isinstance(h, ShardHarness) else None
    prepared_ts(h, prep(T1, reads={b"a": 10, b"r": 0}, writes={b"w": b"x", b"a": None}), 20)
    r = h.txn(Resolve(txn_id=T1, commit=False), 25)
    assert r.txn == ResolveResult(found=True, versions_written=0)
    assert h.txn(PurgeDecisions(before_ts=26)).txn == PurgeResult(purged=1)  # R5's record
    assert h.all_intents() == [] and h.prepared_txns() == []
    assert h.value(b"a") == (b"1", 10) and h.value(b"w") is None
    assert h.max_version == before_max
    if isinstance(h, ShardHarness):
        assert h.data_without_txn_records() == before
    # The key takes single-key writes again.
    assert h.put(b"a", b"2", 30).ok


# --------------------------------------------------------------------------------------------
# Decide, Finish, PurgeDecisions


def test_d1_first_decision_wins_commit_then_abort(h: Harness) -> None:
    r = h.txn(Decide(txn_id=T1, participants=(3, 4), commit=True, commit_ts=50), 40)
    assert r.txn == DecisionResult(committed=True, commit_ts=50)
    late = h.txn(Decide(txn_id=T1, participants=(3,), commit=False), 60)
    assert late.status is Status.OK and late.txn == DecisionResult(committed=True, commit_ts=50)
    info = h.decision(T1)
    assert info is not None
    assert (info.committed, info.commit_ts, info.participants) == (True, 50, (3, 4))
    assert (info.decided_ts, info.finished) == (40, False)


def test_d1_first_decision_wins_abort_then_commit(h: Harness) -> None:
    r = h.txn(Decide(txn_id=T1, participants=(3, 4), commit=False, commit_ts=99), 40)
    assert r.txn == DecisionResult(committed=False, commit_ts=0)
    late = h.txn(Decide(txn_id=T1, participants=(3, 4), commit=True, commit_ts=50), 60)
    assert late.txn == DecisionResult(committed=False, commit_ts=0)
    info = h.decision(T1)
    assert info is not None and not info.committed


@pytest.mark.parametrize("commit", [True, False])
def test_d2_decide_resolves_the_coordinators_own_prepared_part(h: Harness, commit: bool) -> None:
    h.put(b"a", b"old", 10)
    ts = prepared_ts(h, prep(T1, writes={b"a": b"new"}), 20)
    h.txn(Decide(txn_id=T1, participants=(1, 2), commit=commit, commit_ts=ts + 5), ts + 5)
    assert h.prepared(T1) is None and h.all_intents() == []
    assert h.value(b"a") == ((b"new", ts + 5) if commit else (b"old", 10))
    # A later Decide (recovery asking again) changes nothing and resolves nothing twice.
    late = h.txn(Decide(txn_id=T1, participants=(1, 2), commit=not commit, commit_ts=ts + 9))
    assert late.txn == DecisionResult(committed=commit, commit_ts=ts + 5 if commit else 0)
    assert h.value(b"a") == ((b"new", ts + 5) if commit else (b"old", 10))


def test_d3_recovery_abort_over_this_groups_prepare_records_nothing(h: Harness) -> None:
    """This group's yes vote may complete the votes a client reported as a commit."""
    ts = prepared_ts(h, prep(T1, writes={b"a": b"new"}), 20)
    r = h.txn(Decide(txn_id=T1, participants=(3, 4), commit=False, recover=True), 30)
    assert r.status is Status.OK
    assert r.txn == DecisionResult(committed=False, commit_ts=0, pending=True)
    assert h.decision(T1) is None
    assert h.prepared(T1) is not None and h.intents(b"a") != []
    # The prevent round found every participant prepared: the commit is recorded at
    # max(prepare_ts), and a later recovery abort finds it.
    h.txn(Decide(txn_id=T1, participants=(3, 4), commit=True, commit_ts=ts + 7), 31)
    late = h.txn(Decide(txn_id=T1, participants=(3, 4), commit=False, recover=True), 32)
    assert late.txn == DecisionResult(committed=True, commit_ts=ts + 7)
    assert h.value(b"a") == (b"new", ts + 7)


def test_d3_recovery_abort_without_a_prepare_here_is_recorded_and_forbids_it(
    h: Harness,
) -> None:
    r = h.txn(Decide(txn_id=T1, participants=(3, 4), commit=False, recover=True), 30)
    assert r.txn == DecisionResult(committed=False, commit_ts=0)
    late = h.txn(prep(T1, writes={b"a": b"new"}), 40)
    assert late.status is Status.CONFLICT and "already aborted" in late.message
    assert h.prepared(T1) is None and h.intents(b"a") == []


@pytest.mark.parametrize("held", ["prepare", "commit", "abort"])
def test_d6_recovery_decide_over_other_participants_is_not_committed(h: Harness, held: str) -> None:
    """A recovery Decide naming other participants than the txn's PREPARE or decision here
    (one id, two transactions: a buggy client) is answered "not committed" and records
    nothing; over the same ones (or none named) it is answered as D1 and D3 say."""
    ts = prepared_ts(h, prep(T1, writes={b"a": b"new"}), 20)
    if held == "commit":
        h.txn(Decide(txn_id=T1, participants=(3, 4), commit=True, commit_ts=ts + 7), 31)
    elif held == "abort":
        h.txn(Decide(txn_id=T1, participants=(3, 4), commit=False), 31)
    before = (h.decision(T1), h.prepared(T1), h.value(b"a"))
    other = h.txn(Decide(txn_id=T1, participants=(3, 5), commit=False, recover=True), 40)
    assert other.txn == DecisionResult(committed=False, commit_ts=0)
    assert (h.decision(T1), h.prepared(T1), h.value(b"a")) == before
    for same in ((4, 3), ()):
        again = h.txn(Decide(txn_id=T1, participants=same, commit=False, recover=True), 41)
        expected = {
            "prepare": DecisionResult(committed=False, commit_ts=0, pending=True),
            "commit": DecisionResult(committed=True, commit_ts=ts + 7),
            "abort": DecisionResult(committed=False, commit_ts=0),
        }[held]
        assert again.txn == expected


def test_v1_prevent_reports_a_prepare_and_changes_nothing(h: Harness) -> None:
    ts = prepared_ts(h, prep(T1, writes={b"a": b"new"}), 20)
    for at in (30, 31):  # idempotent
        r = h.txn(Prevent(txn_id=T1), at)
        assert r.status is Status.OK and r.txn == PreventResult(prepared=True, prepare_ts=ts)
    assert h.decision(T1) is None and h.prepared(T1) is not None


def test_v1_prevent_reports_a_prepare_resolved_by_its_commit(h: Harness) -> None:
    """The client resolves the participants itself after the votes, in no particular order:
    recovery may find this part already resolved while the coordinator's is not."""
    prepared_ts(h, prep(T1, writes={b"a": b"new"}), 20)
    h.txn(Resolve(txn_id=T1, commit=True, commit_ts=35), 36)
    r = h.txn(Prevent(txn_id=T1), 40)
    assert r.txn == PreventResult(prepared=True, prepare_ts=35)
    assert h.value(b"a") == (b"new", 35)


def test_v1_prevent_forbids_every_later_prepare(h: Harness) -> None:
    r = h.txn(Prevent(txn_id=T1), 30)
    assert r.txn == PreventResult(prepared=False)
    assert h.decision(T1) == DecisionInfo(
        txn_id=T1, committed=False, commit_ts=0, participants=(), decided_ts=30, finished=True
    )
    late = h.txn(prep(T1, writes={b"a": b"new"}), 40)
    assert late.status is Status.CONFLICT
    assert h.prepared(T1) is None and h.intents(b"a") == []
    assert h.txn(Prevent(txn_id=T1), 50).txn == PreventResult(prepared=False)
    assert h.txn(PurgeDecisions(before_ts=31)).txn == PurgeResult(purged=1)  # purgeable


def _commit_resolved_and_purged(h: Harness, unchecked: bool) -> int:
    """T1 prepared here, resolved by its commit (a = b"new") and that record purged: after
    G2's check, or `unchecked` as a version before rule G2 did. Returns its prepare_ts."""
    ts = prepared_ts(h, prep(T1, writes={b"a": b"new"}), 20)
    h.txn(Resolve(txn_id=T1, commit=True, commit_ts=ts + 5), ts + 6)
    if unchecked:
        h.as_written_before_g2(T1)
    purge = PurgeDecisions(before_ts=1_000, verified=() if unchecked else (T1,))
    assert h.txn(purge).txn == PurgeResult(purged=1)
    return ts


@pytest.mark.parametrize("unchecked", [True, False])
def test_d4_recovery_after_the_commit_record_was_purged_stays_in_doubt(
    h: Harness, unchecked: bool
) -> None:
    """The other participant was down longer than the retention window: this group (the
    coordinator) resolved its part by the commit and purged that record since. "No record,
    no PREPARE" must not become an abort: the other part would abort, this one stays
    written (found by review). Purged as a version before rule G2 did (no participants
    kept), the answer is not even `checked`; purged after G2's check, it is, but records
    nothing either: the asker may no longer hold the txn prepared (a stale request; the
    simulator's seed bank:purge:0 split a transaction when this recorded an abort)."""
    ts = _commit_resolved_and_purged(h, unchecked)
    asked = Decide(txn_id=T1, participants=(3, 4), commit=False, recover=True, asker_ts=ts)
    r = h.txn(asked, 2_000)
    assert r.txn == DecisionResult(committed=False, pending=True, checked=not unchecked)
    assert h.decision(T1) is None and h.value(b"a") == (b"new", ts + 5)
    # An asker at or above the mark proves no commit record of it was purged: abort.
    recent = Decide(txn_id=T2, participants=(3, 4), commit=False, recover=True, asker_ts=1_000)
    assert h.txn(recent, 2_001).txn == DecisionResult(committed=False)
    # No claim (an older client): as before the mark existed.
    old = Decide(txn_id=T3, participants=(3, 4), commit=False, recover=True)
    assert h.txn(old, 2_002).txn == DecisionResult(committed=False)


@pytest.mark.parametrize("unchecked", [True, False])
def test_v2_prevent_after_the_commit_record_was_purged_answers_unknown(
    h: Harness, unchecked: bool
) -> None:
    """The mirror case: the coordinator group was down longer than the retention window,
    this participant resolved its part by the commit and purged that record since. Nothing
    is recorded; `checked` says whether every purge that could have deleted the record
    was checked with the other participants (rule G2)."""
    ts = _commit_resolved_and_purged(h, unchecked)
    r = h.txn(Prevent(txn_id=T1, asker_ts=ts), 2_000)
    assert r.txn == PreventResult(prepared=False, unknown=True, checked=not unchecked)
    assert h.decision(T1) is None and h.value(b"a") == (b"new", ts + 5)
    assert h.txn(Prevent(txn_id=T2, asker_ts=1_000), 2_001).txn == PreventResult(prepared=False)
    assert h.decision(T2) is not None


def test_d4_v2_a_late_resolve_record_leaves_no_doubt(h: Harness) -> None:
    """A Resolve that finds neither a prepared record nor a decision (a copy arriving after
    the first outcome record was purged, that one only after its check, G2) keeps no
    participants, but its purge leaves no commit in doubt: it does not raise the unverified
    mark. Found by review: it did, and one late copy of any Resolve kept every
    never-committed txn prepared before it in doubt for good. An older version's record
    without participants still does."""
    h.txn(Resolve(txn_id=T1, commit=True, commit_ts=30), 31)
    info = h.decision(T1)
    assert info is not None and info.participants == () and info.late
    assert not info.purge_leaves_doubt()
    h.txn(PurgeDecisions(before_ts=1_000))
    r = h.txn(Prevent(txn_id=T2, asker_ts=500), 2_000)
    assert r.txn == PreventResult(prepared=False, unknown=True, checked=True)
    h.txn(Resolve(txn_id=T3, commit=True, commit_ts=1_100), 1_101)
    h.as_written_before_g2(T3)
    h.txn(PurgeDecisions(before_ts=3_000))
    r = h.txn(Prevent(txn_id=T2, asker_ts=2_500), 4_000)
    assert r.txn == PreventResult(prepared=False, unknown=True, checked=False)


@pytest.mark.parametrize("record", ["verified commit", "abort", "one-phase commit", "none"])
def test_d4_v2_purges_that_leave_no_doubt_answer_checked(h: Harness, record: str) -> None:
    """Below the purge mark but not the unverified one, the answer is `checked`: a commit
    with other participants was purged only once none of them held it prepared (G2), a
    purged abort agrees with an abort, and a one-phase commit is no two-phase txn. So an
    asker that still holds the txn prepared when its own abort is applied may abort it
    (D5, R6). Nothing is recorded here: the asker may have resolved it since."""
    if record == "verified commit":
        ts = prepared_ts(h, prep(T3, writes={b"a": b"1"}), 20)
        h.txn(Resolve(txn_id=T3, commit=True, commit_ts=ts + 5), ts + 6)
        verified: tuple[bytes, ...] = (T3,)
    else:
        verified = ()
        if record == "abort":
            h.txn(Prevent(txn_id=T3), 20)
        elif record == "one-phase commit":
            h.txn(one_phase(T3, writes={b"a": b"1"}), 20)
    assert h.txn(PurgeDecisions(before_ts=1_000, verified=verified)).txn == PurgeResult(
        purged=0 if record == "none" else 1
    )
    prevented = h.txn(Prevent(txn_id=T1, asker_ts=500), 2_000)
    assert prevented.txn == PreventResult(prepared=False, unknown=True, checked=True)
    asked = Decide(txn_id=T2, participants=(3, 4), commit=False, recover=True, asker_ts=500)
    assert h.txn(asked, 2_002).txn == DecisionResult(committed=False, pending=True, checked=True)
    assert h.decision(T1) is None and h.decision(T2) is None


def test_d5_the_prevent_round_abort_is_recorded_only_while_prepared_here(h: Harness) -> None:
    """The prevent round's premise is this group's PREPARE: its abort is recorded only
    while the group still holds it, else it records nothing (the txn was resolved here
    since, and its record may be purged: an abort now could land over its commit)."""
    ts = prepared_ts(h, prep(T1, writes={b"a": b"new"}), 20)
    abort = Decide(txn_id=T1, participants=(3, 4), commit=False, if_prepared=True)
    assert h.txn(abort, ts + 1).txn == DecisionResult(committed=False)
    assert h.prepared(T1) is None and h.intents(b"a") == []
    info = h.decision(T1)
    assert info is not None and not info.committed and not info.finished
    lone = Decide(txn_id=T2, participants=(3, 4), commit=False, if_prepared=True)
    assert h.txn(lone, ts + 2).txn == DecisionResult(committed=False, pending=True)
    assert h.decision(T2) is None
    assert h.txn(abort, ts + 3).txn == DecisionResult(committed=False)  # recorded: the answer


def test_r6_a_conditional_abort_changes_nothing_unless_prepared(h: Harness) -> None:
    """A participant's own abort after a `checked` answer (D4) resolves its part only if it
    still holds the txn prepared, and leaves no record otherwise: the txn may have been
    resolved by its commit here since, and that record purged."""
    ts = prepared_ts(h, prep(T1, writes={b"a": b"new"}), 20)
    aborted = h.txn(Resolve(txn_id=T1, commit=False, if_prepared=True), ts + 1)
    assert aborted.txn == ResolveResult(found=True)
    assert h.prepared(T1) is None and h.intents(b"a") == []
    info = h.decision(T1)
    assert info is not None and not info.committed  # R5: a late Prepare is refused
    none = h.txn(Resolve(txn_id=T2, commit=False, if_prepared=True), ts + 2)
    assert none.txn == ResolveResult(found=False) and h.decision(T2) is None
    with pytest.raises(ValueError, match="only an abort"):
        Resolve(txn_id=T2, commit=True, commit_ts=5, if_prepared=True)


def test_g1_the_purge_marks_only_rise(h: Harness) -> None:
    h.txn(Resolve(txn_id=T1, commit=True, commit_ts=30), 31)
    h.as_written_before_g2(T1)  # its purge raises the unverified mark too
    h.txn(PurgeDecisions(before_ts=500))
    h.txn(PurgeDecisions(before_ts=300))
    r = h.txn(Prevent(txn_id=T2, asker_ts=400), 1_000)
    assert r.txn == PreventResult(prepared=False, unknown=True, checked=False)
    h.txn(PurgeDecisions(before_ts=800))
    r = h.txn(Prevent(txn_id=T2, asker_ts=600), 1_001)
    assert r.txn == PreventResult(prepared=False, unknown=True, checked=True)


def test_g2_a_commit_with_other_participants_is_purged_only_once_verified(h: Harness) -> None:
    """R5 keeps the prepared record's participants with a commit; G2 purges such a record
    only if the command names it verified, and moves it to the back of the queue otherwise,
    so the records behind it are purged meanwhile and it is met again later."""
    ts = prepared_ts(h, prep(T1, writes={b"a": b"1"}), 20)
    h.txn(Resolve(txn_id=T1, commit=True, commit_ts=ts + 5), ts + 6)
    info = h.decision(T1)
    assert info is not None and info.participants == (3, 4) and info.needs_verification()
    ts2 = prepared_ts(h, prep(T2, writes={b"b": b"2"}), ts + 7)
    h.txn(Resolve(txn_id=T2, commit=False), ts2 + 1)  # an abort: nothing to verify
    h.txn(CommitOnePhase(txn_id=T3, writes=(WriteItem(key=b"c", value=b"3"),)), ts2 + 2)
    assert h.txn(PurgeDecisions(before_ts=10_000)).txn == PurgeResult(purged=2)
    assert h.decision(T1) is not None and h.decision(T2) is None and h.decision(T3) is None
    assert h.txn(PurgeDecisions(before_ts=10_000)).txn == PurgeResult(purged=0)  # met again
    assert h.txn(PurgeDecisions(before_ts=10_000, verified=(T1,))).txn == PurgeResult(purged=1)
    assert h.decision(T1) is None


def test_g2_candidates_are_the_commits_to_check_that_the_next_purge_would_meet(
    h: Harness,
) -> None:
    ts = prepared_ts(h, prep(T1, writes={b"a": b"1"}), 20)
    h.txn(Resolve(txn_id=T1, commit=True, commit_ts=ts + 5), ts + 6)
    h.txn(CommitOnePhase(txn_id=T2, writes=(WriteItem(key=b"b", value=b"2"),)), ts + 7)
    ts3 = prepared_ts(h, prep(T3, writes={b"c": b"3"}), ts + 8)
    h.txn(Resolve(txn_id=T3, commit=True, commit_ts=ts3 + 1), ts3 + 2)
    assert [d.txn_id for d in h.purge_candidates(10_000, 10)] == [T1, T3]
    assert [d.txn_id for d in h.purge_candidates(10_000, 2)] == [T1]  # the first 2 records
    assert [d.txn_id for d in h.purge_candidates(ts3 + 2, 10)] == [T1]  # T3 decided later
    assert h.purge_candidates(ts + 6, 10) == []


def test_g2_an_unverified_record_counts_against_the_commands_bound(
    h: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A command moves or deletes at most MAX_PURGE_PER_COMMAND records and says `more`;
    records it moved are not met again in the same command."""
    monkeypatch.setattr(coordinator, "MAX_PURGE_PER_COMMAND", 2)
    for i, txn_id in enumerate((T1, T2, T3)):
        ts = prepared_ts(h, prep(txn_id, writes={b"k%d" % i: b"v"}), 20 + 10 * i)
        h.txn(Resolve(txn_id=txn_id, commit=True, commit_ts=ts + 1), ts + 2)
    assert h.txn(PurgeDecisions(before_ts=10_000, verified=(T2,))).txn == PurgeResult(
        purged=1, more=True
    )
    assert h.txn(PurgeDecisions(before_ts=10_000, verified=(T3,))).txn == PurgeResult(purged=1)
    assert [t for t in (T1, T2, T3) if h.decision(t) is not None] == [T1]


def test_f1_finish_marks_the_decision_finished(h: Harness) -> None:
    assert h.txn(Finish(txn_id=T1)).txn is None  # no record: no-op
    h.txn(Decide(txn_id=T1, participants=(3,), commit=True, commit_ts=5), 5)
    h.txn(Decide(txn_id=T2, participants=(3,), commit=False), 6)
    assert [d.txn_id for d in h.unfinished()] == [T1, T2]
    assert h.txn(Finish(txn_id=T1)).txn == DecisionResult(committed=True, commit_ts=5)
    assert h.txn(Finish(txn_id=T1)).txn == DecisionResult(committed=True, commit_ts=5)
    assert [d.txn_id for d in h.unfinished()] == [T2]
    info = h.decision(T1)
    assert info is not None and info.finished


def test_g1_purge_deletes_finished_decisions_decided_before_the_horizon(h: Harness) -> None:
    for i, (txn_id, ts) in enumerate([(T1, 10), (T2, 20), (T3, 30)]):
        h.txn(Decide(txn_id=txn_id, participants=(3,), commit=i != 1, commit_ts=ts), ts)
    h.txn(Finish(txn_id=T1))
    h.txn(Finish(txn_id=T3))
    # T2 (decided at 20) is unfinished: never purged. T3 is decided at 30: not before 25.
    assert h.txn(PurgeDecisions(before_ts=25)).txn == PurgeResult(purged=1)
    assert h.decision(T1) is None and h.decision(T2) is not None and h.decision(T3) is not None
    assert h.txn(PurgeDecisions(before_ts=1000)).txn == PurgeResult(purged=1)
    assert h.decision(T3) is None and h.decision(T2) is not None
    h.txn(Finish(txn_id=T2))
    assert h.txn(PurgeDecisions(before_ts=1000)).txn == PurgeResult(purged=1)
    assert h.decision(T2) is None and h.unfinished() == []
    # A purged transaction is unknown again: a Decide records afresh.
    assert h.txn(Decide(txn_id=T1, participants=(3,), commit=False), 2000).txn == DecisionResult(
        committed=False
    )


def test_g1_purge_goes_in_finish_order_and_stops_at_the_first_later_decision(h: Harness) -> None:
    h.txn(Decide(txn_id=T1, participants=(3,), commit=True, commit_ts=50), 50)
    h.txn(Decide(txn_id=T2, participants=(3,), commit=True, commit_ts=10), 10)
    h.txn(Finish(txn_id=T1))
    h.txn(Finish(txn_id=T2))
    # T2 is old enough, but T1 finished first and is not: T2 waits for a later purge.
    assert h.txn(PurgeDecisions(before_ts=20)).txn == PurgeResult(purged=0)
    assert h.txn(PurgeDecisions(before_ts=60)).txn == PurgeResult(purged=2)


def test_g1_purge_is_bounded_per_command(h: Harness) -> None:
    n = MAX_PURGE_PER_COMMAND + 3
    records = [one_phase(b"t%d" % i, writes={b"k": b"%d" % i}) for i in range(n)]
    if isinstance(h, ShardHarness):
        h.run(*(encode_txn(r, 10) for r in records))  # one slot: faster
    else:
        for record in records:
            h.txn(record, 10)
    r = h.txn(PurgeDecisions(before_ts=100))
    assert r.txn == PurgeResult(purged=MAX_PURGE_PER_COMMAND, more=True)
    assert h.txn(PurgeDecisions(before_ts=100)).txn == PurgeResult(purged=3)


def test_decision_record_follows_the_transition_table(h: Harness) -> None:
    steps = [
        ("Decide", Decide(txn_id=T1, participants=(3,), commit=True, commit_ts=5), 5),
        ("Decide", Decide(txn_id=T1, participants=(3,), commit=False), 6),
        ("Finish", Finish(txn_id=T1), 0),
        ("Finish", Finish(txn_id=T1), 0),
        ("Decide", Decide(txn_id=T1, participants=(3,), commit=False), 7),
        ("PurgeDecisions", PurgeDecisions(before_ts=100), 0),
        ("CommitOnePhase", one_phase(T1, writes={b"a": b"1"}), 200),
        ("PurgeDecisions", PurgeDecisions(before_ts=300), 0),
    ]
    state = DecisionState.NONE
    for event, record, ts in steps:
        state = TRANSITIONS[state][event]
        h.txn(record, ts)
        assert decision_state(h.decision(T1)) is state, event
    assert state is DecisionState.NONE


# --------------------------------------------------------------------------------------------
# One-phase commit


def test_o4_one_phase_commit_writes_at_commit_ts_and_records_a_finished_decision(
    h: Harness,
) -> None:
    h.put(b"a", b"1", 10)
    r = h.txn(one_phase(T1, reads={b"a": 10}, writes={b"a": b"2", b"b": b"3"}), 5)
    assert r.status is Status.OK and r.txn == OnePhaseResult(commit_ts=11)
    assert h.value(b"a") == (b"2", 11) and h.value(b"b") == (b"3", 11)
    assert h.max_version == 11
    info = h.decision(T1)
    assert info is not None and info.committed and info.finished and info.commit_ts == 11
    assert h.unfinished() == [] and h.all_intents() == []


def test_o3_one_phase_conflict_records_an_abort(h: Harness) -> None:
    h.put(b"a", b"1", 10)
    record = one_phase(T1, reads={b"a": 9}, writes={b"b": b"x"})
    stale = h.txn(record, 20)
    assert stale.status is Status.CONFLICT and stale.conflict is not None
    assert stale.conflict.phase == "commit" and stale.conflict.key == b"a"
    assert isinstance(stale.txn, OnePhaseResult) and not stale.txn.committed
    prepared_ts(h, prep(T2, writes={b"c": b"1"}), 30)
    locked = h.txn(one_phase(T3, writes={b"c": b"2"}), 40)
    assert locked.status is Status.CONFLICT and locked.conflict is not None
    assert (locked.conflict.key, locked.conflict.other_txn) == (b"c", T2)
    for refused in (T1, T3):
        decision = h.decision(refused)
        assert decision is not None and not decision.committed
    assert h.value(b"b") is None and h.max_version == 10
    # A late copy of the refused request (its answer was lost, it was re-sent) is refused
    # again even though its reads would now validate: the client was told it failed.
    h.put(b"a", b"1", 50)
    late = h.txn(one_phase(T1, reads={b"a": 50}, writes={b"b": b"x"}), 60)
    assert late.status is Status.CONFLICT and h.value(b"b") is None


@pytest.mark.parametrize("reads", [False, True], ids=["blind", "read-write"])
def test_o5_a_copy_of_a_one_phase_commit_older_than_the_purge_mark_is_refused(
    h: Harness, reads: bool
) -> None:
    """T1 committed in one phase and its record was purged; a copy of the request held in
    the network that long arrives. Validated again, a blind write would land a second
    time over T2's newer value, and a read-write one would record an abort of the
    committed T1 (O3). Refused instead, recording nothing."""
    h.put(b"a", b"0", 5)
    record = one_phase(T1, reads={b"a": 5} if reads else None, writes={b"a": b"1"}, began_ts=10)
    first = h.txn(record, 20)
    assert first.txn == OnePhaseResult(commit_ts=20)
    h.put(b"a", b"2", 30)  # T2 overwrites it
    assert h.txn(PurgeDecisions(before_ts=1_000)).txn == PurgeResult(purged=1)
    late = h.txn(record, 1_100)
    assert late.status is Status.CONFLICT and late.conflict is not None
    assert late.conflict.phase == "commit" and "purge mark" in late.conflict.reason
    assert h.value(b"a") == (b"2", 30) and h.decision(T1) is None
    fresh = one_phase(T2, writes={b"b": b"1"}, began_ts=1_000)  # at the mark: taken
    assert h.txn(fresh, 1_200).txn == OnePhaseResult(commit_ts=1_200)


def test_o1_one_phase_commit_is_idempotent(h: Harness) -> None:
    record = one_phase(T1, writes={b"a": b"1"})
    first = h.txn(record, 10)
    assert first.txn == OnePhaseResult(commit_ts=10)
    h.put(b"a", b"2", 20)
    again = h.txn(record, 30)
    assert again.txn == OnePhaseResult(commit_ts=10)
    assert h.value(b"a") == (b"2", 20)  # not written twice


def test_o1_one_phase_of_an_aborted_txn_is_refused(h: Harness) -> None:
    h.txn(Decide(txn_id=T1, participants=(3,), commit=False), 10)
    r = h.txn(one_phase(T1, writes={b"a": b"1"}), 20)
    assert r.status is Status.CONFLICT and r.conflict is not None
    assert "already aborted" in r.conflict.reason
    assert h.value(b"a") is None


def test_o2_one_phase_of_a_txn_prepared_here_is_refused(h: Harness) -> None:
    prepared_ts(h, prep(T1, writes={b"a": b"1"}), 10)
    r = h.txn(one_phase(T1, writes={b"a": b"2"}), 20)
    assert r.status is Status.CONFLICT
    assert h.value(b"a") is None and h.prepared(T1) is not None


# --------------------------------------------------------------------------------------------
# Single-key writes


@pytest.mark.parametrize("kind", [IntentKind.READ, IntentKind.WRITE])
def test_w1_single_key_put_and_delete_blocked_by_an_intent(h: Harness, kind: IntentKind) -> None:
    h.put(b"a", b"1", 10)
    if kind is IntentKind.READ:
        prepared_ts(h, prep(T1, reads={b"a": 10}), 20)
    else:
        prepared_ts(h, prep(T1, writes={b"a": b"2"}), 20)
    for value in (b"3", None):
        r = h.put(b"a", value, 30)
        assert r.status is Status.CONFLICT and r.version == 0
        assert r.conflict is not None
        assert (r.conflict.key, r.conflict.other_txn, r.conflict.phase) == (b"a", T1, "write")
    assert h.value(b"a") == (b"1", 10) and h.max_version == 10
    # Other keys are not blocked; after the resolve, neither is this one.
    assert h.put(b"b", b"1", 31).ok
    h.txn(Resolve(txn_id=T1, commit=False))
    assert h.put(b"a", b"4", 40).ok


def test_w1_a_touch_meets_only_write_intents() -> None:
    """A touch keeps the value and version read intents and scans saw, so only a write
    intent holds it; any other single-key write meets all three, first intent named."""
    read = IntentInfo(txn_id=T1, kind=IntentKind.READ, prepare_ts=20)
    write = IntentInfo(txn_id=T2, kind=IntentKind.WRITE, prepare_ts=21, value=b"v")
    assert participant.single_key_conflict(b"a", [read], [T3], touch=True) is None
    assert participant.single_key_conflict(b"a", [], [T3], touch=True) is None
    for intents, scanners, other in (([read], [T3], T1), ([], [T3], T3), ([write], [], T2)):
        conflict = participant.single_key_conflict(b"a", intents, scanners)
        assert conflict is not None and conflict.other_txn == other
    held = participant.single_key_conflict(b"a", [read, write], [T3], touch=True)
    assert held is not None and (held.key, held.other_txn, held.phase) == (b"a", T2, "write")
    assert "write intent" in held.reason


# --------------------------------------------------------------------------------------------
# Scanned ranges (P6)

A_TO_B = ((b"a", b"b"),)


def test_p6_a_key_added_to_a_scanned_range_is_a_phantom(h: Harness) -> None:
    h.put(b"a1", b"1", 10)
    # T1 scanned [a, b) and saw a1: still true, it prepares.
    prepared_ts(h, prep(T1, reads={b"a1": 10}, ranges=A_TO_B), 20)
    h.txn(Resolve(txn_id=T1, commit=False))
    h.put(b"a2", b"1", 30)
    r = h.txn(prep(T2, reads={b"a1": 10}, ranges=A_TO_B), 40)
    assert r.status is Status.CONFLICT and r.conflict is not None
    assert (r.conflict.key, r.conflict.other_txn, r.conflict.phase) == (b"a2", b"", "prepare")
    assert "phantom" in r.conflict.reason
    assert h.prepared(T2) is None and h.intents(b"a1") == []
    # Keys outside the range are no phantoms; nor is a2 for a scan its limit cut after a1.
    assert h.txn(prep(T3, reads={b"a1": 10}, ranges=((b"a", b"a1\x00"),)), 50).ok


def test_p6_a_deleted_key_is_no_phantom_but_a_changed_read_conflicts(h: Harness) -> None:
    h.put(b"a1", b"1", 10)
    h.put(b"a2", b"1", 11)
    h.put(b"a2", None, 12)  # deleted: a scan now would not see it
    prepared_ts(h, prep(T1, reads={b"a1": 10}, ranges=A_TO_B), 20)
    h.txn(Resolve(txn_id=T1, commit=False))
    h.put(b"a1", None, 30)  # a key the scan saw is gone: its read version is stale (P3)
    r = h.txn(prep(T2, reads={b"a1": 10}, ranges=A_TO_B), 40)
    assert r.status is Status.CONFLICT and r.conflict is not None and r.conflict.key == b"a1"


def test_p6_a_foreign_write_intent_in_a_scanned_range_conflicts(h: Harness) -> None:
    prepared_ts(h, prep(T1, writes={b"a5": b"x"}), 20)  # an insert in flight
    r = h.txn(prep(T2, ranges=A_TO_B), 30)
    assert r.status is Status.CONFLICT and r.conflict is not None
    assert (r.conflict.key, r.conflict.other_txn) == (b"a5", T1)
    assert "write intent" in r.conflict.reason
    # A read intent in the range is shared, as on a single key.
    h.txn(Resolve(txn_id=T1, commit=False))
    h.put(b"a6", b"1", 40)
    prepared_ts(h, prep(T3, reads={b"a6": 40}), 50)
    assert h.txn(prep(b"txn-4", reads={b"a6": 40}, ranges=A_TO_B), 60).ok


def test_p6_the_transactions_own_writes_in_its_range(h: Harness) -> None:
    h.put(b"a1", b"1", 10)
    # Overwriting a key the scan returned (it is in the reads) and inserting a new one: fine.
    assert h.txn(
        prep(T1, reads={b"a1": 10}, writes={b"a1": b"2", b"a2": b"3"}, ranges=A_TO_B), 20
    ).ok
    h.txn(Resolve(txn_id=T1, commit=False))
    # Both claimants saw [a, b) without a2; T2 inserted it first. T3 writing a2 too is no
    # excuse: a2 is live and not in T3's reads, so it is a phantom (else both would "win").
    h.put(b"a2", b"mine", 30)
    r = h.txn(prep(T3, reads={b"a1": 10}, writes={b"a2": b"yours"}, ranges=A_TO_B), 40)
    assert r.status is Status.CONFLICT and r.conflict is not None
    assert r.conflict.key == b"a2" and "phantom" in r.conflict.reason
    r = h.txn(one_phase(b"txn-4", reads={b"a1": 10}, writes={b"a2": None}, ranges=A_TO_B), 41)
    assert r.status is Status.CONFLICT and r.conflict is not None and r.conflict.key == b"a2"


def test_p6_a_scanned_range_refuses_writes_of_others_until_the_resolve(h: Harness) -> None:
    prepared_ts(h, prep(T1, ranges=A_TO_B, writes={b"z": b"1"}), 20)
    for r in (
        h.txn(prep(T2, writes={b"a3": b"x"}), 30),
        h.txn(one_phase(T3, writes={b"a3": b"x"}), 31),
    ):
        assert r.status is Status.CONFLICT and r.conflict is not None
        assert (r.conflict.key, r.conflict.other_txn) == (b"a3", T1)
        assert "range another transaction scanned" in r.conflict.reason
    w = h.put(b"a3", b"x", 32)  # W1
    assert w.status is Status.CONFLICT and w.conflict is not None
    assert (w.conflict.key, w.conflict.other_txn, w.conflict.phase) == (b"a3", T1, "write")
    assert h.put(b"b1", b"x", 33).ok  # outside the range
    assert h.txn(prep(T2, ranges=A_TO_B), 34).ok  # two scanners share a range
    h.txn(Resolve(txn_id=T1, commit=True, commit_ts=40))
    h.txn(Resolve(txn_id=T2, commit=False))
    assert h.prepared(T1) is None
    assert h.put(b"a3", b"x", 50).ok  # the Resolves released the range


def test_p6_a_one_phase_commit_checks_its_scanned_ranges(h: Harness) -> None:
    h.put(b"a1", b"1", 10)
    r = h.txn(one_phase(T1, writes={b"c": b"1"}, ranges=A_TO_B), 20)
    assert r.status is Status.CONFLICT and r.conflict is not None
    assert (r.conflict.key, r.conflict.phase) == (b"a1", "commit")
    assert h.value(b"c") is None
    assert h.txn(one_phase(T2, reads={b"a1": 10}, writes={b"c": b"1"}, ranges=A_TO_B), 30).ok


def test_p1_a_prepare_naming_another_coordinator_is_refused(h: Harness) -> None:
    """Same participants, another coordinator group: recovery would ask a group that never
    decides this txn, so the copy is no copy and its yes vote must not be given."""
    record = prep(T1, writes={b"a": b"1"})
    ts = prepared_ts(h, record, 20)
    other = replace(record, coordinator_group=4)
    r = h.txn(other, 30)
    assert r.status is Status.CONFLICT and r.conflict is not None
    assert r.conflict.phase == "prepare" and r.conflict.other_txn == T1
    assert "another coordinator" in r.conflict.reason
    info = h.prepared(T1)
    assert info is not None and info.coordinator_group == 3 and info.prepare_ts == ts
    assert h.txn(record, 40).txn == PrepareResult(prepare_ts=ts)  # the real copy


def test_v3_a_commit_resolved_here_over_other_participants_is_not_the_askers(h: Harness) -> None:
    """T1 prepared here over groups (3, 4) and was resolved by its commit: the outcome
    record keeps (3, 4) (R5). A Prevent from an asker whose T1 names (3, 5) is about
    another transaction under the same id: "not prepared", and nothing recorded. Answered
    "prepared" at the commit_ts, group 5's coordinator would record a commit this group
    never voted for."""
    ts = prepared_ts(h, prep(T1, writes={b"a": b"new"}), 20)
    h.txn(Resolve(txn_id=T1, commit=True, commit_ts=ts + 5), ts + 6)
    before = h.decision(T1)
    assert before is not None and before.participants == (3, 4)
    other = h.txn(Prevent(txn_id=T1, participants=(3, 5)), 40)
    assert other.txn == PreventResult(prepared=False)
    assert h.decision(T1) == before
    same = h.txn(Prevent(txn_id=T1, participants=(4, 3)), 41)
    assert same.txn == PreventResult(prepared=True, prepare_ts=ts + 5)


@pytest.mark.parametrize("record", ["late resolve", "before G2"])
def test_v1_a_commit_record_without_participants_answers_prepared_to_any_asker(
    h: Harness, record: str
) -> None:
    """An outcome record that kept no participants (a late Resolve's, R5; or one written
    before rule G2) has nothing to compare a Prevent's participants with: it is the commit
    and answers "prepared" at its commit_ts (V1). Taken as a mismatch (V3), the asker
    would abort a committed transaction."""
    if record == "late resolve":
        h.txn(Resolve(txn_id=T1, commit=True, commit_ts=35), 36)
    else:
        ts = prepared_ts(h, prep(T1, writes={b"a": b"new"}), 20)
        assert ts == 20
        h.txn(Resolve(txn_id=T1, commit=True, commit_ts=35), 36)
        h.as_written_before_g2(T1)
    info = h.decision(T1)
    assert info is not None and info.committed and info.participants == ()
    r = h.txn(Prevent(txn_id=T1, asker_ts=30, participants=(3, 4)), 40)
    assert r.txn == PreventResult(prepared=True, prepare_ts=35)


def test_g1_a_record_decided_at_the_horizon_is_not_purged(h: Harness) -> None:
    """G1 deletes records decided strictly BEFORE `before_ts`, and raises the purge mark to
    `before_ts`. A record decided at `before_ts` must survive: the mark says only records
    decided below it may be gone, so a question with asker_ts == before_ts is answered from
    "no record" (an abort recorded over a purged commit would split the txn)."""
    h.txn(Decide(txn_id=T1, participants=(3,), commit=True, commit_ts=90), 100)
    h.txn(Finish(txn_id=T1))
    assert h.txn(PurgeDecisions(before_ts=100)).txn == PurgeResult(purged=0)
    info = h.decision(T1)
    assert info is not None and info.committed and info.decided_ts == 100
    # The record still answers; had it gone, this Prevent (asker_ts at the mark, so "no
    # record" would be trusted) would record an abort of a committed transaction.
    assert h.txn(Prevent(txn_id=T1, asker_ts=100), 200).txn == PreventResult(
        prepared=True, prepare_ts=90
    )
    assert h.txn(PurgeDecisions(before_ts=101)).txn == PurgeResult(purged=1)
    assert h.decision(T1) is None


def test_g1_a_later_purge_below_the_unverified_mark_does_not_lower_it(h: Harness) -> None:
    """The unverified purge mark only rises, also when a later PurgeDecisions with a lower
    `before_ts` (a leader whose clock is behind the previous one's) deletes another record
    that leaves doubt: otherwise a question between the two horizons would be answered
    `checked`, and its asker could abort its part of a commit whose record was purged
    unchecked."""
    h.txn(Decide(txn_id=T1, participants=(3,), commit=True, commit_ts=30), 31)
    h.txn(Finish(txn_id=T1))
    h.as_written_before_g2(T1)  # its purge leaves doubt
    assert h.txn(PurgeDecisions(before_ts=500)).txn == PurgeResult(purged=1)
    # A record decided below both horizons, finished only now (a late Resolve's record
    # written by an older version), purged by a leader whose horizon is lower.
    h.txn(Decide(txn_id=T2, participants=(3,), commit=True, commit_ts=200), 200)
    h.txn(Finish(txn_id=T2))
    h.as_written_before_g2(T2)
    assert h.txn(PurgeDecisions(before_ts=300)).txn == PurgeResult(purged=1)
    r = h.txn(Prevent(txn_id=b"txn-3", asker_ts=400), 1_000)
    assert r.txn == PreventResult(prepared=False, unknown=True, checked=False)
    asked = Decide(txn_id=b"txn-4", participants=(3, 4), commit=False, recover=True, asker_ts=400)
    assert h.txn(asked, 1_001).txn == DecisionResult(committed=False, pending=True, checked=False)


def test_g2_candidates_stop_at_the_first_record_decided_after_the_horizon(h: Harness) -> None:
    """The purge goes in finish order and stops at the first record decided at or after
    `before_ts` (G1): the candidates the leader checks first (G2) are those it would meet,
    not the commits queued behind that record, which the next purges meet (and check) when
    their time comes. Checking them now asks every participant about them on every pass."""
    h.txn(Decide(txn_id=T1, participants=(3,), commit=False), 500)  # decided late
    h.txn(Finish(txn_id=T1))
    h.txn(Decide(txn_id=T2, participants=(3, 4), commit=True, commit_ts=90), 100)
    h.txn(Finish(txn_id=T2))  # finished after T1: queued behind it
    info = h.decision(T2)
    assert info is not None and info.needs_verification()
    assert h.purge_candidates(300, 10) == []
    assert h.txn(PurgeDecisions(before_ts=300)).txn == PurgeResult(purged=0)
    assert [d.txn_id for d in h.purge_candidates(1_000, 10)] == [T2]


def test_v2_d4_an_asker_at_the_unverified_mark_is_checked(h: Harness) -> None:
    """The unverified mark U is the `before_ts` of a purge that deleted a record decided
    below U. A commit record of the asker's txn is decided at or after asker_ts, so with
    asker_ts == U no unchecked purge can have deleted it: the answer is `checked` (V2, D4),
    and the asker gets out of a txn that never committed instead of staying in doubt."""
    h.txn(Decide(txn_id=T1, participants=(3,), commit=True, commit_ts=30), 31)
    h.txn(Finish(txn_id=T1))
    h.as_written_before_g2(T1)
    h.txn(PurgeDecisions(before_ts=500))  # unverified mark 500
    h.txn(PurgeDecisions(before_ts=800))  # purge mark 800, nothing left in doubt
    r = h.txn(Prevent(txn_id=b"txn-3", asker_ts=500), 1_000)
    assert r.txn == PreventResult(prepared=False, unknown=True, checked=True)
    asked = Decide(txn_id=b"txn-4", participants=(3, 4), commit=False, recover=True, asker_ts=500)
    assert h.txn(asked, 1_001).txn == DecisionResult(committed=False, pending=True, checked=True)
    r = h.txn(Prevent(txn_id=b"txn-5", asker_ts=499), 1_002)
    assert r.txn == PreventResult(prepared=False, unknown=True, checked=False)


def test_key_range_holds_its_start_and_not_its_end() -> None:
    r = KeyRange(start=b"d", end=b"e")
    assert b"d" in r and b"d\x00" in r and b"dzz" in r
    assert b"e" not in r and b"c\xff" not in r
    assert b"e" in KeyRange(start=b"d", end=b"")  # no end


def test_p6_a_scanned_range_locks_its_start_key_and_not_its_end_key(h: Harness) -> None:
    prepared_ts(h, prep(T1, ranges=((b"d", b"e"),)), 10)
    at_start = h.put(b"d", b"x", 20)
    assert at_start.status is Status.CONFLICT and at_start.conflict is not None
    assert at_start.conflict.other_txn == T1
    assert h.put(b"e", b"x", 21).status is Status.OK  # the end is outside the range
    r = h.txn(prep(T2, writes={b"d": b"y"}), 30)
    assert r.status is Status.CONFLICT and r.conflict is not None and r.conflict.other_txn == T1
    prepared_ts(h, prep(T3, reads={b"e": 21}, writes={b"e": b"y"}), 31)
