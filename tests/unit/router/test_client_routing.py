"""RoutingClient against fake in-process grpc.aio nodes: routing, retries, batching, errors.

The fake nodes share one in-memory store and a `leaders` table; every request goes through
`FakeCluster.handle`, where a test can inject an answer (an error code), a silence (no
answer) or a broken stream for chosen requests. The client under test is the real one.
"""

from __future__ import annotations

import asyncio
import functools
import itertools
import re
import socket
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import grpc
import pytest

import txn
from router import NodeAddress, RangeDescriptor, ShardMap, bootstrap, kv_pb2_grpc
from router import kv_pb2 as kv
from router import router_pb2 as rpb
from router.client import _NOT_LEADER_FREE_HOPS, RoutingClient, _describe_rpc_error
from router.client_errors import (
    OUTCOME_ADVICE,
    DeadlineExceeded,
    InvalidArgument,
    LimitExceeded,
    OutcomeUnknown,
    ServerError,
    Unavailable,
    WrongCluster,
)
from router.codec import encode_shard_map
from shard.transport import GRPC_OPTIONS

CLUSTER = "test"
DROP = "drop"  # swallow the request: no answer
BREAK = "break"  # abort the stream
DRAINED = "drained"  # a stopping node: answer nothing more, say `drained`, keep the stream
HELD = "held"  # a wait for a change (node rule 16): answered by the stream once it changed
#: How often a stream looks again at the waits it holds.
HELD_CHECK_S = 0.005

Hook = Callable[["FakeNode", kv.Request], Any]


@dataclass
class Later:
    """An answer the stream sends `after_s` from now (a request parked at the node), as a
    hook's outcome or in the list of answers it returns."""

    response: kv.Response
    after_s: float


def run(fn: Callable[..., Awaitable[None]]) -> Callable[..., None]:
    """Run an async test in a fresh event loop (no pytest-asyncio here)."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> None:
        asyncio.run(asyncio.wait_for(fn(*args, **kwargs), 30))

    return wrapper


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def error_response(request: kv.Request, code: int, **fields: Any) -> kv.Response:
    response = kv.Response(id=request.id)
    kind = request.WhichOneof("op")
    getattr(response, kind).error.CopyFrom(kv.Error(code=code, message="injected", **fields))
    return response


class FakeNode(kv_pb2_grpc.KVServicer):
    def __init__(self, cluster: FakeCluster, node_id: int) -> None:
        self.cluster = cluster
        self.node_id = node_id
        self.server: grpc.aio.Server | None = None
        self.port = 0
        self.batches_received = 0

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    async def start(self) -> None:
        self.server = grpc.aio.server(options=GRPC_OPTIONS)  # a node's message limits
        kv_pb2_grpc.add_KVServicer_to_server(self, self.server)
        self.port = self.server.add_insecure_port(f"127.0.0.1:{self.port}")
        await self.server.start()

    async def stop(self) -> None:
        if self.server is not None:
            await self.server.stop(0)
            self.server = None

    async def Status(self, request: kv.StatusRequest, context: Any) -> kv.StatusResponse:
        return kv.StatusResponse(
            cluster_id=self.cluster.cluster_id, node_id=self.node_id, node_name="fake"
        )

    async def GetShardMap(self, request: kv.ShardMapRequest, context: Any) -> kv.ShardMapResponse:
        if self.node_id in self.cluster.silent:
            await asyncio.Event().wait()  # answers nothing (the client's liveness probe)
        self.cluster.map_asked.append(self.node_id)
        if self.node_id in self.cluster.foreign:  # a node of another cluster on its port
            return kv.ShardMapResponse(error=kv.Error(code=kv.WRONG_CLUSTER, message="other"))
        if request.cluster_id:  # a map fetch; the client's liveness probe names no cluster
            self.cluster.map_fetches += 1
        if request.cluster_id and request.cluster_id != self.cluster.cluster_id:
            return kv.ShardMapResponse(
                error=kv.Error(
                    code=kv.WRONG_CLUSTER, message=f"this is cluster {self.cluster.cluster_id!r}"
                )
            )
        shard_map = rpb.ShardMap()
        shard_map.ParseFromString(encode_shard_map(self.cluster.map))
        return kv.ShardMapResponse(shard_map=shard_map)

    async def Batch(self, request_iterator: Any, context: grpc.aio.ServicerContext) -> Any:
        held: list[kv.Request] = []  # waits for a change, answered once their range changed
        later: list[tuple[float, kv.Response]] = []  # (when, answer): parked requests
        loop = asyncio.get_running_loop()
        incoming = aiter(request_iterator)
        reading = asyncio.ensure_future(anext(incoming, None))
        try:
            while True:
                await asyncio.wait({reading}, timeout=HELD_CHECK_S if held or later else None)
                responses = [
                    self.cluster.wait_answer(r.id) for r in held if self.cluster.changed(r.scan)
                ]
                held = [r for r in held if not self.cluster.changed(r.scan)]
                responses += [answer for when, answer in later if when <= loop.time()]
                later = [(when, answer) for when, answer in later if when > loop.time()]
                if reading.done():
                    batch = reading.result()
                    if batch is None:
                        return
                    reading = asyncio.ensure_future(anext(incoming, None))
                    self.batches_received += 1
                    for request in batch.requests:
                        outcome = self.cluster.handle(self, request)
                        if outcome == BREAK:
                            await context.abort(grpc.StatusCode.UNAVAILABLE, "injected break")
                        if outcome == DRAINED:
                            yield kv.ResponseBatch(responses=responses, drained=True)
                            await asyncio.Future()  # as shard.server: open until the end
                        if outcome == HELD:
                            held.append(request)
                            continue
                        # A list: answers to this request and earlier ones (BREAK in it:
                        # those before it are sent, then the stream is aborted).
                        for answer in outcome if isinstance(outcome, list) else [outcome]:
                            if answer == BREAK:
                                yield kv.ResponseBatch(responses=responses)
                                await context.abort(grpc.StatusCode.UNAVAILABLE, "injected break")
                            if isinstance(answer, kv.Response):
                                responses.append(answer)
                            elif isinstance(answer, Later):
                                later.append((loop.time() + answer.after_s, answer.response))
                if responses:
                    yield kv.ResponseBatch(responses=responses)
        finally:
            reading.cancel()


class FakeCluster:
    """Three fake nodes replicating every group of a [g, p) split map; one shared store."""

    def __init__(
        self, count: int = 3, splits: tuple[bytes, ...] = (b"g", b"p"), cluster_id: str = CLUSTER
    ) -> None:
        self.cluster_id = cluster_id
        self.nodes = {i: FakeNode(self, i) for i in range(1, count + 1)}
        self.splits = splits
        self.store: dict[bytes, tuple[bytes, int]] = {}
        self.clock = 0
        self.map: ShardMap
        self.leaders: dict[int, int] = {}
        self.hook: Hook | None = None
        self.seen: list[tuple[int, str, bytes]] = []  # (node, op kind, key) of every request
        self.map_fetches = 0
        self.silent: set[int] = set()  # nodes that answer nothing (see silence_the_leader)
        self.foreign: set[int] = set()  # nodes whose GetShardMap answers as another cluster
        self.map_asked: list[int] = []  # the node of every GetShardMap
        # As a node's MAX_SCAN_RESPONSE_BYTES: a scan answer stops at this many bytes.
        self.scan_budget: int | None = None
        # As a node of a version before reverse scans: ScanRequest.reverse is unknown to it.
        self.predates_reverse_scans = False
        # Every write, (version, key, value or None for a deletion), for reads of changes.
        self.history: list[tuple[int, bytes, bytes | None]] = []
        # As a node of a version before watches: ScanRequest.changes_after is unknown to it.
        self.predates_watches = False
        # A read of changes covers at most this many keys (its page ends at the next one).
        self.changes_keys_per_page = 1000
        # As a node of a version before previous values: ScanRequest.prev_values is unknown.
        self.predates_prev_values = False

    async def start(self) -> None:
        for node in self.nodes.values():
            await node.start()
        self.map = bootstrap(
            [
                NodeAddress(node_id=i, name=f"n{i}", client_addr=n.address, peer_addr=n.address)
                for i, n in self.nodes.items()
            ],
            list(self.splits),
            3,
        )
        self.leaders = {g: self.map.preferred_leader(g) for g in self.map.group_ids()}

    async def stop(self) -> None:
        for node in self.nodes.values():
            await node.stop()

    def seeds(self) -> list[str]:
        return [self.nodes[1].address]

    def count(self, kind: str, key: bytes | None = None) -> int:
        return sum(1 for _, k, key_ in self.seen if k == kind and (key is None or key_ == key))

    def handle(self, node: FakeNode, request: kv.Request) -> Any:
        kind = request.WhichOneof("op")
        op = getattr(request, kind)
        if kind == "timestamp":
            self.clock += 1
            return kv.Response(id=request.id, timestamp=kv.TimestampResponse(ts=self.clock))
        key = op.start if kind == "scan" else op.key
        self.seen.append((node.node_id, kind, key))
        if self.hook is not None:
            outcome = self.hook(node, request)
            if outcome is not None:
                return outcome
        header = op.header
        if header.cluster_id != self.cluster_id:
            return error_response(request, kv.WRONG_CLUSTER)
        if not self.map.has_group(header.group_id) or header.group_id == 0:
            return error_response(request, kv.UNKNOWN_GROUP, map_version=self.map.version)
        leader = self.leaders[header.group_id]
        if leader != node.node_id:
            return error_response(
                request,
                kv.NOT_LEADER,
                leader_id=leader,
                leader_addr=self.nodes[leader].address,
            )
        desc = self.map.group(header.group_id)
        if kind == "scan":
            end = op.end if op.HasField("end") else None
            inside = op.start >= desc.start and (
                desc.end is None or (end is not None and end <= desc.end)
            )
        else:
            inside = desc.contains(op.key)
        if not inside:
            return error_response(request, kv.WRONG_SHARD, map_version=self.map.version)
        if kind == "scan" and op.await_change and not self.predates_watches:
            return self.wait_answer(request.id) if self.changed(op) else HELD
        return self.apply(kind, op, request.id)

    def apply(self, kind: str, op: Any, request_id: int) -> kv.Response:
        self.clock += 1
        response = kv.Response(id=request_id)
        before = dict(self.store)
        if kind == "put":
            self.store[op.key] = (op.value, self.clock)
            response.put.version = self.clock
        elif kind == "get":
            found = self.store.get(op.key)
            if found is not None:
                response.get.found = True
                response.get.value, response.get.version = found
            else:
                response.get.SetInParent()
        elif kind == "delete":
            response.delete.version = self.clock if self.store.pop(op.key, None) else 0
        elif kind == "cas":
            current = self.store.get(op.key)
            expect = op.WhichOneof("expect")
            ok = (
                (expect == "expect_absent" and current is None)
                or (expect == "expected_value" and current and current[0] == op.expected_value)
                or (expect == "expected_version" and current and current[1] == op.expected_version)
            )
            response.cas.succeeded = bool(ok)
            if ok:
                if op.WhichOneof("action") == "delete":
                    del self.store[op.key]
                else:
                    self.store[op.key] = (op.new_value, self.clock)
                response.cas.version = self.clock
            elif current is not None:
                response.cas.found = True
                response.cas.current_value, response.cas.current_version = current
        elif op.HasField("changes_after") and not self.predates_watches:
            self._changes(op, response.scan)
        else:  # scan
            end = op.end if op.HasField("end") else None
            keys = sorted(k for k in self.store if k >= op.start and (end is None or k < end))
            if op.reverse and not self.predates_reverse_scans:
                keys.reverse()
                response.scan.reverse = True
            items = [
                kv.KeyValue(key=k, value=self.store[k][0], version=self.store[k][1])
                for k in keys[: op.limit or 1000]
            ]
            if self.scan_budget is not None:
                size = 0
                for n, item in enumerate(items):
                    size += len(item.key) + len(item.value)
                    if size >= self.scan_budget and n + 1 < len(items):
                        items = items[: n + 1]
                        response.scan.more = True
                        break
            response.scan.items.extend(items)
        for key in before.keys() | self.store.keys():
            if before.get(key) != self.store.get(key):
                now = self.store.get(key)
                self.history.append((self.clock, key, None if now is None else now[0]))
        return response

    def changed(self, op: kv.ScanRequest) -> bool:
        """Whether the range of a wait for a change holds a version above its after."""
        end = op.end if op.HasField("end") else None
        return any(
            version > op.changes_after and key >= op.start and (end is None or key < end)
            for version, key, _ in self.history
        )

    @staticmethod
    def wait_answer(request_id: int) -> kv.Response:
        """A wait's answer: changed (a held one is answered only once it is)."""
        return kv.Response(id=request_id, scan=kv.ScanResponse(changed=True, waited=True))

    def _changes(self, op: kv.ScanRequest, answer: kv.ScanResponse) -> None:
        """As `ShardStateMachine.changes`, cutting only at keys (`changes_keys_per_page`)."""
        end = op.end if op.HasField("end") else None
        window = [
            (version, key, value)
            for version, key, value in self.history
            if op.changes_after < version <= op.at_version
            and key >= op.start
            and (end is None or key < end)
        ]
        keys = sorted({key for _, key, _ in window})
        if len(keys) > self.changes_keys_per_page:
            answer.covered_end = keys[self.changes_keys_per_page]
            window = [c for c in window if c[1] < answer.covered_end]
        previous = op.prev_values and not self.predates_prev_values
        for version, key, value in sorted(window):
            item = answer.items.add(
                key=key, value=value or b"", version=version, deleted=value is None
            )
            before = [(v, x) for v, k, x in self.history if k == key and v < version]
            if previous and before and before[-1][1] is not None:
                item.prev_version, item.prev_value = before[-1]
        answer.prev_values = previous
        answer.changes = True
        answer.through = op.at_version


