"""Hand-made Jepsen-convention histories for the chaos checkers' tests.

`Hist` writes records with explicit times (ns), so each test states the real-time order it
means: `h.op(p, "write", 1, t0, t1)` is one operation from invoke at t0 to ok at t1.
"""

from __future__ import annotations

from typing import Any


class Hist:
    def __init__(self) -> None:
        self.ops: list[dict[str, Any]] = []

    def _add(self, op: dict[str, Any]) -> dict[str, Any]:
        op["index"] = len(self.ops)
        self.ops.append(op)
        return op

    def invoke(self, process: int, f: str, value: Any, t: int, **fields: Any) -> None:
        self._add(
            {"type": "invoke", "process": process, "f": f, "value": value, "time": t, **fields}
        )

    def done(self, process: int, kind: str, f: str, value: Any, t: int, **fields: Any) -> None:
        self._add({"type": kind, "process": process, "f": f, "value": value, "time": t, **fields})

    def op(
        self,
        process: int,
        f: str,
        value: Any,
        start: int,
        end: int | None,
        kind: str = "ok",
        *,
        result: Any = "same",
        **fields: Any,
    ) -> None:
        """Invoke at `start`, complete with `kind` at `end` (None: never completed).

        The completion's value is `value` unless `result` says otherwise. Records are kept
        sorted by time at the end (`sorted_ops`).
        """
        self.invoke(process, f, value, start, **fields)
        if end is not None:
            self.done(process, kind, f, value if result == "same" else result, end, **fields)

    def sorted_ops(self) -> list[dict[str, Any]]:
        ops = sorted(self.ops, key=lambda o: (o["time"], o["index"]))
        for i, op in enumerate(ops):
            op["index"] = i
        return ops
