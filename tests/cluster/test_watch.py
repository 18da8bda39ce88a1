"""Watches on a real 3-node, 3-shard cluster (split at "j" and "r"): every change of a range
across shards, in commit order, whole commits per batch, resumable from any version."""

from __future__ import annotations

import contextlib
import os
import queue
import secrets
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

import txn
from shard.cluster import LocalCluster, wait_for


@pytest.fixture(scope="module")
def client(shared_cluster: LocalCluster) -> Iterator[txn.Client]:
    with txn.Client(shared_cluster.env_value(), timeout_s=10.0, max_attempts=100) as client:
        yield client


def _collect(watch: txn.Watch, want: int, deadline_s: float = 30.0) -> list[list[txn.Change]]:
    """Batches of `watch` until they hold `want` changes."""
    batches: list[list[txn.Change]] = []
    deadline = time.monotonic() + deadline_s
    while sum(len(b) for b in batches) < want:
        left = deadline - time.monotonic()
        assert left > 0, f"only {batches} of {want} changes"
        if batch := watch.next_batch(timeout_s=left):
            batches.append(batch)
    return batches


def test_a_watch_across_shards_sees_every_change_in_commit_order(client: txn.Client) -> None:
    run = secrets.token_hex(3).encode()
    keys = [b"c/" + run, b"m/" + run, b"t/" + run]  # one per shard
    with client.watch(b"c/", b"u") as watch:
        first = client.put(keys[0], b"1")
        with client.transaction() as tx:
            for key in keys:
                tx.put(key, b"txn")
        committed = tx.commit_ts
        assert committed is not None
        deleted = client.delete(keys[1])
        client.put(b"zz/" + run, b"outside the range")
        last = client.put(keys[2], b"2")
        batches = _collect(watch, 6)
    changes = [c for batch in batches for c in batch if run in c.key]
    assert [(c.key, c.value, c.version) for c in changes] == [
        (keys[0], b"1", first),
        *((key, b"txn", committed) for key in keys),
        (keys[1], None, deleted),
        (keys[2], b"2", last),
    ]
    assert all(any(c in batch for batch in batches) for c in changes)
    # A commit's changes arrive in one batch.
    assert any({c.key for c in batch if c.version == committed} == set(keys) for batch in batches)
    assert watch.through is not None and watch.through >= last


def test_changes_are_pushed_to_a_watch_with_nothing_to_poll_for(client: txn.Client) -> None:
    """A progress interval of a minute: each change still arrives within seconds, because
    the shard's leader answers the watch's parked wait when it applies the write."""
    run = secrets.token_hex(3).encode()
    with client.watch(b"p/" + run, b"p/" + run + b"\xff", progress_s=60) as watch:
        assert watch.next_batch(timeout_s=0.5) == []  # idle: its waits are parked now
        for i in range(3):
            version = client.put(b"p/" + run + b"%d" % i, b"v")
            assert [c.version for c in watch.next_batch(timeout_s=15)] == [version]


def test_a_watch_resumes_after_any_version(client: txn.Client) -> None:
    run = secrets.token_hex(3).encode()
    with client.snapshot() as snap:
        start = snap.read_ts
    assert start is not None
    versions = [client.put(b"k/" + run + b"%d" % i, b"%d" % i) for i in range(5)]
    resumed = client.watch(b"k/" + run, b"k/" + run + b"\xff", after=versions[1])
    with resumed:
        got = [c.version for batch in _collect(resumed, 3) for c in batch]
    assert got == versions[2:]
    with client.watch(b"k/" + run, b"k/" + run + b"\xff", after=start) as whole:
        assert [c.value for batch in _collect(whole, 5) for c in batch] == [
            b"%d" % i for i in range(5)
        ]


