"""Simulated Paxos-group hosts: a `Replica`, its disk, a register application and clients.

`PaxosHost` is the first kind of `world.Host`. Its loop is the one every driver must follow
(`paxos/ready.py`): on each wake it ticks, steps the inbox, hands client requests to the
replica, then executes every Ready in order:

    send messages -> persist (synced if it needs it) -> send messages_after_persist ->
    restore snapshot, apply committed -> answer dropped/reads/snapshot requests/
    outcome_unknown -> advance

A crash can be armed to strike at any point of that sequence (`CrashPlan`), including in the
middle of the sends and of the applies. The application writes (applies and snapshot
restores) and a persist of chosen watermarks alone go to the same `SimDisk` as the Paxos state
but unsynced: they become durable with the next synced persist, as they would in the node's
single RocksDB WAL, and a crash may lose all, some (a prefix) or none of them.

The application is a set of registers: a command is `b"key=value"` with a unique value. Its
snapshot is the serialized list of applied slots, so the checkers can compare a restored
state slot by slot with what was chosen.
"""

from __future__ import annotations

import os
import random
import struct
from dataclasses import dataclass, field, replace

from world import Host, HostTiming, SimDisk, World

from paxos import (
    DurableState,
    Message,
    NotLeader,
    PersistBatch,
    Ready,
    Replica,
    ReplicaConfig,
    Role,
    Value,
)
from paxos.messages import Accepted

# ---------------------------------------------------------------------- the application


class RegisterApp:
    """Applied slots, in order, and the registers they define."""

    __slots__ = ("index", "log", "regs")

    def __init__(self, index: int = 0, log: list[tuple[int, Value]] | None = None) -> None:
        self.index = index
        self.log: list[tuple[int, Value]] = log if log is not None else []
        self.regs: dict[bytes, bytes] = {}
        for _, value in self.log:
            self._set(value)

    def _set(self, value: Value) -> None:
        regs = self.regs
        for command in value:
            key, _, val = command.partition(b"=")
            regs[key] = val

    def apply(self, slot: int, value: Value) -> None:
        if slot != self.index + 1:
            raise AssertionError(f"apply of slot {slot} after slot {self.index}: gap or repeat")
        self.log.append((slot, value))
        self.index = slot
        self._set(value)

    def snapshot(self) -> bytes:
        return encode_log(self.index, self.log)

    def restore(self, index: int, data: bytes) -> None:
        snap_index, log = decode_log(data)
        if snap_index != index:
            raise AssertionError(f"snapshot says index {snap_index}, Ready says {index}")
        self.index = index
        self.log = log
        self.regs = {}
        for _, value in log:
            self._set(value)


def encode_log(index: int, log: list[tuple[int, Value]]) -> bytes:
    parts = [struct.pack(">QI", index, len(log))]
    for slot, value in log:
        parts.append(struct.pack(">QI", slot, len(value)))
        for command in value:
            parts.append(struct.pack(">I", len(command)))
            parts.append(command)
    return b"".join(parts)


def decode_log(data: bytes) -> tuple[int, list[tuple[int, Value]]]:
    index, count = struct.unpack_from(">QI", data, 0)
    pos = 12
    log: list[tuple[int, Value]] = []
    for _ in range(count):
        slot, n = struct.unpack_from(">QI", data, pos)
        pos += 12
        commands = []
        for _ in range(n):
            (length,) = struct.unpack_from(">I", data, pos)
            pos += 4
            commands.append(data[pos : pos + length])
            pos += length
        log.append((slot, tuple(commands)))
    return index, log


# ---------------------------------------------------------------------- the disk


@dataclass(slots=True)
class GroupDiskState:
    """What one replica's disk holds: the acceptor state and the application state."""

    paxos: DurableState = field(default_factory=DurableState)
    app_index: int = 0
    app_log: list[tuple[int, Value]] = field(default_factory=list)


def _fold(state: GroupDiskState, record: tuple[object, ...]) -> None:
    kind = record[0]
    if kind == "persist":
        batch = record[1]
        assert isinstance(batch, PersistBatch)
        state.paxos.apply(batch)
    elif kind == "apply":
        slot, value = record[1], record[2]
        assert isinstance(slot, int)
        if slot != state.app_index + 1:
            raise AssertionError(f"durable apply of slot {slot} after {state.app_index}")
        state.app_log.append((slot, value))  # type: ignore[arg-type]
        state.app_index = slot
    elif kind == "restore":
        index, data = record[1], record[2]
        assert isinstance(index, int) and isinstance(data, bytes)
        state.app_index, state.app_log = decode_log(data)
    else:
        raise AssertionError(f"unknown disk record {kind!r}")


