"""Real processes: bad input over the wire (DESIGN.md contract 6).

Oversized keys and values, malformed requests, raw garbage bytes, unknown groups, a wrong
cluster id, requests to a stopped or frozen node and peer streams that claim another cluster
each get a clear error; afterwards every node still answers Status and the data written
before is unchanged.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import grpc
import pytest
from rocksdict import AccessType, Options, Rdict

from router import kv_pb2 as kv
from shard import peer_pb2, peer_pb2_grpc
from shard.cluster import LocalCluster, wait_for
from shard.limits import MAX_KEY_BYTES, MAX_VALUE_BYTES
from shard.node_identity import RUNS_KEY, Incarnation, node_incarnation, split_runs
from shard.runtime import bootstrap_map
from shard.transport import PROTOCOL, SECRET_HEADER, map_digest

pytestmark = pytest.mark.cluster

SENTINELS = {b"b-sentinel": b"one", b"m-sentinel": b"two", b"t-sentinel": b"three"}


@pytest.fixture(scope="module")
def sentinel_cluster(shared_cluster: LocalCluster, kv_of: Any) -> LocalCluster:
    """The module's shared cluster with one known key in every shard."""
    kv_ = kv_of(shared_cluster)
    for key, value in SENTINELS.items():
        kv_.put(key, value)
    kv_.close()
    return shared_cluster


@pytest.fixture
def c(sentinel_cluster: LocalCluster, kv_of: Any) -> Iterator[LocalCluster]:
    """After each test: every node answers Status and the sentinels are unchanged."""
    yield sentinel_cluster
    sentinel_cluster.wait_healthy(30.0)
    kv_ = kv_of(sentinel_cluster)
    for key, value in SENTINELS.items():
        assert kv_.get(key) == value, f"{key!r} changed after bad input"
    kv_.close()


def _leader_stub(c: LocalCluster, group_id: int) -> Any:
    return c.stub(c.wait_for_leader(group_id))


def _header(c: LocalCluster, group_id: int, **kw: Any) -> kv.Header:
    return kv.Header(cluster_id=kw.get("cluster_id", c.cluster_id), group_id=group_id)


def test_oversized_key_and_value_are_refused(c: LocalCluster) -> None:
    stub = _leader_stub(c, 1)
    header = _header(c, 1)
    big_key = b"b" * (MAX_KEY_BYTES + 1)
    for name, response in [
        ("put key", stub.Put(kv.PutRequest(header=header, key=big_key, value=b"x"), timeout=5)),
        ("get key", stub.Get(kv.GetRequest(header=header, key=big_key), timeout=5)),
        ("delete key", stub.Delete(kv.DeleteRequest(header=header, key=big_key), timeout=5)),
        (
            "put value",
            stub.Put(
                kv.PutRequest(header=header, key=b"b-big", value=b"v" * (MAX_VALUE_BYTES + 1)),
                timeout=5,
            ),
        ),
        (
            "cas value",
            stub.CompareAndSet(
                kv.CasRequest(
                    header=header,
                    key=b"b-big",
                    expect_absent=True,
                    new_value=b"v" * (MAX_VALUE_BYTES + 1),
                ),
                timeout=5,
            ),
        ),
    ]:
        assert response.error.code == kv.LIMIT_EXCEEDED, (name, response.error)
        assert "MAX_" in response.error.message or "limit" in response.error.message.lower()
    # The limits themselves are allowed.
    ok = stub.Put(
        kv.PutRequest(header=header, key=b"b" * MAX_KEY_BYTES, value=b"v" * MAX_VALUE_BYTES),
        timeout=10,
    )
    assert ok.error.code == kv.OK, ok.error
    got = stub.Get(kv.GetRequest(header=header, key=b"b" * MAX_KEY_BYTES), timeout=5)
    assert got.found and len(got.value) == MAX_VALUE_BYTES
    assert not stub.Get(kv.GetRequest(header=header, key=b"b-big"), timeout=5).found


def test_malformed_requests_are_refused(c: LocalCluster) -> None:
    stub = _leader_stub(c, 1)
    header = _header(c, 1)
    cases = {
        "cas without condition": stub.CompareAndSet(
            kv.CasRequest(header=header, key=b"b-sentinel", new_value=b"x"), timeout=5
        ),
        "cas without action": stub.CompareAndSet(
            kv.CasRequest(header=header, key=b"b-sentinel", expected_value=b"one"), timeout=5
        ),
        "empty key put": stub.Put(kv.PutRequest(header=header, key=b"", value=b"x"), timeout=5),
        "empty key get": stub.Get(kv.GetRequest(header=header, key=b""), timeout=5),
    }
    for name, response in cases.items():
        assert response.error.code == kv.INVALID_ARGUMENT, (name, response.error)
        assert response.error.message, name
    # A scan whose end lies outside the group is the wrong shard, not a partial answer.
    scan = stub.Scan(kv.ScanRequest(header=header, start=b"a", end=b"zz"), timeout=5)
    assert scan.error.code == kv.WRONG_SHARD, scan.error
    # A key of another group, sent to this group.
    wrong = stub.Put(kv.PutRequest(header=header, key=b"zebra", value=b"x"), timeout=5)
    assert wrong.error.code == kv.WRONG_SHARD, wrong.error
    assert wrong.error.map_version >= 1


