"""Start and stop a local 3-member etcd cluster for the reference benchmark.

Usage::

    with EtcdCluster(size=3) as cluster:
        cluster.client_endpoints   # ["127.0.0.1:PORT", ...]
        cluster.leader_endpoint()  # the member that currently leads

The cluster binds only 127.0.0.1 on ports the OS reported free (all ports are bind-tested
together, so they are distinct), keeps its data and logs in a temporary directory, and is
healthy when `__enter__` returns: every member answered Maintenance.Status naming the same
leader, and a linearizable Range succeeded on every member. Every member is stopped by PID
(SIGTERM, then SIGKILL after a deadline) in `__exit__`/`stop()`, also when start-up fails.

The members run with etcd's defaults (fsync on) plus `extra_args`: ETCD_* variables of the
environment, which etcd would read as flags, are not passed on (ETCD_UNSUPPORTED_ARCH aside).

Needs the `etcd` binary (Debian: `apt-get install -y etcd-server`, etcd 3.4).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

import grpc

if __package__ in (None, ""):  # run as a script: make the repository root importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.etcd import rpc_pb2, rpc_pb2_grpc

__all__ = ["EtcdCluster", "EtcdClusterError", "EtcdMember", "find_etcd", "free_ports"]


class EtcdClusterError(RuntimeError):
    """The cluster could not be started or did not become healthy in time."""


def find_etcd() -> str:
    """Path of the etcd binary, or raise EtcdClusterError saying how to install it."""
    path = shutil.which("etcd") or (
        "/usr/bin/etcd" if os.access("/usr/bin/etcd", os.X_OK) else None
    )
    if path is None:
        raise EtcdClusterError("etcd not found; install it with: apt-get install -y etcd-server")
    return path


def free_ports(count: int, host: str = "127.0.0.1") -> list[int]:
    """Return `count` distinct ports that could be bound on `host` just now.

    All sockets stay open until every port is chosen, so the ports are distinct. Another
    process may still take one before etcd binds it; `EtcdCluster.start` retries on that.
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


# etcd takes every flag from an ETCD_<FLAG> variable as well; only this one is kept (etcd
# refuses to start on arm64 without it). Any other, e.g. ETCD_UNSAFE_NO_FSYNC=true left in
# the shell, would silently change the reference cluster (its fsyncs) that the figures
# compare paxoskv with: the members get only the flags written below and `extra_args`.
_KEPT_ETCD_ENV = frozenset({"ETCD_UNSUPPORTED_ARCH"})


def _member_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("ETCD_") or k in _KEPT_ETCD_ENV}


@dataclass(slots=True)
class EtcdMember:
    name: str
    client_port: int
    peer_port: int
    data_dir: Path
    log_path: Path
    proc: subprocess.Popen[bytes] | None = None

    @property
    def client_endpoint(self) -> str:
        return f"127.0.0.1:{self.client_port}"

    @property
    def client_url(self) -> str:
        return f"http://127.0.0.1:{self.client_port}"

    @property
    def peer_url(self) -> str:
        return f"http://127.0.0.1:{self.peer_port}"


