"""The data commands of the `paxoskv` CLI against a real 3-node, 3-shard cluster.

One cluster (split points "g" and "p", so keys a.., h.. and q.. live in three different
groups) serves the whole module; each test uses its own key prefix letters' suffixes so tests
do not see each other's keys. Every CLI call is a subprocess, as a user or script runs it.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from shard.cluster import LocalCluster, is_node_process

pytestmark = pytest.mark.cluster

CLI_TIMEOUT_S = 30.0


@pytest.fixture(scope="module")
def gp_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    """A 3-node cluster with split points ["g", "p"]; every node stopped by pid at the end."""
    cluster = LocalCluster(
        tmp_path_factory.mktemp("cli") / "cluster", nodes=3, split_points=[b"g", b"p"]
    )
    try:
        cluster.start(deadline_s=60.0, settle_s=3.0)
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


def paxoskv(
    *args: str,
    cluster: LocalCluster | None = None,
    env: dict[str, str] | None = None,
    stdin: bytes | None = None,
) -> subprocess.CompletedProcess[bytes]:
    """Run `paxoskv ARGS` (as `python -m shard.cli`) with PAXOSKV_CLUSTER set to `cluster`."""
    full_env = {k: v for k, v in os.environ.items() if k != "PAXOSKV_CLUSTER"}
    if cluster is not None:
        full_env["PAXOSKV_CLUSTER"] = cluster.env_value()
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "shard.cli", *args],
        env=full_env,
        input=stdin,
        capture_output=True,
        timeout=CLI_TIMEOUT_S,
        check=False,
    )


def ok(result: subprocess.CompletedProcess[bytes]) -> str:
    assert result.returncode == 0, (result.returncode, result.stdout, result.stderr)
    return result.stdout.decode()


def test_put_get_delete_in_every_shard(gp_cluster: LocalCluster) -> None:
    keys = {b"a-pgd": 1, b"h-pgd": 2, b"q-pgd": 3}
    for key, group in keys.items():
        assert gp_cluster.group_of(key) == group
    versions = {}
    for key in keys:
        out = ok(paxoskv("put", key.decode(), "value of " + key.decode(), cluster=gp_cluster))
        versions[key] = int(out.strip())
        assert versions[key] > 0
    assert ok(paxoskv("get", "a-pgd", cluster=gp_cluster)) == "value of a-pgd\n"
    verbose = ok(paxoskv("get", "-v", "q-pgd", cluster=gp_cluster))
    assert verbose == f"{versions[b'q-pgd']}\tvalue of q-pgd\n"
    deleted = int(ok(paxoskv("delete", "h-pgd", cluster=gp_cluster)).strip())
    assert deleted > versions[b"h-pgd"]
    missing = paxoskv("get", "h-pgd", cluster=gp_cluster)
    assert missing.returncode == 3 and missing.stdout == b""
    assert b"not found" in missing.stderr
    assert ok(paxoskv("delete", "h-pgd", cluster=gp_cluster)) == "0\n"


def test_values_from_stdin_and_hex(gp_cluster: LocalCluster) -> None:
    ok(paxoskv("put", "q-stdin", cluster=gp_cluster, stdin=b"line1\nline2"))
    assert ok(paxoskv("get", "q-stdin", cluster=gp_cluster)) == "line1\nline2\n"
    ok(paxoskv("put", "--hex", "61ff00", "00ff10", cluster=gp_cluster))
    assert ok(paxoskv("get", "--hex", "61ff00", cluster=gp_cluster)) == "00ff10\n"
    bad = paxoskv("get", "--hex", "zz", cluster=gp_cluster)
    assert bad.returncode == 2 and b"not valid hex" in bad.stderr  # a usage error


def test_compare_and_set(gp_cluster: LocalCluster) -> None:
    created = int(
        ok(
            paxoskv("cas", "h-cas", "--expect-absent", "--new-value", "one", cluster=gp_cluster)
        ).strip()
    )
    again = paxoskv("cas", "h-cas", "--expect-absent", "--new-value", "two", cluster=gp_cluster)
    assert again.returncode == 3
    assert again.stdout.decode() == f"{created}\tone\n"
    assert b"condition not met" in again.stderr
    by_version = ok(
        paxoskv(
            "cas",
            "h-cas",
            "--expect-version",
            str(created),
            "--new-value",
            "two",
            cluster=gp_cluster,
        )
    )
    assert int(by_version) > created
    stale = paxoskv(
        "cas", "h-cas", "--expect-version", str(created), "--delete", cluster=gp_cluster
    )
    assert stale.returncode == 3
    ok(paxoskv("cas", "h-cas", "--expect-value", "two", "--delete", cluster=gp_cluster))
    assert paxoskv("get", "h-cas", cluster=gp_cluster).returncode == 3
    # Both a condition and an action are required (argparse usage error, exit 2).
    usage = paxoskv("cas", "h-cas", "--new-value", "x", cluster=gp_cluster)
    assert usage.returncode == 2


def test_add_and_get_int_count_a_counter(gp_cluster: LocalCluster) -> None:
    first = int(ok(paxoskv("add", "h-ctr", "5", cluster=gp_cluster)))
    second = int(ok(paxoskv("add", "h-ctr", "-7", cluster=gp_cluster)))
    assert second > first > 0  # each add prints the version it wrote
    assert ok(paxoskv("get", "--int", "h-ctr", cluster=gp_cluster)) == "-2\n"
    assert ok(paxoskv("get", "--int", "-v", "h-ctr", cluster=gp_cluster)) == f"{second}\t-2\n"
    # A value that is not an 8-byte counter is refused, not shown as a meaningless number.
    ok(paxoskv("put", "h-ctr-text", "12", cluster=gp_cluster))
    text = paxoskv("get", "--int", "h-ctr-text", cluster=gp_cluster)
    assert text.returncode == 1 and b"is 2 bytes, not an 8-byte counter" in text.stderr
    for bad in ("1.5", "x", str(2**63)):
        refused = paxoskv("add", "h-ctr", bad, cluster=gp_cluster)
        assert refused.returncode == 2 and b"not a whole number" in refused.stderr
    assert ok(paxoskv("get", "--int", "h-ctr", cluster=gp_cluster)) == "-2\n"
    # Found by a user trial: add cut a text value to 8 bytes (or padded it) without a word.
    ok(paxoskv("put", "h-ctr-doc", '{"name": "alice", "age": 30}', cluster=gp_cluster))
    for key, size in (("h-ctr-text", b"2 bytes"), ("h-ctr-doc", b"28 bytes")):
        refused = paxoskv("add", key, "1", cluster=gp_cluster)
        assert refused.returncode == 1, refused.stderr
        assert b"is " + size + b", not an 8-byte counter; add would cut or pad" in refused.stderr
    assert ok(paxoskv("get", "h-ctr-text", cluster=gp_cluster)) == "12\n"
    assert ok(paxoskv("get", "h-ctr-doc", cluster=gp_cluster)) == '{"name": "alice", "age": 30}\n'


def test_delete_a_prefix_and_a_range_across_shards_in_batches(gp_cluster: LocalCluster) -> None:
    from txn import Client

    # 12 keys under q-dp/ (group 3), 12 under fz-dp/ (group 1) and g-dp/ (group 2) each,
    # which nothing else in this module writes between, and keys beside them.
    doomed = [b"%s-dp/%02d" % (p, i) for p in (b"q", b"fz", b"g") for i in range(12)]
    kept = [b"q-dp0", b"q-dp", b"g-dp0"]
    with Client(gp_cluster.env_value(), timeout_s=20.0) as client, client.transaction() as tx:
        for key in doomed + kept:
            tx.put(key, b"v")
    ok(paxoskv("put", "q-dp/x", "also", cluster=gp_cluster))
    # --batch 5: several transactions, the last one finding fewer keys than it may delete.
    deleted = ok(paxoskv("delete", "--prefix", "q-dp/", "--batch", "5", cluster=gp_cluster))
    assert deleted == "13\n"
    across = ok(paxoskv("delete", "--start", "fz-dp/", "--end", "g-dp0", cluster=gp_cluster))
    assert across == "24\n"  # two shards' keys in each transaction
    for prefix in ("q-dp/", "fz-dp/", "g-dp/"):
        assert ok(paxoskv("scan", "--prefix", prefix, cluster=gp_cluster)) == ""
    for key in kept:  # beside the ranges: untouched
        assert ok(paxoskv("get", key.decode(), cluster=gp_cluster)) == "v\n"
    assert ok(paxoskv("delete", "--prefix", "q-dp/", cluster=gp_cluster)) == "0\n"
    # Through the last key only when asked (keys after "zzz-dp/" are this test's alone).
    ok(paxoskv("put", "zzz-dp/a", "v", cluster=gp_cluster))
    ok(paxoskv("put", "zzzz", "v", cluster=gp_cluster))
    assert ok(paxoskv("delete", "--start", "zzz-dp/", "--to-end", cluster=gp_cluster)) == "2\n"
    whole = b"needs --prefix P, or --start A with --end B"
    for args, said in (
        (("delete",), b"give the KEY to delete"),
        (("delete", "q-dp", "--prefix", "q-"), b"not both"),
        (("delete", "--start", "q", "--end", "h"), b"--end must come after --start"),
        # Found by a user trial: --start alone deleted every key from it to the end.
        (("delete", "--start", "q-dp0"), whole),
        (("delete", "--end", "q-dp0"), whole),
        (("delete", "--to-end"), whole),
        (("delete", "--start", "q", "--end", "r", "--to-end"), b"--to-end replaces --end"),
        (("delete", "--prefix", "q", "--to-end"), b"--to-end replaces --end"),
        (("delete", "--prefix", ""), b"--prefix '' is every key"),
        (("delete", "--prefix", "q", "--batch", "3000"), b"--batch"),
    ):
        refused = paxoskv(*args, cluster=gp_cluster)
        assert refused.returncode == 2 and said in refused.stderr, refused.stderr
    assert ok(paxoskv("get", "q-dp0", cluster=gp_cluster)) == "v\n"  # the refusals deleted nothing


def test_scan_across_shard_boundaries(gp_cluster: LocalCluster) -> None:
    # Both boundaries (g and p) are crossed; other tests' keys may sit in between.
    keys = [b"f-scan1", b"f-scan2", b"g-scan", b"o-scan", b"p-scan", b"z-scan"]
    for key in keys:
        ok(paxoskv("put", key.decode(), key.decode().upper(), cluster=gp_cluster))
    out = ok(paxoskv("scan", "--start", "f-scan", "--end", "z-scan~", cluster=gp_cluster))
    items = [line.split("\t") for line in out.splitlines()]
    listed = [key for key, _ in items]
    assert listed == sorted(listed)
    assert [key for key in listed if "scan" in key] == [k.decode() for k in keys]
    assert all(value == key.upper() for key, value in items if "scan" in key)
    # The limit counts across shards: [f-scan, g-scan~) holds only this test's keys.
    limited = ok(
        paxoskv("scan", "--start", "f-scan", "--end", "g-scan~", "--limit", "2", cluster=gp_cluster)
    )
    assert [line.split("\t")[0] for line in limited.splitlines()] == ["f-scan1", "f-scan2"]
    verbose = ok(paxoskv("scan", "-v", "--prefix", "o-scan", cluster=gp_cluster))
    key, version, value = verbose.strip().split("\t")
    assert (key, value) == ("o-scan", "O-SCAN") and int(version) > 0
    # An end before the start is a usage error, not an empty listing (found by a user
    # trial: `--reverse --start z --end a` printed nothing without a word).
    swapped = paxoskv("scan", "--start", "x", "--end", "c", cluster=gp_cluster)
    assert swapped.returncode == 2 and swapped.stdout == b""
    assert b"--end must come after --start" in swapped.stderr
    # --limit 0 is no limit, as etcdctl's (found by review: it printed nothing).
    unlimited = ok(
        paxoskv("scan", "--start", "f-scan", "--end", "z-scan~", "--limit", "0", cluster=gp_cluster)
    )
    assert unlimited == out


def test_status_table(gp_cluster: LocalCluster) -> None:
    # `status` exits 1 while a group has no leader (an election on a loaded machine).
    deadline = time.monotonic() + 20
    result = paxoskv("status", cluster=gp_cluster)
    while result.returncode != 0 and time.monotonic() < deadline:
        assert b"none" in result.stdout or b"UNREACHABLE" in result.stdout, result
        result = paxoskv("status", cluster=gp_cluster)
    out = ok(result)
    lines = out.splitlines()
    assert lines[0].split() == [
        "GROUP",
        "RANGE",
        "REPLICAS",
        "LEADER",
        "BALLOT",
        "CHOSEN",
        "APPLIED",
        "BEHIND",
    ]
    rows = {line.split()[0]: line.split() for line in lines[1:5]}
    assert rows["0"][1] == "(meta)"
    assert rows["1"][1:3] == ["[-inf,", "g)"]
    assert rows["2"][1:3] == ["[g,", "p)"]
    assert rows["3"][1:3] == ["[p,", "+inf)"]
    for row in rows.values():
        assert row[-5] in {"n1", "n2", "n3"}  # a leader
    node_lines = lines[lines.index("") + 2 :]
    assert len(node_lines) == 3 and all(" up " in line for line in node_lines)
    report = json.loads(ok(paxoskv("status", "--json", cluster=gp_cluster)))
    assert report["healthy"] is True
    assert [(g["group_id"], g["start_hex"], g["end_hex"]) for g in report["groups"][1:]] == [
        (1, "", b"g".hex()),
        (2, b"g".hex(), b"p".hex()),
        (3, b"p".hex(), None),
    ]
    assert all(g["leader"] in {"n1", "n2", "n3"} for g in report["groups"])
    assert [n["state"] for n in report["nodes"]] == ["up", "up", "up"]


def test_status_reports_an_unreachable_node(gp_cluster: LocalCluster) -> None:
    name = "n3"
    gp_cluster.stop_node(name, grace_s=3.0)
    try:
        result = paxoskv("status", "--timeout", "5", cluster=gp_cluster)
        assert result.returncode == 1
        text = result.stdout.decode()
        assert "UNREACHABLE" in text and gp_cluster.addresses[name] in text
        assert f"{name}:?" in text  # BEHIND: its replicas' progress is not known
        # Two of three replicas still make progress: writes to every shard succeed.
        for key in ("a-down", "h-down", "q-down"):
            ok(paxoskv("put", key, "v", cluster=gp_cluster))
    finally:
        gp_cluster.restart(name)
        gp_cluster.wait_healthy(30.0)


def test_errors_are_one_line_with_exit_1(tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there
    start = time.monotonic()
    result = paxoskv("get", "k", "--cluster", f"127.0.0.1:{port}")
    assert result.returncode == 1
    lines = result.stderr.decode().splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith("paxoskv: error: ") and f"127.0.0.1:{port}" in lines[0]
    assert "connection refused" in lines[0]
    assert time.monotonic() - start < 20
    # --debug shows the traceback instead.
    debug = paxoskv("get", "k", "--debug", "--cluster", f"127.0.0.1:{port}")
    assert debug.returncode != 0 and b"Traceback" in debug.stderr
    # An unknown option is reported by its command, with the command's usage.
    unknown = paxoskv("get", "--bogus", "k", "--cluster", f"127.0.0.1:{port}")
    assert unknown.returncode == 2
    assert b"paxoskv get: error: unrecognized arguments: --bogus" in unknown.stderr
    assert unknown.stderr.startswith(b"usage: paxoskv get ")
    # The cluster commands take it after the command too.
    nowhere = str(tmp_path / "no-cluster")
    plain = paxoskv("cluster", "status", "--data-dir", nowhere)
    assert plain.returncode == 1 and len(plain.stderr.splitlines()) == 1
    debug = paxoskv("cluster", "status", "--data-dir", nowhere, "--debug")
    assert debug.returncode != 0 and b"Traceback" in debug.stderr
    # No address at all.
    missing = paxoskv("get", "k")
    assert missing.returncode == 2  # a usage error
    assert b"PAXOSKV_CLUSTER" in missing.stderr and len(missing.stderr.splitlines()) == 1


def test_wrong_cluster_id_is_refused(gp_cluster: LocalCluster) -> None:
    result = paxoskv("get", "a", "--cluster-id", "not-this-one", cluster=gp_cluster)
    assert result.returncode == 1
    assert b"cluster" in result.stderr and len(result.stderr.splitlines()) == 1


def test_bench_writes_its_json_report(gp_cluster: LocalCluster, tmp_path: Path) -> None:
    import json

    path = tmp_path / "bench.json"
    out = ok(
        paxoskv(
            "bench",
            "--workload",
            "mixed",
            "--clients",
            "8",
            "--duration",
            "1",
            "--warmup",
            "0",
            "--keys",
            "50",
            "--json",
            str(path),
            cluster=gp_cluster,
        )
    )
    assert "ops/s" in out
    report = json.loads(path.read_text())
    for key in (
        "workload",
        "clients",
        "duration_s",
        "ops",
        "errors",
        "throughput_ops_s",
        "p50_ms",
        "p99_ms",
        "p999_ms",
    ):
        assert key in report
    assert report["workload"] == "mixed" and report["clients"] == 8
    assert report["ops"] > 0 and report["errors"] == 0 and report["misses"] == 0


def test_help_lists_every_command() -> None:
    out = ok(paxoskv("--help"))
    commands = ("node", "cluster", "get", "put", "delete", "cas", "add", "scan", "status", "bench")
    for command in commands:
        assert f"    {command} " in out
