"""`paxoskv demo` end to end (real node processes), and its uniqueness checker.

The demo runs as a subprocess with stdout piped (not a terminal), so it prints one plain
progress line per second. Afterwards no `paxoskv node` process of its data directory may be
left: every pid it reported is checked through /proc, and /proc is scanned for any process
naming the directory's config file. If the demo itself hangs, `subprocess.run` kills it at
the timeout and the finalizer stops any node still running in the directory by pid.
"""

from __future__ import annotations

import contextlib
import json
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from shard.cluster import CONFIG_NAME, LocalCluster, is_node_process
from shard.demo import uniqueness_problems
from tests.cluster.conftest import MakeCluster
from tests.cluster.node_procs import live_node_pids

DEMO_TIMEOUT_S = 90.0  # a safety net; a run takes about --duration plus 10 s


def demo(*args: str, timeout_s: float = DEMO_TIMEOUT_S) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "shard.cli", "demo", *args],
        capture_output=True,
        text=True,
        timeout=timeout_s,
        stdin=subprocess.DEVNULL,
    )


def node_processes_of(config_path: Path) -> list[int]:
    """Pids of live node processes whose command line names this config file."""
    return live_node_pids(lambda argv: str(config_path) in argv)


@pytest.fixture
def demo_dir(tmp_path: Path) -> Iterator[Path]:
    data_dir = tmp_path / "demo"
    yield data_dir
    if (data_dir / CONFIG_NAME).exists():  # the demo left something: stop it by pid
        cluster = LocalCluster(data_dir)
        try:
            cluster.stop(grace_s=3.0)
        finally:
            cluster.close()


@pytest.mark.cluster
def test_demo_runs_kills_a_leader_and_leaves_nothing_running(demo_dir: Path) -> None:
    done = demo("--duration", "20", "--data-dir", str(demo_dir))
    out = done.stdout
    assert done.returncode == 0, f"exit {done.returncode}\n{out}\n{done.stderr}"
    assert "Traceback" not in done.stderr

    # Plain progress lines, about one per second, with the invariants holding throughout.
    progress = [line for line in out.splitlines() if re.match(r"\[\s*\d+\.\d+s\] .* txn/s", line)]
    assert len(progress) >= 15, out
    assert all("BROKEN" not in line for line in progress)
    assert "\x1b[" not in out  # no ANSI escapes when stdout is not a terminal

    # The summary: transactions, the failover with its times, every check passed.
    summary = out[out.index("paxoskv demo summary") :]
    committed = re.search(r"transactions committed: (\d+)", summary)
    assert committed is not None and int(committed.group(1)) > 0, summary
    failover = re.search(
        r"failover: killed (n\d) \(pid (\d+), leader of group (\d+)\) with SIGKILL at [\d.]+ s; "
        r"new leader (n\d) seen by a status poll after ([\d.]+) s; commits on group \3 "
        r"resumed after ([\d.]+) s; "
        r"\1 restarted at [\d.]+ s \(pid (\d+)\)",
        summary,
    )
    assert failover is not None, summary
    victim, new_leader = failover.group(1), failover.group(4)
    assert new_leader != victim
    # Both are measured from the kill (the leader by polling Status, so either may come
    # first) and both well within the run.
    assert 0 < float(failover.group(5)) < 15 and 0 < float(failover.group(6)) < 15
    checks = re.search(r"invariant checks: (\d+) passed, (\d+) failed", summary)
    assert checks is not None and int(checks.group(1)) >= 10 and checks.group(2) == "0", summary
    assert "result: PASS" in summary
    assert f"kept the cluster's data in {demo_dir}" in summary

    # Nothing left running: every pid the demo reported (the restarted node's too), and
    # any process naming this directory's config.
    config_path = (demo_dir / CONFIG_NAME).resolve()
    pids = {(m.group(1), int(m.group(2))) for m in re.finditer(r"node (n\d) pid (\d+)", out)}
    pids.add((victim, int(failover.group(7))))
    assert len(pids) == 4, out
    for name, pid in pids:
        assert not is_node_process(pid, config_path, name), f"{name} (pid {pid}) still runs"
    assert node_processes_of(config_path) == []
    assert not list((demo_dir / "pids").glob("*.pid"))


@pytest.mark.cluster
def test_demo_in_a_temporary_directory_removes_it(tmp_path: Path) -> None:
    done = demo("--duration", "4")
    assert done.returncode == 0, f"exit {done.returncode}\n{done.stdout}\n{done.stderr}"
    removed = re.search(r"removed the temporary directory (\S+)", done.stdout)
    assert removed is not None, done.stdout
    data_dir = Path(removed.group(1))
    assert not data_dir.exists()
    assert node_processes_of((data_dir / CONFIG_NAME).resolve()) == []
    assert "result: PASS" in done.stdout


@pytest.mark.cluster
def test_ctrl_c_ends_a_plain_run_cleanly(demo_dir: Path) -> None:
    """Without --duration the demo runs until SIGINT; then it stops the workload, checks,
    stops the nodes and prints the summary, exiting 0 when the invariants held. Its
    --data-dir exists and is empty: the demo's to use, as a new one is."""
    demo_dir.mkdir()
    proc = subprocess.Popen(
        [sys.executable, "-m", "shard.cli", "demo", "--data-dir", str(demo_dir)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
    )
    lines: queue.Queue[str] = queue.Queue()
    seen: list[str] = []
    reader = threading.Thread(target=lambda: [lines.put(line) for line in proc.stdout or []])
    reader.start()
    try:
        deadline = time.monotonic() + 60.0
        while not any(re.match(r"\[\s*[3-9]\.\d+s\] .* txn/s", line) for line in seen[-1:]):
            remaining = deadline - time.monotonic()
            assert remaining > 0, "no progress line 3 s into the workload:\n" + "".join(seen)
            with contextlib.suppress(queue.Empty):
                seen.append(lines.get(timeout=remaining))
            assert proc.poll() is None, "".join(seen)
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=60.0)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10.0)
        reader.join(timeout=10.0)
    while not lines.empty():
        seen.append(lines.get())
    out = "".join(seen)
    assert proc.returncode == 0, out + (proc.stderr.read() if proc.stderr else "")
    assert "interrupted: stopping the workload" in out
    assert "failover: none (the run ended before the kill)" in out
    assert "result: PASS" in out
    assert node_processes_of((demo_dir / CONFIG_NAME).resolve()) == []


