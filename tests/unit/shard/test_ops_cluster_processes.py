"""LocalCluster's process bookkeeping without real nodes (found by the CLI review): the
directory lock that keeps two `paxoskv cluster` commands apart, a just-started child whose
/proc cmdline still reads empty, `cluster stop` with a config that no longer loads, the
cluster directory's paths relative to cluster.toml, --bootstrap only on a first start, and
a node gone without stopping told from a stopped one."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from router import kv_pb2 as kv
from router import kv_pb2_grpc
from shard import cluster as cluster_module
from shard.chaos.netns import write_config
from shard.cli import main
from shard.cluster import (
    BOOTSTRAP_PENDING_NAME,
    CONFIG_NAME,
    ClusterError,
    ClusterProcesses,
    GroupLeader,
    LocalCluster,
    NodeExit,
    is_node_process,
    wait_for,
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
    (rule 1's check), recorded in DIR/pids/NAME.pid as `_spawn` records a node; returned
    once /proc shows that argv (right after Popen it can read empty: CI, under load, found
    a fake node "not running" to the cluster that was to kill it)."""
    argv = [sys.executable, "-c", SLEEP, "node", "--config", str(cluster.config_path)]
    proc = subprocess.Popen([*argv, "--node-id", name])
    children.append(proc)
    wait_for(lambda: is_node_process(proc.pid, cluster.config_path, name), 10.0, f"{name}'s argv")
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


def test_a_new_start_beside_one_at_work_is_told_the_directory_is_locked(tmp_path: Path) -> None:
    """Found in CI: of two `cluster start` at once on one new directory, the second saw the
    first's files before its cluster.toml and said the directory "holds files but no
    cluster" instead of naming the command at work."""
    first = LocalCluster(tmp_path / "c", nodes=1, shards=1)
    first.data_dir.mkdir()
    with first.exclusive():
        (first.data_dir / "logs").mkdir()  # the first start's files, its config not yet
        with pytest.raises(ClusterError, match=r"another `paxoskv cluster` command is running"):
            LocalCluster(first.data_dir, nodes=1, shards=1).start(deadline_s=1.0)


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


def _broken_config(
    tmp_path: Path, children: list[subprocess.Popen[bytes]], nodes: list[str], foreign_as: str
) -> tuple[LocalCluster, list[subprocess.Popen[bytes]], subprocess.Popen[bytes]]:
    """A cluster directory whose cluster.toml no longer loads (a table declared twice),
    with fake nodes `nodes` running and a foreign process recorded as `foreign_as`."""
    cluster = LocalCluster(tmp_path / "c", nodes=2, shards=1)
    cluster._write_config()
    running = [_fake_node(cluster, name, children) for name in nodes]
    foreign = subprocess.Popen([sys.executable, "-c", SLEEP])
    children.append(foreign)
    cluster.pid_file(foreign_as).write_text(f"{foreign.pid}\n")
    with cluster.config_path.open("a") as config:
        config.write("\n[paxos]\nlease_ms = 100\n")
    return cluster, running, foreign


def test_stop_works_from_the_pid_files_when_the_config_does_not_load(
    tmp_path: Path, capsys: Any, children: list[subprocess.Popen[bytes]]
) -> None:
    """An edit that broke cluster.toml (here a table declared twice) kept `cluster stop`
    from stopping the running nodes. Each pid is still checked against the config's path and
    the node's name: the foreign process is left alone."""
    cluster, nodes, foreign = _broken_config(tmp_path, children, ["n1", "n2"], "n3")
    assert main(["cluster", "stop", "--data-dir", str(cluster.data_dir)]) == 0
    out, err = capsys.readouterr()
    assert all(_gone(proc) for proc in nodes)
    assert foreign.poll() is None
    assert not list(cluster.pids_dir.glob("*.pid"))
    assert err.count("the config did not load (") == 1 and "not valid TOML" in err
    assert out == f"the cluster in {cluster.data_dir} stopped\n"


def test_a_killed_nodes_channel_is_replaced_and_the_old_one_still_fails_as_rpcs_do(
    tmp_path: Path, children: list[subprocess.Popen[bytes]]
) -> None:
    """A channel that outlived its node's process could fail the first call to the restarted
    node ("Stream removed (sendmsg: Broken pipe)"); closing it under another thread would
    raise ValueError there, where RPC errors are caught."""
    cluster = LocalCluster(tmp_path / "c", nodes=2, shards=1)
    cluster._write_config()
    _fake_node(cluster, "n1", children)
    old = cluster.channel("n1")
    cluster.kill("n1")
    try:
        assert cluster.channel("n1") is not old
        with pytest.raises(grpc.RpcError):
            kv_pb2_grpc.KVStub(old).Status(kv.StatusRequest(), timeout=0.2)
    finally:
        cluster.close()


