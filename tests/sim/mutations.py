"""Mutation proof: break a safety rule on purpose and check that a test catches it.

    python tests/sim/mutations.py [name ...] [--profile ci|dev|nightly]

Each code mutation is applied to a temporary copy of its package (`paxos`, or `shard` for the
shard state machine; the shared working tree is never touched), which goes first on
PYTHONPATH; the driver mutation is a switch of the simulated driver (PAXOS_SIM_MUTATION). The
script runs the mutation's tests against the mutant (the Paxos property and replica path
tests, or the whole-cluster transaction properties) and prints, per mutation, the tests that
failed and the seed Hypothesis reported. A mutation nobody catches is a hole in the tests.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PAXOS_TESTS = (
    ROOT / "tests/sim/test_paxos_properties.py",
    ROOT / "tests/unit/paxos/test_replica_paths.py",
    ROOT / "tests/unit/paxos/test_rebuild.py",
)
CLUSTER_TESTS = (ROOT / "tests/sim/test_txn_properties.py",)


@dataclass(frozen=True)
class Mutation:
    name: str
    what: str
    #: (file under `package`/, old text, new text) edits applied to the copy.
    edits: tuple[tuple[str, str, str], ...] = ()
    #: PAXOS_SIM_MUTATION switches of the simulated driver.
    driver: str = ""
    package: str = "paxos"
    tests: tuple[Path, ...] = PAXOS_TESTS


MUTATIONS = [
    Mutation(
        "send_votes_before_persist",
        "driver sends messages_after_persist (Promise, Accepted) before the persist",
        driver="send_votes_before_persist",
    ),
    Mutation(
        "phase1_ignores_ballots",
        "Phase 1 takes the last promise's value for a slot, not the highest ballot's",
        edits=(
            (
                "replica.py",
                "        return entry.chosen\n    return entry.ballot > other.ballot",
                "        return entry.chosen\n    return True",
            ),
        ),
    ),
    Mutation(
        "phase1_lowest_ballot",
        "Phase 1 takes the value of the lowest ballot",
        edits=(
            (
                "replica.py",
                "        return entry.chosen\n    return entry.ballot > other.ballot",
                "        return entry.chosen\n    return entry.ballot < other.ballot",
            ),
        ),
    ),
    Mutation(
        "no_restart_lease_block",
        "a restarted replica promises candidates at once (no lease block after restart)",
        edits=(
            (
                "replica.py",
                "            self._lease_block_until = now + self.config.lease_duration_s\n"
                "            self._reset_election_deadline()",
                "            self._lease_block_until = now\n            self._reset_election_deadline()",
            ),
            (
                "replica.py",
                "        if not self._started:\n            return True",
                "        if not self._started:\n            return False",
            ),
        ),
    ),
    Mutation(
        "accept_lower_ballots",
        "an acceptor accepts (and follows) ballots below its promise",
        edits=(
            (
                "replica.py",
                "        if ballot < self._promised:\n            self._nack(src, ballot)\n"
                "            return False",
                "        if False:\n            return False",
            ),
        ),
    ),
    Mutation(
        "lease_without_drift",
        "the leader's lease lasts lease_duration + 30 ms (no drift margin, and then some)",
        edits=(
            (
                "replica.py",
                "lease = sent + self.config.lease_duration_s - self.config.lease_drift_s",
                "lease = sent + self.config.lease_duration_s + 0.03",
            ),
        ),
    ),
    Mutation(
        "gc_drops_visible_version",
        "MVCC garbage collection also removes each key's newest version at the horizon",
        edits=(
            (
                "state_machine.py",
                "                decided = True\n"
                "                if record_key[-1] == KIND_TOMBSTONE_INT:\n"
                "                    batch.delete(record_key)",
                "                decided = True\n"
                "                if True:\n"
                "                    batch.delete(record_key)",
            ),
        ),
        package="shard",
        tests=CLUSTER_TESTS,
    ),
    Mutation(
        "rebuild_votes_at_once",
        "a replica that lost its disk votes at once, as a fresh acceptor (no rule 14)",
        edits=(
            (
                "replica.py",
                "        self._rebuilding = state.rebuilding\n",
                "        self._rebuilding = False\n",
            ),
        ),
    ),
    Mutation(
        "rebuild_target_below_floor",
        "a rebuilding replica takes its target from any leader, even one below the floor",
        edits=(("replica.py", "            and msg.ballot >= self._floor\n", ""),),
    ),
    Mutation(
        "rebuild_skips_catch_up",
        "a rebuilding replica votes once it has a target, before it learned the slots below",
        edits=(
            (
                "replica.py",
                "            or self._chosen_watermark < self._rebuild_target - 1\n",
                "",
            ),
        ),
    ),
    Mutation(
        "rebuild_acks_count",
        "a leader counts a rebuilding follower's heartbeat acks for its lease and read index",
        edits=(
            (
                "replica.py",
                "            self._rebuilding_peers.add(msg.src)\n            return\n",
                "            self._rebuilding_peers.add(msg.src)\n",
            ),
        ),
    ),
]


def run(mutation: Mutation, profile: str) -> tuple[bool, list[str], list[str], str]:
    with tempfile.TemporaryDirectory(prefix=f"mut-{mutation.name}-") as tmp:
        shutil.copytree(ROOT / mutation.package, Path(tmp) / mutation.package)
        for file, old, new in mutation.edits:
            path = Path(tmp) / mutation.package / file
            text = path.read_text()
            if text.count(old) != 1:
                raise SystemExit(f"{mutation.name}: the text to mutate is not unique in {file}")
            path.write_text(text.replace(old, new))
        env = dict(os.environ)
        env["PYTHONPATH"] = tmp + os.pathsep + env.get("PYTHONPATH", "")
        env["HYPOTHESIS_PROFILE"] = profile
        env["PAXOS_SIM_MUTATION"] = mutation.driver
        cmd = [
            sys.executable,
            "-c",
            "import sys, pytest; sys.exit(pytest.main(sys.argv[1:]))",
            *map(str, mutation.tests),
            "-q",
            "-p",
            "no:cacheprovider",
            "--timeout",
            "300",
        ]
        out = subprocess.run(cmd, cwd=tmp, env=env, capture_output=True, text=True).stdout
    failed = sorted(set(re.findall(r"^FAILED \S+::(\S+)", out, re.M)))
    seeds = sorted(set(re.findall(r"(?:PAXOS_SIM_SEED|PAXOSKV_TXN_SEED)=(\S+:\d+)", out)))
    first = ""
    match = re.search(r"^E\s+(\S.*Violation.*)$", out, re.M) or re.search(r"^E\s+(.+)$", out, re.M)
    if match:
        first = match.group(1)[:160]
    return bool(failed), failed, seeds, first


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("names", nargs="*")
    parser.add_argument("--profile", default="ci")
    args = parser.parse_args()
    chosen = [m for m in MUTATIONS if not args.names or m.name in args.names]
    escaped = 0
    for mutation in chosen:
        caught, failed, seeds, first = run(mutation, args.profile)
        escaped += not caught
        print(f"== {mutation.name}: {mutation.what}")
        print(f"   caught: {caught}")
        for name in failed:
            print(f"   failed: {name}")
        if seeds:
            print(f"   seeds:  {', '.join(seeds)}")
        if first:
            print(f"   first:  {first}")
        sys.stdout.flush()
    sys.exit(1 if escaped else 0)


if __name__ == "__main__":
    main()