def _files_under(directory: Path) -> dict[str, tuple[int, int]]:
    """Every file under `directory`: its size and modification time, by relative path."""
    return {
        str(p.relative_to(directory)): (p.stat().st_size, p.stat().st_mtime_ns)
        for p in directory.rglob("*")
        if p.is_file()
    }


@pytest.mark.cluster
def test_demo_refuses_a_directory_that_holds_a_cluster(make_cluster: MakeCluster) -> None:
    """Its workload would mix with that cluster's data: one line naming the directory and
    how to inspect the cluster instead; no node started, nothing written (a stopped cluster
    was restarted and the workload run in it), and a running cluster is left running."""
    cluster = make_cluster()  # the demo's own shape: only the data in it is in the way
    data_dir = cluster.data_dir
    cluster.stop(grace_s=3.0)
    before = _files_under(data_dir)
    stopped = demo("--duration", "5", "--data-dir", str(data_dir), timeout_s=60.0)
    assert stopped.returncode == 1, stopped.stdout
    assert stopped.stdout == ""
    assert stopped.stderr.splitlines() == [
        f"paxoskv: error: {data_dir} already holds a cluster, and the demo would run its "
        "workload among that cluster's data: the demo needs a new or empty directory (or no "
        "--data-dir: a temporary one); to inspect that cluster: paxoskv cluster start "
        f"--data-dir {data_dir}"
    ]
    assert node_processes_of(cluster.config_path) == []
    assert _files_under(data_dir) == before

    cluster.start(deadline_s=60.0)
    pids = {s.name: s.pid for s in cluster.node_states()}
    running = demo("--duration", "5", "--data-dir", str(data_dir), timeout_s=60.0)
    assert running.returncode == 1, running.stdout
    listed = ", ".join(f"{name} (pid {pid})" for name, pid in pids.items())
    assert running.stderr.splitlines() == [
        f"paxoskv: error: {data_dir} already holds a running cluster ({listed}), and the "
        "demo would run its workload among that cluster's data: the demo needs a new or "
        "empty directory (or no --data-dir: a temporary one); to inspect that cluster: "
        f"paxoskv cluster status --data-dir {data_dir}"
    ]
    assert {s.name: s.pid for s in cluster.node_states()} == pids  # left running


def test_demo_refuses_a_directory_of_other_files(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("mine\n")
    done = demo("--data-dir", str(tmp_path), timeout_s=30.0)
    assert done.returncode == 1, done.stdout
    assert done.stdout == ""  # refused before it says it starts anything
    assert done.stderr.splitlines() == [
        f"paxoskv: error: {tmp_path} holds files of something else: the demo needs a new or "
        "empty directory (or no --data-dir: a temporary one)"
    ]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]


def test_demo_refuses_bad_arguments_as_usage_errors() -> None:
    for args, words in (
        (("--nodes", "1"), "--nodes: must be >= 3"),
        (("--duration", "0"), "--duration: must be > 0"),
    ):
        done = demo(*args, timeout_s=30.0)
        assert done.returncode == 2
        last = done.stderr.strip().splitlines()[-1]
        assert last.startswith(f"paxoskv demo: error: argument {words}"), done.stderr


# ---------------------------------------------------------------------------- the checker


def user(name: str, email: str) -> bytes:
    return json.dumps({"username": name, "email": email}).encode()


def test_uniqueness_checker_accepts_a_consistent_state() -> None:
    users = {"u1": user("ada", "a@x"), "u2": user("alan", "b@x")}
    assert (
        uniqueness_problems(users, {"ada": b"u1", "alan": b"u2"}, {"a@x": b"u1", "b@x": b"u2"})
        == []
    )
    assert uniqueness_problems({}, {}, {}) == []


def test_uniqueness_checker_names_every_kind_of_violation() -> None:
    def problems(users: dict[str, bytes], names: dict[str, bytes], emails: dict[str, bytes]) -> str:
        found = uniqueness_problems(users, names, emails)
        assert found
        return "\n".join(found)

    twins = {"u1": user("ada", "a@x"), "u2": user("ada", "b@x")}
    assert "share the username 'ada'" in problems(
        twins, {"ada": b"u1"}, {"a@x": b"u1", "b@x": b"u2"}
    )
    same_mail = {"u1": user("ada", "a@x"), "u2": user("alan", "a@x")}
    assert "share the email 'a@x'" in problems(
        same_mail, {"ada": b"u1", "alan": b"u2"}, {"a@x": b"u1"}
    )
    one = {"u1": user("ada", "a@x")}
    assert "does not exist" in problems(one, {"ada": b"u1", "bob": b"u9"}, {"a@x": b"u1"})
    assert "has another username" in problems(one, {"ada": b"u1", "bob": b"u1"}, {"a@x": b"u1"})
    assert "but the index points to None" in problems(one, {}, {"a@x": b"u1"})
