"""A closed-loop key-value load generator, independent of the store it measures.

Theory of operation
-------------------
The harness knows a store only through a `Driver` (put, get, close). `run_workload` opens
`connections` drivers from a factory (one shared by every client, one per client, or any
number in between, assigned round-robin like etcd's `benchmark --conns/--clients`), preloads
the key space when the workload reads, then runs `clients` coroutines. Each client is a closed
loop: it issues one operation, waits for its answer, records the latency and issues the next,
so `clients` is the number of operations outstanding. Sequential latency is `clients=1`.

Rules
-----
1. Latency is measured per operation with `time.perf_counter()` (the `clock` argument), from
   just before the driver call to just after it returns. Only operations that *started* inside
   the measurement window (after the optional warm-up) are recorded; an operation that raised
   counts as an error and contributes no latency sample.
2. Throughput is successful recorded operations divided by the measured elapsed time, from the
   start of the window until the last client's last operation returned (operations in flight at
   the deadline are allowed to finish, so no answer is thrown away).
3. Percentiles are exact, by nearest rank over every recorded sample (`percentile`), never
   estimated from histograms.
4. Randomness (key choice, read/write choice, value bytes) comes from `random.Random(seed)`
   derived per client, so two runs with the same seed issue the same operation sequence per
   client.
5. A progress callback, if given, is called about every `progress_interval_s` with the
   operations so far and the rate over the last interval.

A driver for any store plugs in unchanged: etcd's is `bench/etcd_driver.py`; a paxoskv driver
only needs the same three coroutines.

Custom workloads
----------------
Besides the built-in "put", "get" and "mixed", `workload` may be a `CustomWorkload`: any async
operation `operation(driver, rng, tally)` (e.g. a whole transaction with its retries), plus an
optional `setup(drivers)` run once before the clients start (not measured). The driver is then
whatever the factory returns; the harness only calls its `close()`. The operation fills in the
`OpTally` it is given (tries it took, tries that aborted on a conflict, whether a read missed);
the harness counts the tallies of every operation that started inside the window, the failed
ones too. A `transactional` workload's report adds `committed` (= ops), `attempts`, `aborts`,
`retries` (tries beyond the first, summed), `abort_rate` (aborts / attempts) and the aborts and
retries per committed operation. Its latency is the whole operation, retries included; when
the operation reports how long its successful commit call took (`OpTally.commit_s`), the
report also has `commit_p50_ms` and `commit_p99_ms`.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import json
import math
import os
import platform
import random
import sys
import time
from array import array
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal, Protocol, runtime_checkable

__all__ = [
    "WORKLOADS",
    "BenchReport",
    "CustomWorkload",
    "Driver",
    "DriverFactory",
    "OpTally",
    "Operation",
    "ProgressSample",
    "Workload",
    "key_for",
    "machine_info",
    "percentile",
    "run_workload",
    "run_workload_sync",
]

Workload = Literal["put", "get", "mixed"]
WORKLOADS: tuple[str, ...] = ("put", "get", "mixed")


@runtime_checkable
class Driver(Protocol):
    """One client connection to the store under test.

    A driver may be shared by many concurrent client coroutines (`connections=1`), so its
    methods must tolerate concurrent calls. Any exception from `put`/`get` counts as one error.
    """

    async def put(self, key: bytes, value: bytes) -> None:
        """Write `value` under `key`; return once the store acknowledged it."""
        ...

    async def get(self, key: bytes) -> bytes | None:
        """Read `key`; return its value, or None when the key does not exist."""
        ...

    async def close(self) -> None:
        """Release the connection. Called once per driver, also after failures."""
        ...


# A factory returns a new Driver, or an awaitable of one (e.g. an `async def`), so a driver can
# open its channel inside the running event loop.
DriverFactory = Callable[[], "Driver | Awaitable[Driver]"]


@dataclass(frozen=True, slots=True)
class ProgressSample:
    """What the progress callback receives, about once per `progress_interval_s`."""

    elapsed_s: float  # since the start of the measurement window (negative during warm-up)
    ops: int  # successful operations recorded so far
    errors: int  # errors recorded so far
    rate_ops_s: float  # successful operations per second over the last interval


ProgressCallback = Callable[[ProgressSample], None]


@dataclass(slots=True)
class OpTally:
    """What one operation of a `CustomWorkload` reports besides its latency.

    A fresh tally (one attempt, no abort, no miss) is handed to every call; the operation
    updates it as it goes, so the figures count also when it finally raises.
    """

    attempts: int = 1  # tries the operation took (1: no retry)
    aborts: int = 0  # tries that ended in a conflict (the store refused, nothing written)
    miss: bool = False  # a read found no value where one must exist
    commit_s: float | None = None  # a transaction: how long its successful commit call took


# operation(driver, rng, tally): one operation against the store; raising counts one error.
Operation = Callable[[Any, random.Random, OpTally], Awaitable[None]]
# setup(drivers): prepares the store once before the clients start (not measured).
Setup = Callable[[Sequence[Any]], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class CustomWorkload:
    """A workload made of an arbitrary async operation (see the module doc).

    Attributes:
        name: the report's `workload` field.
        operation: called in a closed loop by every client with its driver, its own
            `random.Random` and a fresh `OpTally`.
        setup: called once with all opened drivers before the clients start (and before
            `on_start`), unless `run_workload(preload=False)`.
        transactional: the report gets the transaction figures (committed, aborts, ...).
    """

    name: str
    operation: Operation
    setup: Setup | None = None
    transactional: bool = True


@dataclass(slots=True)
class BenchReport:
    """The result of one `run_workload` call. `to_json()` is the on-disk format."""

    target: str
    workload: str
    clients: int
    connections: int
    duration_s: float  # requested measurement window
    elapsed_s: float  # measured: window start until the last operation returned
    warmup_s: float
    ops: int  # successful operations in the window
    errors: int
    misses: int  # gets that returned None for a preloaded key (store lost or hid a write)
    throughput_ops_s: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    p999_ms: float
    min_ms: float
    max_ms: float
    mean_ms: float
    key_count: int
    value_size: int
    read_fraction: float
    seed: int
    errors_by_type: dict[str, int] = field(default_factory=dict)
    first_errors: list[str] = field(default_factory=list)
    machine: dict[str, Any] = field(default_factory=dict)
    started_at: str = ""
    extra: dict[str, Any] = field(default_factory=dict)
    # Transaction figures: set for transactional custom workloads, None otherwise.
    committed: int | None = None  # = ops: operations that succeeded (committed)
    attempts: int | None = None  # tries of every recorded operation, failed ones included
    aborts: int | None = None  # tries that ended in a conflict
    retries: int | None = None  # tries beyond each operation's first
    abort_rate: float | None = None  # aborts / attempts
    aborts_per_committed: float | None = None
    retries_per_committed: float | None = None
    # The commit call alone (Prepare/Decide or one-phase round), of the attempt that committed.
    commit_p50_ms: float | None = None
    commit_p99_ms: float | None = None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict; NaN (no samples) becomes None, since JSON has no NaN."""
        return {
            k: None if isinstance(v, float) and math.isnan(v) else v
            for k, v in asdict(self).items()
        }

    def to_json(self, *, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent, sort_keys=True, allow_nan=False)

    def summary_line(self) -> str:
        """One human-readable line, e.g. for a CLI printing one line per run."""
        line = (
            f"{self.target} {self.workload:<5} clients={self.clients:<4} "
            f"conns={self.connections:<3} ops={self.ops:<7} "
            f"{self.throughput_ops_s:9.1f} ops/s  p50={self.p50_ms:.2f}ms "
            f"p99={self.p99_ms:.2f}ms p99.9={self.p999_ms:.2f}ms max={self.max_ms:.2f}ms "
            f"errors={self.errors} misses={self.misses}"
        )
        if self.committed is not None:
            line += (
                f" committed={self.committed} aborts={self.aborts} retries={self.retries}"
                f" abort_rate={self.abort_rate or 0.0:.3f}"
            )
        if self.commit_p50_ms is not None:
            line += f" commit_p50={self.commit_p50_ms:.2f}ms commit_p99={self.commit_p99_ms:.2f}ms"
        return line


