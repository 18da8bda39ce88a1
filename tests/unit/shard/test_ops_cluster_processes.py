"""LocalCluster's process bookkeeping without real nodes (found by the CLI review): the
directory lock that keeps two `paxoskv cluster` commands apart, a just-started child whose
/proc cmdline still reads empty, `cluster stop` with a config that no longer loads, the
cluster directory's paths relative to cluster.toml, and --bootstrap only on a first start."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from shard import cluster as cluster_module
from shard.cli import main
from shard.cluster import (
    BOOTSTRAP_PENDING_NAME,
    ClusterError,
    ClusterProcesses,
    LocalCluster,
)
from shard.config import load_config

SLEEP = "import time; time.sleep(60)"


@pytest.fixture
def children() -> Iterator[list[subprocess.Popen[bytes]]]:
    """Processes a test started; whatever still runs at the end is killed."""
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for proc in started:
        if proc.poll() is None:
            proc.kill()
        proc.wait()


def _fake_node(
    cluster: ClusterProcesses, name: str, children: list[subprocess.Popen[bytes]]
) -> subprocess.Popen[bytes]:
    """A sleeping process whose argv reads as `node --config DIR/cluster.toml --node-id NAME`
    (rule 1's check), recorded in DIR/pids/NAME.pid as `_spawn` records a node."""
    argv = [sys.executable, "-c", SLEEP, "node", "--config", str(cluster.config_path)]
    proc = subprocess.Popen([*argv, "--node-id", name])
    children.append(proc)
    cluster.pids_dir.mkdir(parents=True, exist_ok=True)
    cluster.pid_file(name).write_text(f"{proc.pid}\n")
    return proc


def _gone(proc: subprocess.Popen[bytes]) -> bool:
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        return False
    return True


def test_a_second_command_on_a_locked_directory_fails_at_once(tmp_path: Path) -> None:
    cluster = LocalCluster(tmp_path / "c", nodes=1, shards=1)
    cluster._write_config()
    with cluster.exclusive():
        with pytest.raises(ClusterError, match=r"another `paxoskv cluster` command is running on"):
            LocalCluster(cluster.data_dir).stop()
        with pytest.raises(ClusterError, match=str(cluster.data_dir)):
            LocalCluster(cluster.data_dir).start(deadline_s=1.0)
    assert LocalCluster(cluster.data_dir).stop() == []  # released with the block


def test_the_lock_file_does_not_make_a_directory_look_taken(tmp_path: Path) -> None:
    """A start that failed before writing cluster.toml leaves only the lock file behind."""
    data_dir = tmp_path / "c"
    data_dir.mkdir()
    (data_dir / cluster_module.LOCK_NAME).touch()
    LocalCluster(data_dir)._refuse_foreign_files()  # no "holds files but no cluster"


def test_a_just_started_child_is_ours_before_its_cmdline_can_be_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, children: list[subprocess.Popen[bytes]]
) -> None:
    """Right after Popen, /proc/PID/cmdline may read empty: the failing start's cleanup then
    skipped (and forgot) the node it had just launched, an orphan holding the data's lock."""
    cluster = LocalCluster(tmp_path / "c", nodes=1, shards=1)
    cluster._write_config()
    proc = _fake_node(cluster, "n1", children)
    cluster._procs["n1"] = proc
    monkeypatch.setattr(cluster_module, "_proc_cmdline", lambda pid: None)
    assert cluster.pid("n1") == proc.pid
    cluster.stop_node("n1", grace_s=5.0)
    assert _gone(proc), "the start's own child escaped its cleanup"
    assert not cluster.pid_file("n1").exists()


def test_a_pid_that_is_not_our_child_still_needs_the_cmdline_check(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, children: list[subprocess.Popen[bytes]]
) -> None:
    cluster = LocalCluster(tmp_path / "c", nodes=1, shards=1)
    cluster._write_config()
    _fake_node(cluster, "n1", children)  # recorded, but not this object's child
    monkeypatch.setattr(cluster_module, "_proc_cmdline", lambda pid: None)
    assert cluster.pid("n1") is None


def test_stop_works_from_the_pid_files_when_the_config_does_not_load(
    tmp_path: Path, capsys: Any, children: list[subprocess.Popen[bytes]]
) -> None:
    """An edit that broke cluster.toml (here a table declared twice) kept `cluster stop`
    from stopping the running nodes. Each pid is still checked against the config's path and
    the node's name: the foreign process is left alone."""
    cluster = LocalCluster(tmp_path / "c", nodes=2, shards=1)
    cluster._write_config()
    nodes = [_fake_node(cluster, name, children) for name in ("n1", "n2")]
    foreign = subprocess.Popen([sys.executable, "-c", SLEEP])
    children.append(foreign)
    cluster.pid_file("n3").write_text(f"{foreign.pid}\n")
    with cluster.config_path.open("a") as config:
        config.write("\n[paxos]\nlease_ms = 100\n")
    assert main(["cluster", "stop", "--data-dir", str(cluster.data_dir)]) == 0
    out, err = capsys.readouterr()
    assert all(_gone(proc) for proc in nodes)
    assert foreign.poll() is None
    assert not list(cluster.pids_dir.glob("*.pid"))
    assert err.count("the config did not load (") == 1 and "not valid TOML" in err
    assert out == f"the cluster in {cluster.data_dir} stopped\n"


