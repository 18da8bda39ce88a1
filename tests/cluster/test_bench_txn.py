"""`paxoskv bench` transaction workloads against a real 3-node, 3-shard cluster.

Each workload (shard/bench_txn.py) runs for about a second through the CLI, as a user runs
it, and must write a JSON report with the transaction figures, no errors and some commits.
No figure is judged: the machine is shared, so only the report's shape and counts are checked.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from shard.cluster import LocalCluster

pytestmark = pytest.mark.cluster

CLI_TIMEOUT_S = 60.0


def bench(cluster: LocalCluster, path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "PAXOSKV_CLUSTER"}
    env["PAXOSKV_CLUSTER"] = cluster.env_value()
    pids = ",".join(str(cluster.pid(n)) for n in cluster.names)
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "shard.cli",
            "bench",
            "--duration",
            "1",
            "--warmup",
            "0",
            "--keys",
            "60",
            "--node-pids",
            pids,
            "--json",
            str(path),
            *args,
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=CLI_TIMEOUT_S,
    )


@pytest.mark.parametrize(
    ("workload", "extra"),
    [
        ("txn1", ()),
        ("txn2", ()),
        ("txn3", ()),
        ("ro", ()),
        ("bank", ("--hot-keys", "4")),
        ("counter", ()),
        ("counter", ("--hot-keys", "2", "--read-modify-write")),
    ],
)
def test_txn_workload_reports(
    shared_cluster: LocalCluster, tmp_path: Path, workload: str, extra: tuple[str, ...]
) -> None:
    path = tmp_path / f"{workload}{len(extra)}.json"
    result = bench(shared_cluster, path, "--workload", workload, "--clients", "4", *extra)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "committed=" in result.stdout
    report = json.loads(path.read_text())
    for key in (
        "workload",
        "clients",
        "ops",
        "errors",
        "throughput_ops_s",
        "p50_ms",
        "p99_ms",
        "committed",
        "aborts",
        "retries",
        "abort_rate",
        "attempts",
    ):
        assert key in report, key
    assert report["workload"] == workload and report["clients"] == 4
    assert report["errors"] == 0, report["first_errors"]
    assert report["misses"] == 0
    assert report["committed"] == report["ops"] > 0
    assert report["attempts"] == report["ops"] + report["retries"]
    assert 0.0 <= report["abort_rate"] <= 1.0
    assert report["extra"]["shards"] == 3
    cpu = report["extra"]["cpu"]
    assert len(cpu["servers_each_s"]) == 3 and cpu["servers_s"] > 0, cpu
    if workload == "ro":
        assert report["aborts"] == 0 and report["retries"] == 0
    if workload == "bank":
        audit = report["extra"]["bank_total"]
        assert audit["ok"] and audit["accounts"] == 4 and report["extra"]["hot_keys"] == 4
    if workload == "counter":
        counted = report["extra"]["counter_total"]
        # Every increment that committed, warmup included, is in the counters, once.
        assert counted["ok"] and counted["found"] == counted["committed"] >= report["ops"]
        assert "counters after the run" in result.stdout
    if workload == "counter" and not extra:
        # Atomic adds on one shard read nothing: no attempt is refused.
        assert report["extra"]["increments"] == "atomic" and report["aborts"] == 0
        assert counted["counters"] == 1
    elif workload == "counter":
        assert report["extra"]["increments"] == "read-modify-write"
        assert counted["counters"] == 2 and report["extra"]["reads"] == "for_update"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--workload", "put", "--hot-keys", "2"), "--hot-keys is for --workload bank or counter"),
        (("--workload", "bank", "--read-modify-write"), "--read-modify-write is for"),
        (("--workload", "bank", "--hot-keys", "1"), "bank needs at least 2 accounts"),
    ],
)
def test_bench_options_of_another_workload_are_refused(
    shared_cluster: LocalCluster, tmp_path: Path, args: tuple[str, ...], message: str
) -> None:
    result = bench(shared_cluster, tmp_path / "x.json", *args)
    assert result.returncode == 2 and message in result.stderr, result.stderr


def test_cpu_per_op_reports_every_mode(shared_cluster: LocalCluster, tmp_path: Path) -> None:
    path = tmp_path / "cpu.json"
    script = Path(__file__).resolve().parents[2] / "bench" / "cpu_per_op.py"
    result = subprocess.run(
        [
            sys.executable,
            str(script),
            "--data-dir",
            str(shared_cluster.data_dir),
            "--duration",
            "0.3",
            "--json",
            str(path),
        ],
        capture_output=True,
        text=True,
        timeout=CLI_TIMEOUT_S,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    results = {r["mode"]: r for r in json.loads(path.read_text())["results"]}
    assert set(results) == {"put", "par2", "txn2w", "txn2", "readback"}
    for mode, r in results.items():
        assert r["ops"] > 0 and r["p50_ms"] > 0 and r["errors"] >= 0, r
        assert len(r["node_cpu_us_per_op"]) == 3 and r["client_cpu_us_per_op"] > 0, r
        commits = mode.startswith("txn") or mode == "readback"
        assert (r["commit_p50_ms"] is not None) == commits, r
        assert (r["read_p50_ms"] is not None) == (mode == "readback"), r
