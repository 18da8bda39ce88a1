"""The register linearizability checker on hand-made histories, including info operations
(they may take effect at any time after their invoke, or never), and on random histories of
a simulated atomic register (always linearizable) and their corruptions."""

from __future__ import annotations

import random
import time
from typing import Any

import pytest
from chaos_histories import Hist

from shard.chaos import linearizability as lin


def _check(h: Hist) -> dict[str, Any]:
    return lin.check(h.sorted_ops())


def _valid(h: Hist) -> bool:
    result = _check(h)
    assert result["valid"] in (True, False), result
    return result["valid"] is True


def test_sequential_history_is_linearizable() -> None:
    h = Hist()
    h.op(0, "read", None, 0, 1, key="x")
    h.op(0, "write", 1, 2, 3, key="x")
    h.op(1, "read", None, 4, 5, result=1, key="x")
    h.op(1, "cas", [1, 2], 6, 7, key="x")
    h.op(0, "read", None, 8, 9, result=2, key="x")
    assert _valid(h)


def test_stale_read_is_not_linearizable_and_is_explained() -> None:
    h = Hist()
    h.op(0, "write", 1, 0, 1, key="x")
    h.op(0, "write", 2, 2, 3, key="x")
    h.op(1, "read", None, 4, 5, result=1, key="x")
    result = _check(h)
    assert result["valid"] is False
    (anomaly,) = result["anomalies"]
    assert anomaly["key"] == "x"
    assert "read 1" in anomaly["summary"]
    assert "register 2" in anomaly["summary"]


def test_lost_acknowledged_write_is_not_linearizable() -> None:
    h = Hist()
    h.op(0, "write", 1, 0, 1, key="x")
    h.op(1, "read", None, 2, 3, result=None, key="x")
    assert not _valid(h)


def test_concurrent_read_may_see_old_or_new_value() -> None:
    for seen in (1, 2):
        h = Hist()
        h.op(0, "write", 1, 0, 1, key="x")
        h.op(0, "write", 2, 2, 10, key="x")
        h.op(1, "read", None, 3, 4, result=seen, key="x")
        assert _valid(h), seen


def test_reads_cannot_go_back_in_time_during_a_write() -> None:
    h = Hist()
    h.op(0, "write", 1, 0, 1, key="x")
    h.op(0, "write", 2, 2, 20, key="x")
    h.op(1, "read", None, 3, 4, result=2, key="x")
    h.op(1, "read", None, 5, 6, result=1, key="x")
    assert not _valid(h)


def test_concurrent_writes_order_is_fixed_once_observed() -> None:
    h = Hist()
    h.op(0, "write", 1, 0, 10, key="x")
    h.op(1, "write", 2, 0, 10, key="x")
    h.op(2, "read", None, 11, 12, result=2, key="x")
    h.op(2, "read", None, 13, 14, result=1, key="x")
    assert not _valid(h)
    h = Hist()
    h.op(0, "write", 1, 0, 10, key="x")
    h.op(1, "write", 2, 0, 10, key="x")
    h.op(2, "read", None, 1, 2, result=1, key="x")
    h.op(2, "read", None, 3, 4, result=2, key="x")
    h.op(2, "read", None, 11, 12, result=2, key="x")
    assert _valid(h)


def test_info_write_may_take_effect_much_later() -> None:
    h = Hist()
    h.op(0, "write", 1, 0, 1, key="x")
    h.op(1, "write", 2, 2, 3, "info", key="x")
    h.op(2, "read", None, 4, 5, result=1, key="x")
    h.op(2, "read", None, 100, 101, result=2, key="x")
    assert _valid(h)


def test_info_write_may_never_take_effect() -> None:
    h = Hist()
    h.op(0, "write", 1, 0, 1, key="x")
    h.op(1, "write", 2, 2, 3, "info", key="x")
    h.op(2, "read", None, 4, 5, result=1, key="x")
    h.op(2, "read", None, 100, 101, result=1, key="x")
    assert _valid(h)


def test_write_never_completed_counts_as_info() -> None:
    h = Hist()
    h.op(1, "write", 7, 2, None, key="x")
    h.op(2, "read", None, 50, 51, result=7, key="x")
    assert _valid(h)


def test_info_write_cannot_take_effect_twice_or_be_undone() -> None:
    h = Hist()
    h.op(0, "write", 1, 0, 1, key="x")
    h.op(1, "write", 2, 2, 3, "info", key="x")
    h.op(2, "read", None, 4, 5, result=2, key="x")
    h.op(2, "read", None, 6, 7, result=1, key="x")
    assert not _valid(h)


