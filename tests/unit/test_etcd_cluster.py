"""bench/etcd_cluster.py: the reference etcd cluster never outlives an interrupted start."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest

from bench.etcd_cluster import EtcdCluster


def test_an_interrupted_start_stops_every_member(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A stand-in binary: it takes etcd's flags and just waits, like a member that is slow
    # to become healthy when the run is interrupted (SIGTERM, Ctrl-C).
    fake = tmp_path / "etcd"
    fake.write_text("#!/bin/sh\nexec sleep 600\n")
    fake.chmod(0o755)
    started: list[subprocess.Popen[bytes]] = []

    def interrupted(self: EtcdCluster, deadline: float) -> None:
        started.extend(m.proc for m in self.members if m.proc is not None)
        raise KeyboardInterrupt

    monkeypatch.setattr(EtcdCluster, "_wait_healthy", interrupted)
    cluster = EtcdCluster(size=3, etcd_bin=str(fake), attempts=1)
    try:
        with pytest.raises(KeyboardInterrupt):
            cluster.start()
        assert len(started) == 3
        assert [p.poll() is not None for p in started] == [True, True, True]
        assert cluster.members == []
    finally:
        for proc in started:
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=10)


def test_members_start_without_etcd_settings_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # etcd reads every flag from ETCD_<FLAG> too: an ETCD_UNSAFE_NO_FSYNC=true left in the
    # shell (a common speed-up for tests) turned the reference cluster's fsyncs off in silence
    # while paxoskv's nodes kept theirs, and the published ratios compared unequal durability.
    monkeypatch.setenv("ETCD_UNSAFE_NO_FSYNC", "true")
    monkeypatch.setenv("ETCD_SNAPSHOT_COUNT", "10")
    monkeypatch.setenv("ETCD_UNSUPPORTED_ARCH", "arm64")  # needed to run at all on arm64
    fake = tmp_path / "etcd"
    fake.write_text('#!/bin/sh\nenv > "$(dirname "$0")/env.$$"\nexec sleep 600\n')
    fake.chmod(0o755)
    monkeypatch.setattr(EtcdCluster, "_wait_healthy", lambda self, deadline: None)
    cluster = EtcdCluster(size=3, etcd_bin=str(fake), attempts=1)
    try:
        cluster.start()
        deadline = time.monotonic() + 10
        while len(list(tmp_path.glob("env.*"))) < 3 and time.monotonic() < deadline:
            time.sleep(0.02)
    finally:
        cluster.stop(timeout_s=5)
    envs = [p.read_text() for p in tmp_path.glob("env.*")]
    assert len(envs) == 3
    for env in envs:
        names = {line.split("=", 1)[0] for line in env.splitlines()}
        assert "ETCD_UNSAFE_NO_FSYNC" not in names and "ETCD_SNAPSHOT_COUNT" not in names
        assert "ETCD_UNSUPPORTED_ARCH" in names
