"""A local cluster of `paxoskv node` processes on 127.0.0.1, managed from one data directory.

Theory of operation
-------------------
`LocalCluster` is what `paxoskv cluster start|stop|status`, the real-process tests
(tests/cluster/) and the demo use. Everything lives under one directory::

    DIR/cluster.toml        the cluster config (shard.config format), written on first start
    DIR/data/NAME/          each node's RocksDB
    DIR/logs/NAME.log       each node's stdout (ready line) and stderr (JSON log lines), appended
    DIR/pids/NAME.pid       the pid of each running node
    DIR/.lock               flock'ed by `start` and `stop`, so two of them never interleave

The directories are created owner-only (0700, as etcd creates its data directory): the data
holds every key, the logs the nodes' errors, and cluster.toml (0600) the peer secret. A
directory that exists is left as its owner made it.

Starting a directory that holds no config creates a new cluster: node names n1..nN, ids 1..N,
ports the OS reported free just now (bind-tested together, so distinct) or consecutive ports
from `base_port` (the nodes' gRPC ports, then their metrics endpoints' ports,
`shard.metrics_server`), and split points from `default_split_points`. Starting a directory that
holds a stopped cluster restarts it from its data (recovery); starting one whose nodes still
run is refused. `start` returns once every node printed its ready line and every group has a
leader that a majority of the group's replicas acknowledge (polled through Status with a
deadline).

Rules
-----
1. Processes are only ever signalled by pid, and only after /proc/PID/cmdline shows that the
   pid is still a `paxoskv node` process of this very config file and node name: a recycled
   pid is never signalled.
2. Node processes run in their own session, so they outlive the command that started them
   and a terminal's Ctrl-C does not reach them.
3. `stop` sends SIGTERM (and SIGCONT, so a paused node can act on it), waits with a deadline,
   SIGKILLs stragglers, waits for them to vanish and removes the pid files.
4. Nothing here decides anything about the data: the tests judge the cluster through its
   gRPC API.
5. `start` and `stop` hold an exclusive flock on DIR/.lock for their whole run, and a second
   one on the same directory fails at once: interleaved, each overwrote and removed the
   other's pid files and lost track of nodes (found by review: an orphan node no `stop`
   could see).
6. cluster.toml names the data directory relative to itself (`data_dir = "data"`), so a
   moved or copied cluster directory keeps using its own data; only a cluster's first start
   passes --bootstrap (DIR/bootstrap-pending, or a config no node ever ran from: no
   DIR/logs and no FIRST_START_STAMP), and a cluster that ran before but none of whose
   nodes finds its data is refused rather than started empty. A config `start` wrote
   (WRITTEN_BY_START) gets FIRST_START_STAMP once a start of it brought every node up, so
   the file copied alone (or its directory emptied of everything else) is refused too; a
   config written by hand or by a tool (shard/chaos) is never changed, so for it DIR/logs is
   the only trace of a start.
7. A node whose pid file is left while its process is gone did not go through `stop`: if
   its log's last record is not the "node stopped" a clean stop ends with (a SIGTERM from
   elsewhere), it was killed or crashed, and `status` says so ("exited", with the pid it
   had and its log) instead of "stopped" (found by a user: after `kill -9` it printed
   `pid -  stopped`, as after `cluster stop`). Only the log's tail is read.

This module needs Linux (/proc).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import secrets
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Collection, Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, NoReturn

import grpc

from paxos.ballot import ballot_from_text
from router import kv_pb2 as kv
from router import kv_pb2_grpc
from router.env import ENV_CA, ENV_CERT, ENV_CLUSTER, ENV_KEY
from router.shard_map import ShardMap
from router.tls import TlsFiles, TlsSetupError, sync_channel
from shard.config import (
    ClusterConfig,
    NodeConfig,
    NodeTls,
    PaxosSettings,
    load_config,
    render_config,
)
from shard.private_dirs import make_private_dir
from shard.tls_certs import LOCAL_HOSTS, make_local_pki

__all__ = [
    "ClusterError",
    "ClusterProcesses",
    "GroupLeader",
    "LocalCluster",
    "NodeExit",
    "NodeState",
    "default_split_points",
    "free_ports",
    "holds_other_files",
    "is_node_process",
    "wait_for",
]

Progress = Callable[[str], None]

BOOTSTRAP_PENDING_NAME = "bootstrap-pending"
#: The first line of the cluster.toml `start` writes.
WRITTEN_BY_START = "# Written by `paxoskv cluster start`."
#: Starts the line `start` adds to a cluster.toml it wrote once that cluster's first start
#: brought every node up (rule 6).
FIRST_START_STAMP = "# paxoskv cluster start: first start completed"
CONFIG_NAME = "cluster.toml"
LOCK_NAME = ".lock"
DATA_DIR_NAME = "data"
TLS_DIR_NAME = "tls"
SPLIT_ALPHABET = "abcdefghijklmnopqrstuvwxyz"
MAX_SHARDS = len(SPLIT_ALPHABET)
READY_MARK = "serving on"
#: Starts the line `_spawn` writes into a node's log before each start.
START_LINE_PREFIX = "--- "
#: The record a node logs last when it stops cleanly (shard/runtime.py `_stop`).
CLEAN_STOP_MSG = "node stopped"
#: How much of a log's end is read for its last record (rule 7): logs grow without bound.
LOG_TAIL_BYTES = 64 * 1024
POLL_S = 0.02
PROJECT_ROOT = Path(__file__).resolve().parent.parent
CHANNEL_OPTIONS = [
    # A restarted node must be reachable at once, not after gRPC's default 1-120 s backoff.
    ("grpc.initial_reconnect_backoff_ms", 50),
    ("grpc.min_reconnect_backoff_ms", 50),
    ("grpc.max_reconnect_backoff_ms", 250),
    ("grpc.max_send_message_length", 64 * 1024 * 1024),
    ("grpc.max_receive_message_length", 64 * 1024 * 1024),
]


class ClusterError(RuntimeError):
    """The local cluster cannot do what was asked; the message says why and what to do."""


def default_split_points(shards: int) -> tuple[bytes, ...]:
    """Split points that cut the lowercase alphabet into `shards` nearly equal ranges.

    Keys are spread by their first byte: with 3 shards the points are "j" and "r", so keys
    starting a-i go to group 1, j-q to group 2, r-z (and anything above "z", e.g. "~") to
    group 3. Keys starting with a digit, an uppercase letter or most punctuation sort below
    "a" and go to group 1. At most 26 shards.
    """
    if not 1 <= shards <= MAX_SHARDS:
        raise ClusterError(f"--shards must be between 1 and {MAX_SHARDS}, got {shards}")
    n = len(SPLIT_ALPHABET)
    return tuple(SPLIT_ALPHABET[(i * n + shards // 2) // shards].encode() for i in range(1, shards))


def free_ports(count: int, host: str = "127.0.0.1") -> list[int]:
    """`count` distinct ports that could be bound on `host` just now (all held until chosen).

    Another process may still take one before the node binds it; `LocalCluster.start` picks
    new ports and retries when that happens on a cluster's first start.
    """
    sockets: list[socket.socket] = []
    try:
        for _ in range(count):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind((host, 0))
            sockets.append(s)
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def _check_ports_free(ports: Sequence[int], host: str) -> None:
    for port in ports:
        if not 0 < port < 65536:
            raise ClusterError(f"port {port} is outside 1..65535; choose another --base-port")
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            # As the node's gRPC server binds: a listener still makes the bind fail, the
            # TIME_WAIT connections a stopped node leaves behind for a minute do not.
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind((host, port))
            except OSError as exc:
                raise ClusterError(
                    f"port {port} on {host} is not free ({exc.strerror}); choose another "
                    "--base-port or omit it to pick free ports"
                ) from None


def holds_other_files(data_dir: Path) -> bool:
    """Whether `data_dir` is a directory with files in it besides a lock file (ours): a new
    cluster is not started there, among files of something else."""
    return data_dir.is_dir() and any(p.name != LOCK_NAME for p in data_dir.iterdir())


# ---------------------------------------------------------------------- processes


def _proc_cmdline(pid: int) -> list[str] | None:
    """The argv of a live (non-zombie) process, or None."""
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    if not raw:  # zombies and kernel threads have an empty cmdline
        return None
    return raw.rstrip(b"\0").decode(errors="replace").split("\0")


def _proc_state(pid: int) -> str | None:
    """The one-letter state from /proc/PID/stat (R, S, T, Z, ...), or None."""
    try:
        # Any bytes: the name in parentheses is whatever the process set (shard/proc_name.py).
        stat = Path(f"/proc/{pid}/stat").read_bytes().decode(errors="replace")
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    return stat.rpartition(")")[2].split()[0]


def _arg_after(argv: Sequence[str], flag: str) -> str | None:
    for i, arg in enumerate(argv[:-1]):
        if arg == flag:
            return argv[i + 1]
    return None


def is_node_process(pid: int, config_path: Path, name: str) -> bool:
    """Rule 1: `pid` is a live `paxoskv node` of this config file and node name."""
    argv = _proc_cmdline(pid)
    if argv is None or "node" not in argv:
        return False
    config = _arg_after(argv, "--config")
    return (
        config is not None
        and Path(config) == config_path
        and _arg_after(argv, "--node-id") == name
        and _proc_state(pid) not in (None, "Z", "X")
    )


def _log_tail_lines(path: Path, max_bytes: int = LOG_TAIL_BYTES) -> list[str]:
    """The whole lines among the last `max_bytes` of a log (none when it is missing)."""
    try:
        with path.open("rb") as f:
            size = f.seek(0, os.SEEK_END)
            f.seek(max(0, size - max_bytes))
            tail = f.read()
    except FileNotFoundError:
        return []
    lines = tail.decode(errors="replace").splitlines()
    return lines[1:] if size > max_bytes else lines  # the first one may be cut


def _is_start_line(line: str) -> bool:
    return line.startswith(START_LINE_PREFIX) and " starting " in line


def _last_log_record(path: Path) -> dict[str, Any] | None:
    """The last JSON record a node's latest run wrote into its log, or None when that run
    wrote none within the log's tail. The plain lines between records (the ready line,
    gRPC's C core, a line cut short by a kill) are skipped; a start line ends the search,
    so a record of an earlier run never counts for the latest one."""
    for line in reversed(_log_tail_lines(path)):
        if _is_start_line(line):
            return None
        if not line.startswith("{"):
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(record, dict):
            return record
    return None


def _error_msg(record: dict[str, Any] | None) -> str | None:
    """The message of an error-level record (what a crash logs last), else None."""
    if record is None or record.get("level") not in ("error", "critical"):
        return None
    return str(record.get("msg", ""))


@dataclass(frozen=True, slots=True)
class NodeExit:
    """A node process gone without stopping cleanly (killed or crashed, rule 7)."""

    pid: int  # the pid its pid file still names
    log_path: Path
    last_error: str | None  # the message of its log's last record, when that is an error

    def summary(self) -> str:
        """`exited without stopping (WHY): see LOG`, to follow the pid."""
        why = "killed or crashed"
        if self.last_error is not None:
            why += f"; its log ends with the error {self.last_error!r}"
        return f"exited without stopping ({why}): see {self.log_path}"


@dataclass(frozen=True, slots=True)
class NodeState:
    """What `status` reports about one node process."""

    name: str
    node_id: int
    address: str
    pid: int | None  # the running (or paused) process; None when none runs
    state: str  # "running", "paused", "stopped", "exited" (gone without stopping, see `exited`)
    exited: NodeExit | None = None


@dataclass(frozen=True, slots=True)
class GroupLeader:
    """The leader of one group as the replicas report it (None when there is none)."""

    group_id: int
    leader: str | None
    ballot: str
    acknowledged_by: tuple[str, ...]


# ---------------------------------------------------------------------- the processes


class ClusterProcesses:
    """The node processes recorded under one cluster directory (DIR/pids/NAME.pid), found and
    stopped without reading the cluster's config: rule 1 needs only the config's path and the
    node's name. `paxoskv cluster stop` falls back to this when cluster.toml does not load, so
    an edit that broke the config cannot keep running nodes from being stopped."""

    def __init__(self, data_dir: str | Path) -> None:
        self.data_dir = Path(data_dir).resolve()
        self.config_path = self.data_dir / CONFIG_NAME
        self.logs_dir = self.data_dir / "logs"
        self.pids_dir = self.data_dir / "pids"
        self._procs: dict[str, subprocess.Popen[bytes]] = {}

    @contextlib.contextmanager
    def exclusive(self) -> Iterator[None]:
        """Rule 5: hold DIR/.lock for the block, or fail at once if another command holds it.

        The directory must exist. The lock goes with the open file, so it is released when
        this process ends however it ends (the nodes do not inherit the descriptor).
        """
        try:
            fd = os.open(self.data_dir / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as exc:
            raise ClusterError(
                f"cannot use the cluster directory {self.data_dir}: {exc.strerror}"
            ) from None
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise ClusterError(
                    f"another `paxoskv cluster` command is running on {self.data_dir}; "
                    "wait for it to finish, then try again"
                ) from None
            yield
        finally:
            os.close(fd)

    def pid_file(self, name: str) -> Path:
        return self.pids_dir / f"{name}.pid"

    def log_file(self, name: str) -> Path:
        return self.logs_dir / f"{name}.log"

    def recorded_names(self) -> list[str]:
        """The names of the nodes that have a pid file."""
        return sorted(p.stem for p in self.pids_dir.glob("*.pid"))

    def pid(self, name: str) -> int | None:
        """The recorded pid of `name` if that process is still our node (rule 1), else None."""
        proc = self._procs.get(name)
        if proc is not None:
            proc.poll()  # reap our own child if it exited
        pid = self._recorded_pid(name)
        return pid if pid is not None and self._is_ours(name, pid) else None

    def _recorded_pid(self, name: str) -> int | None:
        try:
            return int(self.pid_file(name).read_text().strip())
        except (FileNotFoundError, ValueError):
            return None

    def exit_of(self, name: str) -> NodeExit | None:
        """Rule 7: how `name` went when its pid file is left but its process is gone and its
        log does not end with a clean stop. None when it runs, when no pid file is left
        (`stop` removes it; never started), when it stopped cleanly (a SIGTERM from
        elsewhere), or when its log is gone too (nothing tells)."""
        recorded = self._recorded_pid(name)
        log_path = self.log_file(name)
        if recorded is None or self._is_ours(name, recorded) or not log_path.exists():
            return None  # running, stopped by `stop`, or nothing tells how it went
        record = _last_log_record(log_path)
        if record is not None and record.get("msg") == CLEAN_STOP_MSG:
            return None
        return NodeExit(recorded, log_path, _error_msg(record))

    def _is_ours(self, name: str, pid: int) -> bool:
        """Rule 1, except that a live child this object started is ours without asking /proc:
        right after Popen its cmdline can still read empty (found by review: 14 of 20 reads),
        and a failed start then skipped the node it had just launched, leaving it orphaned.
        An unreaped child's pid cannot have been recycled."""
        proc = self._procs.get(name)
        if proc is not None and proc.pid == pid and proc.poll() is None:
            return True
        return is_node_process(pid, self.config_path, name)

    def stop_recorded(
        self, *, grace_s: float = 10.0, progress: Progress | None = None
    ) -> list[str]:
        """Rule 3 for every node with a pid file; returns the names that had to be SIGKILLed."""
        if not self.data_dir.is_dir():
            return []
        with self.exclusive():
            return self._stop_names(self.recorded_names(), grace_s, progress)

    def _gone(self, name: str) -> None:
        """Forget a node process that has exited."""
        self.pid_file(name).unlink(missing_ok=True)

    def _stop_names(
        self, names: Sequence[str], grace_s: float, progress: Progress | None = None
    ) -> list[str]:
        say = progress or (lambda _msg: None)
        targets: dict[str, int] = {}
        for name in names:
            pid = self.pid(name)
            if pid is None:
                exited = self.exit_of(name)
                if exited is not None:  # the pid file, its trace, goes next: say it first
                    say(f"{name} was not running: pid {exited.pid} {exited.summary()}")
                self.pid_file(name).unlink(missing_ok=True)
                continue
            targets[name] = pid
            say(f"stopping {name} (pid {pid})")
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
                os.kill(pid, signal.SIGCONT)
        end = time.monotonic() + grace_s
        killed = []
        for name, pid in targets.items():
            if self._wait_gone(name, pid, end):
                continue
            if self._is_ours(name, pid):
                say(f"{name} (pid {pid}) did not stop within {grace_s} s; sending SIGKILL")
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
                killed.append(name)
        for name, pid in targets.items():
            if not self._wait_gone(name, pid, time.monotonic() + 10.0):
                raise ClusterError(f"{name} (pid {pid}) survived SIGKILL")
            self._gone(name)
        return killed

    def _wait_gone(self, name: str, pid: int, end: float) -> bool:
        proc = self._procs.get(name)
        while True:
            if proc is not None and proc.pid == pid:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(timeout=POLL_S)
                if proc.returncode is not None:
                    return True
            elif not is_node_process(pid, self.config_path, name):
                return True
            else:
                time.sleep(POLL_S)
            if time.monotonic() > end:
                return not self._is_ours(name, pid)


