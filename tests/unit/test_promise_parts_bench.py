"""bench/promise_parts.py measures the first part of a promise cut at the bound it is given."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "bench" / "promise_parts.py"


def test_a_part_is_cut_at_the_bound_and_timed() -> None:
    spec = importlib.util.spec_from_file_location("promise_parts", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    row = module.measure(votes=1_000, vote_bytes=100, size_mib=16 / 1024, repeat=1)
    # 16 KiB of votes of about 160 bytes as counted: about a hundred, not all thousand.
    assert 50 < row["part_votes"] < 200
    assert row["part_mib"] <= 16 / 1024
    assert row["total_ms"] >= row["build_ms"] > 0


def test_the_command_prints_a_row_per_size_and_writes_the_json(tmp_path: Path) -> None:
    out = tmp_path / "parts.json"
    args = ["--votes", "500", "--sizes-mib", "0.01,1", "--repeat", "1", "--json", str(out)]
    run = subprocess.run(
        [sys.executable, str(SCRIPT), *args], capture_output=True, text=True, check=True
    )
    assert "0.01 MiB" in run.stdout and "1 MiB" in run.stdout
    parts = json.loads(out.read_text())["parts"]
    assert [p["part_votes"] for p in parts][1] == 500  # all fit under 1 MiB
    assert parts[0]["part_votes"] < 500
