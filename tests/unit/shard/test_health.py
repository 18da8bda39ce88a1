"""shard/health.py: the node's grpc.health.v1 service over a real gRPC server on loopback."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from shard.health import KV_SERVICE, NOT_SERVING, SERVER, SERVING, NodeHealth
from tests.unit.shard.grpc_log_support import complaints


@contextlib.asynccontextmanager
async def _served(health: NodeHealth) -> AsyncIterator[grpc.aio.Channel]:
    """A loopback server carrying `health`, and a channel to it."""
    server = grpc.aio.server()
    health.add_to(server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            yield channel
    finally:
        await server.stop(None)


async def _check(stub: health_pb2_grpc.HealthStub, service: str) -> int:
    response = await stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=5.0)
    return int(response.status)


def test_the_health_service_follows_the_node_from_start_to_stop() -> None:
    async def main() -> None:
        health = NodeHealth()
        async with _served(health) as channel:
            stub = health_pb2_grpc.HealthStub(channel)
            health.started([2])
            assert await _check(stub, SERVER) == SERVING
            assert await _check(stub, KV_SERVICE) == NOT_SERVING  # group 2: no leader
            watch = stub.Watch(health_pb2.HealthCheckRequest(service=KV_SERVICE))
            assert (await watch.read()).status == NOT_SERVING
            health.observe([])
            assert await _check(stub, KV_SERVICE) == SERVING
            assert (await watch.read()).status == SERVING
            with pytest.raises(grpc.aio.AioRpcError) as unknown:
                await _check(stub, "no.such.Service")
            assert unknown.value.code() is grpc.StatusCode.NOT_FOUND
            health.stopping()
            assert await _check(stub, SERVER) == NOT_SERVING
            assert await _check(stub, KV_SERVICE) == NOT_SERVING
            assert (await watch.read()).status == NOT_SERVING
            health.observe([])  # the groups' leaders no longer count
            assert await _check(stub, KV_SERVICE) == NOT_SERVING
            watch.cancel()

    asyncio.run(main())


def test_a_status_that_cannot_be_read_is_not_serving_even_on_a_node_hosting_no_group() -> None:
    async def main() -> list[int]:
        health = NodeHealth()
        async with _served(health) as channel:
            stub = health_pb2_grpc.HealthStub(channel)
            health.started([])  # hosts no group: every one it hosts has a leader
            seen = [await _check(stub, KV_SERVICE)]
            health.unknown()
            seen.append(await _check(stub, KV_SERVICE))
            health.observe([])
            seen.append(await _check(stub, KV_SERVICE))
            health.stopping()
            health.unknown()
            seen.append(await _check(stub, KV_SERVICE))
            return seen

    assert asyncio.run(main()) == [SERVING, NOT_SERVING, SERVING, NOT_SERVING]


def test_every_watcher_hears_a_change_after_another_watcher_left() -> None:
    """grpcio-health-checking's asyncio Watch forgot the other watchers of a service once
    one ended (found by review): they never heard another change."""

    async def main() -> None:
        health = NodeHealth()
        async with _served(health) as channel:
            stub = health_pb2_grpc.HealthStub(channel)
            health.started([])
            request = health_pb2.HealthCheckRequest(service=KV_SERVICE)
            first, second = stub.Watch(request), stub.Watch(request)
            assert (await first.read()).status == SERVING
            assert (await second.read()).status == SERVING
            first.cancel()
            await asyncio.sleep(0)  # let the server see the cancellation first
            health.observe([1])
            update = await asyncio.wait_for(second.read(), timeout=5.0)
            assert update.status == NOT_SERVING
            second.cancel()

    asyncio.run(main())


@pytest.mark.parametrize(
    ("method", "kind"),
    [("Check", "unary_unary"), ("Watch", "unary_stream"), ("List", "unary_unary")],
)
def test_a_malformed_health_request_is_refused_invalid_argument(
    method: str, kind: str, caplog: pytest.LogCaptureFixture
) -> None:
    async def main() -> None:
        async with _served(NodeHealth()) as channel:
            call = getattr(channel, kind)(f"/grpc.health.v1.Health/{method}")
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                if kind == "unary_unary":
                    await call(b"\xff\xff\xff", timeout=5.0)
                else:
                    async for _ in call(b"\xff\xff\xff", timeout=5.0):
                        pass
            assert refused.value.code() is grpc.StatusCode.INVALID_ARGUMENT

    with caplog.at_level(logging.DEBUG):
        asyncio.run(main())
    assert not complaints(caplog.records, logging.ERROR)


def test_list_names_every_service_with_its_status() -> None:
    async def main() -> dict[str, int]:
        health = NodeHealth()
        async with _served(health) as channel:
            health.started([3])
            stub = health_pb2_grpc.HealthStub(channel)
            listed = await stub.List(health_pb2.HealthListRequest(), timeout=5.0)
            return {name: int(r.status) for name, r in listed.statuses.items()}

    assert asyncio.run(main()) == {SERVER: SERVING, KV_SERVICE: NOT_SERVING}
