"""One `_Connection`'s stream session against a scripted channel and stream (no gRPC): what
happens to requests while the stream ends."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import Any

import grpc
import pytest

import router.client
from router import kv_pb2 as kv
from router.client import _Connection, _SendFailed


class SilentStream:
    """A Batch stream whose node reads every write and answers nothing, for ever."""

    def __init__(self) -> None:
        self.written: list[kv.RequestBatch] = []
        self.cancelled = False

    async def write(self, batch: kv.RequestBatch) -> None:
        self.written.append(batch)

    async def read(self) -> Any:
        await asyncio.Future()

    def done(self) -> bool:
        return self.cancelled

    def cancel(self) -> None:
        self.cancelled = True


class ScriptedChannel:
    def __init__(self) -> None:
        self.state = grpc.ChannelConnectivity.READY

    def get_state(self, try_to_connect: bool = False) -> grpc.ChannelConnectivity:
        return self.state

    async def wait_for_state_change(self, state: grpc.ChannelConnectivity) -> None:
        await asyncio.Future()

    async def close(self) -> None:
        pass


class ScriptedStub:
    def __init__(self) -> None:
        self.streams: list[SilentStream] = []

    def Batch(self) -> SilentStream:
        self.streams.append(SilentStream())
        return self.streams[-1]


class ScriptedConnection(_Connection):
    def __init__(self) -> None:
        self.scripted_channel = ScriptedChannel()
        self.scripted_stub = ScriptedStub()
        super().__init__("node-1:7000", (), None, attempt_timeout_s=60.0)

    def _open(self, options: Sequence[tuple[str, Any]], credentials: Any) -> tuple[Any, Any]:
        return self.scripted_channel, self.scripted_stub


async def until(condition: Callable[[], bool], within_s: float = 5.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within_s
    while not condition():
        assert loop.time() < deadline, "condition not met before the deadline"
        await asyncio.sleep(0)


def get(key: bytes) -> kv.Request:
    return kv.Request(get=kv.GetRequest(key=key))


def send_failure(call: Any) -> _SendFailed:
    exc = call.future.exception()
    assert isinstance(exc, _SendFailed), exc
    return exc


def test_a_request_while_the_stream_ends_fails_at_once_as_not_sent(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The connection goes away (a stopping node's GOAWAY) while the node still owes an
    answer: the session reads the stream's last answers for up to READER_END_S. A request
    submitted meanwhile fails at once as not sent, so that its caller asks the next replica
    now, not after READER_END_S; once the session has ended, the next request opens a new
    stream."""
    monkeypatch.setattr(router.client, "READER_END_S", 0.2)

    async def scenario() -> None:
        conn = ScriptedConnection()
        stub, channel = conn.scripted_stub, conn.scripted_channel
        owed = conn.submit(get(b"a"))
        await until(lambda: bool(stub.streams and stub.streams[0].written))
        channel.state = grpc.ChannelConnectivity.IDLE
        queued = conn.submit(get(b"b"))  # wakes the session, which finds the connection gone
        await until(queued.future.done)
        assert send_failure(queued).sent is False
        assert conn._session is not None and not conn._session.done()

        during = conn.submit(get(b"c"))
        assert during.future.done(), "waited for the ending stream's reader"
        failure = send_failure(during)
        assert failure.sent is False
        assert "connection to the node was lost" in failure.reason

        await until(owed.future.done)
        assert send_failure(owed).sent is True  # written, never answered: may be applied
        channel.state = grpc.ChannelConnectivity.READY
        after = conn.submit(get(b"d"))
        assert not after.future.done()
        await until(lambda: len(stub.streams) == 2 and bool(stub.streams[1].written))
        assert [r.get.key for r in stub.streams[1].written[0].requests] == [b"d"]
        await conn.close()

    asyncio.run(asyncio.wait_for(scenario(), 30))
