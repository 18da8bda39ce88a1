"""bench/bad_requests.py, run as a user runs it: each request that once held the nodes for
seconds now gets its answer over the real wire (the figures are the benchmark's to report,
not this test's)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.cluster

SCRIPT = Path(__file__).resolve().parents[2] / "bench" / "bad_requests.py"


def test_every_bad_request_is_answered_and_bounded(tmp_path: Path) -> None:
    out = tmp_path / "bad.json"
    done = subprocess.run(
        [
            sys.executable,
            str(SCRIPT),
            "--scans",
            "20",
            "--stale-scans",
            "20",
            "--atomic-keys",
            "4",
            "--json",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    results = {r["attack"]: r for r in json.loads(out.read_text())}
    assert results["ranges"]["answer"] == "INVALID_ARGUMENT"  # overlapping: refused
    assert "overlap" in results["ranges"]["message"]
    assert results["reads"]["answer"] == "LIMIT_EXCEEDED"
    assert "MAX_TXN_ITEMS" in results["reads"]["message"]
    assert results["big_txn"]["answer"] == "OK"  # the largest part allowed commits
    for attack in ("scans", "stale_scans"):
        row = results[attack]
        if row["message"] != "20 of 20 OK":
            # Only a leader change meanwhile (a wake slower than the election timeout on a
            # loaded machine) may refuse some, with a routing answer the client retries.
            refused = re.fullmatch(r"\d+ of 20 OK; others: (.*)", row["message"])
            assert refused and row["new_ballots"] > 0, row
            codes = {part.split(" ")[1] for part in refused.group(1).split(", ")}
            assert codes <= {"UNAVAILABLE", "NOT_LEADER"}, row
    # Appends to 4 values of 1 MiB: refused by rule A1 once 2 MiB are read and written.
    assert results["atomic"]["answer"] == "LIMIT_EXCEEDED", results["atomic"]
    assert "| attack | answer |" in done.stdout
