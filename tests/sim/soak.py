"""Soak the whole-cluster simulator: random (workload, fault profile, seed) runs for a while.

    python tests/sim/soak.py --seconds 600 [--seed N]

Each run is `cluster_sim.run_cluster(workload, profile, seed)` with every checker on, as the
property tests run them, but for as long as you give it rather than a fixed count: about 5
runs a second on one core. A failure prints its replay line (the same one the property
tests print); the exit code is 1 if any run failed.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from cluster_sim import PROFILES, WORKLOADS, SafetyViolation, run_cluster


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=600.0, help="how long to run (600)")
    parser.add_argument("--seed", type=int, default=None, help="seed of the run picker")
    args = parser.parse_args()
    rng = random.Random(args.seed)
    end = time.monotonic() + args.seconds
    runs, failed = 0, []
    while time.monotonic() < end:
        workload = rng.choice(sorted(WORKLOADS))
        profile = rng.choice(sorted(PROFILES))
        seed = rng.getrandbits(32)
        try:
            run_cluster(workload, profile, seed)
        except SafetyViolation as exc:
            failed.append(f"{workload}:{profile}:{seed}")
            print(f"FAILED {workload}:{profile}:{seed}\n{exc}", flush=True)
        runs += 1
        if runs % 500 == 0:
            print(f"{runs} runs, {len(failed)} failed", flush=True)
    print(f"{runs} runs, {len(failed)} failed: {failed}", flush=True)
    for name in failed:
        print(
            f"replay: PAXOSKV_TXN_SEED={name} python -m pytest tests/sim/test_txn_properties.py -k replay"
        )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