def percentile(sorted_samples: Sequence[float], p: float) -> float:
    """Exact percentile by nearest rank: the smallest sample with at least p% of samples <= it.

    Args:
        sorted_samples: samples in ascending order.
        p: percentile in [0, 100]; p=0 gives the minimum, p=100 the maximum.

    Returns:
        The sample value, or NaN for an empty input.

    Raises:
        ValueError: p outside [0, 100].
    """
    if not 0.0 <= p <= 100.0:
        raise ValueError(f"percentile must be in [0, 100], got {p}")
    n = len(sorted_samples)
    if n == 0:
        return math.nan
    # Nearest rank: rank = ceil(p/100 * n), 1-based. The small epsilon keeps p*n that is an
    # integer in exact arithmetic (e.g. 99.9% of 1000) from rounding up through float error.
    rank = math.ceil(p / 100.0 * n - 1e-9)
    return sorted_samples[min(max(rank, 1), n) - 1]


def machine_info() -> dict[str, Any]:
    """Describe the machine a report was measured on: cpu count, CPU model, OS, Python."""
    cpu_model = ""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu_model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        cpu_model = platform.processor()
    return {
        "cpu_count": os.cpu_count(),
        "cpu_model": cpu_model,
        "platform": platform.platform(),
        "python": sys.version.split()[0],
        "hostname": platform.node(),
        "loadavg_1m": round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None,
    }


