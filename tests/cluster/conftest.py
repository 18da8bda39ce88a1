"""Fixtures for real-process cluster tests: LocalCluster instances in tmp dirs, a small KV
helper over the raw gRPC stubs, and a JSON report of measurements.

Every node process a fixture started is stopped by PID in the finalizer, also when the test
failed (SIGTERM, then SIGKILL); on failure the tail of every node's log is printed.
Tests mark themselves `@pytest.mark.cluster`.
"""

from __future__ import annotations

import contextlib
import json
import signal
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest

from router import kv_pb2 as kv
from router import kv_pb2_grpc
from shard.chaos.netns import ChaosCluster
from shard.cluster import CHANNEL_OPTIONS, LocalCluster, is_node_process, wait_for

__all__ = ["Indeterminate", "Kv", "wait_for"]

REPORT_NAME = "cluster_report.json"
ATTEMPT_TIMEOUT_S = 2.0
RETRY_PAUSE_S = 0.01


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()
    setattr(item, f"rep_{report.when}", report)


def _stop_cluster(cluster: LocalCluster, failed: bool) -> None:
    if failed:
        for name in cluster.names:
            print(f"----- tail of {cluster.log_file(name)}")
            print(cluster.log_tail(name, 30))
    try:
        cluster.stop(grace_s=3.0)
    finally:
        # Safety net: whatever pid a node ever had in this test, if it is still our node.
        for name, proc in cluster._procs.items():
            if proc.poll() is None and is_node_process(proc.pid, cluster.config_path, name):
                with contextlib.suppress(ProcessLookupError):
                    proc.send_signal(signal.SIGKILL)
                    proc.wait(timeout=10)
        cluster.close()


MakeCluster = Callable[..., LocalCluster]


