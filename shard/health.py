"""A node's standard gRPC health service (grpc.health.v1.Health), for load balancers and
orchestrators: Kubernetes' gRPC probes, `grpc_health_probe`, Envoy, gRPC's client-side
health checking.

Two service names are answered:

- `""` (the server): SERVING from the node's start until its stop begins, NOT_SERVING
  from then on (a liveness or drain signal);
- `paxoskv.kv.KV` (the client service): SERVING while every group this node hosts knows a
  live leader (`NodeCore.groups_without_leader`), so that a request sent here is served or
  redirected at once; NOT_SERVING while some group has none (an election, or this node
  cut off from its peers): a readiness signal.

The servicer is this module's, not grpcio-health-checking's asyncio one (only its
messages are used): that one's Watch forgets every other watcher of a service once one of
them ends (found by review; grpc/grpc#43403), so a proxy's stream kept showing SERVING.
"""

from __future__ import annotations

import asyncio

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from shard.grpc_handlers import add_servicer

SERVER = ""
KV_SERVICE = "paxoskv.kv.KV"
SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
SERVICE_UNKNOWN = health_pb2.HealthCheckResponse.SERVICE_UNKNOWN
# How often the client service's status is looked at: well inside the election timeout, far
# above the loop's cost of looking (one check per hosted group).
OBSERVE_INTERVAL_S = 0.1


class _HealthServicer(health_pb2_grpc.HealthServicer):  # type: ignore[misc]  # untyped base
    """Check, Watch and List over a table of statuses; every change wakes every watcher."""

    def __init__(self) -> None:
        self.statuses: dict[str, int] = {SERVER: SERVING}
        # Replaced at each change, after it is set: a watcher holding the old one wakes.
        self._changed = asyncio.Event()

    def set(self, service: str, status: int) -> None:
        if self.statuses.get(service) == status:
            return
        self.statuses[service] = status
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()

    async def Check(
        self, request: health_pb2.HealthCheckRequest, context: grpc.aio.ServicerContext
    ) -> health_pb2.HealthCheckResponse:
        status = self.statuses.get(request.service)
        if status is None:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"unknown service {request.service!r}")
        return health_pb2.HealthCheckResponse(status=status)

    async def Watch(
        self, request: health_pb2.HealthCheckRequest, context: grpc.aio.ServicerContext
    ) -> None:
        last = None
        while True:
            changed = self._changed  # before the read: a change from here on sets it
            status = self.statuses.get(request.service, SERVICE_UNKNOWN)
            if status != last:
                await context.write(health_pb2.HealthCheckResponse(status=status))
                last = status
            await changed.wait()

    async def List(
        self, request: health_pb2.HealthListRequest, context: grpc.aio.ServicerContext
    ) -> health_pb2.HealthListResponse:
        return health_pb2.HealthListResponse(
            statuses={s: health_pb2.HealthCheckResponse(status=v) for s, v in self.statuses.items()}
        )


class NodeHealth:
    """The node's health servicer, and whether the node is stopping."""

    def __init__(self) -> None:
        self._servicer = _HealthServicer()
        self._stopping = False

    def add_to(self, server: grpc.aio.Server) -> None:
        add_servicer(health_pb2_grpc.add_HealthServicer_to_server, self._servicer, server)

    def started(self, groups_without_leader: list[int]) -> None:
        self._servicer.set(SERVER, SERVING)
        self.observe(groups_without_leader)

    def observe(self, groups_without_leader: list[int]) -> None:
        """Publish the client service's status (nothing changes once the node is stopping)."""
        if not self._stopping:
            self._servicer.set(KV_SERVICE, NOT_SERVING if groups_without_leader else SERVING)

    def unknown(self) -> None:
        """The groups' leaders could not be read: the client service is NOT_SERVING, not
        known to serve (found by review: reporting every hosted group leaderless said
        SERVING on a node that hosts none)."""
        if not self._stopping:
            self._servicer.set(KV_SERVICE, NOT_SERVING)

    def stopping(self) -> None:
        """Every service NOT_SERVING, for good: the node is stopping."""
        self._stopping = True
        for service in list(self._servicer.statuses):
            self._servicer.set(service, NOT_SERVING)
