"""The Elle-style list-append checker on hand-made histories: each anomaly, and valid ones.

Each history is written as the transactions' effects (`T(...)` builds invoke + completion
events); the checker must name the anomaly Adya's way, with an example, and accept every
history a serial execution produces (a Hypothesis property).
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shard.chaos import elle


class H:
    """A history builder: `h.txn(process, mops, type)` appends invoke and completion."""

    def __init__(self) -> None:
        self.ops: list[dict[str, Any]] = []
        self.t = 0

    def _op(self, process: Any, kind: str, value: list[list[Any]]) -> None:
        self.t += 1
        self.ops.append({"process": process, "type": kind, "value": value, "time": self.t})

    def invoke(self, process: Any, mops: list[list[Any]]) -> None:
        blank = [[f, k, None if f == "r" else v] for f, k, v in mops]
        self._op(process, "invoke", blank)

    def complete(self, process: Any, mops: list[list[Any]], kind: str = "ok") -> None:
        self._op(process, kind, mops)

    def txn(self, process: Any, mops: list[list[Any]], kind: str = "ok") -> H:
        self.invoke(process, mops)
        self.complete(process, mops, kind)
        return self


def _types(history: H, realtime: bool = False) -> list[str]:
    report = elle.check(history.ops, realtime=realtime)
    assert report["valid"] == (not report["anomaly_types"])
    return report["anomaly_types"]  # type: ignore[no-any-return]


# ---------------------------------------------------------------------- valid histories


def test_empty_history_is_valid() -> None:
    report = elle.check([])
    assert report == {"valid": True, "anomaly_types": [], "anomalies": {}, "txns": 0}
    assert elle.describe(report) == "valid (0 transactions)"


def test_serial_history_is_valid_also_in_real_time() -> None:
    h = H()
    h.txn(0, [["r", "x", []], ["append", "x", 1]])
    h.txn(1, [["append", "x", 2], ["append", "y", 1]])
    h.txn(0, [["r", "x", [1, 2]], ["r", "y", [1]]])
    h.txn(1, [["append", "y", 2], ["r", "y", [1, 2]]])
    assert _types(h, realtime=True) == []


def test_concurrent_transactions_may_serialize_against_invocation_order() -> None:
    """T1 and T2 overlap in time, so T2 may come first although T1 was invoked first."""
    h = H()
    h.invoke(1, [["r", "x", None]])
    h.invoke(2, [["append", "x", 1]])
    h.complete(2, [["append", "x", 1]])
    h.complete(1, [["r", "x", []]])
    assert _types(h, realtime=True) == []


def test_failed_and_unobserved_info_transactions_are_ignored() -> None:
    h = H()
    h.txn(0, [["append", "x", 1]], "fail")
    h.txn(1, [["append", "x", 2]], "info")
    h.txn(2, [["r", "x", []]])
    assert _types(h, realtime=True) == []


def test_an_observed_info_transaction_counts_as_committed() -> None:
    h = H()
    h.txn(1, [["append", "x", 2]], "info")
    h.txn(2, [["r", "x", [2]]])
    assert _types(h, realtime=True) == []


def test_an_invocation_left_open_is_info() -> None:
    h = H()
    h.invoke(1, [["append", "x", 1]])
    h.txn(2, [["r", "x", [1]]])
    report = elle.check(h.ops, realtime=True)
    assert report["valid"] and report["txns"] == 2


def test_own_appends_are_seen_by_later_reads_of_the_txn() -> None:
    h = H()
    h.txn(1, [["append", "x", 1], ["r", "x", [1]], ["append", "x", 2], ["r", "x", [1, 2]]])
    h.txn(2, [["r", "x", [1, 2]]])
    assert _types(h, realtime=True) == []


# ---------------------------------------------------------------------- each anomaly


def test_g0_write_cycle() -> None:
    h = H()
    h.txn(1, [["append", "x", 1], ["append", "y", 1]])
    h.txn(2, [["append", "x", 2], ["append", "y", 2]])
    h.txn(3, [["r", "x", [1, 2]], ["r", "y", [2, 1]]])
    report = elle.check(h.ops)
    assert "G0" in report["anomaly_types"]
    cycle = report["anomalies"]["G0"][0]
    assert all("-ww(" in step for step in cycle) and len(cycle) == 2


def test_g1a_aborted_read() -> None:
    h = H()
    h.txn(1, [["append", "x", 1]], "fail")
    h.txn(2, [["r", "x", [1]]])
    report = elle.check(h.ops)
    assert report["anomaly_types"] == ["G1a"]
    assert report["anomalies"]["G1a"][0]["writer"].startswith("T0(p1,fail)")


def test_g1b_intermediate_read() -> None:
    h = H()
    h.txn(1, [["append", "x", 1], ["append", "x", 2]])
    h.txn(2, [["r", "x", [1]]])
    assert "G1b" in _types(h)


def test_g1c_circular_information_flow() -> None:
    h = H()
    h.txn(1, [["append", "x", 1], ["r", "y", [1]]])
    h.txn(2, [["append", "y", 1], ["r", "x", [1]]])
    report = elle.check(h.ops)
    assert report["anomaly_types"] == ["G1c"]
    assert any("-wr(" in step for step in report["anomalies"]["G1c"][0])


def test_g_single_read_skew() -> None:
    h = H()
    h.txn(1, [["r", "x", []], ["r", "y", [1]]])
    h.txn(2, [["append", "x", 1], ["append", "y", 1]])
    h.txn(3, [["r", "x", [1]]])
    report = elle.check(h.ops)
    assert report["anomaly_types"] == ["G-single"]
    cycle = report["anomalies"]["G-single"][0]
    assert sum("-rw(" in step for step in cycle) == 1


def test_g2_write_skew() -> None:
    h = H()
    h.txn(1, [["r", "x", []], ["append", "y", 1]])
    h.txn(2, [["r", "y", []], ["append", "x", 1]])
    h.txn(3, [["r", "x", [1]], ["r", "y", [1]]])
    report = elle.check(h.ops)
    assert report["anomaly_types"] == ["G2"]
    assert sum("-rw(" in step for step in report["anomalies"]["G2"][0]) == 2


def test_stale_read_after_completion_is_only_a_real_time_anomaly() -> None:
    """Serializable (the read can be ordered first) but not strictly serializable."""
    h = H()
    h.txn(1, [["append", "x", 1]])
    h.txn(2, [["r", "x", []]])
    h.txn(3, [["r", "x", [1]]])  # a final read places the append in x's order
    assert _types(h, realtime=False) == []
    report = elle.check(h.ops, realtime=True)
    assert report["anomaly_types"] == ["G-single-realtime"]
    assert any("-rt->" in step for step in report["anomalies"]["G-single-realtime"][0])


def test_write_reordered_against_real_time_is_g0_realtime() -> None:
    h = H()
    h.txn(1, [["append", "x", 1]])
    h.txn(2, [["append", "x", 2]])
    h.txn(3, [["r", "x", [2, 1]]])
    assert _types(h, realtime=True) == ["G0-realtime"]


def test_real_time_edges_reach_through_the_frontier() -> None:
    """T1 < T2 < T3 in real time; T3's stale read of T1 needs two rt hops to close."""
    h = H()
    h.txn(1, [["append", "x", 1]])
    h.txn(2, [["append", "y", 1]])
    h.txn(3, [["r", "x", []]])
    h.txn(4, [["r", "x", [1]], ["r", "y", [1]]])
    assert _types(h, realtime=True) == ["G-single-realtime"]


