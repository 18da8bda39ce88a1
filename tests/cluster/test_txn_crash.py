"""kill -9 of the coordinator group's leader in the middle of a batch of cross-shard commits.

Every transfer writes an account of shard 1 first, so group 1 coordinates all of them. While
eight threads commit transfers, the leader of group 1 is SIGKILLed and later restarted.
Afterwards:

- every transaction is committed on all its shards or on none: each committed transfer's two
  writes carry its commit timestamp as their version, and the bank total never changes;
- every client got a definite answer (committed / Conflict) or CommitUnknown, and the
  recorded outcome agrees: committed ones are COMMITTED at the same timestamp, conflicts are
  never COMMITTED, and every CommitUnknown resolves to COMMITTED or ABORTED (none in doubt).
"""

from __future__ import annotations

import asyncio
import random
import threading
import time
from collections.abc import Iterator

import pytest

import txn
from router.client import RoutingClient
from shard.cluster import LocalCluster, wait_for
from txn.status import TxnState

pytestmark = pytest.mark.cluster

ACCOUNTS = [f"{prefix}{i:02d}".encode() for prefix in ("b", "k", "s") for i in range(4)]
INITIAL = 100
WORKERS = 8


@pytest.fixture
def bank(make_cluster: object) -> Iterator[tuple[LocalCluster, txn.Client]]:
    cluster: LocalCluster = make_cluster(nodes=3, shards=3)  # type: ignore[operator]
    groups = {cluster.group_of(a) for a in ACCOUNTS}
    assert len(groups) == 3, groups
    with txn.Client(cluster.env_value(), timeout_s=10.0, max_attempts=50) as client:
        with client.transaction() as tx:
            for account in ACCOUNTS:
                tx.put(account, str(INITIAL).encode())
        yield cluster, client


def _total(client: txn.Client) -> int:
    with client.snapshot() as snap:
        return sum(int(snap.get(a) or 0) for a in ACCOUNTS)


async def _versions_at(
    cluster: LocalCluster, writes: list[tuple[int, bytes, bytes]]
) -> dict[tuple[int, bytes], int]:
    """The version of each key as of each commit timestamp (newest version <= ts)."""
    out: dict[tuple[int, bytes], int] = {}
    async with RoutingClient(cluster.env_value(), timeout_s=10.0) as rc:
        for commit_ts, src, dst in writes:
            for key in (src, dst):
                found = await rc.get(key, at_version=commit_ts)
                out[(commit_ts, key)] = found[1] if found is not None else 0
    return out


def test_coordinator_leader_kill9_mid_commit(bank: tuple[LocalCluster, txn.Client]) -> None:
    cluster, client = bank
    first_shard = [a for a in ACCOUNTS if cluster.group_of(a) == cluster.group_of(ACCOUNTS[0])]
    others = [a for a in ACCOUNTS if a not in first_shard]
    outcomes: list[tuple[str, txn.TxnRef | None, int | None, bytes, bytes]] = []
    lock = threading.Lock()
    stop = threading.Event()

    def worker(seed: int) -> None:
        rng = random.Random(seed)
        while not stop.is_set():
            src, dst = rng.choice(first_shard), rng.choice(others)
            amount = rng.randint(1, 5)
            tx = client.transaction()
            try:
                with tx:
                    # The shard-1 account is written first: group 1 coordinates.
                    a = int(tx.get(src) or 0)
                    b = int(tx.get(dst) or 0)
                    tx.put(src, str(a - amount).encode())
                    tx.put(dst, str(b + amount).encode())
                kind = "committed"
            except txn.CommitUnknown:
                kind = "unknown"
            except (txn.Conflict, txn.Unavailable, txn.TooManyRetries):
                kind = "failed"
            with lock:
                outcomes.append((kind, tx.ref, tx.commit_ts, src, dst))

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(WORKERS)]
    for thread in threads:
        thread.start()
    try:
        wait_for(lambda: len(outcomes) >= 20, 30.0, "transfers before the crash")
        leader = cluster.leader_of(1)
        assert leader is not None
        cluster.kill(leader)
        killed_at = len(outcomes)
        wait_for(lambda: len(outcomes) >= killed_at + 20, 60.0, "transfers after the crash")
        cluster.restart(leader)
        restarted_at = len(outcomes)
        wait_for(lambda: len(outcomes) >= restarted_at + 10, 60.0, "transfers after restart")
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=60)

    counts = {k: sum(1 for o in outcomes if o[0] == k) for k in ("committed", "failed", "unknown")}
    print(f"transfers: {counts}")
    assert counts["committed"] > 0

    # No transaction stays in doubt; recorded outcomes agree with what clients were told.
    def settled() -> bool:
        for kind, ref, _ts, _s, _d in outcomes:
            if ref is None:
                continue
            state = client.txn_status(ref).state
            if kind == "unknown" and state not in (TxnState.COMMITTED, TxnState.ABORTED):
                return False
        return True

    wait_for(settled, 60.0, "every CommitUnknown resolved")
    committed_writes: list[tuple[int, bytes, bytes]] = []
    for kind, ref, commit_ts, src, dst in outcomes:
        if ref is None:
            continue
        status = client.txn_status(ref)
        if kind == "committed":
            assert status.state is TxnState.COMMITTED and status.commit_ts == commit_ts
            committed_writes.append((commit_ts, src, dst))
        elif kind == "failed":
            assert status.state is not TxnState.COMMITTED, ref

    # Atomic: both writes of every committed transfer exist, at its commit timestamp.
    versions = asyncio.run(_versions_at(cluster, committed_writes))
    for commit_ts, src, dst in committed_writes:
        assert versions[(commit_ts, src)] == commit_ts and versions[(commit_ts, dst)] == commit_ts

    deadline = time.monotonic() + 30
    while True:
        try:
            assert _total(client) == INITIAL * len(ACCOUNTS)
            break
        except txn.Unavailable:
            if time.monotonic() > deadline:
                raise
