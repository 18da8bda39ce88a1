"""The history recorder: Jepsen conventions enforced as operations are recorded."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from shard.chaos.history import (
    History,
    HistoryError,
    RefusedBeforeSend,
    Worker,
    completion_type,
    load,
    pairs,
    validate,
)
from txn.errors import (
    CommitUnknown,
    Conflict,
    DeadlineExceeded,
    LimitExceeded,
    OutcomeUnknown,
    TxnRef,
    Unavailable,
)


def test_records_are_json_lines_with_monotonic_times(tmp_path: Path) -> None:
    ticks = iter(range(100, 200, 7))
    history = History(tmp_path / "h.jsonl", clock=lambda: next(ticks))
    inv = history.invoke(0, "write", 3, key="x")
    history.complete(inv, "ok", 3)
    history.nemesis("start-kill", {"node": "n1"})
    history.close()
    ops = load(tmp_path / "h.jsonl")
    assert [op["type"] for op in ops] == ["invoke", "ok", "info"]
    assert ops[1]["key"] == "x" and ops[1]["f"] == "write" and ops[1]["process"] == 0
    assert [op["time"] for op in ops] == [7, 14, 21]
    assert [op["index"] for op in ops] == [0, 1, 2]
    assert validate(ops) == []
    lines = (tmp_path / "h.jsonl").read_text().splitlines()
    assert json.loads(lines[2])["process"] == "nemesis"


def test_one_completion_per_invoke_and_no_reuse_after_info() -> None:
    history = History()
    inv = history.invoke(0, "write", 1)
    with pytest.raises(HistoryError):
        history.invoke(0, "read", None)
    history.complete(inv, "info", 1, error="DeadlineExceeded")
    with pytest.raises(HistoryError):
        history.complete(inv, "ok", 1)
    with pytest.raises(HistoryError):
        history.invoke(0, "read", None)
    worker = Worker(0, 5)
    worker.crashed()
    assert worker.process == 5
    inv = history.invoke(worker.process, "read", None)
    history.complete(inv, "ok", 1)
    assert validate(history.ops) == []
    assert [(i["process"], c and c["type"]) for i, c in pairs(history.ops)] == [
        (0, "info"),
        (5, "ok"),
    ]


def test_validate_names_broken_conventions() -> None:
    ops = [
        {"type": "invoke", "process": 0, "f": "read", "time": 5, "index": 0},
        {"type": "info", "process": 0, "f": "read", "time": 6, "index": 1},
        {"type": "invoke", "process": 0, "f": "read", "time": 4, "index": 2},
    ]
    problems = validate(ops)
    assert any("backwards" in p for p in problems)
    assert any("after an info" in p for p in problems)
    assert any("never completed" in p for p in problems)


def test_load_ignores_a_torn_last_line(tmp_path: Path) -> None:
    path = tmp_path / "h.jsonl"
    path.write_text('{"type": "invoke", "process": 0, "time": 0}\n{"type": "ok", "proc')
    assert len(load(path)) == 1


@pytest.mark.parametrize(
    ("exc", "read_only", "expected"),
    [
        (Conflict(b"k"), False, "fail"),
        (LimitExceeded("too big"), False, "fail"),
        (RefusedBeforeSend(), False, "fail"),
        (Unavailable("down"), False, "info"),
        (DeadlineExceeded("late"), False, "info"),
        (OutcomeUnknown("lost"), False, "info"),
        (CommitUnknown("lost", ref=TxnRef(b"t", 1)), False, "info"),
        (RuntimeError("surprise"), False, "info"),
        (DeadlineExceeded("late"), True, "fail"),
    ],
)
def test_only_definite_failures_are_fail(
    exc: BaseException, read_only: bool, expected: str
) -> None:
    assert completion_type(exc, read_only=read_only) == expected


def _op(kind: str, process: int, t: int) -> dict:
    return {"type": kind, "process": process, "f": "read", "time": t, "index": t}


def test_pairs_refuses_a_double_invocation_and_an_orphan_completion() -> None:
    with pytest.raises(HistoryError, match="invoked twice"):
        pairs([_op("invoke", 0, 0), _op("invoke", 0, 1)])
    with pytest.raises(HistoryError, match="completion without invocation"):
        pairs([_op("ok", 0, 0)])
    assert len(pairs([_op("invoke", 0, 0), _op("ok", 0, 1), _op("invoke", 0, 2)])) == 2


def test_validate_names_a_double_invocation() -> None:
    problems = validate([_op("invoke", 0, 0), _op("invoke", 0, 1), _op("ok", 0, 2)])
    assert problems == ["process 0 invoked twice without completing"]


def test_validate_names_completions_without_an_open_invocation() -> None:
    assert validate([_op("ok", 0, 0)]) == ["process 0 completed without an open invocation"]
    twice = [_op("invoke", 0, 0), _op("ok", 0, 1), _op("ok", 0, 2)]
    assert validate(twice) == ["process 0 completed without an open invocation"]
    assert validate([_op("invoke", 0, 0), _op("ok", 0, 1)]) == []


@pytest.mark.parametrize(
    "exc", [TimeoutError("read timed out"), ConnectionResetError("reset"), OSError("EPIPE")]
)
def test_timeouts_and_lost_connections_of_a_write_are_info(exc: BaseException) -> None:
    """The request may have been applied: only errors that guarantee no effect are fail."""
    assert completion_type(exc, read_only=False) == "info"
    assert completion_type(exc, read_only=True) == "fail"