def test_an_append_no_read_observed_has_no_place_in_the_order() -> None:
    """As in Elle, the version order comes from reads: end histories with final reads."""
    h = H()
    h.txn(1, [["append", "x", 1]])
    h.txn(2, [["r", "x", []]])
    assert _types(h, realtime=True) == []


def test_incompatible_orders_reveal_a_lost_append() -> None:
    h = H()
    h.txn(1, [["r", "x", []], ["append", "x", 1]])
    h.txn(2, [["r", "x", []], ["append", "x", 2]])
    h.txn(3, [["r", "x", [1]]])
    h.txn(4, [["r", "x", [2]]])
    report = elle.check(h.ops)
    assert "incompatible-order" in report["anomaly_types"]
    assert report["anomalies"]["incompatible-order"][0]["key"] == "x"


def test_internal_inconsistency() -> None:
    h = H()
    h.txn(1, [["append", "x", 5], ["r", "x", []]])
    assert _types(h) == ["internal"]
    h2 = H()
    h2.txn(1, [["r", "x", [1]], ["r", "x", [1, 2]]])
    h2.txn(2, [["append", "x", 1], ["append", "x", 2]])
    assert "internal" in _types(h2)


def test_duplicate_elements_garbage_and_duplicate_appends() -> None:
    h = H()
    h.txn(1, [["append", "x", 1]])
    h.txn(2, [["r", "x", [1, 1]]])
    assert "duplicate-elements" in _types(h)
    h2 = H()
    h2.txn(2, [["r", "x", [9]]])
    assert _types(h2) == ["garbage"]
    h3 = H()
    h3.txn(1, [["append", "x", 1]])
    h3.txn(2, [["append", "x", 1]])
    assert "duplicate-appends" in _types(h3)


def test_describe_names_each_anomaly_with_an_example() -> None:
    h = H()
    h.txn(1, [["r", "x", []], ["append", "y", 1]])
    h.txn(2, [["r", "y", []], ["append", "x", 1]])
    h.txn(3, [["r", "x", [1]], ["r", "y", [1]]])
    text = elle.describe(elle.check(h.ops))
    assert text.startswith("1 anomaly types in 3 txns: G2: T")
    assert "-rw(" in text


