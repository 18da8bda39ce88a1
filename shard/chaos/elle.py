"""An Elle-style checker for list-append transaction histories (Kingsbury & Alvaro, "Elle:
Inferring Isolation Anomalies from Experimental Observations", VLDB 2020).

Theory of operation
-------------------
A transaction is a list of micro-ops, ``["append", k, v]`` or ``["r", k, list-or-null]``;
every value appended to a key is unique, and a read returns the whole list. In the history
(Jepsen conventions, shard.chaos.history) an ``invoke`` is completed by ``ok`` (committed,
reads filled in), ``fail`` (surely not committed) or ``info`` (unknown; an invoke never
completed counts as info).

Because values are unique and reads return whole lists, the history reveals each key's
version order: the longest list read of the key is the order, and every read must be a
prefix of it. From that order and the transactions:

- ww: T1 -> T2 when T2's append to k directly follows T1's append in k's order;
- wr: T1 -> T2 when T2 read a version of k whose last element T1 appended;
- rw: T1 -> T2 when T1 read a version of k and T2 appended the next element;
- rt: T1 -> T2 when T1 completed before T2 was invoked (strict serializability). Kept
  sparse as Elle does: each new transaction gets edges from the "frontier" of completed
  transactions that no other completed transaction follows in real time.

Graph nodes are the ``ok`` transactions and the ``info`` transactions whose appends someone
read (so they committed). A read is taken "externally": a transaction's own earlier appends
to the key are stripped from its read; its later reads of the key must agree with the first
one plus its own appends (else ``internal``).

Cycles are searched per strongly connected component (Tarjan), for the weakest explanation
first: a cycle of ww only is ``G0``; of ww/wr with a wr, ``G1c``; with exactly one rw,
``G-single``; with more, ``G2``. Cycles that need an rt edge carry the suffix
``-realtime`` (a violation of strict, not plain, serializability). Non-cycle anomalies:

- ``G1a`` aborted read: a read saw an element appended by a ``fail`` transaction;
- ``G1b`` intermediate read: a read's last element is not the writer's last append to k;
- ``internal``, ``incompatible-order`` (two reads of a key that are not prefixes of one
  another), ``duplicate-elements`` (a read lists a value twice), ``garbage`` (a read value
  that nobody appended), ``duplicate-appends`` (one value appended twice: the history
  breaks the workload's contract and the version order cannot be trusted).

`check(history, realtime=True)` returns ``{"valid", "anomaly_types", "anomalies", "txns",
"edges"}`` where each anomaly type maps to up to `EXAMPLES_PER_TYPE` examples (a cycle is
given as its steps: transaction, edge label and why). `describe` makes one paragraph.
The module is pure and deterministic (iteration follows the history).
"""

from __future__ import annotations

import itertools
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from shard.chaos.history import HistoryError, client_ops

__all__ = ["check", "describe"]

EXAMPLES_PER_TYPE = 3
#: Bound on start edges tried per component and search (keeps broken histories fast).
MAX_STARTS = 500
_WEAKEST = ("ww", "wr", "rt", "rw")  # label preferred when an edge has several


@dataclass(slots=True, eq=False)
class Txn:
    index: int  # position among the history's transactions
    process: Any
    type: str  # ok | info | fail
    mops: list[list[Any]]
    invoke_time: int
    complete_time: int | None = None
    history_index: int = -1
    #: key -> appended values in order
    appends: dict[Any, list[Any]] = field(default_factory=dict)
    #: key -> external read (list), for ok txns
    reads: dict[Any, list[Any]] = field(default_factory=dict)

    def name(self) -> str:
        return f"T{self.index}"

    def brief(self) -> dict[str, Any]:
        return {
            "txn": self.name(),
            "process": self.process,
            "type": self.type,
            "history_index": self.history_index,
            "value": self.mops,
        }


def _transactions(history: Iterable[dict[str, Any]]) -> list[Txn]:
    open_: dict[Any, Txn] = {}
    txns: list[Txn] = []
    for op in client_ops(history):
        if op.get("f") not in (None, "txn"):
            continue
        process = op["process"]
        if op["type"] == "invoke":
            if process in open_:
                raise HistoryError(f"process {process} invoked twice without completing")
            txn = Txn(len(txns), process, "info", [list(m) for m in op["value"]], op["time"])
            txn.history_index = op.get("index", -1)
            open_[process] = txn
            txns.append(txn)
            continue
        txn_or_none = open_.pop(process, None)
        if txn_or_none is None:
            raise HistoryError(f"completion without invocation: {op}")
        txn_or_none.type = op["type"]
        if op["type"] == "ok":
            txn_or_none.mops = [list(m) for m in op["value"]]
            txn_or_none.complete_time = op["time"]
    for txn in txns:
        for mop in txn.mops:
            if mop[0] == "append":
                txn.appends.setdefault(mop[1], []).append(mop[2])
    return txns


