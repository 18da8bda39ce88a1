"""The list-append checker (shard/chaos/elle.py, shared with the simulator): each anomaly on
a minimal history in the chaos harness's format, info transactions, and random histories of a
strictly serializable store (valid) and their corruptions (found). tests/unit/test_elle.py
has the checker's own hand-made cases."""

from __future__ import annotations

import random
import re
from typing import Any

import pytest
from chaos_histories import Hist

from shard.chaos import elle


def _txn(h: Hist, p: int, mops: list[list[Any]], start: int, end: int | None, kind: str = "ok"):
    invoke = [[m[0], m[1], None] if m[0] == "r" else m for m in mops]
    h.invoke(p, "txn", invoke, start)
    if end is not None:
        h.done(p, kind, "txn", mops if kind == "ok" else invoke, end)


def _labels(cycle: list[str]) -> list[str]:
    """Edge labels of an example cycle ("T0(p0,ok) -ww(x)-> T1(p1,ok)" steps)."""
    return [re.search(r" -(\w+)", step).group(1) for step in cycle]  # type: ignore[union-attr]


def _check(h: Hist, realtime: bool = True) -> dict[str, Any]:
    return elle.check(h.sorted_ops(), realtime=realtime)


def test_serial_history_is_valid() -> None:
    h = Hist()
    _txn(h, 0, [["append", "x", 1], ["r", "x", [1]]], 0, 1)
    _txn(h, 1, [["r", "x", [1]], ["append", "x", 2], ["append", "y", 1]], 2, 3)
    _txn(h, 0, [["r", "x", [1, 2]], ["r", "y", [1]]], 4, 5)
    result = _check(h)
    assert result["valid"], elle.describe(result)


def test_g0_write_cycle() -> None:
    h = Hist()
    _txn(h, 0, [["append", "x", 1], ["append", "y", 1]], 0, 10)
    _txn(h, 1, [["append", "x", 2], ["append", "y", 2]], 0, 10)
    _txn(h, 2, [["r", "x", [1, 2]], ["r", "y", [2, 1]]], 11, 12)
    result = _check(h)
    assert result["anomaly_types"] == ["G0"], elle.describe(result)
    assert _labels(result["anomalies"]["G0"][0]) == ["ww", "ww"]


def test_g1a_aborted_read() -> None:
    h = Hist()
    _txn(h, 0, [["append", "x", 1]], 0, 1, "fail")
    _txn(h, 1, [["r", "x", [1]]], 2, 3)
    assert _check(h)["anomaly_types"] == ["G1a"]


def test_g1b_intermediate_read() -> None:
    h = Hist()
    _txn(h, 0, [["append", "x", 1], ["append", "x", 2]], 0, 10)
    _txn(h, 1, [["r", "x", [1]]], 1, 2)
    assert "G1b" in _check(h, realtime=False)["anomaly_types"]


def test_g1c_circular_information_flow() -> None:
    h = Hist()
    _txn(h, 0, [["append", "x", 1], ["r", "y", [1]]], 0, 10)
    _txn(h, 1, [["append", "y", 1], ["r", "x", [1]]], 0, 10)
    result = _check(h)
    assert result["anomaly_types"] == ["G1c"], elle.describe(result)


def test_g_single_read_skew() -> None:
    h = Hist()
    _txn(h, 0, [["r", "x", []], ["r", "y", [1]]], 0, 10)
    _txn(h, 1, [["append", "x", 1], ["append", "y", 1]], 0, 10)
    _txn(h, 2, [["r", "x", [1]]], 11, 12)
    result = _check(h)
    assert result["anomaly_types"] == ["G-single"], elle.describe(result)
    assert sorted(_labels(result["anomalies"]["G-single"][0])) == ["rw", "wr"]


def test_g2_write_skew() -> None:
    h = Hist()
    _txn(h, 0, [["r", "x", []], ["append", "y", 1]], 0, 10)
    _txn(h, 1, [["r", "y", []], ["append", "x", 1]], 0, 10)
    _txn(h, 2, [["r", "x", [1]], ["r", "y", [1]]], 11, 12)
    result = _check(h)
    assert result["anomaly_types"] == ["G2"], elle.describe(result)


def test_stale_read_after_commit_is_a_realtime_anomaly_only() -> None:
    h = Hist()
    _txn(h, 0, [["append", "x", 1]], 0, 1)
    _txn(h, 1, [["r", "x", []]], 2, 3)  # invoked after the append was acknowledged
    _txn(h, 2, [["r", "x", [1]]], 4, 5)
    assert _check(h, realtime=False)["valid"]
    result = _check(h, realtime=True)
    assert result["anomaly_types"] == ["G-single-realtime"], elle.describe(result)


def test_internal_inconsistency() -> None:
    h = Hist()
    _txn(h, 0, [["append", "x", 1], ["r", "x", []]], 0, 1)
    assert "internal" in _check(h)["anomaly_types"]
    h = Hist()
    _txn(h, 0, [["r", "x", [5]], ["r", "x", []]], 0, 1)
    _txn(h, 1, [["append", "x", 5]], 0, 1)
    assert "internal" in _check(h)["anomaly_types"]


