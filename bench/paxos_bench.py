"""Paxos replica throughput: a 3-replica group in one process, no faults, no fsync.

    python bench/paxos_bench.py [--commands N] [--runs 3] [--json FILE] [--profile]

The group runs on the simulator's in-memory world (tests/sim/world.py): virtual time, a
network with a fixed 0.1 ms delay, in-memory disks (the persist is folded into a
DurableState, applies into a register application). The leader's queue is kept full; the
figure is commands chosen and applied at the leader per second of wall-clock CPU time, median
of `--runs` runs (also per CPU-second, which a busy machine does not distort), with
batching on (max_batch_count 1024) and off (max_batch_count 1). It
measures the replica plus the simulated driver around it (one process, one core), not a
network or a disk: see shard/ and bench/README.md for end-to-end figures.
"""

from __future__ import annotations

import argparse
import cProfile
import json
import os
import platform
import pstats
import random
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "sim"))

from paxos_group import Listener, PaxosHost
from world import HostTiming, NetworkConfig, World

from paxos import ReplicaConfig, Role, Value


class Counter(Listener):
    def __init__(self, leader_id: int) -> None:
        self.leader_id = leader_id
        self.chosen = 0

    def on_apply(self, host: PaxosHost, slot: int, value: Value) -> None:
        if host.id == self.leader_id:
            self.chosen += len(value)


def run_once(batch: int, commands: int, window: int, seed: int) -> tuple[float, float, int, int]:
    """Returns (wall seconds, CPU seconds, commands chosen, slots) for `commands` chosen."""
    world = World(random.Random(seed), NetworkConfig(delay_min_s=0.0001, delay_max_s=0.0001))
    voters = (1, 2, 3)
    listener = Counter(leader_id=1)
    timing = HostTiming(tick_interval_s=0.005)
    hosts = {}
    for node_id in voters:
        fast = node_id == 1
        config = ReplicaConfig(
            node_id=node_id,
            voters=voters,
            max_batch_count=batch,
            pipeline_window=window,
            election_timeout_min_s=0.15 if fast else 5.0,
            election_timeout_max_s=0.16 if fast else 6.0,
        )
        hosts[node_id] = PaxosHost(world, config, timing, listener)
        hosts[node_id].start()
    leader = hosts[1]
    world.run_until(1.0, lambda: leader.replica is not None and leader.replica.role is Role.LEADER)
    replica = leader.replica
    assert replica is not None and replica.role is Role.LEADER
    payload = [b"k%d=%d" % (i % 64, i) for i in range(commands)]
    # Keep enough commands queued to fill the pipeline window with full batches.
    target = max(2 * window * batch, 64)
    next_cmd = 0
    proposed = 0

    def feed() -> None:
        nonlocal next_cmd, proposed
        want = target - (proposed - listener.chosen)
        end = min(next_cmd + want, commands)
        if end <= next_cmd:
            return
        propose = replica.propose
        for i in range(next_cmd, end):
            propose(payload[i])
        proposed += end - next_cmd
        next_cmd = end
        leader.request_wake(world.now)

    world.observers.append(feed)
    start_chosen = listener.chosen
    start = time.perf_counter()
    start_cpu = time.process_time()
    feed()
    world.run_until(world.now + 1e6, lambda: listener.chosen - start_chosen >= commands)
    elapsed = time.perf_counter() - start
    cpu = time.process_time() - start_cpu
    return elapsed, cpu, listener.chosen - start_chosen, leader.app.index


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--commands", type=int, default=200_000, help="with batching on")
    parser.add_argument("--commands-unbatched", type=int, default=20_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--window", type=int, default=32)
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--profile", action="store_true", help="cProfile one batched run")
    args = parser.parse_args()

    if args.profile:
        profiler = cProfile.Profile()  # the batched run, sorted by own time
        profiler.enable()
        run_once(1024, args.commands, args.window, seed=1)
        profiler.disable()
        pstats.Stats(profiler).sort_stats("tottime").print_stats(25)
        return

    rows = []
    for label, batch, commands in (
        ("batching on (max_batch_count 1024)", 1024, args.commands),
        ("batching off (max_batch_count 1)", 1, args.commands_unbatched),
    ):
        rates = []
        cpu_rates = []
        slots = 0
        for run in range(args.runs):
            seconds, cpu, chosen, slots = run_once(batch, commands, args.window, seed=run + 1)
            rates.append(chosen / seconds)
            cpu_rates.append(chosen / cpu)
        rows.append(
            {
                "mode": label,
                "max_batch_count": batch,
                "pipeline_window": args.window,
                "commands": commands,
                "slots": slots,
                "runs": [round(r) for r in rates],
                "median_commands_per_s": round(statistics.median(rates)),
                "median_commands_per_cpu_s": round(statistics.median(cpu_rates)),
            }
        )
    print(
        f"{'mode':<38} {'commands':>9} {'slots':>7} {'median cmds/s':>14} "
        f"{'per CPU-s':>11}  runs (cmds/s)"
    )
    for row in rows:
        print(
            f"{row['mode']:<38} {row['commands']:>9} {row['slots']:>7} "
            f"{row['median_commands_per_s']:>14,} {row['median_commands_per_cpu_s']:>11,}  "
            f"{row['runs']}"
        )
    if args.json:
        report = {
            "benchmark": "paxos_bench",
            "python": platform.python_version(),
            "machine": platform.platform(),
            "load_average": list(os.getloadavg()),
            "results": rows,
        }
        args.json.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
