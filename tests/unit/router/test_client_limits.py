"""The routing client refuses, before queueing it, a request the node would refuse for its
size (router.limits), with the node's message.

Found by review: nothing was checked locally, and a request over gRPC's 64 MiB message limit
failed the shared Batch stream at the client's write: the put was reported OutcomeUnknown
(nothing had left the client), every other caller's write in flight on that stream too, and
a get was retried on each replica in turn, breaking each stream, until its deadline.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from router import kv_pb2 as kv
from router.client_errors import LimitExceeded
from router.limits import (
    MAX_COMMAND_BYTES,
    MAX_KEY_BYTES,
    MAX_PARTICIPANTS,
    MAX_REQUEST_BYTES,
    MAX_TXN_ITEMS,
    MAX_VALUE_BYTES,
    request_refusal,
)
from tests.unit.router.test_client_routing import (
    FakeCluster,
    FakeNode,
    client_for,
    run,
    with_cluster,
)
from tests.unit.shard.test_node_core import OneNode, header, tid

OVER_GRPC = 65 * 1024 * 1024  # over gRPC's 64 MiB message limit
HELD = b"a-held"  # group 1 (split points g, p), as every key of these tests


class HoldingNode(FakeNode):
    """Holds its answer to a put of HELD until `release` is set (`arrived` is set once the
    put reached it); answers everything else at once."""

    def __init__(
        self, cluster: FakeCluster, node_id: int, arrived: asyncio.Event, release: asyncio.Event
    ) -> None:
        super().__init__(cluster, node_id)
        self.arrived = arrived
        self.release = release

    async def Batch(self, request_iterator: Any, context: Any) -> Any:
        answers: asyncio.Queue[kv.ResponseBatch] = asyncio.Queue()

        async def answer(request: kv.Request) -> None:
            if request.WhichOneof("op") == "put" and request.put.key == HELD:
                self.arrived.set()
                await self.release.wait()
            await answers.put(kv.ResponseBatch(responses=[self.cluster.handle(self, request)]))

        async def read() -> None:
            async for batch in request_iterator:
                for request in batch.requests:
                    tasks.add(asyncio.ensure_future(answer(request)))

        tasks: set[asyncio.Future[None]] = set()
        reader = asyncio.ensure_future(read())
        try:
            while True:
                yield await answers.get()
        finally:
            for task in (reader, *tasks):
                task.cancel()


@run
async def test_an_oversized_put_is_limit_exceeded_and_spares_a_write_in_flight() -> None:
    arrived, release = asyncio.Event(), asyncio.Event()
    cluster = FakeCluster()
    cluster.nodes = {i: HoldingNode(cluster, i, arrived, release) for i in cluster.nodes}
    await cluster.start()
    try:
        async with client_for(cluster, timeout_s=5.0) as client:
            waiting = asyncio.ensure_future(client.put(HELD, b"v"))
            await arrived.wait()  # written to the leader's stream, its answer held back
            with pytest.raises(LimitExceeded, match="MAX_VALUE_BYTES") as refused:
                await client.put(b"a-big", b"x" * OVER_GRPC)
            assert not refused.value.maybe_committed
            release.set()
            assert await waiting > 0  # answered on the same, unbroken stream
            assert client.stats()["sessions"] == 1
        assert cluster.count("put", b"a-big") == 0
    finally:
        await cluster.stop()


@with_cluster
async def test_an_oversized_get_is_refused_at_once_not_retried_until_the_deadline(
    cluster: FakeCluster,
) -> None:
    # A deadline past the test's own 30 s bound: retried until it, the test times out (a
    # wall-clock bound on the refusal failed on a loaded machine, the first connect in it).
    async with client_for(cluster, timeout_s=120.0) as client:
        with pytest.raises(LimitExceeded, match="MAX_KEY_BYTES"):
            await client.get(b"k" * OVER_GRPC)
        assert client.stats()["sessions"] == 0  # no stream was opened, none broken
    assert cluster.count("get") == 0


@with_cluster
async def test_a_key_or_range_bound_at_its_limit_is_sent(cluster: FakeCluster) -> None:
    """The limits are inclusive: a key of MAX_KEY_BYTES, and a range bound one byte longer
    (the bound just after such a key), reach the node (mutation audit: refusing either at
    its limit went unnoticed)."""
    key = b"a" * MAX_KEY_BYTES
    async with client_for(cluster) as client:
        assert await client.put(key, b"v") > 0
        assert [k for k, _, _ in await client.scan(key, key + b"\x00")] == [key]
    assert cluster.count("put") == 1 and cluster.count("scan") == 1


@with_cluster
async def test_a_size_refusal_is_a_value_error(cluster: FakeCluster) -> None:
    """LimitExceeded is a ValueError, as InvalidArgument is: a caller's `except ValueError`
    catches an oversized key (mutation audit: dropping the base went unnoticed)."""
    async with client_for(cluster) as client:
        with pytest.raises(ValueError, match="MAX_KEY_BYTES") as refused:
            await client.put(b"k" * (MAX_KEY_BYTES + 1), b"v")
    assert isinstance(refused.value, LimitExceeded) and refused.value.code == "LIMIT_EXCEEDED"


def test_a_transaction_part_at_its_limits_is_not_refused() -> None:
    """MAX_TXN_ITEMS keys and ranges, and MAX_COMMAND_BYTES bytes, per group are allowed:
    the limits are inclusive (mutation audit: refusing a part at either limit went
    unnoticed)."""
    items = [kv.ReadItem(key=b"a%05d" % i) for i in range(MAX_TXN_ITEMS)]
    at_items = kv.CommitOnePhaseRequest(reads=items)
    writes = [
        kv.WriteItem(key=b"a" * MAX_KEY_BYTES, value=b"v" * MAX_VALUE_BYTES),
        kv.WriteItem(key=b"b" * MAX_KEY_BYTES, value=b"v" * MAX_VALUE_BYTES),
        kv.WriteItem(key=b"c" * 512, value=b"v" * 512),
    ]
    at_bytes = kv.CommitOnePhaseRequest(writes=writes)
    assert sum(len(w.key) + len(w.value) for w in writes) == MAX_COMMAND_BYTES
    for op in (at_items, at_bytes):
        assert request_refusal("commit_one_phase", op) is None


def _oversized_requests() -> list[tuple[str, kv.Request]]:
    """Requests (no header: the client fills it in) a node refuses for one size each."""
    big_key = b"a" * (MAX_KEY_BYTES + 1)
    big_value = b"v" * (MAX_VALUE_BYTES + 1)
    long_bound = b"a" * (MAX_KEY_BYTES + 2)
    megabyte = b"v" * MAX_VALUE_BYTES
    many = [kv.ReadItem(key=b"a%05d" % i) for i in range(MAX_TXN_ITEMS + 1)]
    heavy = [kv.WriteItem(key=b"a%d" % i, value=megabyte) for i in range(3)]
    votes = [kv.VoteProof() for _ in range(MAX_PARTICIPANTS + 1)]  # no participants named
    return [
        ("get key", kv.Request(get=kv.GetRequest(key=big_key))),
        ("delete key", kv.Request(delete=kv.DeleteRequest(key=big_key))),
        ("put key", kv.Request(put=kv.PutRequest(key=big_key, value=b"v"))),
        ("put value", kv.Request(put=kv.PutRequest(key=b"a", value=big_value))),
        (
            "cas new",
            kv.Request(cas=kv.CasRequest(key=b"a", expect_absent=True, new_value=big_value)),
        ),
        (
            "cas expected",
            kv.Request(cas=kv.CasRequest(key=b"a", expected_value=big_value, delete=True)),
        ),
        ("scan start", kv.Request(scan=kv.ScanRequest(start=long_bound, end=b"b"))),
        ("scan end", kv.Request(scan=kv.ScanRequest(start=b"a", end=b"a" + long_bound))),
        ("part items", kv.Request(commit_one_phase=kv.CommitOnePhaseRequest(reads=many))),
        ("resolve votes", kv.Request(resolve=kv.ResolveRequest(votes=votes))),
        ("part bytes", kv.Request(commit_one_phase=kv.CommitOnePhaseRequest(writes=heavy))),
        (
            "part range",
            kv.Request(
                commit_one_phase=kv.CommitOnePhaseRequest(
                    read_ranges=[kv.KeyRange(start=long_bound, end=b"b")]
                )
            ),
        ),
    ]


@with_cluster
async def test_what_a_node_refuses_for_size_is_refused_unsent_with_the_nodes_message(
    cluster: FakeCluster,
) -> None:
    node = OneNode()  # a real NodeCore (split at "m": every key here is in group 1)
    async with client_for(cluster) as client:
        for name, request in _oversized_requests():
            kind = request.WhichOneof("op")
            at_node = kv.Request()
            at_node.CopyFrom(request)
            op = getattr(at_node, kind)
            op.header.CopyFrom(header(1))
            if kind == "commit_one_phase":
                op.txn_id, op.ts = tid(b"big"), 1
            answer = node.call(at_node)
            error = getattr(answer, answer.WhichOneof("result")).error
            assert error.code == kv.LIMIT_EXCEEDED, (name, error)
            with pytest.raises(LimitExceeded) as refused:
                await client.send(request, group_id=1, write=kind not in ("get", "scan"))
            assert str(refused.value) == error.message, name
    assert cluster.seen == []


@with_cluster
async def test_a_request_over_max_request_bytes_is_refused_unsent(cluster: FakeCluster) -> None:
    """Sizes no node limit describes (a raw send): still never near gRPC's message limit."""
    txn_id = b"t" * MAX_REQUEST_BYTES  # refused by a node as INVALID_ARGUMENT, once read
    request = kv.Request(decide=kv.DecideRequest(txn_id=txn_id, participants=[1]))
    async with client_for(cluster) as client:
        with pytest.raises(LimitExceeded, match="MAX_REQUEST_BYTES"):
            await client.send(request, group_id=1, write=True)
    assert cluster.seen == []
