"""The load generator (shard/bench_harness.py) against in-process fake drivers.

The fakes are test doubles for the *harness*: a dict behind `asyncio.sleep(0)`. Most tests also
inject a fake clock that each operation advances by a known latency, so op counts, elapsed time
and percentiles are exact and the tests take milliseconds, not seconds of real time.
"""

from __future__ import annotations

import asyncio
import json
import math
import random

import pytest

from shard.bench_harness import (
    BenchReport,
    CustomWorkload,
    Driver,
    OpTally,
    ProgressSample,
    key_for,
    percentile,
    run_workload,
    run_workload_sync,
)


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class FakeDriver:
    """A dict store; each op yields once, then advances the fake clock by `latency_s(op#)`."""

    def __init__(
        self,
        store: dict[bytes, bytes],
        clock: FakeClock | None = None,
        latencies_s: list[float] | None = None,
        fail_every: int = 0,
        lose_writes: bool = False,
    ) -> None:
        self.store = store
        self.clock = clock
        self.latencies_s = latencies_s
        self.fail_every = fail_every
        self.lose_writes = lose_writes
        self.calls = {"put": 0, "get": 0}
        self.closed = False

    async def _op(self, kind: str) -> None:
        await asyncio.sleep(0)
        n = self.calls["put"] + self.calls["get"]
        self.calls[kind] += 1
        if self.clock is not None:
            self.clock.now += (
                self.latencies_s[n % len(self.latencies_s)] if self.latencies_s else 0.001
            )
        if self.fail_every and (n + 1) % self.fail_every == 0:
            raise ConnectionError(f"injected failure on call {n + 1}")

    async def put(self, key: bytes, value: bytes) -> None:
        await self._op("put")
        if not self.lose_writes:
            self.store[key] = value

    async def get(self, key: bytes) -> bytes | None:
        await self._op("get")
        return self.store.get(key)

    async def close(self) -> None:
        self.closed = True


def test_fake_driver_satisfies_the_driver_protocol() -> None:
    assert isinstance(FakeDriver({}), Driver)


def test_percentile_nearest_rank_on_a_known_distribution() -> None:
    samples = [float(i) for i in range(1, 1001)]  # 1..1000
    assert percentile(samples, 0) == 1.0
    assert percentile(samples, 50) == 500.0
    assert percentile(samples, 90) == 900.0
    assert percentile(samples, 99) == 990.0
    assert percentile(samples, 99.9) == 999.0
    assert percentile(samples, 100) == 1000.0
    assert percentile([7.0], 99.9) == 7.0
    assert percentile([1.0, 2.0], 50) == 1.0
    assert percentile([1.0, 2.0], 50.1) == 2.0
    assert math.isnan(percentile([], 50))
    with pytest.raises(ValueError):
        percentile(samples, 100.5)


def test_sequential_latencies_and_percentiles_are_exact() -> None:
    # One client; op i takes exactly latencies[i] of fake time; the window is their sum, so
    # exactly len(latencies) operations run and every sample is known.
    latencies = [i / 1000 for i in range(1, 1001)]  # 1 ms .. 1000 ms
    random.Random(7).shuffle(latencies)
    clock = FakeClock()
    driver = FakeDriver({}, clock, latencies)
    report = run_workload_sync(
        lambda: driver, "put", 1, math.fsum(latencies), clock=clock, target="fake"
    )
    assert report.ops == 1000 == driver.calls["put"]
    assert report.errors == 0
    assert report.p50_ms == pytest.approx(500.0)
    assert report.p90_ms == pytest.approx(900.0)
    assert report.p99_ms == pytest.approx(990.0)
    assert report.p999_ms == pytest.approx(999.0)
    assert report.min_ms == pytest.approx(1.0)
    assert report.max_ms == pytest.approx(1000.0)
    assert report.mean_ms == pytest.approx(500.5)
    assert report.elapsed_s == pytest.approx(500.5)
    assert report.throughput_ops_s == pytest.approx(1000 / 500.5)
    assert driver.closed


@pytest.mark.parametrize("clients", [1, 4, 32])
def test_ops_are_counted_once_each(clients: int) -> None:
    clock = FakeClock()
    driver = FakeDriver({}, clock)  # every op advances the shared clock by 1 ms
    report = run_workload_sync(lambda: driver, "put", clients, 1.0, clock=clock)
    assert report.ops == driver.calls["put"]
    # 1000 ops fill the 1 s window; ops already started at the deadline finish and count.
    assert 1000 <= report.ops <= 1000 + clients
    assert report.clients == clients and report.connections == 1