class _Report:
    def __init__(self) -> None:
        self.anomalies: dict[str, list[Any]] = {}
        self.counts: dict[str, int] = {}

    def add(self, kind: str, example: Any) -> None:
        self.counts[kind] = self.counts.get(kind, 0) + 1
        examples = self.anomalies.setdefault(kind, [])
        if len(examples) < EXAMPLES_PER_TYPE:
            examples.append(example)


def _external_reads(txn: Txn, report: _Report) -> None:
    """Fill txn.reads with external reads; report internal inconsistencies."""
    known: dict[Any, list[Any]] = {}  # key -> what the txn must see now
    external: dict[Any, list[Any] | None] = {}  # key -> first external read (None: unknown)
    own: dict[Any, list[Any]] = {}
    for mop in txn.mops:
        kind, key = mop[0], mop[1]
        if kind == "append":
            own.setdefault(key, []).append(mop[2])
            if key in known:
                known[key] = [*known[key], mop[2]]
            continue
        seen = list(mop[2] or [])
        if key in known:
            if seen != known[key]:
                report.add(
                    "internal",
                    {**txn.brief(), "key": key, "expected": known[key], "read": seen},
                )
            continue
        mine = own.get(key, [])
        if mine and seen[len(seen) - len(mine) :] != mine:
            report.add(
                "internal",
                {**txn.brief(), "key": key, "read": seen, "own_appends_missing": mine},
            )
            external[key] = None
            known[key] = seen
            continue
        external[key] = seen[: len(seen) - len(mine)] if mine else seen
        known[key] = seen
    txn.reads = {k: v for k, v in external.items() if v is not None}


def _version_orders(txns: Sequence[Txn], report: _Report) -> dict[Any, list[Any]]:
    """key -> the longest list read, after checking all reads are prefixes of it."""
    longest: dict[Any, list[Any]] = {}
    for txn in txns:
        if txn.type != "ok":
            continue
        for mop in txn.mops:
            if mop[0] != "r":
                continue
            key, seen = mop[1], list(mop[2] or [])
            if len(set(map(_hashable, seen))) != len(seen):
                report.add("duplicate-elements", {**txn.brief(), "key": key, "read": seen})
            have = longest.get(key)
            if have is None or len(seen) > len(have):
                longest[key] = seen
    for txn in txns:
        if txn.type != "ok":
            continue
        for mop in txn.mops:
            if mop[0] != "r":
                continue
            key, seen = mop[1], list(mop[2] or [])
            order = longest[key]
            if order[: len(seen)] != seen:
                report.add(
                    "incompatible-order",
                    {**txn.brief(), "key": key, "read": seen, "longest_read": order},
                )
    return longest


def _hashable(value: Any) -> Any:
    return tuple(value) if isinstance(value, list) else value


class _Graph:
    def __init__(self) -> None:
        self.out: dict[int, dict[int, dict[str, str]]] = {}

    def add(self, a: Txn, b: Txn, label: str, why: str) -> None:
        if a is b:
            return
        edges = self.out.setdefault(a.index, {}).setdefault(b.index, {})
        edges.setdefault(label, why)

    def count(self) -> dict[str, int]:
        counts = dict.fromkeys(_WEAKEST, 0)
        for targets in self.out.values():
            for labels in targets.values():
                for label in labels:
                    counts[label] += 1
        return counts