def test_malformed_histories_are_refused() -> None:
    with pytest.raises(ValueError, match="invoked twice"):
        elle.check(
            [
                {"process": 1, "type": "invoke", "value": [], "time": 0},
                {"process": 1, "type": "invoke", "value": [], "time": 1},
            ]
        )
    with pytest.raises(ValueError, match="without invocation"):
        elle.check([{"process": 1, "type": "ok", "value": [], "time": 0}])
    with pytest.raises(ValueError, match="unknown micro-op"):
        elle.check(H().txn(1, [["write", "x", 1]]).ops)


# ---------------------------------------------------------------------- property


@st.composite
def serial_histories(draw: st.DrawFn) -> list[dict[str, Any]]:
    """Transactions executed one at a time on a model, some overlapping in the history
    (interleaved invocations of different processes), some failed (no effects)."""
    state: dict[str, list[int]] = {}
    ops: list[dict[str, Any]] = []
    next_value = 1
    n = draw(st.integers(0, 25))
    for i in range(n):
        mops: list[list[Any]] = []
        for _ in range(draw(st.integers(1, 4))):
            key = draw(st.sampled_from("xyz"))
            if draw(st.booleans()):
                mops.append(["r", key, None])
            else:
                mops.append(["append", key, next_value])
                next_value += 1
        kind = draw(st.sampled_from(["ok", "ok", "ok", "fail", "info"]))
        scratch = {k: list(v) for k, v in state.items()}
        done = []
        for f, k, v in mops:
            if f == "r":
                done.append(["r", k, list(scratch.get(k, []))])
            else:
                scratch.setdefault(k, []).append(v)
                done.append(["append", k, v])
        if kind == "ok" or (kind == "info" and draw(st.booleans())):
            state = scratch
        blank = [[f, k, None if f == "r" else v] for f, k, v in mops]
        ops.append({"process": i, "type": "invoke", "value": blank, "time": 2 * i})
        ops.append(
            {"process": i, "type": kind, "value": done if kind == "ok" else blank, "time": 2 * i}
        )
    return ops


@given(serial_histories())
def test_every_serial_execution_is_strictly_serializable(history: list[dict[str, Any]]) -> None:
    report = elle.check(history, realtime=True)
    assert report["valid"], elle.describe(report)


def test_real_time_edges_come_from_every_transaction_completed_before_an_invocation() -> None:
    """T2 completed (at 2) while T1 (invoked at 0) still ran; T1 completed at 3. T3, invoked
    after both, read x stale: T2 -rt-> T3 -rw-> T2. T1's completion must not drop T2 from
    the frontier (T2 did not complete before T1 began)."""
    h = H()
    h.invoke(1, [["append", "y", 1]])
    h.invoke(2, [["append", "x", 1]])
    h.complete(2, [["append", "x", 1]])
    h.complete(1, [["append", "y", 1]])
    h.txn(3, [["r", "x", []]])
    h.txn(4, [["r", "x", [1]], ["r", "y", [1]]])
    assert _types(h, realtime=True) == ["G-single-realtime"]
    # T3 invoked before T2 completed: it may read x empty.
    h = H()
    h.invoke(1, [["append", "y", 1]])
    h.invoke(2, [["append", "x", 1]])
    h.invoke(3, [["r", "x", None]])
    h.complete(2, [["append", "x", 1]])
    h.complete(1, [["append", "y", 1]])
    h.complete(3, [["r", "x", []]])
    h.txn(4, [["r", "x", [1]], ["r", "y", [1]]])
    assert _types(h, realtime=True) == []


def test_g2_realtime_a_cycle_of_two_anti_dependencies_closed_by_real_time() -> None:
    """T1 appends y and completes before T2 begins; T2 reads x empty; T3 (concurrent with
    both) reads y empty and appends x: T1 -rt-> T2 -rw(x)-> T3 -rw(y)-> T1. Serializable
    (T2, T3, T1), but T1 completed before T2 began."""
    h = H()
    h.invoke(3, [["r", "y", None], ["append", "x", 1]])
    h.txn(1, [["append", "y", 1]])
    h.txn(2, [["r", "x", []]])
    h.complete(3, [["r", "y", []], ["append", "x", 1]])
    h.txn(4, [["r", "x", [1]], ["r", "y", [1]]])
    assert _types(h, realtime=False) == []
    report = elle.check(h.ops, realtime=True)
    assert report["anomaly_types"] == ["G2-realtime"], elle.describe(report)
    assert sum("-rw(" in step for step in report["anomalies"]["G2-realtime"][0]) == 2


def test_a_read_that_misses_its_own_earlier_append_is_internal() -> None:
    """T appended 1 then 2 to x and read [2]: its own append 1 vanished from its read."""
    h = H()
    h.txn(1, [["append", "x", 1], ["append", "x", 2], ["r", "x", [2]]])
    assert "internal" in _types(h)
