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

With every account's starting balance given, each read's balances must also be what one
set of transfers makes of them (strict serializability, checked per read): the start, plus
every ``ok`` transfer acknowledged before the read began, plus some of the transfers it
may see — ``ok`` ones concurrent with it and ``info`` ones invoked before it ended — found
by a search over those sets (`_explained`). ``final-balance`` on the final read (after the
faults healed), ``unexplained-read`` on the others. Totals alone miss an acknowledged
transfer lost whole or applied twice, half of two transfers that cancel out, or a read that
misses a transfer acknowledged before it began; bounds per account miss balances made of
halves of two indeterminate transfers (found by review). A read that may see more than
MAX_CANDIDATES transfers (other than the final one), or whose search outgrows
SEARCH_STATES, is not decided and counted in ``unchecked_reads``.

Transfers themselves need no check: ``info`` transfers may or may not have happened and
either way conserve the total. `check(history, accounts, total)` returns ``valid``, the
anomalies with up to 5 examples each, and counts.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from operator import itemgetter
from typing import Any

from shard.chaos.history import client_ops, pairs

__all__ = ["check", "describe"]

EXAMPLES = 5
#: The most partial sums `_explained` keeps before it gives a read up as undecided.
SEARCH_STATES = 20_000
#: A read other than the final one that may see more transfers than this is not searched
#: (indeterminate transfers add up over a long run; the final read is always searched).
MAX_CANDIDATES = 16


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

    history = list(history)
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
    unchecked = 0
    final_explained: bool | None = None
    if initial is not None:
        for read, explained in _explain_reads(history, accounts, initial):
            if read.get("final"):
                final_explained = explained
            if explained is None:
                unchecked += 1
            elif not explained:
                kind = "final-balance" if read.get("final") else "unexplained-read"
                add(kind, {"index": read.get("index"), "balances": read.get("value")})
    return {
        "valid": not anomalies,
        "reads": reads,
        "unchecked_reads": unchecked,
        # Whether the final read was searched and explained (None: none, or undecided).
        "final_explained": final_explained,
        "transfers": transfers,
        "anomaly_types": sorted(anomalies),
        "anomaly_counts": counts,
        "anomalies": anomalies,
    }


def _explain_reads(
    history: Iterable[dict[str, Any]], accounts: Sequence[str], initial: int
) -> list[tuple[dict[str, Any], bool | None]]:
    """Every ok read with whether one set of the transfers it may see explains it (None:
    not decided). One sweep in time order: acknowledged transfers join the base as reads
    begin after them; the others a read may see are those begun before it ended."""
    ops = pairs(client_ops(history))
    transfers = []
    for inv, done in ops:
        if inv["f"] == "transfer" and (done is None or done["type"] != "fail"):
            acked_at = done["time"] if done is not None and done["type"] == "ok" else None
            transfers.append((inv["time"], acked_at, inv["value"]))
    acked = sorted((t for t in transfers if t[1] is not None), key=itemgetter(1))
    by_start = sorted(transfers, key=lambda t: t[0])
    reads = sorted(
        (
            (inv, done)
            for inv, done in ops
            if inv["f"] == "read" and done is not None and done["type"] == "ok"
        ),
        key=lambda pair: pair[0]["time"],
    )
    base = dict.fromkeys(accounts, initial)
    in_base: set[int] = set()
    begun: dict[int, tuple[int, int | None, dict[str, Any]]] = {}
    next_acked = next_begun = 0
    out = []
    for inv, done in reads:
        balances = done.get("value") or {}
        if set(balances) != set(accounts) or not all(
            isinstance(v, int) and not isinstance(v, bool) for v in balances.values()
        ):
            continue  # reported by the per-read checks
        while next_acked < len(acked) and acked[next_acked][1] < inv["time"]:
            transfer = acked[next_acked]
            _move(base, transfer[2], 1)  # acknowledged before the read began
            in_base.add(id(transfer))
            begun.pop(id(transfer), None)
            next_acked += 1
        while next_begun < len(by_start) and by_start[next_begun][0] <= done["time"]:
            transfer = by_start[next_begun]
            if id(transfer) not in in_base:
                begun[id(transfer)] = transfer
            next_begun += 1
        maybe = [t[2] for t in begun.values() if t[0] <= done["time"]]
        search = len(maybe) <= MAX_CANDIDATES or bool(done.get("final"))
        out.append((done, _explained(balances, base, maybe, search=search)))
    return out


def _move(balances: dict[str, int], transfer: dict[str, Any], sign: int) -> None:
    balances[transfer["from"]] = balances.get(transfer["from"], 0) - sign * transfer["amount"]
    balances[transfer["to"]] = balances.get(transfer["to"], 0) + sign * transfer["amount"]


def _explained(
    target: dict[str, int],
    base: dict[str, int],
    maybe: Sequence[dict[str, Any]],
    *,
    search: bool = True,
) -> bool | None:
    """Whether `base` plus some subset of the transfers `maybe` equals `target`: False when
    a balance is out of the bounds those transfers allow; otherwise, with `search`, the
    answer of a search, None when it outgrew SEARCH_STATES or was not asked for.

    Breadth-first over the subsets' sums, kept as sets (subsets with equal sums merge) and
    pruned to those from which the transfers left can still reach the target.
    """
    names = sorted(target)
    slot = {name: i for i, name in enumerate(names)}
    need = tuple(target[n] - base.get(n, 0) for n in names)
    moves = [
        (slot[t["from"]], slot[t["to"]], t["amount"])
        for t in maybe
        if t["from"] in slot and t["to"] in slot
    ]
    # What the transfers not yet decided can still take from / add to each account.
    down = [0] * len(names)
    up = [0] * len(names)
    for src, dst, amount in moves:
        down[src] += amount
        up[dst] += amount
    if not all(-down[i] <= need[i] <= up[i] for i in range(len(names))):
        return False
    if not search:
        return None
    sums = {tuple([0] * len(names))}
    for src, dst, amount in moves:
        down[src] -= amount
        up[dst] -= amount
        grown = set()
        for current in sums:
            taken = list(current)
            taken[src] -= amount
            taken[dst] += amount
            for candidate in (current, tuple(taken)):
                if all(-down[i] <= need[i] - candidate[i] <= up[i] for i in range(len(names))):
                    grown.add(candidate)
        if not grown:
            return False
        if len(grown) > SEARCH_STATES:
            return None
        sums = grown
    return need in sums


def describe(result: dict[str, Any]) -> str:
    if result["valid"]:
        unchecked = result.get("unchecked_reads", 0)
        final = {
            True: "are explained by one set of",
            None: "are within the bounds of (the search was too large)",
        }[result.get("final_explained")]
        return (
            f"bank: {result['reads']} snapshot reads all conserve the total; "
            f"{result['reads'] - unchecked} are explained by one set of the transfers they may "
            f"see, {unchecked} are within those transfers' bounds (too many indeterminate "
            f"transfers to search); the final balances {final} the transfers"
        )
    parts = [f"{kind} x{result['anomaly_counts'][kind]}" for kind in result["anomaly_types"]]
    first = result["anomalies"][result["anomaly_types"][0]][0]
    return f"bank: ANOMALIES {', '.join(parts)}; first: {first}"