def test_incompatible_orders_garbage_duplicates() -> None:
    h = Hist()
    _txn(h, 0, [["append", "x", 1]], 0, 1)
    _txn(h, 1, [["append", "x", 2]], 0, 1)
    _txn(h, 2, [["r", "x", [1, 2]]], 2, 3)
    _txn(h, 3, [["r", "x", [2]]], 2, 3)
    assert "incompatible-order" in _check(h)["anomaly_types"]
    h = Hist()
    _txn(h, 0, [["r", "x", [99]]], 0, 1)
    assert _check(h)["anomaly_types"] == ["garbage"]
    h = Hist()
    _txn(h, 0, [["append", "x", 1]], 0, 1)
    _txn(h, 1, [["r", "x", [1, 1]]], 2, 3)
    assert "duplicate-elements" in _check(h)["anomaly_types"]
    h = Hist()
    _txn(h, 0, [["append", "x", 1]], 0, 1)
    _txn(h, 1, [["append", "x", 1]], 0, 1)
    assert "duplicate-appends" in _check(h)["anomaly_types"]


def test_info_transactions_may_or_may_not_have_committed() -> None:
    h = Hist()
    _txn(h, 0, [["append", "x", 1], ["append", "y", 1]], 0, 1, "info")
    _txn(h, 1, [["append", "z", 1]], 0, None)  # never completed
    _txn(h, 2, [["r", "x", [1]], ["r", "y", [1]], ["r", "z", []]], 50, 51)
    assert _check(h)["valid"]
    # Observed info transactions are nodes: a torn view of one is a cycle.
    h = Hist()
    _txn(h, 0, [["append", "x", 1], ["append", "y", 1]], 0, 1, "info")
    _txn(h, 2, [["r", "x", [1]], ["r", "y", []]], 50, 51)
    _txn(h, 2, [["r", "y", [1]]], 52, 53)
    result = _check(h)
    assert result["anomaly_types"] == ["G-single"], elle.describe(result)


# ---------------------------------------------------------------- random histories


def _simulate(seed: int, n: int = 150, procs: int = 5, keys: int = 4) -> list[dict[str, Any]]:
    """A strictly serializable store: each txn runs atomically at one instant inside its
    interval; info txns commit (at some instant after invoke) or not; fail txns never."""
    rng = random.Random(seed)
    clock = [0.0] * procs
    gen = [0] * procs
    plans = []
    counter = 0
    for _ in range(n):
        p = rng.randrange(procs)
        start = clock[p] + rng.uniform(0, 2)
        end = start + rng.uniform(0.1, 5)
        kind = rng.choices(["ok", "info", "fail"], [8, 1, 1])[0]
        mops: list[list[Any]] = []
        for _ in range(rng.randint(1, 4)):
            k = f"k{rng.randrange(keys)}"
            if rng.random() < 0.5:
                counter += 1
                mops.append(["append", k, counter])
            else:
                mops.append(["r", k, None])
        at = rng.uniform(start, end) if kind == "ok" else rng.uniform(start, end + 20)
        commits = kind == "ok" or (kind == "info" and rng.random() < 0.5)
        plans.append((p + procs * gen[p], mops, start, end, kind, at, commits))
        if kind == "info":
            gen[p] += 1
        clock[p] = end
    state: dict[str, list[int]] = {}
    results: dict[int, list[list[Any]]] = {}
    for i in sorted(range(len(plans)), key=lambda i: plans[i][5]):
        _p, mops, *_rest, commits = plans[i]
        if not commits:
            continue
        local = {k: list(v) for k, v in state.items()}
        done = []
        for m in mops:
            if m[0] == "append":
                local.setdefault(m[1], []).append(m[2])
                done.append(m)
            else:
                done.append(["r", m[1], list(local.get(m[1], [])) or None])
        state = local
        results[i] = done
    h = Hist()
    scale = 1_000_000
    for i, (p, mops, start, end, kind, _at, _c) in enumerate(plans):
        h.invoke(p, "txn", mops, int(start * scale))
        value = results.get(i, mops) if kind == "ok" else mops
        h.done(p, kind, "txn", value, int(end * scale))
    final = [["r", k, list(v) or None] for k, v in sorted(state.items())]
    h.invoke(10_000, "txn", [["r", k, None] for k, _, _ in final], int(10_000 * scale))
    h.done(10_000, "ok", "txn", final, int(10_001 * scale))
    return h.sorted_ops()


@pytest.mark.parametrize("seed", range(30))
def test_random_strictly_serializable_histories_are_valid(seed: int) -> None:
    result = elle.check(_simulate(seed))
    assert result["valid"], elle.describe(result)


@pytest.mark.parametrize("seed", range(30))
def test_dropping_an_element_from_a_read_is_found(seed: int) -> None:
    history = _simulate(seed)
    rng = random.Random(seed)
    candidates = [
        (op, i)
        for op in history
        if op["type"] == "ok"
        for i, m in enumerate(op["value"])
        if m[0] == "r" and m[2] and len(m[2]) >= 2
    ]
    if not candidates:
        pytest.skip("no read of two elements")
    op, i = rng.choice(candidates)
    read = op["value"][i][2]
    del read[rng.randrange(len(read) - 1)]  # a middle element vanishes: lost/reordered
    result = elle.check(history)
    assert not result["valid"]