def key_for(index: int) -> bytes:
    """The benchmark's key for `index`: fixed width so keys sort in index order."""
    return b"bench/%010d" % index


@dataclass(slots=True)
class _Counters:
    """Shared mutable state of one run (single event loop, so no locks)."""

    ops: int = 0
    errors: int = 0
    misses: int = 0
    attempts: int = 0
    aborts: int = 0
    retries: int = 0
    errors_by_type: dict[str, int] = field(default_factory=dict)
    first_errors: list[str] = field(default_factory=list)

    def record_error(self, exc: BaseException) -> None:
        self.errors += 1
        name = type(exc).__name__
        self.errors_by_type[name] = self.errors_by_type.get(name, 0) + 1
        if len(self.first_errors) < 5:
            self.first_errors.append(f"{name}: {exc}"[:500])

    def add_tally(self, tally: OpTally) -> None:
        self.attempts += tally.attempts
        self.aborts += tally.aborts
        self.retries += max(0, tally.attempts - 1)


async def _open_driver(factory: DriverFactory) -> Driver:
    made = factory()
    if inspect.isawaitable(made):
        made = await made
    return made


async def _close_all(drivers: Sequence[Driver]) -> None:
    results = await asyncio.gather(*(d.close() for d in drivers), return_exceptions=True)
    for r in results:
        if isinstance(r, BaseException) and not isinstance(r, Exception):
            raise r


async def _preload(
    drivers: Sequence[Driver], key_count: int, value: bytes, concurrency: int
) -> None:
    """Write every key once so reads hit. Raises on the first failed write."""
    next_index = 0

    async def worker(driver: Driver) -> None:
        nonlocal next_index
        while next_index < key_count:
            i = next_index
            next_index += 1
            await driver.put(key_for(i), value)

    workers = max(1, min(concurrency, key_count))
    await asyncio.gather(*(worker(drivers[w % len(drivers)]) for w in range(workers)))


