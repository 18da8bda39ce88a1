"""bench/core_cpu.py: the node cores' CPU per operation, run as a user runs it."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "bench" / "core_cpu.py"


def test_core_cpu_reports_both_modes_with_their_steps(tmp_path: Path) -> None:
    out = tmp_path / "core.json"
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--ops", "20", "--json", str(out)],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    results = {r["mode"]: r for r in json.loads(out.read_text())["results"]}
    assert set(results) == {"put", "txn2w"}
    put, txn = results["put"], results["txn2w"]
    assert 0 < put["persist_cpu_us_per_op"] < put["cpu_us_per_op"]
    assert 0 < txn["persist_cpu_us_per_op"] < txn["cpu_us_per_op"]
    # Each mode times its own requests and slots: a put is one command per slot, a
    # Prepare rides with the Resolve the leader held from the transaction before it.
    assert set(put["median_us"]) == {"submit put", "apply slot of 1"}
    assert {"submit prepare", "submit resolve", "apply slot of 2"} <= set(txn["median_us"])
    assert all(v > 0 for r in results.values() for v in r["median_us"].values())
    assert "txn2w" in done.stdout and "put" in done.stdout


def test_core_cpu_refuses_an_unknown_mode() -> None:
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--modes", "put,txn9"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert "unknown modes ['txn9']" in done.stderr


def test_core_cpu_measures_only_after_every_group_has_its_preferred_leader(
    tmp_path: Path,
) -> None:
    # Measured from the first leaders elected, a leadership transfer to a group's preferred
    # leader later refused a measured Prepare (NOT_LEADER) and stopped a 2,000-op run.
    spec = importlib.util.spec_from_file_location("core_cpu", SCRIPT)
    assert spec is not None and spec.loader is not None
    core_cpu = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(core_cpu)
    cores = core_cpu.Cores(tmp_path)
    try:
        shard_map = cores.cores[1].shard_map
        for group_id in (0, 1, 2):
            assert cores._leader(group_id) == shard_map.preferred_leader(group_id)
    finally:
        cores.close()