def with_cluster(fn: Callable[..., Awaitable[None]] | None = None, *, count: int = 3) -> Any:
    """Start a FakeCluster of `count` nodes, pass it to the test, always stop it.

    Use as `@with_cluster`, or `@with_cluster(count=4)` for another node count."""

    def decorate(test: Callable[..., Awaitable[None]]) -> Callable[[], None]:
        @run
        async def wrapper() -> None:
            cluster = FakeCluster(count=count)
            await cluster.start()
            try:
                await test(cluster)
            finally:
                await cluster.stop()

        wrapper.__name__ = test.__name__
        return wrapper

    return decorate if fn is None else decorate(fn)


def client_for(cluster: FakeCluster, **kwargs: Any) -> RoutingClient:
    kwargs.setdefault("timeout_s", 3.0)
    return RoutingClient(cluster.seeds(), **kwargs)


# ---------------------------------------------------------------------------- connect


def test_a_seed_that_answers_as_an_http1_server_is_named_not_a_node() -> None:
    """Found by an operator trial: a node's metrics port given as the cluster address got
    gRPC's HTTP/2 parse error, cut off mid-sentence, and advice about TLS."""
    from prometheus_client import CollectorRegistry

    from shard.metrics_server import MetricsServer

    async def scenario() -> None:
        server = MetricsServer(CollectorRegistry())
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        await server.start(f"127.0.0.1:{port}")
        try:
            with pytest.raises(Unavailable) as info:  # entering connects
                async with RoutingClient([f"127.0.0.1:{port}"], timeout_s=5.0) as client:
                    await client.get(b"a")
        finally:
            await server.close()
        assert str(info.value) == (
            f"no paxoskv node at 127.0.0.1:{port}: not a gRPC server (it answered as an "
            "HTTP/1 one, such as a node's metrics port): give the nodes' client addresses "
            "(`paxoskv cluster start` and `paxoskv cluster status` print them)"
        )

    asyncio.run(scenario())


@with_cluster
async def test_a_first_call_waits_within_its_deadline_for_seeds_that_refused(
    cluster: FakeCluster,
) -> None:
    """Found by review: with every seed refusing connections (nodes restarting), the first
    call of a new client failed at once with Unavailable, most of its deadline left."""
    for node in cluster.nodes.values():
        await node.stop()
    client = client_for(cluster, timeout_s=5.0)

    async def restart_later() -> None:
        await asyncio.sleep(0.3)
        for node in cluster.nodes.values():
            await node.start()

    restart = asyncio.create_task(restart_later())
    try:
        assert await client.put(b"a", b"1") > 0
        assert cluster.store[b"a"][0] == b"1"
    finally:
        await restart
        await client.close()
    # Out of time, it says so, naming what the seeds answered: DeadlineExceeded, which
    # txn's run does not retry (an Unavailable began a second attempt of a whole deadline).
    for node in cluster.nodes.values():
        await node.stop()
    quick = client_for(cluster, timeout_s=0.3)
    try:
        with pytest.raises(DeadlineExceeded, match="no node answered"):
            await quick.put(b"b", b"2")
    finally:
        await quick.close()
        for node in cluster.nodes.values():
            await node.start()


@with_cluster
async def test_connect_learns_cluster_id_and_map(cluster: FakeCluster) -> None:
    async with client_for(cluster) as client:
        assert client.cluster_id == CLUSTER
        assert client.shard_map == cluster.map


@with_cluster
async def test_connect_refuses_another_cluster(cluster: FakeCluster) -> None:
    client = client_for(cluster, cluster_id="prod")
    with pytest.raises(WrongCluster, match="this is cluster 'test'") as info:
        await client.connect()
    await client.close()
    # Each seed's address once (found by a client-API review: it stood twice per seed).
    for seed in cluster.seeds():
        assert str(info.value).count(seed) == 1, str(info.value)


@run
async def test_connect_refuses_seeds_of_two_clusters_when_it_learns_the_id() -> None:
    """Found by review: a node of another cluster on a seed's port (taken over after ours
    stopped) answered first; the client learned that cluster's id and wrote to it."""
    ours, theirs = FakeCluster(), FakeCluster(cluster_id="other")
    await ours.start()
    await theirs.start()
    try:
        seeds = [theirs.nodes[1].address, ours.nodes[2].address]
        client = RoutingClient(seeds, timeout_s=5)
        with pytest.raises(WrongCluster, match="the seeds belong to two clusters"):
            await client.connect()
        # Nothing was kept (found by review: the next call went on with the first cluster).
        assert client.cluster_id is None and client.shard_map is None
        with pytest.raises(WrongCluster, match="the seeds belong to two clusters"):
            await client.put(b"a", b"1")
        await client.close()
        assert b"a" not in theirs.store
        # Given the id, the client passes over the other cluster's seed; one seed alone is
        # taken as it is, and so is a second seed that does not answer.
        async with RoutingClient(seeds, cluster_id=CLUSTER, timeout_s=5) as given:
            assert given.shard_map == ours.map
        async with RoutingClient(seeds[1:], timeout_s=5) as alone:
            assert alone.cluster_id == CLUSTER
        down = f"127.0.0.1:{free_port()}"
        async with RoutingClient([seeds[1], down], timeout_s=5) as second_down:
            assert second_down.cluster_id == CLUSTER
        # A second seed that hangs costs no short timeout its map (found by review: the
        # check ran before the map's fetch and took the whole budget).
        servers, hung = await _slow_seeds()
        try:
            async with RoutingClient([seeds[1], hung[0]], timeout_s=0.3) as short:
                assert short.shard_map == ours.map
        finally:
            for server in servers:
                await server.stop(0)
    finally:
        await ours.stop()
        await theirs.stop()


@run
async def test_connect_unreachable_seed_fails_fast_naming_it() -> None:
    address = f"127.0.0.1:{free_port()}"
    client = RoutingClient([address], timeout_s=5)
    t0 = time.monotonic()
    with pytest.raises(Unavailable, match=address) as info:
        await client.connect()
    assert time.monotonic() - t0 < 4
    assert info.value.retryable and not info.value.maybe_committed
    await client.close()


@run
async def test_connect_names_each_reason_once_with_the_seeds_that_gave_it() -> None:
    """Found by a new user's review: a client without the CA of a cluster with TLS printed
    gRPC's "failed to connect to all addresses; last error: UNAVAILABLE: ipv4:ADDR: Socket
    closed" once per address, about 700 characters for three nodes."""
    seeds = [f"127.0.0.1:{port}" for port in (7001, 7002, 7003)]
    client = RoutingClient(seeds, timeout_s=5)

    async def closed_socket(address: str, timeout_s: float, *_check: Any) -> None:
        details = f"failed to connect to all addresses; last error: UNAVAILABLE: ipv4:{address}"
        raise grpc.aio.AioRpcError(
            grpc.StatusCode.UNAVAILABLE,
            grpc.aio.Metadata(),
            grpc.aio.Metadata(),
            details=f"{details}: Socket closed",
        )

    client._fetch_map = closed_socket  # type: ignore[method-assign]
    with pytest.raises(Unavailable) as info:
        await client.connect()
    message = str(info.value)
    assert message.startswith(
        f"no node answered at {', '.join(seeds)}: UNAVAILABLE: failed to connect to all "
        "addresses; last error: UNAVAILABLE: Socket closed (check the cluster addresses"
    ), message
    await client.close()


class _SlowStatus(kv_pb2_grpc.KVServicer):
    """A seed that is up but does not answer Status (an overloaded node)."""

    async def Status(self, request: kv.StatusRequest, context: Any) -> kv.StatusResponse:
        await asyncio.sleep(60)
        return kv.StatusResponse()


async def _slow_seeds() -> tuple[list[grpc.aio.Server], list[str]]:
    """Three seeds that are up but never answer Status; their servers and addresses."""
    servers, seeds = [], []
    for _ in range(3):
        server = grpc.aio.server()
        kv_pb2_grpc.add_KVServicer_to_server(_SlowStatus(), server)
        seeds.append(f"127.0.0.1:{server.add_insecure_port('127.0.0.1:0')}")
        await server.start()
        servers.append(server)
    return servers, seeds


@run
async def test_the_first_connect_is_bounded_by_the_operations_own_deadline() -> None:
    """A put asked to finish in 0.5 s on a fresh client gives up in about that, not after
    the client's 10 s connect budget; a second caller still shares the same connect."""
    servers, seeds = await _slow_seeds()
    client = RoutingClient(seeds, timeout_s=10.0)
    txn_client = txn.AsyncClient(seeds, timeout_s=10.0)
    try:
        for op, error in (
            (client.put(b"k", b"v", timeout_s=0.5), DeadlineExceeded),
            (client.get(b"k", timeout_s=0.3), DeadlineExceeded),
            (txn_client.put(b"k", b"v", timeout_s=0.5), txn.DeadlineExceeded),
        ):
            t0 = time.monotonic()
            with pytest.raises(error):
                await op
            assert time.monotonic() - t0 < 1.5
    finally:
        await client.close()
        await txn_client.close()
        for server in servers:
            await server.stop(0)


async def _commit_one_write(client: txn.AsyncClient) -> None:
    tx = client.transaction()
    tx.put(b"k", b"v")
    await tx.commit()


async def _snapshot_read(client: txn.AsyncClient) -> None:
    async with client.snapshot() as snap:
        await snap.get(b"k")


async def _read_for_update(client: txn.AsyncClient) -> None:
    async with client.transaction() as tx:
        await tx.get(b"k", for_update=True)


