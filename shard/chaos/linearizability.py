"""A linearizability checker for read/write/cas registers, after Wing & Gong, Lowe, and
Porcupine (anishathalye/porcupine): search for a legal order consistent with real time.

Theory of operation
-------------------
The history is split per key (P-compositionality: a history of independent registers is
linearizable iff each key's sub-history is). For one key:

1. Pair invocations with completions. ``fail`` operations never happened and are dropped;
   so are reads that did not complete ``ok`` (they observed nothing). An ``ok`` operation
   took effect at one instant between its invoke and its completion.
2. An ``info`` write or cas (or one never completed) may take effect at any instant after
   its invoke, or never. Left like that, every such op stays "open" forever and the search
   space explodes, so we bound them. Written values are unique per key (the workload ensures
   it; we check), so the only way an info write of v can matter is that someone observes v:
   an ``ok`` read of v or a cas expecting v. It must then take effect before the earliest
   such observer is linearized, so before that observer's completion (or, if the observer
   is an info cas, before that cas's own bound). We compute these bounds as a fixpoint and
   give each observed info op that bound as its completion time. An info op nobody observes
   (bound infinite) can never be needed: we drop it ("never happened" is always allowed).
   When values are not unique we do not bound, and keep such ops open until the end.
3. The ops are cut into segments at quiescent instants (no op in flight). A segment maps a
   set of possible register values at its start to the set at its end; we explore it
   depth-first over (set of linearized ops, register value), memoised as in Lowe's
   just-in-time linearization: an op may go next iff it was invoked before every
   not-yet-linearized op completed. A segment with no complete linearization from any
   starting value is a violation; the report names the deepest point the search reached
   and the operations it could not place there.

Ties: records come from one clock with nanosecond resolution; when an invoke and a
completion have the same time we treat the ops as concurrent (the lenient choice).

Model: the register starts absent (None). ``write v`` sets it; ``read v`` requires it to be
v; ``cas [e, n]`` requires e and sets n. A cas whose condition did not hold is recorded as
``fail`` by the workload and carries no constraint here.

`check(history)` returns a dict: ``valid`` (True, False or "unknown" when a segment's search
exceeds the state budget), ``keys`` per-key results, ``anomalies`` (one entry per failing
key with an explanation) and counts.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from shard.chaos.history import HistoryError, client_ops

__all__ = ["RegisterOp", "check", "check_key", "describe"]

INF = math.inf
DEFAULT_STATE_BUDGET = 2_000_000
_ABSENT = ("absent",)  # the register's initial state, distinct from any value


@dataclass(slots=True)
class RegisterOp:
    """One operation on one key, as the checker sees it."""

    id: int
    f: str  # "read" | "write" | "cas"
    value: Any  # read: observed value; write: written value; cas: (expected, new)
    call: float
    ret: float  # INF when it may take effect any time after `call`
    type: str  # "ok" | "info"
    index: int  # index of the invoke record in the history
    process: Any

    def describe(self) -> str:
        ret = "∞" if self.ret == INF else f"{self.ret / 1e9:.6f}s"
        return (
            f"{self.type} {self.f} {self.value!r} by process {self.process} "
            f"[{self.call / 1e9:.6f}s, {ret}] (history index {self.index})"
        )


def _freeze(value: Any) -> Any:
    if isinstance(value, list):
        return tuple(_freeze(v) for v in value)
    return value


def _key_ops(history: Iterable[dict[str, Any]]) -> dict[Any, list[RegisterOp]]:
    """Per-key RegisterOps from a history (fail ops and non-ok reads dropped)."""
    open_: dict[Any, dict[str, Any]] = {}
    out: dict[Any, list[RegisterOp]] = {}
    finished: list[tuple[dict[str, Any], dict[str, Any] | None]] = []
    for op in client_ops(history):
        if op.get("f") not in ("read", "write", "cas"):
            continue
        process = op["process"]
        if op["type"] == "invoke":
            if process in open_:
                raise HistoryError(f"process {process} invoked twice without completing")
            open_[process] = op
        else:
            inv = open_.pop(process, None)
            if inv is None:
                raise HistoryError(f"completion without invocation: {op}")
            finished.append((inv, op))
    finished.extend((inv, None) for inv in open_.values())
    finished.sort(key=lambda pair: pair[0]["time"])
    for n, (inv, done) in enumerate(finished):
        kind = "info" if done is None else done["type"]
        f = inv["f"]
        if kind == "fail":
            if f != "cas" or not isinstance(done, dict) or not _observed(done):
                continue
            # A compare that did not hold read the register: check what it saw (a failed
            # cas whose condition did hold passed unseen, found by review).
            f, kind = "read", "ok"
            done = {**done, "value": done["value"]["current"]}
        if f == "read":
            if kind != "ok":
                continue
            assert done is not None
            value = _freeze(done.get("value"))
        elif f == "write":
            value = _freeze(inv.get("value"))
        else:
            expected, new = inv["value"]
            value = (_freeze(expected), _freeze(new))
        ret = INF if kind == "info" or done is None else float(done["time"])
        out.setdefault(inv.get("key"), []).append(
            RegisterOp(n, f, value, float(inv["time"]), ret, kind, inv["index"], inv["process"])
        )
    return out


def _observed(done: dict[str, Any]) -> bool:
    value = done.get("value")
    return isinstance(value, dict) and "current" in value


def _written(op: RegisterOp) -> Any:
    return op.value if op.f == "write" else op.value[1]


def _bound_info_ops(ops: list[RegisterOp]) -> tuple[list[RegisterOp], int, bool]:
    """Step 2 of the module doc. Returns (ops kept, info ops dropped, values unique)."""
    writers: dict[Any, list[RegisterOp]] = {}
    for op in ops:
        if op.f != "read":
            writers.setdefault(_written(op), []).append(op)
    unique = all(len(w) == 1 for w in writers.values())
    if not unique:
        return ops, 0, False
    observers: dict[Any, list[RegisterOp]] = {}
    for op in ops:
        if op.f == "read":
            observers.setdefault(op.value, []).append(op)
        elif op.f == "cas":
            observers.setdefault(op.value[0], []).append(op)
    bound = {op.id: op.ret for op in ops}
    changed = True
    while changed:  # relax to a fixpoint; bounds only decrease
        changed = False
        for op in ops:
            if op.type != "info" or op.f == "read":
                continue
            best = min((bound[o.id] for o in observers.get(_written(op), ())), default=INF)
            if best < bound[op.id]:
                bound[op.id] = best
                changed = True
    kept: list[RegisterOp] = []
    dropped = 0
    for op in ops:
        if op.type == "info":
            if bound[op.id] == INF or bound[op.id] <= op.call:
                # Unobserved: never needed. Bound before its own invoke: it cannot be what
                # was observed, so the observers fail without it either way.
                dropped += 1
                continue
            op = RegisterOp(
                op.id, op.f, op.value, op.call, bound[op.id], op.type, op.index, op.process
            )
        kept.append(op)
    return kept, dropped, True


def _step(op: RegisterOp, state: Any) -> tuple[bool, Any]:
    if op.f == "read":
        value = _ABSENT if op.value is None else op.value
        return value == state, state
    if op.f == "write":
        return True, op.value
    expected, new = op.value
    return (_ABSENT if expected is None else expected) == state, new


def _segments(ops: list[RegisterOp]) -> list[list[RegisterOp]]:
    """Cut at instants with no op in flight (ops sorted by call time)."""
    segments: list[list[RegisterOp]] = []
    current: list[RegisterOp] = []
    horizon = -INF
    for op in sorted(ops, key=lambda o: (o.call, o.id)):
        if current and op.call > horizon:
            segments.append(current)
            current = []
            horizon = -INF
        current.append(op)
        horizon = max(horizon, op.ret)
    if current:
        segments.append(current)
    return segments


@dataclass(slots=True)
class _SegmentResult:
    finals: set[Any]
    explored: int
    exhausted: bool  # the state budget ran out
    deepest: tuple[int, Any] | None  # (mask, state) reaching the most linearized ops


def _explore(seg: Sequence[RegisterOp], starts: Iterable[Any], budget: int) -> _SegmentResult:
    n = len(seg)
    full = (1 << n) - 1
    calls = [op.call for op in seg]
    rets = [op.ret for op in seg]
    finals: set[Any] = set()
    seen: set[tuple[int, Any]] = set()
    stack = [(0, s) for s in starts]
    deepest: tuple[int, Any] | None = None
    deepest_count = -1
    explored = 0
    while stack:
        mask, state = stack.pop()
        if (mask, state) in seen:
            continue
        seen.add((mask, state))
        explored += 1
        if explored > budget:
            return _SegmentResult(finals, explored, True, deepest)
        if mask == full:
            finals.add(state)
            continue
        count = mask.bit_count()
        if count > deepest_count:
            deepest_count, deepest = count, (mask, state)
        min_ret = min(rets[i] for i in range(n) if not mask >> i & 1)
        for i in range(n):
            if mask >> i & 1 or calls[i] > min_ret:
                continue
            ok, after = _step(seg[i], state)
            if ok and (mask | 1 << i, after) not in seen:
                stack.append((mask | 1 << i, after))
    return _SegmentResult(finals, explored, False, deepest)


def _show_state(state: Any) -> str:
    return "absent" if state == _ABSENT else repr(state)


def check_key(
    key: Any, ops: list[RegisterOp], *, budget: int = DEFAULT_STATE_BUDGET
) -> dict[str, Any]:
    """Check one key's operations; see the module doc for the result's fields."""
    kept, dropped, unique = _bound_info_ops(ops)
    states: set[Any] = {_ABSENT}
    explored = 0
    segments = _segments(kept)
    for seg in segments:
        result = _explore(seg, states, budget)
        explored += result.explored
        if result.exhausted:
            return {
                "key": key,
                "valid": "unknown",
                "ops": len(ops),
                "info_dropped": dropped,
                "unique_values": unique,
                "explored": explored,
                "error": f"search budget of {budget} states exhausted in a segment of "
                f"{len(seg)} concurrent operations",
            }
        if not result.finals:
            return {
                "key": key,
                "valid": False,
                "ops": len(ops),
                "info_dropped": dropped,
                "unique_values": unique,
                "explored": explored,
                "error": _explain(key, seg, states, result),
            }
        states = result.finals
    return {
        "key": key,
        "valid": True,
        "ops": len(ops),
        "info_dropped": dropped,
        "unique_values": unique,
        "segments": len(segments),
        "explored": explored,
        "final_values": sorted(_show_state(s) for s in states),
    }


def _explain(
    key: Any, seg: Sequence[RegisterOp], starts: set[Any], result: _SegmentResult
) -> dict[str, Any]:
    mask, state = result.deepest if result.deepest is not None else (0, next(iter(starts)))
    done = [seg[i] for i in range(len(seg)) if mask >> i & 1]
    rest = [seg[i] for i in range(len(seg)) if not mask >> i & 1]
    min_ret = min(op.ret for op in rest)
    blocked = [op for op in rest if op.ret == min_ret]
    return {
        "summary": (
            f"key {key!r}: no linearization of a segment of {len(seg)} operations; the "
            f"deepest search linearized {len(done)} of them leaving the register "
            f"{_show_state(state)}, and then {blocked[0].describe()} must take effect but "
            f"cannot from that value"
        ),
        "start_values": sorted(_show_state(s) for s in starts),
        "linearized": [op.describe() for op in done][-10:],
        "not_linearizable_next": [op.describe() for op in rest][:10],
    }


def check(
    history: Iterable[dict[str, Any]], *, budget: int = DEFAULT_STATE_BUDGET
) -> dict[str, Any]:
    """Check every key of a register history; returns valid / keys / anomalies / counts."""
    per_key = _key_ops(history)
    results = {str(k): check_key(k, ops, budget=budget) for k, ops in sorted(per_key.items())}
    anomalies = [
        {
            "type": "nonlinearizable",
            "key": k,
            **(r["error"] if isinstance(r["error"], dict) else {}),
        }
        for k, r in results.items()
        if r["valid"] is False
    ]
    unknown = [k for k, r in results.items() if r["valid"] == "unknown"]
    valid: bool | str = True
    if anomalies:
        valid = False
    elif unknown:
        valid = "unknown"
    return {
        "valid": valid,
        "keys": results,
        "anomalies": anomalies,
        "unknown_keys": unknown,
        "ops": sum(r["ops"] for r in results.values()),
    }


def describe(result: dict[str, Any]) -> str:
    """One paragraph for an assertion message or a summary line."""
    if result["valid"] is True:
        return f"linearizable: {len(result['keys'])} keys, {result['ops']} operations"
    if result["valid"] == "unknown":
        return f"linearizability unknown for keys {result['unknown_keys']} (search budget)"
    return "NOT linearizable: " + "; ".join(a["summary"] for a in result["anomalies"])
