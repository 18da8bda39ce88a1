"""NodeCore: the deterministic heart of a node, hosting one replica per Paxos group.

Theory of operation
-------------------
A node hosts a replica of the meta group (0, the shard map) and of every data group the
bootstrap map places on it. The core owns no socket, clock or thread: the runtime (real
process) or the simulator feeds it `tick(now, wall_ns)`, peer messages (`step`) and client
requests (`submit`), then runs `shard.execute.execute_cycle`, which persists the Ready
batches of all groups in one synced write (group commit), sends, applies every chosen slot
into one engine batch, and only then answers clients.

Rules
-----
1. A write is answered only after its slot was chosen (a quorum persisted it) and applied.
2. A linearizable read is served only at an index the replica vouched for (lease or
   read-index), after that index was applied. `stale_ok` reads are served from local state.
3. A request for another cluster, an unknown group, a key outside the group's range or over
   a size limit is refused with a typed error and changes nothing.
4. A write that was proposed but whose fate is unknown when its deadline passes is answered
   OUTCOME_UNKNOWN, never a guess; a write refused before any slot was assigned is NOT_LEADER.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from paxos import NotLeader, ProposalTooLarge, Ready, Replica, ReplicaConfig, Role
from paxos.messages import Message
from paxos.storage import DurableState
from router import kv_pb2 as kv
from router.codec import encode_meta_command
from router.meta import Bootstrap, MetaStateMachine
from router.shard_map import META_GROUP_ID, ShardMap
from shard import codec
from shard.engine import Engine, EngineBatch
from shard.errors import ShardError, Status, WrongShard
from shard.limits import validate_key, validate_value
from shard.state_machine import ShardStateMachine
from txn.hlc import HybridClock

Reply = Callable[[kv.Response], None]
EXPIRY_SWEEP_S = 0.05
# How often a leader checks whether its group's preferred leader should take over.
REBALANCE_S = 1.0


class App(Protocol):
    """The application state machine of one group, as the node drives it."""

    @property
    def applied_index(self) -> int: ...

    def apply(self, slot: int, commands: Sequence[bytes], batch: EngineBatch) -> list[Any]: ...

    def snapshot(self) -> bytes: ...

    def restore(self, index: int, data: bytes, batch: EngineBatch) -> None: ...


class MetaApp:
    """The meta group's state machine, persisted as one snapshot record per applied batch."""

    def __init__(self, engine: Engine) -> None:
        self._key = b"m" + META_GROUP_ID.to_bytes(4, "big")
        self.machine = MetaStateMachine()
        data = engine.get(self._key)
        if data is not None:
            self.machine.restore(_meta_index(data), data)

    @property
    def applied_index(self) -> int:
        return self.machine.applied_index

    def apply(self, slot: int, commands: Sequence[bytes], batch: EngineBatch) -> list[Any]:
        results = self.machine.apply(slot, commands)
        batch.put(self._key, self.machine.snapshot())
        return results

    def snapshot(self) -> bytes:
        return self.machine.snapshot()

    def restore(self, index: int, data: bytes, batch: EngineBatch) -> None:
        self.machine.restore(index, data)
        batch.put(self._key, data)


def _meta_index(data: bytes) -> int:
    from router.codec import decode_meta_snapshot

    return decode_meta_snapshot(data)[0]


@dataclass(slots=True)
class _Pending:
    kind: str
    request: Any
    reply: Reply
    deadline: float
    request_id: int


@dataclass(slots=True)
class GroupHost:
    group_id: int
    replica: Replica
    app: App
    proposals: dict[int, _Pending]
    reads: dict[int, _Pending]


class NodeDisk(Protocol):
    """Durable storage of a node: Paxos state of every group plus the engine for data."""

    engine: Engine

    def load(self, group_id: int) -> DurableState: ...

    def persist(self, batches: Sequence[tuple[int, Any]]) -> None:
        """Make every group's PersistBatch durable with one synced write."""
        ...


