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

And on the final read (after the faults healed), with every account's starting balance
given: ``final-balance``, a balance outside what the transfers allow, i.e. the start plus
every ``ok`` transfer plus some of the ``info`` ones (a bound per account, no subset
search). Totals alone miss an acknowledged transfer lost whole, or one applied twice.

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
    initial: int | None = None,
) -> dict[str, Any]:
    """Check every ok read of a bank history; with `initial` (each account's starting
    balance) the final read too; see the module doc."""
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

    moved: dict[str, list[dict[str, Any]]] = {"ok": [], "info": []}
    final: dict[str, Any] | None = None
    for op in client_ops(history):
        if op["type"] == "invoke":
            continue
        if op["f"] == "transfer":
            transfers[op["type"]] = transfers.get(op["type"], 0) + 1
            moved.get(op["type"], []).append(op["value"])
            continue
        if op["f"] == "read" and op["type"] == "ok" and op.get("final"):
            final = op
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
    if initial is not None and final is not None:
        for account, (low, high) in _final_bounds(accounts, initial, moved).items():
            balance = (final.get("value") or {}).get(account)
            if isinstance(balance, int) and not low <= balance <= high:
                add(
                    "final-balance",
                    {"account": account, "balance": balance, "allowed": [low, high]},
                )
    return {
        "valid": not anomalies,
        "reads": reads,
        "transfers": transfers,
        "anomaly_types": sorted(anomalies),
        "anomaly_counts": counts,
        "anomalies": anomalies,
    }


def _final_bounds(
    accounts: Sequence[str], initial: int, moved: dict[str, list[dict[str, Any]]]
) -> dict[str, tuple[int, int]]:
    """Per account: [start + ok transfers + every info debit, ... + every info credit]."""
    low = dict.fromkeys(accounts, initial)
    high = dict.fromkeys(accounts, initial)
    for kind, values in moved.items():
        for t in values:
            src, dst, amount = t["from"], t["to"], t["amount"]
            if kind == "ok":
                for bound in (low, high):
                    bound[src] -= amount
                    bound[dst] += amount
            else:
                low[src] -= amount
                high[dst] += amount
    return {a: (low[a], high[a]) for a in accounts}


def describe(result: dict[str, Any]) -> str:
    if result["valid"]:
        return (
            f"bank: {result['reads']} snapshot reads all conserve the total, and the final "
            "balances agree with the transfers"
        )
    parts = [f"{kind} x{result['anomaly_counts'][kind]}" for kind in result["anomaly_types"]]
    first = result["anomalies"][result["anomaly_types"][0]][0]
    return f"bank: ANOMALIES {', '.join(parts)}; first: {first}"
