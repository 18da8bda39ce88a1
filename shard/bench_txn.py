"""Transaction workloads for the closed-loop harness (`paxoskv bench --workload txn1|...`).

Theory of operation
-------------------
Each workload is a `shard.bench_harness.CustomWorkload` whose operation is one whole
transaction through the `txn.AsyncClient` API, run by the client's own retry loop
(`client.run`: a retryable error re-runs the function with a fresh transaction, with backoff).
The harness measures the latency of the whole `client.run` call, so a transaction's commit
latency includes its retries. The operation counts its tries and the tries that ended in a
`Conflict` (an abort) in the harness's `OpTally`.

Workloads (S = the number of data shards of the cluster's shard map):

- `txn1`: read-modify-write of one key of one shard (read it, write it back incremented).
  One participant group: the commit is one `CommitOnePhase` Paxos round (1PC).
- `txn2`, `txn3`: read and write one key on each of 2 / 3 distinct shards (2PC: Prepare on
  every participant in parallel, which commits; each participant is resolved in the
  background). The shards are drawn at random per transaction, the reads run concurrently.
- `ro`: a read-only snapshot (`client.snapshot()`) reading one key on each of 3 distinct
  shards at one timestamp: a timestamp request and three snapshot reads, no Paxos round, no
  retry loop (a snapshot never conflicts).
- `bank`: transfers between accounts spread round-robin over all shards: read two accounts,
  move 1-10 units (never below zero). `hot_keys=N` makes every transfer use only N accounts,
  so contention (and the abort rate) rises with the number of clients. The accounts are read
  for update (`tx.get(key, for_update=True)`: conflicting transfers queue at the leaders
  instead of racing to commit), or with plain optimistic reads when `lock_reads=False`.
  The total is checked by a snapshot after the run (`bank_total`).
- `counter`: add 1 to one of N counters (`hot_keys`, default 1) in the first data shard, by
  an atomic add (`tx.add`: the transaction reads nothing, so it never conflicts over a
  read), or with `read_modify_write` by a get (for update unless `lock_reads=False`) and a
  put: the same increments, to compare. One-phase commits. After the run a snapshot checks
  that the counters sum to the increments that committed (`counter_total`).

Keys are chosen so the shard placement is what the name says: for each data group, keys are
built under its range's start key and checked with `ShardMap.locate`. Keys of these
workloads: `<range start>bench/txn/NNNNNNNN`, `<range start>bench/bank/NNNNNNNN` and
`<range start>bench/counter/NNNNNNNN`, so with
the default 3-shard split points ("j", "r") `bench/txn/..`, `jbench/txn/..`, `rbench/txn/..`.

Each workload's `setup` writes its keys first (blind-write transactions of up to
`PRELOAD_BATCH` keys of one shard each, so a preload is cheap), unless the key space is
already in `loaded` (a set shared between runs, so a suite preloads once).
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from router.shard_map import ShardMap
from shard.bench_harness import CustomWorkload, OpTally
from txn.atomic import decode_int, encode_int
from txn.client import AsyncClient
from txn.errors import Conflict, PaxosKVError
from txn.transaction import AsyncTransaction

__all__ = [
    "TXN_WORKLOADS",
    "TxnDriver",
    "bank_accounts",
    "bank_expected_total",
    "bank_total",
    "build_put_workload",
    "build_txn_workload",
    "counter_expected_total",
    "counter_total",
    "data_groups",
    "keys_in_group",
    "run_counted",
]

TXN_WORKLOADS: tuple[str, ...] = ("txn1", "txn2", "txn3", "ro", "bank", "counter")
SHARDS_TOUCHED = {"txn1": 1, "txn2": 2, "txn3": 3, "ro": 3}
PRELOAD_BATCH = 100  # keys per preload transaction (all of one shard: 1PC)
PRELOAD_CONCURRENCY = 8
INITIAL_BALANCE = 1000
COUNTER_WIDTH = 20


class TxnDriver:
    """A harness driver over one `AsyncClient` shared by every client coroutine.

    It is also a plain `Driver` (single-key `put`/`get` through the client), so the same
    connection serves the `put` baseline. `close()` leaves the client open: its owner closes it.
    """

    def __init__(self, client: AsyncClient) -> None:
        self.client = client

    async def put(self, key: bytes, value: bytes) -> None:
        await self.client.put(key, value)

    async def get(self, key: bytes) -> bytes | None:
        return await self.client.get(key)

    async def close(self) -> None:
        return None


def data_groups(shard_map: ShardMap) -> list[int]:
    """The data groups of the map in key order (the meta group 0 owns no keys)."""
    return [r.group_id for r in shard_map.ranges]


def keys_in_group(shard_map: ShardMap, group_id: int, count: int, tag: bytes) -> list[bytes]:
    """`count` distinct keys that `shard_map.locate` puts in `group_id`.

    Keys are `start + b"bench/" + tag + b"/%08d"` under the group's range start; when the
    range is too narrow for that prefix, shorter prefixes are tried.

    Raises:
        ValueError: no prefix fits the range (a pathologically narrow range).
    """
    start = shard_map.group(group_id).start
    for prefix in (b"bench/" + tag + b"/", tag + b"/", b"\x00" + tag + b"/"):
        keys = [start + prefix + b"%08d" % i for i in range(count)]
        if all(shard_map.locate(k).group_id == group_id for k in keys):
            return keys
    raise ValueError(f"cannot place {count} benchmark keys in group {group_id}")


def bank_accounts(shard_map: ShardMap, accounts: int) -> list[bytes]:
    """Account keys 0..accounts-1, account i on data group i mod S (round-robin)."""
    groups = data_groups(shard_map)
    per_group = {
        g: keys_in_group(shard_map, g, (accounts + len(groups) - 1) // len(groups), b"bank")
        for g in groups
    }
    return [per_group[groups[i % len(groups)]][i // len(groups)] for i in range(accounts)]


async def run_counted(
    client: AsyncClient, tally: OpTally, body: Callable[[AsyncTransaction], Awaitable[Any]]
) -> Any:
    """`client.run(body)`, counting tries and aborts (tries that raised `Conflict`) in `tally`.

    The function given to `client.run` commits the transaction itself (`run` only commits a
    transaction still open), so a conflict at commit is seen and counted here before `run`
    decides to retry.
    """
    tally.attempts = 0

    async def attempt(tx: AsyncTransaction) -> Any:
        tally.attempts += 1
        try:
            result = await body(tx)
            started = time.perf_counter()
            await tx.commit()
            tally.commit_s = time.perf_counter() - started
            return result
        except Conflict:
            tally.aborts += 1
            raise

    return await client.run(attempt)


def _counter(value: bytes | None) -> int:
    if not value:
        return 0
    return int(value[:COUNTER_WIDTH])


def _encode_counter(n: int, value_size: int) -> bytes:
    head = b"%0*d" % (COUNTER_WIDTH, n)
    return head + b"x" * max(0, value_size - len(head))


async def _write_all(client: AsyncClient, items: Sequence[tuple[bytes, bytes]]) -> None:
    """Blind-write `items` (all of one group per batch of the caller's making)."""
    batches = [items[i : i + PRELOAD_BATCH] for i in range(0, len(items), PRELOAD_BATCH)]
    pending = iter(batches)

    async def worker() -> None:
        for batch in pending:

            def write(tx: AsyncTransaction, batch: Sequence[tuple[bytes, bytes]] = batch) -> None:
                for k, v in batch:
                    tx.put(k, v)

            await client.run(write)

    await asyncio.gather(*(worker() for _ in range(PRELOAD_CONCURRENCY)))


async def bank_total(client: AsyncClient, accounts: Sequence[bytes]) -> int:
    """The sum of every account's balance, read in one snapshot."""
    sem = asyncio.Semaphore(64)
    async with client.snapshot() as snap:

        async def read(k: bytes) -> int:
            async with sem:
                return int(await snap.get(k) or b"0")

        return sum(await asyncio.gather(*(read(k) for k in accounts)))


def build_txn_workload(
    name: str,
    shard_map: ShardMap,
    *,
    keys_per_shard: int = 1000,
    value_size: int = 100,
    accounts: int = 1000,
    hot_keys: int | None = None,
    lock_reads: bool = True,
    read_modify_write: bool = False,
    loaded: set[str] | None = None,
) -> CustomWorkload:
    """One of `TXN_WORKLOADS` over `shard_map`; the driver must be a `TxnDriver`.

    Args:
        name: txn1, txn2, txn3, ro, bank or counter.
        shard_map: the cluster's map (the client's, `client.routing.shard_map`).
        keys_per_shard: key space of txn*/ro per data shard.
        value_size: bytes per txn*/ro value (a 20-digit counter, padded).
        accounts: bank accounts when `hot_keys` is None.
        hot_keys: bank: every transfer uses only this many accounts (>= 2); counter: the
            number of counters (default 1).
        lock_reads: bank, counter with `read_modify_write`: read for update (False:
            optimistic reads).
        read_modify_write: counter: a get and a put instead of an atomic add.
        loaded: key spaces already written (shared between runs); setup adds to it.

    Returns:
        A `CustomWorkload` (transactional) whose `setup` preloads its keys (the bank's
        resets every balance, the counter's every counter); `bank_expected_total(workload)`
        gives the bank's accounts and the total `bank_total` must find after a run,
        `counter_expected_total(workload)` the counters and the range their sum must be in.

    Raises:
        ValueError: unknown name, too few shards for the name, or bad sizes.
    """
    if name not in TXN_WORKLOADS:
        raise ValueError(f"workload must be one of {TXN_WORKLOADS}, got {name!r}")
    groups = data_groups(shard_map)
    loaded = set() if loaded is None else loaded
    if name == "bank":
        n = accounts if hot_keys is None else hot_keys
        if n < 2:
            raise ValueError(f"bank needs at least 2 accounts, got {n}")
        return _bank(bank_accounts(shard_map, n), lock_reads, loaded)
    if name == "counter":
        n = 1 if hot_keys is None else hot_keys
        if n < 1:
            raise ValueError(f"counter needs at least 1 counter, got {n}")
        counters = keys_in_group(shard_map, groups[0], n, b"counter")
        return _counters(counters, None if not read_modify_write else lock_reads)
    touched = SHARDS_TOUCHED[name]
    if len(groups) < touched:
        raise ValueError(
            f"{name} needs {touched} data shards, the cluster has {len(groups)} "
            "(start one with --shards 3)"
        )
    if keys_per_shard < 1 or value_size < 0:
        raise ValueError("keys_per_shard must be >= 1 and value_size >= 0")
    keys = {g: keys_in_group(shard_map, g, keys_per_shard, b"txn") for g in groups}
    space = f"txn/{keys_per_shard}/{value_size}"

    async def setup(drivers: Sequence[Any]) -> None:
        if space in loaded:
            return
        initial = _encode_counter(0, value_size)
        for g in groups:
            await _write_all(drivers[0].client, [(k, initial) for k in keys[g]])
        loaded.add(space)

    def pick(rng: random.Random) -> list[bytes]:
        return [rng.choice(keys[g]) for g in rng.sample(groups, touched)]

    if name == "ro":

        async def read_only(driver: TxnDriver, rng: random.Random, tally: OpTally) -> None:
            chosen = pick(rng)
            async with driver.client.snapshot() as snap:
                values = await asyncio.gather(*(snap.get(k) for k in chosen))
            tally.miss = any(v is None for v in values)

        return CustomWorkload(name, read_only, setup)

    async def read_write(driver: TxnDriver, rng: random.Random, tally: OpTally) -> None:
        chosen = pick(rng)

        async def body(tx: AsyncTransaction) -> None:
            values = await asyncio.gather(*(tx.get(k) for k in chosen))
            tally.miss = any(v is None for v in values)
            for k, v in zip(chosen, values, strict=True):
                tx.put(k, _encode_counter(_counter(v) + 1, value_size))

        await run_counted(driver.client, tally, body)

    return CustomWorkload(name, read_write, setup)


class _BankTransfer:
    """The bank operation; callable as an `Operation`, keeps its accounts for the audit."""

    def __init__(self, accounts: list[bytes], lock_reads: bool) -> None:
        self.accounts = accounts
        self.lock_reads = lock_reads

    async def __call__(self, driver: TxnDriver, rng: random.Random, tally: OpTally) -> None:
        src, dst = rng.sample(self.accounts, 2)
        amount = rng.randint(1, 10)

        async def body(tx: AsyncTransaction) -> None:
            a, b = await asyncio.gather(
                tx.get(src, for_update=self.lock_reads), tx.get(dst, for_update=self.lock_reads)
            )
            tally.miss = a is None or b is None
            have_a, have_b = int(a or b"0"), int(b or b"0")
            moved = min(amount, have_a)
            tx.put(src, b"%d" % (have_a - moved))
            tx.put(dst, b"%d" % (have_b + moved))

        await run_counted(driver.client, tally, body)


class _CounterIncrement:
    """The counter operation: add 1 to one of `counters` (all in one shard: one-phase
    commits) by an atomic add, or (`lock_reads` not None) by a get, for update when True,
    and a put. Counts what committed, and what may have, for the audit."""

    def __init__(self, counters: list[bytes], lock_reads: bool | None) -> None:
        self.counters = counters
        self.lock_reads = lock_reads
        self.committed = 0
        self.unsure = 0

    async def __call__(self, driver: TxnDriver, rng: random.Random, tally: OpTally) -> None:
        key = rng.choice(self.counters)
        lock_reads = self.lock_reads

        async def body(tx: AsyncTransaction) -> None:
            if lock_reads is None:
                tx.add(key, 1)
                return
            value = await tx.get(key, for_update=lock_reads)
            tx.put(key, encode_int(decode_int(value) + 1))

        try:
            await run_counted(driver.client, tally, body)
        except PaxosKVError as exc:
            self.unsure += exc.maybe_committed
            raise
        self.committed += 1


def _counters(counters: list[bytes], lock_reads: bool | None) -> CustomWorkload:
    increment = _CounterIncrement(counters, lock_reads)

    async def setup(drivers: Sequence[Any]) -> None:
        # Always reset, so the audit knows what every run's increments must sum to.
        await _write_all(drivers[0].client, [(k, encode_int(0)) for k in counters])

    return CustomWorkload("counter", increment, setup)


def counter_expected_total(workload: CustomWorkload) -> tuple[list[bytes], int, int]:
    """(counters, least, most) of a counter workload built by `build_txn_workload`: their
    sum after a run counts every increment that committed, and at most those whose outcome
    the client could not learn besides."""
    op = workload.operation
    if not isinstance(op, _CounterIncrement):
        raise ValueError(f"{workload.name} is not a counter workload")
    return op.counters, op.committed, op.committed + op.unsure


async def counter_total(client: AsyncClient, counters: Sequence[bytes]) -> int:
    """The sum of `counters` at one snapshot."""
    async with client.snapshot() as snap:
        values = await asyncio.gather(*(snap.get(k) for k in counters))
    return sum(decode_int(v) for v in values)


def build_put_workload(
    shard_map: ShardMap,
    *,
    keys_per_shard: int = 1000,
    value_size: int = 100,
    loaded: set[str] | None = None,
) -> CustomWorkload:
    """The single-key baseline for the transaction workloads: `client.put` of a random key
    of a random shard, from the same key space as txn1..txn3/ro (and values they can read).
    Not transactional (no tries or aborts are counted); the driver must be a `TxnDriver`."""
    keys = build_txn_workload(
        "txn1", shard_map, keys_per_shard=keys_per_shard, value_size=value_size, loaded=loaded
    )
    assert keys.setup is not None
    groups = data_groups(shard_map)
    space = {g: keys_in_group(shard_map, g, keys_per_shard, b"txn") for g in groups}
    value = _encode_counter(0, value_size)

    async def put(driver: TxnDriver, rng: random.Random, tally: OpTally) -> None:
        await driver.client.put(rng.choice(space[rng.choice(groups)]), value)

    return CustomWorkload("put", put, keys.setup, transactional=False)


def _bank(accounts: list[bytes], lock_reads: bool, loaded: set[str]) -> CustomWorkload:
    transfer = _BankTransfer(accounts, lock_reads)

    async def setup(drivers: Sequence[Any]) -> None:
        # Always reset the balances, so every run's total is known: INITIAL_BALANCE each.
        client: AsyncClient = drivers[0].client
        shard_map = client.routing.shard_map
        assert shard_map is not None
        by_group: dict[int, list[tuple[bytes, bytes]]] = {}
        for k in accounts:
            by_group.setdefault(shard_map.locate(k).group_id, []).append(
                (k, b"%d" % INITIAL_BALANCE)
            )
        for items in by_group.values():
            await _write_all(client, items)
        loaded.add(f"bank/{len(accounts)}")

    return CustomWorkload("bank", transfer, setup)


def bank_expected_total(workload: CustomWorkload) -> tuple[list[bytes], int]:
    """(accounts, expected total) of a bank workload built by `build_txn_workload`."""
    op = workload.operation
    if not isinstance(op, _BankTransfer):
        raise ValueError(f"{workload.name} is not a bank workload")
    return op.accounts, INITIAL_BALANCE * len(op.accounts)