def test_status_names_the_running_nodes_when_the_config_does_not_load(
    tmp_path: Path, capsys: Any, children: list[subprocess.Popen[bytes]]
) -> None:
    cluster, [node], _ = _broken_config(tmp_path, children, ["n1"], "n2")
    assert main(["cluster", "status", "--data-dir", str(cluster.data_dir)]) == 1
    out, err = capsys.readouterr()
    assert "the config did not load (" in err and "not valid TOML" in err
    assert out == f"  n1: pid {node.pid}, running\n  n2: not running\n"
    node.kill()
    node.wait()
    cluster.logs_dir.mkdir()
    cluster.log_file("n1").write_text(_START_LINE + _record("info", "group role"))
    assert main(["cluster", "status", "--data-dir", str(cluster.data_dir)]) == 3
    out = capsys.readouterr().out
    assert f"  n1: pid {node.pid} exited without stopping (killed or crashed): see " in out
    assert out.endswith("no node is running\n")


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


def _launch_argvs(
    cluster: LocalCluster, monkeypatch: pytest.MonkeyPatch, progress: Any = None
) -> list[list[str]]:
    """The command lines `cluster.start()` would launch its nodes with (none is started)."""
    argvs: list[list[str]] = []

    def launch(self: LocalCluster, names: list[str], *_args: Any) -> None:
        argvs.extend(self._node_launch(name, {})[0] for name in names)
        raise ClusterError("stop here")

    with monkeypatch.context() as patch:
        patch.setattr(LocalCluster, "_launch", launch)
        with pytest.raises(ClusterError, match="stop here"):
            cluster.start(deadline_s=1.0, progress=progress)
    return argvs


