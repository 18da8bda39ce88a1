"""An Elle-style checker for list-append histories (Kingsbury & Alvaro, VLDB 2020).

Theory of operation
-------------------
A history is a list of Jepsen-like operations in the order they happened::

    {"process": 3, "type": "invoke", "value": [["append", "x", 1], ["r", "y", None]], "time": t}
    {"process": 3, "type": "ok",     "value": [["append", "x", 1], ["r", "y", [4, 7]]], ...}

Each process runs one transaction at a time: an ``invoke`` is completed by the process's next
``ok`` (committed, reads filled in), ``fail`` (surely did not happen) or ``info`` (unknown:
it may have committed; it has no completion time). An invoke left open is ``info``.

Because every append writes a value unique per key and a read returns the whole list, the
history itself reveals the version order of each key: the longest list read is the order,
and every other read must be a prefix of it. From that order:

- ww: T1 -> T2 when T2's append to k directly follows T1's version of k;
- wr: T1 -> T2 when T2 read the version of k that T1 installed (T1's last append ends it);
- rw: T1 -> T2 when T1 read the version of k that T2's append directly followed;
- rt (with `realtime=True`): T1 -> T2 when T1 completed before T2 was invoked (kept sparse,
  as Elle does: the edges come from the "frontier" of completed transactions).

The order of a key knows only the appends some read observed: an append nobody read has no
place in it (nor any edge through it), so a history should end with a final read of every
key, as Jepsen's tests do (the simulator's final reader does).

Nodes are the ok transactions and the info transactions whose appends someone read.
Anomalies reported (Adya's names, as Elle uses them):

- ``G0`` write cycle (ww only); ``G1c`` cycle of ww/wr with a wr; ``G-single`` cycle with
  exactly one rw; ``G2`` cycle with two or more rw edges; with `realtime`, the same names
  suffixed ``-realtime`` for cycles that need an rt edge (strict serializability);
- ``G1a`` aborted read (a read saw an append of a failed transaction); ``G1b`` intermediate
  read (a read saw a transaction's append to k that was not its last one);
- ``internal`` (a transaction's read disagrees with its own earlier reads and appends),
  ``incompatible-order`` (two reads of a key that are not prefixes of one another: a lost or
  reordered append), ``duplicate-elements``, ``garbage`` (a read value nobody appended),
  ``duplicate-appends`` (the same value appended twice to a key: the history is unusable).

Each anomaly comes with an example (a cycle as its edges, or the offending reads).
`check(history, realtime=...)` returns ``{"valid", "anomaly_types", "anomalies", "txns"}``;
`describe(report)` is a one-paragraph summary for an assertion message.

The module is pure (no I/O, no randomness) and deterministic: iteration follows the history.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = ["check", "describe"]

EXAMPLES_PER_TYPE = 3
#: Bound on start edges tried per cycle search (keeps a badly broken history fast to check).
MAX_STARTS = 2000
# Preference when an edge has several types: the weakest dependency names the cycle.
_LABEL_ORDER = ("ww", "wr", "rt", "rw")


@dataclass(slots=True, eq=False)
class _Txn:
    index: int
    process: Any
    type: str
    value: list[Any]
    invoke_pos: int
    complete_pos: int | None = None
    #: key -> this txn's appends to it, in order.
    appends: dict[Any, list[Any]] = field(default_factory=dict)
    #: (key, external part of the list read) for each read.
    reads: list[tuple[Any, list[Any]]] = field(default_factory=list)

    def name(self) -> str:
        return f"T{self.index}(p{self.process},{self.type})"


def _pair(history: Sequence[dict[str, Any]]) -> list[_Txn]:
    """Match invocations with completions, per process."""
    open_: dict[Any, _Txn] = {}
    txns: list[_Txn] = []
    for pos, op in enumerate(history):
        kind = op["type"]
        process = op["process"]
        if kind == "invoke":
            if process in open_:
                raise ValueError(f"process {process} invoked twice without completing (op {pos})")
            txn = _Txn(len(txns), process, "info", list(op["value"]), pos)
            open_[process] = txn
            txns.append(txn)
        elif kind in ("ok", "fail", "info"):
            txn_or_none = open_.pop(process, None)
            if txn_or_none is None:
                raise ValueError(f"completion without invocation for process {process} (op {pos})")
            txn_or_none.type = kind
            if kind == "ok":
                txn_or_none.value = list(op["value"])
                txn_or_none.complete_pos = pos
        else:
            raise ValueError(f"unknown op type {kind!r} at {pos}")
    return txns


class _Report:
    def __init__(self) -> None:
        self.anomalies: dict[str, list[Any]] = {}

    def add(self, kind: str, example: Any) -> None:
        examples = self.anomalies.setdefault(kind, [])
        if len(examples) < EXAMPLES_PER_TYPE:
            examples.append(example)

    def has(self, kind: str) -> bool:
        return kind in self.anomalies


def _internal(txn: _Txn, report: _Report) -> None:
    """Check the txn's reads against its own earlier reads and appends; record reads."""
    known: dict[Any, list[Any] | None] = {}
    pending: dict[Any, list[Any]] = {}
    for mop in txn.value:
        f, key, v = mop[0], mop[1], mop[2]
        if f == "append":
            txn.appends.setdefault(key, []).append(v)
            state = known.get(key)
            if state is not None:
                state.append(v)
            else:
                pending.setdefault(key, []).append(v)
        elif f == "r":
            if txn.type != "ok":
                continue
            seen = list(v or [])
            own = pending.get(key, [])
            state = known.get(key)
            if state is not None and seen != state:
                report.add(
                    "internal",
                    {"txn": txn.name(), "key": key, "expected": list(state), "read": seen},
                )
            elif state is None and own and seen[len(seen) - len(own) :] != own:
                report.add(
                    "internal",
                    {"txn": txn.name(), "key": key, "own_appends": list(own), "read": seen},
                )
            # The external part: what the txn saw of others (its own appends stripped).
            mine = txn.appends.get(key, [])
            external = seen
            if mine and seen[len(seen) - len(mine) :] == mine:
                external = seen[: len(seen) - len(mine)]
            elif own and seen[len(seen) - len(own) :] == own:
                external = seen[: len(seen) - len(own)]
            txn.reads.append((key, external))
            known[key] = list(seen)
            pending.pop(key, None)
        else:
            raise ValueError(f"unknown micro-op {mop!r} in {txn.name()}")