class EtcdCluster:
    """A throwaway etcd cluster of `size` members on 127.0.0.1 (see module docstring).

    Args:
        size: number of members (3 for the reference figures).
        startup_timeout_s: deadline for all members to be healthy, per start attempt.
        attempts: start attempts, each on fresh ports (covers a port taken in between).
        etcd_bin: path of the etcd binary; found on PATH by default.
        extra_args: more etcd flags, applied to every member.
    """

    def __init__(
        self,
        size: int = 3,
        *,
        startup_timeout_s: float = 30.0,
        attempts: int = 3,
        etcd_bin: str | None = None,
        extra_args: tuple[str, ...] = (),
    ) -> None:
        if size < 1:
            raise ValueError("size must be >= 1")
        self.size = size
        self.startup_timeout_s = startup_timeout_s
        self.attempts = attempts
        self.etcd_bin = etcd_bin or find_etcd()
        self.extra_args = extra_args
        self.members: list[EtcdMember] = []
        self._tmp: tempfile.TemporaryDirectory[str] | None = None

    # -- lifecycle ---------------------------------------------------------------------------

    def __enter__(self) -> EtcdCluster:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def start(self) -> None:
        """Start all members and wait until healthy. On failure everything is stopped."""
        last_error: Exception | None = None
        for attempt in range(self.attempts):
            try:
                self._start_once(attempt)
                return
            except EtcdClusterError as e:
                last_error = e
                self.stop()
            except BaseException:
                # Interrupted (SIGTERM turned SystemExit, Ctrl-C): `with` never reaches
                # __exit__ when __enter__ raises, so no member may outlive this call.
                self.stop()
                raise
        raise EtcdClusterError(f"etcd cluster did not start in {self.attempts} attempts") from (
            last_error
        )

    def stop(self, timeout_s: float = 10.0) -> None:
        """Stop every member by PID: SIGTERM, wait up to `timeout_s`, then SIGKILL.

        Members are stopped one at a time, the current leader first. A leader given SIGTERM
        first hands leadership to a live follower; with every member terminated at once it
        waits out a transfer timeout instead (about 7 s on etcd 3.4).
        """
        order = self._stop_order()
        for m in order:
            if m.proc is None:
                continue
            if m.proc.poll() is None:
                m.proc.terminate()
            try:
                m.proc.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                m.proc.kill()
                m.proc.wait(timeout=timeout_s)
        self.members = []
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    def _stop_order(self) -> list[EtcdMember]:
        """Members, whoever leads now first; the given order when that cannot be learnt."""
        alive = [m for m in self.members if m.proc is not None and m.proc.poll() is None]
        if len(alive) != len(self.members) or not alive:
            return list(self.members)
        try:
            leader = self.leader_endpoint(timeout_s=1.0)
        except (grpc.RpcError, EtcdClusterError):
            return list(self.members)
        return sorted(self.members, key=lambda m: m.client_endpoint != leader)

    @property
    def pids(self) -> list[int]:
        return [m.proc.pid for m in self.members if m.proc is not None]

    @property
    def client_endpoints(self) -> list[str]:
        return [m.client_endpoint for m in self.members]

    # -- start-up ----------------------------------------------------------------------------

    def _start_once(self, attempt: int) -> None:
        self._tmp = tempfile.TemporaryDirectory(prefix="paxoskv-etcd-")
        root = Path(self._tmp.name)
        ports = free_ports(2 * self.size)
        self.members = [
            EtcdMember(
                name=f"m{i}",
                client_port=ports[2 * i],
                peer_port=ports[2 * i + 1],
                data_dir=root / f"m{i}.etcd",
                log_path=root / f"m{i}.log",
            )
            for i in range(self.size)
        ]
        initial_cluster = ",".join(f"{m.name}={m.peer_url}" for m in self.members)
        token = f"paxoskv-bench-{os.getpid()}-{attempt}"
        for m in self.members:
            args = [
                self.etcd_bin,
                f"--name={m.name}",
                f"--data-dir={m.data_dir}",
                f"--listen-client-urls={m.client_url}",
                f"--advertise-client-urls={m.client_url}",
                f"--listen-peer-urls={m.peer_url}",
                f"--initial-advertise-peer-urls={m.peer_url}",
                f"--initial-cluster={initial_cluster}",
                "--initial-cluster-state=new",
                f"--initial-cluster-token={token}",
                "--logger=zap",
                "--log-outputs=stderr",
                *self.extra_args,
            ]
            with open(m.log_path, "wb") as log:
                m.proc = subprocess.Popen(
                    args,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    env=_member_env(),
                )
        self._wait_healthy(time.monotonic() + self.startup_timeout_s)

    def _check_alive(self) -> None:
        for m in self.members:
            if m.proc is not None and m.proc.poll() is not None:
                tail = m.log_path.read_text(errors="replace")[-2000:]
                raise EtcdClusterError(
                    f"etcd member {m.name} exited with {m.proc.returncode} during start-up; "
                    f"log tail:\n{tail}"
                )

    def _member_ready(self, m: EtcdMember, deadline: float) -> int:
        """Status and a linearizable Range on one member; return its leader id (0 = none)."""
        timeout = max(0.05, min(2.0, deadline - time.monotonic()))
        with grpc.insecure_channel(m.client_endpoint) as channel:
            grpc.channel_ready_future(channel).result(timeout=timeout)
            status = rpc_pb2_grpc.MaintenanceStub(channel).Status(
                rpc_pb2.StatusRequest(), timeout=timeout
            )
            if status.leader == 0:
                return 0
            rpc_pb2_grpc.KVStub(channel).Range(rpc_pb2.RangeRequest(key=b"health"), timeout=timeout)
            return int(status.leader)

    def _wait_healthy(self, deadline: float) -> None:
        pending = list(self.members)
        leaders: dict[str, int] = {}
        last_error = "no attempt made"
        while True:
            self._check_alive()
            still: list[EtcdMember] = []
            for m in pending:
                try:
                    leader = self._member_ready(m, deadline)
                except (grpc.RpcError, grpc.FutureTimeoutError) as e:
                    last_error = f"{m.name}: {type(e).__name__}: {e}"
                    still.append(m)
                    continue
                if leader == 0:
                    last_error = f"{m.name}: no leader yet"
                    still.append(m)
                else:
                    leaders[m.name] = leader
            pending = still
            if not pending and len(set(leaders.values())) == 1:
                return
            if not pending:  # members disagree on the leader: an election is in progress
                pending, leaders = list(self.members), {}
                last_error = "members disagree on the leader"
            if time.monotonic() >= deadline:
                raise EtcdClusterError(
                    f"etcd not healthy after {self.startup_timeout_s}s: {last_error}"
                )
            # Back off briefly, but wake at once if a member exits.
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc = self.members[0].proc
                if proc is not None:
                    proc.wait(timeout=min(0.1, max(0.0, deadline - time.monotonic())))

    # -- queries -----------------------------------------------------------------------------

    def status(self, endpoint: str, timeout_s: float = 2.0) -> rpc_pb2.StatusResponse:
        with grpc.insecure_channel(endpoint) as channel:
            return rpc_pb2_grpc.MaintenanceStub(channel).Status(
                rpc_pb2.StatusRequest(), timeout=timeout_s
            )

    def leader_endpoint(self, timeout_s: float = 2.0) -> str:
        """Client endpoint of the member every member currently names as leader."""
        by_id: dict[int, str] = {}
        leader_ids: set[int] = set()
        for m in self.members:
            st = self.status(m.client_endpoint, timeout_s)
            by_id[st.header.member_id] = m.client_endpoint
            leader_ids.add(st.leader)
        if len(leader_ids) != 1 or next(iter(leader_ids)) not in by_id:
            raise EtcdClusterError(f"no agreed leader: {sorted(leader_ids)}")
        return by_id[next(iter(leader_ids))]


def main() -> int:
    """Start a cluster, print its endpoints and leader, stop it: a smoke test."""
    with EtcdCluster() as cluster:
        print("pids", cluster.pids)
        print("endpoints", cluster.client_endpoints)
        print("leader", cluster.leader_endpoint())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
