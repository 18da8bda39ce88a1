"""The bank checker (Jepsen's `jepsen.tests.bank`): money moves between accounts by
transactions and is never created or destroyed, so every snapshot read sees the same total.

Ops (history records of numeric processes)::

    {"f": "transfer", "value": {"from": "a", "to": "b", "amount": 3}}
    {"f": "read", "value": {"a": 10, "b": 7, ...}}      # ok reads only carry balances

Checked on every ``ok`` read (reads are snapshots: one timestamp across every shard):

- ``wrong-total``: the balances do not sum to the initial total (a torn snapshot, a lost or
  doubled half of a transfer, or a partly visible transaction);
- ``negative``: a balance below zero (transfers refuse to overdraw, so a negative balance
  means two transfers both spent the same money: a lost update / write skew);
- ``missing-account`` / ``unexpected-account``: the read does not cover exactly the accounts;
- ``non-integer``: a balance that is not an integer (garbage).

Transfers themselves need no check: ``info`` transfers may or may not have happened and
either way conserve the total. `check(history, accounts, total)` returns ``valid``, the
anomalies with up to 5 examples each, and counts.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from shard.chaos.history import client_ops

__all__ = ["check", "describe"]

EXAMPLES = 5


def check(
    history: Iterable[dict[str, Any]],
    accounts: Sequence[str],
    total: int,
    *,
    negative_allowed: bool = False,
) -> dict[str, Any]:
    """Check every ok read of a bank history; see the module doc."""
    expected = set(accounts)
    anomalies: dict[str, list[dict[str, Any]]] = {}
    counts: dict[str, int] = {}
    reads = 0
    transfers = {"ok": 0, "fail": 0, "info": 0}

    def add(kind: str, example: dict[str, Any]) -> None:
        counts[kind] = counts.get(kind, 0) + 1
        examples = anomalies.setdefault(kind, [])
        if len(examples) < EXAMPLES:
            examples.append(example)

    for op in client_ops(history):
        if op["type"] == "invoke":
            continue
        if op["f"] == "transfer":
            transfers[op["type"]] = transfers.get(op["type"], 0) + 1
            continue
        if op["f"] != "read" or op["type"] != "ok":
            continue
        reads += 1
        balances = op.get("value") or {}
        where = {"index": op.get("index"), "process": op["process"], "value": balances}
        seen = set(balances)
        if seen - expected:
            add("unexpected-account", {**where, "accounts": sorted(seen - expected)})
        if expected - seen:
            add("missing-account", {**where, "accounts": sorted(expected - seen)})
        values = list(balances.values())
        if not all(isinstance(v, int) and not isinstance(v, bool) for v in values):
            add("non-integer", where)
            continue
        got = sum(values)
        if got != total:
            add("wrong-total", {**where, "total": got, "expected": total})
        negative = {a: v for a, v in balances.items() if v < 0}
        if negative and not negative_allowed:
            add("negative", {**where, "negative": negative})
    return {
        "valid": not anomalies,
        "reads": reads,
        "transfers": transfers,
        "anomaly_types": sorted(anomalies),
        "anomaly_counts": counts,
        "anomalies": anomalies,
    }


def describe(result: dict[str, Any]) -> str:
    if result["valid"]:
        return f"bank: {result['reads']} snapshot reads all conserve the total"
    parts = [f"{kind} x{result['anomaly_counts'][kind]}" for kind in result["anomaly_types"]]
    first = result["anomalies"][result["anomaly_types"][0]][0]
    return f"bank: ANOMALIES {', '.join(parts)}; first: {first}"