def replica_config(node_id: int, voters: Sequence[int], settings: Any) -> ReplicaConfig:
    """Translate the node config's Paxos settings (milliseconds) into a ReplicaConfig."""
    return ReplicaConfig(
        node_id=node_id,
        voters=tuple(voters),
        election_timeout_min_s=settings.election_timeout_min_ms / 1000,
        election_timeout_max_s=settings.election_timeout_max_ms / 1000,
        heartbeat_interval_s=settings.heartbeat_interval_ms / 1000,
        lease_duration_s=settings.lease_ms / 1000,
        lease_drift_s=settings.lease_drift_ms / 1000,
        max_batch_count=settings.max_batch_count,
        max_batch_bytes=settings.max_batch_bytes,
        pipeline_window=settings.pipeline_window,
        compact_threshold=settings.compact_threshold,
        compact_keep=settings.compact_keep,
    )


class NodeCore:
    """All groups of one node; deterministic given its inputs."""

    def __init__(
        self,
        *,
        cluster_id: str,
        node_id: int,
        bootstrap_map: ShardMap,
        disk: NodeDisk,
        paxos_settings: Any,
        rng: random.Random,
        request_timeout_s: float,
    ) -> None:
        self.cluster_id = cluster_id
        self.node_id = node_id
        self._bootstrap_map = bootstrap_map
        self._engine = disk.engine
        self._timeout_s = request_timeout_s
        self._hlc = HybridClock()
        self._now = 0.0
        self._next_sweep = 0.0
        self._next_rebalance = 0.0
        self._next_read_id = 1
        self._bootstrap_proposed = False
        self.hosts: dict[int, GroupHost] = {}
        for group_id in bootstrap_map.group_ids():
            voters = bootstrap_map.replicas(group_id)
            if node_id not in voters:
                continue
            app: App
            if group_id == META_GROUP_ID:
                app = MetaApp(disk.engine)
            else:
                desc = bootstrap_map.group(group_id)
                app = ShardStateMachine(group_id, (desc.start, desc.end), disk.engine)
            replica = Replica(
                replica_config(node_id, voters, paxos_settings),
                disk.load(group_id),
                app.applied_index,
                random.Random(rng.getrandbits(64)),
            )
            self.hosts[group_id] = GroupHost(group_id, replica, app, {}, {})
        self._answers: list[tuple[_Pending, Any]] = []

    # ------------------------------------------------------------------ state

    @property
    def shard_map(self) -> ShardMap:
        """The meta group's map once it is chosen, else the bootstrap map from the config."""
        meta = self.hosts.get(META_GROUP_ID)
        if meta is not None and isinstance(meta.app, MetaApp):
            current = meta.app.machine.shard_map
            if current is not None:
                return current
        return self._bootstrap_map

    def leader_address(self, leader: int | None) -> str:
        if leader is None:
            return ""
        try:
            return self.shard_map.node(leader).client_addr
        except Exception:
            return ""

    # ------------------------------------------------------------------ inputs

    def tick(self, now: float, wall_ns: int) -> None:
        self._now = now
        self._hlc.now(wall_ns)
        for host in self.hosts.values():
            host.replica.tick(now)
        if now >= self._next_sweep:
            self._next_sweep = now + EXPIRY_SWEEP_S
            self._expire(now)
        if now >= self._next_rebalance:
            self._next_rebalance = now + REBALANCE_S
            self._spread_leaders()
        self._maybe_bootstrap_meta()

    def step(self, group_id: int, msg: Message) -> bool:
        """Deliver a peer message; False when this node hosts no such group."""
        host = self.hosts.get(group_id)
        if host is None:
            return False
        host.replica.step(msg)
        return True

    def submit(self, request: kv.Request, reply: Reply) -> None:
        """Start one client request; `reply` is called exactly once with its response."""
        kind = request.WhichOneof("op")
        if kind is None:
            reply(kv.Response(id=request.id, error=_error(kv.INVALID_ARGUMENT, "empty request")))
            return
        op = getattr(request, kind)
        pending = _Pending(kind, op, reply, self._now + self._timeout_s, request.id)
        try:
            host = self._admit(kind, op)
            if kind in ("get", "scan"):
                self._start_read(host, pending)
            else:
                self._start_write(host, pending)
        except _Refusal as refusal:
            self._reply_error(pending, refusal.error)

    def _admit(self, kind: str, op: Any) -> GroupHost:
        """Rule 3: check cluster, group, range and limits before anything else."""
        header = op.header
        if header.cluster_id != self.cluster_id:
            raise _Refusal(
                _error(
                    kv.WRONG_CLUSTER,
                    f"request for cluster {header.cluster_id!r} reached a node of cluster "
                    f"{self.cluster_id!r}",
                )
            )
        shard_map = self.shard_map
        group_id = header.group_id
        host = self.hosts.get(group_id)
        if host is None or group_id == META_GROUP_ID:
            raise _Refusal(
                _error(
                    kv.UNKNOWN_GROUP,
                    f"node {self.node_id} hosts no data group {group_id}",
                    map_version=shard_map.version,
                )
            )
        desc = shard_map.group(group_id)
        try:
            if kind == "scan":
                end = op.end if op.HasField("end") else None
                inside = op.start >= desc.start and (
                    end is None or desc.end is None or end <= desc.end
                )
                if not inside:
                    raise WrongShard(op.start, desc.start, desc.end)
            else:
                validate_key(op.key)
                if not desc.contains(op.key):
                    raise WrongShard(op.key, desc.start, desc.end)
                if kind == "put":
                    validate_value(op.value)
                elif kind == "cas" and op.WhichOneof("action") == "new_value":
                    validate_value(op.new_value)
        except WrongShard as exc:
            raise _Refusal(
                _error(kv.WRONG_SHARD, str(exc), map_version=shard_map.version)
            ) from None
        except ShardError as exc:
            code = kv.LIMIT_EXCEEDED if exc.status is Status.LIMIT_EXCEEDED else kv.INVALID_ARGUMENT
            raise _Refusal(_error(code, str(exc))) from None
        return host

    def _start_write(self, host: GroupHost, pending: _Pending) -> None:
        op, kind = pending.request, pending.kind
        ts = self._hlc.now(0)
        try:
            if kind == "put":
                command = codec.encode_put(op.key, op.value, ts)
            elif kind == "delete":
                command = codec.encode_delete(op.key, ts)
            else:
                expect = op.WhichOneof("expect")
                action = op.WhichOneof("action")
                if expect is None or action is None:
                    raise _Refusal(
                        _error(
                            kv.INVALID_ARGUMENT,
                            "compare-and-set needs one condition (expected_value, "
                            "expected_version or expect_absent) and one action (new_value or "
                            "delete)",
                        )
                    )
                command = codec.encode_cas(
                    op.key,
                    ts,
                    expected_value=op.expected_value if expect == "expected_value" else None,
                    expected_version=op.expected_version if expect == "expected_version" else None,
                    expect_absent=expect == "expect_absent",
                    new_value=op.new_value if action == "new_value" else None,
                    delete=action == "delete",
                )
        except ShardError as exc:
            raise _Refusal(_error(kv.INVALID_ARGUMENT, str(exc))) from None
        try:
            proposal_id = host.replica.propose(command)
        except NotLeader as exc:
            raise _Refusal(self._not_leader(exc)) from None
        except ProposalTooLarge as exc:
            raise _Refusal(_error(kv.LIMIT_EXCEEDED, str(exc))) from None
        host.proposals[proposal_id] = pending

    def _start_read(self, host: GroupHost, pending: _Pending) -> None:
        if pending.request.stale_ok:
            self._answers.append((pending, self._serve_read(host, pending)))
            return
        read_id = self._next_read_id
        self._next_read_id += 1
        try:
            host.replica.read(read_id, self._now)
        except NotLeader as exc:
            raise _Refusal(self._not_leader(exc)) from None
        host.reads[read_id] = pending

    def _not_leader(self, exc: NotLeader) -> kv.Error:
        if exc.leader_hint is None:
            return _error(kv.UNAVAILABLE, f"{exc}; no leader known yet, retry shortly")
        return _error(
            kv.NOT_LEADER,
            str(exc),
            leader_id=exc.leader_hint,
            leader_addr=self.leader_address(exc.leader_hint),
        )

    def _maybe_bootstrap_meta(self) -> None:
        """The meta leader records the bootstrap map once, so the map lives in group 0."""
        meta = self.hosts.get(META_GROUP_ID)
        if (
            meta is None
            or self._bootstrap_proposed
            or meta.replica.role is not Role.LEADER
            or not isinstance(meta.app, MetaApp)
            or meta.app.machine.shard_map is not None
        ):
            return
        command = encode_meta_command(Bootstrap(shard_map=self._bootstrap_map))
        meta.replica.propose(command)
        self._bootstrap_proposed = True

    def _spread_leaders(self) -> None:
        """Hand each group we lead to its preferred leader, so leaders spread over nodes."""
        shard_map = self.shard_map
        for group_id, host in self.hosts.items():
            if host.replica.role is not Role.LEADER:
                continue
            preferred = shard_map.preferred_leader(group_id)
            if preferred != self.node_id:
                host.replica.transfer_leadership(preferred)

    def _expire(self, now: float) -> None:
        """Rule 4: answer requests whose deadline passed."""
        for host in self.hosts.values():
            for table, code, text in (
                (
                    host.proposals,
                    kv.OUTCOME_UNKNOWN,
                    "the write was proposed but its outcome is unknown (leadership changed or "
                    "the group lost its quorum); read the key to find out",
                ),
                (host.reads, kv.UNAVAILABLE, "the read could not be confirmed in time; retry"),
            ):
                expired = [k for k, p in table.items() if p.deadline <= now]
                for key in expired:
                    self._reply_error(table.pop(key), _error(code, text))

    # ------------------------------------------------------------------ cycle

    def collect(self) -> list[tuple[GroupHost, Ready]]:
        """The Ready batches of every group with work to do."""
        if self.hosts.get(META_GROUP_ID) is not None:
            self._maybe_bootstrap_meta()
        return [(h, h.replica.ready()) for h in self.hosts.values() if h.replica.has_ready()]

    def apply(self, readies: Sequence[tuple[GroupHost, Ready]], batch: EngineBatch) -> None:
        """Restore snapshots and apply chosen slots into `batch`; stage the answers."""
        for host, ready in readies:
            if ready.snapshot is not None:
                host.app.restore(ready.snapshot.index, ready.snapshot.data, batch)
            for entry in ready.committed:
                results = host.app.apply(entry.slot, entry.value, batch)
                if not results:
                    continue
                for proposal_id, result in zip(entry.proposal_ids, results, strict=True):
                    if proposal_id is None:
                        continue
                    pending = host.proposals.pop(proposal_id, None)
                    if pending is not None:
                        self._answers.append((pending, result))

    def answer(self, readies: Sequence[tuple[GroupHost, Ready]]) -> None:
        """After the apply batch is written: reply to clients and advance the replicas."""
        for host, ready in readies:
            for proposal_id, exc in ready.dropped:
                pending = host.proposals.pop(proposal_id, None)
                if pending is not None:
                    self._reply_error(pending, self._not_leader(exc))
            for proposal_id in ready.outcome_unknown:
                pending = host.proposals.pop(proposal_id, None)
                if pending is not None:
                    self._reply_error(
                        pending,
                        _error(kv.OUTCOME_UNKNOWN, "a snapshot replaced the slot of this write"),
                    )
            for read_id, exc in ready.dropped_reads:
                pending = host.reads.pop(read_id, None)
                if pending is not None:
                    self._reply_error(pending, self._not_leader(exc))
            for read in ready.reads:
                pending = host.reads.pop(read.read_id, None)
                if pending is not None:
                    self._answers.append((pending, self._serve_read(host, pending)))
            for peer in ready.snapshot_requests:
                host.replica.send_snapshot(peer, host.app.applied_index, host.app.snapshot())
            host.replica.advance(ready)
        answers, self._answers = self._answers, []
        for pending, result in answers:
            if isinstance(result, kv.Error):
                self._reply_error(pending, result)
            elif isinstance(result, codec.CommandResult):
                pending.reply(_write_response(pending, result))
            else:
                pending.reply(result)

    def _serve_read(self, host: GroupHost, pending: _Pending) -> kv.Response | kv.Error:
        op = pending.request
        app = host.app
        assert isinstance(app, ShardStateMachine)
        at = op.at_version or None
        try:
            if pending.kind == "get":
                found = app.get(op.key, at)
                if found is None:
                    return kv.Response(id=pending.request_id, get=kv.GetResponse(found=False))
                value, version = found
                return kv.Response(
                    id=pending.request_id,
                    get=kv.GetResponse(found=True, value=value, version=version),
                )
            end = op.end if op.HasField("end") else app.key_range[1]
            limit = op.limit or 1000
            items = app.scan(op.start, end, limit, at)
            return kv.Response(
                id=pending.request_id,
                scan=kv.ScanResponse(
                    items=[kv.KeyValue(key=k, value=v, version=ver) for k, v, ver in items]
                ),
            )
        except WrongShard as exc:
            return _error(kv.WRONG_SHARD, str(exc), map_version=self.shard_map.version)
        except ShardError as exc:
            return _error(kv.INVALID_ARGUMENT, str(exc))

    def _reply_error(self, pending: _Pending, error: kv.Error) -> None:
        response = kv.Response(id=pending.request_id)
        getattr(response, pending.kind).error.CopyFrom(error)
        pending.reply(response)

    # ------------------------------------------------------------------ status

    def status(self) -> kv.StatusResponse:
        shard_map = self.shard_map
        groups = []
        for group_id, host in sorted(self.hosts.items()):
            st = host.replica.status()
            group = kv.GroupStatus(
                group_id=group_id,
                replicas=shard_map.replicas(group_id),
                role=st.role.value,
                leader_id=st.leader_hint or 0,
                ballot=str(st.promised),
                chosen_index=st.chosen_watermark,
                applied_index=st.applied_index,
                lease_valid=host.replica.has_valid_lease(self._now),
            )
            if group_id != META_GROUP_ID:
                desc = shard_map.group(group_id)
                group.start = desc.start
                if desc.end is not None:
                    group.end = desc.end
            groups.append(group)
        return kv.StatusResponse(
            cluster_id=self.cluster_id,
            node_id=self.node_id,
            map_version=shard_map.version,
            groups=groups,
        )


class _Refusal(Exception):
    def __init__(self, error: kv.Error) -> None:
        super().__init__(error.message)
        self.error = error


def _error(code: int, message: str, **fields: Any) -> kv.Error:
    return kv.Error(code=code, message=message, **fields)  # type: ignore[arg-type]


def _write_response(pending: _Pending, result: codec.CommandResult) -> kv.Response:
    response = kv.Response(id=pending.request_id)
    if result.status not in (Status.OK, Status.CAS_FAILED):
        code = kv.LIMIT_EXCEEDED if result.status is Status.LIMIT_EXCEEDED else kv.INVALID_ARGUMENT
        getattr(response, pending.kind).error.CopyFrom(_error(code, result.message))
        return response
    if pending.kind == "put":
        response.put.version = result.version
    elif pending.kind == "delete":
        response.delete.version = result.version
    else:
        cas = response.cas
        cas.succeeded = result.ok
        cas.version = result.version
        if not result.ok:
            cas.found = result.current_value is not None
            cas.current_value = result.current_value or b""
            cas.current_version = result.current_version
    return response