def test_a_watch_replays_transfers_with_the_total_intact(client: txn.Client) -> None:
    """Balances on three shards, moved by concurrent cross-shard transfers: replaying the
    watched changes batch by batch, the total never changes (no half of a commit shows)."""
    run = secrets.token_hex(3).encode()
    accounts = [b"b/" + run, b"n/" + run, b"x/" + run]
    with client.transaction() as tx:
        for key in accounts:
            tx.put(key, b"100")
    seeded = tx.commit_ts
    stop = threading.Event()
    errors: list[BaseException] = []

    def transfer(i: int) -> None:
        try:
            while not stop.is_set():
                src, dst = accounts[i % 3], accounts[(i + 1) % 3]

                def move(tx: txn.Transaction, src: bytes = src, dst: bytes = dst) -> None:
                    a, b = int(tx.get(src) or 0), int(tx.get(dst) or 0)
                    tx.put(src, b"%d" % (a - 1))
                    tx.put(dst, b"%d" % (b + 1))

                client.run(move)
                i += 1
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=transfer, args=(i,)) for i in range(3)]
    for thread in threads:
        thread.start()
    balances = {key: 100 for key in accounts}
    seen = 0
    try:
        with client.watch(accounts[0], b"y", after=seeded) as watch:
            while seen < 60:
                for change in watch.next_batch(timeout_s=30.0):
                    if change.key in balances:
                        assert change.value is not None
                        balances[change.key] = int(change.value)
                        seen += 1
                assert sum(balances.values()) == 300, balances
    finally:
        stop.set()
        for thread in threads:
            thread.join()
    assert not errors, errors


def test_a_closed_watch_ends_its_loop_and_refuses_reads(client: txn.Client) -> None:
    """Found by an application trial: a reader thread whose watch the `with` block closed
    met the async API's StopAsyncIteration from `next_batch`."""
    watch = client.watch(b"closed/", b"closed0")
    watch.start()
    watch.close()
    with pytest.raises(txn.WatchClosed, match="this watch is closed"):
        watch.next_batch(timeout_s=0.1)
    assert list(watch) == []
    with pytest.raises(txn.WatchClosed), watch:
        pass


