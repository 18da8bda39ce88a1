"""paxoskv against etcd in the same run, same harness, same parameters; and transactions.

Examples (from the repository root)::

    python bench/compare.py --duration 5 --json /tmp/compare.json
    python bench/compare.py --duration 5 --repeat 3 --txn --json /tmp/compare.json
    python bench/compare.py --txn-only --duration 5 --json /tmp/txn.json

What it does
------------
1. Key-value comparison (skipped with --txn-only): starts a 3-member etcd cluster
   (bench/etcd_cluster.py) and a 3-node paxoskv cluster with ONE shard (shard.cluster.
   LocalCluster, no split points), both on 127.0.0.1 in temporary directories, and runs the
   plan of bench/run_etcd.py on both, back to back per configuration: sequential put
   (1 client), put at 64 and 256 clients, linearizable get at 64 clients. Same harness
   (shard.bench_harness), same keys (10,000), values (100 bytes), warm-up and duration.
   Connection mode of both: every client multiplexed on one client connection (etcd: one
   gRPC channel to the leader, run_etcd.py's default; paxoskv: one RoutingClient, one Batch
   stream per node). Prints a table with both and the ratios paxoskv/etcd.
2. With --txn (or --txn-only): stops those clusters, starts a 3-node paxoskv cluster with 3
   shards and runs single-key put (a random key on a random shard) against the transaction
   workloads of shard/bench_txn.py (txn1, txn2, txn3, ro) at 1, 16 and 64 clients, then
   bank with --hot-keys 4 at 1, 4, 16 and 64 clients; prints committed/s, p50/p99 commit
   latency, aborts and retries per committed transaction and the abort rate, and the ratio
   "2-shard txn p50 / single-key put p50" per client count.

The machine is shared. Every run measures the CPU used by this process (the client), by the
servers under test, by the other system's idle servers, by interrupts, and by everything
else (`other_share` of all CPU). A run during which other processes took more than
--max-foreign-cpu is run again, up to --attempts times, keeping the least disturbed one
(like run_etcd.py). The machine (nproc, CPU model) and a foreign-load baseline measured before
starting go into the output and the JSON. Everything started is stopped by PID at the end,
also on errors, Ctrl-C and SIGTERM. Exit status 1 if any run had errors or misses.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any, TypeVar

if __package__ in (None, ""):  # `python bench/compare.py`: make the repository root importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import shard  # noqa: F401 - first: it picks gRPC's I/O before grpc loads, for both drivers
from bench.etcd_cluster import EtcdCluster, EtcdClusterError, find_etcd
from bench.etcd_driver import etcd_driver_factory
from router.loop_end import finish_loop_tasks
from shard.bench_harness import BenchReport, CustomWorkload, machine_info, run_workload
from shard.cpu_meter import CpuMeter

T = TypeVar("T")

KV_PLAN: tuple[tuple[str, int], ...] = (("put", 1), ("put", 64), ("put", 256), ("get", 64))
TXN_WORKLOADS: tuple[str, ...] = ("put", "txn1", "txn2", "txn3", "ro")
TXN_CLIENTS: tuple[int, ...] = (1, 16, 64)
BANK_CLIENTS: tuple[int, ...] = (1, 4, 16, 64)


# Failure-detection timings of the paxoskv clusters (shard.config.PaxosSettings fields).
PAXOS_TIMEOUTS: dict[str, dict[str, int]] = {
    "default": {},
    "etcd": {
        "heartbeat_interval_ms": 100,
        "election_timeout_min_ms": 1000,
        "election_timeout_max_ms": 2000,
        "lease_ms": 900,
    },
}


def paxos_settings(name: str) -> Any:
    from shard.config import PaxosSettings

    return PaxosSettings(**PAXOS_TIMEOUTS[name])


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--duration", type=float, default=5.0, help="seconds measured per run (5)")
    p.add_argument("--warmup", type=float, default=1.0, help="seconds run but not measured (1)")
    p.add_argument("--repeat", type=int, default=1, help="runs per configuration (1)")
    p.add_argument("--txn", action="store_true", help="also the transaction table (3 shards)")
    p.add_argument("--txn-only", action="store_true", help="only the transaction table")
    p.add_argument("--key-count", type=int, default=10_000, help="key-value runs (10000)")
    p.add_argument("--value-size", type=int, default=100)
    p.add_argument("--txn-keys", type=int, default=1000, help="transaction keys per shard (1000)")
    p.add_argument("--hot-keys", type=int, default=4, help="bank accounts (4)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--paxos-timeouts",
        choices=tuple(PAXOS_TIMEOUTS),
        default="default",
        help="paxoskv's failure-detection timings: the node defaults (heartbeat 50 ms, "
        "election 150-300 ms, lease 120 ms) or etcd's defaults (heartbeat 100 ms, election "
        "1000-2000 ms; lease 900 ms)",
    )
    p.add_argument(
        "--retry-timeout",
        type=float,
        default=30.0,
        help="transactions: client.run gives up (TooManyRetries, an error) after this (30 s)",
    )
    p.add_argument(
        "--max-foreign-cpu",
        type=float,
        default=0.15,
        help="re-run a run whose other processes took more than this share of all CPU (0.15)",
    )
    p.add_argument("--attempts", type=int, default=3, help="tries per run, see above (3)")
    p.add_argument("--json", type=Path, help="write everything to this file")
    p.add_argument("--quiet", action="store_true", help="no per-second progress on stderr")
    args = p.parse_args(argv)
    if args.repeat < 1 or args.attempts < 1 or args.duration <= 0 or args.hot_keys < 2:
        p.error("--repeat and --attempts must be >= 1, --duration > 0, --hot-keys >= 2")
    return args


# ---------------------------------------------------------------------- CPU accounting


def foreign_baseline(seconds: float = 2.0, ours: list[int] | None = None) -> dict[str, float]:
    """Share of all CPU that other processes use right now (nothing of ours running)."""
    meter = CpuMeter(ours or [])
    time.sleep(seconds)
    r = meter.result()
    return {"seconds": seconds, "other_share": r["other_share"], "loadavg_1m": os.getloadavg()[0]}


# ---------------------------------------------------------------------- running


@dataclass
class System:
    """One system under test: how to open drivers, its server pids, its report label."""

    label: str
    factory: Callable[[], Any]
    pids: list[int]
    idle_pids: list[int] = field(default_factory=list)
    # {group: ballot or term} now, to count leader elections during a run (None: unknown)
    terms: Callable[[], dict[int, str] | None] | None = None


def paxoskv_terms(cluster: Any) -> Callable[[], dict[int, str] | None]:
    """Every group's leader ballot (a new ballot = an election happened)."""

    def get() -> dict[int, str] | None:
        try:
            return {g: lead.ballot for g, lead in cluster.leaders(timeout_s=2.0).items()}
        except Exception:
            return None

    return get


