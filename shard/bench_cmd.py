"""`paxoskv bench`: closed-loop load against a running cluster (shard.bench_harness).

One `txn.AsyncClient` (and its `RoutingClient`) is shared by every client coroutine of the
process (its Batch streams batch their requests), so `--clients N` is N operations
outstanding over one connection per node. Prints one summary line (throughput, p50/p99/p99.9),
progress about once a second on stderr for runs over 3 s, and writes the `BenchReport` JSON
(`--json`), with extras: the client's gRPC message counts (requests per message each way) and
CPU seconds (shard.cpu_meter) used by this process, by each of the `--node-pids` given, by
interrupts and by everything else during the run.

Workloads: `put`, `get`, `mixed` (single-key operations through the routing client), and the
transactions of shard/bench_txn.py through the AsyncClient's retry loop (`client.run`):
`txn1` (read-modify-write of one key of one shard, 1PC), `txn2` / `txn3` (one key read and
written on each of 2 / 3 shards, 2PC), `ro` (snapshot reading one key on each of 3 shards)
`bank` (transfers between accounts over all shards; `--hot-keys N` limits them to N
accounts) and `counter` (increments of `--hot-keys N` counters, default 1, in one shard, by
atomic adds, or by a read and a write with `--read-modify-write`). For transactions `--keys` is the key space over all shards (the bank: the number
of accounts), the latency is per committed transaction including its retries, and the
report adds `committed`, `aborts` (tries that hit a conflict), `retries` and `abort_rate`.
The bank and counter runs end with a snapshot audit of the total (exit status 1 if it is
wrong).

Example::

    paxoskv bench --cluster 127.0.0.1:7001 --workload put --clients 64 --duration 10 \\
        --json /tmp/put64.json
    paxoskv bench --workload bank --hot-keys 4 --clients 16 --duration 5
    paxoskv bench --workload counter --clients 64 --duration 5
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from shard.cli_kv import (
    UsageError,
    bounded_int,
    connection_options,
    non_negative_seconds,
    positive_seconds,
)

KV_WORKLOADS = ("put", "get", "mixed")
# shard.bench_txn.TXN_WORKLOADS, repeated so the CLI starts without importing the client.
TXN_WORKLOADS = ("txn1", "txn2", "txn3", "ro", "bank", "counter")


def register_bench_command(subparsers: Any) -> None:
    """Add `bench` to the `paxoskv` parser's subcommands."""
    bench = subparsers.add_parser(
        "bench",
        parents=[connection_options("deadline per operation in seconds (10)")],
        help="measure throughput and latency against a running cluster",
        description="Closed-loop load against a running cluster: N client coroutines share "
        "one client (its Batch streams batch their requests); prints throughput and "
        "p50/p99/p99.9 latency, progress once a second on stderr for runs over 3 s, and "
        "writes the full report as JSON with --json. It writes (and leaves) its own keys: "
        "bench/NNNNNNNNNN for put, get and mixed, and under each shard's start key "
        "<start>bench/txn/..., <start>bench/bank/... and <start>bench/counter/... for the "
        "transaction workloads: run "
        "it against a cluster whose data may take them.",
        # Found by a new user's review: "other=3.74s (94%)" said nothing of what it counts.
        epilog="The cpu: line is CPU seconds during the measured run: client is this "
        "process, nodes the --node-pids processes (each in parentheses), irq the interrupts "
        "(mostly the run's own loopback traffic), other every other process on the machine "
        "(the nodes too when --node-pids does not name them), and 'of' all the cores' time "
        "(seconds x cores), of which other's share is given. Once the nodes are named, a high "
        "other share means other processes disturbed the run.",
    )
    bench.add_argument(
        "--workload",
        choices=(*KV_WORKLOADS, *TXN_WORKLOADS),
        default="put",
        help="put, get, mixed: single keys; txn1, txn2, txn3: transactions on 1-3 shards; "
        "ro: read-only snapshots; bank: transfers; counter: increments of hot counters "
        "(default put)",
    )
    bench.add_argument(
        "--clients", type=bounded_int(1), default=1, help="operations outstanding (1)"
    )
    bench.add_argument(
        "--duration", type=positive_seconds, default=10.0, help="seconds measured (10)"
    )
    bench.add_argument(
        "--warmup", type=non_negative_seconds, default=1.0, help="seconds not measured (1)"
    )
    bench.add_argument("--value-size", type=_value_size, default=100, help="bytes per value (100)")
    bench.add_argument(
        "--keys",
        type=bounded_int(1),
        default=10_000,
        help="key space size (10000); transactions: over all shards; bank: accounts",
    )
    bench.add_argument(
        "--hot-keys",
        type=bounded_int(1),
        default=None,
        metavar="N",
        help="bank: every transfer uses only these N accounts (at least 2; contention); "
        "counter: the number of counters (default 1)",
    )
    bench.add_argument(
        "--optimistic",
        action="store_true",
        help="bank, counter with --read-modify-write: plain optimistic reads instead of "
        "reads for update (update locks)",
    )
    bench.add_argument(
        "--read-modify-write",
        action="store_true",
        help="counter: read the counter and write it back plus one, instead of an atomic add",
    )
    bench.add_argument(
        "--read-fraction", type=_fraction, default=0.5, help="share of gets in 'mixed' (0.5)"
    )
    bench.add_argument(
        "--seed", type=int, default=0, help="seed of the keys and values drawn (default 0)"
    )
    bench.add_argument(
        "--retry-timeout",
        type=positive_seconds,
        default=30.0,
        help="transactions: give up retrying one (TooManyRetries, an error) after this (30 s)",
    )
    bench.add_argument(
        "--node-pids",
        type=_pids,
        default=[],
        help="comma-separated pids of the node processes, to report their CPU use",
    )
    bench.add_argument("--json", metavar="FILE", default=None, help="write the report here")
    bench.set_defaults(handler=_cmd_bench)