def test_errors_are_counted_not_raised_and_give_no_samples() -> None:
    clock = FakeClock()
    driver = FakeDriver({}, clock, fail_every=4)
    report = run_workload_sync(lambda: driver, "put", 8, 2.0, clock=clock)
    total = driver.calls["put"]
    assert report.ops + report.errors == total
    assert report.errors == total // 4
    assert report.errors_by_type == {"ConnectionError": report.errors}
    assert report.first_errors and report.first_errors[0].startswith("ConnectionError:")
    assert len(report.first_errors) <= 5


def test_get_preloads_every_key_and_counts_no_misses() -> None:
    clock = FakeClock()
    store: dict[bytes, bytes] = {}
    driver = FakeDriver(store, clock)
    report = run_workload_sync(
        lambda: driver, "get", 8, 0.5, key_count=300, value_size=16, clock=clock
    )
    assert driver.calls["put"] == 300  # the preload, not measured
    assert set(store) == {key_for(i) for i in range(300)}
    assert all(len(v) == 16 for v in store.values())
    assert report.ops == driver.calls["get"] > 0
    assert report.misses == 0
    assert report.read_fraction == 1.0


def test_lost_writes_show_up_as_misses() -> None:
    clock = FakeClock()
    driver = FakeDriver({}, clock, lose_writes=True)
    report = run_workload_sync(lambda: driver, "get", 2, 0.1, key_count=10, clock=clock)
    assert report.ops > 0
    assert report.misses == report.ops


@pytest.mark.parametrize(("fraction", "want_gets"), [(0.0, False), (1.0, True)])
def test_mixed_workload_honours_the_read_fraction(fraction: float, want_gets: bool) -> None:
    clock = FakeClock()
    driver = FakeDriver({}, clock)
    report = run_workload_sync(
        lambda: driver,
        "mixed",
        4,
        0.2,
        key_count=20,
        read_fraction=fraction,
        clock=clock,
    )
    assert driver.calls["put"] == 20 + (0 if want_gets else report.ops)
    assert driver.calls["get"] == (report.ops if want_gets else 0)


def test_mixed_workload_mixes() -> None:
    clock = FakeClock()
    driver = FakeDriver({}, clock)
    report = run_workload_sync(
        lambda: driver, "mixed", 4, 2.0, key_count=20, read_fraction=0.5, clock=clock
    )
    gets = driver.calls["get"]
    assert 0.4 < gets / report.ops < 0.6


@pytest.mark.parametrize(("connections", "opened"), [(1, 1), (3, 3), (None, 8)])
def test_connections_shared_or_per_client_and_all_closed(
    connections: int | None, opened: int
) -> None:
    clock = FakeClock()
    store: dict[bytes, bytes] = {}
    made: list[FakeDriver] = []

    async def factory() -> FakeDriver:  # an async factory, like a real gRPC driver's
        made.append(FakeDriver(store, clock))
        return made[-1]

    report = run_workload_sync(factory, "put", 8, 0.5, connections=connections, clock=clock)
    assert len(made) == opened == report.connections
    assert all(d.closed for d in made)
    assert all(d.calls["put"] > 0 for d in made)  # round-robin: every connection used
    assert sum(d.calls["put"] for d in made) == report.ops


def test_drivers_are_closed_when_the_preload_fails() -> None:
    driver = FakeDriver({}, fail_every=1)
    with pytest.raises(ConnectionError):
        run_workload_sync(lambda: driver, "get", 2, 0.1, key_count=5)
    assert driver.closed


def test_warmup_ops_are_not_recorded() -> None:
    clock = FakeClock()
    driver = FakeDriver({}, clock, latencies_s=[1 / 64])  # exact in binary floating point
    report = run_workload_sync(lambda: driver, "put", 1, 1.0, warmup_s=0.5, clock=clock)
    assert driver.calls["put"] == 96
    assert report.ops == 64


def test_on_start_fires_when_the_measured_window_opens_not_before_the_warmup() -> None:
    # Callers start their CPU meter in on_start and divide its seconds by `ops`, which counts
    # the window only: fired before the warm-up, a 1 s warm-up + 5 s run charged 6 s of CPU
    # to 5 s of operations (every CPU-per-op figure 1.2x too high, wall_s 6.0 in the JSON).
    clock = FakeClock()
    driver = FakeDriver({}, clock, latencies_s=[1 / 64])
    opened: list[float] = []
    report = run_workload_sync(
        lambda: driver,
        "put",
        1,
        1.0,
        warmup_s=0.5,
        clock=clock,
        on_start=lambda: opened.append(clock.now),
    )
    window_start = 1000.0 + 0.5
    assert len(opened) == 1
    assert window_start <= opened[0] < window_start + 1 / 64
    assert report.ops == 64


