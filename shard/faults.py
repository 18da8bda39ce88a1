"""Fault hooks for the chaos harness (`paxoskv chaos`): off unless PAXOSKV_FAULTS=1.

A normal node never calls into this module beyond `maybe_install_faults`, which returns
None at once when the environment variable is not exactly "1". Only the chaos harness sets
it (shard/chaos/netns.py `ChaosCluster(faults=True)`). When it is set, the node:

- wraps five seams of its `NodeRuntime` (all no-ops until armed):
  outgoing peer messages (`_send`), incoming peer messages (`_deliver`), client requests
  (`submit`: their reply callback), the apply step (`core.apply`) and the disk's synced
  writes (`disk.persist_owing_sync`, `disk.sync`);
- serves one extra gRPC method, ``/paxoskv.Faults/Control``, whose request and response
  are JSON objects (no proto: the service is a test tool and must not grow an API).

Controls (request ``{"op": ...}``; every answer includes the current state):

=================  ===========================================================================
op                 effect
=================  ===========================================================================
status             nothing
partition          ``peers: [ids]``: drop every peer message to and from these nodes (added
                   to the set already cut). Only Paxos peer streams: the node's own client
                   calls to other groups (2PC duties) still flow — a real network partition
                   (shard/chaos/netns.py) cuts those too
heal               forget every cut peer
net                ``duplicate``, ``delay`` (probabilities), ``delay_ms: [lo, hi]``: each
                   outgoing peer message is sent twice with p=duplicate, or held back a random
                   time with p=delay (which also reorders it); zeros turn it off
drop-replies       ``probability``, ``count``: a successful answer to a client write (put,
                   delete, cas, prepare, decide, resolve, one-phase commit) is dropped AFTER its
                   effect was applied, with that probability, at most `count` times: the
                   client sees a timeout for a write that happened
arm                ``point``, optional ``groups: [ids]``: the node exits at once
                   (``os._exit(137)``, like a kill -9) when it is about to apply, in one of
                   these groups, a chosen slot holding a matching transaction record:
                   ``prepare-chosen`` (a PREPARE), ``decision-chosen`` (a coordinator
                   decision), ``resolve-apply`` (a participant's RESOLVE). The slot is chosen
                   and durable on a majority, so only this node's apply and reply are lost
disarm             clear every crash point
disk-stall         ``ms``, ``min_bytes``: every synced write whose accepted values total at least
                   `min_bytes` takes `ms` longer (a slow disk): one whose fsync runs aside
                   (shard/runtime.py `_sync_aside`) sleeps in its worker thread, any other in
                   the loop's thread, holding the loop as a synced write holds the process;
                   ``ms: 0`` turns it off
clear              everything above back to off
=================  ===========================================================================
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import random
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import grpc

from paxos import PersistBatch
from router import kv_pb2 as kv
from router.shard_map import META_GROUP_ID
from shard.codec import Op, decode_command
from shard.errors import MalformedCommand
from txn.records import Decide, Prepare, Resolve

if TYPE_CHECKING:
    from paxos.messages import Message
    from shard.runtime import NodeRuntime

__all__ = [
    "CRASH_POINTS",
    "ENV",
    "METHOD",
    "Faults",
    "FaultsClient",
    "maybe_install_faults",
]

log = logging.getLogger("paxoskv.faults")

ENV = "PAXOSKV_FAULTS"
SERVICE = "paxoskv.Faults"
METHOD = f"/{SERVICE}/Control"
CRASH_POINTS = {
    "prepare-chosen": Prepare,
    "decision-chosen": Decide,
    "resolve-apply": Resolve,
}
_WRITE_KINDS = {
    "put",
    "delete",
    "cas",
    "prepare",
    "decide",
    "resolve",
    "commit_one_phase",
    "prevent",
}
CRASH_EXIT_CODE = 137


def _encode(obj: dict[str, Any]) -> bytes:
    return json.dumps(obj, sort_keys=True).encode()


def _decode(data: bytes) -> dict[str, Any]:
    value = json.loads(data.decode() or "{}")
    if not isinstance(value, dict):
        raise ValueError("a Faults request is a JSON object")
    return value


class Faults:
    """The armed faults of one node and the wrappers that apply them."""

    def __init__(self, node_id: int, rng: random.Random | None = None) -> None:
        self.node_id = node_id
        self._rng = rng or random.Random()
        self.cut: set[int] = set()
        self.duplicate = 0.0
        self.delay = 0.0
        self.delay_ms = (5.0, 50.0)
        self.drop_reply_p = 0.0
        self.drop_reply_left = 0
        self.crash_points: set[str] = set()
        self.crash_groups: set[int] | None = None
        self.counters = {"dropped_out": 0, "dropped_in": 0, "duplicated": 0, "delayed": 0}
        self.counters["replies_dropped"] = 0
        self.counters["disk_stalls"] = 0
        self.stall_s = 0.0
        self.stall_min_bytes = 0
        self._stall_owed = False

    # ------------------------------------------------------------------ control

    def control(self, request: dict[str, Any]) -> dict[str, Any]:
        op = request.get("op", "status")
        if op == "partition":
            self.cut |= {int(p) for p in request.get("peers", [])}
        elif op == "heal":
            self.cut.clear()
        elif op == "net":
            self.duplicate = float(request.get("duplicate", 0.0))
            self.delay = float(request.get("delay", 0.0))
            lo, hi = request.get("delay_ms", [5, 50])
            self.delay_ms = (float(lo), float(hi))
        elif op == "drop-replies":
            self.drop_reply_p = float(request.get("probability", 1.0))
            self.drop_reply_left = int(request.get("count", 1))
        elif op == "arm":
            point = request.get("point")
            if point not in CRASH_POINTS:
                raise ValueError(f"unknown crash point {point!r}; one of {sorted(CRASH_POINTS)}")
            self.crash_points.add(point)
            groups = request.get("groups")
            self.crash_groups = None if groups is None else {int(g) for g in groups}
        elif op == "disk-stall":
            self.stall_s = float(request.get("ms", 0)) / 1000
            self.stall_min_bytes = int(request.get("min_bytes", 0))
        elif op == "disarm":
            self.crash_points.clear()
            self.crash_groups = None
        elif op == "clear":
            self.__init__(self.node_id, self._rng)  # type: ignore[misc]
        elif op != "status":
            raise ValueError(f"unknown Faults op {op!r}")
        if op != "status":
            log.warning("fault control", extra={"request": request})
        return self.state()

    def state(self) -> dict[str, Any]:
        return {
            "node_id": self.node_id,
            "cut": sorted(self.cut),
            "duplicate": self.duplicate,
            "delay": self.delay,
            "delay_ms": list(self.delay_ms),
            "drop_reply_probability": self.drop_reply_p,
            "drop_replies_left": self.drop_reply_left,
            "crash_points": sorted(self.crash_points),
            "crash_groups": None if self.crash_groups is None else sorted(self.crash_groups),
            "disk_stall_ms": self.stall_s * 1000,
            "disk_stall_min_bytes": self.stall_min_bytes,
            "counters": dict(self.counters),
        }

    def serve(self, server: grpc.aio.Server) -> None:
        """Add the Faults method to the node's gRPC server."""

        async def handle(
            request: dict[str, Any], context: grpc.aio.ServicerContext
        ) -> dict[str, Any]:
            try:
                return self.control(request)
            except (ValueError, TypeError) as exc:
                return {"error": str(exc), **self.state()}

        handler = grpc.method_handlers_generic_handler(
            SERVICE,
            {
                "Control": grpc.unary_unary_rpc_method_handler(
                    handle, request_deserializer=_decode, response_serializer=_encode
                )
            },
        )
        server.add_generic_rpc_handlers((handler,))

    # ------------------------------------------------------------------ wrappers

    def wrap_send(
        self, send: Callable[[int, Sequence[Message]], None]
    ) -> Callable[[int, Sequence[Message]], None]:
        def faulty_send(group_id: int, msgs: Sequence[Message]) -> None:
            if not (self.cut or self.duplicate or self.delay):
                send(group_id, msgs)
                return
            now: list[Message] = []
            for msg in msgs:
                if msg.dst in self.cut:
                    self.counters["dropped_out"] += 1
                    continue
                if self.delay and self._rng.random() < self.delay:
                    self.counters["delayed"] += 1
                    lo, hi = self.delay_ms
                    asyncio.get_running_loop().call_later(
                        self._rng.uniform(lo, hi) / 1000, self._late_send, send, group_id, msg
                    )
                    continue
                now.append(msg)
                if self.duplicate and self._rng.random() < self.duplicate:
                    self.counters["duplicated"] += 1
                    now.append(msg)
            if now:
                send(group_id, now)

        return faulty_send

    def _late_send(
        self, send: Callable[[int, Sequence[Message]], None], group_id: int, msg: Message
    ) -> None:
        if msg.dst not in self.cut:
            send(group_id, [msg])

    def wrap_deliver(
        self, deliver: Callable[[int, int, Message], None]
    ) -> Callable[[int, int, Message], None]:
        def faulty_deliver(src: int, group_id: int, msg: Message) -> None:
            if src in self.cut:
                self.counters["dropped_in"] += 1
                return
            deliver(src, group_id, msg)

        return faulty_deliver

    def wrap_submit(
        self, submit: Callable[[kv.Request, Callable[[kv.Response], None]], None]
    ) -> Callable[[kv.Request, Callable[[kv.Response], None]], None]:
        def faulty_submit(request: kv.Request, reply: Callable[[kv.Response], None]) -> None:
            kind = request.WhichOneof("op") if self.drop_reply_left > 0 else None
            if kind not in _WRITE_KINDS:
                submit(request, reply)
                return

            def maybe_drop(response: kv.Response) -> None:
                applied = (
                    response.WhichOneof("result") == kind
                    and getattr(response, kind).error.code == kv.OK
                )
                if applied and self.drop_reply_left > 0 and self._rng.random() < self.drop_reply_p:
                    self.drop_reply_left -= 1
                    self.counters["replies_dropped"] += 1
                    log.warning("fault: dropped a reply after its effect", extra={"kind": kind})
                    return
                reply(response)

            submit(request, maybe_drop)

        return faulty_submit

    def wrap_apply(self, apply: Callable[..., None]) -> Callable[..., None]:
        def faulty_apply(readies: Sequence[tuple[Any, Any]], batch: Any) -> None:
            if self.crash_points:
                for host, ready in readies:
                    self._maybe_crash(host.group_id, ready)
            apply(readies, batch)

        return faulty_apply

    def wrap_disk(self, disk: Any) -> None:
        """Slow down `disk`'s synced writes while a disk stall is armed."""
        persist, sync = disk.persist_owing_sync, disk.sync

        def stalled_persist(
            batches: Sequence[tuple[int, PersistBatch]], defer_from_bytes: int | None
        ) -> bool:
            owed: bool = persist(batches, defer_from_bytes)
            stall = bool(self.stall_s) and _accepted_bytes(batches) >= self.stall_min_bytes
            self._stall_owed = owed and stall
            if stall and not owed and any(batch.needs_sync() for _, batch in batches):
                self._stall()
            return owed

        def stalled_sync() -> None:
            if self._stall_owed:
                self._stall()
            sync()

        disk.persist_owing_sync = stalled_persist
        disk.sync = stalled_sync

    def _stall(self) -> None:
        self.counters["disk_stalls"] += 1
        time.sleep(self.stall_s)

    def _maybe_crash(self, group_id: int, ready: Any) -> None:
        if group_id == META_GROUP_ID or (
            self.crash_groups is not None and group_id not in self.crash_groups
        ):
            return
        wanted = tuple(CRASH_POINTS[p] for p in self.crash_points)
        for entry in ready.committed:
            for data in entry.value:
                try:
                    cmd = decode_command(data)
                except MalformedCommand:
                    continue  # not a shard command (the meta group's)
                if cmd.op is Op.TXN and isinstance(cmd.txn, wanted):
                    point = next(p for p, t in CRASH_POINTS.items() if isinstance(cmd.txn, t))
                    log.error(
                        "fault: crash point reached; exiting",
                        extra={"point": point, "group": group_id, "slot": entry.slot},
                    )
                    logging.shutdown()
                    os._exit(CRASH_EXIT_CODE)


