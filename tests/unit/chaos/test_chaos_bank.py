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
    assert lost["anomalies"]["final-balance"][0]["allowed"] == [5, 5]
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