@run
async def test_transaction_paths_count_the_first_connect_against_their_deadline() -> None:
    """Commit, snapshot timestamp, read for update and txn_status by key on a fresh client
    whose seeds never answer Status: each gives up in about the client's 0.5 s deadline."""
    servers, seeds = await _slow_seeds()
    try:
        for name, op in (
            ("commit", _commit_one_write),
            ("snapshot", _snapshot_read),
            ("read for update", _read_for_update),
            ("txn_status by key", lambda c: c.txn_status(b"t" * 16, key=b"k", timeout_s=0.5)),
        ):
            client = txn.AsyncClient(seeds, timeout_s=0.5)
            t0 = time.monotonic()
            with pytest.raises(txn.DeadlineExceeded):
                await op(client)
            assert time.monotonic() - t0 < 1.5, name
            await client.close()
    finally:
        for server in servers:
            await server.stop(0)


@with_cluster
async def test_connect_tries_the_next_seed(cluster: FakeCluster) -> None:
    dead = f"127.0.0.1:{free_port()}"
    async with RoutingClient([dead, cluster.nodes[2].address], timeout_s=5) as client:
        assert client.shard_map == cluster.map


class _SlowSeed(FakeNode):
    """A seed that answers Status in 0.9 s, and GetShardMap in no useful time."""

    async def Status(self, request: kv.StatusRequest, context: Any) -> kv.StatusResponse:
        await asyncio.sleep(0.9)
        return await super().Status(request, context)

    async def GetShardMap(self, request: kv.ShardMapRequest, context: Any) -> kv.ShardMapResponse:
        await asyncio.sleep(60)
        return await super().GetShardMap(request, context)


@run
async def test_connect_ends_by_the_clients_timeout_across_a_seeds_two_calls() -> None:
    """Found by review: connect() gave a seed's Status and GetShardMap each the whole
    timeout, so one slow seed held it for up to twice the client's timeout_s."""
    cluster = FakeCluster()
    cluster.nodes[1] = _SlowSeed(cluster, 1)
    await cluster.start()
    client = RoutingClient(cluster.seeds(), timeout_s=1.0)
    try:
        loop = asyncio.get_running_loop()
        started = loop.time()
        with pytest.raises(Unavailable, match="no answer before the deadline"):
            await client.connect()
        assert loop.time() - started < 1.4  # 1.9 s before the fix
    finally:
        await client.close()
        await cluster.stop()


# ---------------------------------------------------------------------------- operations


@with_cluster
async def test_operations_route_to_each_shards_leader(cluster: FakeCluster) -> None:
    async with client_for(cluster) as client:
        keys = [b"a", b"h", b"q", b"zz"]  # groups 1, 2, 3, 3
        versions = [await client.put(k, b"v-" + k) for k in keys]
        assert versions == sorted(versions)
        assert await client.get(b"h") == (b"v-h", versions[1])
        assert await client.get(b"missing") is None
        # Each request went straight to the group's leader: no redirect needed.
        for node_id, kind, key in cluster.seen:
            if kind == "put":
                assert node_id == cluster.leaders[cluster.map.locate(key).group_id]
        assert await client.delete(b"a") > 0
        assert await client.delete(b"a") == 0
        won = await client.cas(b"q", expected_value=b"v-q", new_value=b"new")
        assert won.succeeded and won.version > 0
        lost = await client.cas(b"q", expected_value=b"v-q", delete=True)
        assert not lost.succeeded
        assert (lost.current_value, lost.current_version) == (b"new", won.version)
        absent = await client.cas(b"nope", expected_version=5, new_value=b"x")
        assert absent == absent.__class__(False, 0, None, 0)


@with_cluster
async def test_concurrent_large_writes_go_in_writes_under_the_message_limit(
    cluster: FakeCluster,
) -> None:
    """80 puts of 1 MiB at once: drained into one stream write they made an 80 MiB message,
    over gRPC's limit, and every one of them failed."""
    async with client_for(cluster, timeout_s=20.0) as client:
        keys = [b"k%02d" % i for i in range(80)]
        await asyncio.gather(*(client.put(k, b"v" * (1 << 20)) for k in keys))
        assert sorted(cluster.store) == keys
        assert client.stats()["messages_out"] >= 10


@with_cluster
async def test_scan_pages_through_answers_cut_at_the_nodes_byte_budget(
    cluster: FakeCluster,
) -> None:
    """A node cuts a scan answer at its byte budget and says `more`: both clients ask again
    from after the last key instead of taking the short page for the end of the shard."""
    keys = [bytes([c]) for c in b"abcdefhijk"]  # all in the first shard [, g) and [g, p)
    async with client_for(cluster) as client:
        for k in keys:
            await client.put(k, k * 100)
        cluster.scan_budget = 250  # two or three items per answer
        assert [k for k, _, _ in await client.scan()] == keys
        assert [k for k, _, _ in await client.scan(limit=5)] == keys[:5]
    async with txn.AsyncClient(cluster.seeds(), timeout_s=5) as tclient:
        assert [k for k, _ in await tclient.scan(b"a")] == keys
        assert [k for k, _ in await tclient.scan(b"a", b"k", limit=4)] == keys[:4]


@with_cluster
async def test_a_scan_page_saying_more_with_no_items_is_a_server_error(
    cluster: FakeCluster,
) -> None:
    """Found by review: the client continued from the page's last key, and a node that
    said `more` with no items (a bug) made it raise IndexError."""
    cluster.hook = lambda node, request: (
        kv.Response(id=request.id, scan=kv.ScanResponse(more=True))
        if request.WhichOneof("op") == "scan"
        else None
    )
    async with client_for(cluster) as client:
        with pytest.raises(ServerError, match="no items that says there are more"):
            await client.scan()


@with_cluster
async def test_scan_spans_shards_in_key_order_with_limit(cluster: FakeCluster) -> None:
    import router.client as client_module

    keys = [b"a", b"b", b"f", b"g", b"h", b"o", b"p", b"q", b"z"]
    async with client_for(cluster) as client:
        for k in keys:
            await client.put(k, k.upper())
        everything = await client.scan()
        assert [k for k, _, _ in everything] == keys
        assert all(v == k.upper() for k, v, _ in everything)
        assert [k for k, _, _ in await client.scan(b"c", b"q")] == [b"f", b"g", b"h", b"o", b"p"]
        assert [k for k, _, _ in await client.scan(limit=4)] == keys[:4]
        assert await client.scan(b"x", b"c") == []
        old_page = client_module.SCAN_PAGE
        client_module.SCAN_PAGE = 2  # force paging inside one shard
        try:
            assert [k for k, _, _ in await client.scan(b"a", None, limit=7)] == keys[:7]
        finally:
            client_module.SCAN_PAGE = old_page


@with_cluster
async def test_a_reverse_scan_reads_the_shards_from_the_last_down(cluster: FakeCluster) -> None:
    import router.client as client_module

    keys = [b"a", b"b", b"f", b"g", b"h", b"o", b"p", b"q", b"z"]
    async with client_for(cluster) as client:
        for k in keys:
            await client.put(k, k.upper())
        assert [k for k, _, _ in await client.scan(reverse=True)] == keys[::-1]
        assert [k for k, _, _ in await client.scan(b"c", b"q", reverse=True)] == [
            b"p",
            b"o",
            b"h",
            b"g",
            b"f",
        ]
        assert [k for k, _, _ in await client.scan(limit=1, reverse=True)] == [b"z"]
        assert await client.scan(b"x", b"c", reverse=True) == []
        old_page = client_module.SCAN_PAGE
        client_module.SCAN_PAGE = 2  # force paging inside one shard
        cluster.scan_budget = 1  # and answers cut by the node's byte budget
        try:
            for limit in range(1, len(keys) + 2):
                got = await client.scan(b"", None, limit=limit, reverse=True)
                assert [k for k, _, _ in got] == keys[::-1][:limit], limit
        finally:
            client_module.SCAN_PAGE = old_page


@with_cluster
async def test_a_reverse_scan_replans_after_splits_mid_scan(cluster: FakeCluster) -> None:
    """Groups split under a reverse scan (review): the pages after the split meet
    WrongShard or an unknown group, the client re-plans from where it stopped, and the
    result is whole and in order."""
    import router.client as client_module

    keys = [b"a", b"b", b"f", b"g", b"h", b"o", b"p", b"q", b"r", b"s", b"t", b"z"]
    async with client_for(cluster) as client:
        for k in keys:
            await client.put(k, k)
        scans = 0

        def split_after_the_first_page(node: int, request: kv.Request) -> None:
            nonlocal scans
            if request.WhichOneof("op") == "scan":
                scans += 1
                if scans == 2:
                    cluster.map = cluster.map.split(3, b"r", 4, (1, 2, 3), preferred_leader=2)
                    cluster.leaders[4] = 2
                    cluster.map = cluster.map.split(1, b"c", 5, (1, 2, 3), preferred_leader=3)
                    cluster.leaders[5] = 3

        old_page = client_module.SCAN_PAGE
        client_module.SCAN_PAGE = 2
        cluster.hook = split_after_the_first_page
        try:
            got = await client.scan(b"", None, limit=100, reverse=True)
            assert [k for k, _, _ in got] == keys[::-1]
            got = await client.scan(b"b", b"s", limit=5, reverse=True)
            assert [k for k, _, _ in got] == [b"r", b"q", b"p", b"o", b"h"]
        finally:
            client_module.SCAN_PAGE = old_page


@with_cluster
async def test_a_reverse_scan_answered_in_key_order_by_an_old_node_is_refused(
    cluster: FakeCluster,
) -> None:
    """A node older than reverse scans ignores the request's field and answers the range's
    first keys in key order; taken for a reverse page, `limit=1` would give the first key
    as the last (found by review). The answer does not echo `reverse`: refused."""
    async with client_for(cluster) as client:
        for k in (b"a", b"b"):
            await client.put(k, k)
        cluster.predates_reverse_scans = True
        with pytest.raises(ServerError, match="predates reverse scans; upgrade the nodes"):
            await client.scan(limit=1, reverse=True)
        assert [k for k, _, _ in await client.scan()] == [b"a", b"b"]
    # Found by a user trial: the transaction client let the routing error through, not a
    # PaxosKVError, so `except txn.PaxosKVError` missed it.
    async with txn.AsyncClient(cluster.seeds(), timeout_s=5) as tclient:
        with pytest.raises(txn.ServerError, match="predates reverse scans"):
            await tclient.scan(b"a", limit=1, reverse=True)


@with_cluster
async def test_a_scan_of_an_empty_range_is_empty_without_asking_the_cluster(
    cluster: FakeCluster,
) -> None:
    """scan(k, k) (and an end before the start), like limit=0, is answered at once: nothing
    to read, so no connect and no request (mutation audit: an empty [k, k) connecting first
    went unnoticed)."""
    client = client_for(cluster)
    try:
        assert await client.scan(b"k", b"k") == []
        assert await client.scan(b"k", b"j") == []
        assert client.shard_map is None and cluster.map_asked == [] and cluster.seen == []
    finally:
        await client.close()


@with_cluster
async def test_a_scan_asks_each_shard_for_no_more_keys_than_it_still_needs(
    cluster: FakeCluster,
) -> None:
    """scan(limit=3) asks each part for what is still missing of the 3, not for a whole page
    the node would read and send for nothing (mutation audit: asking full pages went
    unnoticed, the answer being cut to the limit afterwards)."""
    asked: list[int] = []

    def record(node: FakeNode, request: kv.Request) -> None:
        if request.WhichOneof("op") == "scan":
            asked.append(request.scan.limit)

    async with client_for(cluster) as client:
        for key in (b"a", b"h", b"i", b"j", b"q"):
            await client.put(key, key)
        cluster.hook = record
        assert [k for k, _, _ in await client.scan(limit=3)] == [b"a", b"h", b"i"]
    assert asked == [3, 2]


