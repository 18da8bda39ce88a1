"""ClusterSim.verify() judging hand-made settled states: each breaks "no acknowledged commit
lost" or atomicity, and verify must say so (from a review that fed the checkers anomalies).

verify() reads only a few seams of the sim (data_groups, gc_horizon, versions, _decision,
shard_map.replicas/locate, workload.records/check, prepares_logged, versions_applied,
apply_conflicts, final), so a fake subclass supplies a hand-made store, applied history and
decision table and the real verify() judges it.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

from cluster_sim import ClusterSim, TxnRecord
from sim_client import TxnResult

KEY = b"k00"
GROUP = 1


@dataclass
class Decision:
    committed: bool
    commit_ts: int


class FakeSim(ClusterSim):
    def __init__(
        self,
        records: list[TxnRecord],
        chain: list[tuple[int, bytes]],
        decisions: dict[bytes, Decision],
        applied: list[tuple[int, bytes]] | None = None,
        horizon: int = 0,
    ) -> None:  # no super().__init__
        self.workload = SimpleNamespace(
            records=records, check=lambda final: [], single_key_versions=set()
        )
        self.final = records[-1]
        self._chain = chain  # newest first, as ClusterSim.versions returns
        self._decisions = decisions
        self._horizon = horizon
        # What the replicas applied: by default what the store holds (nothing collected).
        self.versions_applied = {KEY: dict(chain if applied is None else applied)}
        self.prepares_logged = {}
        self.apply_conflicts = []
        self.real_client_errors = []
        self.watcher = None
        self.shard_map = SimpleNamespace(
            replicas=lambda g: [1, 2, 3], locate=lambda key: SimpleNamespace(group_id=GROUP)
        )
        self.nodes = {1: None, 2: None, 3: None}

    def data_groups(self) -> list[int]:
        return [GROUP]

    def gc_horizon(self, group_id: int) -> int:
        return self._horizon

    def versions(self, node: Any, group_id: int, horizon: int) -> dict[bytes, list]:
        return {KEY: list(self._chain)}

    def _decision(self, group_id: int, txn_id: bytes) -> Any:
        return self._decisions.get(txn_id)


def _rw(txn: bytes, status: str, reads: dict, writes: dict, commit_ts: int) -> TxnRecord:
    res = TxnResult(
        txn_id=txn,
        status=status,
        reads=reads,
        writes=writes,
        commit_ts=commit_ts,
        coordinator=GROUP,
    )
    return TxnRecord(process=0, kind="rw", mops=[["x"]], invoke=0.0, complete=1.0, result=res)


def _setup() -> TxnRecord:
    return _rw(b"t0", "ok", {KEY: (None, 0)}, {KEY: b"100"}, 10)


def _final(version: int, value: bytes) -> TxnRecord:
    return _rw(b"tf", "ok", {KEY: (value, version)}, {}, 90)


def test_verify_reports_acknowledged_write_missing_from_store() -> None:
    recs = [_setup(), _rw(b"t1", "ok", {KEY: (b"100", 10)}, {KEY: b"95"}, 20), _final(10, b"100")]
    sim = FakeSim(
        recs,
        [(10, b"100")],
        {b"t0": Decision(True, 10), b"t1": Decision(True, 20), b"tf": Decision(True, 90)},
    )
    assert any("atomicity" in p for p in sim.verify())


def test_verify_reports_acknowledged_but_aborted() -> None:
    recs = [_setup(), _rw(b"t1", "ok", {KEY: (b"100", 10)}, {KEY: b"95"}, 20), _final(10, b"100")]
    sim = FakeSim(
        recs,
        [(10, b"100")],
        {b"t0": Decision(True, 10), b"t1": Decision(False, 0), b"tf": Decision(True, 90)},
    )
    assert any("acknowledged committed" in p for p in sim.verify())


def test_verify_reports_orphan_version() -> None:
    recs = [_setup(), _final(20, b"77")]
    sim = FakeSim(
        recs, [(20, b"77"), (10, b"100")], {b"t0": Decision(True, 10), b"tf": Decision(True, 90)}
    )
    assert any("belongs to no committed" in p for p in sim.verify())


def test_verify_reports_lost_update_at_different_timestamps() -> None:
    recs = [
        _setup(),
        _rw(b"t1", "ok", {KEY: (b"100", 10)}, {KEY: b"95"}, 20),
        _rw(b"t2", "ok", {KEY: (b"100", 10)}, {KEY: b"97"}, 30),
        _final(30, b"97"),
    ]
    sim = FakeSim(
        recs,
        [(30, b"97"), (20, b"95"), (10, b"100")],
        {
            b"t0": Decision(True, 10),
            b"t1": Decision(True, 20),
            b"t2": Decision(True, 30),
            b"tf": Decision(True, 90),
        },
    )
    assert any("timestamp order" in p for p in sim.verify())


def test_verify_reports_two_acknowledged_writes_of_one_key_at_one_commit_ts() -> None:
    """t1 and t2 both read k00@10 and both commit at ts 20, both acknowledged; the store
    keeps only t2's value: t1's acknowledged write is lost (a lost update). verify() kept
    `expected[(key, commit_ts)]` in a dict, so t2 silently replaced t1's entry, and the
    timestamp-order check sees each read current just below 20: it reported nothing."""
    recs = [
        _setup(),
        _rw(b"t1", "ok", {KEY: (b"100", 10)}, {KEY: b"95"}, 20),
        _rw(b"t2", "ok", {KEY: (b"100", 10)}, {KEY: b"97"}, 20),
        _final(20, b"97"),
    ]
    sim = FakeSim(
        recs,
        [(20, b"97"), (10, b"100")],
        {
            b"t0": Decision(True, 10),
            b"t1": Decision(True, 20),
            b"t2": Decision(True, 20),
            b"tf": Decision(True, 90),
        },
    )
    assert any("both wrote" in p for p in sim.verify())


def test_verify_reports_a_group_that_changed_a_decision_it_had_recorded() -> None:
    """A decision seen applied twice with different outcomes (`ClusterSim.apply_conflicts`,
    kept as the records are applied, since a purge may delete them before the verdict)."""
    recs = [_setup(), _final(10, b"100")]
    sim = FakeSim(recs, [(10, b"100")], {b"t0": Decision(True, 10), b"tf": Decision(True, 90)})
    sim.apply_conflicts = ["group 1 changed its decision of txn 74 ..."]
    assert "group 1 changed its decision of txn 74 ..." in sim.verify()


# A history collected at 30: t0 wrote 100 at 10, t1 95 at 20, t2 90 at 30; the store keeps
# only the version visible at the horizon.
COLLECTED = [(30, b"90")]
HISTORY = [(30, b"90"), (20, b"95"), (10, b"100")]
DECIDED = {
    b"t0": Decision(True, 10),
    b"t1": Decision(True, 20),
    b"t2": Decision(True, 30),
    b"tf": Decision(True, 90),
}


def _collected_run(*extra: TxnRecord) -> list[TxnRecord]:
    return [
        _setup(),
        _rw(b"t1", "ok", {KEY: (b"100", 10)}, {KEY: b"95"}, 20),
        _rw(b"t2", "ok", {KEY: (b"95", 20)}, {KEY: b"90"}, 30),
        *extra,
        _final(30, b"90"),
    ]


def _snapshot(txn: bytes, at: int, read: tuple[bytes, int], invoke: float) -> TxnRecord:
    res = TxnResult(txn_id=txn, status="ok", reads={KEY: read}, snapshot_ts=at)
    return TxnRecord(
        process=1, kind="snapshot", mops=[["r"]], invoke=invoke, complete=invoke + 1, result=res
    )


def test_verify_passes_a_collected_store_that_keeps_what_was_applied() -> None:
    sim = FakeSim(_collected_run(), COLLECTED, DECIDED, applied=HISTORY, horizon=30)
    assert sim.verify() == []


def test_verify_judges_a_read_below_the_collection_horizon_by_the_applied_history() -> None:
    """A snapshot at 25 that missed t1's write at 20: the store no longer holds either
    version, the history applied does (judging the store, verify() skipped it)."""
    recs = _collected_run(_snapshot(b"s1", 25, (b"100", 10), invoke=0.0))
    sim = FakeSim(recs, COLLECTED, DECIDED, applied=HISTORY, horizon=30)
    assert any(p.startswith("snapshot at 25") for p in sim.verify())


def test_verify_reports_a_committed_write_no_replica_applied_below_the_horizon() -> None:
    """A participant that dropped t1's write (a partial commit) in a collected run."""
    applied = [(30, b"90"), (10, b"100")]
    sim = FakeSim(_collected_run(), COLLECTED, DECIDED, applied=applied, horizon=30)
    assert any(p.startswith("atomicity: committed txn 7431") for p in sim.verify())


