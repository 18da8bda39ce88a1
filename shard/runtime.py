"""The asyncio shell of a node process: time, sockets and the disk around a NodeCore.

One loop, one thread. Peer messages and client requests wake the loop; a timer wakes it at
the core's next short deadline (`NodeCore.next_deadline`) and at least every TICK_S. Each
wake delivers the inbox, runs `tick` and executes cycles (shard.execute) until no group has
work. This file decides nothing: every decision is in NodeCore and the replicas.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import signal
import socket
import sys
import time
from collections.abc import Callable, Coroutine, Sequence
from functools import partial
from typing import Any

import grpc

from paxos import Ready
from paxos.messages import Message
from router import kv_pb2 as kv
from router import kv_pb2_grpc
from router.client import RoutingClient
from router.shard_map import NodeAddress, ShardMap, bootstrap
from shard import peer_pb2_grpc
from shard.config import ClusterConfig, NodeConfig
from shard.execute import (
    apply_cycle,
    background_cycle,
    cycle_persists,
    send_votes,
    start_cycle,
)
from shard.faults import maybe_install_faults
from shard.grpc_handlers import add_servicer
from shard.health import OBSERVE_INTERVAL_S, NodeHealth
from shard.metrics import NodeMetrics
from shard.metrics_server import MetricsServer
from shard.node import NodeCore, TxnSettings
from shard.node_identity import (
    Admission,
    Incarnation,
    NodeIdentity,
    PeerRecords,
    admit_peer,
    asks_others,
    begin_run,
    open_node_disk,
    recorded_incarnation,
    retired_here,
    token_digest,
)
from shard.node_records import GroupHost
from shard.server import KVServicer
from shard.state_machine import ShardStateMachine
from shard.tls_reload import TLS_CHECK_S, ReloadingTls
from shard.transport import (
    GRPC_OPTIONS,
    PeerLink,
    PeerServicer,
    ask_recorded_incarnation,
    map_digest,
)

log = logging.getLogger("paxoskv.node")

# The longest a node sleeps with nothing due: its periodic sweeps (request deadlines, lock
# expiry, transaction duties) run at 50 ms or longer. Every finer timer, the replicas'
# heartbeats and elections included, is a deadline the loop wakes for exactly
# (NodeCore.next_deadline).
TICK_S = 0.05
DRAIN_POLL_S = 0.005
MAX_CYCLES_PER_WAKE = 16
# On stop, once the core has answered: how long the client streams get to write their last
# answers (one whose client does not read them is cut off then).
STOP_GRACE_S = 1.0
# On stop, first: how many transfer attempts (each up to the longest election timeout) the
# groups this node leads get to move to a peer (node rule 15).
HANDOFF_ATTEMPTS = 2
# At the end of a stop: how long the tasks still ending (gRPC's stream handlers) get.
TASKS_END_S = 1.0
# Then the server's grace, in which a client stream opened meanwhile still meets a handler
# that says `drained` at once (the peers' streams hold it this long: keep it short).
SERVER_GRACE_S = 0.2
# The exit status of a node whose loop crashed (fail-stop; EX_SOFTWARE of sysexits.h).
CRASH_EXIT = 70
# A wake runs no more cycles once it has held the loop this long, not counting its waits on
# an fsync aside, or after a cycle whose fsync ran aside (it comes back at once).
WAKE_BUDGET_S = 0.02
# A wake that holds the loop this share of the shortest election timeout or more is logged
# (as etcd logs a slow fdatasync or apply): a leader held past that timeout loses its
# followers. 100 ms with the default timeouts; sustained 1 MB writes made synced writes take
# 100-200 ms here.
SLOW_WAKE_SHARE = 2 / 3
# A synced write this large runs its fsync in a worker thread, and meanwhile the node keeps
# its groups' leadership alive (`_sync_aside`): a 1 MB value's synced write held the whole
# process 40-300 ms here while flushes and compactions wrote (rocksdict keeps the GIL
# through a synced write), past the election timeout. Small writes stay synced writes: a
# thread hand-off costs a put about 0.1 ms (bench/README.md, session 5).
SYNC_ASIDE_BYTES = 256 << 10
# For at most this many maximum election timeouts: a disk that hangs must still let the
# followers elect another leader.
SYNC_COVER_ELECTION_TIMEOUTS = 3


def bootstrap_map(config: ClusterConfig) -> ShardMap:
    """The initial shard map; every node derives the same one from the same config."""
    nodes = [
        NodeAddress(node_id=n.id, name=n.name, client_addr=n.address, peer_addr=n.address)
        for n in config.nodes
    ]
    return bootstrap(nodes, config.split_points, config.replication)


class NodeRuntime:
    """A running node: gRPC server, peer links, the cycle loop."""

    def __init__(
        self,
        config: ClusterConfig,
        node: NodeConfig,
        *,
        first_start: bool = False,
        rebuild: bool = False,
    ) -> None:
        """`first_start`: the cluster's first start, so the node may create its data
        (`paxoskv node --bootstrap`); `rebuild`: its data was lost, so it may start on an
        empty directory as a non-voter until it is safe (`paxoskv node --rebuild`;
        shard/node_identity.py)."""
        self.config = config
        self.node = node
        # A node dials its peers and its groups' leaders as a client of their port, with its
        # own certificate; files that change are taken up again (shard/tls_reload.py).
        # Read before the disk is opened: a first start refused for a missing file must
        # leave no data behind, or the corrected retry is refused as a changed cluster.
        self._tls = (
            None
            if config.tls is None
            else ReloadingTls(config.tls.files, require_client_cert=config.tls.require_client_cert)
        )
        shard_map = bootstrap_map(config)
        digest = map_digest(shard_map)
        self.disk = open_node_disk(
            config.node_data_dir(node) / "db",
            NodeIdentity(config.cluster_id, node.id, node.name),
            first_start=first_start,
            rebuild_groups=shard_map.groups_of_node(node.id) if rebuild else None,
            cluster_map=shard_map,
        )
        self.core = NodeCore(
            cluster_id=config.cluster_id,
            node_id=node.id,
            bootstrap_map=shard_map,
            disk=self.disk,
            paxos_settings=config.paxos,
            rng=random.Random(),
            request_timeout_s=config.request_timeout_ms / 1000,
            txn_settings=TxnSettings(
                max_clock_offset_s=config.clock_offset_ms / 1000,
                resolve_after_s=config.resolve_after_ms / 1000,
                decision_retention_s=config.decision_retention_s,
            ),
            peer_secret=config.peer_secret,
        )
        peer_ids = {peer for h in self.core.hosts.values() for peer in h.replica.config.voters}
        peer_ids.discard(node.id)
        incarnation = begin_run(self.disk.db)  # before any hello says it
        self.links = {
            n.id: PeerLink(
                config.cluster_id,
                node.id,
                n.id,
                n.address,
                config.peer_secret,
                credentials=None if self._tls is None else self._tls.channel_credentials,
                incarnation=incarnation,
                map_digest=digest,
            )
            for n in config.nodes
            if n.id in peer_ids
        }
        self._inbox: list[tuple[int, Message]] = []
        self._wake = asyncio.Event()
        self._stopped = asyncio.Event()
        self._roles: dict[int, tuple[str, int | None]] = {}
        self._timer: asyncio.TimerHandle | None = None
        self._last_tick = 0.0
        self._stall_s = config.paxos.election_timeout_max_ms / 1000
        self._heartbeat_s = config.paxos.heartbeat_interval_ms / 1000
        self._syncing: asyncio.Future[None] | None = None
        # Inside `_run_cycles`: stop() closes the disk only outside a wake.
        self._waking = False
        self._slow_wake_s = SLOW_WAKE_SHARE * config.paxos.election_timeout_min_ms / 1000
        self._client: RoutingClient | None = None
        self._draining = False
        self._stop_task: asyncio.Future[None] | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        # Not gRPC's default SO_REUSEPORT: with it a node started on a port another server
        # (a node of another cluster) listens on, and the kernel split the connections
        # between the two, so clients and peers reached the wrong node.
        self.server = grpc.aio.server(options=[*GRPC_OPTIONS, ("grpc.so_reuseport", 0)])
        # Chaos harness only: fault hooks, None unless PAXOSKV_FAULTS=1 (shard/faults.py).
        self.faults = maybe_install_faults(self)
        self._kv = KVServicer(
            self.core,
            self.submit,
            node.name,
            config.request_timeout_ms / 1000,
            refusals=self._peer_refusals,
        )
        add_servicer(kv_pb2_grpc.add_KVServicer_to_server, self._kv, self.server)
        self.metrics = (
            None
            if node.metrics_address is None
            else NodeMetrics(self._kv.node_status, self.core.groups_without_leader)
        )
        self._metrics_server = (
            None if self.metrics is None else MetricsServer(self.metrics.registry)
        )
        self._health = NodeHealth()
        self._health.add_to(self.server)
        add_servicer(
            peer_pb2_grpc.add_PeerServicer_to_server,
            PeerServicer(
                config.cluster_id,
                node.id,
                set(self.links),
                self._deliver,
                config.peer_secret,
                seen=self._peer_seen,
                admit=self._admit_peer,
                recorded=partial(recorded_incarnation, self.disk.db),
                retired=partial(retired_here, self.disk.db),
                nodes={n.id for n in config.nodes if n.id != node.id},
                # Before the inbox: the core would drop them (`NodeCore.step`), but only
                # after the loop held them (found by review: a million heartbeats for a
                # group no node hosts).
                hosts=lambda group_id: group_id in self.core.hosts,
                map_digest=digest,
            ),
            self.server,
        )

    # ------------------------------------------------------------------ inputs

    def _deliver(self, src: int, group_id: int, msg: Message) -> None:
        self._inbox.append((group_id, msg))
        self._wake.set()

    async def _admit_peer(self, node_id: int, incarnation: Incarnation) -> Admission:
        """shard/node_identity.py: for an incarnation or a run of the peer not taken yet,
        ask every other node what it recorded of the peer and whether a rebuild replaced
        this incarnation there, before taking its stream."""
        if not asks_others(self.disk.db, node_id, incarnation):
            return admit_peer(self.disk.db, node_id, incarnation)
        others = [n for n in self.config.nodes if n.id not in (self.node.id, node_id)]
        credentials = None if self._tls is None else self._tls.channel_credentials()
        answers = await asyncio.gather(
            *(
                ask_recorded_incarnation(
                    n.address,
                    cluster_id=self.config.cluster_id,
                    my_id=self.node.id,
                    node_id=node_id,
                    candidate=token_digest(incarnation.token),
                    secret=self.config.peer_secret,
                    credentials=credentials,
                )
                for n in others
            )
        )
        if self._stopped.is_set():  # the disk may be closed by now
            return Admission("the node is stopping", for_now=True)
        by_node = {n.id: a for n, a in zip(others, answers, strict=True)}
        answered = {n: a for n, a in by_node.items() if a is not None and not a.refusal}
        records = PeerRecords(
            recorded={n: a.digest for n, a in answered.items() if a.digest},
            unanswered=[n for n in by_node if n not in answered],
            retired=[n for n, a in answered.items() if a.retired],
            refusals={n: a.refusal for n, a in by_node.items() if a is not None and a.refusal},
        )
        return admit_peer(self.disk.db, node_id, incarnation, records)

    def _peer_refusals(self) -> list[tuple[int, str]]:
        """The peers refusing this node's streams, with their reasons (for Status)."""
        return [(p, link.refusal) for p, link in sorted(self.links.items()) if link.refusal]

    def _peer_seen(self, src: int) -> None:
        link = self.links.get(src)
        if link is not None:
            link.peer_up()

    def submit(self, request: kv.Request, reply: Callable[[kv.Response], None]) -> None:
        if self.metrics is not None:
            reply = self._timed(request, reply, self.metrics)
        if self._draining:
            reply(self.core.refusal(request, kv.UNAVAILABLE, "the node is shutting down; retry"))
            return
        self.core.observe_time(time.monotonic(), time.time_ns())
        self.core.submit(request, reply)
        self._wake.set()

    @staticmethod
    def _timed(
        request: kv.Request, reply: Callable[[kv.Response], None], metrics: NodeMetrics
    ) -> Callable[[kv.Response], None]:
        """`reply`, counting and timing the request in `metrics` when it is answered."""
        op = request.WhichOneof("op") or "none"
        arrived = time.perf_counter()

        def timed_reply(response: kv.Response) -> None:
            metrics.observe_request(op, response, time.perf_counter() - arrived)
            reply(response)

        return timed_reply

    def _send(self, group_id: int, msgs: Sequence[Message]) -> None:
        by_peer: dict[int, list[Message]] = {}
        for msg in msgs:
            by_peer.setdefault(msg.dst, []).append(msg)
        for peer, items in by_peer.items():
            link = self.links.get(peer)
            if link is not None:
                link.send(group_id, items)

    # ------------------------------------------------------------------ loop

    async def start(self) -> None:
        try:
            if self._tls is None:
                bound = self.server.add_insecure_port(self.node.address)
            else:
                bound = self.server.add_secure_port(
                    self.node.address, self._tls.server_credentials()
                )
        except RuntimeError:  # newer gRPC raises where older returned 0
            bound = 0
        if bound == 0:
            raise OSError(_cannot_listen(self.node.address))
        if self._tls is not None:
            self._spawn(self._watch_tls(self._tls))
        await self.server.start()
        if self._metrics_server is not None and self.node.metrics_address is not None:
            try:
                await self._metrics_server.start(self.node.metrics_address)
            except OSError:
                raise OSError(_cannot_listen(self.node.metrics_address)) from None
        self._health.started(self.core.groups_without_leader())
        self._spawn(self._watch_health())
        for link in self.links.values():
            link.start()
        for group_id, host in self.core.hosts.items():
            if isinstance(host.app, ShardStateMachine) and host.app.redid_restore:
                log.warning(
                    "redid a snapshot restore a crash had interrupted",
                    extra={"group": group_id, "applied_index": host.app.applied_index},
                )
        log.info(
            "node started",
            extra={
                "node": self.node.name,
                "address": self.node.address,
                "groups": len(self.core.hosts),
            },
        )

    async def run(self) -> None:
        try:
            while not self._stopped.is_set():
                self._arm_timer()
                if self._wake.is_set():
                    # A wake that stopped early (its budget, an fsync aside, or
                    # MAX_CYCLES_PER_WAKE) set its own wake, and waiting on a set Event does
                    # not suspend: let the loop read the sockets, fire timers and run the
                    # peer links first.
                    await asyncio.sleep(0)
                await self._wake.wait()
                if self._stopped.is_set():
                    break  # stop() may have closed the disk while this task waited
                self._wake.clear()
                await self._run_cycles()
        finally:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None

    def _arm_timer(self) -> None:
        """Wake the loop at the core's next deadline, or TICK_S after the last tick.

        Messages and requests wake the loop by themselves (and each wake ticks), so an idle
        node wakes for its heartbeats and little else, not every few milliseconds.
        """
        due = self._last_tick + TICK_S
        deadline = self.core.next_deadline()
        if deadline is not None and deadline < due:
            due = deadline
        if self._timer is not None:
            if self._timer.when() <= due:
                return
            self._timer.cancel()
        # loop.time() is time.monotonic(), the clock the core's deadlines are on.
        self._timer = asyncio.get_running_loop().call_at(due, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        self._wake.set()

    async def _run_cycles(self) -> None:
        self._waking = True
        try:
            await self._wake_cycles()
        finally:
            self._waking = False

    async def _wake_cycles(self) -> None:
        timing = _WakeTiming()
        # Messages first, timers second: after a stall, the heartbeats waiting in the inbox
        # must count before check-quorum or an election timer looks at the time.
        now, wall_ns = time.monotonic(), time.time_ns()
        stalled = self._last_tick > 0 and now - self._last_tick > self._stall_s
        self.core.observe_time(now, wall_ns)
        inbox, self._inbox = self._inbox, []
        for group_id, msg in inbox:
            self.core.step(group_id, msg)
        if stalled:
            # The process was stopped (SIGSTOP, a paused VM) or its loop held past the
            # election timeout: the followers' timers ran out while it heard nothing, which
            # says nothing of their leaders. A campaign now would only raise a round the
            # leaders must take back (Paxos rule 12); give the peer links an election
            # timeout to bring their heartbeats first.
            self.core.defer_elections(now)
        self.core.tick(now, wall_ns)
        self._last_tick = now
        # Before the cycles, which then send a snapshot it finished or resume its replica.
        started = time.perf_counter()
        if background_cycle(self.core, self.disk):
            timing.background_s = time.perf_counter() - started
        for _ in range(MAX_CYCLES_PER_WAKE):
            readies = start_cycle(self.core, self._send)
            if not readies:
                break
            timing.cycles += 1
            if any(ready.messages for _, ready in readies) and any(
                ready.persist.needs_sync() for _, ready in readies
            ):
                # Let the peer links hand the Accepts to gRPC before the fsync blocks the loop.
                await asyncio.sleep(0)
            started = time.perf_counter()
            aside_before = timing.aside_s
            sent = await self._persist(readies, timing)
            timing.persist_s += time.perf_counter() - started
            if sent:
                # Let the peer links hand the votes to gRPC before the apply and the answers.
                await asyncio.sleep(0)
            started = time.perf_counter()
            apply_cycle(self.core, self.disk, readies)
            timing.apply_s += time.perf_counter() - started
            if timing.held_s() >= WAKE_BUDGET_S or timing.aside_s > aside_before:
                # A backlog (a follower catching up applies max_apply_bytes per cycle) goes
                # on at once, after the loop has read the sockets: other groups' heartbeats
                # are not left waiting behind it. Nor are they behind a chain of fsyncs
                # aside: the inbox waited through the one this cycle ran (its wait does
                # not count as holding the loop, `held_s`, but no message was stepped).
                self._wake.set()
                break
        else:
            # Work is left after MAX_CYCLES_PER_WAKE cycles: come back at once, after the
            # loop has served the sockets, not at the next deadline.
            self._wake.set()
        self._send_outbound()
        self._log_role_changes()
        timing.log_if_slow(self._slow_wake_s, self.config.paxos.election_timeout_min_ms)
        if self.metrics is not None:
            self.metrics.observe_wake(timing.held_s())

    async def _persist(self, readies: list[tuple[GroupHost, Ready]], timing: _WakeTiming) -> bool:
        """`execute.persist_cycle`, except that a large write's fsync runs aside."""
        batches = cycle_persists(readies)
        if batches:
            started = time.perf_counter()
            if self.disk.persist_owing_sync(batches, SYNC_ASIDE_BYTES):
                aside = time.perf_counter()
                await self._sync_aside()
                timing.aside_s += time.perf_counter() - aside
            if self.metrics is not None and any(b.needs_sync() for _, b in batches):
                self.metrics.observe_persist(time.perf_counter() - started)
        return send_votes(self._send, readies)

    async def _sync_aside(self) -> None:
        """Run the owed fsync in a worker thread; while it lasts, repeat the newest heartbeat
        round of every group this node leads, once per heartbeat interval.

        A leader held by its own disk is alive: without the repeats its followers' timers
        run out and they elect, and the writes in flight end unknown. Nothing else moves
        meanwhile: no cycle runs before the write is durable (peer messages and requests
        wait in the inbox and the core's queues).
        """
        loop = asyncio.get_running_loop()
        self._syncing = syncing = loop.run_in_executor(None, self.disk.sync)
        cover_until = loop.time() + SYNC_COVER_ELECTION_TIMEOUTS * self._stall_s
        while True:
            done, _ = await asyncio.wait({syncing}, timeout=self._heartbeat_s)
            if done:
                break
            if loop.time() < cover_until:
                for host in self.core.hosts.values():
                    repeats = host.replica.repeat_heartbeats()
                    if repeats:
                        self._send(host.group_id, repeats)
        self._syncing = None
        syncing.result()  # a failed fsync fails the loop, as a failed synced write does

    def _send_outbound(self) -> None:
        """Requests the core addressed to other groups' leaders (transaction duties)."""
        if not self.core.outbound:
            return
        outbound, self.core.outbound = self.core.outbound, []
        for group_id, request, callback in outbound:
            self._spawn(self._call_group(group_id, request, callback))

    async def _call_group(
        self,
        group_id: int,
        request: kv.Request,
        callback: Callable[[kv.Response | None], None],
    ) -> None:
        response: kv.Response | None = None
        try:
            client = await self._group_client()
            # Idempotent (a Resolve, a recovery Decide, a Prevent, a status question: each
            # applies once per transaction however often it arrives), so given up at a
            # silent leader after an attempt timeout, and the duty's next round goes to the
            # new one (found by an application trial: it waited out the whole request
            # timeout at a frozen leader, and the in-doubt intents held their keys).
            response = await client.send(
                request,
                group_id=group_id,
                write=True,
                idempotent=True,
                passthrough=(kv.CONFLICT,),
            )
        except Exception as exc:
            log.debug("outbound request failed", extra={"group": group_id, "error": str(exc)})
        finally:
            # Always, a cancellation included (a closed client's calls are cancelled): the
            # core keeps the duty in flight until it hears back, and would never retry it
            # (found by review). Outside a wake the core's clock may be a tick period old;
            # the callback stamps notes and deadlines with it.
            self.core.observe_time(time.monotonic(), time.time_ns())
            callback(response)
            self._wake.set()

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._background_task_done)

    def _background_task_done(self, task: asyncio.Task[None]) -> None:
        """Forget the task; log its failure at once, as a structured line (asyncio's own
        report comes only when the task is garbage-collected, if ever)."""
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error(
                "background task failed",
                exc_info=task.exception(),
                extra={"task": getattr(task.get_coro(), "__qualname__", task.get_name())},
            )

    async def _watch_tls(self, tls: ReloadingTls) -> None:
        """Take up TLS files that changed: new connections use them (certificate rotation)."""
        while True:
            await asyncio.sleep(TLS_CHECK_S)
            try:
                taken_up = tls.poll()
            except Exception:  # never let the watch end: rotation would stop for good
                log.exception("looking at the TLS files failed")
                continue
            if taken_up and self._client is not None:
                # The node's own client takes its credentials when it is built: build it
                # again, and close the old one once its calls in flight are answered.
                old, self._client = self._client, None
                self._spawn(self._close_later(old))

    async def _close_later(self, client: RoutingClient) -> None:
        await asyncio.sleep(self.config.request_timeout_ms / 1000 + 1.0)
        await client.close()

    async def _group_client(self) -> RoutingClient:
        if self._client is None:
            client = RoutingClient(
                [n.address for n in self.config.nodes],
                cluster_id=self.config.cluster_id,
                timeout_s=self.config.request_timeout_ms / 1000,
                # The credentials of the files checked and taken up last, not whatever is
                # on disk now (a set half-way through a copy is refused there).
                tls=self._tls,
            )
            self._client = client
            await client.connect()
            return client
        return self._client

    def _log_role_changes(self) -> None:
        for group_id, host in self.core.hosts.items():
            now = (host.replica.role.value, host.replica.leader_hint)
            before = self._roles.get(group_id)
            if before != now:
                self._roles[group_id] = now
                learned = now[1] is not None and (before is None or before[1] != now[1])
                if self.metrics is not None and learned:
                    self.metrics.count_leader_change(group_id)
                status = host.replica.status()
                fields = {"group": group_id, "role": now[0], "leader": now[1]}
                fields["ballot"] = str(status.promised)
                if status.phase1_parts:
                    # An election that took promises in parts (paxos replica rule 18) is
                    # slower; say why.
                    fields["promise_parts"] = status.phase1_parts
                log.info("group role", extra=fields)

    async def stop(self, grace_s: float = 2.0, *, hand_off: bool = True) -> None:
        """Hand the groups led here to peers (unless the loop died: `hand_off=False`),
        then drain: refuse new requests, answer those in flight (up to grace_s), close.

        Idempotent: a later call, concurrent or not, waits for the first one's stop (its
        arguments are ignored). A caller cancelled meanwhile does not cancel the stop."""
        if self._stop_task is None:
            self._stop_task = asyncio.ensure_future(self._stop(grace_s, hand_off=hand_off))
        await asyncio.shield(self._stop_task)

    async def _stop(self, grace_s: float, *, hand_off: bool) -> None:
        log.info("node stopping", extra={"node": self.node.name})
        self._health.stopping()
        if hand_off:
            await self._hand_off_leadership()
        self._draining = True
        self.core.end_change_waits()  # hints only: a client waits on elsewhere
        loop = asyncio.get_running_loop()
        deadline = loop.time() + grace_s
        while self.core.has_client_requests() and loop.time() < deadline:
            await asyncio.sleep(DRAIN_POLL_S)
        # Then each client stream writes its last answers (the loop runs on meanwhile) and
        # says it reads no more, before the server's GOAWAY (a client takes a stream of a
        # connection going away for lost). The server's stop(0) used to cancel the streams,
        # their last answers and their unread requests alike. With a grace, a stream that
        # opens meanwhile still meets a handler, which says `drained` at once.
        self._kv.drain()
        streams_grace_s = min(grace_s, STOP_GRACE_S)
        deadline = loop.time() + streams_grace_s
        while self._kv.open_streams() and loop.time() < deadline:
            await asyncio.sleep(DRAIN_POLL_S)
        await self.server.stop(min(grace_s, SERVER_GRACE_S))
        if self._metrics_server is not None:
            await self._metrics_server.close()
        self._stopped.set()
        self._wake.set()
        await asyncio.gather(*(link.stop() for link in self.links.values()))
        for task in list(self._tasks):
            task.cancel()
        if self._client is not None:
            await self._client.close()
        while self._waking or (self._syncing is not None and not self._syncing.done()):
            # The loop task may be gone, its fsync not: the database stays open until it
            # ends. Nor does it close in the middle of a wake: once the fsync ends, the wake
            # sends the votes, applies and answers, and ends (a cycle whose fsync ran aside
            # ends its wake). (A wait on the fsync's future resumed stop() first whenever the
            # loop had waited on it anew since, a heartbeat interval later: a loop task not
            # cancelled at once then died on DbClosedError; found by review.)
            await asyncio.sleep(DRAIN_POLL_S)
        self.core.close()
        self.disk.close()
        log.info("node stopped", extra={"node": self.node.name})

    async def _watch_health(self) -> None:
        """Publish the client service's health (shard/health.py) as the groups' leaders
        come and go."""
        failing = False
        while True:
            await asyncio.sleep(OBSERVE_INTERVAL_S)
            try:
                self._health.observe(self.core.groups_without_leader())
            except Exception:  # never let the watch end: the status would stay as it was
                if not failing:  # once, not at every look while it lasts
                    log.exception("reading the groups' leaders for the health service failed")
                failing = True
                self._health.unknown()
                continue
            if failing:
                log.info("reading the groups' leaders for the health service works again")
            failing = False

    async def _hand_off_leadership(self) -> None:
        """Node rule 15: move every group led here to a peer before the node goes, so its
        clients wait one transfer, not an election timeout. Requests keep coming meanwhile:
        a group being handed over answers NotLeader naming the peer taking it."""
        led = self.core.led_groups()
        self.core.observe_time(time.monotonic(), time.time_ns())
        # Also when it leads nothing: while it drains, rebalancing would hand it back the
        # groups it is the preferred leader of, and an election could pick it.
        self.core.retire()
        self._wake.set()
        if not led and not self.core.handing_off():
            return
        loop = asyncio.get_running_loop()
        timeout_s = self.config.paxos.election_timeout_max_ms / 1000
        deadline = loop.time() + HANDOFF_ATTEMPTS * timeout_s
        ever_led = set(led)
        while loop.time() < deadline:
            self.core.observe_time(time.monotonic(), time.time_ns())
            ever_led.update(self.core.led_groups())  # a campaign out at the retirement won
            if not self.core.handing_off():
                break
            self._wake.set()
            await asyncio.sleep(DRAIN_POLL_S)
        kept = self.core.led_groups()
        fields: dict[str, Any] = {"groups": sorted(ever_led - set(kept)), "kept": kept}
        if kept:
            # Info, not a warning: a whole cluster stopping keeps every group, as it should.
            fields["kept_why"] = (
                "no peer could take them (down, stopping too, or behind) or their transfer "
                "did not end in time: their peers elect a leader once the election timeout "
                "runs out"
            )
        log.info("leadership handed off", extra=fields)