def test_bad_watch_arguments_are_refused_at_the_call(client: txn.Client) -> None:
    for args, kwargs in (
        ((b"b", b"a"), {}),
        ((b"a", b"a"), {}),
        (("a",), {}),
        ((b"a",), {"after": -1}),
        ((b"a",), {"progress_s": 0}),
        ((b"a",), {"progress_s": True}),
        ((b"a",), {"prev_values": 1}),
    ):
        with pytest.raises(txn.InvalidArgument):
            client.watch(*args, **kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize("after", [2**63, 2**64 - 1])
def test_a_watch_from_the_far_future_is_refused_and_leaves_the_client_working(
    shared_cluster: LocalCluster, after: int
) -> None:
    """The nodes refuse an `after` far ahead of their clocks; the client must not have taken
    it as a time it saw (found by review: 2**64-1 broke every later transaction, 2**63 had
    all of them refused)."""
    with txn.Client(shared_cluster.env_value(), timeout_s=10.0) as own:
        # Refused on entering the watch, whose start reads at `after`.
        with (
            pytest.raises(txn.InvalidArgument, match="ahead of node"),
            own.watch(b"a", after=after),
        ):
            pass
        key = b"far/" + secrets.token_hex(3).encode()
        with own.transaction() as tx:
            tx.put(key, b"1")
        with own.snapshot() as snap:
            assert snap.get(key) == b"1"
            assert snap.read_ts < 2**63


def test_the_watch_command_names_no_resume_point_for_a_version_from_the_far_future(
    shared_cluster: LocalCluster,
) -> None:
    """Found by review: the refusal said to resume with the same refused version."""
    far = str(2**64 - 1)
    err = _watch_cli_failure(shared_cluster, "--prefix", "far/", "--after-version", far)
    assert err.startswith("paxoskv: error: ") and "ahead of node" in err, err
    assert "resume with" not in err and err.count("\n") == 1, err


def _watch_argv(*args: str) -> list[str]:
    return [sys.executable, "-m", "shard.cli", "watch", *args]


def _cli_env(cluster: LocalCluster) -> dict[str, str]:
    return {**os.environ, "PAXOSKV_CLUSTER": cluster.env_value()}


def _watch_cli_failure(cluster: LocalCluster, *args: str) -> str:
    """The stderr of `paxoskv watch ARGS`, which must exit 1 (an error) within 60 s."""
    proc = subprocess.run(
        _watch_argv(*args), env=_cli_env(cluster), capture_output=True, timeout=60, check=False
    )
    err = proc.stderr.decode()
    assert proc.returncode == 1, err
    return err


@contextlib.contextmanager
def _watch_cli(cluster: LocalCluster, *args: str) -> Iterator[subprocess.Popen[bytes]]:
    """`paxoskv watch ARGS` started, once it says it is watching (its start is fixed);
    killed on the way out if it still runs."""
    proc = subprocess.Popen(
        _watch_argv(*args), env=_cli_env(cluster), stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    try:
        assert proc.stderr is not None
        line = proc.stderr.readline()  # blocks until the note, or EOF if it failed
        assert line.startswith(b"paxoskv: watching ["), (line, proc.poll())
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)


def test_the_watch_command_prints_changes_and_resumes(
    shared_cluster: LocalCluster, client: txn.Client
) -> None:
    run = secrets.token_hex(3)
    prefix = f"cli/{run}/"
    with _watch_cli(shared_cluster, "--prefix", prefix, "--count", "3") as proc:
        first = client.put(f"{prefix}a".encode(), b"one\ttab")
        with client.transaction() as tx:
            tx.put(f"{prefix}b".encode(), b"2")
            tx.put(f"{prefix}c".encode(), b"3")
            tx.put(f"other/{run}".encode(), b"outside")
        out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    lines = out.decode().splitlines()
    assert lines == [
        f"{first}\tput\t{prefix}a\tone\\ttab",
        f"{tx.commit_ts}\tput\t{prefix}b\t2",
        f"{tx.commit_ts}\tput\t{prefix}c\t3",
    ]
    deleted = client.delete(f"{prefix}a".encode())
    with _watch_cli(shared_cluster, "--prefix", prefix, "--after-version", str(first)) as resumed:
        assert resumed.stdout is not None
        got = [resumed.stdout.readline().decode().rstrip("\n") for _ in range(3)]
        resumed.send_signal(signal.SIGINT)
        _, err = resumed.communicate(timeout=60)
    assert got == [*lines[1:], f"{deleted}\tdelete\t{prefix}a"]
    assert resumed.returncode == 130
    # The note names a version up to which every change was printed: the commit's before
    # the deletion when the interrupt came as the last line went out, else at least the
    # deletion's (the watch read on past it).
    note = err.decode().strip().rsplit(" ", 1)
    assert note[0].endswith("resume with --after-version"), err
    assert tx.commit_ts is not None and int(note[1]) >= tx.commit_ts


def test_prev_values_show_what_each_change_replaced(
    shared_cluster: LocalCluster, client: txn.Client
) -> None:
    run = secrets.token_hex(3)
    key = f"prev/{run}".encode()
    first = client.put(key, b"one")
    with client.watch(key, key + b"\x00", prev_values=True) as watch:
        second = client.put(key, b"two")
        gone = client.delete(key)
        again = client.put(key, b"three")
        got = [c for batch in _collect(watch, 3) for c in batch]
    assert [(c.version, c.value, c.prev_version, c.prev_value) for c in got] == [
        (second, b"two", first, b"one"),  # the value from before the watch began
        (gone, None, second, b"two"),  # what the deletion removed
        (again, b"three", 0, None),  # after a deletion the key held nothing
    ]
    with _watch_cli(
        shared_cluster, "--prefix", key.decode(), "--prev-kv", "--after-version", str(first)
    ) as proc:
        assert proc.stdout is not None
        lines = [proc.stdout.readline().decode().rstrip("\n") for _ in range(3)]
    assert lines == [
        f"{second}\tput\t{key.decode()}\ttwo\t{first}\tone",
        f"{gone}\tdelete\t{key.decode()}\t{second}\ttwo",
        f"{again}\tput\t{key.decode()}\tthree\t0",
    ]


def test_sigterm_stops_the_watch_command_with_its_resume_point(
    shared_cluster: LocalCluster, client: txn.Client
) -> None:
    """As Ctrl-C does (a service manager stops with SIGTERM): the `--after-version` that
    goes on without a gap on stderr, and exit status 143 (128 + SIGTERM)."""
    prefix = f"term/{secrets.token_hex(3)}/"
    first = client.put(f"{prefix}a".encode(), b"0")
    with _watch_cli(shared_cluster, "--prefix", prefix, "--after-version", str(first)) as proc:
        version = client.put(f"{prefix}b".encode(), b"1")
        assert proc.stdout is not None
        printed = proc.stdout.readline().decode()
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    assert printed == f"{version}\tput\t{prefix}b\t1\n"
    assert proc.returncode == 143, err
    note = err.decode().strip().rsplit(" ", 1)
    assert note[0] == "paxoskv: watch: terminated; resume with --after-version", err
    # Every change up to it was printed: the start when the signal came as the line went
    # out (before the watch counted it as printed), else at least the change's version.
    assert int(note[1]) == first or int(note[1]) >= version, err


class _Lines:
    """The lines of a pipe, read by a thread as they come, so a test waits for one with a
    deadline instead of blocking on `readline`."""

    def __init__(self, pipe: Any) -> None:
        self._lines: queue.Queue[bytes] = queue.Queue()
        threading.Thread(target=self._read, args=(pipe,), daemon=True).start()

    def _read(self, pipe: Any) -> None:
        for line in iter(pipe.readline, b""):
            self._lines.put(line)

    def next_line(self, deadline_s: float = 60.0) -> bytes:
        try:
            return self._lines.get(timeout=deadline_s)
        except queue.Empty:
            raise AssertionError(f"no line within {deadline_s} s") from None


def test_the_watch_command_with_resume_goes_on_through_an_outage(
    make_cluster: Callable[..., LocalCluster],
) -> None:
    """A majority frozen for longer than --timeout ends a watch with its resume point; with
    --resume the watch says it reads again, and prints the first change after the outage."""
    cluster = make_cluster(shards=1)
    prefix = "outage/"
    with (
        _watch_cli(cluster, "--prefix", prefix, "--timeout", "1", "--resume") as resuming,
        _watch_cli(cluster, "--prefix", prefix, "--timeout", "1") as plain,
    ):
        notes, printed = _Lines(resuming.stderr), _Lines(resuming.stdout)
        frozen = cluster.names[1:]
        for name in frozen:
            cluster.pause(name)
        try:
            _, plain_err = plain.communicate(timeout=60)
            note = notes.next_line().decode()
        finally:
            for name in frozen:
                cluster.resume(name)
        assert plain.returncode == 1, plain_err
        assert "resume with --after-version" in plain_err.decode(), plain_err
        assert note.startswith(
            "paxoskv: watch: a shard did not answer within --timeout; reading again after version "
        ), note
        assert resuming.poll() is None
        with txn.Client(cluster.env_value(), timeout_s=10.0, max_attempts=100) as client:
            version = client.put(b"outage/a", b"1")
        while (line := printed.next_line()) == b"":
            pass
        assert line == f"{version}\tput\toutage/a\t1\n".encode()


def _history_collected_below(client: txn.Client, version: int, key: bytes) -> bool:
    """Whether a snapshot read of `key` at `version` is refused: the shard has collected
    the versions below its horizon (the nodes' first collection, just after they start)."""
    try:
        with client.snapshot(read_ts=version) as snap:
            snap.get(key)
    except txn.SnapshotTooOld:
        return True
    return False


@pytest.mark.parametrize("after", ["1", "0"])
def test_the_watch_command_says_to_start_over_when_the_changes_are_gone(
    shared_cluster: LocalCluster, client: txn.Client, after: str
) -> None:
    """A watch resumed from further back than the shards' MVCC retention fails, and the
    note says what works instead of naming the same too-old version to resume from. From
    version 0 too, which has nothing to pin (found by review: the pin's read at 0 was
    refused as malformed)."""
    prefix = f"old/{secrets.token_hex(3)}/"
    wait_for(
        lambda: _history_collected_below(client, 1, prefix.encode()),
        60.0,
        "the shard to collect its first versions",
    )
    err = _watch_cli_failure(shared_cluster, "--prefix", prefix, "--after-version", after)
    line = err.strip().splitlines()[-1]
    assert line.startswith("paxoskv: error: ") and "garbage-collected" in line, err
    assert "resume with" not in line, err
    assert line.endswith(
        f"; the changes after version {after} are no longer kept (they are older than the shards' "
        "MVCC retention, 10 minutes): watch from now (without --after-version), then read "
        f"the current state with: paxoskv scan --prefix {prefix} --limit 0"
    ), err
