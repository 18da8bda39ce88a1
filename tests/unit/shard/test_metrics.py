"""shard.metrics and shard.metrics_server: what a node counts and shows, and the HTTP
endpoint that serves it, including to clients that send it nonsense."""

from __future__ import annotations

import asyncio
import functools
import socket
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from router import kv_pb2 as kv
from shard import metrics_server
from shard.metrics import NodeMetrics, response_code
from shard.metrics_server import MetricsServer


def _status() -> kv.StatusResponse:
    return kv.StatusResponse(
        cluster_id="c1",
        node_id=2,
        node_name="n2",
        software_version="9.9",
        map_version=4,
        groups=[
            kv.GroupStatus(group_id=0, leader_id=2, chosen_index=7, applied_index=7),
            kv.GroupStatus(group_id=1, leader_id=3, chosen_index=9, applied_index=8),
            kv.GroupStatus(group_id=2, leader_id=0, chosen_index=1, applied_index=1),
        ],
        client_bytes_held=100,
        client_bytes_limit=1000,
        answers_shed=5,
        refused_by=[kv.PeerRefusal(node_id=3, reason="another shard map")],
    )


def _leaderless() -> list[int]:
    """Groups 1 and 2 hear no live leader (1 still names its last one in the status)."""
    return [1, 2]


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of an exposition, by (name, sorted labels)."""
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def _exposition(metrics: NodeMetrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    from prometheus_client import generate_latest

    return _samples(generate_latest(metrics.registry).decode())


def test_the_status_shows_as_gauges_per_group() -> None:
    got = _exposition(NodeMetrics(_status, _leaderless))
    assert (
        got[
            (
                "paxoskv_node_info",
                (("cluster_id", "c1"), ("node", "n2"), ("node_id", "2"), ("version", "9.9")),
            )
        ]
        == 1
    )
    assert got[("paxoskv_shard_map_version", ())] == 4
    leads = {g: got[("paxoskv_group_is_leader", (("group", g),))] for g in "012"}
    assert leads == {"0": 1, "1": 0, "2": 0}
    known = {g: got[("paxoskv_group_has_leader", (("group", g),))] for g in "012"}
    # By the live leader the replica hears, not the one it last named (group 1).
    assert known == {"0": 1, "1": 0, "2": 0}
    assert got[("paxoskv_group_chosen_index", (("group", "1"),))] == 9
    assert got[("paxoskv_group_applied_index", (("group", "1"),))] == 8
    assert got[("paxoskv_client_bytes_held", ())] == 100
    assert got[("paxoskv_client_bytes_limit", ())] == 1000
    assert got[("paxoskv_answers_shed_total", ())] == 5
    assert got[("paxoskv_peers_refusing", ())] == 1
    assert got[("process_open_fds", ())] > 0


def test_requests_are_counted_by_operation_and_code_and_timed() -> None:
    metrics = NodeMetrics(_status, _leaderless)
    ok = kv.Response(put=kv.PutResponse(version=5))
    refused = kv.Response(put=kv.PutResponse(error=kv.Error(code=kv.NOT_LEADER)))
    for response, seconds in ((ok, 0.0009), (ok, 0.003), (refused, 0.0001)):
        metrics.observe_request("put", response, seconds)
    metrics.observe_request("get", kv.Response(error=kv.Error(code=kv.INVALID_ARGUMENT)), 0.0)
    got = _exposition(metrics)
    assert got[("paxoskv_requests_total", (("code", "OK"), ("op", "put")))] == 2
    assert got[("paxoskv_requests_total", (("code", "NOT_LEADER"), ("op", "put")))] == 1
    assert got[("paxoskv_requests_total", (("code", "INVALID_ARGUMENT"), ("op", "get")))] == 1
    assert got[("paxoskv_request_duration_seconds_count", (("op", "put"),))] == 3
    assert got[("paxoskv_request_duration_seconds_bucket", (("le", "0.001"), ("op", "put")))] == 2
    assert got[("paxoskv_request_duration_seconds_sum", (("op", "put"),))] == pytest.approx(0.004)


def test_persists_wakes_and_leader_changes_are_recorded() -> None:
    metrics = NodeMetrics(_status, _leaderless)
    metrics.observe_persist(0.0003)
    metrics.observe_wake(0.002)
    metrics.observe_wake(0.02)
    for group in (1, 1, 3):
        metrics.count_leader_change(group)
    got = _exposition(metrics)
    assert got[("paxoskv_disk_persist_duration_seconds_count", ())] == 1
    assert got[("paxoskv_disk_persist_duration_seconds_bucket", (("le", "0.0005"),))] == 1
    assert got[("paxoskv_loop_busy_duration_seconds_count", ())] == 2
    assert got[("paxoskv_group_leader_changes_seen_total", (("group", "1"),))] == 2
    assert got[("paxoskv_group_leader_changes_seen_total", (("group", "3"),))] == 1


def test_an_answers_code_is_its_bodys_or_its_own() -> None:
    assert response_code(kv.Response(get=kv.GetResponse(found=True))) == "OK"
    assert (
        response_code(kv.Response(scan=kv.ScanResponse(error=kv.Error(code=kv.CONFLICT))))
        == "CONFLICT"
    )
    assert response_code(kv.Response(error=kv.Error(code=kv.WRONG_CLUSTER))) == "WRONG_CLUSTER"
    assert response_code(kv.Response()) == "OK"
    assert response_code(kv.Response(error=kv.Error(code=99))) == "99"  # a newer node's code


def _sync(fn: Callable[..., Coroutine[Any, Any, None]]) -> Callable[..., None]:
    """An async test run to its end in a loop of its own."""

    @functools.wraps(fn)
    def run(*args: Any, **kwargs: Any) -> None:
        asyncio.run(fn(*args, **kwargs))

    return run


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@asynccontextmanager
async def _served(
    status: Callable[[], kv.StatusResponse] = _status,
) -> AsyncIterator[tuple[MetricsServer, int]]:
    server = MetricsServer(NodeMetrics(status, _leaderless).registry)
    port = _free_port()
    await server.start(f"127.0.0.1:{port}")
    try:
        yield server, port
    finally:
        await server.close()


async def _until_serving(server: MetricsServer, connections: int) -> None:
    """Wait (10 s at most) until the server has taken `connections` connections."""
    deadline = asyncio.get_running_loop().time() + 10
    while server.open_connections < connections:
        assert asyncio.get_running_loop().time() < deadline
        await asyncio.sleep(0.001)


async def _exchange(port: int, data: bytes) -> bytes:
    """Send `data` to the endpoint; everything it answers before closing (a connection
    closed unread, so reset, answered nothing)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(data)
        await writer.drain()
        return await asyncio.wait_for(reader.read(), 10)
    except ConnectionResetError:
        return b""
    finally:
        writer.close()


