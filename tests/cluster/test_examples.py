"""The examples/ programs and fenced writes against one real 3-node, 3-shard cluster.

Each example runs as a subprocess (`python examples/NAME.py --cluster ...`) and must exit 0:
it checks its own claims. The fenced-write tests put the lock and the data in different
groups (two-phase commit) and in one group (one-phase commit), so both validation paths of
the real participants refuse a stale token. Every node is stopped by pid in the fixture's
finalizer, also when a test failed.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import txn
from shard.cluster import LocalCluster, is_node_process
from txn.errors import FencingTokenRejected

pytestmark = pytest.mark.cluster

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = [
    "unique_username",
    "async_signup",
    "bank_transfer",
    "secondary_index",
    "lock_with_fencing",
    "config_pointer",
    "room_capacity",
    "invoice_numbers",
    "leader_watch",
    "page_counters",
    "leader_lease",
]
EXAMPLE_TIMEOUT_S = 40.0


@pytest.fixture(scope="module")
def examples_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    """3 nodes, split points "j" and "r": the layout examples/README.md describes."""
    cluster = LocalCluster(tmp_path_factory.mktemp("examples") / "cluster", nodes=3, shards=3)
    try:
        cluster.start(deadline_s=60.0)
        yield cluster
    finally:
        try:
            cluster.stop(grace_s=3.0)
        finally:
            for name, proc in cluster._procs.items():
                if proc.poll() is None and is_node_process(proc.pid, cluster.config_path, name):
                    proc.kill()
                    proc.wait(timeout=10)
            cluster.close()


@pytest.fixture
def client(examples_cluster: LocalCluster) -> Iterator[txn.Client]:
    with txn.Client(examples_cluster.env_value(), timeout_s=10.0, max_attempts=100) as client:
        yield client


@pytest.mark.parametrize("name", EXAMPLES)
def test_example_runs_and_its_checks_hold(examples_cluster: LocalCluster, name: str) -> None:
    # subprocess.run kills the child (by its pid) when the timeout expires.
    script = str(ROOT / "examples" / f"{name}.py")
    done = subprocess.run(
        [sys.executable, script, "--cluster", examples_cluster.env_value()],
        capture_output=True,
        text=True,
        timeout=EXAMPLE_TIMEOUT_S,
        cwd=ROOT,
    )
    assert done.returncode == 0, f"{name} exited {done.returncode}:\n{done.stdout}\n{done.stderr}"
    assert done.stdout.rstrip().endswith("OK"), done.stdout


@pytest.mark.parametrize("name", EXAMPLES)
def test_an_example_pointed_at_no_cluster_fails_at_once_in_one_line(name: str) -> None:
    """Found by a walkthrough: with a wrong address, room_capacity printed nothing for 47 s
    (its client.run retried connecting 100 times) before failing."""
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, str(ROOT / "examples" / f"{name}.py"), "--cluster", "127.0.0.1:1"],
        capture_output=True,
        text=True,
        timeout=EXAMPLE_TIMEOUT_S,
        cwd=ROOT,
    )
    assert done.returncode == 1, done.stdout + done.stderr
    failure = (done.stdout + done.stderr).strip().splitlines()[-1]
    assert failure.startswith("FAILED: Unavailable: no node answered at 127.0.0.1:1"), failure
    assert time.monotonic() - started < 5.0  # not a whole timeout_s of retries (10 s)


def test_example_reads_the_cluster_from_the_environment(examples_cluster: LocalCluster) -> None:
    env = {"PAXOSKV_CLUSTER": examples_cluster.env_value(), "PATH": ""}
    done = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "lock_with_fencing.py")],
        capture_output=True,
        text=True,
        timeout=EXAMPLE_TIMEOUT_S,
        cwd=ROOT,
        env=env,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    missing = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "bank_transfer.py")],
        capture_output=True,
        text=True,
        timeout=EXAMPLE_TIMEOUT_S,
        cwd=ROOT,
        env={"PATH": ""},
    )
    assert missing.returncode == 2 and "PAXOSKV_CLUSTER" in missing.stderr


# ---------------------------------------------------------------------------- fenced writes


def acquire(client: txn.Client, lock: bytes, owner: bytes) -> int:
    with client.transaction() as tx:
        tx.get(lock)
        tx.put(lock, owner)
    assert tx.commit_ts
    return tx.commit_ts


def version_of(client: txn.Client, key: bytes) -> tuple[bytes | None, int]:
    with client.transaction() as tx:
        value = tx.get(key)
    return value, tx.read_set[key]


@pytest.mark.parametrize(
    ("lock", "data"),
    [(b"lock/fence-2pc", b"report/fence-2pc"), (b"lock/fence-1pc", b"lock/fence-1pc/data")],
    ids=["two-phase", "one-phase"],
)
def test_stale_token_is_refused_by_the_store_and_leaves_no_trace(
    examples_cluster: LocalCluster, client: txn.Client, lock: bytes, data: bytes
) -> None:
    two_phase = examples_cluster.group_of(lock) != examples_cluster.group_of(data)
    assert two_phase == (b"2pc" in lock)
    old = acquire(client, lock, b"A")
    assert version_of(client, lock) == (b"A", old)  # the token is the lock key's version
    written = client.put_fenced(data, b"by A", lock=lock, token=old)  # current: accepted
    assert version_of(client, data) == (b"by A", written)

    new = acquire(client, lock, b"B")
    assert new > old
    with pytest.raises(FencingTokenRejected) as info:
        client.put_fenced(data, b"late by A", lock=lock, token=old)
    assert (info.value.token, info.value.latest_version) == (old, new)
    assert not info.value.retryable
    with pytest.raises(FencingTokenRejected):
        client.delete_fenced(data, lock=lock, token=old)
    # No trace: same value and version, and no intent left on the data key (a plain write
    # with a short deadline would fail with Conflict if one were held).
    assert version_of(client, data) == (b"by A", written)
    assert client.put(data, b"plain", timeout_s=2.0) > written

    ts = client.put_fenced(data, b"by B", lock=lock, token=new)  # the current token works
    assert version_of(client, data) == (b"by B", ts)


def test_fenced_write_in_a_larger_transaction_is_all_or_nothing(client: txn.Client) -> None:
    lock, keys = b"lock/fence-multi", [b"alpha/fence", b"kilo/fence", b"sierra/fence"]
    old = acquire(client, lock, b"A")
    new = acquire(client, lock, b"B")
    with pytest.raises(FencingTokenRejected), client.transaction() as tx:
        for key in keys:
            tx.put_fenced(key, b"A", lock=lock, token=old)
    assert [client.get(k) for k in keys] == [None] * 3
    with client.transaction() as tx:
        for key in keys:
            tx.put_fenced(key, b"B", lock=lock, token=new)
    with client.snapshot() as snap:
        assert [snap.get(k) for k in keys] == [b"B"] * 3


def load_example(name: str, monkeypatch: pytest.MonkeyPatch) -> Any:
    spec = importlib.util.spec_from_file_location(name, ROOT / "examples" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, name, module)  # its dataclasses look themselves up
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("applied", [True, False], ids=["applied", "not-applied"])
def test_a_publish_whose_cas_answer_was_lost_publishes_once(
    client: txn.Client, monkeypatch: pytest.MonkeyPatch, applied: bool
) -> None:
    """config_pointer.publish sends a CAS again after OutcomeUnknown (a leader failover):
    its value is unique, so a copy never applies twice (found by review: publish raised at
    every kill of the leader, and publishing again published twice)."""
    cp = load_example("config_pointer", monkeypatch)
    client.cas(cp.POINTER, expect_absent=True, new_value=cp.encode(1, "ranker-v1"))
    real_cas = client.cas
    lost = [1]

    def cas_losing_one_answer(*args: Any, **kwargs: Any) -> Any:
        if lost:
            lost.pop()
            if applied:
                real_cas(*args, **kwargs)
            raise txn.OutcomeUnknown("injected: the answer was lost")
        return real_cas(*args, **kwargs)

    monkeypatch.setattr(client, "cas", cas_losing_one_answer)
    done = cp.publish(client, "ranker-v2")
    assert (done.seq, done.attempts, done.resent) == (2, 1, 1)
    assert cp.decode(client.get(cp.POINTER)) == (2, "ranker-v2")


@pytest.mark.parametrize(
    ("name", "prefix_of"), [("room_capacity", "room_prefix"), ("secondary_index", "index_prefix")]
)
def test_ids_that_would_share_a_prefix_are_refused(
    monkeypatch: pytest.MonkeyPatch, name: str, prefix_of: str
) -> None:
    """A '/' in a room or category id put its keys inside another id's prefix (review)."""
    prefix = getattr(load_example(name, monkeypatch), prefix_of)
    assert prefix("r101").endswith(b"/r101/")
    for bad in ("r101/annex", ""):
        with pytest.raises(ValueError, match="without '/'"):
            prefix(bad)