def _copy(state: GroupDiskState) -> GroupDiskState:
    p = state.paxos
    return GroupDiskState(
        # Every field, the votes copied (found when the lease record was added: a copy
        # field by field left it out, and restarts forgot it).
        paxos=replace(p, accepted=dict(p.accepted)),
        app_index=state.app_index,
        app_log=list(state.app_log),
    )


def new_group_disk() -> SimDisk[GroupDiskState, tuple[object, ...]]:
    return SimDisk(GroupDiskState(), _fold, _copy)


# ---------------------------------------------------------------------- client operations


@dataclass(slots=True, kw_only=True)
class WriteOp:
    """One proposal attempt of a register write (each attempt has a unique value)."""

    op_id: int
    command: bytes
    host: int
    invoke: float
    #: pending | acked | dropped | rejected (never proposed) | unknown (crash or snapshot)
    status: str = "pending"
    resp: float | None = None
    slot: int | None = None
    probe: bool = False


@dataclass(slots=True, kw_only=True)
class ReadOp:
    op_id: int
    key: bytes
    host: int
    invoke: float
    status: str = "pending"  # pending | served | rejected | dropped | lost
    resp: float | None = None
    index: int | None = None
    value: bytes | None = None
    via_lease: bool | None = None


class Listener:
    """What a host tells the checkers and the clients. Every method is optional."""

    def on_persist(self, host: PaxosHost, batch: PersistBatch) -> None: ...
    def on_send(self, host: PaxosHost, msg: Message) -> None: ...
    def on_apply(self, host: PaxosHost, slot: int, value: Value) -> None: ...
    def on_restore(self, host: PaxosHost, index: int, log: list[tuple[int, Value]]) -> None: ...
    def on_boot(self, host: PaxosHost) -> None: ...
    def on_crash_point(self, host: PaxosHost, phase: str) -> None: ...
    def on_leader(self, host: PaxosHost) -> None: ...
    def on_write_done(self, op: WriteOp, hint: int | None) -> None: ...
    def on_read_done(self, op: ReadOp, hint: int | None) -> None: ...


# ---------------------------------------------------------------------- the host


@dataclass(frozen=True, slots=True)
class CrashPlan:
    """Crash during the next Ready, at `phase`, before item `k` of that phase.

    Phases, in execution order: start, send, persist, after_persist, send_after, apply,
    answer, advance. `k` counts messages for the send phases and committed entries for
    apply; a phase with fewer items crashes at its end.
    """

    phase: str
    k: int
    mode: str
    #: Stay armed until a Ready that installs a snapshot, then strike there.
    on_snapshot: bool = False


_MUTATIONS = frozenset(os.environ.get("PAXOS_SIM_MUTATION", "").split(","))

PHASES = ("start", "send", "persist", "after_persist", "send_after", "apply", "answer", "advance")


class _CrashNow(Exception):
    pass