def etcd_terms(cluster: EtcdCluster) -> Callable[[], dict[int, str] | None]:
    """The raft term of the cluster (a new term = an election happened)."""

    def get() -> dict[int, str] | None:
        try:
            return {0: str(max(cluster.status(e).raftTerm for e in cluster.client_endpoints))}
        except Exception:
            return None

    return get


def _elections(before: dict[int, str] | None, after: dict[int, str] | None) -> int | None:
    """Groups whose leader ballot / term changed between two probes."""
    if before is None or after is None:
        return None
    return sum(1 for g, b in after.items() if before.get(g) != b)


async def run_one(
    args: argparse.Namespace,
    system: System,
    workload: str | CustomWorkload,
    clients: int,
    rep: int,
    *,
    key_count: int,
    extra: dict[str, Any] | None = None,
    after: Callable[[BenchReport], Any] | None = None,
) -> BenchReport:
    """One run, re-run while other processes took more than --max-foreign-cpu (keeping the
    least disturbed attempt)."""
    name = workload if isinstance(workload, str) else workload.name
    best: BenchReport | None = None
    for attempt in range(1, args.attempts + 1):
        meter: list[CpuMeter] = []

        def progress(s: Any, label: str = f"{system.label} {name} c={clients}") -> None:
            print(
                f"  [{label}] t={s.elapsed_s:5.1f}s ops={s.ops} rate={s.rate_ops_s:.0f}/s "
                f"errors={s.errors}",
                file=sys.stderr,
                flush=True,
            )

        terms_before = system.terms() if system.terms is not None else None
        report = await run_workload(
            system.factory,
            workload,  # type: ignore[arg-type]
            clients,
            args.duration,
            key_count=key_count,
            value_size=args.value_size,
            connections=1,
            warmup_s=args.warmup,
            progress=None if args.quiet else progress,
            seed=args.seed + rep,
            target=system.label,
            extra={"repeat": rep, "attempt": attempt, **(extra or {})},
            on_start=lambda meter=meter: meter.append(CpuMeter(system.pids, system.idle_pids)),
        )
        report.extra["cpu"] = cpu = meter[0].result()
        if system.terms is not None:
            # Groups that elected a new leader during the run: a disturbed run (elections
            # happen when a starved machine delays heartbeats past the election timeout).
            report.extra["groups_with_new_leader"] = _elections(terms_before, system.terms())
        if after is not None:
            await after(report)
        elections = report.extra.get("groups_with_new_leader")
        print(
            f"{report.summary_line()}  cpu: client={cpu['client_s']}s "
            f"servers={cpu['servers_s']}s other={cpu['other_s']}s "
            f"({cpu['other_share']:.0%}) of {cpu['capacity_s']}s"
            + (f" new-leader groups={elections}" if elections else ""),
            flush=True,
        )
        if report.first_errors:
            print(f"  first errors: {report.first_errors[:3]}", flush=True)
        share = cpu["other_share"]
        if best is None or share < best.extra["cpu"]["other_share"]:
            best = report
        if share <= args.max_foreign_cpu:
            break
        if attempt < args.attempts:
            print(f"  (other processes took {share:.0%} of the CPU; running it again)")
    assert best is not None
    return best


