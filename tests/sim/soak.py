"""Soak a simulator: random (workload, fault profile, seed) runs for a while.

    python tests/sim/soak.py --seconds 600 [--seed N] [--paxos | --real-client [--nodes S] [--watch]]

Each run is one whole-cluster run (`cluster_sim.Replay(...).sim().run()`; with
`--real-client`, the clients are `txn.AsyncClient` itself, tests/sim/real_client.py, and
`--nodes S` sets the nodes' request deadline to S seconds, as the property of nodes that
give up first does, and `--watch` adds a process watching every key, whose deliveries
are checked too (`real_client.SimWatcher`); with `--paxos`, one Paxos group: `paxos_sim.run_group(profile, seed)`)
with every checker on, as the property tests run them, but for as long as you give it
rather than a fixed count: about 5 cluster runs or 25 group runs a second on one core. A
failure prints its replay line (the same one the property tests print); the exit code is 1
if any run failed.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import paxos_sim
from cluster_sim import PROFILES, REAL_CLIENT_PROFILES, WORKLOADS, Replay


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=600.0, help="how long to run (600)")
    parser.add_argument("--seed", type=int, default=None, help="seed of the run picker")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--paxos", action="store_true", help="soak the Paxos group simulator")
    mode.add_argument(
        "--real-client", action="store_true", help="whole clusters with the real client"
    )
    parser.add_argument(
        "--nodes",
        type=float,
        default=None,
        metavar="S",
        help="with --real-client: the nodes' request deadline in seconds (default as drawn)",
    )
    parser.add_argument(
        "--watch", action="store_true", help="with --real-client: a watcher in every run"
    )
    args = parser.parse_args()
    if (args.nodes is not None or args.watch) and not args.real_client:
        parser.error("--nodes and --watch need --real-client")
    profiles = sorted(REAL_CLIENT_PROFILES if args.real_client else PROFILES)
    rng = random.Random(args.seed)
    end = time.monotonic() + args.seconds
    runs, failed = 0, []
    while time.monotonic() < end:
        seed = rng.getrandbits(32)
        try:
            if args.paxos:
                profile = rng.choice(sorted(paxos_sim.PROFILES))
                name = f"{profile}:{seed}"
                paxos_sim.run_group(profile, seed)
            else:
                workload = rng.choice(sorted(WORKLOADS))
                profile = rng.choice(profiles)
                run = Replay(workload, profile, seed, args.real_client, args.nodes, args.watch)
                name = str(run)
                run.sim().run()
        except AssertionError as exc:  # SafetyViolation and the Paxos checkers' failures
            failed.append(name)
            print(f"FAILED {name}\n{exc}", flush=True)
        runs += 1
        if runs % 500 == 0:
            print(f"{runs} runs, {len(failed)} failed", flush=True)
    print(f"{runs} runs, {len(failed)} failed: {failed}", flush=True)
    for name in failed:
        if args.paxos:
            print(
                f"replay: PAXOS_SIM_SEED={name} python -m pytest tests/sim/test_paxos_properties.py -k replay"
            )
        else:
            print(
                f"replay: PAXOSKV_TXN_SEED={name} python -m pytest tests/sim/test_txn_properties.py -k replay"
            )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
