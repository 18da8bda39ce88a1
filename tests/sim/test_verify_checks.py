"""ClusterSim.verify() judging hand-made settled states: each breaks "no acknowledged commit
lost" or atomicity, and verify must say so (from a review that fed the checkers anomalies).

verify() reads only a few seams of the sim (data_groups, gc_horizon, versions, _decision,
shard_map.replicas/locate, workload.records/check, prepares_logged, decision_changes,
final), so a fake
subclass supplies a hand-made store and decision table and the real verify() judges it.
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
    ) -> None:  # no super().__init__
        self.workload = SimpleNamespace(records=records, check=lambda final: [])
        self.final = records[-1]
        self._chain = chain  # newest first, as ClusterSim.versions returns
        self._decisions = decisions
        self.prepares_logged = {}
        self.decision_changes = []
        self.shard_map = SimpleNamespace(
            replicas=lambda g: [1, 2, 3], locate=lambda key: SimpleNamespace(group_id=GROUP)
        )
        self.nodes = {1: None, 2: None, 3: None}

    def data_groups(self) -> list[int]:
        return [GROUP]

    def gc_horizon(self, group_id: int) -> int:
        return 0

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
    """A decision seen applied twice with different outcomes (`ClusterSim.decision_changes`,
    kept as the records are applied, since a purge may delete them before the verdict)."""
    recs = [_setup(), _final(10, b"100")]
    sim = FakeSim(recs, [(10, b"100")], {b"t0": Decision(True, 10), b"tf": Decision(True, 90)})
    sim.decision_changes = ["group 1 changed its decision of txn 74 ..."]
    assert "group 1 changed its decision of txn 74 ..." in sim.verify()
