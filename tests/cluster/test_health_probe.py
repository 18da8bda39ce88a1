"""Real processes: every node answers the standard gRPC health check (grpc.health.v1), and
its client service goes NOT_SERVING once the node is cut off from its groups' leaders."""

from __future__ import annotations

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from shard.cluster import LocalCluster, wait_for
from shard.health import KV_SERVICE, NOT_SERVING, SERVER, SERVING

pytestmark = pytest.mark.cluster


def _status(cluster: LocalCluster, name: str, service: str) -> int:
    with grpc.insecure_channel(cluster.addresses[name]) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        request = health_pb2.HealthCheckRequest(service=service)
        return int(stub.Check(request, timeout=5.0).status)


def test_health_checks_follow_the_groups_leaders(cluster: LocalCluster) -> None:
    for name in cluster.names:
        wait_for(
            lambda n=name: _status(cluster, n, KV_SERVICE) == SERVING,
            10.0,
            f"{name}'s client service to be SERVING",
        )
        assert _status(cluster, name, SERVER) == SERVING
    survivor, *others = cluster.names
    for name in others:
        cluster.kill(name)
    # Two of three replicas gone: no group has a quorum, so no live leader anywhere.
    wait_for(
        lambda: _status(cluster, survivor, KV_SERVICE) == NOT_SERVING,
        10.0,
        f"{survivor}'s client service to be NOT_SERVING without a quorum",
    )
    assert _status(cluster, survivor, SERVER) == SERVING  # the process itself is fine
    for name in others:
        cluster.restart(name)
    wait_for(
        lambda: _status(cluster, survivor, KV_SERVICE) == SERVING,
        20.0,
        f"{survivor}'s client service to be SERVING again",
    )
