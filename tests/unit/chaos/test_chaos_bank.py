"""The bank checker on hand-made histories."""

from __future__ import annotations

from chaos_histories import Hist

from shard.chaos import bank_checker

ACCOUNTS = ["a", "b", "c"]


def _hist(*reads: dict[str, int], transfer_kind: str = "ok") -> Hist:
    h = Hist()
    t = 0
    h.op(0, "transfer", {"from": "a", "to": "b", "amount": 5}, t, t + 1, transfer_kind)
    for r in reads:
        t += 10
        h.op(1, "read", None, t, t + 1, result=r)
    return h


def test_conserved_totals_are_valid() -> None:
    h = _hist({"a": 10, "b": 10, "c": 10}, {"a": 5, "b": 15, "c": 10}, transfer_kind="info")
    result = bank_checker.check(h.sorted_ops(), ACCOUNTS, 30)
    assert result["valid"], bank_checker.describe(result)
    assert result["reads"] == 2
    assert result["transfers"]["info"] == 1


def test_wrong_total_negative_and_missing_accounts() -> None:
    h = _hist({"a": 10, "b": 15, "c": 10}, {"a": -5, "b": 25, "c": 10}, {"a": 10, "b": 20})
    result = bank_checker.check(h.sorted_ops(), ACCOUNTS, 30)
    assert not result["valid"]
    assert result["anomaly_types"] == ["missing-account", "negative", "wrong-total"]
    assert result["anomaly_counts"]["wrong-total"] == 1
    assert "wrong-total" in bank_checker.describe(result) or "missing" in bank_checker.describe(
        result
    )


def test_failed_reads_are_ignored() -> None:
    h = Hist()
    h.op(1, "read", None, 0, 1, "fail", result=None)
    result = bank_checker.check(h.sorted_ops(), ACCOUNTS, 30)
    assert result["valid"] and result["reads"] == 0


def _final(balances: dict[str, int], transfer_kind: str) -> list[dict[str, object]]:
    h = Hist()
    h.op(0, "transfer", {"from": "a", "to": "b", "amount": 5}, 0, 1, transfer_kind)
    h.op(1, "read", None, 10, 11, result=balances, final=True)
    return h.sorted_ops()


def test_the_final_read_must_show_every_acknowledged_transfer() -> None:
    """Found by review: totals alone called valid an acknowledged transfer lost whole."""
    lost = bank_checker.check(_final({"a": 10, "b": 10, "c": 10}, "ok"), ACCOUNTS, 30, initial=10)
    assert lost["anomaly_types"] == ["final-balance"]
    assert lost["anomalies"]["final-balance"][0]["balances"] == {"a": 10, "b": 10, "c": 10}
    applied = bank_checker.check(_final({"a": 5, "b": 15, "c": 10}, "ok"), ACCOUNTS, 30, initial=10)
    assert applied["valid"]


def test_an_indeterminate_transfer_may_be_applied_once_or_not_at_all() -> None:
    for balances in ({"a": 10, "b": 10, "c": 10}, {"a": 5, "b": 15, "c": 10}):
        assert bank_checker.check(_final(balances, "info"), ACCOUNTS, 30, initial=10)["valid"]
    twice = bank_checker.check(_final({"a": 0, "b": 20, "c": 10}, "info"), ACCOUNTS, 30, initial=10)
    assert twice["anomaly_types"] == ["final-balance"]
    failed = bank_checker.check(
        _final({"a": 5, "b": 15, "c": 10}, "fail"), ACCOUNTS, 30, initial=10
    )
    assert failed["anomaly_types"] == ["final-balance"]


# Found by a review that fed the checker anomalies: bounds per account, and totals for the
# other reads, accepted each of these.


def _transfer(
    h: Hist, p: int, src: str, dst: str, amount: int, start: int, end: int | None, kind: str = "ok"
) -> None:
    h.op(p, "transfer", {"from": src, "to": dst, "amount": amount}, start, end, kind)