def medians(reports: list[BenchReport]) -> list[dict[str, Any]]:
    """Median figures per (target, workload, clients) over the repeats."""
    groups: dict[tuple[str, str, int, Any], list[BenchReport]] = {}
    for r in reports:
        groups.setdefault((r.target, r.workload, r.clients, r.extra.get("hot_keys")), []).append(r)
    out = []
    for (target, workload, clients, hot), rs in groups.items():
        row: dict[str, Any] = {
            "target": target,
            "workload": workload,
            "clients": clients,
            "runs": len(rs),
            "errors": sum(r.errors for r in rs),
            "misses": sum(r.misses for r in rs),
            **{
                f: statistics.median(getattr(r, f) for r in rs)
                for f in ("throughput_ops_s", "p50_ms", "p99_ms", "p999_ms")
            },
            "throughput_range": [
                min(r.throughput_ops_s for r in rs),
                max(r.throughput_ops_s for r in rs),
            ],
            "other_share": statistics.median(r.extra["cpu"]["other_share"] for r in rs),
            "other_share_max": max(r.extra["cpu"]["other_share"] for r in rs),
            "runs_with_elections": sum(
                1 for r in rs if (r.extra.get("groups_with_new_leader") or 0) > 0
            ),
            # A probe that failed (no Status answer in time) is no evidence of a quiet run.
            "runs_elections_unknown": sum(
                1
                for r in rs
                if "groups_with_new_leader" in r.extra and r.extra["groups_with_new_leader"] is None
            ),
        }
        if hot is not None:
            row["hot_keys"] = hot
        if rs[0].committed is not None:
            for f in (
                "abort_rate",
                "aborts_per_committed",
                "retries_per_committed",
                "commit_p50_ms",
                "commit_p99_ms",
            ):
                vals = [getattr(r, f) for r in rs if getattr(r, f) is not None]
                row[f] = statistics.median(vals) if vals else None
        out.append({k: None if isinstance(v, float) and v != v else v for k, v in row.items()})
    return out


def _find(rows: list[dict[str, Any]], target: str, workload: str, clients: int) -> dict[str, Any]:
    for r in rows:
        if r["target"] == target and r["workload"] == workload and r["clients"] == clients:
            return r
    raise KeyError((target, workload, clients))


def _ratio(a: float | None, b: float | None) -> float | None:
    if a is None or b is None or b == 0 or a != a or b != b:  # None, zero or NaN
        return None
    return a / b


def _elections_cell(rows: dict[str, dict[str, Any]]) -> str:
    """`a / b of n` runs with elections per system, and which systems' probes failed."""
    counts = " / ".join(str(r["runs_with_elections"]) for r in rows.values())
    runs = next(iter(rows.values()))["runs"]
    unknown = ", ".join(
        f"{name}: {r['runs_elections_unknown']} unknown"
        for name, r in rows.items()
        if r.get("runs_elections_unknown")
    )
    return f"{counts} of {runs}" + (f" ({unknown})" if unknown else "")


def _fmt(x: float | None, spec: str = ".2f") -> str:
    return "-" if x is None or x != x else format(x, spec)


# ---------------------------------------------------------------------- clusters


