"""bench/bad_requests.py, run as a user runs it: each request that once held the nodes for
seconds now gets its answer over the real wire (the figures are the benchmark's to report,
not this test's)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from shard.server import SHED_MESSAGE

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
        refused = sum(r["count"] for r in row["refused"])
        assert row["message"].startswith(f"{20 - refused} of 20 OK"), row
        for refusal in row["refused"]:
            # 20 answers of up to 4 MiB pass a stream's 64 MiB when its client reads them
            # slower than the node makes them (a loaded machine): the rest are shed, a
            # retryable answer that reports nothing done. Only a leader change meanwhile (a
            # wake slower than the election timeout) may refuse some otherwise, with a
            # routing answer the client retries.
            if refusal["message"] != SHED_MESSAGE:
                assert row["new_ballots"] > 0, row
            assert refusal["code"] in ("UNAVAILABLE", "NOT_LEADER"), row
    # Appends to 4 values of 1 MiB: refused by rule A1 once 2 MiB are read and written.
    assert results["atomic"]["answer"] == "LIMIT_EXCEEDED", results["atomic"]
    assert "| attack | answer |" in done.stdout
