"""A node's standard gRPC health service (grpc.health.v1.Health), for load balancers and
orchestrators: Kubernetes' gRPC probes, `grpc_health_probe`, Envoy.

Two service names are answered:

- `""` (the server): SERVING from the node's start until its stop begins, NOT_SERVING
  from then on (a liveness or drain signal);
- `paxoskv.kv.KV` (the client service): SERVING while every group this node hosts knows a
  live leader (`NodeCore.groups_without_leader`), so that a request sent here is served or
  redirected at once; NOT_SERVING while some group has none (an election, or this node
  cut off from its peers): a readiness signal.
"""

from __future__ import annotations

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1._async import HealthServicer

from shard.grpc_handlers import add_servicer

SERVER = ""
KV_SERVICE = "paxoskv.kv.KV"
# How often the client service's status is looked at: well inside the election timeout, far
# above the loop's cost of looking (one check per hosted group).
OBSERVE_INTERVAL_S = 0.1
SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


class NodeHealth:
    """The node's health servicer and the statuses it last published."""

    def __init__(self) -> None:
        self._servicer = HealthServicer()
        self._kv_serving: bool | None = None

    def add_to(self, server: grpc.aio.Server) -> None:
        add_servicer(health_pb2_grpc.add_HealthServicer_to_server, self._servicer, server)

    async def started(self, groups_without_leader: list[int]) -> None:
        await self._servicer.set(SERVER, SERVING)
        await self.observe(groups_without_leader)

    async def observe(self, groups_without_leader: list[int]) -> None:
        """Publish the client service's status if it changed."""
        serving = not groups_without_leader
        if serving != self._kv_serving:
            self._kv_serving = serving
            await self._servicer.set(KV_SERVICE, SERVING if serving else NOT_SERVING)

    async def stopping(self) -> None:
        """Every service NOT_SERVING, for good: the node is stopping."""
        await self._servicer.enter_graceful_shutdown()
