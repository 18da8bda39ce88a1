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

With every account's starting balance given, the reads must also be snapshots of ONE serial
history of the transfers that respects real time (strict serializability): an order of the
transfers and reads, each placed between its invocation and its completion (an ``info`` or
never-completed transfer anywhere after its invocation, or nowhere; a ``fail`` one nowhere),
in which every read sees what the start and the transfers before it make. So an
acknowledged transfer shows in every read invoked after the acknowledgement, a transfer one
read saw shows in every read invoked after that read completed, an indeterminate transfer
once seen is never unseen, and the reads' sets of transfers nest in an order compatible with
real time. Checking each read alone against some subset of the transfers it may see
accepted a transfer seen, then unseen, then seen again (found by review).

`_Sweep` decides this in one pass over the completions in time order, keeping every state
the history so far allows: which transfers in doubt are applied, which open reads are
already placed. Applying less is never worse: a state that applied a subset of another's
transfers and placed a superset of its reads can do all the other can (apply the difference
now). So only undominated states are kept, a transfer is applied only when it must be (at
its acknowledgement, or just before the first read that sees it, as part of one of the
smallest sets of transfers that make that read's balances: `_additions`), and reads are
placed only just before a completion (between two, nothing forces anything). A transfer
applied in every state joins the base. The indeterminate ones stay in doubt to the end, and
are searched with the exact sums of their subsets (`_Pool`). Within its budget the search is
exact: it finds such an order whenever one exists (the tests compare it with a search over
every order on small random histories).

A read no state explains is ``final-balance`` on the final read (after the faults healed)
and ``unexplained-read`` on the others; the example lists up to three balances the history
before it leaves possible (before the transfers still in flight). The sweep then goes on
without that read: fewer constraints, so what it finds later is still an anomaly. An event
whose search takes more than SEARCH_BUDGET steps restarts the sweep from the base with every
transfer in doubt unapplied, and leaves out the reads then open (also fewer constraints);
those reads are counted in ``unchecked_reads``.

Not checked: a transfer is a fixed move of its amount. Whether the serial order gave an
``ok`` transfer's source the money (or denied a ``fail`` one it) is not checked, beyond the
``negative`` balances reads show. `check(history, accounts, total)` returns ``valid``, the
anomalies with up to 5 examples each, and counts.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from shard.chaos.history import client_ops, pairs

__all__ = ["check", "describe"]

EXAMPLES = 5
#: The most steps (states reached, subsets tried, states compared) the sweep spends on one
#: completion before it restarts; a correct 300 s chaos run's costliest took about 10,000.
SEARCH_BUDGET = 20_000
#: The most subset sums `_Pool` keeps for the indeterminate transfers (31,000 for the 16 of
#: a 300 s run).
POOL_SUMS = 200_000

Balances = tuple[int, ...]
#: (transfers in doubt applied, open reads already placed)
State = tuple[frozenset[int], frozenset[int]]


def check(
    history: Iterable[dict[str, Any]],
    accounts: Sequence[str],
    total: int,
    *,
    negative_allowed: bool = False,
    initial: int | None = None,
) -> dict[str, Any]:
    """Check every ok read of a bank history; with `initial` (each account's starting
    balance) that the reads are snapshots of one serial history too; see the module doc."""
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
        sweep = _Sweep(history, accounts, initial)
        for read, explained, possible in sweep.run():
            if read.get("final"):
                final_explained = explained
            if explained is None:
                unchecked += 1
            elif not explained:
                kind = "final-balance" if read.get("final") else "unexplained-read"
                add(
                    kind,
                    {
                        "index": read.get("index"),
                        "balances": read.get("value"),
                        "possible": possible,
                    },
                )
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


class _OutOfBudget(Exception):
    """One completion's search took more than SEARCH_BUDGET steps."""


class _Sweep:
    """The serial-order search of the module doc over one history (`run`)."""

    def __init__(
        self, history: Sequence[dict[str, Any]], accounts: Sequence[str], initial: int
    ) -> None:
        self.accounts = list(accounts)
        slot = {name: i for i, name in enumerate(self.accounts)}
        self.moves: list[tuple[int, int, int]] = []
        self.reads: list[tuple[dict[str, Any], Balances]] = []
        # (time, invocations before completions at one instant: neither precedes the other,
        # kind, transfer or read number)
        self.events: list[tuple[int, int, str, int]] = []
        indeterminate: set[int] = set()
        for inv, done in pairs(history):
            if inv["f"] == "transfer" and (done is None or done["type"] != "fail"):
                value = inv["value"]
                if value["from"] not in slot or value["to"] not in slot:
                    continue  # moves no account a read covers
                number = len(self.moves)
                self.moves.append((slot[value["from"]], slot[value["to"]], value["amount"]))
                self.events.append((inv["time"], 0, "transfer", number))
                if done is not None and done["type"] == "ok":
                    self.events.append((done["time"], 1, "acked", number))
                else:
                    indeterminate.add(number)
            elif inv["f"] == "read" and done is not None and done["type"] == "ok":
                balances = done.get("value") or {}
                if set(balances) != set(accounts) or not all(
                    isinstance(v, int) and not isinstance(v, bool) for v in balances.values()
                ):
                    continue  # reported by the per-read checks
                number = len(self.reads)
                self.reads.append((done, tuple(balances[a] for a in self.accounts)))
                self.events.append((inv["time"], 0, "read", number))
                self.events.append((done["time"], 1, "seen", number))
        self.events.sort()
        self.base: Balances = (initial,) * len(self.accounts)
        self.in_doubt: set[int] = set()  # transfers invoked, not applied in every state
        self.indeterminate = indeterminate
        self.pool = _Pool(self.moves, len(self.accounts))  # the indeterminate ones in doubt
        self.open: set[int] = set()  # reads invoked, not completed, not left out
        self.states: dict[State, Balances] = {(frozenset(), frozenset()): self.base}
        self.steps = 0

    def run(self) -> list[tuple[dict[str, Any], bool | None, list[dict[str, int]]]]:
        """Every well-formed ok read in completion order: (its completion, explained or
        None when left out, balances possible before it when not explained)."""
        out: list[tuple[dict[str, Any], bool | None, list[dict[str, int]]]] = []
        for _time, _phase, kind, number in self.events:
            self.steps = 0
            if kind == "transfer":
                self.in_doubt.add(number)
                if number in self.indeterminate:
                    self.pool.add(number)
            elif kind == "read":
                self.open.add(number)
            elif kind == "acked":
                if number in self.in_doubt:  # else every state applied it already
                    try:
                        self._acked(number)
                    except _OutOfBudget:
                        out.extend((self.reads[r][0], None, []) for r in self._restart())
                        self._acked(number)  # from the base, no read open: one step
            elif number in self.open:
                try:
                    explained = self._seen(number)
                except _OutOfBudget:
                    out.extend((self.reads[r][0], None, []) for r in self._restart())
                    continue
                possible = [] if explained else self._possible()
                self.open.discard(number)
                out.append((self.reads[number][0], explained, possible))
            self._apply_to_base(frozenset.intersection(*(x for x, _ in self.states)))
        return out

    def _acked(self, transfer: int) -> None:
        """The transfer's acknowledgement: states that have not applied it may place open
        reads first; then every state applies it."""
        grown: dict[State, Balances] = {}
        for (applied, placed), balances in self.states.items():
            if transfer in applied:
                grown[(applied, placed)] = balances
                continue
            for (now, then_placed), now_balances in self._place(applied, placed, balances).items():
                if transfer not in now:
                    now_balances = _moved(now_balances, self.moves[transfer])
                grown[(now | {transfer}, then_placed)] = now_balances
        self.states = self._undominated(grown)

    def _seen(self, read: int) -> bool:
        """The read's completion: keep the states that placed it, or can place it now (after
        other open reads, if need be). False, states unchanged, when none can."""
        grown: dict[State, Balances] = {}
        for (applied, placed), balances in self.states.items():
            reached = (
                {(applied, placed): balances}
                if read in placed
                else self._place(applied, placed, balances, last=read)
            )
            for (now, then_placed), now_balances in reached.items():
                grown[(now, then_placed - {read})] = now_balances
        if not grown:
            return False
        self.states = self._undominated(grown)
        return True

    def _place(
        self,
        applied: frozenset[int],
        placed: frozenset[int],
        balances: Balances,
        last: int | None = None,
    ) -> dict[State, Balances]:
        """States reached from one by placing open reads one after another, each after the
        smallest sets of transfers in doubt that make its balances: every state on the way,
        or with `last` only those that end by placing it."""
        out: dict[State, Balances] = {}
        todo = [((applied, placed), balances)]
        visited = {(applied, placed)}
        while todo:
            (now, now_placed), now_balances = todo.pop()
            self._spend()
            if last is None:
                out[(now, now_placed)] = now_balances
            for read in self.open - now_placed:
                target = self.reads[read][1]
                need = tuple(t - b for t, b in zip(target, now_balances, strict=True))
                for added in self._additions(need, now):
                    state = (now | added, now_placed | {read})
                    if read == last:
                        out[state] = target
                    elif state not in visited:
                        visited.add(state)
                        todo.append((state, target))
        return out

    def _additions(self, need: Balances, applied: frozenset[int]) -> list[frozenset[int]]:
        """The smallest sets of the transfers in doubt not in `applied` whose moves add up
        to `need`: a depth-first search over the acknowledged ones still in flight, then the
        pool from its end, that stops a set once it reaches `need` (anything added then sums
        to nothing) and prunes by what the transfers left can still move."""
        if not any(need):
            return [frozenset()]
        flight = sorted(self.in_doubt - applied - self.pool.members)
        width = len(need)
        # out_left[k][i] / in_left[k][i]: what flight[k:] and the pool can take from / add
        # to account i (built from the end).
        out_left = [list(self.pool.out_left[-1])]
        in_left = [list(self.pool.in_left[-1])]
        for transfer in reversed(flight):
            src, dst, amount = self.moves[transfer]
            out_left.append(list(out_left[-1]))
            in_left.append(list(in_left[-1]))
            out_left[-1][src] += amount
            in_left[-1][dst] += amount
        out_left.reverse()
        in_left.reverse()
        found: list[frozenset[int]] = []
        end = len(flight) + len(self.pool.ids)
        todo: list[tuple[int, Balances, tuple[int, ...]]] = [(0, need, ())]
        while todo:
            k, rest, chosen = todo.pop()
            self._spend()
            if not any(rest):
                found.append(frozenset(chosen))
                continue
            if k < len(flight):
                if not all(-out_left[k][i] <= rest[i] <= in_left[k][i] for i in range(width)):
                    continue
                transfer = flight[k]
            else:
                left = end - k  # the pool's first `left` transfers
                if not self.pool.reachable(left, rest):
                    continue
                transfer = self.pool.ids[left - 1]
            todo.append((k + 1, rest, chosen))
            if transfer not in applied:
                src, dst, amount = self.moves[transfer]
                taken = list(rest)
                taken[src] += amount
                taken[dst] -= amount
                todo.append((k + 1, tuple(taken), (*chosen, transfer)))
        return [s for s in found if not any(other < s for other in found)]

    def _apply_to_base(self, transfers: frozenset[int]) -> None:
        """Transfers every state has applied: out of doubt, into the base."""
        if not transfers:
            return
        for transfer in transfers:
            self.base = _moved(self.base, self.moves[transfer])
        self.in_doubt -= transfers
        self.pool.remove(transfers)
        self.states = {(a - transfers, p): b for (a, p), b in self.states.items()}

    def _restart(self) -> list[int]:
        """After a search over budget: one state, the base, every transfer in doubt
        unapplied (one applied already is as if applied later: a relaxation), and the reads
        now open left out (returned)."""
        dropped = sorted(self.open)
        self.open.clear()
        self.states = {(frozenset(), frozenset()): self.base}
        self.steps = 0
        return dropped

    def _undominated(self, states: dict[State, Balances]) -> dict[State, Balances]:
        """The states no other one dominates (applied a subset of the transfers, placed a
        superset of the reads); sorted so that a dominating state comes first."""
        kept: list[tuple[State, Balances]] = []
        for state, balances in sorted(states.items(), key=lambda s: (len(s[0][0]), -len(s[0][1]))):
            self._spend(len(kept))
            applied, placed = state
            if not any(a <= applied and p >= placed for (a, p), _ in kept):
                kept.append((state, balances))
        return dict(kept)

    def _possible(self) -> list[dict[str, int]]:
        return [
            dict(zip(self.accounts, balances, strict=True))
            for balances in sorted(set(self.states.values()))[:3]
        ]

    def _spend(self, steps: int = 1) -> None:
        self.steps += steps
        if self.steps > SEARCH_BUDGET:
            raise _OutOfBudget


class _Pool:
    """The indeterminate transfers in doubt, in invocation order, with what each prefix
    can move: the sums of its subsets while they number at most POOL_SUMS in all, per-account
    bounds beyond. Nothing forces them, so they stay in doubt for the rest of the run and
    `_additions` tries them for most reads; with amounts of 1-5, bounds alone prune too
    little (a 300 s run's check took 35 s instead of 2)."""

    def __init__(self, moves: Sequence[tuple[int, int, int]], width: int) -> None:
        self.moves = moves
        self.width = width
        self._empty()

    def _empty(self) -> None:
        self.ids: list[int] = []
        self.members: frozenset[int] = frozenset()
        # sums[k]: the sums of the subsets of ids[:k]; out_left / in_left[k][i]: what
        # ids[:k] can take from / add to account i.
        self.sums: list[set[Balances]] = [{(0,) * self.width}]
        self.out_left = [[0] * self.width]
        self.in_left = [[0] * self.width]

    def add(self, transfer: int) -> None:
        self.ids.append(transfer)
        self.members |= {transfer}
        src, dst, amount = move = self.moves[transfer]
        self.out_left.append(list(self.out_left[-1]))
        self.in_left.append(list(self.in_left[-1]))
        self.out_left[-1][src] += amount
        self.in_left[-1][dst] += amount
        if len(self.sums) == len(self.ids):
            last = self.sums[-1]
            grown = last | {_moved(total, move) for total in last}
            if sum(map(len, self.sums)) + len(grown) <= POOL_SUMS:
                self.sums.append(grown)

    def remove(self, transfers: frozenset[int]) -> None:
        if transfers & self.members:
            kept = [t for t in self.ids if t not in transfers]
            self._empty()
            for transfer in kept:
                self.add(transfer)

    def reachable(self, left: int, rest: Balances) -> bool:
        """Whether some subset of the first `left` transfers may sum to `rest`."""
        if left < len(self.sums):
            return rest in self.sums[left]
        return all(
            -self.out_left[left][i] <= rest[i] <= self.in_left[left][i] for i in range(self.width)
        )


def _moved(balances: Balances, move: tuple[int, int, int]) -> Balances:
    src, dst, amount = move
    out = list(balances)
    out[src] -= amount
    out[dst] += amount
    return tuple(out)


def describe(result: dict[str, Any]) -> str:
    if result["valid"]:
        unchecked = result.get("unchecked_reads", 0)
        final = {True: "is part of it", None: "was not checked (none, or left out)"}[
            result.get("final_explained")
        ]
        return (
            f"bank: {result['reads']} snapshot reads all conserve the total; "
            f"{result['reads'] - unchecked} are snapshots of one serial order of the transfers "
            f"that respects real time, {unchecked} left out (search over budget); the final "
            f"read {final}"
        )
    parts = [f"{kind} x{result['anomaly_counts'][kind]}" for kind in result["anomaly_types"]]
    first = result["anomalies"][result["anomaly_types"][0]][0]
    return f"bank: ANOMALIES {', '.join(parts)}; first: {first}"