def test_info_write_cannot_take_effect_before_its_invoke() -> None:
    h = Hist()
    h.op(0, "write", 1, 0, 1, key="x")
    h.op(2, "read", None, 2, 3, result=2, key="x")
    h.op(1, "write", 2, 4, 5, "info", key="x")
    assert not _valid(h)


def test_info_write_may_land_after_a_later_ok_write_but_only_once() -> None:
    h = Hist()
    h.op(1, "write", 2, 0, 1, "info", key="x")
    h.op(0, "write", 3, 10, 11, key="x")
    h.op(2, "read", None, 12, 13, result=3, key="x")
    h.op(2, "read", None, 14, 15, result=2, key="x")  # the info write landed at last
    assert _valid(h)
    h = Hist()
    h.op(1, "write", 2, 0, 1, "info", key="x")
    h.op(2, "read", None, 5, 6, result=2, key="x")  # it landed here ...
    h.op(0, "write", 3, 10, 11, key="x")
    h.op(2, "read", None, 12, 13, result=3, key="x")
    h.op(2, "read", None, 14, 15, result=2, key="x")  # ... so it cannot land again
    assert not _valid(h)


def test_failed_operations_never_happened() -> None:
    h = Hist()
    h.op(0, "write", 1, 0, 1, key="x")
    h.op(1, "write", 5, 2, 3, "fail", key="x")
    h.op(2, "read", None, 4, 5, result=5, key="x")
    assert not _valid(h)
    h = Hist()
    h.op(0, "write", 1, 0, 1, key="x")
    h.op(1, "cas", [1, 5], 2, 3, "fail", key="x")
    h.op(2, "read", None, 4, 5, result=1, key="x")
    assert _valid(h)


def test_reads_that_did_not_complete_ok_observe_nothing() -> None:
    h = Hist()
    h.op(0, "write", 1, 0, 1, key="x")
    h.op(1, "read", None, 2, 3, "info", result=None, key="x")
    h.op(2, "read", None, 4, 5, "fail", result=None, key="x")
    assert _valid(h)


def test_cas_requires_its_expected_value() -> None:
    h = Hist()
    h.op(0, "write", 1, 0, 1, key="x")
    h.op(0, "cas", [3, 4], 2, 3, key="x")
    assert not _valid(h)
    h = Hist()
    h.op(0, "cas", [None, 4], 0, 1, key="x")  # expect absent
    h.op(0, "read", None, 2, 3, result=4, key="x")
    assert _valid(h)


def test_info_cas_takes_effect_only_from_its_expected_value() -> None:
    h = Hist()
    h.op(0, "write", 1, 0, 1, key="x")
    h.op(1, "cas", [1, 2], 2, 3, "info", key="x")
    h.op(2, "read", None, 10, 11, result=2, key="x")
    assert _valid(h)
    h = Hist()
    h.op(0, "write", 1, 0, 1, key="x")
    h.op(1, "cas", [9, 2], 2, 3, "info", key="x")
    h.op(2, "read", None, 10, 11, result=2, key="x")
    assert not _valid(h)


def test_chain_of_info_ops_observed_at_the_end() -> None:
    h = Hist()
    h.op(0, "write", 1, 0, 1, "info", key="x")
    h.op(1, "cas", [1, 2], 2, 3, "info", key="x")
    h.op(2, "cas", [2, 3], 4, 5, "info", key="x")
    h.op(3, "read", None, 10, 11, result=3, key="x")
    assert _valid(h)
    h.op(3, "read", None, 12, 13, result=1, key="x")
    assert not _valid(h)


def test_keys_are_independent() -> None:
    h = Hist()
    h.op(0, "write", 1, 0, 1, key="x")
    h.op(1, "write", 1, 0, 1, key="y")
    h.op(0, "read", None, 2, 3, result=1, key="x")
    h.op(1, "read", None, 2, 3, result=None, key="y")
    result = _check(h)
    assert result["valid"] is False
    assert [a["key"] for a in result["anomalies"]] == ["y"]
    assert result["keys"]["x"]["valid"] is True