def test_on_start_without_warmup_fires_before_the_first_operation() -> None:
    clock = FakeClock()
    driver = FakeDriver({}, clock)
    seen: list[int] = []
    run_workload_sync(
        lambda: driver,
        "put",
        4,
        0.1,
        clock=clock,
        on_start=lambda: seen.append(driver.calls["put"]),
    )
    assert seen == [0]


def test_progress_is_reported_about_every_interval() -> None:
    # Real time here: 0.3 s with a 0.05 s interval.
    samples: list[ProgressSample] = []
    driver = FakeDriver({})
    report = run_workload_sync(
        lambda: driver,
        "put",
        4,
        0.3,
        progress=samples.append,
        progress_interval_s=0.05,
    )
    assert 3 <= len(samples) <= 9
    assert [s.ops for s in samples] == sorted(s.ops for s in samples)
    assert samples[-1].ops == report.ops
    assert any(s.rate_ops_s > 0 for s in samples)


def test_report_json_has_the_documented_keys() -> None:
    clock = FakeClock()
    driver = FakeDriver({}, clock)
    report = run_workload_sync(
        lambda: driver, "put", 2, 0.1, target="fake", clock=clock, extra={"note": "x"}
    )
    doc = json.loads(report.to_json())
    for key in (
        "target",
        "workload",
        "clients",
        "connections",
        "duration_s",
        "elapsed_s",
        "ops",
        "errors",
        "misses",
        "throughput_ops_s",
        "p50_ms",
        "p99_ms",
        "p999_ms",
        "machine",
        "started_at",
        "extra",
    ):
        assert key in doc, key
    assert doc["target"] == "fake" and doc["workload"] == "put" and doc["clients"] == 2
    assert doc["extra"] == {"note": "x"}
    assert {"cpu_count", "platform", "cpu_model"} <= set(doc["machine"])
    assert "put" in report.summary_line()


def test_report_without_samples_is_still_valid_json() -> None:
    clock = FakeClock()
    driver = FakeDriver({}, clock, fail_every=1)
    report = run_workload_sync(lambda: driver, "put", 1, 0.01, clock=clock)
    assert report.ops == 0 and report.errors > 0
    doc = json.loads(report.to_json())
    assert doc["p50_ms"] is None and doc["throughput_ops_s"] == 0.0
    assert isinstance(report, BenchReport)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"workload": "scan"},
        {"clients": 0},
        {"duration_s": 0},
        {"connections": 9},
        {"connections": 0},
        {"read_fraction": 1.5},
        {"key_count": 0},
    ],
)
def test_bad_arguments_are_rejected(kwargs: dict[str, object]) -> None:
    args: dict[str, object] = {"workload": "put", "clients": 8, "duration_s": 0.1, **kwargs}
    with pytest.raises(ValueError):
        asyncio.run(run_workload(lambda: FakeDriver({}), **args))  # type: ignore[arg-type]


# ---------------------------------------------------------------- custom (transaction) workloads


TRY_S = 1 / 512  # exact in binary floating point, so fake-time sums are exact


class FakeTxnStore:
    """A driver for custom workloads: each try takes TRY_S of fake time."""

    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock
        self.setups = 0
        self.closed = False

    async def close(self) -> None:
        self.closed = True


def _txn_workload(tries: int, fail_every: int = 0, *, transactional: bool = True) -> CustomWorkload:
    """Each operation takes `tries` tries (the first tries-1 abort); every `fail_every`-th
    operation gives up with an error after its tries."""
    calls = [0]

    async def setup(drivers: list[FakeTxnStore]) -> None:
        for d in drivers:
            d.setups += 1

    async def op(driver: FakeTxnStore, rng: random.Random, tally: OpTally) -> None:
        calls[0] += 1
        tally.attempts = 0
        for attempt in range(tries):
            tally.attempts += 1
            await asyncio.sleep(0)
            driver.clock.now += TRY_S
            if attempt < tries - 1:
                tally.aborts += 1
        tally.commit_s = TRY_S / 2  # the last try's commit call
        if fail_every and calls[0] % fail_every == 0:
            raise TimeoutError("gave up")

    return CustomWorkload("fake-txn", op, setup, transactional=transactional)


