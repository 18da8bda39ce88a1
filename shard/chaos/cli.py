"""`paxoskv chaos`: a Jepsen-style run against a real local cluster (shard/chaos/runner.py).

    paxoskv chaos --workload register --nemesis kill --duration 30 --out /tmp/run1
    paxoskv chaos --workload list-append --nemesis mix --duration 300 --out /tmp/soak --seed 7
    paxoskv chaos --recheck /tmp/soak      # check a kept history again, offline

Imports of the harness stay inside the handler, so `paxoskv --help` stays fast.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from shard.cli_kv import (
    UsageError,
    bounded_int,
    non_negative_seconds,
    positive_seconds,
    shard_count,
)

#: Exit status of `--recheck` when DIR cannot be read as a run (not an anomaly: 1 is that).

WORKLOAD_NAMES = ["register", "bank", "list-append"]
NEMESIS_NAMES = [
    "none",
    "kill",
    "pause",
    "partition",
    "restart-all",
    "mix",
    "crash-2pc",
    "flaky-net",
    "drop-replies",
]

EPILOG = """\
output: OUT/history.jsonl (every operation, Jepsen conventions), OUT/report.json (ops,
ok/fail/info counts, faults with timestamps, recovery times, anomalies, acknowledged writes
lost), OUT/cluster/ (config, node logs and data). Exit status: 0 valid; 3 anomalies or lost
acknowledged writes; 4 the cluster did not recover or final reads failed; 5 the checker was
inconclusive; 1 no verdict (an error: OUT is not empty, --recheck DIR is not a run, ...);
2 a usage error (an unknown option or value, no --workload or --out).

partitions: with --net auto, `partition` and `mix` put every node in its own Linux network
namespace when that works (root, iproute2); otherwise they fall back to an in-node fault
hook that drops Paxos peer traffic only, and the summary says so.
"""


def register_chaos_command(subparsers: Any) -> None:
    """Add `chaos` to the `paxoskv` parser's subcommands."""
    cmd = subparsers.add_parser(
        "chaos",
        help="Jepsen-style chaos run: workload + faults on a real local cluster, checked",
        description="Start a local cluster, run concurrent clients under a seeded fault\n"
        "schedule, heal, read everything back, check the history (linearizability, bank\n"
        "snapshots' strict serializability or Elle list-append) and write a report.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    cmd.add_argument("--workload", choices=WORKLOAD_NAMES, help="required for a run")
    cmd.add_argument(
        "--nemesis", default="mix", choices=NEMESIS_NAMES, help="the faults (default mix: all)"
    )
    cmd.add_argument(
        "--duration", type=positive_seconds, default=30.0, help="seconds of workload (default 30)"
    )
    cmd.add_argument("--out", help="output directory (must be new or empty; required for a run)")
    cmd.add_argument(
        "--recheck",
        metavar="DIR",
        help="run nothing: check the history kept in the run directory DIR again (same "
        "exit status; writes DIR/recheck.json)",
    )
    cmd.add_argument(
        "--clients", type=bounded_int(1), default=5, help="concurrent logical clients (default 5)"
    )
    cmd.add_argument(
        "--seed", type=int, default=None, help="seed of every harness choice (default: random)"
    )
    cmd.add_argument("--nodes", type=bounded_int(1), default=3, help="node count (default 3)")
    cmd.add_argument("--shards", type=shard_count, default=3, help="data shard count (default 3)")
    cmd.add_argument(
        "--net",
        default="auto",
        choices=["auto", "netns", "hook", "loopback"],
        help="how partitions are made (default auto: namespaces if usable, else the hook)",
    )
    cmd.add_argument(
        "--timeout",
        type=positive_seconds,
        default=3.0,
        help="client deadline per op (s, default 3)",
    )
    cmd.add_argument(
        "--quiet",
        type=non_negative_seconds,
        nargs=2,
        action=_Span,
        default=[1.0, 3.0],
        metavar=("MIN", "MAX"),
        help="seconds between faults (default 1 3)",
    )
    cmd.add_argument(
        "--fault",
        type=non_negative_seconds,
        nargs=2,
        action=_Span,
        default=[1.0, 4.0],
        metavar=("MIN", "MAX"),
        help="seconds each fault lasts (default 1 4)",
    )
    cmd.set_defaults(handler=_run)


class _Span(argparse.Action):
    """MIN MAX seconds, MIN at most MAX (found by review: MIN above MAX was taken)."""

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: Any,
        option_string: str | None = None,
    ) -> None:
        low, high = values
        if low > high:
            parser.error(f"argument {option_string}: MIN must be <= MAX, not {low:g} {high:g}")
        setattr(namespace, self.dest, values)


def _run(args: argparse.Namespace) -> int:
    from shard.chaos.runner import ChaosError, ChaosOptions, recheck, run

    if args.recheck:
        given = [f"--{name}" for name in ("workload", "out", "seed") if getattr(args, name)]
        if given:
            raise UsageError(f"--recheck runs nothing: drop {', '.join(given)}")
        try:
            report = recheck(Path(args.recheck), say=lambda line: print(line, flush=True))
        except ChaosError as exc:
            print(f"paxoskv: error: {exc}", file=sys.stderr)
            return 1
        return int(report["exit_code"])
    if not args.workload or not args.out:
        raise UsageError("--workload and --out are required (or --recheck DIR)")
    options = ChaosOptions(
        workload=args.workload,
        nemesis=args.nemesis,
        duration_s=args.duration,
        out=Path(args.out),
        clients=args.clients,
        seed=args.seed,
        nodes=args.nodes,
        shards=args.shards,
        net=args.net,
        timeout_s=args.timeout,
        quiet_s=(args.quiet[0], args.quiet[1]),
        fault_s=(args.fault[0], args.fault[1]),
    )
    report = run(options, say=lambda line: print(line, flush=True))
    return int(report["exit_code"])
