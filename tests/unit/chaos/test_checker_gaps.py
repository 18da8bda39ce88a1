"""Histories the checkers accepted although they were invalid (found by a review that fed
them hand-made anomalies); each test fails on the checkers before their fix."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from chaos_histories import Hist

from shard.chaos import history as histories
from shard.chaos import linearizability
from shard.chaos.workloads import (
    ListAppendWorkload,
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
