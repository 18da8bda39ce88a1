"""Benchmark a local 3-member etcd cluster with the paxoskv harness: the reference figures.

Examples (from the repository root)::

    python bench/run_etcd.py --workload put --clients 1 --duration 5 --json /tmp/etcd.json
    python bench/run_etcd.py --suite --duration 5 --json bench/results/etcd.json

One cluster (bench/etcd_cluster.py) is started for the whole invocation, on free 127.0.0.1
ports and in a temporary directory, and stopped by PID at the end, also on errors, Ctrl-C and
SIGTERM. Each run prints one summary line; `--json` writes every report.

`--suite` runs: sequential put (1 client), put at 64 and 256 clients, get at 64 clients.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import statistics
import sys
from pathlib import Path
from types import FrameType
from typing import Any

if __package__ in (None, ""):  # `python bench/run_etcd.py`: make the repository root importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.etcd_cluster import EtcdCluster
from bench.etcd_driver import etcd_driver_factory
from shard.bench_harness import (
    WORKLOADS,
    BenchReport,
    ProgressSample,
    machine_info,
    run_workload,
)
from shard.cpu_meter import CpuMeter

# (workload, clients) of --suite, in order.
SUITE: tuple[tuple[str, int], ...] = (("put", 1), ("put", 64), ("put", 256), ("get", 64))


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--workload", choices=WORKLOADS, default="put")
    p.add_argument("--clients", type=int, default=1, help="concurrent closed-loop clients")
    p.add_argument("--duration", type=float, default=5.0, help="seconds measured per run")
    p.add_argument("--warmup", type=float, default=1.0, help="seconds run but not measured")
    p.add_argument("--suite", action="store_true", help="run the standard set of runs")
    p.add_argument("--repeat", type=int, default=1, help="runs per configuration")
    p.add_argument(
        "--connections",
        type=int,
        default=1,
        help="gRPC channels shared round-robin by the clients; 0 = one per client",
    )
    p.add_argument(
        "--endpoint",
        choices=("leader", "all"),
        default="leader",
        help="send to the leader only, or spread connections over all members",
    )
    p.add_argument("--key-count", type=int, default=10_000)
    p.add_argument("--value-size", type=int, default=100)
    p.add_argument("--read-fraction", type=float, default=0.5, help="for --workload mixed")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--max-foreign-cpu",
        type=float,
        default=1.0,
        help="re-run a run whose other processes took more than this share of all CPU",
    )
    p.add_argument("--attempts", type=int, default=3, help="tries per run, see above")
    p.add_argument("--json", type=Path, help="write all reports to this file")
    p.add_argument("--quiet", action="store_true", help="no per-second progress on stderr")
    return p.parse_args(argv)


def _progress_printer(label: str) -> Any:
    def show(s: ProgressSample) -> None:
        print(
            f"  [{label}] t={s.elapsed_s:5.1f}s ops={s.ops} rate={s.rate_ops_s:.0f}/s "
            f"errors={s.errors}",
            file=sys.stderr,
            flush=True,
        )

    return show


async def _run_one(
    args: argparse.Namespace,
    cluster: EtcdCluster,
    workload: str,
    clients: int,
    rep: int,
    attempt: int,
) -> BenchReport:
    endpoints = (
        [cluster.leader_endpoint()] if args.endpoint == "leader" else cluster.client_endpoints
    )
    connections = None if args.connections == 0 else min(args.connections, clients)
    label = f"{workload} c={clients} #{rep + 1}"
    meter: list[CpuMeter] = []
    report = await run_workload(
        etcd_driver_factory(endpoints),
        workload,  # type: ignore[arg-type]
        clients,
        args.duration,
        key_count=args.key_count,
        value_size=args.value_size,
        connections=connections,
        read_fraction=args.read_fraction,
        warmup_s=args.warmup,
        progress=None if args.quiet else _progress_printer(label),
        seed=args.seed + rep,
        target="etcd-3node",
        extra={
            "endpoints": endpoints,
            "endpoint_mode": args.endpoint,
            "repeat": rep,
            "attempt": attempt,
        },
        on_start=lambda: meter.append(CpuMeter(cluster.pids)),
    )
    report.extra["cpu"] = cpu = meter[0].result()
    print(
        f"{report.summary_line()}  cpu: client={cpu['client_s']}s etcd={cpu['servers_s']}s "
        f"irq={cpu['irq_s']}s other={cpu['other_s']}s of {cpu['capacity_s']}s",
        flush=True,
    )
    return report


async def _run_all(
    args: argparse.Namespace, cluster: EtcdCluster, plan: list[tuple[str, int]]
) -> list[BenchReport]:
    reports: list[BenchReport] = []
    for workload, clients in plan:
        for rep in range(args.repeat):
            # On a shared machine, keep the attempt that other processes disturbed least.
            best: BenchReport | None = None
            for attempt in range(1, args.attempts + 1):
                report = await _run_one(args, cluster, workload, clients, rep, attempt)
                share = report.extra["cpu"]["other_share"]
                if best is None or share < best.extra["cpu"]["other_share"]:
                    best = report
                if share <= args.max_foreign_cpu:
                    break
                if attempt < args.attempts:
                    print(f"  (other processes took {share:.0%} of the CPU; running it again)")
            assert best is not None
            reports.append(best)
    return reports


def _medians(reports: list[BenchReport]) -> list[dict[str, Any]]:
    """Median of each figure over the repeats of one (workload, clients) configuration."""
    groups: dict[tuple[str, int], list[BenchReport]] = {}
    for r in reports:
        groups.setdefault((r.workload, r.clients), []).append(r)
    out = []
    for (workload, clients), rs in groups.items():
        out.append(
            {
                "workload": workload,
                "clients": clients,
                "runs": len(rs),
                **{
                    f: statistics.median(getattr(r, f) for r in rs)
                    for f in ("throughput_ops_s", "p50_ms", "p99_ms", "p999_ms")
                },
                "other_cpu_share": statistics.median(r.extra["cpu"]["other_share"] for r in rs),
                "throughput_range": [
                    min(r.throughput_ops_s for r in rs),
                    max(r.throughput_ops_s for r in rs),
                ],
            }
        )
    return out


def _raise_on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)


def main(argv: list[str] | None = None) -> int:
    args = _parse_args(argv)
    if args.repeat < 1 or args.clients < 1 or args.connections < 0:
        print("--repeat and --clients must be >= 1, --connections >= 0", file=sys.stderr)
        return 2
    plan = list(SUITE) if args.suite else [(args.workload, args.clients)]
    # SIGTERM -> SystemExit, so the `with` below stops the etcd members.
    signal.signal(signal.SIGTERM, _raise_on_sigterm)
    with EtcdCluster(size=3) as cluster:
        print(f"etcd cluster up: pids={cluster.pids} leader={cluster.leader_endpoint()}")
        version = cluster.status(cluster.client_endpoints[0]).version
        reports = asyncio.run(_run_all(args, cluster, plan))
    medians = _medians(reports)
    if args.repeat > 1:
        for m in medians:
            print(
                f"median of {m['runs']}: {m['workload']} clients={m['clients']} "
                f"{m['throughput_ops_s']:.0f} ops/s p50={m['p50_ms']:.2f}ms "
                f"p99={m['p99_ms']:.2f}ms"
            )
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        doc = {
            "target": "etcd-3node",
            "etcd_version": version,
            "machine": machine_info(),
            "argv": sys.argv[1:] if argv is None else argv,
            "medians": medians,
            "runs": [r.to_dict() for r in reports],
        }
        args.json.write_text(json.dumps(doc, indent=2, sort_keys=True, allow_nan=False) + "\n")
        print(f"wrote {args.json}")
    return 1 if any(r.errors or r.misses for r in reports) else 0


if __name__ == "__main__":
    raise SystemExit(main())