@pytest.fixture
def make_cluster(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[MakeCluster]:
    """Factory: `make_cluster(nodes=3, shards=3, **LocalCluster kwargs)` -> a started cluster."""
    made: list[LocalCluster] = []

    def make(**kwargs: Any) -> LocalCluster:
        cluster = LocalCluster(tmp_path / f"cluster{len(made)}", **kwargs)
        made.append(cluster)
        cluster.start(deadline_s=60.0)
        return cluster

    yield make
    rep = getattr(request.node, "rep_call", None)
    failed = rep is None or rep.failed
    for cluster in made:
        _stop_cluster(cluster, failed)


@pytest.fixture
def faulty_cluster(tmp_path: Path) -> Iterator[ChaosCluster]:
    """A fresh 3-node cluster of one data shard whose nodes serve the fault hook
    (shard/faults.py)."""
    cluster = ChaosCluster(tmp_path / "faulty", nodes=3, shards=1, faults=True)
    try:
        cluster.start(deadline_s=60.0)
        yield cluster
    finally:
        cluster.stop(grace_s=3.0)
        cluster.close()


@pytest.fixture
def cluster(make_cluster: MakeCluster) -> LocalCluster:
    """A fresh 3-node cluster with 3 data shards (split points "j", "r") plus meta."""
    return make_cluster()


@pytest.fixture(scope="module")
def shared_cluster(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LocalCluster]:
    """One 3-node, 3-shard cluster for every test of a module (tests must leave it healthy)."""
    cluster = LocalCluster(tmp_path_factory.mktemp("shared") / "cluster")
    try:
        cluster.start(deadline_s=60.0)
        yield cluster
    finally:
        failed = request.session.testsfailed > 0
        _stop_cluster(cluster, failed)


@pytest.fixture
def report(tmp_path_factory: pytest.TempPathFactory) -> Callable[..., None]:
    """`report(name, **fields)`: print a measurement and append it to cluster_report.json
    under pytest's base temp dir (run with -s to see the print)."""
    path = tmp_path_factory.getbasetemp() / REPORT_NAME

    def add(name: str, **fields: Any) -> None:
        entry = {"name": name, "at": time.time(), **fields}
        print(f"\n[cluster report] {json.dumps(entry)}  -> {path}")
        entries = json.loads(path.read_text()) if path.exists() else []
        entries.append(entry)
        path.write_text(json.dumps(entries, indent=2) + "\n")

    return add


# ---------------------------------------------------------------------- KV helper


class Indeterminate(Exception):
    """A write whose outcome is unknown (timeout, lost connection, OUTCOME_UNKNOWN)."""


@dataclass(frozen=True, slots=True)
class Ack:
    key: bytes
    value: bytes
    version: int
    attempt_started: float
    acked: float


RETRY_CODES = {kv.NOT_LEADER, kv.UNAVAILABLE}
GRPC_RETRY = {
    grpc.StatusCode.UNAVAILABLE,
    grpc.StatusCode.DEADLINE_EXCEEDED,
    grpc.StatusCode.CANCELLED,
}


class Kv:
    """A minimal routing client over the raw stubs (until router/client.py lands).

    Finds a group's leader via Status, follows NOT_LEADER hints and retries UNAVAILABLE.
    Writes retry indeterminate attempts too, which is safe for the tests' writes (each writes
    one value to its own key, so a duplicate apply changes nothing observable but the version).
    """

    def __init__(self, cluster: LocalCluster) -> None:
        self.cluster = cluster
        self._map = cluster.shard_map
        self._leader: dict[int, str] = {}
        self._by_addr = {addr: name for name, addr in cluster.addresses.items()}
        self.cancelled: Callable[[], bool] = lambda: False
        self._stubs: dict[str, kv_pb2_grpc.KVStub] = {}
        self._channels: list[grpc.Channel] = []

    def stub(self, name: str) -> kv_pb2_grpc.KVStub:
        """This helper's own stub for a node (channels are not shared with other helpers)."""
        stub = self._stubs.get(name)
        if stub is None:
            channel = grpc.insecure_channel(self.cluster.addresses[name], options=CHANNEL_OPTIONS)
            self._channels.append(channel)
            stub = self._stubs[name] = kv_pb2_grpc.KVStub(channel)
        return stub

    def close(self) -> None:
        for channel in self._channels:
            channel.close()
        self._channels.clear()
        self._stubs.clear()

    def header(self, group_id: int) -> kv.Header:
        return kv.Header(cluster_id=self.cluster.cluster_id, group_id=group_id)

    def group_of(self, key: bytes) -> int:
        return self._map.locate(key).group_id

    def _target(self, group_id: int) -> str | None:
        name = self._leader.get(group_id)
        if name is None:
            name = self.cluster.leader_of(group_id, timeout_s=0.5)
            if name is not None:
                self._leader[group_id] = name
        return name

    def _redirect(self, group_id: int, error: kv.Error) -> None:
        hinted = self._by_addr.get(error.leader_addr)
        if hinted is not None:
            self._leader[group_id] = hinted
        else:
            self._leader.pop(group_id, None)

    def call(self, method: str, request: Any, group_id: int, deadline_s: float = 20.0) -> Any:
        """Send to the group's leader until an answer that is not NOT_LEADER/UNAVAILABLE.

        Returns the response; raises Indeterminate at the deadline (last problem attached).
        """
        end = time.monotonic() + deadline_s
        last = "no attempt"
        while time.monotonic() < end:
            if self.cancelled():
                raise Indeterminate(f"{method} to group {group_id}: cancelled ({last})")
            name = self._target(group_id)
            if name is None:
                last = f"group {group_id} has no leader"
                time.sleep(RETRY_PAUSE_S)
                continue
            try:
                response = getattr(self.stub(name), method)(request, timeout=ATTEMPT_TIMEOUT_S)
            except grpc.RpcError as exc:
                if exc.code() not in GRPC_RETRY:
                    raise
                last = f"{name}: {exc.code().name}"
                self._leader.pop(group_id, None)
                time.sleep(RETRY_PAUSE_S)
                continue
            if response.error.code in RETRY_CODES:
                last = f"{name}: {kv.ErrorCode.Name(response.error.code)}"
                self._redirect(group_id, response.error)
                time.sleep(RETRY_PAUSE_S)
                continue
            return response
        raise Indeterminate(f"{method} to group {group_id}: no answer in {deadline_s} s ({last})")

    def put(self, key: bytes, value: bytes, deadline_s: float = 20.0) -> Ack:
        """Write until acknowledged (retrying indeterminate attempts); returns the Ack."""
        group_id = self.group_of(key)
        request = kv.PutRequest(header=self.header(group_id), key=key, value=value)
        end = time.monotonic() + deadline_s
        while True:
            started = time.monotonic()
            try:
                response = self.call("Put", request, group_id, max(0.1, end - started))
            except Indeterminate:
                if time.monotonic() >= end or self.cancelled():
                    raise
                continue
            if response.error.code == kv.OUTCOME_UNKNOWN:
                if time.monotonic() >= end or self.cancelled():
                    raise Indeterminate(f"put {key!r}: {response.error.message}")
                continue
            if response.error.code != kv.OK:
                raise AssertionError(f"put {key!r}: {response.error}")
            return Ack(key, value, response.version, started, time.monotonic())

    def get(self, key: bytes, deadline_s: float = 20.0) -> bytes | None:
        """Linearizable read through the leader; the value or None."""
        group_id = self.group_of(key)
        response = self.call(
            "Get", kv.GetRequest(header=self.header(group_id), key=key), group_id, deadline_s
        )
        assert response.error.code == kv.OK, f"get {key!r}: {response.error}"
        return response.value if response.found else None

    def get_at(
        self, name: str, key: bytes, *, stale_ok: bool = False, timeout_s: float = 2.0
    ) -> kv.GetResponse:
        """One Get sent to one node, no retry."""
        request = kv.GetRequest(header=self.header(self.group_of(key)), key=key, stale_ok=stale_ok)
        response: kv.GetResponse = self.stub(name).Get(request, timeout=timeout_s)
        return response

    def reads_at(
        self, name: str, key: bytes, *, for_s: float, timeout_s: float
    ) -> list[kv.GetResponse]:
        """Linearizable Gets sent to one node back to back for `for_s` seconds, each
        answer kept; a call that fails (a timeout: fine, where a stale value is not) is
        kept as UNAVAILABLE."""
        answers = []
        end = time.monotonic() + for_s
        while time.monotonic() < end:
            try:
                answers.append(self.get_at(name, key, timeout_s=timeout_s))
            except grpc.RpcError as exc:
                failed = kv.Error(code=kv.UNAVAILABLE, message=str(exc))
                answers.append(kv.GetResponse(error=failed))
        return answers

    def scan_at(
        self,
        name: str,
        group_id: int,
        start: bytes,
        end: bytes | None = None,
        *,
        stale_ok: bool = False,
        limit: int = 0,
    ) -> kv.ScanResponse:
        """One Scan sent to one node, no retry."""
        request = kv.ScanRequest(
            header=self.header(group_id), start=start, stale_ok=stale_ok, limit=limit
        )
        if end is not None:
            request.end = end
        response: kv.ScanResponse = self.stub(name).Scan(request, timeout=2.0)
        return response

    def scan_all(self, group_id: int, start: bytes, end: bytes) -> list[tuple[bytes, bytes]]:
        """Every item of [start, end) in the group, through the leader, page by page."""
        out: list[tuple[bytes, bytes]] = []
        cursor = start
        while True:
            request = kv.ScanRequest(header=self.header(group_id), start=cursor, end=end)
            response = self.call("Scan", request, group_id)
            assert response.error.code == kv.OK, f"scan: {response.error}"
            if not response.items:
                return out
            out.extend((item.key, item.value) for item in response.items)
            cursor = response.items[-1].key + b"\0"


class Writer:
    """A background thread writing `prefix + 000000`, `prefix + 000001`, ... (one value each)
    through its own Kv helper, recording every acknowledged write. Attempts that end
    indeterminate are retried until acknowledged or the writer is stopped."""

    def __init__(self, cluster: LocalCluster, prefixes: list[bytes]) -> None:
        import threading

        self._kv = Kv(cluster)
        self._prefixes = prefixes
        self.acks: list[Ack] = []
        self.unacked: list[bytes] = []
        self.errors: list[BaseException] = []
        self._stop = threading.Event()
        self._kv.cancelled = self._stop.is_set
        self._thread = threading.Thread(target=self._run, name="writer", daemon=True)

    def __enter__(self) -> Writer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _run(self) -> None:
        i = 0
        while not self._stop.is_set():
            key = self._prefixes[i % len(self._prefixes)] + b"%06d" % i
            value = b"value-%d" % i
            try:
                self.acks.append(self._kv.put(key, value, deadline_s=30.0))
            except Indeterminate:
                self.unacked.append(key)
            except BaseException as exc:
                self.errors.append(exc)
                return
            i += 1

    def wait_acks(self, count: int, deadline_s: float = 20.0) -> None:
        """Wait until `count` writes in total were acknowledged."""
        wait_for(
            lambda: len(self.acks) >= count or bool(self.errors),
            deadline_s,
            f"{count} acknowledged writes (have {len(self.acks)})",
        )
        assert not self.errors, f"writer failed: {self.errors[0]!r}"

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=40.0)
        self._kv.close()
        assert not self._thread.is_alive(), "writer thread did not stop"
        assert not self.errors, f"writer failed: {self.errors[0]!r}"


# Test modules get the helpers through fixtures (tests/ has no packages to import from).


@pytest.fixture(scope="session")
def kv_of() -> Callable[[LocalCluster], Kv]:
    """`kv_of(cluster)` -> a Kv helper for that cluster."""
    return Kv


@pytest.fixture(scope="session")
def writer_of() -> Callable[[LocalCluster, list[bytes]], Writer]:
    """`writer_of(cluster, [prefix, ...])` -> a Writer (use it as a context manager)."""
    return Writer