@with_cluster
async def test_a_scan_returns_at_most_its_limit_even_from_a_node_that_sends_more(
    cluster: FakeCluster,
) -> None:
    """`limit` bounds what scan returns, whatever a node answers: one that sends more keys
    than it was asked for (a node bug) does not make the caller's list longer (mutation
    audit: the final cut to the limit went unnoticed)."""

    def too_many(node: FakeNode, request: kv.Request) -> Any:
        if request.WhichOneof("op") != "scan":
            return None
        items = [kv.KeyValue(key=b"a%d" % i, value=b"v", version=1) for i in range(3)]
        return kv.Response(id=request.id, scan=kv.ScanResponse(items=items))

    async with client_for(cluster) as client:
        cluster.hook = too_many
        assert [k for k, _, _ in await client.scan(end=b"g", limit=2)] == [b"a0", b"a1"]


@with_cluster
async def test_cas_arguments_are_checked_locally(cluster: FakeCluster) -> None:
    async with client_for(cluster) as client:
        before = len(cluster.seen)
        with pytest.raises(InvalidArgument, match="exactly one condition"):
            await client.cas(b"k", new_value=b"v")
        with pytest.raises(InvalidArgument, match="exactly one condition"):
            await client.cas(b"k", expect_absent=True, expected_version=3, new_value=b"v")
        with pytest.raises(InvalidArgument, match="exactly one action"):
            await client.cas(b"k", expect_absent=True)
        with pytest.raises(InvalidArgument, match="exactly one action"):
            await client.cas(b"k", expect_absent=True, new_value=b"v", delete=True)
        assert len(cluster.seen) == before


# ---------------------------------------------------------------------------- redirects


@with_cluster
async def test_not_leader_hint_is_followed_and_remembered(cluster: FakeCluster) -> None:
    cluster.leaders[1] = 3  # group 1's preferred leader is node 2
    async with client_for(cluster) as client:
        await client.put(b"a", b"1")
        assert [(n, k) for n, k, _ in cluster.seen] == [(2, "put"), (3, "put")]
        await client.put(b"b", b"2")
        assert cluster.seen[-1][0] == 3
        assert cluster.count("put") == 3


@pytest.mark.parametrize("redirects", [3, 6])
def test_not_leader_redirects_back_off_only_past_the_free_hops(redirects: int) -> None:
    """A leader change sends a request through a few NOT_LEADER hints at once (each names
    where to go next); a longer chain (leaders moving, hints going round) backs off at each
    hop past _NOT_LEADER_FREE_HOPS instead of spinning between nodes."""

    @with_cluster
    async def scenario(cluster: FakeCluster) -> None:
        left = redirects

        def hook(node: FakeNode, request: kv.Request) -> Any:
            nonlocal left
            if left == 0:
                return None
            left -= 1
            hint = node.node_id % 3 + 1
            return error_response(
                request, kv.NOT_LEADER, leader_id=hint, leader_addr=cluster.nodes[hint].address
            )

        async with client_for(cluster) as client:
            await client.connect()
            cluster.hook = hook
            sleeps: list[int] = []
            backoff = client._sleep

            async def counted(attempt: int, deadline: float) -> None:
                sleeps.append(attempt)
                await backoff(attempt, deadline)

            client._sleep = counted  # type: ignore[method-assign]
            await client.put(b"a", b"1")
        hops = cluster.count("put") - 1  # every answer but the last was a NOT_LEADER
        assert hops >= redirects
        assert sleeps == list(range(max(0, hops - _NOT_LEADER_FREE_HOPS)))

    scenario()


@with_cluster
async def test_unavailable_is_retried_with_backoff_on_other_replicas(
    cluster: FakeCluster,
) -> None:
    refusals = 3

    def hook(node: FakeNode, request: kv.Request) -> Any:
        nonlocal refusals
        if refusals > 0:
            refusals -= 1
            return error_response(request, kv.UNAVAILABLE)
        return None

    cluster.hook = hook
    async with client_for(cluster) as client:
        assert await client.put(b"a", b"1") > 0
        assert cluster.count("put") >= 4
        assert len({n for n, _, _ in cluster.seen}) >= 2  # rotated replicas
        assert cluster.store[b"a"][0] == b"1"


@with_cluster
async def test_a_node_of_another_cluster_at_a_replicas_address_is_passed_over(
    cluster: FakeCluster,
) -> None:
    """Found by review: a node of another cluster listening where a replica of ours used
    to (a port taken over after our node stopped) made every request routed there fail with
    WrongCluster, though the group had a live leader elsewhere."""
    cluster.leaders[1] = 3  # group 1's preferred leader, node 2, is now a foreign process

    def hook(node: FakeNode, request: kv.Request) -> Any:
        if node.node_id == 2:
            return error_response(request, kv.WRONG_CLUSTER)
        return None

    cluster.hook = hook
    async with client_for(cluster) as client:
        assert await client.put(b"a", b"1") > 0
        assert await client.get(b"a") == (b"1", cluster.store[b"a"][1])
        assert [(n, k) for n, k, _ in cluster.seen][:2] == [(2, "put"), (3, "put")]
        # A map refresh asking it first passes over it too (found by review: it raised
        # WrongCluster).
        cluster.foreign.add(2)
        client.routing.on_not_leader(0, client.routing.leader_for(0) or 1, 2)
        del cluster.map_asked[:]
        await client.refresh_map()
        assert cluster.map_asked[:2] == [2, cluster.map_asked[1]] and cluster.map_asked[1] != 2


@with_cluster
async def test_a_group_whose_every_replica_answers_as_another_cluster_is_wrong_cluster(
    cluster: FakeCluster,
) -> None:
    """The whole cluster replaced by another on the same ports: WrongCluster once every
    replica said so, not a wait until the deadline ending "a group has a leader once a
    majority of its replicas are up" (found by review)."""
    async with client_for(cluster, timeout_s=5) as client:
        cluster.hook = lambda node, request: error_response(request, kv.WRONG_CLUSTER)
        started = time.monotonic()
        with pytest.raises(WrongCluster, match="every replica of group 1 answers as another"):
            await client.get(b"a")
        assert time.monotonic() - started < 2.5


@with_cluster
async def test_a_group_without_a_leader_until_the_deadline_is_named_in_the_error(
    cluster: FakeCluster,
) -> None:
    """Found by a walkthrough: with two of three nodes killed, `paxoskv put` said only
    "gave up: <one node>: cannot connect", not that a group had no leader for the whole
    deadline."""
    cluster.hook = lambda node, request: (
        error_response(request, kv.UNAVAILABLE)
        if request.WhichOneof("op") in ("put", "get")
        else None
    )
    async with client_for(cluster) as client:
        with pytest.raises(DeadlineExceeded) as err:
            await client.put(b"a", b"1", timeout_s=0.3)
        # A read given up so has nothing to say of writing.
        with pytest.raises(DeadlineExceeded) as read_err:
            await client.get(b"a", timeout_s=0.3)
    message = str(err.value)
    assert re.search(
        r"gave up on a put request at the deadline, after 0\.\d s of tries at group 1's", message
    )
    assert "gave up on a get request at the deadline" in str(read_err.value)
    assert "answered UNAVAILABLE" in message and "a majority of its replicas" in message
    # Every try refused: said so (found by a README trial, a cluster without a majority).
    assert "group 1's leader; nothing was written; last:" in message
    assert "nothing was written" not in str(read_err.value)


@with_cluster
async def test_wrong_shard_refreshes_the_map_and_reroutes(cluster: FakeCluster) -> None:
    async with client_for(cluster) as client:
        fetches = cluster.map_fetches
        # The cluster splits group 3 at "t": [t, +inf) moves to group 4, led by node 2.
        cluster.map = cluster.map.split(3, b"t", 4, (1, 2, 3), preferred_leader=2)
        cluster.leaders[4] = 2
        assert await client.put(b"u", b"1") > 0
        assert cluster.map_fetches == fetches + 1
        assert client.shard_map is not None and client.shard_map.version == 2
        assert cluster.seen[-1][0] == 2
        # A scan planned on the old map is re-planned on the new one.
        await client.put(b"q", b"2")
        assert [k for k, _, _ in await client.scan(b"p")] == [b"q", b"u"]


@with_cluster
async def test_a_node_wrong_about_its_ranges_at_our_map_version_is_passed_over(
    cluster: FakeCluster,
) -> None:
    """Found by review: a node whose ranges disagreed with the map at the same version (a
    misconfigured node) answered WRONG_SHARD naming our version, and the client asked it
    again until its deadline; another replica serves the key."""
    cluster.leaders[1] = 3  # group 1's preferred leader, node 2, is wrong about its ranges

    def hook(node: FakeNode, request: kv.Request) -> Any:
        if node.node_id == 2:
            return error_response(request, kv.WRONG_SHARD, map_version=cluster.map.version)
        return None

    cluster.hook = hook
    async with client_for(cluster, timeout_s=5) as client:
        assert await client.put(b"a", b"1") > 0
    assert cluster.seen[-1][0] == 3


def first_request_of_kind_breaks(kind: str) -> Callable[[FakeNode, kv.Request], Any]:
    """A FakeCluster hook: the first `kind` request (a oneof name of kv.Request) breaks the
    stream after the node received it; the rest pass."""
    broke = False

    def hook(node: FakeNode, request: kv.Request) -> Any:
        nonlocal broke
        if request.WhichOneof("op") == kind and not broke:
            broke = True
            return BREAK
        return None

    return hook


def first_request_refused(code: int, map_version: int) -> Callable[[FakeNode, kv.Request], Any]:
    """A FakeCluster hook: the first request gets error `code` naming `map_version`, the
    rest pass."""
    refused = False

    def hook(node: FakeNode, request: kv.Request) -> Any:
        nonlocal refused
        if refused:
            return None
        refused = True
        return error_response(request, code, map_version=map_version)

    return hook


@with_cluster
async def test_unknown_group_refreshes_the_map(cluster: FakeCluster) -> None:
    async with client_for(cluster) as client:
        cluster.hook = first_request_refused(kv.UNKNOWN_GROUP, map_version=1)
        fetches = cluster.map_fetches
        assert await client.put(b"a", b"1") > 0
        assert cluster.map_fetches == fetches + 1


@with_cluster
async def test_a_request_routed_by_group_is_retried_at_a_node_whose_map_is_older(
    cluster: FakeCluster,
) -> None:
    """A node whose map is older than ours (it has not applied the split yet) refuses a
    request routed by group with WRONG_SHARD naming its version: our map stands, so the
    request is retried there after a backoff, not handed back to its caller to be planned
    again on the very same map (mutation audit: raising WrongShard then went unnoticed;
    `scan` re-planned and re-sent at once, without a backoff)."""
    cluster.map = cluster.map.split(3, b"t", 4, (1, 2, 3), preferred_leader=2)
    cluster.leaders[4] = 2
    async with client_for(cluster) as client:
        await client.put(b"q", b"1")
        older = cluster.map.version - 1
        cluster.hook = first_request_refused(kv.WRONG_SHARD, map_version=older)
        response = await client.send(
            kv.Request(scan=kv.ScanRequest(start=b"p", end=b"t")), group_id=3, write=False
        )
        assert [item.key for item in response.scan.items] == [b"q"]
    assert asked_nodes(cluster, "scan") == [cluster.leaders[3]] * 2  # the same node, again


# ---------------------------------------------------------------------------- failures