class _WakeTiming:
    """Where one wake's time went, logged when the wake held the loop too long.

    The total includes the inbox and the tick, and the yields inside the wake, during which
    gRPC's tasks ran; a wait on an fsync aside, during which the loop ran on, does not count
    towards the threshold.
    """

    def __init__(self) -> None:
        self.started = time.perf_counter()
        self.cycles = 0
        self.persist_s = 0.0
        self.apply_s = 0.0
        self.background_s = 0.0
        self.aside_s = 0.0

    def held_s(self) -> float:
        """How long the wake has held the loop: its time so far but its waits on an fsync
        aside (`_sync_aside`), during which the loop ran on."""
        return time.perf_counter() - self.started - self.aside_s

    def log_if_slow(self, threshold_s: float, election_timeout_ms: int) -> None:
        if self.held_s() < threshold_s:
            return
        wake_s = time.perf_counter() - self.started
        log.warning(
            "slow wake: the node's loop was held; a leader held past the election timeout "
            "loses its followers",
            extra={
                "wake_ms": round(wake_s * 1e3, 1),
                "persist_ms": round(self.persist_s * 1e3, 1),
                "fsync_aside_ms": round(self.aside_s * 1e3, 1),
                "apply_ms": round(self.apply_s * 1e3, 1),
                "snapshot_step_ms": round(self.background_s * 1e3, 1),
                "cycles": self.cycles,
                "election_timeout_ms": election_timeout_ms,
            },
        )


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message and every `extra` field."""

    _STANDARD = set(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {"message"}

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": round(record.created, 6),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in record.__dict__.items():
            if key not in self._STANDARD:
                entry[key] = value
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


class PeerGoneFilter(logging.Filter):
    """gRPC logs an error with a traceback whenever a stream's peer went away while the
    node was writing to it (`ExecuteBatchError raised in core by servicer method`): a client
    that was cancelled or stopped, or a node that went down, not a fault of this node, and
    a review saw twenty such tracebacks from one client's cancelled streams. They are kept
    as one-line debug records, and dropped unless debug logging is on."""

    PREFIX = "ExecuteBatchError raised in core by servicer method"

    def filter(self, record: logging.LogRecord) -> bool:
        if not record.getMessage().startswith(self.PREFIX):
            return True
        if not logging.getLogger().isEnabledFor(logging.DEBUG):
            return False
        record.levelno, record.levelname = logging.DEBUG, "DEBUG"
        record.exc_info = record.exc_text = None
        return True


def setup_logging(level: str = "info") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    grpc_logger = logging.getLogger("grpc._cython.cygrpc")
    if not any(isinstance(f, PeerGoneFilter) for f in grpc_logger.filters):
        grpc_logger.addFilter(PeerGoneFilter())


def _cannot_listen(address: str) -> str:
    return (
        f"cannot listen on {address}: address in use (another process listens on the port) "
        "or not an address of this machine"
    )


def check_can_listen(address: str, *, every: bool = False) -> None:
    """Raise OSError unless `address` (HOST:PORT) can be listened on now, as the node's
    gRPC server binds it (SO_REUSEADDR, no SO_REUSEPORT). Checked before the data directory
    is touched: found by a user's walk-through, a `--bootstrap` on a busy port or a
    mistyped address created the node's data, and the corrected retry was refused as a
    cluster whose addresses had changed.

    gRPC listens on every address a name resolves to and starts if one binds; with `every`,
    each must bind, as an asyncio server (the metrics endpoint) needs, but for an address
    of a family this machine has no sockets for (IPv6 disabled, "::1" still a name of
    localhost), which asyncio passes over too (found by review)."""
    host, _, port = address.rpartition(":")
    host = host.removeprefix("[").removesuffix("]")
    try:
        found = socket.getaddrinfo(
            host, int(port), type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )
    except (OSError, ValueError):
        raise OSError(
            f"cannot listen on {address}: {host!r} is not an address or a name this machine "
            "resolves"
        ) from None
    bound = 0
    for family, kind, proto, _, where in found:
        try:
            probe = socket.socket(family, kind, proto)
        except OSError:
            continue
        with probe:
            try:
                probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                if every and family == socket.AF_INET6:
                    probe.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)  # as asyncio
                probe.bind(where)
            except OSError:
                if every:
                    raise OSError(_cannot_listen(address)) from None
                continue
        bound += 1
        if not every:
            return
    if bound == 0:
        raise OSError(_cannot_listen(address))


async def serve(
    config: ClusterConfig, node: NodeConfig, *, first_start: bool = False, rebuild: bool = False
) -> None:
    """Run one node until SIGTERM or SIGINT, then drain and stop cleanly."""
    check_can_listen(node.address)
    if node.metrics_address is not None:
        check_can_listen(node.metrics_address, every=True)
    runtime = NodeRuntime(config, node, first_start=first_start, rebuild=rebuild)
    await runtime.start()
    # The data directory as a full path (load_config takes a relative data_dir against the
    # config file's directory; a config built in code keeps the working directory's).
    data = config.node_data_dir(node).resolve()
    print(
        f"paxoskv node {node.name} (id {node.id}) serving on {node.address}, data in {data}",
        flush=True,
    )
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    runner = asyncio.create_task(runtime.run())
    stopping = asyncio.create_task(stop.wait())
    await asyncio.wait({runner, stopping}, return_when=asyncio.FIRST_COMPLETED)
    if runner.done() and not runner.cancelled() and runner.exception() is not None:
        # Fail-stop: a node whose loop died must not stay up answering Status as a zombie.
        log.critical("node loop crashed", exc_info=runner.exception())
        await runtime.stop(hand_off=False)
        # The last record, after stop's "node stopped": `paxoskv cluster status` takes a log
        # ending with that for a clean stop (shard/cluster.py, rule 7).
        log.critical(
            "node exits: its loop crashed", extra={"node": node.name, "exit_code": CRASH_EXIT}
        )
        raise SystemExit(CRASH_EXIT)
    stopping.cancel()
    await runtime.stop()
    runner.cancel()
    await _let_tasks_end(TASKS_END_S)


async def _let_tasks_end(timeout_s: float) -> None:
    """Wait, at most `timeout_s`, for the tasks still ending: gRPC's handlers of the peers'
    streams, cancelled by the server's stop, need a few more turns of the loop. Left to
    asyncio.run, they are cancelled again, and gRPC logs each one as an unhandled error with
    a traceback (found by review: routine stops logged `"level": "error"` lines)."""
    others = asyncio.all_tasks() - {asyncio.current_task()}
    if others:
        await asyncio.wait(others, timeout=timeout_s)
