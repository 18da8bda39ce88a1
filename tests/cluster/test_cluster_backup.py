"""`paxoskv backup`, `restore` and `verify-backup` on real clusters: a backup taken while
transfers run between accounts on three shards is one snapshot (the total holds), and it
restores into a second, empty cluster key for key, with versions above the backup's."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

import txn
from shard.cluster import LocalCluster
from txn.backup_file import BackupReader

pytestmark = pytest.mark.cluster

MakeCluster = Callable[..., LocalCluster]

CLI_TIMEOUT_S = 60.0
ACCOUNTS = [
    b"%s-account" % letter for letter in (b"a", b"c", b"f", b"k", b"m", b"p", b"s", b"u", b"x")
]
START_BALANCE = 100
FILLER = [b"%s-filler-%03d" % (letter, i) for letter in (b"b", b"l", b"t") for i in range(100)]


def paxoskv(cluster: LocalCluster, *args: str) -> subprocess.CompletedProcess[str]:
    """`paxoskv ARGS` as a user runs it, against `cluster`."""
    env = {**os.environ, "PAXOSKV_CLUSTER": cluster.env_value()}
    return subprocess.run(
        [sys.executable, "-m", "shard.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=CLI_TIMEOUT_S,
        check=False,
    )


class _Transfers:
    """Moves random amounts between random accounts, in transactions, until stopped."""

    def __init__(self, client: txn.Client) -> None:
        self.client = client
        self.committed = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._rng = random.Random(7)

    def _transfer(self, tx: txn.Transaction, src: bytes, dst: bytes, amount: int) -> None:
        a, b = int(tx.get(src) or 0), int(tx.get(dst) or 0)
        tx.put(src, b"%d" % (a - amount))
        tx.put(dst, b"%d" % (b + amount))

    def _run(self) -> None:
        while not self._stop.is_set():
            src, dst = self._rng.sample(ACCOUNTS, 2)
            self.client.run(self._transfer, src, dst, self._rng.randint(1, 30))
            self.committed += 1

    def __enter__(self) -> _Transfers:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(30)


def test_a_backup_under_transfers_restores_into_an_empty_cluster(
    make_cluster: MakeCluster, tmp_path: Path
) -> None:
    source = make_cluster()
    assert {source.group_of(a) for a in ACCOUNTS} == {1, 2, 3}
    backup_file = tmp_path / "kv.pkvb"
    with txn.Client(source.env_value(), timeout_s=20.0) as client:

        def fill(tx: txn.Transaction) -> None:
            for account in ACCOUNTS:
                tx.put(account, b"%d" % START_BALANCE)
            for key in FILLER:
                tx.put(key, key * 3)

        client.run(fill)
        with _Transfers(client) as transfers:
            before = transfers.committed
            backed_up = paxoskv(source, "backup", str(backup_file), "--page-keys", "7")
            during = transfers.committed - before
        assert backed_up.returncode == 0, backed_up.stderr
        assert during > 0, "no transfer committed while the backup ran"

    with BackupReader(backup_file) as reader:
        saved = dict(reader.records())
        read_ts = reader.header.read_ts
    assert sum(int(saved[a]) for a in ACCOUNTS) == START_BALANCE * len(ACCOUNTS)
    assert sorted(saved) == sorted(ACCOUNTS + FILLER)
    assert f"backed up {len(saved)} keys" in backed_up.stdout
    assert "of ['', +inf) at ts" in backed_up.stdout

    verified = paxoskv(source, "verify-backup", str(backup_file))
    assert verified.returncode == 0, verified.stderr
    assert verified.stdout.startswith(f"intact: {len(saved)} keys")
    printed = paxoskv(source, "verify-backup", str(backup_file), "--print")
    assert printed.returncode == 0, printed.stderr
    assert printed.stdout.splitlines() == [f"{k.decode()}\t{v.decode()}" for k, v in saved.items()]
    assert printed.stderr == verified.stdout  # the summary, out of the way of the lines

    target = make_cluster()
    restored = paxoskv(target, "restore", str(backup_file))
    assert restored.returncode == 0, restored.stderr
    with txn.Client(target.env_value(), timeout_s=20.0) as client, client.snapshot() as snap:
        assert dict(snap.scan(b"\x00")) == saved
    version = paxoskv(target, "get", "-v", ACCOUNTS[0].decode())
    assert int(version.stdout.split("\t")[0]) > read_ts

    again = paxoskv(target, "restore", str(backup_file))
    assert again.returncode == 1
    assert again.stderr.count("\n") == 1 and "already holds keys" in again.stderr
    # The advice is a command to paste: this file's name, not a placeholder.
    assert f"paxoskv restore {backup_file} --overwrite" in again.stderr
    assert paxoskv(target, "put", ACCOUNTS[0].decode(), "changed").returncode == 0
    over = paxoskv(target, "restore", str(backup_file), "--overwrite")
    assert over.returncode == 0, over.stderr
    assert (
        paxoskv(target, "get", ACCOUNTS[0].decode()).stdout.strip() == saved[ACCOUNTS[0]].decode()
    )


def test_a_damaged_backup_is_refused_and_restores_nothing(
    make_cluster: MakeCluster, tmp_path: Path
) -> None:
    cluster = make_cluster()
    with txn.Client(cluster.env_value(), timeout_s=20.0) as client:
        client.put(b"k-key", b"value")
    whole = tmp_path / "whole.pkvb"
    assert paxoskv(cluster, "backup", str(whole)).returncode == 0
    assert paxoskv(cluster, "delete", "k-key").returncode == 0
    cut = tmp_path / "cut.pkvb"
    cut.write_bytes(whole.read_bytes()[:-5])
    for command in (["verify-backup"], ["verify-backup", "--print"], ["restore"]):
        refused = paxoskv(cluster, *command, str(cut))
        assert refused.returncode == 1
        assert "not an intact backup" in refused.stderr and "truncated" in refused.stderr
        assert refused.stdout == ""  # not a line of a file that is not intact
    assert paxoskv(cluster, "get", "k-key").returncode == 3  # still absent


def test_a_backup_stopped_by_sigterm_or_sighup_leaves_no_file_behind(
    make_cluster: MakeCluster, tmp_path: Path
) -> None:
    """Found by an operator trial: Ctrl-C dropped the unfinished `FILE.*.part`, but SIGTERM
    (what `timeout`, systemd and cron's killers send) and SIGHUP left one per stopped
    nightly backup. Now they stop it as Ctrl-C does, and the exit status names the signal."""
    cluster = make_cluster()
    keys = [b"s-%05d" % i for i in range(2000)]
    with txn.Client(cluster.env_value(), timeout_s=20.0) as client:

        def fill(tx: txn.Transaction) -> None:
            for key in keys[:1000]:
                tx.put(key, b"v")

        def fill_rest(tx: txn.Transaction) -> None:
            for key in keys[1000:]:
                tx.put(key, b"v")

        client.run(fill)
        client.run(fill_rest)
    env = {**os.environ, "PAXOSKV_CLUSTER": cluster.env_value()}
    for signum, word in ((signal.SIGTERM, "terminated"), (signal.SIGHUP, "hung up")):
        target = tmp_path / f"{word.replace(' ', '-')}.pkvb"
        # A page a key: seconds of reads, so the signal comes while the file is written.
        proc = subprocess.Popen(
            [sys.executable, "-m", "shard.cli", "backup", str(target), "--page-keys", "1"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            deadline = time.monotonic() + CLI_TIMEOUT_S
            while not list(tmp_path.glob("*.part")):
                assert proc.poll() is None, proc.communicate()
                assert time.monotonic() < deadline, "the backup never began its file"
                time.sleep(0.01)
            proc.send_signal(signum)
            out, err = proc.communicate(timeout=CLI_TIMEOUT_S)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        assert proc.returncode == 128 + signum, err
        assert err.strip().endswith(f"paxoskv: backup: {word}; {target} was not written"), err
        assert "Traceback" not in err and out == ""
        assert not target.exists()
        assert not list(tmp_path.glob("*.part"))
