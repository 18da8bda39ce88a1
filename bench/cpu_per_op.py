"""Latency and CPU per operation of one sequential client: where a 2-shard commit's time goes.

Example (from the repository root)::

    paxoskv cluster start --data-dir /tmp/c --shards 3
    python bench/cpu_per_op.py --data-dir /tmp/c --duration 4
    paxoskv cluster stop --data-dir /tmp/c

Against a running local cluster (its directory gives the addresses and the node pids), one
client issues one operation at a time for `--duration` seconds per mode and prints, per mode,
the p50/p99 latency (and of the commit call alone for transactions) and the CPU seconds per
operation of the client and of each node (shard.cpu_meter), so a latency can be set against
the CPU the whole machine spent on it. Modes, each on random keys of distinct data shards:

- `put`: one single-key put;
- `par2`: two single-key puts on two shards at once (two Paxos rounds in parallel, no
  transaction): the floor a 2-shard commit could reach on this machine;
- `txn2w`: a blind write of one key on each of two shards (the commit is the Prepares);
- `txn2`: read both keys, then write both (the `paxoskv bench --workload txn2` shape);
- `readback`: `txn2w`, then a linearizable get of one key and a snapshot read of both:
  reads right after a commit, which meet its intents until its Resolves are applied (node
  rule 14 serves them at once); `read_p50_ms` is the reads' part.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # `python bench/cpu_per_op.py`: make the repository root importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from shard.bench_harness import percentile
from shard.bench_txn import data_groups, keys_in_group
from shard.cluster import LocalCluster
from shard.cpu_meter import CpuMeter
from txn.client import AsyncClient
from txn.errors import PaxosKVError

MODES = ("put", "par2", "txn2w", "txn2", "readback")
KEYS_PER_SHARD = 100
VALUE = b"v" * 100


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data-dir", type=Path, required=True, help="a `paxoskv cluster` directory")
    p.add_argument("--duration", type=float, default=4.0, help="seconds per mode")
    p.add_argument("--modes", default=",".join(MODES), help=f"comma-separated of {MODES}")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--json", type=Path, help="write the results here")
    args = p.parse_args(argv)
    args.modes = [m for m in args.modes.split(",") if m]
    if unknown := set(args.modes) - set(MODES):
        p.error(f"unknown modes {sorted(unknown)}; choose from {MODES}")
    if args.duration <= 0:
        p.error("--duration must be > 0")
    return args


class NoOperationSucceeded(RuntimeError):
    """A mode ended without one successful operation to time."""


def _percentile(sorted_values: list[float], q: float) -> float:
    # Nearest rank, as the harness's figures (`paxoskv bench`, bench/compare.py) it is set
    # against; int(n * q) took the next rank up (the p99 of 100 samples was their maximum).
    return percentile(sorted_values, q * 100.0)


async def _measure(
    client: AsyncClient,
    mode: str,
    duration_s: float,
    pick: Callable[[], tuple[bytes, bytes]],
    node_pids: list[int],
) -> dict[str, Any]:
    latencies: list[float] = []
    commits: list[float] = []
    reads: list[float] = []

    async def txn(k1: bytes, k2: bytes, read: bool) -> None:
        tx = client.transaction()
        if read:
            await asyncio.gather(tx.get(k1), tx.get(k2))
        tx.put(k1, VALUE)
        tx.put(k2, VALUE)
        started = time.perf_counter()
        await tx.commit()
        commits.append(time.perf_counter() - started)

    async def readback(k1: bytes, k2: bytes) -> None:
        await txn(k1, k2, read=False)
        started = time.perf_counter()
        await client.get(k1)
        async with client.snapshot() as snap:
            await asyncio.gather(snap.get(k1), snap.get(k2))
        reads.append(time.perf_counter() - started)

    operations: dict[str, Callable[[bytes, bytes], Awaitable[Any]]] = {
        "put": lambda k1, _k2: client.put(k1, VALUE),
        "par2": lambda k1, k2: asyncio.gather(client.put(k1, VALUE), client.put(k2, VALUE)),
        "txn2w": lambda k1, k2: txn(k1, k2, read=False),
        "txn2": lambda k1, k2: txn(k1, k2, read=True),
        "readback": readback,
    }
    operation = operations[mode]
    meter = CpuMeter(node_pids)
    errors = 0
    end = time.perf_counter() + duration_s
    while time.perf_counter() < end:
        k1, k2 = pick()
        started = time.perf_counter()
        try:
            await operation(k1, k2)
        except PaxosKVError:
            # E.g. OutcomeUnknown while a fresh cluster moves its leaders to their preferred
            # nodes: counted, not timed, as `paxoskv bench` does.
            errors += 1
            continue
        latencies.append(time.perf_counter() - started)
    cpu = meter.result()
    ops = len(latencies)
    if not ops:
        raise NoOperationSucceeded(f"{mode}: every operation failed ({errors}); is the cluster up?")
    latencies.sort()
    commits.sort()
    reads.sort()
    each = cpu["servers_each_s"]
    assert isinstance(each, list)
    return {
        "mode": mode,
        "ops": ops,
        "errors": errors,
        "p50_ms": round(_percentile(latencies, 0.5) * 1e3, 3),
        "p99_ms": round(_percentile(latencies, 0.99) * 1e3, 3),
        "commit_p50_ms": round(_percentile(commits, 0.5) * 1e3, 3) if commits else None,
        "read_p50_ms": round(_percentile(reads, 0.5) * 1e3, 3) if reads else None,
        "client_cpu_us_per_op": round(float(cpu["client_s"]) / ops * 1e6),
        "node_cpu_us_per_op": [round(s / ops * 1e6) for s in each],
        "other_share": cpu["other_share"],
    }


async def _run(args: argparse.Namespace) -> list[dict[str, Any]]:
    cluster = LocalCluster(args.data_dir)
    node_pids = [pid for pid in (cluster.pid(n) for n in cluster.names) if pid is not None]
    if len(node_pids) != len(cluster.names):
        raise SystemExit(f"not every node of {args.data_dir} is running (paxoskv cluster start)")
    client = AsyncClient([n.address for n in cluster.config.nodes], tls=cluster.client_tls)
    try:
        await client.connect()
        shard_map = client.routing.shard_map
        assert shard_map is not None
        groups = data_groups(shard_map)
        if len(groups) < 2:
            raise SystemExit("the cluster needs at least 2 data shards (--shards 3)")
        keys = {g: keys_in_group(shard_map, g, KEYS_PER_SHARD, b"cpu") for g in groups}
        rng = random.Random(args.seed)

        def pick() -> tuple[bytes, bytes]:
            g1, g2 = rng.sample(groups, 2)
            return rng.choice(keys[g1]), rng.choice(keys[g2])

        results = []
        for mode in args.modes:
            result = await _measure(client, mode, args.duration, pick, node_pids)
            commit = f" commit p50={result['commit_p50_ms']} ms" if result["commit_p50_ms"] else ""
            if result["read_p50_ms"]:
                commit += f" reads p50={result['read_p50_ms']} ms"
            nodes = ",".join(str(c) for c in result["node_cpu_us_per_op"])
            print(
                f"{mode:8s} ops={result['ops']:<6d} errors={result['errors']} "
                f"p50={result['p50_ms']} ms "
                f"p99={result['p99_ms']} ms{commit}  cpu per op: client "
                f"{result['client_cpu_us_per_op']} us, nodes {nodes} us  "
                f"(other processes {result['other_share']:.0%})",
                flush=True,
            )
            results.append(result)
        return results
    finally:
        await client.close()


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    try:
        results = asyncio.run(_run(args))
    except NoOperationSucceeded as exc:
        raise SystemExit(f"cpu_per_op: {exc}") from None
    if args.json:
        args.json.write_text(json.dumps({"results": results}, indent=2) + "\n")


if __name__ == "__main__":
    main()
