"""A `shard.bench_harness.Driver` for etcd's v3 gRPC API (grpc.aio).

`put` is KV.Put; `get` is KV.Range on one key with serializable=false, etcd's default, i.e. a
linearizable read (the member confirms with the leader via ReadIndex before answering), the
same guarantee paxoskv's reads give.

Each driver owns one grpc.aio channel. Channels get a local subchannel pool, so N drivers are
N TCP connections (by default gRPC Python shares one connection among channels with identical
arguments, which would silently turn "one connection per client" into one connection).
"""

from __future__ import annotations

import asyncio
import itertools
import sys
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path

import grpc

if __package__ in (None, ""):  # run as a script: make the repository root importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.etcd import rpc_pb2, rpc_pb2_grpc

__all__ = ["EtcdDriver", "etcd_driver_factory"]

_CHANNEL_OPTIONS = [
    ("grpc.use_local_subchannel_pool", 1),
    ("grpc.max_receive_message_length", 16 * 1024 * 1024),
]


class EtcdDriver:
    """One grpc.aio channel to one etcd member; safe for concurrent use by many coroutines.

    Args:
        endpoint: "host:port" of an etcd client URL.
        timeout_s: per-call deadline; a call past it raises grpc.aio.AioRpcError.
    """

    def __init__(self, endpoint: str, *, timeout_s: float = 10.0) -> None:
        self.endpoint = endpoint
        self._timeout_s = timeout_s
        self._channel = grpc.aio.insecure_channel(endpoint, options=_CHANNEL_OPTIONS)
        self._kv = rpc_pb2_grpc.KVStub(self._channel)

    async def connect(self, timeout_s: float = 10.0) -> EtcdDriver:
        """Wait until the channel is connected, so connection set-up is not measured."""
        await asyncio.wait_for(self._channel.channel_ready(), timeout=timeout_s)
        return self

    async def put(self, key: bytes, value: bytes) -> None:
        await self._kv.Put(rpc_pb2.PutRequest(key=key, value=value), timeout=self._timeout_s)

    async def get(self, key: bytes) -> bytes | None:
        resp = await self._kv.Range(
            rpc_pb2.RangeRequest(key=key, serializable=False), timeout=self._timeout_s
        )
        if not resp.kvs:
            return None
        value: bytes = resp.kvs[0].value
        return value

    async def close(self) -> None:
        await self._channel.close()


def etcd_driver_factory(
    endpoints: Sequence[str], *, timeout_s: float = 10.0
) -> Callable[[], Awaitable[EtcdDriver]]:
    """A driver factory for `run_workload`: each call opens a connected `EtcdDriver`.

    Successive drivers go to `endpoints` round-robin (pass one endpoint, e.g. the leader's, to
    send everything there).
    """
    if not endpoints:
        raise ValueError("need at least one endpoint")
    cycle = itertools.cycle(list(endpoints))

    async def make() -> EtcdDriver:
        return await EtcdDriver(next(cycle), timeout_s=timeout_s).connect()

    return make
