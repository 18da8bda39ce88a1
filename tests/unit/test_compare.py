"""bench/compare.py's summaries: what its tables claim about the runs behind them."""

from __future__ import annotations

from typing import Any

import pytest

from bench import compare, etcd_cluster
from bench.compare import _elections, kv_table, medians
from shard.bench_harness import BenchReport


def _report(target: str, workload: str, clients: int, elections: Any) -> BenchReport:
    return BenchReport(
        target=target,
        workload=workload,
        clients=clients,
        connections=1,
        duration_s=5.0,
        elapsed_s=5.0,
        warmup_s=1.0,
        ops=1000,
        errors=0,
        misses=0,
        throughput_ops_s=200.0,
        p50_ms=1.0,
        p90_ms=2.0,
        p99_ms=3.0,
        p999_ms=4.0,
        min_ms=0.5,
        max_ms=5.0,
        mean_ms=1.2,
        key_count=10_000,
        value_size=100,
        read_fraction=0.0,
        seed=0,
        extra={"cpu": {"other_share": 0.0}, "groups_with_new_leader": elections},
    )


def test_a_failed_leader_probe_is_not_reported_as_a_run_without_elections() -> None:
    # The probe after a run fails when a member does not answer Status within 2 s, itself a
    # sign of a disturbed run; counted as 0 it backed "no run saw a leader election".
    assert _elections({0: "5"}, None) is None
    runs = [
        _report("etcd-3node", "put", 1, 0),
        _report("etcd-3node", "put", 1, None),
        _report("paxoskv-3node-1shard", "put", 1, 0),
        _report("paxoskv-3node-1shard", "put", 1, 1),
    ]
    rows = medians(runs)
    etcd = next(r for r in rows if r["target"] == "etcd-3node")
    pkv = next(r for r in rows if r["target"] == "paxoskv-3node-1shard")
    assert (etcd["runs_with_elections"], etcd["runs_elections_unknown"]) == (0, 1)
    assert (pkv["runs_with_elections"], pkv["runs_elections_unknown"]) == (1, 0)
    rows += [
        {**row, "workload": w, "clients": c}
        for row in (etcd, pkv)
        for w, c in (("put", 64), ("put", 256), ("get", 64))
    ]
    line = next(line for line in kv_table(rows) if line.startswith("| sequential put"))
    assert line.endswith("| 0 / 1 of 2 (etcd: 1 unknown) |"), line


def test_a_machine_without_etcd_gets_one_line_saying_how_to_install_it(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(etcd_cluster.shutil, "which", lambda name: None)
    monkeypatch.setattr(etcd_cluster.os, "access", lambda path, mode: False)
    assert compare.main(["--duration", "1"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0
    assert "apt-get install -y etcd-server" in err