@with_cluster
async def test_broken_stream_after_a_write_was_sent_is_outcome_unknown(
    cluster: FakeCluster,
) -> None:
    cluster.hook = first_request_of_kind_breaks("put")
    async with client_for(cluster) as client:
        with pytest.raises(OutcomeUnknown, match="may or may not have been applied") as info:
            await client.put(b"a", b"1")
        assert info.value.maybe_committed and not info.value.retryable
        assert OUTCOME_ADVICE in str(info.value)
        assert cluster.count("put") == 1  # never re-sent
        # The connection comes back for the next request.
        assert await client.put(b"b", b"2") > 0


@with_cluster
async def test_broken_stream_during_a_read_is_retried(cluster: FakeCluster) -> None:
    async with client_for(cluster) as client:
        await client.put(b"h", b"1")
        cluster.hook = first_request_of_kind_breaks("get")
        assert (await client.get(b"h") or (b"",))[0] == b"1"
        assert cluster.count("get") >= 2  # retried (via another replica's redirect)


@with_cluster
async def test_dead_leader_write_goes_to_the_new_leader(cluster: FakeCluster) -> None:
    async with client_for(cluster) as client:
        await client.get(b"a")  # opens group 1's leader connection (node 2)
        await cluster.nodes[2].stop()
        cluster.leaders[1] = 1
        # Until the client's connection has seen the node go, a put written to it is
        # ambiguous (OutcomeUnknown is then the right answer); this test is about after.
        channel = client._conns[cluster.nodes[2].address].channel
        deadline = time.monotonic() + 5
        while channel.get_state() is grpc.ChannelConnectivity.READY:
            assert time.monotonic() < deadline, "the client never saw node 2 stop"
            await asyncio.sleep(0.005)
        # Node 2 is unreachable: the put was never sent there, so it is safe to retry.
        assert await client.put(b"a", b"1") > 0
        assert cluster.count("put") == 1 or cluster.store[b"a"][0] == b"1"
        assert [n for n, k, _ in cluster.seen if k == "put"][-1] == 1


@with_cluster
async def test_read_without_answer_is_deadline_exceeded(cluster: FakeCluster) -> None:
    cluster.hook = lambda node, request: DROP if request.WhichOneof("op") == "get" else None
    async with client_for(cluster, timeout_s=0.5) as client:
        t0 = time.monotonic()
        with pytest.raises(DeadlineExceeded) as info:
            await client.get(b"a")
        assert 0.4 < time.monotonic() - t0 < 5  # generous: the machine may be loaded
        assert info.value.retryable and not info.value.maybe_committed


@with_cluster
async def test_a_read_given_up_at_its_deadline_says_deadline_exceeded(cluster: FakeCluster) -> None:
    """DeadlineExceeded carries its own code, DEADLINE_EXCEEDED, while `except Unavailable`
    still catches it (mutation audit: the code UNAVAILABLE went unnoticed)."""
    cluster.hook = lambda node, request: DROP if request.WhichOneof("op") == "get" else None
    async with client_for(cluster, timeout_s=0.3) as client:
        with pytest.raises(Unavailable) as info:
            await client.get(b"a")
    assert type(info.value) is DeadlineExceeded and info.value.code == "DEADLINE_EXCEEDED"


@with_cluster
async def test_write_without_answer_is_outcome_unknown(cluster: FakeCluster) -> None:
    cluster.hook = lambda node, request: DROP if request.WhichOneof("op") == "put" else None
    async with client_for(cluster, timeout_s=0.5) as client:
        await client.get(b"a", timeout_s=10)  # open the stream first: the put is then sent
        with pytest.raises(OutcomeUnknown, match="before the deadline") as info:
            await client.put(b"a", b"1")
        assert cluster.count("put") == 1
        assert OUTCOME_ADVICE in str(info.value)
        assert "shorter than a round trip" not in str(info.value)  # 0.5 s is not short
        with pytest.raises(OutcomeUnknown, match="before the deadline") as info:
            await client.put(b"a", b"1", timeout_s=0.02)
        # Found by an operator trial: `--timeout 0.005` was told only that the write may
        # have been applied.
        assert "shorter than a round trip can take: give a timeout of 0.1 s or more" in str(
            info.value
        )


@with_cluster
async def test_node_outcome_unknown_is_not_retried(cluster: FakeCluster) -> None:
    cluster.hook = lambda node, request: error_response(request, kv.OUTCOME_UNKNOWN)
    async with client_for(cluster) as client:
        with pytest.raises(OutcomeUnknown) as info:
            await client.put(b"a", b"1")
        assert cluster.count("put") == 1
        # Not "read the key to find out": the node may still apply it after answering.
        assert OUTCOME_ADVICE in str(info.value) and "read the key" not in str(info.value)


@with_cluster
async def test_non_retryable_errors_are_typed(cluster: FakeCluster) -> None:
    codes = {b"big": kv.LIMIT_EXCEEDED, b"bad": kv.INVALID_ARGUMENT, b"bug": kv.INTERNAL}

    def hook(node: FakeNode, request: kv.Request) -> Any:
        code = codes.get(request.put.key)
        return error_response(request, code) if code is not None else None

    cluster.hook = hook
    async with client_for(cluster) as client:
        with pytest.raises(LimitExceeded):
            await client.put(b"big", b"1")
        with pytest.raises(InvalidArgument):
            await client.put(b"bad", b"1")
        with pytest.raises(ServerError) as info:
            await client.put(b"bug", b"1")
        assert info.value.maybe_committed
        assert cluster.count("put") == 3  # one attempt each
        # passthrough hands the response back instead of raising.
        response = await client.send(
            kv.Request(put=kv.PutRequest(key=b"bug", value=b"1")),
            key=b"bug",
            write=True,
            passthrough={kv.INTERNAL},
        )
        assert response.put.error.code == kv.INTERNAL


# ---------------------------------------------------------------------------- batching


@with_cluster
async def test_concurrent_requests_share_stream_messages(cluster: FakeCluster) -> None:
    async with client_for(cluster) as client:
        n = 300
        await asyncio.gather(*(client.put(b"a%03d" % i, b"v") for i in range(n)))
        stats = client.stats()
        assert stats["requests_out"] == n
        # All keys are in group 1 (led by node 2): far fewer messages than requests.
        assert stats["messages_out"] <= n // 20, stats
        assert cluster.nodes[2].batches_received == stats["messages_out"]
        assert len(cluster.store) == n


@with_cluster
async def test_status_all_reports_unreachable_nodes(cluster: FakeCluster) -> None:
    async with client_for(cluster) as client:
        await cluster.nodes[3].stop()
        statuses = await client.status_all(timeout_s=1.0)
        assert [s.node_id for s in statuses] == [1, 2, 3]
        assert [s.reachable for s in statuses] == [True, True, False]
        assert statuses[0].status is not None and statuses[0].status.node_id == 1
        assert statuses[2].error


@with_cluster
async def test_closed_client_refuses_new_calls(cluster: FakeCluster) -> None:
    client = client_for(cluster)
    await client.connect()
    await client.close()
    from router.client_errors import ClientClosed

    with pytest.raises(ClientClosed):
        await client.put(b"a", b"1")


@with_cluster
async def test_request_abandoned_before_the_writer_took_it_is_never_sent(
    cluster: FakeCluster,
) -> None:
    """Rule 2: a deadline that passes while the request is still queued means "not applied",
    so the request must never be written afterwards."""
    async with client_for(cluster) as client:
        await client.put(b"a", b"warm")  # the stream to node 2 is open and idle
        conn = client._connection(cluster.nodes[2].address)
        request = kv.Request(
            put=kv.PutRequest(
                header=kv.Header(cluster_id=CLUSTER, group_id=1), key=b"a", value=b"late"
            )
        )
        call = conn.submit(request)
        conn.expire(call)  # before the writer task got to run
        with pytest.raises(Exception) as info:
            await call.future
        assert type(info.value).__name__ == "_TimedOut" and not info.value.sent  # type: ignore[attr-defined]
        await client.put(b"b", b"after")  # the stream still works, and was flushed
        assert cluster.store[b"a"][0] == b"warm"
        assert cluster.count("put", b"a") == 1


@with_cluster
async def test_cancelled_callers_leave_nothing_behind(cluster: FakeCluster) -> None:
    cluster.hook = lambda node, request: DROP if request.WhichOneof("op") == "get" else None
    async with client_for(cluster) as client:
        tasks = [asyncio.create_task(client.get(b"a%d" % i)) for i in range(10)]
        while cluster.count("get") < 10:
            await asyncio.sleep(0.01)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        conn = client._connection(cluster.nodes[2].address)
        assert not conn._inflight and not conn._queue
        cluster.hook = None
        assert await client.get(b"a1") is None


@with_cluster
async def test_the_copies_of_a_read_unanswered_at_its_deadline_leave_nothing_behind(
    cluster: FakeCluster,
) -> None:
    """A read a live leader holds gets one more copy there per attempt timeout; at its
    deadline the copies are given up with it, and nothing stays in flight on the connection
    (mutation audit: copies left behind went unnoticed, one entry per copy for as long as
    the stream lives)."""
    cluster.hook = lambda node, request: DROP if request.WhichOneof("op") == "get" else None
    async with client_for(cluster, attempt_timeout_s=0.2) as client:
        with pytest.raises(DeadlineExceeded):
            await client.get(b"a", timeout_s=1.0)
        assert asked_nodes(cluster, "get").count(cluster.leaders[1]) >= 2  # copies were sent
        conn = client._connection(cluster.nodes[cluster.leaders[1]].address)
        assert not conn._inflight and not conn._queue


@with_cluster
async def test_a_read_held_at_a_live_leader_gets_one_more_copy_per_attempt_timeout(
    cluster: FakeCluster,
) -> None:
    """A live leader (it answers the probes) that holds a read gets one more copy of it
    after each attempt timeout without an answer, not more often (mutation audit: a copy
    every half attempt timeout, each silence check, went unnoticed). A loaded machine only
    widens the gaps."""
    loop = asyncio.get_running_loop()
    arrived: list[float] = []

    def hold(node: FakeNode, request: kv.Request) -> Any:
        if request.WhichOneof("op") != "get":
            return None
        arrived.append(loop.time())
        return DROP

    async with client_for(cluster, attempt_timeout_s=0.4) as client:
        assert await client.get(b"a") is None  # the stream is open: the read is sent at once
        cluster.hook = hold
        with pytest.raises(DeadlineExceeded):
            await client.get(b"a", timeout_s=1.0)
    gaps = [later - earlier for earlier, later in itertools.pairwise(arrived)]
    assert gaps and min(gaps) >= 0.3, gaps


@with_cluster
async def test_a_copys_answer_coming_with_the_first_ones_is_dropped_quietly(
    cluster: FakeCluster,
) -> None:
    """A live leader holds a read, which gets a copy; when the node then answers both in one
    batch, the first answer is taken and the copy's dropped, with no error in the event
    loop (mutation audit: adopting a copy's answer into a read already answered went
    unnoticed: an InvalidStateError in a callback, logged by asyncio)."""
    errors: list[dict[str, Any]] = []
    asyncio.get_running_loop().set_exception_handler(lambda _loop, context: errors.append(context))
    held: list[kv.Request] = []

    def answer_with_the_copy(node: FakeNode, request: kv.Request) -> Any:
        if request.WhichOneof("op") != "get":
            return None
        if not held:
            held.append(request)
            return DROP
        first = held[0]
        return [
            cluster.apply("get", first.get, first.id),
            cluster.apply("get", request.get, request.id),
        ]

    async with client_for(cluster, attempt_timeout_s=0.2) as client:
        assert await client.get(b"b") is None  # the stream is open: the read is sent at once
        cluster.hook = answer_with_the_copy
        assert await client.get(b"a") is None
    assert len(held) == 1 and not errors, errors