# ---------------------------------------------------------------------- the cluster


class LocalCluster(ClusterProcesses):
    """A cluster of node processes on 127.0.0.1 under one data directory; see the module doc.

    Args:
        data_dir: the cluster directory. When it holds a cluster.toml, that config is used
            and the shape arguments must be left unset or agree with it.
        nodes, shards: cluster shape for a new cluster (defaults 3 and 3).
        base_port: node i listens on base_port + i - 1; default: ports the OS reports free.
        split_points: explicit split points instead of `default_split_points(shards)`.
        cluster_id: default "local-" plus 6 random hex digits.
        paxos: Paxos timing and batching settings for a new cluster.
        request_timeout_ms: the nodes' client request deadline for a new cluster.
        host: the address every node binds (127.0.0.1).
    """

    def __init__(
        self,
        data_dir: str | Path,
        *,
        nodes: int | None = None,
        shards: int | None = None,
        base_port: int | None = None,
        split_points: Sequence[bytes] | None = None,
        cluster_id: str | None = None,
        paxos: PaxosSettings | None = None,
        request_timeout_ms: int | None = None,
        host: str = "127.0.0.1",
        tls: bool | None = None,
    ) -> None:
        super().__init__(data_dir)
        self._host = host
        self._base_port = base_port
        self._channels: dict[str, grpc.Channel] = {}
        self._retired_channels: list[grpc.Channel] = []
        self._ready_offset: dict[str, int] = {}
        # True only while start() launches a cluster's first start (rule 6).
        self._bootstrapping = False
        # Nodes start() launches with --rebuild (their data was lost).
        self._rebuilding: frozenset[str] = frozenset()
        if self.config_path.exists():
            self.config = load_config(self.config_path)
            self._fresh = False
            self._check_shape(nodes, shards, base_port, split_points, cluster_id, tls)
            return
        node_count = 3 if nodes is None else nodes
        if node_count < 1:
            raise ClusterError(f"--nodes must be at least 1, got {node_count}")
        if split_points is None:
            split_points = default_split_points(3 if shards is None else shards)
        elif shards is not None and len(split_points) + 1 != shards:
            raise ClusterError(
                f"{len(split_points)} split point{'s make' if len(split_points) != 1 else ' makes'} "
                f"{len(split_points) + 1} shards, not {shards}"
            )
        self.config = ClusterConfig(
            cluster_id=cluster_id or f"local-{secrets.token_hex(3)}",
            peer_secret=secrets.token_hex(16),
            nodes=_local_nodes(host, self._pick_ports(2 * node_count)),
            split_points=tuple(split_points),
            replication=min(3, node_count),
            data_dir=str(self.data_dir / DATA_DIR_NAME),
            paxos=paxos or PaxosSettings(),
            request_timeout_ms=request_timeout_ms or 5000,
            # The files are written with the config (_write_config).
            tls=NodeTls(files=self._pki_files("node")) if tls else None,
        )
        self._fresh = True

    def _check_shape(
        self,
        nodes: int | None,
        shards: int | None,
        base_port: int | None,
        split_points: Sequence[bytes] | None,
        cluster_id: str | None,
        tls: bool | None,
    ) -> None:
        have = self.config
        problems = []
        if tls is not None and tls != (have.tls is not None):
            problems.append("TLS on" if have.tls is not None else "TLS off")
        if nodes is not None and nodes != len(have.nodes):
            problems.append(f"{len(have.nodes)} nodes (not {nodes})")
        if shards is not None and shards != len(have.split_points) + 1:
            problems.append(f"{len(have.split_points) + 1} shards (not {shards})")
        if split_points is not None and tuple(split_points) != have.split_points:
            shown = ", ".join(repr(p.decode(errors="backslashreplace")) for p in have.split_points)
            problems.append(f"split points [{shown}]")
        if base_port is not None and have.nodes[0].address != f"{self._host}:{base_port}":
            problems.append(f"addresses starting at {have.nodes[0].address}")
        if cluster_id is not None and cluster_id != have.cluster_id:
            problems.append(f"cluster id {have.cluster_id!r}")
        if problems:
            raise ClusterError(
                f"{self.data_dir} already holds a cluster with {', '.join(problems)}; omit "
                "the shape options to restart it, or use another --data-dir"
            )

    def _pick_ports(self, count: int) -> list[int]:
        if self._base_port is None:
            return free_ports(count, self._host)
        ports = list(range(self._base_port, self._base_port + count))
        _check_ports_free(ports, self._host)
        return ports

    # ------------------------------------------------------------------ names

    @property
    def cluster_id(self) -> str:
        return self.config.cluster_id

    @property
    def names(self) -> list[str]:
        return [n.name for n in self.config.nodes]

    @property
    def addresses(self) -> dict[str, str]:
        """Node name -> client (and peer) address."""
        return {n.name: n.address for n in self.config.nodes}

    def node(self, ref: str | int) -> NodeConfig:
        """A node by name or id."""
        try:
            return self.config.node(ref)
        except Exception as exc:
            raise ClusterError(str(exc)) from None

    def name_of(self, node_id: int) -> str:
        return self.node(node_id).name

    @property
    def shard_map(self) -> ShardMap:
        """The bootstrap map every node derives from the config (groups, ranges, replicas)."""
        from shard.runtime import bootstrap_map

        return bootstrap_map(self.config)

    def group_of(self, key: bytes) -> int:
        return self.shard_map.locate(key).group_id

    def env_value(self) -> str:
        """The value of PAXOSKV_CLUSTER for clients: comma-separated node addresses."""
        return ",".join(n.address for n in self.config.nodes)

    @property
    def client_tls(self) -> TlsFiles | None:
        """What a client of this cluster trusts and presents (None: plaintext)."""
        return None if self.config.tls is None else self._pki_files("client")

    def client_env(self) -> dict[str, str]:
        """The environment a client needs: PAXOSKV_CLUSTER and, with TLS, its files."""
        env = {ENV_CLUSTER: self.env_value()}
        tls = self.client_tls
        if tls is not None:
            env |= {ENV_CA: str(tls.ca_file), ENV_CERT: str(tls.cert_file)}
            env[ENV_KEY] = str(tls.key_file)
        return env

    def _pki_files(self, stem: str, root: Path | None = None) -> TlsFiles:
        """The certificate files under DIR/tls (or under `root`/tls)."""
        tls_dir = (self.data_dir if root is None else root) / TLS_DIR_NAME
        return TlsFiles(tls_dir / "ca.pem", tls_dir / f"{stem}.pem", tls_dir / f"{stem}-key.pem")

    def log_tail(self, name: str, lines: int = 20) -> str:
        try:
            text = self.log_file(name).read_text(errors="replace")
        except FileNotFoundError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    # ------------------------------------------------------------------ processes

    def pid(self, name: str) -> int | None:
        """The recorded pid of `name` if that process is still our node (rule 1), else None;
        raises ClusterError for a name that is not one of the cluster's nodes."""
        self.node(name)
        return super().pid(name)

    def is_running(self, name: str) -> bool:
        return self.pid(name) is not None

    def node_states(self) -> list[NodeState]:
        out = []
        for node in self.config.nodes:
            pid = self.pid(node.name)
            exited = None
            if pid is not None:
                state = "paused" if _proc_state(pid) == "T" else "running"
            else:
                exited = self.exit_of(node.name)
                state = "stopped" if exited is None else "exited"
            out.append(NodeState(node.name, node.id, node.address, pid, state, exited))
        return out

    def start(
        self,
        *,
        deadline_s: float = 60.0,
        settle_s: float = 5.0,
        progress: Progress | None = None,
        rebuild: Collection[str] = (),
    ) -> None:
        """Start every node and wait until every group has a leader (see the module doc),
        then up to `settle_s` more until each leader sits on its group's preferred node (the
        nodes hand leadership there), so callers start from a steady placement.

        When some nodes of the directory's cluster run and others do not (one was killed),
        only the stopped ones are started, each recovering from its data.

        `rebuild`: stopped nodes whose data was lost; they start with `--rebuild` (on an
        empty data directory: shard/node_identity.py) and the call returns once each votes
        again in every group it hosts.

        Raises:
            ClusterError: another `paxoskv cluster` command works on the directory (rule 5);
                every node of this directory is already running, a node to rebuild is unknown
                or running, or the cluster never ran; no node finds its data (rule 6); a node
                did not come up (the message quotes its log), or the deadline passed.
        """
        if self._fresh and not (self.data_dir / LOCK_NAME).exists():
            # Before the lock file: leave a directory of something else as it is. With a lock
            # file the directory is a cluster command's, maybe one at work (a second start
            # at once saw its first files before its config, found in CI): the lock says so,
            # and the check is made again under it.
            self._refuse_foreign_files()
        self._make_dir()
        with self.exclusive():
            self._start_locked(deadline_s, settle_s, progress, rebuild)

    def _make_dir(self) -> None:
        """Create the cluster directory, or say in one line why it cannot be one."""
        if self.data_dir.exists() and not self.data_dir.is_dir():
            raise ClusterError(f"{self.data_dir} is not a directory; choose another --data-dir")
        try:
            make_private_dir(self.data_dir)
        except OSError as exc:
            raise ClusterError(
                f"cannot create the cluster directory {self.data_dir}: {exc.strerror}; "
                "choose another --data-dir"
            ) from None

    def _start_locked(
        self,
        deadline_s: float,
        settle_s: float,
        progress: Progress | None,
        rebuild: Collection[str],
    ) -> None:
        states = self.node_states()
        running = [s for s in states if s.pid is not None]
        self._check_rebuild(rebuild, states)
        if running and len(running) == len(states):
            which = ", ".join(f"{s.name} (pid {s.pid})" for s in running)
            raise ClusterError(
                f"a cluster is already running in {self.data_dir}: {which}; stop it first "
                f"with: paxoskv cluster stop --data-dir {self.data_dir}"
            )
        say = progress or (lambda _msg: None)
        end = time.monotonic() + deadline_s
        self._rebuilding = frozenset(rebuild)
        if running:
            self._start_stopped([s.name for s in states if s.pid is None], end, say)
            self.wait_rebuilt(self._rebuilding, max(0.0, end - time.monotonic()), progress=say)
            return
        if self._fresh:
            self._refuse_foreign_files()
        attempts = 3 if self._fresh and self._base_port is None else 1
        # A first start stopped part-way (Ctrl-C, a node that failed, the deadline) leaves
        # some nodes' databases created and maybe claimed, others not: until every node has
        # come up once, every node gets --bootstrap, which claims only an empty directory.
        pending = self.data_dir / BOOTSTRAP_PENDING_NAME
        self._bootstrapping = (
            self._fresh or pending.exists() or (self._never_started() and not self._has_data())
        )
        if not self._bootstrapping:
            self._refuse_missing_data()
        for attempt in range(1, attempts + 1):
            if self._fresh:
                self._write_config()
                pending.touch()
                say(f"new cluster {self.cluster_id!r} in {self.data_dir}")
            elif self._bootstrapping:
                # A config written by hand (found by an application trial: its first start
                # said "restarting").
                say(f"first start of cluster {self.cluster_id!r} in {self.data_dir}")
            else:
                say(f"restarting cluster {self.cluster_id!r} from {self.data_dir}")
            try:
                self._launch([node.name for node in self.config.nodes], end, say)
                self._stamp_first_start()
                pending.unlink(missing_ok=True)  # every node recorded its identity
                break
            except _BindFailed as exc:
                stopped = self._stop_started(self.names)
                if attempt == attempts:
                    hint = (
                        "choose another --base-port, or omit it to pick free ports"
                        if self._fresh
                        else "a cluster's addresses are fixed at its first start: free the "
                        "port, then start again"
                    )
                    _raise_noting_stopped(
                        ClusterError(
                            f"{exc}: another process listens on the port (`ss -ltnp` names "
                            f"it); {hint}"
                        ),
                        stopped,
                    )
                say(f"{exc}; picking new ports")
                # A brand-new cluster: nothing of value is stored yet, but the meta group may
                # already have recorded the old addresses. Start from empty data directories.
                shutil.rmtree(self.data_dir / DATA_DIR_NAME, ignore_errors=True)
                self.config = replace(
                    self.config,
                    nodes=_local_nodes(self._host, free_ports(2 * len(self.config.nodes))),
                )
            except BaseException as exc:
                _raise_noting_stopped(exc, self._stop_started(self.names))
        self._fresh = self._bootstrapping = False
        try:
            self.wait_healthy(max(0.0, end - time.monotonic()), progress=progress)
            self.wait_rebuilt(self._rebuilding, max(0.0, end - time.monotonic()), progress=say)
        except BaseException as exc:
            _raise_noting_stopped(exc, self._stop_started(self.names))
        if settle_s > 0 and not self.wait_settled(settle_s):
            say("leaders have not all moved to their preferred nodes yet (that is fine)")

    def _refuse_foreign_files(self) -> None:
        """A new cluster needs a directory of its own (the lock file is ours)."""
        if self.config_path.exists():
            raise ClusterError(
                f"another command created a cluster in {self.data_dir} meanwhile; start "
                "again to use it"
            )
        if holds_other_files(self.data_dir):
            raise ClusterError(
                f"{self.data_dir} holds files but no cluster ({CONFIG_NAME} is missing): choose "
                "a new or empty directory for a new cluster"
            )

    def _never_started(self) -> bool:
        """A config written by hand or by a tool (shard/chaos) that no node ever ran from:
        no node has written a log line here yet, so its first start is still to come (with
        no data either: logs deleted to reclaim space must not make a restart bootstrap,
        found by review). A config `start` wrote and completed a first start from says so
        itself (found by review: the file copied alone into a new directory, or its
        directory's data/ and logs/ deleted, started as a new, empty cluster with the same
        id, reported as a restart)."""
        return not self.logs_dir.exists() and not self._first_start_stamped()

    def _first_start_stamped(self, lines: list[str] | None = None) -> bool:
        if lines is None:
            lines = self.config_path.read_text().splitlines()
        return any(line.startswith(FIRST_START_STAMP) for line in lines)

    def _stamp_first_start(self) -> None:
        """Rule 6: record in a config `start` wrote (never a hand-written one) that this
        cluster's first start completed (also that of a cluster first started by a version
        without the stamp, at its next start); a comment, so the file stays what `paxoskv
        node --config` and older versions read."""
        text = self.config_path.read_text()
        lines = text.splitlines()
        if WRITTEN_BY_START not in lines or self._first_start_stamped(lines):
            return
        stamp = (
            f"{FIRST_START_STAMP} {time.strftime('%Y-%m-%dT%H:%M:%S')}; without its data\n"
            "# this cluster is refused, not started empty (shard/cluster.py, rule 6).\n"
        )
        self._replace_config(stamp + text)

    def _has_data(self, names: Collection[str] | None = None) -> bool:
        """Whether any node (of `names`, default all) has its database where the config says."""
        return any(
            (self.config.node_data_dir(n) / "db").exists()
            for n in self.config.nodes
            if names is None or n.name in names
        )

    def _refuse_missing_data(self) -> None:
        """Rule 6: a cluster that ran before and whose nodes all find no data would otherwise
        start empty, every acknowledged write gone (found by review: a moved directory whose
        config named the old absolute data path)."""
        if self._has_data():
            return
        looked_in = ", ".join(str(self.config.node_data_dir(n)) for n in self.config.nodes)
        raise ClusterError(
            f"no node of cluster {self.cluster_id!r} finds its data (looked in {looked_in}, "
            f"from data_dir in {self.config_path}): the data was moved or deleted, or "
            "data_dir names the wrong place. Restore the data there or fix data_dir; for a "
            "new, empty cluster use another --data-dir"
        )

    def _check_rebuild(self, names: Collection[str], states: Sequence[NodeState]) -> None:
        if not names:
            return
        unknown = sorted(set(names) - set(self.names))
        if unknown:
            raise ClusterError(
                f"--rebuild names no node of this cluster: {', '.join(unknown)} "
                f"(its nodes: {', '.join(self.names)})"
            )
        if len(set(names)) > 1:
            # Two lost disks of one group may have held the only copies of chosen slots.
            raise ClusterError(
                f"--rebuild names {', '.join(sorted(set(names)))}: rebuild one node at a "
                "time (start the next once the last votes again)"
            )
        busy = [s.name for s in states if s.name in names and s.pid is not None]
        if busy:
            raise ClusterError(
                f"{', '.join(busy)} is running: stop it before rebuilding it "
                f"(paxoskv cluster stop, or kill it)"
            )
        if self._fresh or not self._has_data():
            raise ClusterError(
                "--rebuild brings back a node whose data was lost while the others kept "
                f"theirs; no node of the cluster in {self.data_dir} has data yet"
            )
        for name in names:
            if self._has_data([name]):
                # Found by an operator trial: the node logged that the flag changed
                # nothing, and this command still said it was rebuilt.
                where = self.config.node_data_dir(self.node(name)) / "db"
                raise ClusterError(
                    f"--rebuild {name}: its data is still in {where}, and a rebuild brings "
                    "back a node whose data was lost. If its peers refuse it (came back "
                    "with new data, or data older than they saw), move that directory aside "
                    "first; a rebuild that stopped half-way goes on with a plain `paxoskv "
                    "cluster start`"
                )

    def wait_rebuilt(
        self, names: Collection[str], deadline_s: float = 60.0, *, progress: Progress | None = None
    ) -> None:
        """Wait until none of `names` has a replica still rebuilding (Paxos rule 14)."""
        if not names:
            return
        say = progress or (lambda _msg: None)
        end = time.monotonic() + deadline_s
        last = ""
        while True:
            statuses = self.status_all(timeout_s=1.0, names=sorted(names))
            waiting = {
                # A rebuilding replica restoring a snapshot in steps shows "restoring"
                # (paused, it is still rebuilding): wait for it too.
                name: [g.group_id for g in st.groups if g.role in ("rebuilding", "restoring")]
                if st is not None
                else None
                for name, st in statuses.items()
            }
            if all(groups == [] for groups in waiting.values()):
                say(f"{', '.join(sorted(names))} rebuilt: voting in every group again")
                return
            line = "; ".join(
                f"{name} not answering"
                if groups is None
                else f"{name} rebuilding groups "
                f"{', '.join(map(str, groups))} (catching up from the others)"
                for name, groups in sorted(waiting.items())
                if groups != []
            )
            if line != last:
                say(line)
                last = line
            if time.monotonic() > end:
                raise ClusterError(
                    f"the rebuild is not finished after {deadline_s:.0f} s ({line}): it needs "
                    f"every other replica of those groups up; see the logs in {self.logs_dir}"
                )
            time.sleep(0.05)

    def _start_stopped(self, names: list[str], end: float, say: Progress) -> None:
        """Start `names` next to the running nodes and wait until every group has a leader;
        on failure stop only what this call started."""
        try:
            for name in names:
                where = self.config.node_data_dir(self.node(name))
                if name in self._rebuilding:
                    say(f"rebuilding {name}: its data was lost; it catches up from the others")
                elif self._has_data([name]):
                    say(f"restarting {name} from its data in {where}")
                else:
                    # Found by review: "restarting n3 from its data" for a deleted data/n3;
                    # the node itself refuses (and says what to do), as it would outside.
                    say(
                        f"starting {name}, which has no data in {where}: a node without its "
                        f"data is refused (if it was lost: --rebuild {name})"
                    )
            self._launch(names, end, say)
            self.wait_healthy(max(0.0, end - time.monotonic()), progress=say)
        except BaseException as exc:
            _raise_noting_stopped(exc, self._stop_started(names))

    def _launch(self, names: list[str], end: float, say: Progress) -> None:
        """Spawn `names`, then wait for each one's ready line (by `end`, monotonic)."""
        for name in names:
            self._spawn(name)
        for name in names:
            self._wait_ready(name, end)
            node = self.node(name)
            metrics = "" if node.metrics_address is None else f", metrics on {node.metrics_address}"
            say(f"{name} (id {node.id}) listening on {node.address}{metrics}")

    def _write_config(self) -> None:
        self._make_dir()
        if self.config.tls is not None:
            try:
                make_local_pki(
                    self.data_dir / TLS_DIR_NAME, self.cluster_id, (self._host, *LOCAL_HOSTS)
                )
            except TlsSetupError as exc:
                raise ClusterError(str(exc)) from None
        header = f"{WRITTEN_BY_START}\n"
        shards = len(self.config.split_points) + 1
        if self.config.split_points == default_split_points(min(shards, MAX_SHARDS)):
            header += (
                "# Split points cut the lowercase alphabet into nearly equal ranges by a key's\n"
                "# first byte (shard.cluster.default_split_points).\n"
            )
        self._replace_config(header + render_config(self._portable(self.config)))

    def _replace_config(self, text: str) -> None:
        """Write cluster.toml atomically (a reader sees the old file or the new one)."""
        tmp = self.config_path.with_suffix(".tmp")
        # Owner-only: it holds the peer secret.
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(text)
        tmp.replace(self.config_path)

    def _portable(self, config: ClusterConfig) -> ClusterConfig:
        """Rule 6: `config` with the paths inside the cluster directory written relative to
        it; load_config reads them against the file's own directory."""

        data_dir = Path(config.data_dir)
        if data_dir.is_relative_to(self.data_dir):
            data_dir = data_dir.relative_to(self.data_dir)
        tls = config.tls
        if tls is not None:
            tls = replace(tls, files=self._pki_files("node", root=Path()))
        return replace(config, data_dir=str(data_dir), tls=tls)

    def _spawn(self, name: str) -> None:
        """Launch one node process in its own session; records its pid."""
        if self.is_running(name):
            raise ClusterError(f"{name} is already running (pid {self.pid(name)})")
        make_private_dir(self.logs_dir)
        make_private_dir(self.pids_dir)
        log_path = self.log_file(name)
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(
            p for p in (str(PROJECT_ROOT), env.get("PYTHONPATH", "")) if p
        )
        env["PYTHONUNBUFFERED"] = "1"
        argv, where = self._node_launch(name, env)
        with log_path.open("ab") as log:
            stamp = time.strftime("%Y-%m-%dT%H:%M:%S")
            log.write(f"{START_LINE_PREFIX}{stamp} starting {name}{where}\n".encode())
            log.flush()
            self._ready_offset[name] = log.tell()
            proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                cwd=self.data_dir,
                env=env,
                start_new_session=True,
            )
        self._procs[name] = proc
        self.pid_file(name).write_text(f"{proc.pid}\n")

    def _node_launch(self, name: str, env: dict[str, str]) -> tuple[list[str], str]:
        """The node's command line (a subclass may wrap it and adjust `env`) and what the
        log's start line adds about where it runs. --bootstrap goes only to a cluster's first
        start, also when it was stopped before every node came up (BOOTSTRAP_PENDING_NAME),
        or to a config no node ever ran from (rule 6): a node whose data was lost while the
        others kept theirs is refused by the node (shard/node_identity.py) unless start()
        was asked to rebuild it (--rebuild)."""
        argv = [
            sys.executable,
            "-m",
            "shard.cli",
            "node",
            "--config",
            str(self.config_path),
            "--node-id",
            self.node(name).name,
        ]
        if name in self._rebuilding:
            # Before --bootstrap: after a first start stopped part-way every node gets that,
            # and a node rebuilt with it came back as a new one, refused by its peers
            # (found by review).
            argv.append("--rebuild")
        elif self._bootstrapping:
            argv.append("--bootstrap")
        return argv, ""

    def _wait_ready(self, name: str, end: float) -> None:
        """Wait for the node's ready line; raise with its log tail if it exits instead."""
        proc = self._procs[name]
        offset = self._ready_offset[name]
        log_path = self.log_file(name)
        while True:
            with log_path.open("rb") as f:
                f.seek(offset)
                text = f.read().decode(errors="replace")
            if READY_MARK in text:
                return
            code = proc.poll()
            if code is not None:
                self.pid_file(name).unlink(missing_ok=True)
                tail = "\n".join(text.splitlines()[-8:])
                if "cannot listen on" in text or "address in use" in text.lower():
                    # The address the node's own error names: its gRPC port or its metrics
                    # one (found by review: a taken metrics port was named as the other).
                    named = re.search(r"cannot listen on (\S+?):? ", text)
                    address = named.group(1) if named else self.node(name).address
                    raise _BindFailed(f"{name} could not listen on {address}")
                # The log tail on lines of their own: a start that fails adds to the first.
                raise ClusterError(
                    f"{name} exited with code {code} before it was ready\nits log "
                    f"({log_path}) ends with:\n{tail}"
                )
            if time.monotonic() > end:
                raise ClusterError(
                    f"{name} was not ready before the start's deadline (raise `--timeout`; "
                    f"its log: {log_path})"
                )
            time.sleep(POLL_S)

    def start_node(self, name: str, *, deadline_s: float = 30.0) -> None:
        """Start one stopped node and wait for its ready line (not for any election); a node
        not ready by the deadline is stopped again."""
        self._spawn(name)
        try:
            self._wait_ready(name, time.monotonic() + deadline_s)
        except BaseException:
            if self.is_running(name):
                self.stop_node(name)
            raise

    def restart(self, name: str, *, deadline_s: float = 30.0) -> None:
        """Start `name` again after a kill or stop (it recovers from its data)."""
        if self.is_running(name):
            raise ClusterError(f"{name} is still running; kill or stop it before restart")
        self.start_node(name, deadline_s=deadline_s)

    def send_signal(self, name: str, sig: int) -> int:
        """Send `sig` to the node's verified pid (rule 1); returns the pid."""
        pid = self.pid(name)
        if pid is None:
            raise ClusterError(f"{name} is not running")
        os.kill(pid, sig)
        return pid

    def kill(self, name: str, sig: int = signal.SIGKILL, *, wait_s: float = 10.0) -> None:
        """Send `sig` (default SIGKILL: a crash) and, for a fatal signal, wait until it is gone."""
        pid = self.send_signal(name, sig)
        if sig in (signal.SIGKILL, signal.SIGTERM):
            if sig == signal.SIGTERM:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGCONT)
            if not self._wait_gone(name, pid, time.monotonic() + wait_s):
                raise ClusterError(f"{name} (pid {pid}) did not exit within {wait_s} s")
            self._gone(name)

    def kill_all(self, sig: int = signal.SIGKILL, *, wait_s: float = 10.0) -> list[str]:
        """Signal every running node at once (SIGKILL: a whole-cluster crash), then wait until
        they are gone; returns the names that were signalled."""
        signalled = {}
        for name in self.names:
            pid = self.pid(name)
            if pid is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, sig)
                signalled[name] = pid
        end = time.monotonic() + wait_s
        for name, pid in signalled.items():
            if not self._wait_gone(name, pid, end):
                raise ClusterError(f"{name} (pid {pid}) did not exit within {wait_s} s")
            self._gone(name)
        return list(signalled)

    def pause(self, name: str) -> None:
        """SIGSTOP: the process freezes (sockets stay open, nothing is answered)."""
        self.send_signal(name, signal.SIGSTOP)
        end = time.monotonic() + 5.0
        while _proc_state(self.pid(name) or 0) != "T" and time.monotonic() < end:
            time.sleep(0.005)

    def resume(self, name: str) -> None:
        """SIGCONT a paused node."""
        self.send_signal(name, signal.SIGCONT)

    def stop_node(self, name: str, *, grace_s: float = 10.0) -> None:
        """SIGTERM one node, SIGKILL it after `grace_s`, remove its pid file."""
        self._stop_names([name], grace_s)

    def stop(self, *, grace_s: float = 10.0, progress: Progress | None = None) -> list[str]:
        """Rule 3 for every node, holding the directory's lock (rule 5); returns the names
        that had to be SIGKILLed."""
        if not self.data_dir.is_dir():
            return []  # nothing was ever started here
        with self.exclusive():
            return self._stop_names(self.names, grace_s, progress)

    def _stop_started(self, names: Sequence[str]) -> list[str]:
        """Stop `names` (what a failing start launched); returns those that were running."""
        running = [name for name in names if self.is_running(name)]
        self._stop_names(names, grace_s=5.0)  # also drops the others' stale pid files
        return running

    # ------------------------------------------------------------------ gRPC

    def channel(self, name: str) -> grpc.Channel:
        """A cached channel to the node. Once the node's process is gone (a kill or stop
        through this object) the next call gets a new one; the old one stays open until
        `close`, so another thread holding it gets RPC errors, never a closed channel."""
        ch = self._channels.get(name)
        if ch is None:
            tls = self.client_tls
            credentials = None if tls is None else tls.channel_credentials()
            ch = sync_channel(self.node(name).address, credentials, CHANNEL_OPTIONS)
            self._channels[name] = ch
        return ch

    def stub(self, name: str) -> kv_pb2_grpc.KVStub:
        return kv_pb2_grpc.KVStub(self.channel(name))

    def _gone(self, name: str) -> None:
        """Also its channel, retired: an idle channel may not have noticed that its
        connection's process died (found so: the first call after a restart failed with
        "Stream removed (sendmsg: Broken pipe)")."""
        super()._gone(name)
        retired = self._channels.pop(name, None)
        if retired is not None:
            self._retired_channels.append(retired)

    def close(self) -> None:
        """Close the gRPC channels (the processes are left alone)."""
        for ch in [*self._channels.values(), *self._retired_channels]:
            ch.close()
        self._channels.clear()
        self._retired_channels.clear()

    def status(self, name: str, timeout_s: float = 1.0) -> kv.StatusResponse:
        """The node's Status; raises grpc.RpcError when it does not answer in time."""
        response: kv.StatusResponse = self.stub(name).Status(kv.StatusRequest(), timeout=timeout_s)
        return response

    def status_all(
        self, timeout_s: float = 1.0, names: Sequence[str] | None = None
    ) -> dict[str, kv.StatusResponse | None]:
        """Status of every running node (None for stopped or unresponsive ones), in parallel."""
        futures = {}
        for name in names or self.names:
            if self.is_running(name):
                futures[name] = self.stub(name).Status.future(kv.StatusRequest(), timeout=timeout_s)
        out: dict[str, kv.StatusResponse | None] = {}
        for name in names or self.names:
            future = futures.get(name)
            try:
                out[name] = None if future is None else future.result()
            except grpc.RpcError:
                out[name] = None
        return out

    def refused(self, settle_s: float = 0.0) -> dict[str, str]:
        """The running nodes their peers refuse, each with who refuses it and why ("n1, n3:
        REASON"); with `settle_s`, only those still refused after up to that long (a first
        start's refusals "for now" clear once every node has answered)."""
        end = time.monotonic() + settle_s
        while True:
            found = {
                name: ", ".join(self.name_of(r.node_id) for r in st.refused_by)
                + f": {st.refused_by[0].reason}"
                for name, st in self.status_all(timeout_s=1.0).items()
                if st is not None and st.refused_by
            }
            if not found or time.monotonic() >= end:
                return found
            time.sleep(0.1)

    def leaders(self, timeout_s: float = 1.0) -> dict[int, GroupLeader]:
        """Every group's leader: the replica claiming leadership that a majority follows."""
        statuses = self.status_all(timeout_s)
        shard_map = self.shard_map
        out = {}
        for group_id in shard_map.group_ids():
            replicas = shard_map.replicas(group_id)
            quorum = len(replicas) // 2 + 1
            follows: dict[int, list[str]] = {}
            claims: dict[int, str] = {}
            for name, st in statuses.items():
                if st is None:
                    continue
                for g in st.groups:
                    if g.group_id != group_id:
                        continue
                    if g.leader_id:
                        follows.setdefault(g.leader_id, []).append(name)
                    if g.role == "leader":
                        claims[st.node_id] = g.ballot
            best: GroupLeader = GroupLeader(group_id, None, "", ())
            for leader_id, ballot in claims.items():
                acks = tuple(sorted(follows.get(leader_id, [])))
                if len(acks) >= quorum and (
                    best.leader is None or ballot_from_text(ballot) > ballot_from_text(best.ballot)
                ):
                    best = GroupLeader(group_id, self.name_of(leader_id), ballot, acks)
            out[group_id] = best
        return out

    def leader_of(self, group_id: int, timeout_s: float = 1.0) -> str | None:
        """The name of the group's leader (see `leaders`), or None right now."""
        return self.leaders(timeout_s)[group_id].leader

    def wait_for_leader(
        self, group_id: int, deadline_s: float = 20.0, *, not_on: str | None = None
    ) -> str:
        """Wait until `group_id` has a leader (other than `not_on`); returns its name."""
        found: list[str] = []

        def ready() -> bool:
            leader = self.leader_of(group_id, timeout_s=0.5)
            if leader is not None and leader != not_on:
                found.append(leader)
                return True
            return False

        wait_for(ready, deadline_s, f"group {group_id} to elect a leader other than {not_on}")
        return found[-1]

    def wait_healthy(self, deadline_s: float = 30.0, *, progress: Progress | None = None) -> None:
        """Wait until every node answers Status and every group has an acknowledged leader."""
        say = progress or (lambda _msg: None)
        end = time.monotonic() + deadline_s
        last = ""
        while True:
            statuses = self.status_all(timeout_s=1.0)
            down = [n for n, st in statuses.items() if st is None]
            leaders = self.leaders(timeout_s=1.0)
            missing = [g for g, lead in leaders.items() if lead.leader is None]
            line = "leaders: " + ", ".join(
                f"group {g} {lead.leader or '-'}" for g, lead in sorted(leaders.items())
            )
            if down:
                line += f"; not answering: {', '.join(down)}"
            if line != last:
                say(line)
                last = line
            if not down and not missing:
                return
            if time.monotonic() > end:
                raise ClusterError(
                    f"the cluster in {self.data_dir} is not healthy after {deadline_s:.0f} s "
                    f"({line}); see the logs in {self.logs_dir}"
                )
            time.sleep(0.05)

    def wait_settled(self, deadline_s: float = 5.0) -> bool:
        """Wait until every group is led by its preferred leader; False at the deadline."""
        shard_map = self.shard_map
        end = time.monotonic() + deadline_s
        while True:
            leaders = self.leaders(timeout_s=1.0)
            if all(
                lead.leader == self.name_of(shard_map.preferred_leader(g))
                for g, lead in leaders.items()
            ):
                return True
            if time.monotonic() > end:
                return False
            time.sleep(0.05)

    def describe(self) -> Iterator[str]:
        """Human-readable lines: nodes, shards, the client export line."""
        yield f"cluster {self.cluster_id!r} in {self.data_dir}"
        for state in self.node_states():
            yield f"  {state.name} (id {state.node_id})  {state.address}  {self._process_text(state)}"
        for desc in self.shard_map.ranges:
            replicas = ", ".join(self.name_of(r) for r in desc.replicas)
            yield f"  group {desc.group_id}: keys {desc.label} on {replicas}"

    def _process_text(self, state: NodeState) -> str:
        """A node's pid and state; for one that exited without stopping (rule 7), its log
        and the command that brings it back."""
        if state.exited is None:
            return f"pid {'-' if state.pid is None else state.pid}  {state.state}"
        where = shlex.quote(str(self.data_dir))
        return (
            f"pid {state.exited.pid}  {state.exited.summary()}; restart it with paxoskv "
            f"cluster start --data-dir {where} (which starts only the nodes not running)"
        )


