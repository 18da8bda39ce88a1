"""Histories the checkers accepted although they were invalid (found by a review that fed
them hand-made anomalies); each test fails on the checkers before their fix."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from chaos_histories import Hist

from shard.chaos import elle, linearizability
from shard.chaos import history as histories
from shard.chaos import report as reports
from shard.chaos.workloads import (
    BankWorkload,
    ListAppendWorkload,
    bank_lost_writes,
    list_append_lost_writes,
    register_lost_writes,
)


def _line(**op: object) -> str:
    return json.dumps(op)


APPEND = [["append", "x", 1]]
FINAL_EMPTY = [["r", "x", []]]


def test_a_damaged_line_inside_a_history_is_an_error_not_its_end(tmp_path: Path) -> None:
    """Loading stopped at the first bad line and dropped the rest: the final read that shows
    an acknowledged append lost went with it, and --recheck called the run valid."""
    good = [
        _line(type="invoke", process=0, f="txn", value=APPEND, time=0),
        _line(type="ok", process=0, f="txn", value=APPEND, time=1),
    ]
    final = [
        _line(type="invoke", process=9, f="txn", value=[["r", "x", None]], time=5, final=True),
        _line(type="ok", process=9, f="txn", value=FINAL_EMPTY, time=6, final=True),
    ]
    damaged = tmp_path / "damaged.jsonl"
    damaged.write_text("\n".join([*good, '{"type": "invoke", GARBAGE', *final]) + "\n")
    with pytest.raises(histories.HistoryError, match="line 3 is not JSON"):
        histories.load(damaged)
    torn = tmp_path / "torn.jsonl"  # a crash while writing the last line: still readable
    torn.write_text("\n".join([*good, *final, '{"type": "inv']))
    assert len(histories.load(torn)) == 4


def test_acknowledged_appends_to_a_key_no_final_read_covered_do_not_pass() -> None:
    ops = [
        {"type": "invoke", "process": 0, "f": "txn", "value": APPEND, "time": 0},
        {"type": "ok", "process": 0, "f": "txn", "value": APPEND, "time": 1},
    ]
    assert list_append_lost_writes(ops) == [
        {"key": "x", "value": None, "final": "no final read of this key"}
    ]
    assert ListAppendWorkload.check(None, ops)["lost_writes"]  # type: ignore[arg-type]


def test_acknowledged_register_writes_to_a_key_no_final_read_covered_do_not_pass() -> None:
    h = Hist()
    h.op(0, "write", 1, 0, 1, key="x")
    h.op(1, "write", 2, 2, 3, "info", key="y")  # indeterminate only: nothing to prove
    assert register_lost_writes(h.sorted_ops()) == [
        {"key": "x", "value": None, "final": "no final read of this key"}
    ]


def test_a_bank_history_cut_before_its_final_read_does_not_pass() -> None:
    """The bank workload reported no lost writes (None) whatever the history, and with no
    final read nothing showed an acknowledged transfer kept: valid, exit status 0."""
    h = Hist()
    h.op(0, "transfer", {"from": "a", "to": "b", "amount": 5}, 0, 1)
    h.op(1, "transfer", {"from": "b", "to": "c", "amount": 1}, 0, 1, "info")  # nothing to prove
    ops = h.sorted_ops()
    assert bank_lost_writes(ops) == [
        {"key": account, "value": None, "final": "no final read of this key"}
        for account in ("a", "b")
    ]
    workload = BankWorkload(["0"], accounts=3, initial=10)
    workload.accounts = ["a", "b", "c"]
    report = reports.build_report(
        options={},
        history=ops,
        check=workload.check(ops),
        faults=[],
        network={},
        final_recovery_s=1.0,
        harness_error=None,
        wall_s=1.0,
    )
    assert reports.exit_code(report) == reports.EXIT_INVALID
    # With its final read, a lost transfer is the checker's final-balance, not a lost write.
    h.op(2, "read", None, 5, 6, result={"a": 5, "b": 15, "c": 10}, final=True)
    assert bank_lost_writes(h.sorted_ops()) is None


def test_a_failed_compare_and_set_is_checked_as_the_read_it_made() -> None:
    """The register is 1 throughout [1, 9]; a cas(1 -> 2) that reports "condition did not
    hold, current value 3" saw a value it cannot have seen. The failed cas was dropped."""
    h = Hist()
    h.op(0, "write", 1, 0, 1, key="x")
    h.op(1, "cas", [1, 2], 2, 3, "fail", result={"current": 3}, key="x")
    h.op(2, "read", None, 8, 9, result=1, key="x", final=True)
    assert linearizability.check(h.sorted_ops())["valid"] is False
    # What it could have seen passes: a concurrent write of 3 that is later overwritten.
    h = Hist()
    h.op(0, "write", 1, 0, 1, key="x")
    h.op(3, "write", 3, 2, 4, key="x")
    h.op(1, "cas", [1, 2], 2, 3, "fail", result={"current": 3}, key="x")
    h.op(3, "write", 1, 5, 6, key="x")
    h.op(2, "read", None, 8, 9, result=1, key="x", final=True)
    assert linearizability.check(h.sorted_ops())["valid"] is True


def _txn(h: Hist, p: int, mops: list[list[object]], start: int, end: int, **fields: object) -> None:
    h.invoke(p, "txn", [[m[0], m[1], None] if m[0] == "r" else m for m in mops], start, **fields)
    h.done(p, "ok", "txn", mops, end, **fields)


def test_a_transactions_own_appends_seen_reordered_are_an_anomaly() -> None:
    """T0 appends 1 then 2 to x, T1 then appends 3; every read shows [2, 1, 3]: no execution
    produces it. The ww edges skipped a writer's own neighbours and G1b looked at a read's
    last element only: valid."""
    h = Hist()
    _txn(h, 0, [["append", "x", 1], ["append", "x", 2]], 0, 1)
    _txn(h, 1, [["append", "x", 3]], 2, 3)
    _txn(h, 2, [["r", "x", [2, 1, 3]]], 4, 5)
    _txn(h, 9, [["r", "x", [2, 1, 3]]], 100, 101, final=True)
    result = elle.check(h.sorted_ops(), realtime=True)
    assert result["anomaly_types"] == ["append-order"], result


def test_a_transactions_appends_split_by_another_transactions_are_an_anomaly() -> None:
    h = Hist()
    _txn(h, 0, [["append", "x", 1], ["append", "x", 2]], 0, 10)
    _txn(h, 1, [["append", "x", 3]], 0, 10)
    _txn(h, 9, [["r", "x", [1, 3, 2]]], 100, 101, final=True)
    assert "append-order" in elle.check(h.sorted_ops(), realtime=True)["anomaly_types"]
    # In order and together passes.
    h = Hist()
    _txn(h, 0, [["append", "x", 1], ["append", "x", 2]], 0, 10)
    _txn(h, 1, [["append", "x", 3]], 0, 10)
    _txn(h, 9, [["r", "x", [3, 1, 2]]], 100, 101, final=True)
    assert elle.check(h.sorted_ops(), realtime=True)["valid"] is True