def test_one_stream_write_carries_at_most_write_requests_requests() -> None:
    from router.client import WRITE_REQUESTS, _Call, _take_write

    loop = asyncio.new_event_loop()
    try:
        queue = [
            _Call(kv.Request(id=i, get=kv.GetRequest(key=b"k")), loop.create_future())
            for i in range(WRITE_REQUESTS + 5)
        ]
    finally:
        loop.close()
    first, rest = _take_write(queue)
    assert (len(first), len(rest)) == (WRITE_REQUESTS, 5)
    assert _take_write(rest) == (rest, [])


def test_no_retry_starts_too_close_to_the_deadline() -> None:
    """Found by a CI run on a loaded machine: a retry sent a few ms before the deadline could
    not be answered in time, and a write that surely did nothing (UNAVAILABLE each time)
    ended as OutcomeUnknown instead of DeadlineExceeded. The backoff now runs to the deadline
    when too little would be left after it."""

    async def check() -> None:
        client = RoutingClient(["127.0.0.1:1"], cluster_id="c")
        client._backoff = _FixedBackoff()  # type: ignore[assignment]
        loop = asyncio.get_running_loop()
        near = loop.time() + 0.015  # 10 ms would be left after the backoff: too little
        await client._sleep(0, near)
        assert loop.time() >= near
        far = loop.time() + 1.0
        await client._sleep(0, far)
        assert loop.time() < far - 0.5  # a plain backoff
        await client.close()

    asyncio.run(check())


class _FixedBackoff:
    def __init__(self, delay_s: float = 0.005) -> None:
        self.delay_s = delay_s

    def delay(self, attempt: int, rng: object) -> float:
        return self.delay_s


@with_cluster
async def test_retries_wait_for_their_backoff(cluster: FakeCluster) -> None:
    """UNAVAILABLE until the deadline: each retry waits its 50 ms backoff first, rather than
    sending at the nodes as fast as they answer (a load only widens the gaps)."""
    sent_at: list[float] = []

    def unavailable(node: FakeNode, request: kv.Request) -> kv.Response:
        sent_at.append(asyncio.get_running_loop().time())
        return error_response(request, kv.UNAVAILABLE)

    async with client_for(cluster, backoff=_FixedBackoff(0.05)) as client:
        await client.connect()
        cluster.hook = unavailable
        with pytest.raises(DeadlineExceeded):
            await client.put(b"a", b"1", timeout_s=0.5)
    gaps = [later - earlier for earlier, later in itertools.pairwise(sent_at)]
    assert gaps and min(gaps) >= 0.045, gaps


@with_cluster
async def test_a_not_leader_hint_is_followed_past_the_next_replica(cluster: FakeCluster) -> None:
    """Group 1's preferred leader is node 2, and trying the replicas in turn would ask node 3
    next: the hint names node 1, which gets the second request."""
    cluster.leaders[1] = 1
    async with client_for(cluster) as client:
        await client.put(b"a", b"1")
    assert [(node, kind) for node, kind, _ in cluster.seen] == [(2, "put"), (1, "put")]


@with_cluster
async def test_a_stale_scan_asks_every_shard_for_a_stale_read(cluster: FakeCluster) -> None:
    asked: list[bool] = []

    def record(node: FakeNode, request: kv.Request) -> None:
        if request.WhichOneof("op") == "scan":
            asked.append(request.scan.stale_ok)

    async with client_for(cluster) as client:
        await client.put(b"a", b"1")
        cluster.hook = record
        await client.scan(stale_ok=True)
    assert asked == [True, True, True]


def silence_the_leader(cluster: FakeCluster, key: bytes) -> tuple[int, int]:
    """The leader of `key`'s group stops answering (SIGSTOP, cut off) and another replica
    leads; (the group id, the silenced node)."""
    gid = cluster.map.locate(key).group_id
    old = cluster.leaders[gid]
    cluster.hook = lambda node, request: DROP if node.node_id == old else None
    cluster.silent.add(old)
    cluster.leaders[gid] = next(n for n in cluster.nodes if n != old)
    return gid, old


@with_cluster
async def test_a_silent_leader_is_not_asked_again_after_a_timeout(cluster: FakeCluster) -> None:
    """Found by review: a leader that is up but silent (SIGSTOP, cut off) kept the client's
    guess, so every retry waited out its whole deadline there while another replica led."""
    async with client_for(cluster, timeout_s=0.5) as client:
        await client.put(b"a", b"1")
        silence_the_leader(cluster, b"a")
        with pytest.raises(DeadlineExceeded):
            await client.get(b"a")
        started = time.monotonic()
        assert await client.get(b"a") is not None  # the caller's retry reaches the new one
        assert time.monotonic() - started < 0.4


@with_cluster
async def test_a_request_tells_the_node_how_long_the_client_waits(cluster: FakeCluster) -> None:
    seen: list[int] = []

    def hook(node: FakeNode, request: kv.Request) -> Any:
        seen.append(getattr(request, request.WhichOneof("op")).header.timeout_ms)
        return None

    async with client_for(cluster, timeout_s=3.0) as client:
        cluster.hook = hook
        await client.put(b"a", b"1", timeout_s=1.5)
        await client.get(b"a")
    assert len(seen) == 2 and 1_000 < seen[0] <= 1_500 and 2_000 < seen[1] <= 3_000, seen


@with_cluster
async def test_concurrent_timeouts_at_a_silent_leader_do_not_send_the_retry_back_there(
    cluster: FakeCluster,
) -> None:
    """Found by review: each timeout moved the guess one replica on from the CURRENT guess,
    so one timeout per replica put it back on the silent node."""
    async with client_for(cluster, timeout_s=0.5) as client:
        await client.put(b"a", b"1")
        gid, _ = silence_the_leader(cluster, b"a")
        replicas = len(cluster.map.replicas(gid))
        results = await asyncio.gather(
            *(client.get(b"a") for _ in range(replicas)), return_exceptions=True
        )
        assert all(isinstance(r, DeadlineExceeded) for r in results), results
        started = time.monotonic()
        assert await client.get(b"a") is not None  # the caller's retry
        assert time.monotonic() - started < 0.4


@with_cluster
async def test_a_late_timeout_does_not_move_a_guess_another_request_corrected(
    cluster: FakeCluster,
) -> None:
    """Found by review: a request timing out at the silent old leader, after another
    request had learned the real leader from a hint, moved the guess off the real one."""
    async with client_for(cluster, timeout_s=0.5) as client:
        await client.put(b"a", b"1")
        gid = cluster.map.locate(b"a").group_id
        old = cluster.leaders[gid]
        reached = asyncio.Event()

        def silent(node: FakeNode, request: kv.Request) -> Any:
            if node.node_id != old:
                return None
            reached.set()
            return DROP

        cluster.hook = silent
        new = next(n for n in cluster.nodes if n != old)
        cluster.leaders[gid] = new
        slow = asyncio.ensure_future(client.get(b"a"))  # in flight at the silent node
        await asyncio.wait_for(reached.wait(), 5)
        client._cache.on_not_leader(gid, old, new)  # another request was redirected there
        with pytest.raises(DeadlineExceeded):
            await slow
        assert client._cache.leader_for(gid) == new, "the guess left the real leader"


@with_cluster
async def test_a_leader_silent_past_the_attempt_timeout_loses_the_guess_while_a_write_waits(
    cluster: FakeCluster,
) -> None:
    """Found by review: the guess left a silent leader (SIGSTOP, cut off) only when a
    request's whole deadline passed there, so every request sent meanwhile, writes too,
    queued behind it. A write already sent is still never re-sent (OutcomeUnknown at its
    deadline), but after the attempt timeout of silence the next write goes elsewhere."""
    loop = asyncio.get_running_loop()
    async with client_for(cluster, timeout_s=3.0, attempt_timeout_s=0.2) as client:
        await client.put(b"a", b"1")
        gid, old = silence_the_leader(cluster, b"a")
        before = len(cluster.seen)
        first = asyncio.ensure_future(client.put(b"a", b"2", timeout_s=1.5))
        sent = loop.time()
        while client.routing.leader_for(gid) == old:
            assert loop.time() - sent < 1.0, "the silent leader kept the guess"
            await asyncio.sleep(0.01)
        assert not first.done()  # still waiting for its answer
        started = time.monotonic()
        assert await client.put(b"b", b"3") > 0
        assert time.monotonic() - started < 0.5
        with pytest.raises(OutcomeUnknown):
            await first
    assert [(n, key) for n, k, key in cluster.seen[before:] if k == "put"].count((old, b"a")) == 1
    assert cluster.store[b"a"][0] == b"1"  # never re-sent to the new leader


@with_cluster
async def test_a_slow_answer_from_a_node_that_answers_others_keeps_the_guess(
    cluster: FakeCluster,
) -> None:
    """Only silence moves the guess: a write parked at a leader (a lock wait) while the
    leader answers other requests does not send the requests after it elsewhere."""
    loop = asyncio.get_running_loop()
    async with client_for(cluster, timeout_s=3.0, attempt_timeout_s=0.2) as client:
        await client.put(b"a", b"1")
        gid = cluster.map.locate(b"a").group_id
        leader = cluster.leaders[gid]
        cluster.hook = lambda node, request: DROP if request.WhichOneof("op") == "put" else None
        slow = asyncio.ensure_future(client.put(b"a", b"2", timeout_s=1.0))
        end = loop.time() + 0.6
        while loop.time() < end:
            assert await client.get(b"b") is None  # answered by the same node
            assert client.routing.leader_for(gid) == leader
            await asyncio.sleep(0.02)
        with pytest.raises(OutcomeUnknown):
            await slow


# ------------------------------------------------ one rule for moving a leader guess


def asked_nodes(cluster: FakeCluster, kind: str) -> list[int]:
    return [n for n, k, _ in cluster.seen if k == kind]


@with_cluster
async def test_concurrent_redirects_naming_the_same_leader_all_go_there(
    cluster: FakeCluster,
) -> None:
    """Found by review: the second of two answers NOT_LEADER(hint 3) from the same node
    found the guess already at 3 and took the hint for "the node names itself": it rotated
    the guess off the leader, to a node that redirected it back."""
    cluster.leaders[1] = 3  # group 1's preferred leader (the first guess) is node 2
    async with client_for(cluster) as client:
        results = await asyncio.gather(client.get(b"a"), client.get(b"b"))
        assert results == [None, None]
        assert sorted(asked_nodes(cluster, "get")) == [2, 2, 3, 3], cluster.seen
        assert client.routing.leader_for(1) == 3


@with_cluster
async def test_concurrent_unavailable_answers_move_the_guess_off_that_node_once(
    cluster: FakeCluster,
) -> None:
    """The known weakness: each UNAVAILABLE moved the guess one replica on from the CURRENT
    guess, so one per replica put it back on the refusing node (a replica restoring a
    snapshot, say), and the retries went there again."""
    cluster.leaders[1] = 3
    cluster.hook = lambda node, request: (
        error_response(request, kv.UNAVAILABLE) if node.node_id == 2 else None
    )
    async with client_for(cluster, backoff=_FixedBackoff()) as client:
        results = await asyncio.gather(*(client.get(k) for k in (b"a", b"b", b"c")))
        assert results == [None, None, None]
        assert sorted(asked_nodes(cluster, "get")) == [2, 2, 2, 3, 3, 3], cluster.seen


@with_cluster
async def test_concurrent_connection_failures_move_the_guess_off_that_node_once(
    cluster: FakeCluster,
) -> None:
    """As above for a node that cannot be reached: two requests failed together rotated the
    guess twice, past the leader to a node that redirected back."""
    cluster.leaders[1] = 3
    await cluster.nodes[2].stop()
    async with client_for(cluster, backoff=_FixedBackoff()) as client:
        results = await asyncio.gather(client.get(b"a"), client.get(b"b"))
        assert results == [None, None]
        assert asked_nodes(cluster, "get") == [3, 3], cluster.seen
        assert client.routing.leader_for(1) == 3