class PaxosKvDriver:
    """A bench_harness Driver over one shared RoutingClient (the command closes it)."""

    def __init__(self, client: Any) -> None:
        self.client = client

    async def put(self, key: bytes, value: bytes) -> None:
        await self.client.put(key, value)

    async def get(self, key: bytes) -> bytes | None:
        found = await self.client.get(key)
        return None if found is None else found[0]

    async def close(self) -> None:
        return None


def grpc_delta(before: dict[str, int] | None, after: dict[str, int]) -> dict[str, Any]:
    """The routing client's message counters over a run, with requests per message."""
    base = before or dict.fromkeys(after, 0)
    delta: dict[str, Any] = {k: after[k] - base.get(k, 0) for k in after}
    if delta["messages_out"]:
        delta["requests_per_message_out"] = round(delta["requests_out"] / delta["messages_out"], 2)
    if delta["messages_in"]:
        delta["responses_per_message_in"] = round(delta["responses_in"] / delta["messages_in"], 2)
    return delta


def _value_size(text: str) -> int:
    """argparse type of --value-size: 0 up to the value limit."""
    from shard.limits import MAX_VALUE_BYTES  # here: a slow import, and --help must stay fast

    return bounded_int(0, MAX_VALUE_BYTES, " bytes (the value limit)")(text)


def _fraction(text: str) -> float:
    """argparse type of --read-fraction: a share from 0 to 1."""
    try:
        share = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not 0 <= share <= 1:  # also refuses nan
        raise argparse.ArgumentTypeError(f"must be from 0 to 1, got {text!r}")
    return share


def _pids(text: str) -> list[int]:
    """argparse type of --node-pids: comma-separated process ids."""
    try:
        return [int(pid) for pid in text.split(",") if pid.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"not comma-separated integers: {text!r}") from None


def _check_json_path(path: Path) -> None:
    """Checked before the run (found by review: the run's results were lost after it). A
    missing directory is a mistyped path, not one to create (found by review: `--json
    /nonexistent/x.json` created /nonexistent)."""
    if path.is_dir():
        raise UsageError(f"--json {path} is a directory: give a file name")
    if not path.parent.is_dir():
        raise UsageError(f"--json {path}: the directory {path.parent} does not exist")


