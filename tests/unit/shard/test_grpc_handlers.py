"""shard.grpc_handlers: undecodable bytes sent to a unary method get INVALID_ARGUMENT and
no traceback in the node's log (found by review: UNKNOWN "Unexpected DecodeError" and an
error-level traceback per request, 2.7 MB of log for 5,000 one-byte requests); and the
streaming methods refuse them themselves."""

from __future__ import annotations

import asyncio
import logging

import grpc
import pytest

from router import kv_pb2 as kv
from router import kv_pb2_grpc
from shard import peer_pb2, peer_pb2_grpc
from shard.grpc_handlers import add_servicer
from shard.server import KVServicer
from shard.transport import SECRET_HEADER, PeerServicer
from tests.unit.shard.grpc_log_support import complaints

GARBAGE = b"\xff\xff\xff"  # a field tag whose varint never ends


def _kv_servicer() -> KVServicer:
    def answer(request: kv.Request, reply: object) -> None:
        reply(kv.Response(id=request.id, put=kv.PutResponse(version=7)))  # type: ignore[operator]

    return KVServicer(core=None, submit=answer, node_name="n1", timeout_s=1.0)  # type: ignore[arg-type]


def _peer_servicer() -> PeerServicer:
    return PeerServicer(
        "c", 1, {2}, lambda *_: None, "secret", recorded=lambda node_id: None, nodes={2}
    )


async def _call_raw(port: int, method: str, payload: bytes) -> grpc.aio.AioRpcError | bytes:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        call = channel.unary_unary(method)  # bytes in, bytes out
        try:
            answer: bytes = await call(payload, timeout=5)
        except grpc.aio.AioRpcError as exc:
            return exc
        return answer


async def _serve_and_call(calls: list[tuple[str, bytes]]) -> list[grpc.aio.AioRpcError | bytes]:
    server = grpc.aio.server()
    add_servicer(kv_pb2_grpc.add_KVServicer_to_server, _kv_servicer(), server)
    add_servicer(peer_pb2_grpc.add_PeerServicer_to_server, _peer_servicer(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        return [await _call_raw(port, method, payload) for method, payload in calls]
    finally:
        await server.stop(None)


@pytest.mark.parametrize(
    "method,message",
    [
        ("/paxoskv.kv.KV/Put", "PutRequest"),
        ("/paxoskv.kv.KV/Get", "GetRequest"),
        ("/paxoskv.kv.KV/Status", "StatusRequest"),
        ("/paxoskv.kv.KV/GetShardMap", "ShardMapRequest"),
        ("/paxoskv.peer.Peer/RecordedIncarnation", "IncarnationQuery"),
    ],
)
def test_undecodable_unary_requests_are_refused_invalid_argument_without_a_traceback(
    caplog: pytest.LogCaptureFixture, method: str, message: str
) -> None:
    caplog.set_level(logging.DEBUG)
    (answer,) = asyncio.run(_serve_and_call([(method, GARBAGE)]))
    assert isinstance(answer, grpc.aio.AioRpcError)
    assert answer.code() is grpc.StatusCode.INVALID_ARGUMENT, answer
    assert answer.details() == f"undecodable request: the bytes are not a {message}"
    assert not complaints(caplog.records, logging.WARNING)


def test_a_well_formed_request_still_reaches_the_servicer() -> None:
    put = kv.PutRequest(key=b"k", value=b"v").SerializeToString()
    (answer,) = asyncio.run(_serve_and_call([("/paxoskv.kv.KV/Put", put)]))
    assert isinstance(answer, bytes)
    assert kv.PutResponse.FromString(answer).version == 7


async def _exchange_garbage() -> list[bytes]:
    server = grpc.aio.server()
    add_servicer(peer_pb2_grpc.add_PeerServicer_to_server, _peer_servicer(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            exchange = channel.stream_stream("/paxoskv.peer.Peer/Exchange")
            call = exchange(iter([GARBAGE]), metadata=((SECRET_HEADER, "secret"),), timeout=5)
            return [reply async for reply in call]
    finally:
        await server.stop(None)


def test_undecodable_bytes_on_the_peer_stream_are_refused_without_a_traceback(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Found by review of the first form: the peer stream still answered UNKNOWN and logged
    a traceback, though the module said the streaming handlers catch bad bytes."""
    caplog.set_level(logging.DEBUG)
    (reply,) = asyncio.run(_exchange_garbage())
    assert peer_pb2.PeerReply.FromString(reply).refusal.startswith("undecodable peer batch")
    assert not complaints(caplog.records)


def test_generated_code_that_registers_no_named_handlers_is_refused_at_start() -> None:
    """A service with no methods would answer UNIMPLEMENTED to everything (found by review:
    generated code of another grpcio-tools may register generic handlers only)."""

    def generic_only(servicer: object, server: object) -> None:
        server.add_generic_rpc_handlers(())  # type: ignore[attr-defined]

    with pytest.raises(RuntimeError, match="regenerate"):
        add_servicer(generic_only, object(), object())  # type: ignore[arg-type]
