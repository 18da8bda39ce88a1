"""`paxoskv bench`: closed-loop load against a running cluster (shard.bench_harness).

One `RoutingClient` is shared by every client coroutine of the process (its Batch streams
batch their requests), so `--clients N` is N operations outstanding over one connection per
node. Prints one summary line (throughput, p50/p99/p99.9), progress about once a second on
stderr for runs over 3 s, and writes the `BenchReport` JSON (`--json`), with extras: the
client's gRPC message counts (requests per message each way) and CPU seconds used by this
process, by the `--node-pids` given, and by the whole machine during the run.

Example::

    paxoskv bench --cluster 127.0.0.1:7001 --workload put --clients 64 --duration 10 \\
        --json /tmp/put64.json
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any


def register_bench_command(subparsers: Any) -> None:
    """Add `bench` to the `paxoskv` parser's subcommands."""
    from shard.cli_kv import ENV_CLUSTER

    bench = subparsers.add_parser(
        "bench",
        help="measure throughput and latency against a running cluster",
        description="Closed-loop load against a running cluster: N client coroutines share "
        "one client (its Batch streams batch their requests); prints throughput and "
        "p50/p99/p99.9 latency, progress once a second on stderr for runs over 3 s, and "
        "writes the full report as JSON with --json.",
    )
    bench.add_argument(
        "--cluster",
        metavar="HOST:PORT[,HOST:PORT...]",
        default=None,
        help=f"client addresses of some nodes (default: ${ENV_CLUSTER})",
    )
    bench.add_argument(
        "--debug", action="store_true", default=argparse.SUPPRESS, help="show tracebacks"
    )
    bench.add_argument("--workload", choices=("put", "get", "mixed"), default="put")
    bench.add_argument("--clients", type=int, default=1, help="operations outstanding (1)")
    bench.add_argument("--duration", type=float, default=10.0, help="seconds measured (10)")
    bench.add_argument("--warmup", type=float, default=1.0, help="seconds not measured (1)")
    bench.add_argument("--value-size", type=int, default=100, help="bytes per value (100)")
    bench.add_argument("--keys", type=int, default=10_000, help="key space size (10000)")
    bench.add_argument(
        "--read-fraction", type=float, default=0.5, help="share of gets in 'mixed' (0.5)"
    )
    bench.add_argument("--seed", type=int, default=0)
    bench.add_argument("--timeout", type=float, default=10.0, help="deadline per operation")
    bench.add_argument(
        "--node-pids",
        default="",
        help="comma-separated pids of the node processes, to report their CPU use",
    )
    bench.add_argument("--json", metavar="FILE", default=None, help="write the report here")
    bench.set_defaults(handler=_cmd_bench)


def _proc_cpu_s(pid: int | str) -> float:
    """User+system CPU seconds of one process (0 when it is gone)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return 0.0


def _machine_cpu_s() -> float:
    """Busy CPU seconds of all cores since boot (user, nice, system, irq, softirq)."""
    try:
        with open("/proc/stat") as f:
            fields = f.readline().split()[1:]
        user, nice, system, _idle, _iowait, irq, softirq = (int(x) for x in fields[:7])
        return (user + nice + system + irq + softirq) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError):
        return 0.0


class _CpuMeter:
    def __init__(self, node_pids: list[int]) -> None:
        self.node_pids = node_pids
        self.start = self._sample()

    def _sample(self) -> tuple[float, float, float, float]:
        nodes = sum(_proc_cpu_s(p) for p in self.node_pids)
        return time.monotonic(), _machine_cpu_s(), time.process_time(), nodes

    def result(self) -> dict[str, Any]:
        t1, machine1, me1, nodes1 = self._sample()
        t0, machine0, me0, nodes0 = self.start
        wall = t1 - t0
        capacity = wall * (os.cpu_count() or 1)
        client = me1 - me0
        nodes = nodes1 - nodes0
        machine = machine1 - machine0
        return {
            "wall_s": round(wall, 3),
            "capacity_s": round(capacity, 3),
            "client_s": round(client, 3),
            "nodes_s": round(nodes, 3) if self.node_pids else None,
            "machine_busy_s": round(machine, 3),
            "other_s": round(max(0.0, machine - client - nodes), 3),
        }


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


def _cmd_bench(args: argparse.Namespace) -> int:
    import asyncio

    from router.client import RoutingClient
    from shard.bench_harness import ProgressSample, run_workload
    from shard.cli_kv import UsageError, _seeds

    seeds = _seeds(args)
    if args.clients < 1:
        raise UsageError("--clients must be >= 1")
    if args.duration <= 0:
        raise UsageError("--duration must be > 0")
    try:
        node_pids = [int(p) for p in args.node_pids.split(",") if p.strip()]
    except ValueError:
        raise UsageError(
            f"--node-pids must be comma-separated integers: {args.node_pids!r}"
        ) from None
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
        client = RoutingClient(seeds, timeout_s=args.timeout)
        meter: list[_CpuMeter] = []
        try:
            await client.connect()
            driver = PaxosKvDriver(client)
            stats_before: list[dict[str, int]] = []

            def on_start() -> None:
                stats_before.append(client.stats())
                meter.append(_CpuMeter(node_pids))

            report = await run_workload(
                lambda: driver,
                args.workload,
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
            after = client.stats()
            before = stats_before[0] if stats_before else dict.fromkeys(after, 0)
            delta = {k: after[k] - before.get(k, 0) for k in after}
            if delta["messages_out"]:
                delta["requests_per_message_out"] = round(
                    delta["requests_out"] / delta["messages_out"], 2
                )
            if delta["messages_in"]:
                delta["responses_per_message_in"] = round(
                    delta["responses_in"] / delta["messages_in"], 2
                )
            report.extra["grpc"] = delta
            if meter:
                report.extra["cpu"] = meter[0].result()
            shard_map = client.shard_map
            if shard_map is not None:
                report.extra["shards"] = len(shard_map.group_ids())
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
        nodes = f" nodes={cpu['nodes_s']}s" if cpu["nodes_s"] is not None else ""
        details.append(
            f"cpu: client={cpu['client_s']}s{nodes} machine={cpu['machine_busy_s']}s "
            f"of {cpu['capacity_s']}s"
        )
    if details:
        print("  " + "  ".join(details))
    if report.first_errors:
        print(f"  first errors: {report.first_errors[:3]}", file=sys.stderr)
    if args.json:
        path = Path(args.json)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(report.to_json() + "\n")
    return 0 if report.ops > 0 else 1
