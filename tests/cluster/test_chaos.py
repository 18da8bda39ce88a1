"""Jepsen-style chaos runs on real node processes (shard/chaos): every workload under every
nemesis for a short run, with zero anomalies and zero acknowledged writes lost.

The full matrix (3 workloads x 5 nemeses, 5 s of workload each, plus the fault-hook-only
nemeses once each) runs by default: 2.9 minutes on 2 cores. PAXOSKV_SOAK=1 adds a
longer `mix` run per workload (PAXOSKV_SOAK_S seconds each, default 120).

Partitions use Linux network namespaces when this runs as root with iproute2, else the
in-node fault hook (the report's `network` section and the test id say which ran).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zlib
from pathlib import Path
from typing import Any

import grpc
import pytest

from shard.chaos.netns import ChaosCluster, probe
from shard.chaos.report import EXIT_INVALID
from shard.chaos.runner import ChaosOptions, recheck, run
from shard.faults import FaultsClient

pytestmark = pytest.mark.cluster

WORKLOADS = ["register", "bank", "list-append"]
NEMESES = ["kill", "pause", "partition", "restart-all", "mix"]
HOOK_ONLY = [("list-append", "crash-2pc"), ("bank", "crash-2pc"), ("register", "drop-replies")]
HOOK_ONLY += [("list-append", "flaky-net")]
SOAK = os.environ.get("PAXOSKV_SOAK") == "1"
NETNS = probe() is None


def _run(tmp_path: Path, workload: str, nemesis: str, **overrides: Any) -> dict[str, Any]:
    lines: list[str] = []
    options = ChaosOptions(
        workload=workload,
        nemesis=nemesis,
        duration_s=5.0,
        out=tmp_path / "run",
        clients=5,
        seed=zlib.crc32(f"{workload}/{nemesis}".encode()) % 10_000,
        quiet_s=(0.5, 1.5),
        fault_s=(1.0, 2.5),
    )
    for key, value in overrides.items():
        setattr(options, key, value)
    report = run(options, say=lines.append)
    summary = "\n".join(lines)
    print(summary)
    assert (tmp_path / "run" / "history.jsonl").stat().st_size > 0
    saved = json.loads((tmp_path / "run" / "report.json").read_text())
    assert saved["valid"] == report["valid"]
    # The kept directory alone is enough to check the run again, to the same verdict.
    again = recheck(tmp_path / "run")
    assert (again["valid"], again["anomalies"], again["exit_code"]) == (
        report["valid"],
        report["anomalies"],
        report["exit_code"],
    )
    if not report["valid"]:
        detail = json.dumps(
            {
                "anomaly_types": report["anomaly_types"],
                "lost": report["lost_write_examples"],
                "history_problems": report["history_problems"],
                "harness_error": report["harness_error"],
                "check": report["check"],
            },
            indent=1,
            default=str,
        )[:6000]
        pytest.fail(f"chaos run invalid (seed {options.seed}):\n{summary}\n{detail}")
    return report


@pytest.mark.parametrize("nemesis", NEMESES)
@pytest.mark.parametrize("workload", WORKLOADS)
def test_workload_under_nemesis(tmp_path: Path, workload: str, nemesis: str) -> None:
    report = _run(tmp_path, workload, nemesis)
    assert report["anomalies"] == 0
    assert report["lost_writes"] in (0, None)
    # Throughput depends on the machine's load; only check that the workload really ran.
    assert report["ops"]["ok"] > 0, report["ops"]
    assert report["ops"]["final_reads"].get("ok", 0) >= 1
    assert report["faults_injected"] >= 1, report["faults"]
    assert report["recovery"]["after_final_heal_s"] is not None
    if nemesis == "partition":
        expected = "netns" if NETNS else "fault-hook"
        assert report["network"]["partitions"].startswith(expected), report["network"]


@pytest.mark.parametrize(("workload", "nemesis"), HOOK_ONLY)
def test_fault_hook_nemeses(tmp_path: Path, workload: str, nemesis: str) -> None:
    report = _run(tmp_path, workload, nemesis)
    assert report["network"]["fault_hook"] is True
    assert report["faults_injected"] >= 1


@pytest.mark.skipif(not NETNS, reason="network namespaces need root and iproute2")
def test_partition_fallback_through_the_hook_when_asked(tmp_path: Path) -> None:
    report = _run(tmp_path, "register", "partition", net="hook")
    assert report["network"]["partitions"].startswith("fault-hook (FALLBACK")


@pytest.mark.skipif(not SOAK, reason="long chaos runs only with PAXOSKV_SOAK=1")
@pytest.mark.soak
@pytest.mark.timeout(1800)
@pytest.mark.parametrize("workload", WORKLOADS)
def test_soak_mix(tmp_path: Path, workload: str) -> None:
    seconds = float(os.environ.get("PAXOSKV_SOAK_S", "120"))
    _run(tmp_path, workload, "mix", duration_s=seconds, quiet_s=(1.0, 3.0), fault_s=(1.0, 4.0))


def test_fault_service_exists_only_with_the_environment_variable(tmp_path: Path) -> None:
    for hooked in (True, False):
        cluster = ChaosCluster(tmp_path / f"c{hooked}", nodes=1, shards=1, faults=hooked)
        try:
            cluster.start(deadline_s=60.0, settle_s=0)
            channel = cluster.channel("n1")
            if hooked:
                state = FaultsClient.call(channel, {"op": "status"})
                assert state["node_id"] == 1 and state["cut"] == []
            else:
                with pytest.raises(grpc.RpcError) as err:
                    FaultsClient.call(channel, {"op": "status"})
                assert err.value.code() is grpc.StatusCode.UNIMPLEMENTED
        finally:
            cluster.stop(grace_s=3.0)
            cluster.close()


def test_recheck_of_a_forged_history_reports_the_anomaly(tmp_path: Path) -> None:
    """`paxoskv chaos --recheck DIR` checks the kept history, not the saved verdict: one
    snapshot read of a bank run forged to show a dollar more is an anomaly (exit status EXIT_INVALID, 3)."""
    _run(tmp_path, "bank", "none", duration_s=3.0)
    run_dir = tmp_path / "run"
    path = run_dir / "history.jsonl"
    records = [json.loads(line) for line in path.read_text().splitlines()]
    reads = [r for r in records if r["type"] == "ok" and r["f"] == "read" and r["value"]]
    assert reads, "the bank run made no snapshot read"
    account = sorted(reads[-1]["value"])[0]
    reads[-1]["value"][account] += 1
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    result = subprocess.run(
        [sys.executable, "-m", "shard.cli", "chaos", "--recheck", str(run_dir)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == EXIT_INVALID, (result.stdout, result.stderr)
    assert "INVALID" in result.stdout
    assert json.loads((run_dir / "recheck.json").read_text())["anomalies"] >= 1
    assert json.loads((run_dir / "report.json").read_text())["valid"] is True
    # A directory that is not a run: no verdict (exit 1), one line naming what is wrong.
    (run_dir / "report.json").write_text("{}")
    broken = subprocess.run(
        [sys.executable, "-m", "shard.cli", "chaos", "--recheck", str(run_dir)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert broken.returncode == 1 and "KeyError" in broken.stderr, broken.stderr
