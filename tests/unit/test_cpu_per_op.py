"""bench/cpu_per_op.py's measurement loop: a failed operation is counted, not timed."""

from __future__ import annotations

import asyncio
import importlib.util
import os
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType, SimpleNamespace
from typing import Any

import pytest

from txn.errors import OutcomeUnknown

SCRIPT = Path(__file__).resolve().parents[2] / "bench" / "cpu_per_op.py"
TICK_S = 0.001


@pytest.fixture(scope="module")
def cpu_per_op() -> Iterator[ModuleType]:
    spec = importlib.util.spec_from_file_location("cpu_per_op", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    yield module


class FlakyClient:
    """Puts fail with OutcomeUnknown `failures` times (a leader moving), then succeed."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.puts = 0

    async def put(self, key: bytes, value: bytes) -> int:
        self.puts += 1
        if self.puts <= self.failures:
            raise OutcomeUnknown("leadership changed; the write may or may not have happened")
        return self.puts


def measure(
    module: ModuleType, client: Any, duration_s: float, monkeypatch: pytest.MonkeyPatch
) -> dict[str, Any]:
    """Run the loop on a clock that moves TICK_S per reading: a fixed number of turns."""
    clock = SimpleNamespace(now=0.0)

    def perf_counter() -> float:
        clock.now += TICK_S
        return clock.now

    monkeypatch.setattr(module, "time", SimpleNamespace(perf_counter=perf_counter))
    pids = [os.getpid()] * 3  # the meter only needs live processes to read
    return asyncio.run(  # type: ignore[no-any-return]
        module._measure(client, "put", duration_s, lambda: (b"a", b"b"), pids)
    )


def test_failed_operations_are_counted_and_left_out_of_the_latencies(
    cpu_per_op: ModuleType, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = FlakyClient(failures=3)
    result = measure(cpu_per_op, client, 0.1, monkeypatch)
    assert result["errors"] == 3
    assert result["ops"] == client.puts - 3 > 20


def test_a_mode_whose_every_operation_fails_says_so(
    cpu_per_op: ModuleType, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(cpu_per_op.NoOperationSucceeded, match="every operation failed"):
        measure(cpu_per_op, FlakyClient(failures=10**9), 0.02, monkeypatch)


def test_percentiles_are_nearest_rank_as_the_harness_computes_them(cpu_per_op: ModuleType) -> None:
    # int(n * q) picked one rank too high: the p99 of 100 samples was the maximum and the
    # p50 of an even count the upper middle, unlike `paxoskv bench` and bench/compare.py.
    values = [float(i) for i in range(1, 101)]
    assert cpu_per_op._percentile(values, 0.99) == 99.0
    assert cpu_per_op._percentile(values, 0.5) == 50.0
    assert cpu_per_op._percentile([1.0, 2.0], 0.5) == 1.0
    assert cpu_per_op._percentile([3.0], 0.99) == 3.0
