"""shard/health.py: the node's grpc.health.v1 service over a real gRPC server on loopback."""

from __future__ import annotations

import asyncio

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from shard.health import KV_SERVICE, NOT_SERVING, SERVER, SERVING, NodeHealth


async def _check(stub: health_pb2_grpc.HealthStub, service: str) -> int:
    response = await stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=5.0)
    return int(response.status)


def test_the_health_service_follows_the_node_from_start_to_stop() -> None:
    async def main() -> None:
        server = grpc.aio.server()
        health = NodeHealth()
        health.add_to(server)
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        try:
            async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
                stub = health_pb2_grpc.HealthStub(channel)
                await health.started([2])
                assert await _check(stub, SERVER) == SERVING
                assert await _check(stub, KV_SERVICE) == NOT_SERVING  # group 2: no leader
                watch = stub.Watch(health_pb2.HealthCheckRequest(service=KV_SERVICE))
                assert (await watch.read()).status == NOT_SERVING
                await health.observe([])
                assert await _check(stub, KV_SERVICE) == SERVING
                assert (await watch.read()).status == SERVING
                with pytest.raises(grpc.aio.AioRpcError) as unknown:
                    await _check(stub, "no.such.Service")
                assert unknown.value.code() is grpc.StatusCode.NOT_FOUND
                await health.stopping()
                assert await _check(stub, SERVER) == NOT_SERVING
                assert await _check(stub, KV_SERVICE) == NOT_SERVING
                assert (await watch.read()).status == NOT_SERVING
                await health.observe([])  # the groups' leaders no longer count
                assert await _check(stub, KV_SERVICE) == NOT_SERVING
                watch.cancel()
        finally:
            await server.stop(None)

    asyncio.run(main())


def test_a_malformed_health_request_is_refused_invalid_argument() -> None:
    async def main() -> None:
        server = grpc.aio.server()
        NodeHealth().add_to(server)
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        try:
            async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
                raw = channel.unary_unary("/grpc.health.v1.Health/Check")
                with pytest.raises(grpc.aio.AioRpcError) as refused:
                    await raw(b"\xff\xff\xff", timeout=5.0)
                assert refused.value.code() is grpc.StatusCode.INVALID_ARGUMENT
        finally:
            await server.stop(None)

    asyncio.run(main())