def _local_nodes(host: str, ports: list[int]) -> tuple[NodeConfig, ...]:
    """Nodes n1, n2, ... on `host`: the first half of `ports` for gRPC, the second half for
    their metrics endpoints."""
    count = len(ports) // 2
    return tuple(
        NodeConfig(
            id=i,
            name=f"n{i}",
            address=f"{host}:{ports[i - 1]}",
            metrics_address=f"{host}:{ports[count + i - 1]}",
        )
        for i in range(1, count + 1)
    )


class _BindFailed(ClusterError):
    pass


def _raise_noting_stopped(exc: BaseException, stopped: Sequence[str]) -> NoReturn:
    """Raise the error of a failed start: a ClusterError says on its first line which nodes
    the start stopped again (found by a new user's review: `n1 ... listening`, `n2 ...
    listening`, then n3's error, and n1 and n2 were gone without a word); anything else
    (Ctrl-C: `cluster start` says what runs) is raised as it is."""
    if not stopped or not isinstance(exc, ClusterError):
        raise exc
    first, newline, rest = str(exc).partition("\n")
    note = f"; the start stopped {', '.join(stopped)} again"
    raise ClusterError(f"{first}{note}{newline}{rest}") from exc


def wait_for(condition: Callable[[], bool], deadline_s: float, what: str) -> None:
    """Poll `condition` until it is true; raise TimeoutError naming `what` at the deadline."""
    end = time.monotonic() + deadline_s
    while not condition():
        if time.monotonic() > end:
            raise TimeoutError(f"timed out after {deadline_s} s waiting for {what}")
        time.sleep(POLL_S)