async def run_workload(
    driver_factory: DriverFactory,
    workload: Workload | CustomWorkload,
    clients: int,
    duration_s: float,
    *,
    key_count: int = 10_000,
    value_size: int = 100,
    connections: int | None = 1,
    read_fraction: float = 0.5,
    warmup_s: float = 0.0,
    progress: ProgressCallback | None = None,
    progress_interval_s: float = 1.0,
    preload: bool | None = None,
    preload_concurrency: int = 64,
    seed: int = 0,
    target: str = "",
    extra: dict[str, Any] | None = None,
    clock: Callable[[], float] = time.perf_counter,
    on_start: Callable[[], None] | None = None,
) -> BenchReport:
    """Run one closed-loop workload and report throughput and latency.

    Args:
        driver_factory: returns a new `Driver` (or an awaitable of one); called `connections`
            times.
        workload: "put" (writes only), "get" (reads of preloaded keys) or "mixed" (each
            operation is a get with probability `read_fraction`, else a put); or a
            `CustomWorkload` (key_count, value_size and read_fraction then only go into the
            report; the workload chooses its own keys and values).
        clients: concurrent closed-loop clients (operations outstanding); 1 is sequential.
        duration_s: length of the measurement window, after `warmup_s`.
        key_count: size of the key space; keys are chosen uniformly at random.
        value_size: bytes per written value.
        connections: number of drivers opened; clients use them round-robin. 1 shares one
            driver among all clients; None opens one per client.
        read_fraction: probability of a get in the "mixed" workload.
        warmup_s: operations run but are not recorded for this long first.
        progress: called about every `progress_interval_s` with a `ProgressSample`.
        preload: write every key before starting; default True for "get" and "mixed". For a
            `CustomWorkload`: whether to run its `setup` (default True).
        preload_concurrency: outstanding writes during the preload.
        seed: base seed for keys, operation choice and value bytes.
        target: name of the system under test, copied into the report.
        extra: free-form facts copied into the report (endpoints, store settings, ...).
        clock: monotonic seconds; `time.perf_counter` except in tests of the harness itself.
        on_start: called once when the measurement window opens: before the clients start
            without a warm-up, else by the first operation to start inside the window (the
            clients are then running). Start measuring the CPU the run uses here: its seconds
            then cover the same window as `ops` (warm-up excluded).

    Returns:
        A `BenchReport`.

    Raises:
        ValueError: bad arguments.
        Exception: whatever the factory or the preload raised (operation errors during the
            run are counted, not raised).
    """
    custom = workload if isinstance(workload, CustomWorkload) else None
    if custom is None and workload not in WORKLOADS:
        raise ValueError(f"workload must be one of {WORKLOADS}, got {workload!r}")
    workload_name = custom.name if custom is not None else str(workload)
    if clients < 1:
        raise ValueError(f"clients must be >= 1, got {clients}")
    if duration_s <= 0 or warmup_s < 0:
        raise ValueError("duration_s must be > 0 and warmup_s >= 0")
    if key_count < 1 or value_size < 0:
        raise ValueError("key_count must be >= 1 and value_size >= 0")
    if not 0.0 <= read_fraction <= 1.0:
        raise ValueError(f"read_fraction must be in [0, 1], got {read_fraction}")
    n_conns = clients if connections is None else connections
    if not 1 <= n_conns <= clients:
        raise ValueError(f"connections must be in [1, clients] or None, got {connections}")
    if preload is None:
        preload = custom is not None or workload != "put"

    value = random.Random(seed).randbytes(value_size)
    counters = _Counters()
    per_client_samples: list[array[float]] = [array("d") for _ in range(clients)]
    commit_samples: array[float] = array("d")
    started_at = datetime.now(UTC).isoformat(timespec="seconds")

    drivers: list[Driver] = []
    try:
        for _ in range(n_conns):
            drivers.append(await _open_driver(driver_factory))
        if preload and custom is not None:
            if custom.setup is not None:
                await custom.setup(drivers)
        elif preload:
            await _preload(drivers, key_count, value, preload_concurrency)

        loop_start = clock()
        window_start = loop_start + warmup_s
        deadline = window_start + duration_s
        window_open = False

        def open_window(t0: float) -> None:
            # Figures per operation (CPU seconds / ops) need the meter to cover the window
            # `ops` counts; started before the warm-up it also charged the warm-up's CPU.
            nonlocal window_open
            if not window_open and t0 >= window_start:
                window_open = True
                if on_start is not None:
                    on_start()

        if warmup_s == 0:
            open_window(window_start)

        async def client(index: int) -> None:
            driver = drivers[index % n_conns]
            rng = random.Random(seed * 1_000_003 + index + 1)
            samples = per_client_samples[index]
            if custom is not None:
                await custom_client(driver, rng, samples)
                return
            while True:
                t0 = clock()
                if t0 >= deadline:
                    return
                open_window(t0)
                key = key_for(rng.randrange(key_count))
                is_get = workload == "get" or (workload == "mixed" and rng.random() < read_fraction)
                try:
                    if is_get:
                        got = await driver.get(key)
                    else:
                        await driver.put(key, value)
                        got = value
                except Exception as exc:
                    if t0 >= window_start:
                        counters.record_error(exc)
                    # A driver that fails without awaiting would starve the other clients.
                    await asyncio.sleep(0)
                    continue
                t1 = clock()
                if t0 >= window_start:
                    samples.append(t1 - t0)
                    counters.ops += 1
                    if got is None and preload:
                        counters.misses += 1

        async def custom_client(driver: Any, rng: random.Random, samples: array[float]) -> None:
            assert custom is not None
            operation = custom.operation
            while True:
                t0 = clock()
                if t0 >= deadline:
                    return
                open_window(t0)
                tally = OpTally()
                try:
                    await operation(driver, rng, tally)
                except Exception as exc:
                    if t0 >= window_start:
                        counters.record_error(exc)
                        counters.add_tally(tally)
                    await asyncio.sleep(0)
                    continue
                t1 = clock()
                if t0 >= window_start:
                    samples.append(t1 - t0)
                    if tally.commit_s is not None:
                        commit_samples.append(tally.commit_s)
                    counters.ops += 1
                    counters.add_tally(tally)
                    if tally.miss:
                        counters.misses += 1

        stop = asyncio.Event()

        async def reporter(callback: ProgressCallback) -> None:
            last_ops, last_t = 0, clock()
            while not stop.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), timeout=progress_interval_s)
                now = clock()
                ops = counters.ops
                dt = now - last_t
                callback(
                    ProgressSample(
                        elapsed_s=now - window_start,
                        ops=ops,
                        errors=counters.errors,
                        rate_ops_s=(ops - last_ops) / dt if dt > 0 else 0.0,
                    )
                )
                last_ops, last_t = ops, now

        reporter_task = asyncio.create_task(reporter(progress)) if progress is not None else None
        try:
            await asyncio.gather(*(client(i) for i in range(clients)))
            # No operation started inside the window (one outlasted it): open it anyway, so a
            # caller's on_start still runs once.
            open_window(window_start)
        finally:
            end = clock()
            stop.set()
            if reporter_task is not None:
                await reporter_task
    finally:
        await _close_all(drivers)

    merged = sorted(s for samples in per_client_samples for s in samples)
    elapsed_s = max(end - window_start, 1e-9)

    def ms(x: float) -> float:
        return x * 1000.0

    txn: dict[str, Any] = {}
    if custom is not None and custom.transactional:
        ops = counters.ops
        txn = {
            "committed": ops,
            "attempts": counters.attempts,
            "aborts": counters.aborts,
            "retries": counters.retries,
            "abort_rate": counters.aborts / counters.attempts if counters.attempts else 0.0,
            "aborts_per_committed": counters.aborts / ops if ops else None,
            "retries_per_committed": counters.retries / ops if ops else None,
        }
        if commit_samples:
            commits = sorted(commit_samples)
            txn["commit_p50_ms"] = ms(percentile(commits, 50))
            txn["commit_p99_ms"] = ms(percentile(commits, 99))
    if custom is not None:
        reported_fraction = 0.0
    elif workload == "mixed":
        reported_fraction = read_fraction
    else:
        reported_fraction = 1.0 if workload == "get" else 0.0

    return BenchReport(
        target=target,
        workload=workload_name,
        clients=clients,
        connections=n_conns,
        duration_s=duration_s,
        elapsed_s=elapsed_s,
        warmup_s=warmup_s,
        ops=counters.ops,
        errors=counters.errors,
        misses=counters.misses,
        throughput_ops_s=counters.ops / elapsed_s,
        p50_ms=ms(percentile(merged, 50)),
        p90_ms=ms(percentile(merged, 90)),
        p99_ms=ms(percentile(merged, 99)),
        p999_ms=ms(percentile(merged, 99.9)),
        min_ms=ms(merged[0]) if merged else math.nan,
        max_ms=ms(merged[-1]) if merged else math.nan,
        mean_ms=ms(math.fsum(merged) / len(merged)) if merged else math.nan,
        key_count=key_count,
        value_size=value_size,
        read_fraction=reported_fraction,
        seed=seed,
        errors_by_type=dict(counters.errors_by_type),
        first_errors=list(counters.first_errors),
        machine=machine_info(),
        started_at=started_at,
        extra=dict(extra or {}),
        **txn,
    )


def run_workload_sync(driver_factory: DriverFactory, *args: Any, **kwargs: Any) -> BenchReport:
    """`run_workload` in a fresh event loop (`asyncio.run`), for scripts and tests."""
    return asyncio.run(run_workload(driver_factory, *args, **kwargs))