def test_empty_and_mixed_batch_requests(c: LocalCluster) -> None:
    """Over the Batch stream: an empty Request gets its own error, its neighbours succeed."""
    stub = _leader_stub(c, 1)
    header = _header(c, 1)
    batch = kv.RequestBatch(
        requests=[
            kv.Request(id=1),
            kv.Request(id=2, get=kv.GetRequest(header=header, key=b"b-sentinel")),
            kv.Request(id=3, put=kv.PutRequest(header=header, key=b"", value=b"x")),
        ]
    )
    responses = {}
    for out in stub.Batch(iter([batch]), timeout=10):
        for response in out.responses:
            responses[response.id] = response
    assert set(responses) == {1, 2, 3}
    assert responses[1].WhichOneof("result") == "error" or responses[1].error.code != kv.OK
    assert responses[1].error.code == kv.INVALID_ARGUMENT, responses[1]
    assert responses[2].get.value == b"one", responses[2]
    assert responses[3].put.error.code == kv.INVALID_ARGUMENT, responses[3]


GARBAGE = b"\xff\xfe\x00\x01garbage\x8f" * 50  # not a protobuf message ("wire format corrupt")


def test_garbage_bytes_are_refused(c: LocalCluster) -> None:
    """Raw bytes that are no protobuf message, through a generic call with identity
    serializers: the call is refused INVALID_ARGUMENT, the node stays up."""
    for name in c.names:
        channel = c.channel(name)
        for method in ("/paxoskv.kv.KV/Put", "/paxoskv.kv.KV/Get", "/paxoskv.kv.KV/Status"):
            call = channel.unary_unary(method)  # no serializers: bytes in, bytes out
            with pytest.raises(grpc.RpcError) as info:
                call(GARBAGE, timeout=5)
            # A typed refusal (shard.grpc_handlers), not grpc's UNKNOWN with a traceback
            # in the node's log per request.
            assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT, (name, method)
            assert "undecodable request" in info.value.details()
        unknown = channel.unary_unary("/paxoskv.kv.KV/NoSuchMethod")
        with pytest.raises(grpc.RpcError) as info:
            unknown(b"", timeout=5)
        assert info.value.code() == grpc.StatusCode.UNIMPLEMENTED
        assert c.status(name).node_name == name


def test_garbage_on_the_batch_stream_is_an_error(c: LocalCluster) -> None:
    for name in c.names:
        stream = c.channel(name).stream_stream("/paxoskv.kv.KV/Batch")
        with pytest.raises(grpc.RpcError):
            responses = list(stream(iter([GARBAGE, GARBAGE]), timeout=5))
            print(f"{name}: Batch ended OK with {len(responses)} responses to garbage")
        assert c.status(name).node_name == name


def test_unknown_group_and_wrong_cluster(c: LocalCluster) -> None:
    stub = _leader_stub(c, 1)
    for group_id in (0, 99):
        got = stub.Get(kv.GetRequest(header=_header(c, group_id), key=b"b-sentinel"), timeout=5)
        assert got.error.code == kv.UNKNOWN_GROUP, (group_id, got.error)
        put = stub.Put(
            kv.PutRequest(header=_header(c, group_id), key=b"b-sentinel", value=b"evil"),
            timeout=5,
        )
        assert put.error.code == kv.UNKNOWN_GROUP, (group_id, put.error)
    for cluster_id in ("", "another-cluster"):
        header = _header(c, 1, cluster_id=cluster_id)
        put = stub.Put(kv.PutRequest(header=header, key=b"b-sentinel", value=b"evil"), timeout=5)
        assert put.error.code == kv.WRONG_CLUSTER, (cluster_id, put.error)
        assert c.cluster_id in put.error.message
        shard_map = stub.GetShardMap(kv.ShardMapRequest(cluster_id="another-cluster"), timeout=5)
        assert shard_map.error.code == kv.WRONG_CLUSTER