ABCD = ["a", "b", "c", "d"]


def test_final_balances_made_of_halves_of_two_indeterminate_transfers_are_refused() -> None:
    h = Hist()
    _transfer(h, 0, "c", "a", 5, 0, 1, "info")
    _transfer(h, 1, "d", "b", 5, 0, 1, "info")
    h.op(9, "read", None, 10, 11, result={"a": 15, "b": 10, "c": 10, "d": 5}, final=True)
    result = bank_checker.check(h.sorted_ops(), ABCD, 40, initial=10)
    assert result["anomaly_types"] == ["final-balance"]
    # Either, both or none of them applied whole: explained.
    for balances in (
        {"a": 15, "b": 10, "c": 5, "d": 10},
        {"a": 15, "b": 15, "c": 5, "d": 5},
        {"a": 10, "b": 10, "c": 10, "d": 10},
    ):
        h = Hist()
        _transfer(h, 0, "c", "a", 5, 0, 1, "info")
        _transfer(h, 1, "d", "b", 5, 0, 1, "info")
        h.op(9, "read", None, 10, 11, result=balances, final=True)
        assert bank_checker.check(h.sorted_ops(), ABCD, 40, initial=10)["valid"], balances


def test_an_acknowledged_transfer_applied_twice_beside_indeterminate_ones_is_refused() -> None:
    h = Hist()
    _transfer(h, 0, "a", "b", 5, 0, 1)
    _transfer(h, 1, "a", "c", 5, 0, 1, "info")
    _transfer(h, 2, "d", "b", 5, 0, 1, "info")
    h.op(9, "read", None, 10, 11, result={"a": 0, "b": 20, "c": 10, "d": 10}, final=True)
    assert bank_checker.check(h.sorted_ops(), ABCD, 40, initial=10)["anomaly_types"] == [
        "final-balance"
    ]


def test_a_snapshot_with_halves_of_two_transfers_that_cancel_is_refused() -> None:
    h = Hist()
    _transfer(h, 0, "a", "b", 3, 0, 20)
    _transfer(h, 1, "c", "d", 3, 0, 20)
    # Total 40 holds: a and d moved, b and c did not (half of each transfer).
    h.op(9, "read", None, 5, 6, result={"a": 7, "b": 10, "c": 10, "d": 13})
    assert bank_checker.check(h.sorted_ops(), ABCD, 40, initial=10)["anomaly_types"] == [
        "unexplained-read"
    ]


def test_a_snapshot_that_misses_a_transfer_acknowledged_before_it_began_is_refused() -> None:
    h = Hist()
    _transfer(h, 0, "a", "b", 5, 0, 1)
    h.op(9, "read", None, 5, 6, result={"a": 5, "b": 15, "c": 10, "d": 10})
    h.op(9, "read", None, 7, 8, result={"a": 10, "b": 10, "c": 10, "d": 10})  # back in time
    result = bank_checker.check(h.sorted_ops(), ABCD, 40, initial=10)
    assert result["anomaly_types"] == ["unexplained-read"]
    assert result["anomaly_counts"]["unexplained-read"] == 1


def test_a_search_too_large_is_counted_as_unchecked_not_as_an_anomaly() -> None:
    h = Hist()
    for p in range(30):  # 2**30 subsets, about 30**3 distinct sums: over a small cap
        _transfer(h, p, "abcd"[p % 4], "abcd"[(p + 1) % 4], 1 + p % 5, 0, 1, "info")
    h.op(99, "read", None, 10, 11, result={"a": 10, "b": 10, "c": 10, "d": 10}, final=True)
    saved = bank_checker.SEARCH_STATES
    bank_checker.SEARCH_STATES = 50
    try:
        result = bank_checker.check(h.sorted_ops(), ABCD, 40, initial=10)
    finally:
        bank_checker.SEARCH_STATES = saved
    assert result["valid"] and result["unchecked_reads"] == 1
