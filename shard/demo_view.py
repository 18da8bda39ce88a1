"""The face of `paxoskv demo`: its command line, the live terminal view, the plain progress
lines and the summary.

The CLI imports this module to register the command; the run itself (`shard.demo`, with
asyncio, grpc and the client) is imported only when the command runs. Everything else here
is pure formatting of a `DemoState` snapshot, except `LiveView`, which owns the terminal: it redraws the frame in place with plain ANSI escapes (cursor up, erase to the
end of the screen), no curses. `shard.demo` builds a `DemoState` about once a second and
either redraws the live view (stdout is a terminal) or prints one `progress_line`.
"""

from __future__ import annotations

import argparse
import re
import shutil
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, TextIO

from shard.cli_kv import bounded_int, debug_option, positive_seconds, shard_count

__all__ = [
    "CheckState",
    "DemoState",
    "FailoverState",
    "GroupRow",
    "LiveView",
    "progress_line",
    "register_demo_command",
    "render_frame",
    "summary_lines",
]

CSI = "\x1b["
_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
BOLD, DIM, RED, GREEN, YELLOW, RESET = "1", "2", "31", "32", "33", "0"


def register_demo_command(subparsers: Any) -> None:
    """Add `demo` to the `paxoskv` parser's subcommands."""
    demo = subparsers.add_parser(
        "demo",
        help="start a local cluster, run a live workload, kill a leader, check invariants",
        description="Start a local cluster (node processes on 127.0.0.1), run bank "
        "transfers and unique-username sign-ups across all shards, show leaders, ballots, "
        "throughput, latency and the invariant checks live, SIGKILL one data shard's leader "
        "part way through (at 1/3 of --duration, or 10 s in) and restart it later (2/3, or "
        "10 s after the kill). Ends after --duration or on Ctrl-C, stops every process it "
        "started and prints a summary; the exit status is 1 if an invariant broke.",
    )
    demo.add_argument(
        "--duration",
        type=positive_seconds,
        default=None,
        metavar="S",
        help="stop after S seconds (default: run until Ctrl-C)",
    )
    demo.add_argument(
        "--data-dir",
        default=None,
        help="keep the cluster in this directory, which must be new or empty (one that "
        "holds a cluster is refused: the demo's keys would mix with its data; default: a "
        "temporary directory, removed at the end)",
    )
    demo.add_argument(
        "--nodes",
        type=bounded_int(3, why=" (the demo kills a leader and needs a majority left)"),
        default=None,
        help="node count (default 3)",
    )
    demo.add_argument(
        "--shards", type=shard_count, default=None, help="data shard count (default 3)"
    )
    debug_option(demo)
    demo.set_defaults(handler=_run)


def _run(args: argparse.Namespace) -> int:
    from shard.demo import run_demo

    return run_demo(args)


@dataclass(frozen=True, slots=True)
class ReplicaRow:
    name: str
    role: str  # "leader", "follower", ... or "down"
    chosen: int
    applied: int


@dataclass(frozen=True, slots=True)
class GroupRow:
    """One Paxos group as the nodes' Status reports it."""

    group_id: int
    keys: str  # "meta" or the key range
    leader: str | None
    ballot: str
    chosen: int
    replicas: tuple[ReplicaRow, ...]


@dataclass(slots=True)
class CheckState:
    """Counts of one invariant check; a check that could not complete is `skipped`."""

    name: str
    passed: int = 0
    failed: int = 0
    skipped: int = 0
    last: str = ""
    failures: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.failed == 0


@dataclass(slots=True)
class FailoverState:
    """The leader kill and what followed; times in seconds since the workload started."""

    group_id: int
    victim: str
    victim_pid: int
    killed_at: float
    new_leader: str | None = None
    leader_after: float | None = None
    resumed_after: float | None = None
    restarted_at: float | None = None
    restarted_pid: int | None = None

    def parts(self) -> list[str]:
        """The story so far, one phrase per step."""
        out = [
            f"killed {self.victim} (pid {self.victim_pid}, leader of group {self.group_id}) "
            f"with SIGKILL at {self.killed_at:.1f} s"
        ]
        if self.new_leader is None:
            out.append("no new leader yet")
        else:
            # Seen by polling Status, so commits may resume before it is seen (a README
            # trial read the order as a contradiction).
            out.append(
                f"new leader {self.new_leader} seen by a status poll after "
                f"{self.leader_after:.2f} s"
            )
        if self.resumed_after is not None:
            out.append(f"commits on group {self.group_id} resumed after {self.resumed_after:.2f} s")
        elif self.new_leader is not None:
            out.append(f"waiting for a commit on group {self.group_id}")
        if self.restarted_at is not None:
            restarted = f"{self.victim} restarted at {self.restarted_at:.1f} s"
            if self.restarted_pid is not None:
                restarted += f" (pid {self.restarted_pid})"
            out.append(restarted)
        return out

    def describe(self) -> str:
        return "; ".join(self.parts())


