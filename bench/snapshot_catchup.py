"""A follower catches up while the cluster serves writes: what does it cost?

    python bench/snapshot_catchup.py --keys 300000 --json /tmp/catchup.json
    python bench/snapshot_catchup.py --keys 300000 --compact-slots 500

Starts a 3-node, 1-shard cluster in a temporary directory, pauses one follower of the shard
(SIGSTOP), writes `--keys` distinct keys (100-byte values, 256 at a time), then resumes
it: it catches up from its leader's log, or, with `--compact-slots` below the slots the
load took, from a snapshot of the whole shard. Meanwhile a probe writes one key at a time
and records each put's latency. Reports how long the follower took to catch up, the probe's p50 / p99 / max
latency during the catch-up, how many groups took a new ballot or moved their leader, and
the nodes' "slow wake" log lines (a loop held past the threshold). Every process it started is stopped by
pid at the end, also on errors.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.compare import local_cluster
from router.client import RoutingClient
from router.client_errors import ClientError
from shard.cluster import LocalCluster
from shard.config import PaxosSettings

GROUP = 1
VALUE = b"v" * 100
SLOW_PROBE_MS = 100.0


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--keys", type=int, default=300_000, help="distinct keys to write")
    parser.add_argument("--concurrency", type=int, default=256)
    parser.add_argument("--deadline", type=float, default=300.0, help="catch-up deadline, s")
    parser.add_argument("--json", type=Path, help="also write the report here")
    parser.add_argument("--keep", type=Path, help="cluster directory to use and keep")
    parser.add_argument(
        "--compact-slots",
        type=int,
        help="the nodes' [paxos] compact_threshold (keep a tenth): below the slots the load "
        "takes, the follower needs a snapshot; by default it catches up from the log",
    )
    return parser.parse_args(argv)


def _applied(cluster: LocalCluster, name: str) -> int | None:
    status = cluster.status_all(timeout_s=1.0, names=[name]).get(name)
    if status is None:
        return None
    return next((g.applied_index for g in status.groups if g.group_id == GROUP), None)


def _leaders(cluster: LocalCluster) -> dict[int, tuple[str | None, str]]:
    return {g: (leader.leader, leader.ballot) for g, leader in cluster.leaders().items()}


def _slow_wakes(cluster: LocalCluster) -> list[dict[str, Any]]:
    out = []
    for name in cluster.names:
        for line in cluster.log_file(name).read_text(errors="replace").splitlines():
            if "slow wake" in line:
                try:
                    record = json.loads(line)
                except ValueError:
                    continue
                record["node"] = name
                out.append(record)
    return out


async def _load(client: RoutingClient, keys: int, concurrency: int) -> None:
    next_key = 0
    started = time.monotonic()

    async def worker() -> None:
        nonlocal next_key
        while next_key < keys:
            n = next_key
            next_key += 1
            await client.put(b"key%09d" % n, VALUE)
            if (n + 1) % 50_000 == 0:
                rate = (n + 1) / (time.monotonic() - started)
                print(f"  {n + 1:,} keys written ({rate:,.0f}/s)", flush=True)

    await asyncio.gather(*(worker() for _ in range(concurrency)))


async def _probe(
    client: RoutingClient,
    latencies: list[float],
    errors: list[str],
    slow: list[tuple[float, float]],
    stop: asyncio.Event,
) -> None:
    n = 0
    while not stop.is_set():
        started = time.perf_counter()
        try:
            await client.put(b"probe%d" % (n % 100), VALUE)
        except ClientError as exc:
            errors.append(f"{type(exc).__name__}: {exc}")
        latencies.append((time.perf_counter() - started) * 1e3)
        if latencies[-1] >= SLOW_PROBE_MS:
            slow.append((round(time.time() - latencies[-1] / 1e3, 3), round(latencies[-1], 1)))
        n += 1
        await asyncio.sleep(0.005)


async def _run(cluster: LocalCluster, args: argparse.Namespace) -> dict[str, Any]:
    leader = cluster.wait_for_leader(GROUP)
    follower = next(n for n in cluster.names if n != leader)
    print(f"pausing {follower} (a follower of group {GROUP}; the leader is {leader})")
    cluster.pause(follower)
    seeds = [a for n, a in cluster.addresses.items() if n != follower]
    async with RoutingClient(seeds, tls=cluster.client_tls) as client:
        print(f"writing {args.keys:,} keys")
        await _load(client, args.keys, args.concurrency)
        target = _applied(cluster, leader) or 0
        before = _leaders(cluster)
        wakes_before = len(_slow_wakes(cluster))
        latencies: list[float] = []
        errors: list[str] = []
        slow: list[tuple[float, float]] = []
        stop = asyncio.Event()
        probe = asyncio.create_task(_probe(client, latencies, errors, slow, stop))
        await asyncio.sleep(1.0)
        latencies.clear()
        slow.clear()
        print(f"resuming {follower}; it must reach applied index {target:,}")
        resumed = time.monotonic()
        resumed_at = time.time()
        cluster.resume(follower)
        caught_up = None
        while time.monotonic() - resumed < args.deadline:
            applied = await asyncio.to_thread(_applied, cluster, follower)
            if applied is not None and applied >= target:
                caught_up = time.monotonic() - resumed
                break
            await asyncio.sleep(0.1)
        await asyncio.sleep(1.0)
        stop.set()
        await probe
        after = _leaders(cluster)
    wakes = _slow_wakes(cluster)[wakes_before:]
    ordered = sorted(latencies)
    return {
        "keys": args.keys,
        "compact_slots": args.compact_slots,
        "catch_up_s": None if caught_up is None else round(caught_up, 2),
        "probe_puts": len(ordered),
        "probe_errors": errors,
        "probe_p50_ms": round(statistics.median(ordered), 2),
        "probe_p99_ms": round(ordered[int(0.99 * (len(ordered) - 1))], 2),
        "probe_max_ms": round(ordered[-1], 2),
        # (seconds after the resume when it started, ms) of every probe put that slow, to
        # set beside the nodes' logs.
        "probe_slow": [(round(at - resumed_at, 3), ms) for at, ms in slow],
        # A new ballot is an election, or a leader re-taking its group at once (Paxos rule
        # 12); a group whose leader is another node moved (an election or a transfer).
        "new_ballots": sum(1 for g in after if after[g][1] != before[g][1]),
        "leaders_moved": sum(1 for g in after if after[g][0] != before[g][0]),
        "slow_wakes": len(wakes),
        "slowest_wake_ms": max((w.get("wake_ms", 0) for w in wakes), default=0),
    }


def main(argv: list[str] | None = None) -> int:
    args = _parse_args(argv)
    root = args.keep or Path(tempfile.mkdtemp(prefix="paxoskv-catchup-"))
    paxos = None
    if args.compact_slots:
        paxos = PaxosSettings(
            compact_threshold=args.compact_slots, compact_keep=max(1, args.compact_slots // 10)
        )
    with local_cluster(root.parent, root.name, shards=1, paxos=paxos) as cluster:
        report = asyncio.run(_run(cluster, args))
    print(json.dumps(report, indent=2))
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    return 0 if report["catch_up_s"] is not None else 1


if __name__ == "__main__":
    sys.exit(main())