@with_cluster
async def test_a_scan_whose_map_is_refreshed_before_it_is_sent_is_replanned(
    cluster: FakeCluster,
) -> None:
    """Found by review: a part planned on map v1 was sent after the request core refreshed
    to v2 (another request had met WRONG_SHARD naming v2), under v2's header; every answer
    was WRONG_SHARD of the version the client now had, so it retried the same part until
    the deadline instead of re-planning."""
    async with client_for(cluster) as client:
        await client.put(b"q", b"1")
        await client.put(b"u", b"2")
        cluster.map = cluster.map.split(3, b"t", 4, (1, 2, 3), preferred_leader=2)
        cluster.leaders[4] = 2
        client.routing.on_wrong_shard(cluster.map.version)  # another request's answer
        assert [k for k, _, _ in await client.scan(b"p")] == [b"q", b"u"]
    async with txn.AsyncClient(cluster.seeds(), timeout_s=3) as tclient:
        cluster.map = cluster.map.split(4, b"v", 5, (1, 2, 3), preferred_leader=3)
        cluster.leaders[5] = 3
        await tclient.put(b"w", b"3")  # meets WRONG_SHARD, refreshes
        cluster.map = cluster.map.split(5, b"x", 6, (1, 2, 3), preferred_leader=1)
        cluster.leaders[6] = 1
        tclient._routing.routing.on_wrong_shard(cluster.map.version)
        assert [k for k, _ in await tclient.scan(b"p")] == [b"q", b"u", b"w"]


@with_cluster
async def test_a_scan_part_resent_after_a_conflict_under_a_newer_map_is_replanned(
    cluster: FakeCluster,
) -> None:
    """Found by review: the transaction client re-sends a scan part that met an intent
    (CONFLICT) after a pause; another request refreshed the map meanwhile, so the re-sent
    part (planned on v1, [p, +inf) for group 3) went under v2, where group 3 ends at "t".
    Each answer was WRONG_SHARD naming v2, the version the client already had, and the
    client re-sent the same part until the deadline instead of re-planning the scan."""
    async with txn.AsyncClient(cluster.seeds(), timeout_s=2) as tclient:
        await tclient.put(b"q", b"1")
        await tclient.put(b"u", b"2")
        refused = False

        def hook(node: FakeNode, request: kv.Request) -> Any:
            nonlocal refused
            if request.WhichOneof("op") != "scan" or refused:
                return None
            refused = True
            # The split, and another request's refresh finishing during the pause.
            cluster.map = cluster.map.split(3, b"t", 4, (1, 2, 3), preferred_leader=2)
            cluster.leaders[4] = 2
            tclient.routing.routing.update(cluster.map)
            return error_response(request, kv.CONFLICT)

        cluster.hook = hook
        assert [k for k, _ in await tclient.scan(b"p")] == [b"q", b"u"]


@pytest.mark.parametrize("seeds", [["127.0.0.1:1", 5], [None], [b"127.0.0.1:1"], b"h:1"])
def test_seeds_that_are_not_strings_are_refused_at_once(seeds: Any) -> None:
    """Found by review: a list with a non-string entry was accepted and failed at connect
    with AttributeError ('int' object has no attribute 'encode')."""
    with pytest.raises(InvalidArgument, match="HOST:PORT"):
        RoutingClient(seeds)
    with pytest.raises(txn.InvalidArgument, match="HOST:PORT"):
        txn.AsyncClient(seeds)


def test_seed_entries_are_cleaned_like_a_seed_string() -> None:
    client = RoutingClient([" 127.0.0.1:1 ", "", "127.0.0.1:2,127.0.0.1:3"])
    assert client.routing.seeds == ("127.0.0.1:1", "127.0.0.1:2", "127.0.0.1:3")


@with_cluster
async def test_closing_the_client_during_a_map_refresh_fails_callers_with_client_closed(
    cluster: FakeCluster,
) -> None:
    """Found by review: close() cancelled the shared refresh task, and a caller waiting for
    it got that CancelledError, as if its own task had been cancelled (an asyncio.gather or
    TaskGroup then treats it as such), not the documented ClientClosed."""
    from router.client_errors import ClientClosed

    async with client_for(cluster) as client:
        fetching = asyncio.Event()

        async def slow_fetch(address: str, timeout_s: float) -> None:
            fetching.set()
            await asyncio.sleep(60)

        client._fetch_map = slow_fetch  # type: ignore[method-assign]
        client.routing.on_wrong_shard(99)  # a node named a newer map: refresh first
        get = asyncio.ensure_future(client.get(b"a"))
        await asyncio.wait_for(fetching.wait(), 5)
        await client.close()
        with pytest.raises(ClientClosed):
            await get


@with_cluster
async def test_an_infinite_timeout_means_no_limit_and_nan_is_refused(
    cluster: FakeCluster,
) -> None:
    """Found by review: timeout_s=math.inf (accepted by the constructor) made every
    operation raise OverflowError from the header's timeout_ms; NaN raised ValueError."""
    import math

    async with client_for(cluster, timeout_s=math.inf) as client:
        assert await client.put(b"a", b"1") > 0
        assert await client.get(b"a", timeout_s=math.inf) is not None
        with pytest.raises(InvalidArgument, match="nan"):
            await client.get(b"a", timeout_s=math.nan)


@run
async def test_closing_the_client_during_the_first_connect_fails_callers_with_client_closed() -> (
    None
):
    """Found by review: close() during the first connect made the waiting callers fail with
    Unavailable "no node answered ... check that the nodes are running" (the closed
    connections failed each seed), not the documented ClientClosed."""
    from router.client_errors import ClientClosed

    servers, seeds = await _slow_seeds()
    client = RoutingClient(seeds, timeout_s=10.0)
    try:
        get = asyncio.ensure_future(client.get(b"k"))
        await asyncio.sleep(0.2)  # asking the first seed for its status
        await client.close()
        with pytest.raises(ClientClosed):
            await asyncio.wait_for(get, 5)
    finally:
        for server in servers:
            await server.stop(0)


Held = asyncio.Future[kv.ShardMapResponse]


async def _txn_status_during_a_held_map_refresh(
    cut_off: Callable[[txn.AsyncClient, Held], Awaitable[None]],
) -> BaseException:
    """What txn_status of a group the cached map lacks raises when the map refresh it makes
    first meets `cut_off`, called once a node holds that refresh's GetShardMap (with the
    future the node answers from)."""
    refreshing = asyncio.Event()
    held: Held = asyncio.get_running_loop().create_future()
    hold = False

    class HeldMap(FakeNode):
        async def GetShardMap(
            self, request: kv.ShardMapRequest, context: Any
        ) -> kv.ShardMapResponse:
            if hold:
                refreshing.set()
                return await held
            return await super().GetShardMap(request, context)

    cluster = FakeCluster()
    cluster.nodes = {i: HeldMap(cluster, i) for i in cluster.nodes}
    await cluster.start()
    client = txn.AsyncClient(cluster.seeds(), timeout_s=5.0)
    try:
        await client.connect()
        hold = True
        asking = asyncio.ensure_future(client.txn_status(txn.TxnRef(b"t" * 16, 99)))
        await refreshing.wait()
        await cut_off(client, held)
        with pytest.raises(txn.PaxosKVError) as raised:
            await asking
        return raised.value
    finally:
        held.cancel()
        await client.close()
        await cluster.stop()


async def _close(client: txn.AsyncClient, held: Held) -> None:
    await client.close()


def test_txn_status_raises_paxoskv_errors_from_its_map_refresh() -> None:
    """Found by review: txn_status refreshed the map outside the client's translation of
    routing errors, so a close() meanwhile raised router.client_errors.ClientClosed, which
    `except PaxosKVError` (README: "catches all of it") did not catch. (A node of another
    cluster met by the refresh is passed over now, no error.)"""
    raised = asyncio.run(asyncio.wait_for(_txn_status_during_a_held_map_refresh(_close), 30))
    assert isinstance(raised, txn.ClientClosed), repr(raised)


@with_cluster
async def test_an_answer_of_the_wrong_kind_is_a_server_error_not_a_success(
    cluster: FakeCluster,
) -> None:
    """No node sends an empty answer (or one of another kind), but taken as a success its
    defaults (not prepared, not committed) would read as real outcomes to the recovery that
    asks (found by review). A write's such answer may hide an applied write."""
    cluster.hook = lambda node, request: (
        kv.Response(id=request.id) if request.WhichOneof("op") == "put" else None
    )
    async with client_for(cluster) as client:
        with pytest.raises(ServerError, match="an answer of kind none to a put request") as err:
            await client.put(b"a", b"1")
        assert err.value.maybe_committed


@with_cluster
async def test_a_write_a_stopping_node_never_read_is_retried_not_outcome_unknown(
    cluster: FakeCluster,
) -> None:
    """A stopping node answers what it read, then says `drained` on each stream: what the
    client still has in flight there was never read, so it is re-sent, not reported
    OutcomeUnknown (found by review: a node's SIGTERM cancelled its streams, and every
    write in flight on them was reported OutcomeUnknown, most never applied)."""
    stopping = 1

    def hook(node: FakeNode, request: kv.Request) -> Any:
        nonlocal stopping
        if request.WhichOneof("op") == "put" and stopping:
            stopping -= 1
            return DRAINED
        return None

    cluster.hook = hook
    async with client_for(cluster) as client:
        assert await client.put(b"a", b"1", timeout_s=2.0) > 0
    assert cluster.store[b"a"][0] == b"1"
    assert cluster.count("put") >= 2  # the unread one, then the re-sent one


@with_cluster
async def test_a_write_unanswered_at_a_live_leader_is_never_copied(
    cluster: FakeCluster,
) -> None:
    """Rule 1: only a request its caller marks idempotent gets another copy at a live node
    that leaves it unanswered for an attempt timeout. A put the leader holds (it answers
    the liveness probes) past several attempt timeouts is written once, and ends
    OutcomeUnknown at its deadline (mutation audit: copies of a plain put went unnoticed)."""
    cluster.hook = lambda node, request: DROP if request.WhichOneof("op") == "put" else None
    async with client_for(cluster, timeout_s=1.5, attempt_timeout_s=0.2) as client:
        assert await client.get(b"a") is None  # the stream is open: the put is then sent
        with pytest.raises(OutcomeUnknown):
            await client.put(b"a", b"1")
    assert cluster.count("put") == 1


@pytest.mark.parametrize("kind", ["delete", "cas"])
def test_a_delete_or_cas_whose_stream_broke_after_sending_is_outcome_unknown(kind: str) -> None:
    """delete and cas are writes too: sent, then the stream broke, they may have been
    applied, so OutcomeUnknown and never re-sent (mutation audit: either one routed with
    write=False was re-sent to the leader after the break, and no test saw it)."""

    @with_cluster
    async def scenario(cluster: FakeCluster) -> None:
        async with client_for(cluster) as client:
            await client.put(b"a", b"1")
            cluster.hook = first_request_of_kind_breaks(kind)
            with pytest.raises(OutcomeUnknown):
                if kind == "delete":
                    await client.delete(b"a")
                else:
                    await client.cas(b"a", expected_value=b"1", new_value=b"2")
        assert cluster.count(kind) == 1
        assert cluster.store[b"a"][0] == b"1"

    scenario()