@contextlib.contextmanager
def local_cluster(root: Path, name: str, **kwargs: Any) -> Iterator[Any]:
    """A started LocalCluster under `root/name`, stopped by pid on exit (also on errors)."""
    from shard.cluster import LocalCluster, is_node_process

    cluster = LocalCluster(root / name, **kwargs)
    try:
        cluster.start(deadline_s=120.0, settle_s=10.0)
        yield cluster
    finally:
        try:
            cluster.stop(grace_s=5.0)
        finally:
            for node, proc in cluster._procs.items():
                if proc.poll() is None and is_node_process(proc.pid, cluster.config_path, node):
                    proc.kill()
                    proc.wait(timeout=10)
            cluster.close()


def _node_pids(cluster: Any) -> list[int]:
    return [p for p in (cluster.pid(n) for n in cluster.names) if p is not None]


# ---------------------------------------------------------------------- the KV comparison


async def kv_phase(
    args: argparse.Namespace, etcd: EtcdCluster, pkv: Any
) -> tuple[list[BenchReport], list[dict[str, Any]]]:
    from router.client import RoutingClient
    from shard.bench_cmd import PaxosKvDriver

    leader = etcd.leader_endpoint()
    etcd_pids, pkv_pids = etcd.pids, _node_pids(pkv)
    routing = RoutingClient(pkv.env_value().split(","), timeout_s=10.0, tls=pkv.client_tls)
    await routing.connect()
    shared = PaxosKvDriver(routing)
    systems = [
        System("etcd-3node", etcd_driver_factory([leader]), etcd_pids, pkv_pids, etcd_terms(etcd)),
        System("paxoskv-3node-1shard", lambda: shared, pkv_pids, etcd_pids, paxoskv_terms(pkv)),
    ]
    reports: list[BenchReport] = []
    try:
        for workload, clients in KV_PLAN:
            for rep in range(args.repeat):
                for system in systems:  # back to back, so both see the same machine
                    extra = {"connection_mode": "one client connection, all clients"}
                    if system.label.startswith("etcd"):
                        extra["endpoints"] = [leader]
                    reports.append(
                        await run_one(
                            args,
                            system,
                            workload,
                            clients,
                            rep,
                            key_count=args.key_count,
                            extra=extra,
                        )
                    )
    finally:
        await routing.close()
    return reports, medians(reports)


