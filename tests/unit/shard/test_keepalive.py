"""A client's idle stream to a node survives its keepalive pings (real gRPC, 127.0.0.1).

Found by review: the client pinged every 10 s while the node's server kept gRPC's default
ping policy (a ping less than 5 minutes after the last, with no data sent between, is a
strike; the third ends the connection with GOAWAY "too_many_pings"), so a stream left idle
was torn down after 75-95 s, with any write then in flight reported OutcomeUnknown.

Ten times faster here: the project's option lists with their keepalive times divided by
ten (a client ping a second, gRPC's floor). Without the server's policy the stream is torn
down within about 5 s; a proxy counts the client's pings, which gRPC would otherwise cut to
one a minute once no data flows (then the policy would go untested).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from typing import Any

import grpc

from router.client import CHANNEL_OPTIONS
from shard.transport import GRPC_OPTIONS

SPEEDUP = 10
KEEPALIVE_TIMES = {"grpc.keepalive_time_ms", "grpc.http2.min_ping_interval_without_data_ms"}
IDLE_S = 8.0
PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
PING, ACK = 0x6, 0x1


def _faster(options: Sequence[tuple[str, Any]]) -> list[tuple[str, Any]]:
    return [(k, v // SPEEDUP if k in KEEPALIVE_TIMES else v) for k, v in options]


class _PingCounter:
    """A TCP proxy to `port` that counts the HTTP/2 PING frames (not their acks) the client
    sends through it."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.pings = 0
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> int:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return int(self._server.sockets[0].getsockname()[1])

    async def stop(self) -> None:
        self._server.close()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _serve(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        server_r, server_w = await asyncio.open_connection("127.0.0.1", self.port)
        for pump in (self._frames(client_r, server_w), self._bytes(server_r, client_w)):
            self._tasks.add(asyncio.create_task(pump))

    async def _frames(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(asyncio.IncompleteReadError, ConnectionError):
            writer.write(await reader.readexactly(len(PREFACE)))
            while True:
                header = await reader.readexactly(9)  # length (3), type, flags, stream (4)
                payload = await reader.readexactly(int.from_bytes(header[:3], "big"))
                if header[3] == PING and not header[4] & ACK:
                    self.pings += 1
                writer.write(header + payload)
        writer.close()

    async def _bytes(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError):
            while data := await reader.read(65536):
                writer.write(data)
        writer.close()


async def _echo(requests: Any, context: Any) -> Any:
    async for request in requests:
        yield request


def test_an_idle_stream_is_pinged_and_not_torn_down_by_the_node() -> None:
    async def main() -> None:
        server = grpc.aio.server(options=_faster(GRPC_OPTIONS))
        handler = grpc.stream_stream_rpc_method_handler(_echo)
        server.add_generic_rpc_handlers(
            (grpc.method_handlers_generic_handler("t.T", {"Echo": handler}),)
        )
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        proxy = _PingCounter(port)
        channel = grpc.aio.insecure_channel(
            f"127.0.0.1:{await proxy.start()}", options=_faster(CHANNEL_OPTIONS)
        )
        try:
            stream = channel.stream_stream("/t.T/Echo")()
            await stream.write(b"x")
            assert await stream.read() == b"x"
            before = proxy.pings
            try:
                got = await asyncio.wait_for(stream.read(), IDLE_S)
            except TimeoutError:
                pass  # idle and open for IDLE_S: what a node must allow
            else:
                raise AssertionError(f"the idle stream ended: {got!r}, {stream.details()}")
            # About one a second (6 seen here), not gRPC's 2 then one a minute.
            assert proxy.pings - before >= 4, proxy.pings - before
        finally:
            await channel.close()
            await proxy.stop()
            await server.stop(None)

    asyncio.run(main())