@with_cluster
async def test_reads_at_a_version_ask_each_node_for_that_version(cluster: FakeCluster) -> None:
    """get(at_version=) and scan(at_version=) pass the version to every request (mutation
    audit: either dropped went unnoticed: a read of the newest version instead)."""
    asked: list[tuple[str, int]] = []

    def record(node: FakeNode, request: kv.Request) -> None:
        kind = request.WhichOneof("op")
        if kind in ("get", "scan"):
            asked.append((kind, getattr(request, kind).at_version))

    async with client_for(cluster) as client:
        await client.put(b"a", b"1")
        cluster.hook = record
        await client.get(b"a", at_version=7)
        await client.scan(at_version=7)
    assert asked == [("get", 7), ("scan", 7), ("scan", 7), ("scan", 7)]


@with_cluster
async def test_a_scan_whose_group_left_the_map_is_replanned(cluster: FakeCluster) -> None:
    """A scan part sent to a group the cluster's newer map no longer has (UNKNOWN_GROUP)
    is planned again on the new map from where the scan was, not raised to the caller
    (mutation audit: `scan` catching only WrongShard went unnoticed)."""
    async with client_for(cluster) as client:
        for key in (b"a", b"h", b"q", b"z"):
            await client.put(key, key)
        old = cluster.map
        last = old.group(3)
        # Map v2: the range of group 3 is now group 4's (same replicas and leader).
        cluster.map = ShardMap(
            old.version + 1,
            [
                *old.ranges[:-1],
                RangeDescriptor(4, last.start, last.end, last.replicas, last.preferred_leader),
            ],
            old.nodes,
            old.meta_replicas,
            old.meta_preferred_leader,
        )
        cluster.leaders[4] = cluster.leaders[3]
        assert [k for k, _, _ in await client.scan()] == [b"a", b"h", b"q", b"z"]
        assert client.shard_map is not None and client.shard_map.version == old.version + 1


@with_cluster
async def test_concurrent_wrong_shard_answers_share_one_map_fetch(cluster: FakeCluster) -> None:
    """The module's rule: WRONG_SHARD refreshes the map with one fetch shared by all
    callers (mutation audit: a fetch per caller went unnoticed)."""
    async with client_for(cluster) as client:
        fetches = cluster.map_fetches
        cluster.map = cluster.map.split(3, b"t", 4, (1, 2, 3), preferred_leader=2)
        cluster.leaders[4] = 2
        versions = await asyncio.gather(*(client.put(b"u%02d" % i, b"v") for i in range(20)))
        assert all(v > 0 for v in versions)
        assert cluster.map_fetches == fetches + 1


@with_cluster
async def test_an_idempotent_write_given_up_at_a_silent_leader_is_outcome_unknown(
    cluster: FakeCluster,
) -> None:
    """An idempotent write (a commit request) is given up at a leader that went silent
    while it waited there; it was written to the stream, so it may have been applied:
    OutcomeUnknown, never DeadlineExceeded ("not applied"), and not re-sent by the core
    (its caller decides, txn.resend)."""
    async with client_for(cluster, timeout_s=3.0, attempt_timeout_s=0.2) as client:
        await client.put(b"a", b"1")
        _, old = silence_the_leader(cluster, b"a")
        before = len(cluster.seen)
        with pytest.raises(OutcomeUnknown):
            await client.send(
                kv.Request(put=kv.PutRequest(key=b"a", value=b"2")),
                key=b"a",
                write=True,
                idempotent=True,
            )
    # Sent only to the silent node (copies there included), never to the new leader.
    assert {n for n, k, _ in cluster.seen[before:] if k == "put"} == {old}
    assert cluster.store[b"a"][0] == b"1"


@with_cluster
async def test_an_idempotent_write_never_sent_before_its_leader_went_silent_is_deadline_exceeded(
    cluster: FakeCluster,
) -> None:
    """The other half of the test above: an idempotent write given up at a silent leader
    before it was written to any stream (the connection to the frozen node never became
    ready) surely was not applied: DeadlineExceeded at once, not re-sent by the core to the
    next replica (its caller decides, txn.resend; mutation audit: the core re-sending it
    went unnoticed)."""
    loop = asyncio.get_running_loop()
    async with client_for(cluster, timeout_s=3.0, attempt_timeout_s=0.2) as client:
        gid, old = silence_the_leader(cluster, b"a")
        connecting = never_connects(client, cluster.nodes[old].address)
        started = loop.time()
        with pytest.raises(DeadlineExceeded, match="sent nothing") as info:
            await client.send(
                kv.Request(put=kv.PutRequest(key=b"a", value=b"1")),
                key=b"a",
                write=True,
                idempotent=True,
            )
        assert loop.time() - started < 2.0  # given up at the silence, not at the deadline
        assert connecting.is_set() and not info.value.maybe_committed
        assert client.routing.leader_for(gid) != old
    assert cluster.count("put") == 0 and b"a" not in cluster.store


@with_cluster
async def test_a_scan_part_planned_on_an_older_map_is_not_sent_under_the_new_one(
    cluster: FakeCluster,
) -> None:
    """A group-routed part planned on map v1, whose send refreshes the map to v2 first, is
    re-planned before anything is sent (not sent under v2 to be refused WRONG_SHARD)."""
    async with client_for(cluster) as client:
        await client.put(b"q", b"1")
        await client.put(b"u", b"2")
        cluster.map = cluster.map.split(3, b"t", 4, (1, 2, 3), preferred_leader=2)
        cluster.leaders[4] = 2
        client.routing.on_wrong_shard(cluster.map.version)  # another request's answer
        scans = cluster.count("scan")
        assert [k for k, _, _ in await client.scan(b"p")] == [b"q", b"u"]
        assert cluster.count("scan") - scans == 2  # one per part of v2, nothing refused


def never_connects(client: RoutingClient, address: str) -> asyncio.Event:
    """The client's connection to `address` never becomes ready (a handshake that never
    ends, as with a frozen node), so nothing queued there is ever written to a stream; the
    event is set once it starts connecting."""
    connecting = asyncio.Event()

    async def never_ready() -> str | None:
        connecting.set()
        await asyncio.Event().wait()
        return None

    client._connection(address)._wait_ready = never_ready  # type: ignore[method-assign]
    return connecting


@with_cluster
async def test_a_write_still_queued_at_its_deadline_is_deadline_exceeded(
    cluster: FakeCluster,
) -> None:
    """Rule 2: a write whose deadline passes before it was written to any stream (here the
    leader's connection never becomes ready) surely was not applied: DeadlineExceeded, not
    OutcomeUnknown (mutation audit: a timed-out write reported OutcomeUnknown whether or
    not it was sent went unnoticed)."""
    gid = cluster.map.locate(b"a").group_id
    leader = cluster.nodes[cluster.leaders[gid]]
    async with client_for(cluster) as client:  # the map comes from node 1, the seed
        connecting = never_connects(client, leader.address)
        with pytest.raises(DeadlineExceeded) as info:
            await client.put(b"a", b"1", timeout_s=0.5)
        assert connecting.is_set() and not info.value.maybe_committed
    assert cluster.count("put") == 0


class _StreamWhoseWriteFails:
    """A Batch stream whose write raises `error` and ends the stream (its bytes may or may
    not have left)."""

    def __init__(self, error: grpc.aio.AioRpcError) -> None:
        self.error = error
        self._ended = asyncio.Event()

    async def write(self, _batch: kv.RequestBatch) -> None:
        self._ended.set()
        raise self.error

    async def read(self) -> Any:
        await self._ended.wait()
        return grpc.aio.EOF

    def done(self) -> bool:
        return self._ended.is_set()

    def cancel(self) -> None:
        self._ended.set()


@pytest.mark.parametrize(
    ("details", "maybe_applied"),
    [("Socket closed", True), ("failed to connect to all addresses; Connection refused", False)],
    ids=["socket-closed", "connection-refused"],
)
def test_a_failed_stream_write_is_a_maybe_applied_write_unless_the_node_refused_the_connection(
    details: str, maybe_applied: bool
) -> None:
    """Rule 2 at the stream: a write whose `stream.write` raised may have left (its bytes
    were handed to gRPC), so OutcomeUnknown; only a refused connection proves nothing left,
    and then the put is re-sent until its deadline (mutation audit: taking every failed
    write as "nothing sent" went unnoticed)."""

    @with_cluster
    async def scenario(cluster: FakeCluster) -> None:
        leader = cluster.nodes[cluster.leaders[cluster.map.locate(b"a").group_id]]
        error = grpc.aio.AioRpcError(
            grpc.StatusCode.UNAVAILABLE, grpc.aio.Metadata(), grpc.aio.Metadata(), details
        )
        async with client_for(cluster, timeout_s=1.0, attempt_timeout_s=0.2) as client:
            # Before the first stream to the leader: every stream it opens fails so.
            conn = client._connection(leader.address)
            conn.stub.Batch = lambda: _StreamWhoseWriteFails(error)
            expected = OutcomeUnknown if maybe_applied else DeadlineExceeded
            with pytest.raises(expected) as info:
                await client.put(b"a", b"1")
            assert info.value.maybe_committed is maybe_applied
        assert b"a" not in cluster.store  # only the failing stream reached the leader

    scenario()


@pytest.mark.parametrize(
    ("code", "details", "said"),
    [
        (
            grpc.StatusCode.UNAVAILABLE,
            "failed to connect to all addresses; last error: "
            "UNKNOWN: ipv4:127.0.0.1:7001: Failed to connect to remote host: Connection refused",
            "connection refused",
        ),
        (
            grpc.StatusCode.UNAVAILABLE,
            "failed to connect to all addresses; last error: UNKNOWN: "
            "connection attempt timed out before receiving SETTINGS frame",
            "no answer: the connection timed out (the node may be paused or overloaded)",
        ),
        (grpc.StatusCode.DEADLINE_EXCEEDED, "Deadline Exceeded", "no answer before the deadline"),
    ],
)
def test_a_failed_call_is_described_in_one_short_reason(
    code: grpc.StatusCode, details: str, said: str
) -> None:
    """What `paxoskv status` shows of a node it cannot reach (found by a README walk-through:
    a paused node's row carried gRPC's whole message)."""
    error = grpc.aio.AioRpcError(code, grpc.aio.Metadata(), grpc.aio.Metadata(), details)
    assert _describe_rpc_error(error) == said


def test_a_timeout_too_short_to_connect_says_so_not_to_check_the_addresses() -> None:
    """Found by a client-API review: a client with a 4 ms timeout_s never connected, and
    was told to check its addresses and that the nodes run, which were fine. A listener
    that never answers stands in for a node slower than the timeout."""
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        address = f"127.0.0.1:{silent.getsockname()[1]}"

        async def scenario() -> str:
            client = RoutingClient([address], timeout_s=0.05)
            try:
                with pytest.raises(Unavailable) as info:
                    await client.connect()
            finally:
                await client.close()
            return str(info.value)

        said = asyncio.run(scenario())
    assert "too short to connect" in said and "check the cluster addresses" not in said
    # Said to Python callers and command-line users alike (found by a UX review: the
    # command line has no timeout_s).
    assert "timeout_s=, or --timeout" in said


@with_cluster
async def test_a_deadline_that_passed_before_any_try_says_so(cluster: FakeCluster) -> None:
    """Found by an application trial: after a client process was paused past its deadline,
    DeadlineExceeded said "last: no attempt made", which explained nothing."""
    async with client_for(cluster) as client:
        await client.get(b"a")  # connected
        with pytest.raises(
            DeadlineExceeded, match=r"passed .* before a try was sent to the cluster"
        ):
            await client.get(b"a", timeout_s=1e-9)
        cluster.hook = lambda node, request: DROP if request.WhichOneof("op") == "get" else None
        with pytest.raises(DeadlineExceeded) as info:
            await client.get(b"a", timeout_s=0.3)
        assert "no attempt" not in str(info.value) and "last: " not in str(info.value)