def test_a_relative_data_dir_is_the_config_files_not_the_working_directorys(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`paxoskv node --config` and LocalCluster read data_dir the same way: against the
    config file's directory, so a moved cluster directory keeps using its own data."""
    cluster = LocalCluster(tmp_path / "c", nodes=1, shards=1, tls=True)
    cluster._write_config()
    text = cluster.config_path.read_text()
    assert "data_dir = 'data'" in text and "ca_file = 'tls/ca.pem'" in text
    moved = tmp_path / "moved"
    cluster.data_dir.rename(moved)
    monkeypatch.chdir(tmp_path)
    config = load_config(Path("moved") / "cluster.toml")
    assert config.node_data_dir(config.node("n1")) == moved / "data" / "n1"
    assert config.tls is not None and config.tls.files.ca_file == moved / "tls" / "ca.pem"
    assert LocalCluster(moved).config == config


def test_an_absolute_data_dir_is_kept(tmp_path: Path) -> None:
    cluster = LocalCluster(tmp_path / "c", nodes=1, shards=1)
    cluster._write_config()
    text = cluster.config_path.read_text().replace("'data'", repr(str(tmp_path / "elsewhere")))
    cluster.config_path.write_text(text)
    config = load_config(cluster.config_path)
    assert config.node_data_dir(config.node("n1")) == tmp_path / "elsewhere" / "n1"


def _started_before_without_data(tmp_path: Path) -> LocalCluster:
    """A cluster directory whose nodes ran once (logs/) but whose data is gone."""
    cluster = LocalCluster(tmp_path / "c", nodes=1, shards=1)
    cluster._write_config()
    cluster.logs_dir.mkdir()
    return LocalCluster(cluster.data_dir)


def test_a_started_cluster_whose_data_is_gone_is_refused_before_any_node_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """It used to start every node with --bootstrap: a new, empty cluster, reported as a
    restart, every acknowledged write gone from view."""
    cluster = _started_before_without_data(tmp_path)
    monkeypatch.setattr(LocalCluster, "_spawn", lambda *_args: pytest.fail("a node was started"))
    with pytest.raises(ClusterError) as refused:
        cluster.start(deadline_s=1.0)
    message = str(refused.value)
    assert f"looked in {cluster.data_dir / 'data' / 'n1'}" in message
    assert "moved or deleted" in message and "another --data-dir" in message


def _launch_argvs(cluster: LocalCluster, monkeypatch: pytest.MonkeyPatch) -> list[list[str]]:
    """The command lines `cluster.start()` would launch its nodes with (none is started)."""
    argvs: list[list[str]] = []

    def launch(self: LocalCluster, names: list[str], *_args: Any) -> None:
        argvs.extend(self._node_launch(name, {})[0] for name in names)
        raise ClusterError("stop here")

    monkeypatch.setattr(LocalCluster, "_launch", launch)
    with pytest.raises(ClusterError, match="stop here"):
        cluster.start(deadline_s=1.0)
    return argvs


def test_a_first_start_cut_short_still_bootstraps(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Until every node came up once (DIR/bootstrap-pending), the nodes get --bootstrap."""
    cluster = _started_before_without_data(tmp_path)
    (cluster.data_dir / BOOTSTRAP_PENDING_NAME).touch()
    argvs = _launch_argvs(cluster, monkeypatch)
    assert argvs and all("--bootstrap" in argv for argv in argvs)


def test_deleted_logs_do_not_make_a_restart_bootstrap(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No logs/ once meant "no node ever ran here" whatever the data said: after the logs
    were deleted to reclaim space, a restart gave every node --bootstrap, and a node whose
    data was lost meanwhile came up empty instead of being refused (found by review)."""
    cluster = LocalCluster(tmp_path / "c", nodes=2, shards=1)
    cluster._write_config()
    (cluster.config.node_data_dir(cluster.config.nodes[0]) / "db").mkdir(parents=True)
    cluster = LocalCluster(cluster.data_dir)  # no logs/, n1 has data, n2 lost its
    argvs = _launch_argvs(cluster, monkeypatch)
    assert argvs and not any("--bootstrap" in argv for argv in argvs)


@pytest.mark.parametrize("timeout", ["0", "-1", "nan"])
def test_cluster_start_refuses_a_timeout_that_is_not_positive(
    timeout: str, tmp_path: Path, capsys: Any
) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["cluster", "start", "--data-dir", str(tmp_path / "c"), "--timeout", timeout])
    assert exited.value.code == 2
    assert "argument --timeout: must be > 0 seconds" in capsys.readouterr().err
    assert not (tmp_path / "c").exists()