def test_verify_reports_a_store_that_lost_an_applied_version_at_its_horizon() -> None:
    """The version visible at the horizon must stay (`gc_drops_visible_version`)."""
    sim = FakeSim(_collected_run(), [], DECIDED, applied=HISTORY, horizon=30)
    assert any(p.startswith("group 1 stores") for p in sim.verify())


def test_verify_reports_a_snapshot_that_missed_a_transaction_acknowledged_before_it() -> None:
    """Real time: t1 (committed at 20) was acknowledged at t=1.0, the snapshot invoked at
    t=2.0 read at 15. Its reads are right for 15: only real time breaks."""
    recs = _collected_run(_snapshot(b"s1", 15, (b"100", 10), invoke=2.0))
    sim = FakeSim(recs, COLLECTED, DECIDED, applied=HISTORY, horizon=30)
    problems = sim.verify()
    assert problems and all(p.startswith("real time: snapshot 7331") for p in problems)


OK = {b"t0": Decision(True, 10), b"tf": Decision(True, 90)}


def _get(txn: bytes, read: tuple[bytes | None, int], kind: str = "get") -> TxnRecord:
    res = TxnResult(txn_id=txn, status="ok", reads={KEY: read})
    return TxnRecord(process=2, kind=kind, mops=[["r"]], invoke=0.0, complete=1.0, result=res)