@dataclass(slots=True)
class DemoState:
    """Everything the view shows, as of `elapsed` seconds into the workload."""

    elapsed: float
    duration: float | None
    nodes: dict[str, str]  # name -> "pid 123 up" / "killed" / ...
    groups: list[GroupRow]
    txn_per_s: float
    p50_ms: float | None
    p99_ms: float | None
    committed: dict[str, int]
    conflicts: int
    retries: int
    unavailable: int
    unknown: int
    gave_up: int
    taken: int
    overdrafts: int
    races: int
    bank_total: int | None
    expected_total: int
    users: int | None
    checks: list[CheckState]
    failover: FailoverState | None
    next_event: str
    events: list[str]
    last_error: str = ""

    @property
    def total_committed(self) -> int:
        return sum(self.committed.values())


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f} ms"


def _paint(text: str, code: str, color: bool) -> str:
    return f"{CSI}{code}m{text}{CSI}{RESET}m" if color else text


def _check_text(check: CheckState, color: bool) -> str:
    mark = _paint("OK", GREEN, color) if check.ok else _paint("BROKEN", RED, color)
    text = f"{check.name} {mark} ({check.passed} passed, {check.failed} failed"
    if check.skipped:
        text += f", {check.skipped} skipped"
    return text + ")"


def render_frame(state: DemoState, *, color: bool = True) -> list[str]:
    """The live view's lines (no trailing newlines)."""

    def b(text: str) -> str:
        return _paint(text, BOLD, color)

    def d(text: str) -> str:
        return _paint(text, DIM, color)

    until = f" / {state.duration:.0f} s" if state.duration else " (Ctrl-C to stop)"
    lines = [b(f"paxoskv demo — {state.elapsed:5.1f} s{until}")]
    lines.append("nodes: " + "   ".join(f"{n} {s}" for n, s in state.nodes.items()))
    lines.append("")
    lines.append(b(f"{'group':<7}{'keys':<16}{'leader':<8}{'ballot':<10}{'chosen':>8}   replicas"))
    for g in state.groups:
        leader = f"{g.leader:<8}" if g.leader else _paint(f"{'none':<8}", RED, color)
        reps = "  ".join(
            f"{r.name}:{r.role[0] if r.role != 'down' else '-'} {r.chosen}" for r in g.replicas
        )
        lines.append(
            f"{g.group_id:<7}{g.keys:<16}{leader}{g.ballot or '-':<10}{g.chosen:>8}   " + d(reps)
        )
    lines.append("")
    c = state.committed
    lines.append(
        b("workload ") + f"{state.txn_per_s:6.1f} txn/s   commit latency p50 {_ms(state.p50_ms)}  "
        f"p99 {_ms(state.p99_ms)}"
    )
    lines.append(
        f"  committed {state.total_committed}  (transfers {c.get('transfer', 0)}, "
        f"sign-ups {c.get('signup', 0)}, renames {c.get('rename', 0)}, "
        f"deletes {c.get('delete', 0)})"
    )
    lines.append(
        f"  aborts: {state.conflicts} conflicts, {state.unavailable} unavailable   "
        f"retries {state.retries}   commit unknown {state.unknown}   gave up {state.gave_up}"
    )
    lines.append(
        f"  refused by the rules: {state.taken} sign-ups/renames (username or email taken), "
        f"{state.overdrafts} overdrafts; {state.races} sign-up races"
    )
    lines.append("")
    total = "-" if state.bank_total is None else str(state.bank_total)
    users = "-" if state.users is None else str(state.users)
    lines.append(
        b("invariants ") + f"bank total {total} (must be {state.expected_total})   users {users}"
    )
    for check in state.checks:
        lines.append("  " + _check_text(check, color))
        if check.failures:
            lines.append("    " + _paint(check.failures[-1], RED, color))
    lines.append("")
    if state.failover is not None:
        parts = state.failover.parts()
        lines.append(b("failover ") + _paint(parts[0], YELLOW, color))
        lines.append("  " + _paint("; ".join(parts[1:]), YELLOW, color))
    if state.next_event:
        lines.append(d(f"next: {state.next_event}"))
    for event in state.events[-4:]:
        lines.append(d(event))
    if state.last_error:
        lines.append(d(f"last client error: {state.last_error[:160]}"))
    return lines