def test_custom_workload_counts_commits_aborts_and_retries() -> None:
    clock = FakeClock()
    driver = FakeTxnStore(clock)
    report = run_workload_sync(lambda: driver, _txn_workload(3), 1, 300 * TRY_S, clock=clock)
    # One client, 3 tries per operation (two aborted, then the commit): 100 operations.
    assert driver.setups == 1 and driver.closed
    assert report.workload == "fake-txn"
    assert report.ops == report.committed == 100
    assert report.attempts == 300 and report.aborts == 200 and report.retries == 200
    assert report.abort_rate == pytest.approx(2 / 3)
    assert report.aborts_per_committed == pytest.approx(2.0)
    assert report.retries_per_committed == pytest.approx(2.0)
    assert report.p50_ms == pytest.approx(3000 * TRY_S)  # latency includes the retries
    doc = json.loads(report.to_json())
    for key in ("committed", "aborts", "retries", "abort_rate", "p50_ms", "p99_ms", "ops"):
        assert doc[key] is not None, key
    assert "abort_rate=" in report.summary_line()
    # The commit call alone, of the try that committed.
    assert report.commit_p50_ms == report.commit_p99_ms == pytest.approx(1000 * TRY_S / 2)
    assert "commit_p50=" in report.summary_line()


def test_custom_workload_failures_count_as_errors_with_their_tries() -> None:
    clock = FakeClock()
    driver = FakeTxnStore(clock)
    report = run_workload_sync(lambda: driver, _txn_workload(2, fail_every=4), 2, 0.4, clock=clock)
    assert report.errors > 0 and report.errors_by_type == {"TimeoutError": report.errors}
    assert report.committed == report.ops
    assert report.attempts == 2 * (report.ops + report.errors)
    assert report.aborts == report.ops + report.errors


def test_custom_workload_setup_can_be_skipped_and_plain_reports_have_no_txn_figures() -> None:
    clock = FakeClock()
    driver = FakeTxnStore(clock)
    report = run_workload_sync(
        lambda: driver,
        _txn_workload(1, transactional=False),
        1,
        10 * TRY_S,
        preload=False,
        clock=clock,
    )
    assert driver.setups == 0 and report.ops == 10
    assert report.committed is None and report.abort_rate is None
    assert report.commit_p50_ms is None
    plain = run_workload_sync(lambda: FakeDriver({}, clock), "put", 1, 0.01, clock=clock)
    assert plain.committed is None and plain.aborts is None


# ---------------------------------------------------------------- transaction key placement


def _map(split_points: list[bytes]):  # type: ignore[no-untyped-def]
    from router.shard_map import NodeAddress, bootstrap

    nodes = [
        NodeAddress(node_id=i, name=f"n{i}", client_addr="x", peer_addr="x") for i in (1, 2, 3)
    ]
    return bootstrap(nodes, split_points, 3)


@pytest.mark.parametrize(
    "split_points", [[b"j", b"r"], [b"b", b"bench/txn/00000050"], [b"a\x00", b"a\x01"]]
)
def test_txn_keys_land_in_the_shard_they_are_chosen_for(split_points: list[bytes]) -> None:
    from shard.bench_txn import bank_accounts, data_groups, keys_in_group

    shard_map = _map(split_points)
    groups = data_groups(shard_map)
    assert groups == [1, 2, 3]
    for g in groups:
        keys = keys_in_group(shard_map, g, 100, b"txn")
        assert len(set(keys)) == 100
        assert {shard_map.locate(k).group_id for k in keys} == {g}
    accounts = bank_accounts(shard_map, 4)
    assert len(set(accounts)) == 4
    assert [shard_map.locate(k).group_id for k in accounts] == [1, 2, 3, 1]


def test_txn_workloads_refuse_too_few_shards() -> None:
    from shard.bench_txn import build_txn_workload

    one = _map([])
    build_txn_workload("txn1", one)
    build_txn_workload("bank", one, hot_keys=4)
    for name in ("txn2", "txn3", "ro"):
        with pytest.raises(ValueError, match="data shards"):
            build_txn_workload(name, one)
    with pytest.raises(ValueError):
        build_txn_workload("bank", one, hot_keys=1)
    with pytest.raises(ValueError):
        build_txn_workload("scan", one)


def test_throughput_is_over_the_measured_time_and_duration_the_requested_one() -> None:
    """Each op takes 0.4 s of fake time: three start within the 1.0 s window, the last ends
    at 1.2 s."""
    clock = FakeClock()
    driver = FakeDriver({}, clock, [0.4])
    report = run_workload_sync(lambda: driver, "put", 1, 1.0, clock=clock)
    assert report.ops == 3
    assert report.duration_s == 1.0
    assert report.elapsed_s == pytest.approx(1.2)
    assert report.throughput_ops_s == pytest.approx(3 / 1.2)


def test_the_summary_line_gives_throughput_and_the_three_percentiles() -> None:
    clock = FakeClock()
    driver = FakeDriver({}, clock, [0.001])
    line = run_workload_sync(lambda: driver, "put", 1, 0.1, clock=clock).summary_line()
    for part in (" ops/s", "p50=", "p99=", "p99.9="):
        assert part in line, line
