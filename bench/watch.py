"""What a watch costs: how soon it shows a commit, and what one round over a range costs.

    paxoskv cluster start --data-dir /tmp/c --shards 3
    python bench/watch.py --cluster "$PAXOSKV_CLUSTER" [--writes 200] [--keys 100,1000,10000]
        [--no-etcd] [--json FILE]

1. Delay: one client puts a key every `--gap-ms` (default 20) under a fresh prefix spanning
   the three default shards while a watch of the same client process covers the prefix
   (default `progress_s`: changes pushed by the shards' waits); per write, the time from the
   put's answer to the watch handing its change over. Printed as p50 / p99 / max. The same
   against a 3-member etcd started from Debian's `etcd-server` in the same run (unless
   `--no-etcd`): KV.Put and a Watch stream, both to its leader. Last, the same with the
   whole key space watched, once part 2 stored its keys.
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
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # `python bench/watch.py`: make the repository root importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import grpc

from bench.etcd import rpc_pb2, rpc_pb2_grpc
from bench.etcd_cluster import EtcdCluster
from bench.etcd_driver import EtcdDriver
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
    p.add_argument("--writes", type=int, default=200, help="writes timed per system")
    p.add_argument("--gap-ms", type=float, default=20.0, help="pause between writes")
    p.add_argument("--keys", default="100,1000,10000", help="range sizes for the round cost")
    p.add_argument("--no-etcd", action="store_true", help="skip etcd's delay")
    p.add_argument("--json", type=Path, help="write the results here")
    return p.parse_args(argv)


def _keys(writes: int) -> list[bytes]:
    """One key after another in each of the three default shards (split at "j" and "r")."""
    tag = secrets.token_hex(3).encode()
    return [b"%c-%s/%d" % (b"ckt"[i % 3], tag, i) for i in range(writes)]


async def _delays(
    keys: list[bytes],
    put: Callable[[bytes], Awaitable[object]],
    watched: AsyncIterator[list[bytes]],
    gap_s: float,
) -> list[float]:
    """Seconds from each put's answer to `watched` yielding its key (negative: before)."""
    acked: dict[bytes, float] = {}
    seen: dict[bytes, float] = {}

    async def read() -> None:
        async for batch in watched:
            now = time.perf_counter()
            for key in batch:
                seen.setdefault(key, now)
            if all(k in seen for k in keys):
                return

    reader = asyncio.ensure_future(read())
    for key in keys:
        await put(key)
        acked[key] = time.perf_counter()
        await asyncio.sleep(gap_s)
    await asyncio.wait_for(reader, 30)
    return [seen[k] - acked[k] for k in keys]


async def _paxoskv_delays(
    client: AsyncClient, writes: int, gap_s: float, start: bytes = b"c", end: bytes | None = b"u"
) -> list[float]:
    async with client.watch(start, end) as watch:

        async def watched() -> AsyncIterator[list[bytes]]:
            async for batch in watch:
                yield [change.key for change in batch]

        return await _delays(_keys(writes), lambda k: client.put(k, b"v"), watched(), gap_s)


async def _etcd_delays(endpoint: str, writes: int, gap_s: float) -> list[float]:
    driver = await EtcdDriver(endpoint).connect()
    async with grpc.aio.insecure_channel(endpoint) as channel:
        call = rpc_pb2_grpc.WatchStub(channel).Watch()
        create = rpc_pb2.WatchCreateRequest(key=b"c", range_end=b"u")
        await call.write(rpc_pb2.WatchRequest(create_request=create))
        created = await call.read()
        assert isinstance(created, rpc_pb2.WatchResponse) and created.created, created

        async def watched() -> AsyncIterator[list[bytes]]:
            while True:
                response = await call.read()
                assert isinstance(response, rpc_pb2.WatchResponse), response
                yield [event.kv.key for event in response.events]

        try:
            return await _delays(_keys(writes), lambda k: driver.put(k, b"v"), watched(), gap_s)
        finally:
            call.cancel()
            await driver.close()


def _delay_row(name: str, delays: list[float], writes: int) -> dict[str, float]:
    delays = sorted(delays)
    row = {
        "p50_ms": percentile(delays, 50) * 1e3,
        "p99_ms": percentile(delays, 99) * 1e3,
        "max_ms": delays[-1] * 1e3,
    }
    print(
        f"delay, {name}: p50 {row['p50_ms']:.1f} ms, p99 {row['p99_ms']:.1f} ms, max "
        f"{row['max_ms']:.1f} ms ({writes} writes)",
        flush=True,
    )
    return row


async def _round_cost(client: AsyncClient, n: int, node_pids: list[int]) -> dict[str, Any]:
    """p50 seconds of an idle round over a range holding `n` keys, and node CPU per round."""
    prefix = b"w-" + secrets.token_hex(3).encode() + b"/"  # outside the delay's range
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
        while not changes_round.done:
            await watch._read_pages(changes_round)
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
    gap_s = args.gap_ms / 1e3
    async with AsyncClient(args.cluster, timeout_s=30) as client:
        delays = await _paxoskv_delays(client, args.writes, gap_s)
        out["delay"]["paxoskv"] = _delay_row("paxoskv", delays, args.writes)
        if not args.no_etcd:
            with EtcdCluster(size=3) as etcd:
                delays = await _etcd_delays(etcd.leader_endpoint(), args.writes, gap_s)
            out["delay"]["etcd"] = _delay_row("etcd (3 members)", delays, args.writes)
        for n in [int(k) for k in args.keys.split(",") if k]:
            row = await _round_cost(client, n, node_pids)
            out["rounds"].append(row)
            cpu = row.get("node_cpu_ms_per_round")
            print(
                f"idle round over {n} keys: p50 {row['round_p50_ms']:.2f} ms"
                + ("" if cpu is None else f", node CPU {cpu:.2f} ms per round"),
                flush=True,
            )
        stored = sum(row["keys"] for row in out["rounds"])
        delays = await _paxoskv_delays(client, args.writes, gap_s, b"", None)
        name = f"paxoskv, the whole key space watched ({stored:,} keys more stored)"
        out["delay"]["paxoskv_whole"] = _delay_row(name, delays, args.writes)
    return out


if __name__ == "__main__":
    arguments = parse_args()
    results = asyncio.run(main(arguments))
    if arguments.json is not None:
        arguments.json.write_text(json.dumps(results, indent=2) + "\n")