@_sync
async def test_get_metrics_is_answered_with_the_exposition() -> None:
    async with _served() as (_, port):
        answer = await _exchange(port, b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 OK\r\n")
    assert b"Content-Type: text/plain; version=0.0.4" in head
    assert f"Content-Length: {len(body)}".encode() in head
    assert _samples(body.decode())[("paxoskv_shard_map_version", ())] == 4


@pytest.mark.parametrize(
    ("request_", "status"),
    [
        (b"GET / HTTP/1.1\r\n\r\n", b"404"),
        (b"GET /metrics/../data HTTP/1.1\r\n\r\n", b"404"),
        (b"POST /metrics HTTP/1.1\r\nContent-Length: 2\r\n\r\nhi", b"405"),
        (b"GET /metrics\r\n\r\n", b"400"),  # HTTP/0.9
        (b"\x00\xff garbage \r\n\r\n", b"400"),
        (b"GET /metrics HTTP/1.1\r\nX: " + b"a" * 10_000 + b"\r\n\r\n", b"400"),
        (b"GET /metrics HTTP/1.1\r\n", b"400"),  # closed before the headers end
    ],
    ids=["root", "other path", "post", "no version", "garbage", "oversized", "cut short"],
)
@_sync
async def test_anything_else_gets_a_4xx_and_the_endpoint_serves_on(
    request_: bytes, status: bytes
) -> None:
    async with _served() as (_, port):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(request_)
        await writer.drain()
        if request_.endswith(b"HTTP/1.1\r\n"):
            writer.write_eof()
        answer = await asyncio.wait_for(reader.read(), 10)
        writer.close()
        assert answer.split(b" ", 2)[1] == status, answer[:100]
        again = await _exchange(port, b"GET /metrics HTTP/1.1\r\n\r\n")
        assert again.startswith(b"HTTP/1.1 200 OK")


@_sync
async def test_a_silent_client_is_dropped_and_too_many_at_once_are_closed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(metrics_server, "REQUEST_TIMEOUT_S", 0.2)
    monkeypatch.setattr(metrics_server, "MAX_CONNECTIONS", 2)
    async with _served() as (server, port):
        silent = [await asyncio.open_connection("127.0.0.1", port) for _ in range(2)]
        await _until_serving(server, 2)
        # A third while both are held: closed without an answer.
        assert await _exchange(port, b"GET /metrics HTTP/1.1\r\n\r\n") == b""
        for reader, writer in silent:  # each dropped after the request timeout, with a 400
            assert (await asyncio.wait_for(reader.read(), 10)).startswith(b"HTTP/1.1 400")
            writer.close()
        answer = await _exchange(port, b"GET /metrics HTTP/1.1\r\n\r\n")
        assert answer.startswith(b"HTTP/1.1 200 OK")


@_sync
async def test_a_scrape_that_fails_inside_closes_the_connection_and_is_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    def broken() -> kv.StatusResponse:
        raise RuntimeError("status is broken")

    async with _served(broken) as (_, port):
        assert await _exchange(port, b"GET /metrics HTTP/1.1\r\n\r\n") == b""
    assert "metrics scrape failed" in caplog.text


@_sync
async def test_an_address_in_use_is_an_os_error() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(OSError):
            await MetricsServer(NodeMetrics(_status, _leaderless).registry).start(
                f"127.0.0.1:{port}"
            )


@_sync
async def test_scrapes_within_a_second_get_one_rendering() -> None:
    """Found by review: a client scraping in a loop kept the node's loop rendering (0.7 ms
    each), and its puts went seven times slower."""
    calls: list[int] = []

    def counted() -> kv.StatusResponse:
        calls.append(1)
        return _status()

    async with _served(counted) as (_, port):
        for _ in range(20):
            answer = await _exchange(port, b"GET /metrics HTTP/1.1\r\n\r\n")
            assert answer.startswith(b"HTTP/1.1 200 OK")
    assert len(calls) == 1


@_sync
async def test_a_stop_drops_the_connections_it_serves() -> None:
    """Found by review: from Python 3.12 on the server's close waited out a silent scraper
    (5 s of a node's stop), and on 3.11 a scrape was answered after the node stopped."""
    async with _served() as (server, port):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        await _until_serving(server, 1)
        started = asyncio.get_running_loop().time()
        await server.close()
        assert asyncio.get_running_loop().time() - started < 1.0
        try:
            answer = await asyncio.wait_for(reader.read(), 10)
        except ConnectionResetError:
            answer = b""
        assert answer == b""
        writer.close()


def test_a_timed_reply_counts_its_request_once_with_its_code() -> None:
    from shard.runtime import NodeRuntime

    metrics = NodeMetrics(_status, _leaderless)
    replies: list[kv.Response] = []
    request = kv.Request(put=kv.PutRequest(key=b"k", value=b"v"))
    reply = NodeRuntime._timed(request, replies.append, metrics)
    assert (
        _exposition(metrics).get(("paxoskv_requests_total", (("code", "OK"), ("op", "put"))))
        is None
    )
    answer = kv.Response(put=kv.PutResponse(error=kv.Error(code=kv.CONFLICT)))
    reply(answer)
    assert replies == [answer]
    got = _exposition(metrics)
    assert got[("paxoskv_requests_total", (("code", "CONFLICT"), ("op", "put")))] == 1
    assert got[("paxoskv_request_duration_seconds_count", (("op", "put"),))] == 1
    assert ("paxoskv_requests_total", (("code", "OK"), ("op", "put"))) not in got