def test_non_unique_values_are_checked_without_bounding_info_ops() -> None:
    h = Hist()
    h.op(0, "write", 1, 0, 1, key="x")
    h.op(1, "write", 1, 2, 3, "info", key="x")
    h.op(0, "write", 2, 4, 5, key="x")
    h.op(2, "read", None, 6, 7, result=1, key="x")  # the info write of 1 landed late
    result = _check(h)
    assert result["valid"] is True
    assert result["keys"]["x"]["unique_values"] is False


def test_many_unobserved_info_writes_stay_fast() -> None:
    h = Hist()
    t = 0
    for i in range(300):
        h.op(1000 + i, "write", 10_000 + i, t, t + 1, "info", key="x")
        h.op(0, "write", i, t + 2, t + 3, key="x")
        h.op(0, "read", None, t + 4, t + 5, result=i, key="x")
        t += 10
    started = time.monotonic()
    assert _valid(h)
    assert time.monotonic() - started < 5


# ---------------------------------------------------------------- random histories


def _simulate(seed: int, n_ops: int = 120, procs: int = 4) -> list[dict[str, Any]]:
    """A history of an atomic register: each op takes effect at one random instant inside
    its interval; info ops either take effect (at a random instant after invoke) or not."""
    rng = random.Random(seed)
    clock = [0.0] * procs
    next_value = 1
    plans = []
    for _ in range(n_ops):
        p = rng.randrange(procs)
        start = clock[p] + rng.uniform(0, 3)
        end = start + rng.uniform(0.1, 6)
        clock[p] = end
        f = rng.choice(["read", "write", "cas", "read"])
        info = f != "read" and rng.random() < 0.15
        effect = rng.uniform(start, end if not info else end + 20)
        takes_effect = not info or rng.random() < 0.5
        value: Any = None
        if f == "write":
            value = next_value
            next_value += 1
        elif f == "cas":
            value = [rng.choice([None, *range(1, next_value)]), next_value]
            next_value += 1
        plans.append((p, f, value, start, end, info, effect, takes_effect))
        if info:
            clock[p] = end + 100  # a crashed process never comes back; use a new one
    # Apply effects in effect order to find each op's outcome.
    state: Any = None
    outcome: dict[int, tuple[str, Any]] = {}
    for i in sorted(range(len(plans)), key=lambda i: plans[i][6]):
        p, f, value, start, end, info, effect, takes_effect = plans[i]
        if f == "read":
            outcome[i] = ("ok", state)
        elif f == "write":
            if takes_effect:
                state = value
            outcome[i] = ("info" if info else "ok", value)
        else:
            if takes_effect and state == value[0]:
                state = value[1]
                outcome[i] = ("info" if info else "ok", value)
            else:
                outcome[i] = ("info" if info else "fail", value)
    h = Hist()
    process_of: dict[int, int] = {}
    generation = dict.fromkeys(range(procs), 0)
    for i, (p, f, value, start, end, info, _effect, _te) in enumerate(plans):
        process_of[i] = p + procs * generation[p]
        if info:
            generation[p] += 1
        kind, seen = outcome[i]
        scale = 1_000_000
        h.invoke(process_of[i], f, value, int(start * scale), key="k")
        h.done(process_of[i], kind, f, seen, int(end * scale), key="k")
    return h.sorted_ops()


@pytest.mark.parametrize("seed", range(40))
def test_random_atomic_register_histories_are_linearizable(seed: int) -> None:
    history = _simulate(seed)
    result = lin.check(history)
    assert result["valid"] is True, lin.describe(result)


@pytest.mark.parametrize("seed", range(40))
def test_corrupted_read_in_random_history_is_found(seed: int) -> None:
    history = _simulate(seed)
    rng = random.Random(seed)
    reads = [op for op in history if op["f"] == "read" and op["type"] == "ok"]
    victim = rng.choice(reads)
    victim["value"] = 10**6  # a value nobody wrote
    result = lin.check(history)
    assert result["valid"] is False


def test_a_search_over_budget_is_unknown_not_valid() -> None:
    h = Hist()
    for p in range(8):
        h.op(p, "write", p + 1, 0, 10, key="x")  # eight concurrent writes
    h.op(9, "read", None, 11, 12, result=99, key="x")  # nobody wrote 99
    history = h.sorted_ops()
    assert lin.check(history)["valid"] is False
    result = lin.check(history, budget=5)
    assert result["valid"] == "unknown"
    assert result["unknown_keys"] == ["x"] and result["anomalies"] == []
    assert lin.describe(result).startswith("linearizability unknown")
