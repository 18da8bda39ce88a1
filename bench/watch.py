"""What a watch costs: how soon it shows a commit, and what one round over a range costs.

    paxoskv cluster start --data-dir /tmp/c --shards 3
    python bench/watch.py --cluster "$PAXOSKV_CLUSTER" [--writes 200] [--keys 100,1000,10000]
        [--json FILE]

1. Delay: one client puts a key every `--gap-ms` (default 20) under a fresh prefix spanning
   the three default shards while another watches the prefix (`poll_s` 0.1, the default,
   and 0.02); per write, the time from the put's answer to the watch handing its change
   over. Printed as p50 / p99 / max.
2. Round cost: a watch reads its whole range every round (`shard/changes.py`: every
   version record of the range, up to 10,000 a page). For ranges holding N keys (one
   version each, written first), the time of one round that finds nothing new: a fresh
   timestamp, then one read of changes per shard (more pages past 10,000 records), p50 of
   20 rounds, and the CPU the three nodes spent per round (`shard.cpu_meter`, when
   `--data-dir` names the local cluster).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import secrets
import sys
import time
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # `python bench/watch.py`: make the repository root importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from router.watch_lanes import ChangesRound
from shard.bench_harness import percentile
from shard.cluster import LocalCluster
from shard.cpu_meter import CpuMeter
from txn import AsyncClient, prefix_end

ROUNDS = 20


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--cluster", required=True, help="HOST:PORT[,HOST:PORT...]")
    p.add_argument("--data-dir", type=Path, help="the local cluster's directory (node CPU)")
    p.add_argument("--writes", type=int, default=200, help="writes timed per poll interval")
    p.add_argument("--gap-ms", type=float, default=20.0, help="pause between writes")
    p.add_argument("--keys", default="100,1000,10000", help="range sizes for the round cost")
    p.add_argument("--json", type=Path, help="write the results here")
    return p.parse_args(argv)


async def _delays(client: AsyncClient, writes: int, gap_s: float, poll_s: float) -> list[float]:
    """Seconds from each put's answer to the watch handing its change over."""
    # One key after another in each of the three default shards (split at "j" and "r").
    tag = secrets.token_hex(3).encode()
    keys = [b"%c-%s/%d" % (b"ckt"[i % 3], tag, i) for i in range(writes)]
    acked: dict[bytes, float] = {}
    seen: dict[bytes, float] = {}
    async with client.watch(b"c", b"u", poll_s=poll_s) as watch:

        async def read() -> None:
            while not all(k in seen for k in keys):
                for change in await watch.next_batch():
                    seen.setdefault(change.key, time.perf_counter())

        reader = asyncio.ensure_future(read())
        for key in keys:
            await client.put(key, b"v")
            acked[key] = time.perf_counter()
            await asyncio.sleep(gap_s)
        await asyncio.wait_for(reader, 30)
    return [seen[k] - acked[k] for k in keys]


async def _round_cost(client: AsyncClient, n: int, node_pids: list[int]) -> dict[str, Any]:
    """p50 seconds of an idle round over a range holding `n` keys, and node CPU per round."""
    prefix = b"r-" + secrets.token_hex(3).encode() + b"/"
    for start in range(0, n, 500):
        async with client.transaction() as tx:
            for i in range(start, min(n, start + 500)):
                tx.put(prefix + b"%08d" % i, b"v" * 16)
    end = prefix_end(prefix)
    watch = client.watch(prefix, end)
    after = await watch.start()
    times = []
    meter = CpuMeter(node_pids)
    for _ in range(ROUNDS):
        began = time.perf_counter()
        at = await client._timestamp()
        parts = [(s, e) for _, s, e in watch._plan(prefix, end)]
        changes_round = ChangesRound(parts, after, at)
        while (lane := changes_round.next_lane()) is not None:
            await watch._read_lane(changes_round, lane)
        times.append(time.perf_counter() - began)
        after = at
    each = meter.result()["servers_each_s"]
    assert isinstance(each, list)
    result: dict[str, Any] = {"keys": n, "round_p50_ms": percentile(sorted(times), 50) * 1e3}
    if node_pids:
        result["node_cpu_ms_per_round"] = sum(each) / ROUNDS * 1e3
    return result


async def main(args: argparse.Namespace) -> dict[str, Any]:
    node_pids: list[int] = []
    if args.data_dir is not None:
        cluster = LocalCluster(args.data_dir)
        node_pids = [pid for pid in (cluster.pid(n) for n in cluster.names) if pid is not None]
    out: dict[str, Any] = {"delay": {}, "rounds": []}
    async with AsyncClient(args.cluster, timeout_s=30) as client:
        for poll_s in (0.1, 0.02):
            delays = sorted(await _delays(client, args.writes, args.gap_ms / 1e3, poll_s))
            row = {
                "p50_ms": percentile(delays, 50) * 1e3,
                "p99_ms": percentile(delays, 99) * 1e3,
                "max_ms": delays[-1] * 1e3,
            }
            out["delay"][f"poll_{poll_s:g}s"] = row
            print(
                f"delay, poll {poll_s:g} s: p50 {row['p50_ms']:.1f} ms, p99 "
                f"{row['p99_ms']:.1f} ms, max {row['max_ms']:.1f} ms ({args.writes} writes)"
            )
        for n in [int(k) for k in args.keys.split(",") if k]:
            row = await _round_cost(client, n, node_pids)
            out["rounds"].append(row)
            cpu = row.get("node_cpu_ms_per_round")
            print(
                f"idle round over {n} keys: p50 {row['round_p50_ms']:.2f} ms"
                + ("" if cpu is None else f", node CPU {cpu:.2f} ms per round")
            )
    return out


if __name__ == "__main__":
    arguments = parse_args()
    results = asyncio.run(main(arguments))
    if arguments.json is not None:
        arguments.json.write_text(json.dumps(results, indent=2) + "\n")