def kv_table(rows: list[dict[str, Any]]) -> list[str]:
    lines = [
        "| run | etcd ops/s | etcd p50 / p99 ms | paxoskv ops/s | paxoskv p50 / p99 ms "
        "| ratio ops/s | ratio p50 | ratio p99 | other_share etcd / paxoskv "
        "| runs with elections etcd / paxoskv |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for workload, clients in KV_PLAN:
        e = _find(rows, "etcd-3node", workload, clients)
        p = _find(rows, "paxoskv-3node-1shard", workload, clients)
        name = "sequential put" if clients == 1 else f"{workload}, {clients} clients"
        lines.append(
            f"| {name} | {_fmt(e['throughput_ops_s'], ',.0f')} "
            f"| {_fmt(e['p50_ms'])} / {_fmt(e['p99_ms'])} "
            f"| {_fmt(p['throughput_ops_s'], ',.0f')} | {_fmt(p['p50_ms'])} / {_fmt(p['p99_ms'])} "
            f"| {_fmt(_ratio(p['throughput_ops_s'], e['throughput_ops_s']))} "
            f"| {_fmt(_ratio(p['p50_ms'], e['p50_ms']))} "
            f"| {_fmt(_ratio(p['p99_ms'], e['p99_ms']))} "
            f"| {e['other_share']:.2f} / {p['other_share']:.2f} "
            f"| {_elections_cell({'etcd': e, 'paxoskv': p})} |"
        )
    return lines


# ---------------------------------------------------------------------- transactions


async def txn_phase(
    args: argparse.Namespace, cluster: Any
) -> tuple[list[BenchReport], list[dict[str, Any]]]:
    from shard.bench_txn import (
        TxnDriver,
        bank_expected_total,
        bank_total,
        build_put_workload,
        build_txn_workload,
        data_groups,
    )
    from txn.client import AsyncClient

    pids = _node_pids(cluster)
    client = AsyncClient(
        cluster.env_value(),
        timeout_s=10.0,
        retry_timeout_s=args.retry_timeout,
        tls=cluster.client_tls,
    )
    await client.connect()
    shard_map = client.routing.shard_map
    assert shard_map is not None
    driver = TxnDriver(client)
    system = System("paxoskv-3node-3shard", lambda: driver, pids, terms=paxoskv_terms(cluster))
    loaded: set[str] = set()
    shards = len(data_groups(shard_map))
    reports: list[BenchReport] = []

    def workload(name: str) -> CustomWorkload:
        if name == "put":
            return build_put_workload(
                shard_map, keys_per_shard=args.txn_keys, value_size=args.value_size, loaded=loaded
            )
        return build_txn_workload(
            name,
            shard_map,
            keys_per_shard=args.txn_keys,
            value_size=args.value_size,
            hot_keys=args.hot_keys if name == "bank" else None,
            loaded=loaded,
        )

    try:
        # Preload the transactions' key space once (not measured): the put baseline and
        # every txn*/ro run then read and write existing keys.
        await build_txn_workload(
            "txn1",
            shard_map,
            keys_per_shard=args.txn_keys,
            value_size=args.value_size,
            loaded=loaded,
        ).setup([driver])  # type: ignore[misc]
        for clients in TXN_CLIENTS:
            for rep in range(args.repeat):
                for name in TXN_WORKLOADS:
                    reports.append(
                        await run_one(
                            args,
                            system,
                            workload(name),
                            clients,
                            rep,
                            key_count=args.txn_keys * shards,
                        )
                    )
        for clients in BANK_CLIENTS:
            for rep in range(args.repeat):
                bank = workload("bank")

                async def audit(report: BenchReport, bank: CustomWorkload = bank) -> None:
                    accounts, expected = bank_expected_total(bank)
                    found = await bank_total(client, accounts)
                    report.extra["bank_total"] = {"expected": expected, "found": found}
                    if found != expected:
                        report.errors += 1
                        report.errors_by_type["BankTotalWrong"] = 1

                reports.append(
                    await run_one(
                        args,
                        system,
                        bank,
                        clients,
                        rep,
                        key_count=args.hot_keys,
                        extra={"hot_keys": args.hot_keys},
                        after=audit,
                    )
                )
    finally:
        await client.close()
    return reports, medians(reports)


def txn_tables(rows: list[dict[str, Any]], hot_keys: int) -> list[str]:
    target = "paxoskv-3node-3shard"
    lines = [
        "| workload | clients | committed/s | p50 / p99 ms | commit call p50 / p99 ms "
        "| aborts per txn | retries per txn | abort rate | other_share | runs with elections |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    plan = [(w, c) for c in TXN_CLIENTS for w in TXN_WORKLOADS]
    plan += [("bank", c) for c in BANK_CLIENTS]
    for w, c in plan:
        r = _find(rows, target, w, c)
        label = f"bank, {hot_keys} hot accounts" if w == "bank" else w
        lines.append(
            f"| {label} | {c} | {_fmt(r['throughput_ops_s'], ',.0f')} "
            f"| {_fmt(r['p50_ms'])} / {_fmt(r['p99_ms'])} "
            f"| {_fmt(r.get('commit_p50_ms'))} / {_fmt(r.get('commit_p99_ms'))} "
            f"| {_fmt(r.get('aborts_per_committed'), '.3f')} "
            f"| {_fmt(r.get('retries_per_committed'), '.3f')} "
            f"| {_fmt(r.get('abort_rate'), '.3f')} | {r['other_share']:.2f} "
            f"| {_elections_cell({'paxoskv': r})} |"
        )
    lines.append("")
    lines.append(
        "Ratios to a single-key put's p50 in the same run; `commit` = the commit call alone "
        "(txn2: one Paxos round, the Prepares in parallel; the target), `whole` = reads + commit:"
    )
    lines.append("")
    lines.append(
        "| clients | txn1 commit / whole | txn2 commit / whole (target: commit <= 2) | "
        "txn3 commit / whole | ro whole |"
    )
    lines.append("|---|---|---|---|---|")
    for c in TXN_CLIENTS:
        put = _find(rows, target, "put", c)["p50_ms"]
        cells = []
        for w in TXN_WORKLOADS[1:]:
            row = _find(rows, target, w, c)
            whole = _fmt(_ratio(row["p50_ms"], put))
            commit = row.get("commit_p50_ms")
            cells.append(whole if commit is None else f"{_fmt(_ratio(commit, put))} / {whole}")
        lines.append(f"| {c} | " + " | ".join(cells) + " |")
    return lines


# ---------------------------------------------------------------------- main


def _raise_on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)


def _versions() -> dict[str, str]:
    import subprocess

    import grpc

    out = {"python": sys.version.split()[0], "grpcio": grpc.__version__}
    with contextlib.suppress(Exception):
        text = subprocess.run(
            [find_etcd(), "--version"], capture_output=True, text=True, timeout=10
        ).stdout
        out["etcd"] = text.splitlines()[0].split(":", 1)[1].strip()
    return out


async def _to_the_end(phase: Awaitable[T]) -> T:
    """`phase`, then its loop's last tasks finished (`router.loop_end`): the next phase runs
    on a loop of its own, and gRPC work left on this one printed tracebacks there."""
    try:
        return await phase
    finally:
        await finish_loop_tasks()


def main(argv: list[str] | None = None) -> int:
    args = _parse_args(argv)
    signal.signal(signal.SIGTERM, _raise_on_sigterm)
    if not args.txn_only:
        try:
            find_etcd()  # before any waiting: the etcd half needs it
        except EtcdClusterError as e:
            print(f"compare.py: {e}", file=sys.stderr)
            return 2
    return _compare(args, argv)


def _compare(args: argparse.Namespace, argv: list[str] | None) -> int:
    machine = machine_info()
    baseline = foreign_baseline()
    print(
        f"machine: nproc={machine['cpu_count']} cpu={machine['cpu_model']!r} "
        f"python={machine['python']}; other processes before start: "
        f"{baseline['other_share']:.0%} of all CPU, loadavg {baseline['loadavg_1m']:.1f}",
        flush=True,
    )
    doc: dict[str, Any] = {
        "argv": sys.argv[1:] if argv is None else argv,
        "machine": machine,
        "versions": _versions(),
        "foreign_baseline": baseline,
        "settings": {
            "duration_s": args.duration,
            "warmup_s": args.warmup,
            "repeat": args.repeat,
            "max_foreign_cpu": args.max_foreign_cpu,
            "attempts": args.attempts,
            "key_count": args.key_count,
            "value_size": args.value_size,
            "txn_keys_per_shard": args.txn_keys,
            "hot_keys": args.hot_keys,
            "paxos_timeouts": args.paxos_timeouts,
            "paxos_settings": PAXOS_TIMEOUTS[args.paxos_timeouts] or "node defaults",
            "txn_retry_timeout_s": args.retry_timeout,
        },
    }
    failed = False
    output: list[str] = []
    with tempfile.TemporaryDirectory(prefix="paxoskv-compare-") as tmp:
        root = Path(tmp)
        if not args.txn_only:
            with (
                EtcdCluster(size=3) as etcd,
                local_cluster(
                    root, "kv", nodes=3, split_points=[], paxos=paxos_settings(args.paxos_timeouts)
                ) as pkv,
            ):
                print(
                    f"etcd pids={etcd.pids} leader={etcd.leader_endpoint()}; paxoskv "
                    f"(1 shard) pids={_node_pids(pkv)}",
                    flush=True,
                )
                reports, rows = asyncio.run(_to_the_end(kv_phase(args, etcd, pkv)))
            doc["kv"] = {"medians": rows, "runs": [r.to_dict() for r in reports]}
            failed |= any(r.errors or r.misses for r in reports)
            table = kv_table(rows)
            doc["kv"]["table"] = table
            output += ["", "paxoskv (3 nodes, 1 shard) vs etcd (3 members), same run:", *table]
            print("\n".join(output), flush=True)
        if args.txn or args.txn_only:
            with local_cluster(
                root, "txn", nodes=3, shards=3, paxos=paxos_settings(args.paxos_timeouts)
            ) as pkv3:
                print(f"paxoskv (3 shards) pids={_node_pids(pkv3)}", flush=True)
                reports, rows = asyncio.run(_to_the_end(txn_phase(args, pkv3)))
            doc["txn"] = {"medians": rows, "runs": [r.to_dict() for r in reports]}
            failed |= any(r.errors or r.misses for r in reports)
            table = txn_tables(rows, args.hot_keys)
            doc["txn"]["table"] = table
            lines = ["", "transactions, paxoskv 3 nodes, 3 shards:", *table]
            output += lines
            print("\n".join(lines), flush=True)
    doc["foreign_after"] = foreign_baseline()
    print(
        f"\nmachine: nproc={machine['cpu_count']} cpu={machine['cpu_model']!r}; other "
        f"processes: {baseline['other_share']:.0%} before, "
        f"{doc['foreign_after']['other_share']:.0%} after (per-run shares in the tables)"
    )
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(doc, indent=2, sort_keys=True, allow_nan=False) + "\n")
        print(f"wrote {args.json}")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
