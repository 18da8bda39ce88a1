"""Pure parts of the workloads and the report: key placement, value codecs, the
acknowledged-write-lost counts, exit codes."""

from __future__ import annotations

from chaos_histories import Hist

from shard.chaos import report as reports
from shard.chaos.workloads import (
    ListAppendWorkload,
    _decode_list,
    list_append_lost_writes,
    list_append_torn,
    register_lost_writes,
    shard_prefixes,
)


def test_keys_spread_over_every_shard() -> None:
    prefixes = shard_prefixes([b"", b"j", b"r"])
    assert prefixes == ["0", "j", "r"]
    workload = ListAppendWorkload(prefixes, active_keys=6)
    firsts = {k.split("/")[0] for k in workload.all_keys}
    assert firsts == {"0", "j", "r"}
    for key in workload.all_keys:
        start = key.split("/")[0]
        assert key.encode() >= (b"" if start == "0" else start.encode())


def test_list_codec() -> None:
    assert _decode_list(None) is None
    assert _decode_list(b"") == []
    assert _decode_list(b"1,2,30") == [1, 2, 30]
    assert _decode_list(b"1,x") == [1, "x"]


def test_register_lost_write_is_the_latest_acknowledged_one_missing_at_the_end() -> None:
    h = Hist()
    h.op(0, "write", 1, 0, 1, key="x")
    h.op(0, "write", 2, 2, 3, key="x")
    h.op(1, "read", None, 10, 11, result=1, key="x", final=True)
    lost = register_lost_writes(h.sorted_ops())
    assert [(w["key"], w["value"]) for w in lost] == [("x", 2)]


def test_register_final_value_from_a_concurrent_or_info_write_is_not_a_loss() -> None:
    h = Hist()
    h.op(0, "write", 1, 0, 5, key="x")
    h.op(1, "write", 2, 1, 4, key="x")  # concurrent: either may be last
    h.op(2, "read", None, 10, 11, result=1, key="x", final=True)
    assert register_lost_writes(h.sorted_ops()) == []
    h = Hist()
    h.op(0, "write", 1, 0, 1, key="x")
    h.op(1, "write", 2, 2, 3, "info", key="x")  # may land after 3
    h.op(0, "write", 3, 4, 5, key="x")
    h.op(2, "read", None, 10, 11, result=2, key="x", final=True)
    assert register_lost_writes(h.sorted_ops()) == []
    h = Hist()
    h.op(0, "write", 1, 0, 1, key="x")
    h.op(2, "read", None, 10, 11, result=None, key="x", final=True)
    assert len(register_lost_writes(h.sorted_ops())) == 1


def test_list_append_lost_writes() -> None:
    h = Hist()
    h.op(0, "txn", [["append", "x", 1]], 0, 1)
    h.op(0, "txn", [["append", "x", 2]], 2, 3)
    h.op(1, "txn", [["append", "x", 3]], 2, 3, "info")
    h.op(9, "txn", [["r", "x", None]], 10, 11, result=[["r", "x", [1]]], final=True)
    lost = list_append_lost_writes(h.sorted_ops())
    assert [(w["key"], w["value"]) for w in lost] == [("x", 2)]


def test_exit_codes() -> None:
    base = {
        "valid": True,
        "anomalies": 0,
        "lost_writes": 0,
        "history_problems": [],
        "harness_error": None,
    }
    assert reports.exit_code(base) == 0
    assert reports.exit_code({**base, "valid": False, "anomalies": 2}) == 3
    assert reports.exit_code({**base, "valid": False, "lost_writes": 1}) == 3
    assert reports.exit_code({**base, "valid": False, "harness_error": "x"}) == 4
    assert reports.exit_code({**base, "valid": False}) == 5
    # 1 and 2 are every paxoskv command's error and usage error: never a verdict.
    assert {reports.EXIT_INVALID, reports.EXIT_NOT_RECOVERED, reports.EXIT_INCONCLUSIVE}.isdisjoint(
        {0, 1, 2}
    )


def test_the_summary_says_how_partitions_are_made_or_that_there_are_none() -> None:
    """Found by a new user's review: `--nemesis kill` printed `partitions via -`."""

    def faults_line(nemesis: str, network: dict[str, object]) -> str:
        report = reports.build_report(
            options={
                "workload": "register",
                "nemesis": nemesis,
                "seed": 7,
                "duration_s": 1.0,
                "clients": 1,
            },
            history=[],
            check=None,
            faults=[],
            network=network,
            final_recovery_s=None,
            harness_error=None,
            wall_s=1.0,
        )
        return next(line for line in reports.summary_lines(report) if "faults injected" in line)

    line = faults_line("kill", {"partitions": None, "fault_hook": False})
    assert line.endswith("(none); partitions: none (nemesis kill); fault hook off"), line
    line = faults_line("partition", {"partitions": "netns", "fault_hook": False})
    assert line.endswith("partitions via netns; fault hook off"), line


def test_list_append_torn_transactions_are_anomalies() -> None:
    """Found by review: an indeterminate transaction applied at one shard and not at the
    other was seen only in part, and Elle alone called the history valid."""
    h = Hist()
    h.op(0, "txn", [["append", "x", 1], ["append", "y", 1]], 0, 5, "info")
    h.op(1, "txn", [["append", "x", 2], ["append", "y", 2]], 0, 5)  # whole: fine
    h.op(2, "txn", [["append", "x", 3], ["append", "y", 3]], 0, 5, "info")  # not applied
    final = [["r", "x", [1, 2]], ["r", "y", [2]]]
    h.op(9, "txn", [["r", "x", None], ["r", "y", None]], 10, 11, result=final, final=True)
    ops = h.sorted_ops()
    assert list_append_torn(ops) == ["info transaction of process 0: x+1, y+1 (missing)"]
    result = ListAppendWorkload.check(None, ops)  # type: ignore[arg-type]
    assert not result["valid"] and "torn-transaction" in result["anomaly_types"]
