"""A Jepsen-convention operation history, recorded as JSON lines while the run goes on.

Conventions (Kingsbury's Jepsen, `jepsen.history`)
--------------------------------------------------
Every operation is two records from the same numeric `process`: an ``invoke`` and then exactly
one completion:

- ``ok``: it happened, and the completion carries what it observed (a read's value);
- ``fail``: it surely did NOT happen. Only where the store guarantees no effect: a
  `Conflict` (nothing written), `LimitExceeded`/`InvalidArgument` (refused before applying),
  a request refused before it was sent, a compare-and-set whose condition did not hold, or
  any error of an operation that only reads;
- ``info``: unknown. Every timeout, lost connection, `OutcomeUnknown`, `CommitUnknown`,
  `Unavailable` of a write, or unexpected exception. The operation may take effect at ANY
  later time, or never; checkers must allow both (PITFALLS.md "Only fail what surely did not
  happen").

A process whose operation ended ``info`` may still have that request in flight, so it never
invokes again: the logical client (`Worker`) continues under a NEW process id (Jepsen adds
the number of workers). Each record has a `time`: nanoseconds since the history began, from
ONE monotonic client-side clock, so "A completed before B was invoked" is a real-time fact.

Nemesis events are records too (``"process": "nemesis"``, ``type`` ``info``); checkers look at
numeric processes only.

File format: one JSON object per line, flushed as it is written, so a crashed run still
leaves its history. `load` reads it back; `validate` checks the conventions above.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import IO, Any

from txn.errors import Conflict, InvalidArgument, LimitExceeded, WrongCluster

__all__ = [
    "NEMESIS",
    "History",
    "HistoryError",
    "RefusedBeforeSend",
    "Worker",
    "client_ops",
    "completion_type",
    "error_text",
    "load",
    "pairs",
    "validate",
]

Op = dict[str, Any]

NEMESIS = "nemesis"

# Errors after which the store guarantees nothing was applied.
_DEFINITELY_NOT_APPLIED: tuple[type[BaseException], ...] = (
    Conflict,
    LimitExceeded,
    InvalidArgument,
    WrongCluster,
)


class HistoryError(ValueError):
    """The history breaks the conventions (a bug in the recorder or its caller)."""


class RefusedBeforeSend(Exception):
    """The harness refused an operation before any request left (e.g. the run is over)."""


def completion_type(exc: BaseException, *, read_only: bool) -> str:
    """``fail`` when `exc` guarantees the operation had no effect, else ``info``.

    Args:
        exc: what the operation raised.
        read_only: the operation only reads, so it has no effect whatever happened.
    """
    if read_only or isinstance(exc, (*_DEFINITELY_NOT_APPLIED, RefusedBeforeSend)):
        return "fail"
    return "info"


def error_text(exc: BaseException) -> str:
    """A short, one-line description of an error for the history."""
    text = str(exc).splitlines()[0] if str(exc) else ""
    if len(text) > 200:
        text = text[:197] + "..."
    name = type(exc).__name__
    return f"{name}: {text}" if text else name


class History:
    """Records operations in memory and, when `path` is given, as JSON lines on disk.

    Single-threaded (one asyncio loop): callers need no lock. Worker processes must follow
    the invoke/complete discipline, which `invoke` and `complete` enforce at once.

    Args:
        path: the JSON-lines file to write (created or truncated), or None.
        clock: a monotonic clock in nanoseconds (default `time.monotonic_ns`).
    """

    def __init__(
        self, path: str | Path | None = None, clock: Callable[[], int] = time.monotonic_ns
    ) -> None:
        self._clock = clock
        self._t0 = clock()
        self.ops: list[Op] = []
        self._open: dict[Any, Op] = {}
        self._retired: set[Any] = set()
        self._file: IO[str] | None = None
        if path is not None:
            self._file = Path(path).open("w", encoding="utf-8")  # noqa: SIM115 (closed by close())

    def now(self) -> int:
        """Nanoseconds since the history began (the `time` field)."""
        return self._clock() - self._t0

    def _record(self, op: Op) -> Op:
        op["index"] = len(self.ops)
        self.ops.append(op)
        if self._file is not None:
            self._file.write(json.dumps(op, separators=(",", ":")) + "\n")
            self._file.flush()
        return op

    def invoke(self, process: int, f: str, value: Any, **fields: Any) -> Op:
        """Record the invocation of `f` by `process`; returns the record."""
        if process in self._open:
            raise HistoryError(f"process {process} invoked {f} while an operation is open")
        if process in self._retired:
            raise HistoryError(f"process {process} crashed (info) and may not invoke again")
        op = {"type": "invoke", "process": process, "f": f, **fields, "value": value}
        op["time"] = self.now()
        self._open[process] = op
        return self._record(op)

    def complete(self, invocation: Op, type_: str, value: Any = None, **fields: Any) -> Op:
        """Record the completion (ok/fail/info) of an open invocation."""
        if type_ not in ("ok", "fail", "info"):
            raise HistoryError(f"completion type must be ok, fail or info, not {type_!r}")
        process = invocation["process"]
        if self._open.get(process) is not invocation:
            raise HistoryError(f"process {process} has no open invocation {invocation}")
        del self._open[process]
        if type_ == "info":
            self._retired.add(process)
        op = {
            "type": type_,
            "process": process,
            "f": invocation["f"],
            **{k: v for k, v in invocation.items() if k not in _OWN_FIELDS},
            **fields,
            "value": value,
        }
        op["time"] = self.now()
        return self._record(op)

    def nemesis(self, f: str, value: Any = None, **fields: Any) -> Op:
        """Record a nemesis event (a fault started or ended)."""
        op = {"type": "info", "process": NEMESIS, "f": f, **fields, "value": value}
        op["time"] = self.now()
        return self._record(op)

    def open_invocations(self) -> list[Op]:
        return list(self._open.values())

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


_OWN_FIELDS = {"type", "process", "f", "value", "time", "index", "error"}


class Worker:
    """A logical client: its current process id, renewed after every ``info``.

    Jepsen's convention: worker `w` of `n` starts as process `w`, and after a crash (an info
    completion) becomes `process + n`, so process ids never repeat.
    """

    def __init__(self, index: int, count: int) -> None:
        self.index = index
        self.count = count
        self.process = index

    def crashed(self) -> None:
        self.process += self.count


def load(path: str | Path) -> list[Op]:
    """Read a JSON-lines history; a torn last line (a crash while writing) is ignored.

    Raises:
        HistoryError: a line before the last is not JSON. Dropping it and what follows hid
            the final reads, and with them every lost write (found by review).
    """
    lines = [
        (number, line.strip())
        for number, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1)
        if line.strip()
    ]
    ops = []
    for position, (number, line) in enumerate(lines):
        try:
            ops.append(json.loads(line))
        except json.JSONDecodeError as exc:
            if position == len(lines) - 1:
                break
            raise HistoryError(
                f"{path}: line {number} is not JSON ({exc.msg}) and is not the last line: "
                "the history is damaged, not torn by a crash"
            ) from None
    return ops


def client_ops(history: Iterable[Op]) -> Iterator[Op]:
    """The client records (numeric process), in order."""
    for op in history:
        process = op.get("process")
        if isinstance(process, int) and not isinstance(process, bool):
            yield op


def pairs(history: Iterable[Op]) -> list[tuple[Op, Op | None]]:
    """(invoke, completion or None when never completed) per client operation, in invoke
    order. Raises HistoryError on a completion without an invocation or a double invoke."""
    out: list[tuple[Op, Op | None]] = []
    slot: dict[Any, int] = {}
    for op in client_ops(history):
        process = op["process"]
        if op["type"] == "invoke":
            if process in slot:
                raise HistoryError(f"process {process} invoked twice without completing: {op}")
            slot[process] = len(out)
            out.append((op, None))
        elif op["type"] in ("ok", "fail", "info"):
            index = slot.pop(process, None)
            if index is None:
                raise HistoryError(f"completion without invocation: {op}")
            out[index] = (out[index][0], op)
        else:
            raise HistoryError(f"unknown op type {op['type']!r}: {op}")
    return out


def validate(history: Sequence[Op]) -> list[str]:
    """Problems with the conventions, as sentences (empty when the history is well formed):
    time going backwards, a process invoking after an info, a completion without invoke, an
    op left open (allowed only at the very end of a crashed run; reported here)."""
    problems: list[str] = []
    last_time = -1
    state: dict[Any, str] = {}
    for op in history:
        t = op.get("time")
        if not isinstance(t, int) or t < last_time:
            problems.append(f"time goes backwards or is missing at op {op.get('index')}")
        else:
            last_time = t
        process = op.get("process")
        if not isinstance(process, int) or isinstance(process, bool):
            continue
        kind = op.get("type")
        before = state.get(process)
        if kind == "invoke":
            if before == "open":
                problems.append(f"process {process} invoked twice without completing")
            elif before == "info":
                problems.append(f"process {process} invoked again after an info completion")
            state[process] = "open"
        elif kind in ("ok", "fail", "info"):
            if before != "open":
                problems.append(f"process {process} completed without an open invocation")
            state[process] = "info" if kind == "info" else "done"
        else:
            problems.append(f"unknown op type {kind!r} at op {op.get('index')}")
    still_open = sorted(p for p, s in state.items() if s == "open")
    if still_open:
        problems.append(f"operations never completed by processes {still_open}")
    return problems
