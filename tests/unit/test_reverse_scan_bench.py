"""bench/reverse_scan.py builds its shard over deleted records and times both directions."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "bench" / "reverse_scan.py"


def test_the_command_times_both_directions_and_writes_the_json(tmp_path: Path) -> None:
    out = tmp_path / "reverse.json"
    args = ["--keys", "5", "--deleted", "200", "--rounds", "3", "--json", str(out)]
    run = subprocess.run(
        [sys.executable, str(SCRIPT), *args], capture_output=True, text=True, check=True
    )
    assert run.stdout.startswith("forward: p50 ") and "\nreverse: p50 " in run.stdout
    report = json.loads(out.read_text())
    assert (report["keys"], report["deleted"], report["rounds"]) == (5, 200, 3)
    for direction in ("forward", "reverse"):
        assert 0 < report[direction]["p50_ms"] <= report[direction]["p99_ms"]