def _build(
    txns: Sequence[Txn], orders: dict[Any, list[Any]], realtime: bool, report: _Report
) -> tuple[_Graph, set[int]]:
    writer: dict[tuple[Any, Any], Txn] = {}
    for txn in txns:
        for key, values in txn.appends.items():
            for v in values:
                other = writer.get((key, _hashable(v)))
                if other is not None and other is not txn:
                    report.add(
                        "duplicate-appends",
                        {"key": key, "value": v, "txns": [other.brief(), txn.brief()]},
                    )
                writer[(key, _hashable(v))] = txn
    graph = _Graph()
    nodes = {t.index for t in txns if t.type == "ok"}
    # Reads: garbage, G1a, G1b, and which info txns were observed.
    for txn in txns:
        if txn.type != "ok":
            continue
        for key, seen in txn.reads.items():
            for v in seen:
                w = writer.get((key, _hashable(v)))
                if w is None:
                    report.add("garbage", {**txn.brief(), "key": key, "value": v})
                elif w.type == "fail":
                    report.add(
                        "G1a", {"reader": txn.brief(), "writer": w.brief(), "key": key, "value": v}
                    )
                elif w.type == "info":
                    nodes.add(w.index)
            if seen:
                w = writer.get((key, _hashable(seen[-1])))
                if w is not None and w is not txn and w.appends[key][-1] != seen[-1]:
                    report.add(
                        "G1b",
                        {
                            "reader": txn.brief(),
                            "writer": w.brief(),
                            "key": key,
                            "read": seen,
                            "writer_appends": w.appends[key],
                        },
                    )
    # ww and rw/wr from the version orders.
    for key, order in orders.items():
        for prev, nxt in itertools.pairwise(order):
            a = writer.get((key, _hashable(prev)))
            b = writer.get((key, _hashable(nxt)))
            if a is not None and b is not None and a.index in nodes and b.index in nodes:
                graph.add(a, b, "ww", f"{key}: {b.name()} appended {nxt!r} after {prev!r}")
    for txn in txns:
        if txn.type != "ok":
            continue
        for key, seen in txn.reads.items():
            order = orders.get(key, [])
            if seen:
                w = writer.get((key, _hashable(seen[-1])))
                if w is not None and w.index in nodes:
                    graph.add(w, txn, "wr", f"{key}: {txn.name()} read {seen[-1]!r} last")
            if order[: len(seen)] == seen and len(order) > len(seen):
                nxt = order[len(seen)]
                w = writer.get((key, _hashable(nxt)))
                if w is not None and w.index in nodes:
                    graph.add(
                        txn,
                        w,
                        "rw",
                        f"{key}: {txn.name()} read {len(seen)} elements, "
                        f"{w.name()} appended the next, {nxt!r}",
                    )
    if realtime:
        _realtime_edges(txns, nodes, graph)
    return graph, nodes


def _realtime_edges(txns: Sequence[Txn], nodes: set[int], graph: _Graph) -> None:
    """Sparse real-time order: events in time order; an invoked txn gets an edge from each
    member of the frontier; a completed txn joins the frontier and evicts the members that
    completed before it was invoked (they reach later txns through it)."""
    events: list[tuple[int, int, Txn]] = []
    for t in txns:
        if t.index not in nodes:
            continue
        events.append((t.invoke_time, 1, t))
        if t.complete_time is not None:
            events.append((t.complete_time, 0, t))
    # At equal times, invokes first: equal times count as concurrent (lenient).
    events.sort(key=lambda e: (e[0], -e[1], e[2].index))
    frontier: list[Txn] = []
    for _time, kind, t in events:
        if kind == 1:
            for f in frontier:
                graph.add(f, t, "rt", f"{f.name()} completed before {t.name()} was invoked")
        else:
            frontier = [
                f for f in frontier if f.complete_time is None or f.complete_time >= t.invoke_time
            ]
            frontier.append(t)


def _sccs(graph: _Graph, nodes: Iterable[int]) -> list[list[int]]:
    """Tarjan's algorithm, iterative; components of more than one node."""
    index: dict[int, int] = {}
    low: dict[int, int] = {}
    on_stack: set[int] = set()
    stack: list[int] = []
    out: list[list[int]] = []
    counter = 0
    for root in nodes:
        if root in index:
            continue
        work = [(root, iter(graph.out.get(root, {})))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            v, it = work[-1]
            advanced = False
            for w in it:
                if w not in index:
                    index[w] = low[w] = counter
                    counter += 1
                    stack.append(w)
                    on_stack.add(w)
                    work.append((w, iter(graph.out.get(w, {}))))
                    advanced = True
                    break
                if w in on_stack:
                    low[v] = min(low[v], index[w])
            if advanced:
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[v])
            if low[v] == index[v]:
                comp = []
                while True:
                    w = stack.pop()
                    on_stack.discard(w)
                    comp.append(w)
                    if w == v:
                        break
                if len(comp) > 1:
                    out.append(sorted(comp))
    return out


def _path(
    graph: _Graph, src: int, dst: int, allowed: frozenset[str], members: set[int], max_rw: int
) -> list[tuple[int, str, int]] | None:
    """Fewest-rw path src -> dst inside `members` over `allowed` labels (0-1 BFS, rw costs
    1), with at most max_rw rw edges; as (from, label, to) steps."""
    best: dict[int, int] = {src: 0}
    back: dict[int, tuple[int, str]] = {}
    queue: deque[tuple[int, int]] = deque([(0, src)])
    while queue:
        cost, v = queue.popleft()
        if cost > best.get(v, max_rw + 1):
            continue
        if v == dst and v != src:
            break
        for w, labels in graph.out.get(v, {}).items():
            if w not in members:
                continue
            usable = [lab for lab in _WEAKEST if lab in labels and lab in allowed]
            if not usable:
                continue
            label = usable[0]
            step = 1 if label == "rw" else 0
            c = cost + step
            if c > max_rw or c >= best.get(w, max_rw + 1):
                continue
            best[w] = c
            back[w] = (v, label)
            if step:
                queue.append((c, w))
            else:
                queue.appendleft((c, w))
    if dst not in back:
        return None
    steps = []
    v = dst
    while v != src:
        u, label = back[v]
        steps.append((u, label, v))
        v = u
    steps.reverse()
    return steps