class _Graph:
    def __init__(self) -> None:
        self.out: dict[int, dict[int, set[str]]] = {}
        self.why: dict[tuple[int, int, str], Any] = {}

    def add(self, a: int, b: int, kind: str, why: Any) -> None:
        if a == b:
            return
        kinds = self.out.setdefault(a, {}).setdefault(b, set())
        if kind not in kinds:
            kinds.add(kind)
            self.why[(a, b, kind)] = why
        self.out.setdefault(b, {})

    def edges(self, kinds: Iterable[str]) -> list[tuple[int, int]]:
        wanted = set(kinds)
        return [(a, b) for a, outs in self.out.items() for b, ks in outs.items() if ks & wanted]


def _sccs(graph: _Graph) -> dict[int, int]:
    """Tarjan's strongly connected components (iterative): node -> component id."""
    index: dict[int, int] = {}
    low: dict[int, int] = {}
    on_stack: set[int] = set()
    stack: list[int] = []
    comp: dict[int, int] = {}
    counter = 0
    n_comp = 0
    for root in graph.out:
        if root in index:
            continue
        work: list[tuple[int, Any]] = [(root, iter(graph.out[root]))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, it = work[-1]
            advanced = False
            for nxt in it:
                if nxt not in index:
                    index[nxt] = low[nxt] = counter
                    counter += 1
                    stack.append(nxt)
                    on_stack.add(nxt)
                    work.append((nxt, iter(graph.out[nxt])))
                    advanced = True
                    break
                if nxt in on_stack:
                    low[node] = min(low[node], index[nxt])
            if advanced:
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    comp[member] = n_comp
                    if member == node:
                        break
                n_comp += 1
    return comp


def _path(
    graph: _Graph, src: int, dst: int, allowed: frozenset[str], comp: dict[int, int]
) -> list[tuple[int, int, str]] | None:
    """Shortest path src -> dst inside one component using `allowed` edge types."""
    target_comp = comp[dst]
    prev: dict[int, tuple[int, str]] = {}
    seen = {src}
    queue = deque([src])
    while queue:
        node = queue.popleft()
        if node == dst:
            steps: list[tuple[int, int, str]] = []
            while node != src:
                p, label = prev[node]
                steps.append((p, node, label))
                node = p
            steps.reverse()
            return steps
        for nxt, kinds in graph.out[node].items():
            if nxt in seen or comp.get(nxt) != target_comp:
                continue
            usable = kinds & allowed
            if not usable:
                continue
            label = next(k for k in _LABEL_ORDER if k in usable)
            seen.add(nxt)
            prev[nxt] = (node, label)
            queue.append(nxt)
    return None


def _classify(cycle: list[tuple[int, int, str]]) -> str:
    labels = [label for _a, _b, label in cycle]
    rw = labels.count("rw")
    if rw == 0:
        name = "G1c" if "wr" in labels else "G0"
    elif rw == 1:
        name = "G-single"
    else:
        name = "G2"
    return name + ("-realtime" if "rt" in labels else "")


# (start edge types, path edge types), searched in this order.
_SEARCHES: tuple[tuple[frozenset[str], frozenset[str]], ...] = (
    (frozenset({"ww"}), frozenset({"ww"})),
    (frozenset({"wr"}), frozenset({"ww", "wr"})),
    (frozenset({"rw"}), frozenset({"ww", "wr"})),
    (frozenset({"rw"}), frozenset({"ww", "wr", "rw"})),
)
_RT_SEARCHES: tuple[tuple[frozenset[str], frozenset[str]], ...] = (
    (frozenset({"rt"}), frozenset({"ww", "rt"})),
    (frozenset({"rt"}), frozenset({"ww", "wr", "rt"})),
    (frozenset({"rw"}), frozenset({"ww", "wr", "rt"})),
    (frozenset({"rt"}), frozenset({"ww", "wr", "rt", "rw"})),
)


def _cycles(graph: _Graph, txns: list[_Txn], realtime: bool, report: _Report) -> None:
    comp = _sccs(graph)
    sizes: dict[int, int] = {}
    for c in comp.values():
        sizes[c] = sizes.get(c, 0) + 1
    if all(size == 1 for size in sizes.values()):
        return
    searches = _SEARCHES + (_RT_SEARCHES if realtime else ())
    for start_kinds, path_kinds in searches:
        starts = 0
        for a, b in graph.edges(start_kinds):
            if comp[a] != comp[b]:
                continue
            starts += 1
            if starts > MAX_STARTS:
                break
            start_label = next(k for k in _LABEL_ORDER if k in graph.out[a][b] & start_kinds)
            rest = _path(graph, b, a, path_kinds, comp)
            if rest is None:
                continue
            cycle = [(a, b, start_label), *rest]
            name = _classify(cycle)
            if name.endswith("-realtime") and not realtime:
                continue
            if len(report.anomalies.get(name, [])) >= EXAMPLES_PER_TYPE:
                continue
            report.add(name, _explain(graph, txns, cycle))


def _explain(graph: _Graph, txns: list[_Txn], cycle: list[tuple[int, int, str]]) -> list[str]:
    out = []
    for a, b, label in cycle:
        why = graph.why.get((a, b, label))
        out.append(
            f"{txns[a].name()} -{label}{'' if why is None else f'({why})'}-> {txns[b].name()}"
        )
    return out


def check(history: Sequence[dict[str, Any]], *, realtime: bool = False) -> dict[str, Any]:
    """Check a list-append history for Adya anomalies; see the module docstring."""
    report = _Report()
    txns = _pair(history)
    # Writers of every (key, value), and per-txn internal consistency.
    writer: dict[tuple[Any, Any], _Txn] = {}
    for txn in txns:
        _internal(txn, report)
        for key, values in txn.appends.items():
            for v in values:
                other = writer.get((key, v))
                if other is not None and other is not txn:
                    report.add(
                        "duplicate-appends",
                        {"key": key, "value": v, "txns": [other.name(), txn.name()]},
                    )
                writer[(key, v)] = txn
    # Version orders: the longest read of each key; every read must be a prefix of it.
    longest: dict[Any, list[Any]] = {}
    raw_reads: list[tuple[_Txn, Any, list[Any]]] = []
    for txn in txns:
        if txn.type != "ok":
            continue
        for mop in txn.value:
            if mop[0] == "r":
                seen = list(mop[2] or [])
                raw_reads.append((txn, mop[1], seen))
                if len(set(seen)) != len(seen):
                    report.add(
                        "duplicate-elements", {"txn": txn.name(), "key": mop[1], "read": seen}
                    )
                if len(seen) >= len(longest.setdefault(mop[1], [])):
                    longest[mop[1]] = seen
    for txn, key, seen in raw_reads:
        order = longest[key]
        if order[: len(seen)] != seen:
            report.add(
                "incompatible-order",
                {"key": key, "txn": txn.name(), "read": seen, "longest": order},
            )
    # A transaction's appends to a key land at once and in its order: the elements of one
    # writer must sit together in the longest read, in the order it appended them. (The
    # ww edges skip a writer's own neighbours and G1b looks at a read's last element only,
    # so a transaction's appends seen reordered passed; found by review.)
    for key, order in longest.items():
        spots: dict[int, tuple[_Txn, list[int]]] = {}
        for i, v in enumerate(order):
            w = writer.get((key, v))
            if w is not None:
                spots.setdefault(w.index, (w, []))[1].append(i)
        for w, positions in spots.values():
            seen = [order[i] for i in positions]
            if seen != w.appends[key][: len(seen)] or positions[-1] - positions[0] >= len(seen):
                report.add(
                    "append-order",
                    {"key": key, "writer": w.name(), "appended": w.appends[key], "seen": seen},
                )
    # Element checks: garbage, aborted reads, intermediate reads.
    observed: set[int] = set()
    for key, order in longest.items():
        for v in order:
            w = writer.get((key, v))
            if w is not None:
                observed.add(w.index)
    for txn in txns:
        if txn.type != "ok":
            continue
        for key, external in txn.reads:
            for v in external:
                w = writer.get((key, v))
                if w is None:
                    report.add("garbage", {"txn": txn.name(), "key": key, "value": v})
                elif w.type == "fail":
                    report.add(
                        "G1a",
                        {"reader": txn.name(), "key": key, "value": v, "writer": w.name()},
                    )
            if external:
                w = writer.get((key, external[-1]))
                if w is not None and w is not txn and w.appends[key][-1] != external[-1]:
                    report.add(
                        "G1b",
                        {
                            "reader": txn.name(),
                            "key": key,
                            "read": external,
                            "writer": w.name(),
                            "writer_appends": w.appends[key],
                        },
                    )
    # The dependency graph.
    nodes = {t.index for t in txns if t.type == "ok" or (t.type == "info" and t.index in observed)}
    graph = _Graph()
    for i in sorted(nodes):
        graph.out.setdefault(i, {})
    position: dict[Any, dict[Any, int]] = {}
    for key, order in longest.items():
        position[key] = {v: i for i, v in enumerate(order)}
        prev: _Txn | None = None
        for v in order:
            w = writer.get((key, v))
            if w is None or w.index not in nodes:
                prev = None
                continue
            if prev is not None and prev is not w:
                graph.add(prev.index, w.index, "ww", key)
            prev = w
    for txn in txns:
        if txn.index not in nodes:
            continue
        for key, external in txn.reads:
            order = longest.get(key, [])
            if order[: len(external)] != external:
                continue  # incompatible: already reported
            last_writer = writer.get((key, external[-1])) if external else None
            if last_writer is not None and last_writer.index in nodes:
                graph.add(last_writer.index, txn.index, "wr", key)
            for v in order[len(external) :]:
                w = writer.get((key, v))
                if w is None or w is last_writer:
                    continue
                if w is not txn and w.index in nodes:
                    graph.add(txn.index, w.index, "rw", key)
                break
    if realtime:
        _realtime_edges(history, txns, nodes, graph)
    _cycles(graph, txns, realtime, report)
    types = sorted(report.anomalies)
    return {
        "valid": not types,
        "anomaly_types": types,
        "anomalies": report.anomalies,
        "txns": len(txns),
    }


def _realtime_edges(
    history: Sequence[dict[str, Any]], txns: list[_Txn], nodes: set[int], graph: _Graph
) -> None:
    """T1 -rt-> T2 when T1 completed before T2 began, from Elle's frontier (sparse)."""
    by_invoke = {t.invoke_pos: t for t in txns}
    by_complete = {t.complete_pos: t for t in txns if t.complete_pos is not None}
    frontier: list[int] = []
    preds: dict[int, tuple[int, ...]] = {}
    for pos in range(len(history)):
        started = by_invoke.get(pos)
        if started is not None and started.index in nodes:
            preds[started.index] = tuple(frontier)
            for p in frontier:
                graph.add(p, started.index, "rt", None)
        ended = by_complete.get(pos)
        if ended is not None and ended.index in nodes:
            gone = set(preds.get(ended.index, ()))
            frontier = [p for p in frontier if p not in gone]
            frontier.append(ended.index)


def describe(report: dict[str, Any]) -> str:
    """A short human summary of a `check` report."""
    if report["valid"]:
        return f"valid ({report['txns']} transactions)"
    parts = []
    for kind in report["anomaly_types"]:
        example = report["anomalies"][kind][0]
        if isinstance(example, list):
            example = " ; ".join(example)
        parts.append(f"{kind}: {example}")
    return f"{len(report['anomaly_types'])} anomaly types in {report['txns']} txns: " + " | ".join(
        parts
    )