def maybe_install_faults(runtime: NodeRuntime) -> Faults | None:
    """Install the hooks on `runtime` when PAXOSKV_FAULTS=1; else None (and nothing changes).

    Call it after the gRPC server exists and BEFORE the servicers capture `runtime.submit`
    and `runtime._deliver`.
    """
    if os.environ.get(ENV) != "1":
        return None
    faults = Faults(runtime.node.id)
    # Patching methods on purpose; `assignment` too because a wrapper's Callable type has no
    # parameter names (the wrappers do take the methods' names: keyword calls still work).
    runtime._send = faults.wrap_send(runtime._send)  # type: ignore[method-assign,assignment]
    runtime._deliver = faults.wrap_deliver(runtime._deliver)  # type: ignore[method-assign,assignment]
    runtime.submit = faults.wrap_submit(runtime.submit)  # type: ignore[method-assign,assignment]
    runtime.core.apply = faults.wrap_apply(runtime.core.apply)  # type: ignore[method-assign]
    faults.wrap_disk(runtime.disk)
    faults.serve(runtime.server)
    log.warning("fault hooks installed (PAXOSKV_FAULTS=1): this node is for chaos tests only")
    return faults


def _accepted_bytes(batches: Sequence[tuple[int, PersistBatch]]) -> int:
    return sum(
        len(value)
        for _, batch in batches
        for _, values in batch.accepted.values()
        for value in values
    )


class FaultsClient:
    """Harness side: `call(channel, {"op": ...})` on a node started with PAXOSKV_FAULTS=1."""

    @staticmethod
    def call(
        channel: grpc.Channel, request: dict[str, Any], timeout_s: float = 2.0
    ) -> dict[str, Any]:
        method = channel.unary_unary(
            METHOD, request_serializer=_encode, response_deserializer=_decode
        )
        answer: dict[str, Any] = method(request, timeout=timeout_s)
        return answer