def _classify(labels: Sequence[str]) -> str:
    rw = labels.count("rw")
    if rw == 1:
        name = "G-single"
    elif rw > 1:
        name = "G2"
    elif "wr" in labels:
        name = "G1c"
    else:
        name = "G0"
    return name + ("-realtime" if "rt" in labels else "")


# (label of the first edge, labels allowed for the way back, max rw on the way back)
_SEARCHES: tuple[tuple[str, frozenset[str], int], ...] = (
    ("ww", frozenset({"ww"}), 0),
    ("wr", frozenset({"ww", "wr"}), 0),
    ("rw", frozenset({"ww", "wr", "rw"}), 10**9),
    ("rt", frozenset({"ww", "rt"}), 0),
    ("rt", frozenset({"ww", "wr", "rt"}), 0),
    ("rt", frozenset({"ww", "wr", "rt", "rw"}), 10**9),
)


def _cycle_in(graph: _Graph, comp: list[int]) -> list[tuple[int, str, int]] | None:
    """The weakest cycle found in one component: first by search stage, then fewest rw."""
    members = set(comp)
    for first, allowed, max_rw in _SEARCHES:
        best: list[tuple[int, str, int]] | None = None
        starts = 0
        for a in comp:
            for b, labels in graph.out.get(a, {}).items():
                if b not in members or first not in labels:
                    continue
                starts += 1
                if starts > MAX_STARTS:
                    break
                back = _path(graph, b, a, allowed, members, max_rw)
                if back is None:
                    continue
                cycle = [(a, first, b), *back]
                rw = sum(1 for _, lab, _ in cycle if lab == "rw")
                if best is None or rw < sum(1 for _, lab, _ in best if lab == "rw"):
                    best = cycle
                if rw <= 1:
                    return best
            if starts > MAX_STARTS:
                break
        if best is not None:
            return best
    return None


def _explain_cycle(
    graph: _Graph, txns: Sequence[Txn], cycle: list[tuple[int, str, int]]
) -> dict[str, Any]:
    return {
        "cycle": [
            {
                "from": txns[a].brief(),
                "edge": label,
                "to": txns[b].name(),
                "why": graph.out[a][b][label],
            }
            for a, label, b in cycle
        ],
        "summary": " -> ".join(
            [f"{txns[a].name()} -{label}->" for a, label, _ in cycle] + [txns[cycle[0][0]].name()]
        ),
    }


def check(history: Iterable[dict[str, Any]], *, realtime: bool = True) -> dict[str, Any]:
    """Check a list-append history; see the module doc for the result."""
    txns = _transactions(history)
    report = _Report()
    for txn in txns:
        if txn.type == "ok":
            _external_reads(txn, report)
    orders = _version_orders(txns, report)
    graph, nodes = _build(txns, orders, realtime, report)
    for comp in _sccs(graph, sorted(nodes)):
        cycle = _cycle_in(graph, comp)
        if cycle is None:  # cannot happen: a component has a cycle; be safe
            report.add("cycle", {"component": [txns[i].name() for i in comp[:20]]})
            continue
        kind = _classify([label for _, label, _ in cycle])
        report.add(kind, {"component_size": len(comp), **_explain_cycle(graph, txns, cycle)})
    by_type: dict[str, int] = {}
    for t in txns:
        by_type[t.type] = by_type.get(t.type, 0) + 1
    return {
        "valid": not report.anomalies,
        "anomaly_types": sorted(report.anomalies),
        "anomaly_counts": report.counts,
        "anomalies": report.anomalies,
        "txns": len(txns),
        "txn_types": by_type,
        "nodes": len(nodes),
        "edges": graph.count(),
        "keys": len(orders),
    }


def describe(result: dict[str, Any]) -> str:
    """One paragraph for an assertion message or a summary line."""
    if result["valid"]:
        return (
            f"list-append: {result['txns']} transactions over {result['keys']} keys, "
            f"no anomalies ({result['edges']})"
        )
    parts = []
    for kind in result["anomaly_types"]:
        example = result["anomalies"][kind][0]
        text = example.get("summary") if isinstance(example, dict) else None
        parts.append(f"{kind} x{result['anomaly_counts'][kind]}" + (f" ({text})" if text else ""))
    return "list-append ANOMALIES: " + "; ".join(parts)
