"""bench/cpu_per_op.py's measurement loop: a failed operation is counted, not timed."""

from __future__ import annotations

import asyncio
import importlib.util
import os
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from txn.errors import OutcomeUnknown

SCRIPT = Path(__file__).resolve().parents[2] / "bench" / "cpu_per_op.py"


def load_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("cpu_per_op", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class FlakyClient:
    """Puts fail with OutcomeUnknown `failures` times (a leader moving), then succeed."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.puts = 0

    async def put(self, key: bytes, value: bytes) -> int:
        self.puts += 1
        if self.puts <= self.failures:
            raise OutcomeUnknown("leadership changed; the write may or may not have happened")
        await asyncio.sleep(0)
        return self.puts


def measure(client: Any, duration_s: float) -> dict[str, Any]:
    cpu_per_op = load_script()
    pids = [os.getpid()] * 3  # the meter only needs live processes to read
    return asyncio.run(  # type: ignore[no-any-return]
        cpu_per_op._measure(client, "put", duration_s, lambda: (b"a", b"b"), pids)
    )


def test_failed_operations_are_counted_and_left_out_of_the_latencies() -> None:
    client = FlakyClient(failures=3)
    result = measure(client, duration_s=0.05)
    assert result["errors"] == 3
    assert result["ops"] == client.puts - 3 > 0


def test_a_mode_whose_every_operation_fails_says_so_in_one_line() -> None:
    with pytest.raises(SystemExit, match="every operation failed"):
        measure(FlakyClient(failures=10**9), duration_s=0.02)