def progress_line(state: DemoState) -> str:
    """One plain line per second when stdout is not a terminal."""
    leaders = " ".join(f"g{g.group_id}={g.leader or '-'}" for g in state.groups)
    checks = " ".join(f"{c.name}={'ok' if c.ok else 'BROKEN'}({c.passed})" for c in state.checks)
    total = "-" if state.bank_total is None else str(state.bank_total)
    return (
        f"[{state.elapsed:6.1f}s] {state.txn_per_s:6.1f} txn/s p50 {_ms(state.p50_ms)} "
        f"p99 {_ms(state.p99_ms)} | committed {state.total_committed} conflicts "
        f"{state.conflicts} retries {state.retries} unavailable {state.unavailable} | "
        f"total {total} | {checks} | leaders {leaders}"
    )


def summary_lines(
    state: DemoState, *, ran_s: float, nodes: int, shards: int, stopped: Sequence[str]
) -> list[str]:
    """The summary printed on exit."""
    c = state.committed
    passed = sum(ch.passed for ch in state.checks)
    failed = sum(ch.failed for ch in state.checks)
    lines = [
        "paxoskv demo summary",
        f"  ran {ran_s:.1f} s on {nodes} nodes, {shards} data shards + the meta group",
        f"  transactions committed: {state.total_committed} (transfers {c.get('transfer', 0)}, "
        f"sign-ups {c.get('signup', 0)}, renames {c.get('rename', 0)}, deletes "
        f"{c.get('delete', 0)}), {state.total_committed / max(ran_s, 1e-9):.1f} txn/s",
        f"  aborts: {state.conflicts} conflicts, {state.unavailable} unavailable; retries: "
        f"{state.retries}; commit unknown: {state.unknown}; gave up: {state.gave_up}",
        f"  refused by the rules: {state.taken} sign-ups/renames (username or email taken), "
        f"{state.overdrafts} overdrafts; {state.races} concurrent sign-up races",
        f"  commit latency: p50 {_ms(state.p50_ms)}, p99 {_ms(state.p99_ms)}",
    ]
    if state.failover is None:
        lines.append("  failover: none (the run ended before the kill)")
    else:
        lines.append(f"  failover: {state.failover.describe()}")
    lines.append(
        f"  invariant checks: {passed} passed, {failed} failed ("
        + ", ".join(
            f"{ch.name} {ch.passed}/{ch.passed + ch.failed}"
            + (f", {ch.skipped} skipped" if ch.skipped else "")
            for ch in state.checks
        )
        + ")"
    )
    for ch in state.checks:
        for failure in ch.failures[:5]:
            lines.append(f"    BROKEN {ch.name}: {failure}")
    lines.extend(f"  {line}" for line in stopped)
    verdict = "PASS: every invariant held" if failed == 0 else "FAIL: an invariant broke"
    lines.append(f"result: {verdict}")
    return lines


def _visible_len(line: str) -> int:
    return len(_ANSI.sub("", line))


class LiveView:
    """Redraws a frame in place on a terminal with ANSI escapes (no curses)."""

    def __init__(self, out: TextIO = sys.stdout) -> None:
        self._out = out
        self._height = 0

    def draw(self, lines: list[str]) -> None:
        """Replace the previous frame with `lines` (cut to fit the terminal's height: the
        cursor cannot move back above the top of the screen)."""
        size = shutil.get_terminal_size()
        columns, rows = max(1, size.columns), max(2, size.lines)
        # A line longer than the terminal wraps onto several rows: count rows, not lines.
        heights = [max(1, -(-_visible_len(line) // columns)) for line in lines]
        while len(lines) > 1 and sum(heights) > rows - 1:
            lines, heights = lines[:-1], heights[:-1]
        out = self._out
        if self._height:
            out.write(f"{CSI}{self._height}F")  # to the first line of the last frame
        out.write(f"{CSI}J")  # erase to the end of the screen
        out.write("\n".join(lines) + "\n")
        out.flush()
        self._height = sum(heights)

    def start(self) -> None:
        self._out.write(f"{CSI}?25l")  # hide the cursor while redrawing
        self._out.flush()

    def close(self) -> None:
        self._out.write(f"{CSI}?25h")
        self._out.flush()