def test_peer_stream_with_wrong_cluster_or_unknown_node_is_refused(c: LocalCluster) -> None:
    """Open the node-to-node Exchange stream as an impostor: a stream without the cluster's
    peer secret (a client knows the cluster id and the node ids from Status), a batch
    claiming another cluster, a node that is not a peer, one of an older protocol version,
    or one whose config gives another shard map, is refused with a reason and the stream
    ends; a batch of undecodable messages is dropped."""
    target = c.names[0]
    stub = peer_pb2_grpc.PeerStub(c.channel(target))
    peer = c.node(c.names[1]).id
    secret = ((SECRET_HEADER, c.config.peer_secret),)
    digest = map_digest(bootstrap_map(c.config))
    ours = {"cluster_id": c.cluster_id, "protocol": PROTOCOL, "map_digest": digest}
    impostors = [
        (peer_pb2.PeerBatch(from_node=peer, **ours), None),
        (peer_pb2.PeerBatch(from_node=peer, **ours), ((SECRET_HEADER, "x"),)),
        (peer_pb2.PeerBatch(cluster_id="bogus-cluster", from_node=2, protocol=PROTOCOL), secret),
        (peer_pb2.PeerBatch(from_node=99, **ours), secret),
        # A node of an older version (no protocol field): refused, nothing of it applied.
        (peer_pb2.PeerBatch(cluster_id=c.cluster_id, from_node=peer), secret),
        # A node whose config moved a split point (or lost the map digest).
        (peer_pb2.PeerBatch(cluster_id=c.cluster_id, from_node=peer, protocol=PROTOCOL), secret),
    ]
    refusals = []
    for batch, metadata in impostors:
        replies = list(stub.Exchange(iter([batch]), timeout=5, metadata=metadata))
        assert len(replies) == 1 and replies[0].refusal, (batch, replies)
        refusals.append(replies[0].refusal)
    assert all("peer secret" in r for r in refusals[:2]), refusals
    assert "speaks protocol version 0" in refusals[-2], refusals
    assert "config gives another shard map" in refusals[-1], refusals
    # With the secret, a made-up incarnation of a real peer: refused, as a peer that came
    # back with new data no rebuild made (shard/node_identity.py).
    forged = peer_pb2.PeerBatch(from_node=peer, incarnation=b"made-up", **ours)
    replies = list(stub.Exchange(iter([forged]), timeout=5, metadata=secret))
    assert len(replies) == 1 and "came back with new data" in replies[0].refusal, replies
    # Right cluster and a real peer in its incarnation, but messages that do not decode:
    # dropped, not applied (the one reply accepts the stream's first batch).
    real = _incarnation_of(c, c.names[1])
    junk = peer_pb2.PeerBatch(
        messages=[peer_pb2.GroupMessage(group_id=1), peer_pb2.GroupMessage(group_id=99)],
        from_node=peer,
        incarnation=real.token,
        runs=b"".join(real.runs),
        run_count=real.run_count,
        **ours,
    )
    replies = list(stub.Exchange(iter([junk]), timeout=5, metadata=secret))
    assert [(r.refusal, r.protocol) for r in replies] == [("", PROTOCOL)]
    assert c.status(target).node_name == target


def _incarnation_of(c: LocalCluster, name: str) -> Incarnation:
    """A running node's incarnation and runs, read from its RocksDB opened read-only beside
    it (a hello without the runs its peers saw is refused)."""
    path = c.config.node_data_dir(c.node(name)) / "db"
    db = Rdict(str(path), Options(raw_mode=True), access_type=AccessType.read_only())
    try:
        incarnation = node_incarnation(db)
        raw = db[RUNS_KEY]
    finally:
        db.close()
    runs = split_runs(raw[8:])
    assert runs is not None
    return replace(incarnation, runs=runs, run_count=int.from_bytes(raw[:8], "big"))


def test_request_to_a_stopped_or_frozen_node_fails_fast(c: LocalCluster, kv_of: Any) -> None:
    """A stopped node: connection refused -> UNAVAILABLE, not a hang. A frozen (SIGSTOP)
    node: the client's deadline fires. The others keep serving; both come back."""
    kv_ = kv_of(c)
    victim = c.names[-1]
    c.stop_node(victim)
    request = kv.GetRequest(header=_header(c, 1), key=b"b-sentinel")
    t0 = time.monotonic()
    with pytest.raises(grpc.RpcError) as info:
        kv_.stub(victim).Get(request, timeout=10)
    assert info.value.code() == grpc.StatusCode.UNAVAILABLE, info.value
    print(f"\nstopped node answered {info.value.code().name} in {time.monotonic() - t0:.3f} s")
    assert kv_.get(b"b-sentinel") == b"one"  # the majority still serves
    c.restart(victim)
    c.wait_healthy(30.0)
    c.pause(victim)
    try:
        with pytest.raises(grpc.RpcError) as info:
            kv_.stub(victim).Get(request, timeout=1.0)
        assert info.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED, info.value
    finally:
        c.resume(victim)
    wait_for(
        lambda: c.status(victim).node_name == victim, 10.0, f"{victim} to answer after SIGCONT"
    )
    kv_.close()
