"""bench/etcd_cluster.py: the reference etcd cluster never outlives an interrupted start."""

from __future__ import annotations

import subprocess
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
