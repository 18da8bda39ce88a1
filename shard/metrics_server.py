"""The HTTP endpoint Prometheus scrapes: `GET /metrics` on a node's `metrics_address`.

It runs on the node's asyncio loop, so a scrape reads the node's state between two of the
loop's steps and never from another thread (prometheus_client's own server runs one). It
serves nothing but the metrics and reads at most a small request: a request line and
headers over MAX_REQUEST_BYTES or slower than REQUEST_TIMEOUT_S, a method other than GET, or
another path gets its 4xx answer and the connection is closed; at most
MAX_CONNECTIONS are served at once (more are closed unanswered). Nothing a client sends
here can reach the node's data.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4

log = logging.getLogger("paxoskv.metrics")

MAX_REQUEST_BYTES = 8192
REQUEST_TIMEOUT_S = 5.0
MAX_CONNECTIONS = 32
RENDER_EVERY_S = 1.0
"""A scrape within this long of the last rendering gets that rendering again: rendering
costs the loop about 0.7 ms, and a client scraping in a loop over 32 connections slowed
the node's puts sevenfold (found by review). Prometheus scrapes every 15 s or so."""

_REASONS = {200: "OK", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed"}


def split_address(address: str) -> tuple[str, int]:
    """HOST:PORT (a bracketed IPv6 host too) as (host, port)."""
    host, _, port = address.rpartition(":")
    return host.removeprefix("[").removesuffix("]"), int(port)


class MetricsServer:
    """Serves `registry` at /metrics over HTTP/1.1, one request per connection."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self._registry = registry
        self._server: asyncio.Server | None = None
        self._open = 0
        self._writers: set[asyncio.StreamWriter] = set()
        self._rendered: tuple[float, bytes] | None = None  # (loop time, body)

    async def start(self, address: str) -> None:
        """Listen on `address` (HOST:PORT). Raises OSError when it cannot."""
        host, port = split_address(address)
        self._server = await asyncio.start_server(
            self._serve, host, port, limit=MAX_REQUEST_BYTES, reuse_address=True
        )

    @property
    def open_connections(self) -> int:
        """Connections being served now."""
        return self._open

    async def close(self) -> None:
        """Stop listening and drop the connections being served (found by review: from
        Python 3.12 on, `wait_closed` waits for them, so a silent scraper held a node's stop
        for the request timeout; on 3.11 they were answered after the node stopped)."""
        if self._server is not None:
            self._server.close()
            for writer in list(self._writers):
                writer.transport.abort()
            await self._server.wait_closed()
            self._server = None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self._open >= MAX_CONNECTIONS:
            writer.close()
            return
        self._open += 1
        self._writers.add(writer)
        try:
            status, body, content_type = await self._answer(reader)
            head = (
                f"HTTP/1.1 {status} {_REASONS[status]}\r\n"
                f"Content-Type: {content_type}\r\n"
                f"Content-Length: {len(body)}\r\n"
                "Connection: close\r\n\r\n"
            )
            writer.write(head.encode() + body)
            await asyncio.wait_for(writer.drain(), REQUEST_TIMEOUT_S)
        except (ConnectionError, TimeoutError):
            pass  # the scraper went away or stopped reading: nothing to answer
        except Exception:  # a scrape must never take the node down
            log.exception("metrics scrape failed")
        finally:
            self._open -= 1
            self._writers.discard(writer)
            writer.close()
            with contextlib.suppress(ConnectionError, TimeoutError):
                await asyncio.wait_for(writer.wait_closed(), REQUEST_TIMEOUT_S)

    async def _answer(self, reader: asyncio.StreamReader) -> tuple[int, bytes, str]:
        """(status, body, content type) for the request `reader` brings."""
        plain = "text/plain; charset=utf-8"
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), REQUEST_TIMEOUT_S)
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError):
            return 400, b"expected an HTTP/1.x request of at most 8 KiB\n", plain
        parts = head.split(b"\r\n", 1)[0].split()
        if len(parts) != 3 or not parts[2].startswith(b"HTTP/1."):
            return 400, b"expected an HTTP/1.x request line\n", plain
        method, target = parts[0], parts[1]
        if method != b"GET":
            return 405, b"only GET /metrics is served here\n", plain
        if target.split(b"?", 1)[0] != b"/metrics":
            return 404, b"only /metrics is served here\n", plain
        # The classic text format's type: what every Prometheus version parses (the names
        # here need none of the newer format's quoting).
        return 200, self._render(), CONTENT_TYPE_PLAIN_0_0_4

    def _render(self) -> bytes:
        now = asyncio.get_running_loop().time()
        if self._rendered is None or now - self._rendered[0] >= RENDER_EVERY_S:
            self._rendered = (now, generate_latest(self._registry))
        return self._rendered[1]