def test_verify_reports_an_acknowledged_commit_its_coordinator_recorded_nothing_of() -> None:
    recs = [_setup(), _rw(b"t1", "ok", {KEY: (b"100", 10)}, {KEY: b"95"}, 20), _final(10, b"100")]
    sim = FakeSim(recs, [(10, b"100")], dict(OK))  # no decision for t1 (nor one purged)
    assert any(
        "acknowledged committed at 20" in p and "recorded nothing" in p for p in sim.verify()
    )


def test_verify_reports_a_commit_acknowledged_at_another_timestamp_than_decided() -> None:
    recs = [_setup(), _rw(b"t1", "ok", {KEY: (b"100", 10)}, {KEY: b"95"}, 20), _final(25, b"95")]
    chain = [(25, b"95"), (10, b"100")]
    sim = FakeSim(recs, chain, {**OK, b"t1": Decision(True, 25)})
    assert any("acknowledged at 20 but decided at 25" in p for p in sim.verify())
    recs = [_setup(), _rw(b"t1", "ok", {KEY: (b"100", 10)}, {KEY: b"95"}, 25), _final(25, b"95")]
    assert FakeSim(recs, chain, {**OK, b"t1": Decision(True, 25)}).verify() == []


def test_verify_reports_a_transaction_reported_failed_that_committed() -> None:
    recs = [_setup(), _rw(b"t1", "fail", {KEY: (b"100", 10)}, {KEY: b"95"}, 20), _final(20, b"95")]
    sim = FakeSim(recs, [(20, b"95"), (10, b"100")], {**OK, b"t1": Decision(True, 20)})
    assert any("reported failed" in p and "but committed" in p for p in sim.verify())


def test_verify_reports_a_committed_first_write_of_a_key_nothing_applied() -> None:
    """Only a deletion of an absent key may leave nothing applied (participant rule R2)."""
    recs = [_setup(), _final(0, None)]  # t0 wrote 100 at 10 to an absent key: lost
    sim = FakeSim(recs, [], dict(OK))
    assert any(p.startswith("atomicity: committed txn 7430") for p in sim.verify())
    recs = [_rw(b"t0", "ok", {KEY: (None, 0)}, {KEY: None}, 10), _final(0, None)]
    assert FakeSim(recs, [], dict(OK)).verify() == []


def test_verify_reports_a_transaction_that_read_absent_over_a_live_value() -> None:
    """t1 read the key absent although 100 (not a tombstone) is the newest version below
    its commit_ts: a read of version 0 is excused only over a deletion."""
    recs = [_setup(), _rw(b"t1", "ok", {KEY: (None, 0)}, {KEY: b"95"}, 20), _final(20, b"95")]
    sim = FakeSim(recs, [(20, b"95"), (10, b"100")], {**OK, b"t1": Decision(True, 20)})
    assert any(p.startswith("timestamp order: txn 7431") for p in sim.verify())


def _snapshot_run(at: int, read: tuple[bytes | None, int]) -> list[TxnRecord]:
    snap = TxnRecord(
        process=1,
        kind="snapshot",
        mops=[["r"]],
        invoke=0.0,  # concurrent with every writer: only the values are judged
        complete=0.5,
        result=TxnResult(txn_id=b"s1", status="ok", reads={KEY: read}, snapshot_ts=at),
    )
    return [
        _setup(),
        _rw(b"t1", "ok", {KEY: (b"100", 10)}, {KEY: b"95"}, 20),
        snap,
        _final(20, b"95"),
    ]


T1_AT_20 = {**OK, b"t1": Decision(True, 20)}
T1_CHAIN = [(20, b"95"), (10, b"100")]