class PaxosHost(Host):
    """One replica of one Paxos group, with its disk and its register application."""

    def __init__(
        self,
        world: World,
        config: ReplicaConfig,
        timing: HostTiming,
        listener: Listener,
        rate: float = 1.0,
    ) -> None:
        super().__init__(world, config.node_id, timing, rate)
        self.config = config
        self.listener = listener
        self.disk = new_group_disk()
        self.replica: Replica | None = None
        self.app = RegisterApp()
        self.crash_plan: CrashPlan | None = None
        self._client_queue: list[WriteOp | ReadOp] = []
        self._writes: dict[int, WriteOp] = {}
        self._reads: dict[int, ReadOp] = {}
        self._served_wait: list[tuple[ReadOp, int]] = []
        self.readies = 0
        self._was_leader = False
        #: Mutation switch for the mutation proof only (tests/sim/mutations.py): send
        #: Promise/Accepted before they are durable, i.e. treat messages_after_persist as
        #: messages.
        self.send_votes_before_persist = "send_votes_before_persist" in _MUTATIONS

    # ------------------------------------------------------------------ life cycle

    def boot(self) -> None:
        state = self.disk.load()
        self.app = RegisterApp(state.app_index, state.app_log)
        rng = random.Random(self.world.rng.getrandbits(64))
        self.replica = Replica(self.config, state.paxos, state.app_index, rng)
        # Rule 14: what a rebuilding replica stores is no vote (the oracle counts votes).
        self._rebuilding = state.paxos.rebuilding
        self._client_queue = []
        self._writes = {}
        self._reads = {}
        self._served_wait = []
        self._was_leader = False
        self.listener.on_boot(self)

    def _votes_of(self, ready: Ready) -> PersistBatch:
        """The persist as the oracle sees votes: while the replica was rebuilding (rule 14)
        its stored Accepts are no votes, except those it answers with an Accepted in this
        very Ready (it finished rebuilding in it)."""
        batch = ready.persist
        if not self._rebuilding or not batch.accepted:
            return batch
        answered = {
            (slot, msg.ballot)
            for msg in ready.messages_after_persist
            if isinstance(msg, Accepted)
            for slot in msg.slots
        }
        return batch.with_votes(
            {slot: vote for slot, vote in batch.accepted.items() if (slot, vote[0]) in answered}
        )

    def on_crash(self, mode: str) -> None:
        self.disk.crash(mode, self.world.rng)
        self.replica = None
        self.crash_plan = None
        done: list[WriteOp | ReadOp] = []
        for op in self._client_queue:
            # Never handed to the replica: certainly not proposed.
            op.status = "rejected" if isinstance(op, WriteOp) else "lost"
            done.append(op)
        for write in self._writes.values():
            write.status = "unknown"  # proposed: it may still be chosen
            done.append(write)
        for read in self._reads.values():
            read.status = "lost"
            done.append(read)
        for read, _ in self._served_wait:
            read.status = "lost"
            done.append(read)
        self._client_queue = []
        self._writes = {}
        self._reads = {}
        self._served_wait = []
        for op in done:
            if isinstance(op, WriteOp):
                self.listener.on_write_done(op, None)
            else:
                self.listener.on_read_done(op, None)

    # ------------------------------------------------------------------ client entry points

    def submit(self, op: WriteOp | ReadOp) -> None:
        """A client request reaches this host; it is handled at the next wake."""
        self._client_queue.append(op)
        self.request_wake(self.world.now)

    # ------------------------------------------------------------------ the loop

    def on_wake(self, timer: bool) -> None:
        replica = self.replica
        assert replica is not None
        now = self.local_now()
        timing = self.timing
        tick = timer or timing.tick_on_message
        if timing.deliver_before_tick:
            replica.observe_time(now)
        elif tick:
            replica.tick(now)
        if self.inbox:
            inbox, self.inbox = self.inbox, []
            for _, msg in inbox:
                replica.step(msg)
        if tick and timing.deliver_before_tick:
            replica.tick(now)
        if self._client_queue:
            queue, self._client_queue = self._client_queue, []
            for op in queue:
                self._handle_client(replica, op, now)
        try:
            cycles = 0
            while replica.has_ready():
                cycles += 1
                if cycles > 1000:
                    raise AssertionError(f"host {self.id}: has_ready() never settles")
                self.execute(replica, replica.ready())
        except _CrashNow:
            plan = self.crash_plan
            assert plan is not None
            self.listener.on_crash_point(self, plan.phase)
            self.crash(plan.mode)
            return
        if replica.role is Role.LEADER and not self._was_leader:
            self.listener.on_leader(self)
        self._was_leader = replica.role is Role.LEADER

    def _handle_client(self, replica: Replica, op: WriteOp | ReadOp, now: float) -> None:
        if isinstance(op, WriteOp):
            try:
                pid = replica.propose(op.command)
            except NotLeader as exc:
                op.status = "rejected"
                op.resp = self.world.now
                self.listener.on_write_done(op, exc.leader_hint)
                return
            self._writes[pid] = op
        else:
            try:
                replica.read(op.op_id, now)
            except NotLeader as exc:
                op.status = "rejected"
                op.resp = self.world.now
                self.listener.on_read_done(op, exc.leader_hint)
                return
            self._reads[op.op_id] = op

    def _point(self, phase: str, i: int = 0) -> None:
        plan = self.crash_plan
        if plan is not None and plan.phase == phase and i >= plan.k:
            raise _CrashNow()

    def execute(self, replica: Replica, ready: Ready) -> None:
        """Execute one Ready in the order of paxos/ready.py, with optional crash points."""
        self.readies += 1
        world = self.world
        send = world.net.send
        me = self.id
        plan = self.crash_plan
        armed = plan is not None and (not plan.on_snapshot or ready.snapshot is not None)
        if armed:
            self._point("start")
        early = ready.messages
        late = ready.messages_after_persist
        if self.send_votes_before_persist:
            early, late = early + late, []
        on_send = self.listener.on_send
        for i, msg in enumerate(early):
            if armed:
                self._point("send", i)
            on_send(self, msg)
            send(me, msg.dst, msg)
        if armed:
            self._point("send", len(early))
            self._point("persist")
        if not ready.persist.is_empty():
            self.disk.write(("persist", ready.persist), sync=ready.persist.needs_sync())
            self.listener.on_persist(self, self._votes_of(ready))
            if ready.persist.rebuilding is not None:
                self._rebuilding = ready.persist.rebuilding
        if armed:
            self._point("after_persist")
        for i, msg in enumerate(late):
            if armed:
                self._point("send_after", i)
            on_send(self, msg)
            send(me, msg.dst, msg)
        if armed:
            self._point("send_after", len(late))
            self._point("apply")
        app = self.app
        disk = self.disk
        if ready.snapshot is not None:
            snap = ready.snapshot
            app.restore(snap.index, snap.data)
            disk.write(("restore", snap.index, snap.data))
            self.listener.on_restore(self, snap.index, app.log)
        acked: list[tuple[int, int]] = []
        for i, entry in enumerate(ready.committed):
            if armed:
                self._point("apply", i)
            app.apply(entry.slot, entry.value)
            disk.write(("apply", entry.slot, entry.value))
            self.listener.on_apply(self, entry.slot, entry.value)
            for pid in entry.proposal_ids:
                if pid is not None:
                    acked.append((pid, entry.slot))
        if armed:
            self._point("apply", len(ready.committed))
            self._point("answer")
        self._answer(replica, ready, acked)
        if armed:
            self._point("advance")
        replica.advance(ready)
        world.trace(
            "ready",
            me,
            len(ready.messages),
            len(ready.messages_after_persist),
            len(ready.committed),
            app.index,
        )

    def _answer(self, replica: Replica, ready: Ready, acked: list[tuple[int, int]]) -> None:
        now = self.world.now
        listener = self.listener
        writes = self._writes
        for pid, slot in acked:
            op = writes.pop(pid, None)
            if op is not None:
                op.status = "acked"
                op.resp = now
                op.slot = slot
                listener.on_write_done(op, self.id)
        for pid, exc in ready.dropped:
            op = writes.pop(pid, None)
            if op is not None:
                op.status = "dropped"
                op.resp = now
                listener.on_write_done(op, exc.leader_hint)
        for pid in ready.outcome_unknown:
            op = writes.pop(pid, None)
            if op is not None:
                op.status = "unknown"
                listener.on_write_done(op, None)
        for rid, exc in ready.dropped_reads:
            read = self._reads.pop(rid, None)
            if read is not None:
                read.status = "dropped"
                read.resp = now
                listener.on_read_done(read, exc.leader_hint)
        for state in ready.reads:
            read = self._reads.pop(state.read_id, None)
            if read is not None:
                read.via_lease = state.via_lease
                self._served_wait.append((read, state.index))
        if self._served_wait:
            waiting = []
            for read, index in self._served_wait:
                if self.app.index >= index:
                    read.status = "served"
                    read.resp = now
                    read.index = self.app.index
                    read.value = self.app.regs.get(read.key)
                    listener.on_read_done(read, self.id)
                else:
                    waiting.append((read, index))
            self._served_wait = waiting
        for peer in ready.snapshot_requests:
            replica.send_snapshot(peer, self.app.index, self.app.snapshot())


# ---------------------------------------------------------------------- cluster helpers


def make_config(node_id: int, voters: tuple[int, ...], **overrides: object) -> ReplicaConfig:
    return ReplicaConfig(node_id=node_id, voters=voters, **overrides)  # type: ignore[arg-type]


def leader_of(hosts: list[PaxosHost]) -> PaxosHost | None:
    """The up host that believes it leads with the highest ballot, if any."""
    leaders = [h for h in hosts if h.up and h.replica is not None and h.replica.role is Role.LEADER]
    if not leaders:
        return None
    return max(leaders, key=lambda h: h.replica.status().promised if h.replica else None)