def _cmd_bench(args: argparse.Namespace) -> int:
    import asyncio

    from shard.bench_harness import ProgressSample, run_workload
    from shard.bench_txn import (
        TxnDriver,
        bank_expected_total,
        bank_total,
        build_txn_workload,
        counter_expected_total,
        counter_total,
    )
    from shard.cli_kv import seeds_from, tls_from
    from shard.cpu_meter import CpuMeter
    from txn.client import AsyncClient

    seeds = seeds_from(args)
    tls = tls_from(args)
    if args.hot_keys is not None and args.workload not in ("bank", "counter"):
        raise UsageError("--hot-keys is for --workload bank or counter")
    if args.read_modify_write and args.workload != "counter":
        raise UsageError("--read-modify-write is for --workload counter")
    if args.json:
        _check_json_path(Path(args.json))
    node_pids = args.node_pids
    verbose_progress = args.duration > 3

    def progress(sample: ProgressSample) -> None:
        if sample.elapsed_s < 0:
            phase = "warmup"
        else:
            phase = f"{sample.elapsed_s:5.1f}s"
        print(
            f"  {phase}  ops={sample.ops:<8} {sample.rate_ops_s:9.0f} ops/s  "
            f"errors={sample.errors}",
            file=sys.stderr,
            flush=True,
        )

    async def main() -> Any:
        client = AsyncClient(
            seeds,
            cluster_id=args.cluster_id,
            timeout_s=args.timeout,
            retry_timeout_s=args.retry_timeout,
            tls=tls,
        )
        meter: list[CpuMeter] = []
        try:
            await client.connect()
            routing = client.routing
            shard_map = routing.shard_map
            assert shard_map is not None
            shards = len(shard_map.ranges)
            workload: Any = args.workload
            driver: Any = PaxosKvDriver(routing)
            if args.workload in TXN_WORKLOADS:
                try:
                    workload = build_txn_workload(
                        args.workload,
                        shard_map,
                        keys_per_shard=max(1, args.keys // shards),
                        value_size=args.value_size,
                        accounts=args.keys,
                        hot_keys=args.hot_keys,
                        lock_reads=not args.optimistic,
                        read_modify_write=args.read_modify_write,
                    )
                except ValueError as exc:
                    raise UsageError(str(exc)) from None
                driver = TxnDriver(client)
            stats_before: list[dict[str, int]] = []

            def on_start() -> None:
                stats_before.append(routing.stats())
                meter.append(CpuMeter(node_pids))

            report = await run_workload(
                lambda: driver,
                workload,
                args.clients,
                args.duration,
                key_count=args.keys,
                value_size=args.value_size,
                connections=1,
                read_fraction=args.read_fraction,
                warmup_s=args.warmup,
                progress=progress if verbose_progress else None,
                seed=args.seed,
                target="paxoskv",
                extra={"cluster": seeds},
                on_start=on_start,
            )
            report.extra["grpc"] = grpc_delta(
                stats_before[0] if stats_before else None, routing.stats()
            )
            if meter:
                report.extra["cpu"] = meter[0].result()
            report.extra["shards"] = shards
            if args.workload == "bank":
                accounts, expected = bank_expected_total(workload)
                found = await bank_total(client, accounts)
                report.extra["bank_total"] = {
                    "accounts": len(accounts),
                    "expected": expected,
                    "found": found,
                    "ok": found == expected,
                }
            if args.workload == "counter":
                counters, least, most = counter_expected_total(workload)
                found = await counter_total(client, counters)
                report.extra["counter_total"] = {
                    "counters": len(counters),
                    "committed": least,
                    "most": most,
                    "found": found,
                    "ok": least <= found <= most,
                }
                report.extra["increments"] = (
                    "read-modify-write" if args.read_modify_write else "atomic"
                )
            if args.hot_keys is not None:
                report.extra["hot_keys"] = args.hot_keys
            if args.workload == "bank" or args.read_modify_write:
                report.extra["reads"] = "optimistic" if args.optimistic else "for_update"
            return report
        finally:
            await client.close()

    report = asyncio.run(main())
    print(report.summary_line())
    grpc_stats = report.extra.get("grpc", {})
    cpu = report.extra.get("cpu")
    details = []
    if "requests_per_message_out" in grpc_stats:
        details.append(
            f"requests/message out={grpc_stats['requests_per_message_out']} "
            f"in={grpc_stats.get('responses_per_message_in')}"
        )
    if cpu:
        each = ",".join(f"{s:g}" for s in cpu["servers_each_s"])
        nodes = f" nodes={cpu['servers_s']}s ({each})" if each else ""
        details.append(
            f"cpu: client={cpu['client_s']}s{nodes} irq={cpu['irq_s']}s "
            f"other={cpu['other_s']}s ({cpu['other_share']:.0%}) of {cpu['capacity_s']}s"
        )
    if details:
        print("  " + "  ".join(details))
    if report.first_errors:
        print(f"  first errors: {report.first_errors[:3]}", file=sys.stderr)
    if args.json:
        Path(args.json).write_text(report.to_json() + "\n")
    audit = report.extra.get("bank_total")
    if audit is not None:
        verdict = "ok" if audit["ok"] else "WRONG"
        print(
            f"  bank total after the run: {audit['found']} (expected {audit['expected']}, "
            f"{audit['accounts']} accounts): {verdict}"
        )
        if not audit["ok"]:
            return 1
    counted = report.extra.get("counter_total")
    if counted is not None:
        verdict = "ok" if counted["ok"] else "WRONG"
        unsure = counted["most"] - counted["committed"]
        maybe = f", {unsure} more maybe" if unsure else ""
        print(
            f"  counters after the run: {counted['found']} (increments committed "
            f"{counted['committed']}{maybe}, {counted['counters']} counters): {verdict}"
        )
        if not counted["ok"]:
            return 1
    if report.ops == 0:
        # Found by review: the run ended with exit 1, errors=0 and no word of why.
        failed = f"{report.errors} failed" if report.errors else "none failed either"
        print(
            f"paxoskv: error: no operation completed in the run ({failed}): does every group "
            "have a leader? see `paxoskv status`",
            file=sys.stderr,
        )
        return 1
    return 0
