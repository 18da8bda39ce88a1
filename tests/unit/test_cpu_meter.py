"""shard.cpu_meter: CPU seconds of the client, each server and everything else."""

from __future__ import annotations

import subprocess
import sys
import time

from shard.cpu_meter import CpuMeter, process_cpu_s


def _spin(seconds: float) -> None:
    end = time.process_time() + seconds
    while time.process_time() < end:
        pass


def test_the_meter_charges_each_process_its_own_cpu() -> None:
    busy = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import time\nend = time.process_time() + 0.4\n"
            "while time.process_time() < end: pass\ninput()",
        ],
        stdin=subprocess.PIPE,
    )
    try:
        sleeper = subprocess.Popen([sys.executable, "-c", "input()"], stdin=subprocess.PIPE)
        try:
            meter = CpuMeter([busy.pid, sleeper.pid])
            _spin(0.3)
            deadline = time.monotonic() + 10
            while process_cpu_s(busy.pid) < 0.4 and time.monotonic() < deadline:
                time.sleep(0.02)
            result = meter.result()
        finally:
            sleeper.communicate(b"\n", timeout=10)
    finally:
        busy.communicate(b"\n", timeout=10)
    each = result["servers_each_s"]
    assert isinstance(each, list) and len(each) == 2
    assert each[0] >= 0.2 and each[1] < 0.1, result
    assert result["servers_s"] == round(sum(each), 2)
    assert result["client_s"] >= 0.25, result
    assert 0.0 <= result["other_share"] <= 1.0


def test_a_process_that_is_gone_counts_nothing() -> None:
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait(timeout=10)  # reaped: its /proc entry is gone
    assert process_cpu_s(gone.pid) == 0.0