def test_verify_reports_a_snapshot_that_missed_a_version_at_its_own_timestamp() -> None:
    sim = FakeSim(_snapshot_run(20, (b"100", 10)), T1_CHAIN, T1_AT_20)
    assert any(p.startswith("snapshot at 20") for p in sim.verify())
    assert FakeSim(_snapshot_run(20, (b"95", 20)), T1_CHAIN, T1_AT_20).verify() == []


def test_verify_reports_a_snapshot_that_read_the_right_version_with_a_wrong_value() -> None:
    sim = FakeSim(_snapshot_run(25, (b"999", 20)), T1_CHAIN, T1_AT_20)
    assert any(p.startswith("snapshot at 25") for p in sim.verify())


def test_verify_reports_a_plain_get_of_a_value_never_applied() -> None:
    recs = [_setup(), _get(b"g1", (b"999", 10)), _final(10, b"100")]
    sim = FakeSim(recs, [(10, b"100")], dict(OK))
    assert any(p.startswith("plain get at 10") for p in sim.verify())
    recs = [_setup(), _get(b"g1", (b"100", 10)), _final(10, b"100")]
    assert FakeSim(recs, [(10, b"100")], dict(OK)).verify() == []


def test_verify_reports_real_time_against_the_newest_commit_acknowledged_before() -> None:
    """tA (commit_ts 30) was acknowledged at 1.0, tB (commit_ts 20) at 1.5; a snapshot
    invoked at 2.0 reads at 25: it misses tA. The newest commit acknowledged before it is
    not the last one acknowledged."""
    ta = _rw(b"tA", "ok", {KEY: (b"95", 20)}, {KEY: b"90"}, 30)
    tb = _rw(b"tB", "ok", {KEY: (b"100", 10)}, {KEY: b"95"}, 20)
    ta.invoke, ta.complete = 0.0, 1.0
    tb.invoke, tb.complete = 0.0, 1.5
    snap = TxnRecord(
        process=1,
        kind="snapshot",
        mops=[["r"]],
        invoke=2.0,
        complete=3.0,
        result=TxnResult(txn_id=b"s1", status="ok", reads={KEY: (b"95", 20)}, snapshot_ts=25),
    )
    recs = [_setup(), ta, tb, snap, _final(30, b"90")]
    for rec in recs:
        if rec.result and rec.result.txn_id in (b"t0", b"tf"):
            rec.invoke, rec.complete = (0.0, 0.5) if rec.result.txn_id == b"t0" else (9.0, 10.0)
    decided = {**OK, b"tA": Decision(True, 30), b"tB": Decision(True, 20)}
    sim = FakeSim(recs, [(30, b"90"), (20, b"95"), (10, b"100")], decided)
    problems = sim.verify()
    assert problems and all(p.startswith("real time: snapshot 7331") for p in problems), problems


def test_verify_reports_a_transaction_committed_below_one_acknowledged_before_it_began() -> None:
    """Real time for transactions (not only snapshots): t2, invoked at 2.0 after t1 (20)
    was acknowledged at 1.0, committed at 15, so it read below t1's commit."""
    t2 = _rw(b"t2", "ok", {KEY: (b"100", 10)}, {}, 15)
    t2.invoke, t2.complete = 2.0, 3.0
    recs = [
        _setup(),
        _rw(b"t1", "ok", {KEY: (b"100", 10)}, {KEY: b"95"}, 20),
        t2,
        _final(20, b"95"),
    ]
    sim = FakeSim(recs, T1_CHAIN, {**T1_AT_20, b"t2": Decision(True, 15)})
    problems = sim.verify()
    assert problems and all(p.startswith("real time: rw 7432") for p in problems), problems


def test_verify_reports_an_abort_recorded_over_every_participants_prepare() -> None:
    recs = [_setup(), _final(10, b"100")]
    sim = FakeSim(recs, [(10, b"100")], {**OK, b"t9": Decision(False, 0)})
    sim.prepares_logged = {b"t9": (GROUP, frozenset({1}), frozenset({1}))}
    assert any(p.startswith("parallel commit") for p in sim.verify())
    sim.prepares_logged = {b"t9": (GROUP, frozenset({1, 2}), frozenset({1}))}  # one missing
    assert sim.verify() == []


class SplitSim(FakeSim):
    """Replica 3 stores another chain than replicas 1 and 2."""

    def versions(self, node: Any, group_id: int, horizon: int) -> dict[bytes, list]:
        return {KEY: [(10, b"999")] if node == 3 else list(self._chain)}


def test_verify_reports_replicas_that_store_different_versions() -> None:
    recs = [_setup(), _final(10, b"100")]
    sim = SplitSim(recs, [(10, b"100")], dict(OK))
    sim.nodes = {1: 1, 2: 2, 3: 3}
    assert any("replicas 1 and 3 store different versions" in p for p in sim.verify())