def test_a_first_start_cut_short_still_bootstraps(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Until every node came up once (DIR/bootstrap-pending), the nodes get --bootstrap."""
    cluster = _started_before_without_data(tmp_path)
    (cluster.data_dir / BOOTSTRAP_PENDING_NAME).touch()
    argvs = _launch_argvs(cluster, monkeypatch)
    assert argvs and all("--bootstrap" in argv for argv in argvs)


def test_a_rebuild_of_a_node_that_still_has_its_data_is_refused_before_any_node_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Found by an operator trial: `cluster start --rebuild n2` on intact data said "n2
    rebuilt" while the node had logged that the flag changed nothing."""
    cluster = LocalCluster(tmp_path / "c", nodes=2, shards=1)
    cluster._write_config()
    cluster.logs_dir.mkdir()
    for name in cluster.names:
        (cluster.config.node_data_dir(cluster.node(name)) / "db").mkdir(parents=True)
    monkeypatch.setattr(LocalCluster, "_spawn", lambda *_args: pytest.fail("a node was started"))
    with pytest.raises(ClusterError, match=r"--rebuild n2: its data is still in .*move that"):
        LocalCluster(cluster.data_dir).start(rebuild=["n2"])


def test_a_node_being_rebuilt_gets_rebuild_even_while_a_first_start_is_pending(
    tmp_path: Path,
) -> None:
    """Found by review: with DIR/bootstrap-pending left by a first start cut short, `cluster
    start --rebuild n2` launched n2 with --bootstrap: it came back as a new node, its peers
    refused it, and the command still said "rebuilt"."""
    cluster = LocalCluster(tmp_path / "c", nodes=2, shards=1)
    cluster._write_config()
    cluster._bootstrapping = True
    cluster._rebuilding = frozenset({"n2"})
    assert "--bootstrap" in cluster._node_launch("n1", {})[0]
    rebuilt = cluster._node_launch("n2", {})[0]
    assert "--rebuild" in rebuilt and "--bootstrap" not in rebuilt


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


def _start_faked(cluster: LocalCluster, monkeypatch: pytest.MonkeyPatch) -> None:
    """`cluster.start()` with its nodes faked: it leaves no logs/ and no data, as a real
    start does after `rm -rf DIR/data DIR/logs`."""
    with monkeypatch.context() as patch:
        patch.setattr(LocalCluster, "_launch", lambda *_args: None)
        patch.setattr(LocalCluster, "wait_healthy", lambda *_args, **_kwargs: None)
        cluster.start(deadline_s=1.0, settle_s=0)


@pytest.mark.parametrize("where", ["its own directory", "a copy of cluster.toml alone"])
def test_a_cluster_whose_first_start_completed_is_refused_without_its_data(
    where: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Found by review: no logs/ meant "never started", so `cp DIR/cluster.toml NEW/` (or
    `rm -rf DIR/data DIR/logs`) started a new, empty cluster with the old id, reported as a
    restart. The config `start` wrote now says that its first start completed."""
    cluster = LocalCluster(tmp_path / "c", nodes=2, shards=1)
    _start_faked(cluster, monkeypatch)
    assert not cluster.logs_dir.exists() and not cluster._has_data()
    data_dir = cluster.data_dir
    if where != "its own directory":
        data_dir = tmp_path / "copy"
        data_dir.mkdir()
        shutil.copy(cluster.config_path, data_dir)
    monkeypatch.setattr(LocalCluster, "_spawn", lambda *_args: pytest.fail("a node was started"))
    with pytest.raises(ClusterError) as refused:
        LocalCluster(data_dir).start(deadline_s=1.0)
    assert f"looked in {data_dir / 'data' / 'n1'}" in str(refused.value)
    assert "moved or deleted" in str(refused.value)


def test_a_config_no_node_ran_from_still_bootstraps_and_is_left_as_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A config written by a tool (shard/chaos) or by hand has no logs and no data before its
    first start: that start bootstraps, and the file is not changed."""
    data_dir = tmp_path / "c"
    write_config(data_dir, ["127.0.0.1:1", "127.0.0.1:2"], shards=1)
    written = (data_dir / CONFIG_NAME).read_text()
    argvs = _launch_argvs(LocalCluster(data_dir), monkeypatch)
    assert argvs and all("--bootstrap" in argv for argv in argvs)
    _start_faked(LocalCluster(data_dir), monkeypatch)
    assert (data_dir / CONFIG_NAME).read_text() == written


def test_a_cluster_first_started_without_the_stamp_gets_it_at_its_next_start(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cluster = LocalCluster(tmp_path / "c", nodes=2, shards=1)
    cluster._write_config()  # as an earlier version left it: no stamp, data and logs/
    (cluster.config.node_data_dir(cluster.config.nodes[0]) / "db").mkdir(parents=True)
    cluster.logs_dir.mkdir()
    assert not LocalCluster(cluster.data_dir)._first_start_stamped()
    _start_faked(LocalCluster(cluster.data_dir), monkeypatch)
    assert LocalCluster(cluster.data_dir)._first_start_stamped()


@pytest.mark.parametrize("has_data", [True, False])
def test_a_node_started_next_to_running_ones_is_said_to_restart_from_data_only_if_it_has_some(
    has_data: bool,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    children: list[subprocess.Popen[bytes]],
) -> None:
    """Found by review: after `rm -rf DIR/data/n2`, `cluster start` said "restarting n2 from
    its data" before the node refused to start without it."""
    cluster = LocalCluster(tmp_path / "c", nodes=2, shards=1)
    cluster._write_config()
    _fake_node(cluster, "n1", children)
    # Right after Popen its /proc cmdline may still read empty: n1 would look stopped.
    wait_for(lambda: cluster.pid("n1") is not None, 5.0, "the fake n1 to show its argv")
    n2_data = cluster.config.node_data_dir(cluster.node("n2"))
    if has_data:
        (n2_data / "db").mkdir(parents=True)
    said: list[str] = []
    _launch_argvs(LocalCluster(cluster.data_dir), monkeypatch, progress=said.append)
    if has_data:
        assert said == [f"restarting n2 from its data in {n2_data}"]
    else:
        assert said == [
            f"starting n2, which has no data in {n2_data}: a node without its data is "
            "refused (if it was lost: --rebuild n2)"
        ]


def test_a_failed_start_says_which_nodes_it_stopped_again(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: Any,
    children: list[subprocess.Popen[bytes]],
) -> None:
    """Found by a new user's review: `cluster start` printed `n1 ... listening` and `n2 ...
    listening`, then `error: n3 exited with code 1 before it was ready`, and had stopped n1
    and n2 again without a word. The error's first line now says so; the log tail stays on
    the lines below it."""

    def launch(self: LocalCluster, names: list[str], *_args: Any) -> None:
        for name in names[:2]:
            _fake_node(self, name, children)
        wait_for(lambda: all(self.pid(n) is not None for n in names[:2]), 5.0, "fake nodes")
        raise ClusterError(f"{names[2]} exited with code 1 before it was ready\nits log ends")

    monkeypatch.setattr(LocalCluster, "_launch", launch)
    data_dir = tmp_path / "c"
    assert main(["cluster", "start", "--data-dir", str(data_dir), "--timeout", "5"]) == 1
    err = capsys.readouterr().err.splitlines()
    assert err[-2:] == [
        "paxoskv: error: n3 exited with code 1 before it was ready; the start stopped n1, n2 again",
        "its log ends",
    ], err
    assert all(_gone(proc) for proc in children)
    assert LocalCluster(data_dir).recorded_names() == []


@pytest.mark.parametrize("timeout", ["0", "-1", "nan"])
def test_cluster_start_refuses_a_timeout_that_is_not_positive(
    timeout: str, tmp_path: Path, capsys: Any
) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["cluster", "start", "--data-dir", str(tmp_path / "c"), "--timeout", timeout])
    assert exited.value.code == 2
    assert "argument --timeout: must be > 0 seconds" in capsys.readouterr().err
    assert not (tmp_path / "c").exists()


def test_status_of_a_directory_of_other_files_does_not_suggest_starting_a_cluster_there(
    tmp_path: Path, capsys: Any
) -> None:
    """Found by review: it said "create one with: paxoskv cluster start --data-dir DIR",
    which then refused the directory ("holds files but no cluster")."""
    (tmp_path / "notes.txt").touch()
    assert main(["cluster", "status", "--data-dir", str(tmp_path)]) == 1
    assert capsys.readouterr().err == (
        f"paxoskv: error: {tmp_path} holds no cluster (cluster.toml is missing); it holds "
        "other files: is --data-dir right? A new cluster needs a new or empty directory\n"
    )
    empty = tmp_path / "empty"
    assert main(["cluster", "status", "--data-dir", str(empty)]) == 1
    assert f"create one with: paxoskv cluster start --data-dir {empty}\n" in capsys.readouterr().err


def test_a_node_process_of_another_config_is_not_ours(
    tmp_path: Path, children: list[subprocess.Popen[bytes]]
) -> None:
    """`cluster stop` signals only nodes of its own config: a node of another directory's
    cluster, same name, is not one of them (found untested by an audit)."""
    other = tmp_path / "elsewhere" / "cluster.toml"
    argv = [sys.executable, "-c", SLEEP, "node", "--config", str(other), "--node-id", "n1"]
    proc = subprocess.Popen(argv)
    children.append(proc)
    # Its cmdline reads as a node once it has exec'd.
    wait_for(lambda: is_node_process(proc.pid, other, "n1"), 10.0, "the process to read as a node")
    assert not is_node_process(proc.pid, tmp_path / "mine" / "cluster.toml", "n1")
    assert not is_node_process(proc.pid, other, "n2")


def test_wait_healthy_waits_for_every_group_to_have_a_leader(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """It returns once every group has a leader, and not before; never, it says so."""
    cluster = LocalCluster(tmp_path / "c", nodes=1, shards=1)
    up = {"n1": kv.StatusResponse()}
    monkeypatch.setattr(cluster, "status_all", lambda timeout_s=1.0, names=None: up)
    meta = GroupLeader(0, "n1", "1.1", ("n1",))
    leaderless = {0: meta, 1: GroupLeader(1, None, "", ())}
    answers = [leaderless, leaderless, {0: meta, 1: GroupLeader(1, "n1", "1.1", ("n1",))}]
    monkeypatch.setattr(cluster, "leaders", lambda timeout_s=1.0: answers.pop(0))
    cluster.wait_healthy(10.0)
    assert answers == []  # it polled until the third answer named group 1's leader
    monkeypatch.setattr(cluster, "leaders", lambda timeout_s=1.0: leaderless)
    with pytest.raises(ClusterError, match="not healthy"):
        cluster.wait_healthy(0.2)


def _statuses(follows: dict[str, int], claims: dict[str, str]) -> dict[str, kv.StatusResponse]:
    """Status answers about group 1 from n1..n3: whom each follows, who claims to lead it."""
    return {
        name: kv.StatusResponse(
            node_id=node_id,
            groups=[
                kv.GroupStatus(
                    group_id=1,
                    leader_id=follows.get(name, 0),
                    role="leader" if name in claims else "follower",
                    ballot=claims.get(name, ""),
                )
            ],
        )
        for node_id, name in enumerate(("n1", "n2", "n3"), start=1)
    }


def test_a_group_has_a_leader_only_when_a_majority_follows_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`cluster start` returns once every group has a leader: one a majority acknowledges, not
    a replica that only calls itself one (cut off, or just elected and not yet heard)."""
    cluster = LocalCluster(tmp_path / "c", nodes=3, shards=1)

    def answering(statuses: dict[str, kv.StatusResponse]) -> None:
        monkeypatch.setattr(cluster, "status_all", lambda timeout_s=1.0, names=None: statuses)

    answering(_statuses({"n1": 1, "n2": 1}, {"n1": "2.1"}))
    assert cluster.leaders()[1] == GroupLeader(1, "n1", "2.1", ("n1", "n2"))
    answering(_statuses({"n1": 1, "n2": 2, "n3": 2}, {"n1": "2.1"}))
    assert cluster.leaders()[1].leader is None


_START_LINE = "--- 2026-01-01T00:00:00 starting n\n"  # as `_spawn` writes it
_READY_LINE = "paxoskv node n (id 1) serving on 127.0.0.1:1, data in /d\n"


def _record(level: str, msg: str) -> str:
    """A log line as shard.runtime.JsonFormatter writes it."""
    return json.dumps({"ts": 1.5, "level": level, "logger": "paxoskv.node", "msg": msg}) + "\n"


def _gone_node(
    cluster: LocalCluster, name: str, children: list[subprocess.Popen[bytes]], log: str
) -> int:
    """A fake node that wrote `log` and is gone with its pid file left (as after kill -9);
    returns the pid it had."""
    proc = _fake_node(cluster, name, children)
    proc.kill()
    proc.wait()
    cluster.logs_dir.mkdir(exist_ok=True)
    cluster.log_file(name).write_text(log)
    return proc.pid


def test_status_tells_a_node_gone_without_stopping_from_a_stopped_one(
    tmp_path: Path, capsys: Any, children: list[subprocess.Popen[bytes]]
) -> None:
    """After `kill -9` of a node, `cluster status` printed `pid -  stopped`, as after `cluster
    stop`. A node whose pid file is left and whose log's last record is not the clean stop's
    (rule 7) exited: a crash's last error is quoted, an earlier run's clean stop does not
    count, a clean stop by a SIGTERM from elsewhere stays "stopped" (in a log larger than the
    tail read, a gRPC line after its last record), and `cluster stop` says what it forgets."""
    cluster = LocalCluster(tmp_path / "c", nodes=3, shards=1)
    cluster._write_config()
    ran = _START_LINE + _READY_LINE + _record("info", "group role")
    earlier_runs = ran * (cluster_module.LOG_TAIL_BYTES // len(ran) + 1)
    stopped_log = earlier_runs + ran + _record("info", "node stopped") + "E0101 grpc says\n"
    _gone_node(cluster, "n1", children, stopped_log)
    crash = [_record("critical", "node loop crashed"), _record("info", "node stopped")]
    crash_log = ran + "".join(crash) + _record("critical", "node exits: its loop crashed")
    crashed = _gone_node(cluster, "n2", children, crash_log)
    cut_short = '{"ts": 2.5, "level": "in'  # killed while it wrote a record
    killed = _gone_node(
        cluster, "n3", children, ran + _record("info", "node stopped") + ran + cut_short
    )

    states = {s.name: s for s in cluster.node_states()}
    assert [s.state for s in states.values()] == ["stopped", "exited", "exited"]
    assert states["n1"].exited is None and states["n1"].pid is None
    exit_msg = "node exits: its loop crashed"
    assert states["n2"].exited == NodeExit(crashed, cluster.log_file("n2"), exit_msg)
    assert states["n3"].exited == NodeExit(killed, cluster.log_file("n3"), None)
    assert states["n3"].pid is None  # no process runs: start and stop treat it as stopped

    where = cluster.data_dir
    assert main(["cluster", "status", "--data-dir", str(where)]) == 3
    out = capsys.readouterr().out
    addresses = cluster.addresses
    assert f"  n1 (id 1)  {addresses['n1']}  pid -  stopped\n" in out
    assert (
        f"  n3 (id 3)  {addresses['n3']}  pid {killed}  exited without stopping (killed or "
        f"crashed): see {where}/logs/n3.log; restart it with paxoskv cluster start --data-dir "
        f"{where} (which starts only the nodes not running)\n"
    ) in out
    assert (
        f"  n2 (id 2)  {addresses['n2']}  pid {crashed}  exited without stopping (killed or "
        f"crashed; its log ends with the error '{exit_msg}'): see {where}/logs/n2.log; "
    ) in out
    assert out.endswith("no node is running\n")

    assert main(["cluster", "stop", "--data-dir", str(where)]) == 0
    err = capsys.readouterr().err
    assert f"n3 was not running: pid {killed} exited without stopping (killed or crashed)" in err
    assert "n1 was not running" not in err
    assert [s.state for s in cluster.node_states()] == ["stopped"] * 3
