"""What the tests of a real `NodeRuntime` and its client service share: bounded waits, a disk
whose fsync holds, a gRPC context whose abort ends the call."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from shard.config import ClusterConfig, NodeConfig
from shard.runtime import NodeRuntime

DEADLINE_S = 10.0


class Aborted(Exception):
    """Raised by `AbortingContext.abort`, as grpc.aio's abort ends the call."""


class AbortingContext:
    """The part of a gRPC servicer context the Batch stream uses; remembers its abort."""

    def __init__(self) -> None:
        self.aborted: tuple[Any, str] | None = None

    async def abort(self, code: Any, details: str) -> None:
        self.aborted = (code, details)
        raise Aborted(details)


class PeerContext:
    """The part of a gRPC servicer context the Peer service uses: its peer's address."""

    PEER = "ipv4:127.0.0.1:50000"

    def peer(self) -> str:
        return self.PEER


def three_node_config(cluster_id: str, data_dir: Path) -> ClusterConfig:
    """Nodes 1-3 (n1-n3, addresses nobody listens on), every group on all three."""
    return ClusterConfig(
        cluster_id=cluster_id,
        nodes=tuple(NodeConfig(id=i, name=f"n{i}", address=f"127.0.0.1:{i}") for i in (1, 2, 3)),
        replication=3,
        data_dir=str(data_dir),
    )


async def wake_until(runtime: NodeRuntime, condition: Callable[[], bool]) -> None:
    """Run wakes as the loop would (one `_run_cycles` per wake) until `condition`, bounded."""
    deadline = time.monotonic() + DEADLINE_S
    while not condition():
        assert time.monotonic() < deadline, "condition not reached before the deadline"
        await runtime._run_cycles()
        await asyncio.sleep(0.001)


async def until(condition: Callable[[], bool]) -> None:
    """Wait until `condition`, letting the loop run; bounded by DEADLINE_S."""
    deadline = time.monotonic() + DEADLINE_S
    while not condition():
        assert time.monotonic() < deadline, "condition not reached before the deadline"
        await asyncio.sleep(0.005)


class HeldSync:
    """The disk's fsync, each held in its worker thread until released (a slow disk)."""

    def __init__(self, runtime: NodeRuntime) -> None:
        self._sync = runtime.disk.sync
        self._releases = threading.Semaphore(0)
        self.calls = 0
        self.released = 0
        self.open = False
        runtime.disk.sync = self  # type: ignore[method-assign]

    def __call__(self) -> None:
        self.calls += 1
        if not self.open:
            assert self._releases.acquire(timeout=DEADLINE_S), "an fsync was never released"
        self._sync()

    def started(self) -> bool:
        return self.calls > 0

    def release(self) -> None:
        self.released += 1
        self._releases.release()

    def release_all(self) -> None:
        """Release the one held and hold none from now on."""
        self.open = True
        self.release()

    def holding(self) -> bool:
        return not self.open and self.calls > self.released
