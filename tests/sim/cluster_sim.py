"""Whole paxoskv clusters in the simulator: NodeCore hosts, routed clients, faults, verdicts.

Theory of operation
-------------------
`ClusterSim(workload, profile, seed)` builds a `World` from `random.Random(seed)` (the only
RNG of the run), draws the knobs of the profile, a fault schedule and the 2PC crash points,
and runs a cluster of `NodeHost`s: N nodes, the meta group 0 and several data groups of 3
replicas each, placed by `router.shard_map.bootstrap`. A `NodeHost` drives a real
`shard.node.NodeCore` exactly as `shard/runtime.py` does, with virtual time: on each wake it
calls `tick(monotonic, wall_ns)`, steps the peer messages and submits the client requests of
its inbox, runs `shard.execute.execute_cycle` until no group has work (at most 16 cycles),
hands `core.outbound` (transaction resolution and recovery requests) to its `Rpc`, and only
then lets its replies leave (a crash at the end of a wake loses them, as a process killed
before gRPC flushed would).

Disks are `shard.disk.MemoryNodeDisk`s behind `SimNodeDisk`, which can crash the process at
four points inside `execute_cycle` (before/after the synced persist, before/after the
unsynced apply batch). A crash is a power loss (unsynced engine writes are lost; the Paxos
log re-applies them), a kill -9 (everything written survives) or, in the "torn" profile, a
torn one: a proper prefix of the unsynced writes survives, in write order across the engine
and every group's Paxos storage, as the real node's one RocksDB write-ahead log keeps.

Clients (`ClientHost`) run `sim_client.SimTxnClient` over an `Rpc`: a request goes to the
cached leader of its group, follows NOT_LEADER hints, rotates replicas on UNAVAILABLE and on
silence, and is re-sent (every request the clients and nodes send is idempotent) until its
deadline. Nodes use the same `Rpc` for their outbound requests.

Faults: seeded drops, duplicates, delays and reordering (`world.SimNetwork`); partitions,
leader isolation and clogged links; crashes and restarts of any node (also of the current
leader of a group), crashes inside a cycle; and the 2PC crash points, "crash host X when
condition C first holds", checked after every wake of a node:

==========================  ===========================================================
trigger                     crashes the leader of a group as soon as...
==========================  ===========================================================
``coord_prepared``          a PREPARE of a multi-group transaction is applied at its
                            coordinator group (the vote has not left yet)
``participant_prepared``    a PREPARE is applied at a non-coordinator participant
``coord_decided``           a decision is applied at the coordinator group (which resolved
                            its own part with it) and no other participant learned it yet
==========================  ===========================================================

plus client processes that die (``abandon``) before the commit, with their Prepares in
flight, after every yes vote (the user was told "committed") before resolving anything, or
after a failed vote before recording the abort.

A run has four phases in virtual time: warm-up (every group elects a leader, then the
workload's setup commits under the profile's network; a retry runs in a new process whose
commit deadline is `SETUP_RETRY_TIMEOUT_S`, as the setup is not what a run tests), chaos
(the workload and the faults), heal (the network heals, crashed nodes restart, clients
finish, in the "chaos" profile after working on for `Knobs.after_heal_s`, a final reader
reads every key) and quiescence (no prepared record, intent or unfinished decision may
remain anywhere, every replica of a group converges). `verify()` then checks:

- atomicity: per transaction, the truth is the decision record in its coordinator group;
  the versions the replicas applied during the run (`versions_applied`, recorded as they
  apply, so that MVCC collection takes none of the history away from the checks) are
  exactly the writes of the committed transactions at their commit_ts (each on all
  participants or on none); every replica stores exactly those from its group's collection
  horizon on;
- the client's view matches the truth: ok means committed at that commit_ts, fail means
  not committed (info may be either);
- timestamp order and reads: what a committed transaction read is the newest version
  applied below its commit_ts; a snapshot read at T, the newest applied at or below T;
- real time: a transaction or snapshot invoked after a writing transaction was
  acknowledged reads at or above its commit_ts;
- no transaction in doubt after heal;
- the workload's own check: Elle on the list-append history (strict serializability with
  real-time edges) and every acknowledged append read back at the end; for the bank, every
  successful snapshot and the final state sum to the constant total; for the registers,
  every applied version no transaction wrote is one single-key write's (acknowledged at
  that version, or of unknown outcome; never a refused one), snapshot scans show exactly
  the state at their timestamp, and each key's versions are a linearization in real time
  (`Registers`).

Then progress: a run with fewer acknowledged writing transactions than its profile's floor
(`MIN_WRITERS`) fails too, since a store that commits nothing passes every check above.

A failure raises `SafetyViolation` or `LivenessViolation` whose message ends with the
replay command (`REPLAY_HINT`).
"""

from __future__ import annotations

import bisect
import contextlib
import gc
import itertools
import math
import random
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from real_client import RealTxnClient, SimWatcher, deterministic_txn_ids, watch_problems
from sim_client import (
    ABANDON_POINTS,
    Atomic,
    Leased,
    SimTxnClient,
    TxnResult,
    Write,
    error_of,
    written_value,
)
from world import (
    REDELIVER_LOOKBACKS_S,
    CrashMode,
    Host,
    HostTiming,
    NetworkConfig,
    World,
    describe_lookback,
)

from paxos import PersistBatch, Role
from paxos.messages import Message
from router import kv_pb2 as kv
from router.shard_map import META_GROUP_ID, NodeAddress, ShardMap, bootstrap
from shard import state_machine as state_machine_module
from shard.chaos import elle
from shard.config import PaxosSettings
from shard.disk import MemoryNodeDisk
from shard.execute import background_cycle, execute_cycle
from shard.expiry_duty import EXPIRE_RETRY_S
from shard.mvcc import KEY_TERMINATOR, KEY_TERMINATOR_END, KIND_TOMBSTONE_INT, MAX_U64
from shard.node import NodeCore, TxnSettings
from shard.server import shard_map_response
from shard.ttl import deadline_of
from txn.atomic import AtomicOp, decode_int, encode_int
from txn.hlc import physical_us
from txn.records import DecisionInfo

__all__ = [
    "PROFILES",
    "REAL_CLIENT_PROFILES",
    "WORKLOADS",
    "ClusterResult",
    "ClusterSim",
    "LivenessViolation",
    "Replay",
    "SafetyViolation",
    "parse_replay",
    "run_cluster",
]

CLUSTER_ID = "sim"
WALL_EPOCH_S = 1_750_000_000.0
MAX_CYCLES_PER_WAKE = 16
# A real client process that dies during an operation dies this long after its start at
# most (about twice a calm run's median transaction, reads and commit).
REAL_CLIENT_DEATH_WITHIN_S = 0.05
NODE_REQUEST_TIMEOUT_S = 1.0
CYCLE_POINTS = ("before_persist", "after_persist", "before_apply", "after_apply")
TRIGGERS = ("coord_prepared", "participant_prepared", "coord_decided")
READ_KINDS = frozenset({"get", "scan", "txn_status", "timestamp"})
# Records whose reads `ClusterSim._reads_at_their_timestamp` judges: snapshot gets, plain
# gets, snapshot scans, plain (linearizable) scans.
READ_RECORDS = frozenset({"snapshot", "get", "scan", "pscan"})
# Records of single-key writes outside transactions (the "registers" workload).
SINGLE_WRITES = frozenset({"put", "delete", "cas"})
# Requests of which the "purge" profile's network may deliver a copy very late (the ones
# that a purge may leave without the record that deduplicates them).
LATE_COPY_KINDS = frozenset({"prepare", "commit_one_phase", "decide", "resolve"})
REPLAY_HINT = "PAXOSKV_TXN_SEED={run} python -m pytest tests/sim/test_txn_properties.py -k replay"


class SafetyViolation(AssertionError):
    """A property that must always hold was broken."""


class LivenessViolation(AssertionError):
    """After heal, with every node up and connected, something did not finish in time."""


# ---------------------------------------------------------------------- the disk


class _CrashNow(Exception):
    """Raised at an armed crash point inside execute_cycle."""


class _EngineProxy:
    """The node's engine, with crash points around the apply batch's write."""

    def __init__(self, disk: SimNodeDisk, engine: Any) -> None:
        self._disk = disk
        self._engine = engine

    def get(self, key: bytes) -> bytes | None:
        return self._engine.get(key)  # type: ignore[no-any-return]

    def scan(
        self, lo: bytes, hi: bytes | None, limit: int | None, reverse: bool = False
    ) -> list[tuple[bytes, bytes]]:
        return self._engine.scan(lo, hi, limit, reverse)  # type: ignore[no-any-return]

    def scan_bounded(
        self, lo: bytes, hi: bytes, limit: int, max_bytes: int
    ) -> list[tuple[bytes, bytes]]:
        return self._engine.scan_bounded(lo, hi, limit, max_bytes)  # type: ignore[no-any-return]

    def iterate(self, lo: bytes, hi: bytes) -> Any:
        return self._engine.iterate(lo, hi)

    def new_batch(self) -> Any:
        return self._engine.new_batch()

    def write(self, batch: Any, sync: bool) -> None:
        self._disk.point("before_apply")
        self._disk.unsynced_write_begins()
        self._engine.write(batch, sync)
        if sync:
            self._disk.synced()
        self._disk.point("after_apply")


class SimNodeDisk:
    """A `MemoryNodeDisk` that survives the process, with armable crash points.

    It also keeps the order of the unsynced writes across the engine and every group's
    Paxos storage, as the real node's one RocksDB has one write-ahead log for all of them
    (shard/disk.py): `_marks[i]` is where each storage's unsynced batches and the engine's
    undo records stood before the i-th unsynced write, so that a torn crash
    (`CrashMode.TORN`) keeps exactly a prefix of them in write order. A write is one
    atomic RocksDB batch: a persist (every group's batch of one cycle) or one engine batch.
    """

    def __init__(self) -> None:
        self.inner = MemoryNodeDisk()
        self.engine = _EngineProxy(self, self.inner.engine)
        #: The crash point of the next cycle that reaches it (None: disarmed).
        self.armed: str | None = None
        self.hit: str | None = None
        #: Before each unsynced write since the last sync: (group -> its storage's count of
        #: unsynced batches, the engine's count of undo records).
        self._marks: list[tuple[dict[int, int], int]] = []
        #: (kept, unsynced) writes of the last torn crash.
        self.last_torn: tuple[int, int] | None = None

    def load(self, group_id: int) -> Any:
        return self.inner.load(group_id)

    def persist(self, batches: Any) -> None:
        self.point("before_persist")
        self.unsynced_write_begins()
        self.inner.persist(batches)
        if any(batch.needs_sync() for _, batch in batches):
            self.synced()  # MemoryNodeDisk synced every storage and the engine
        self.point("after_persist")

    def unsynced_write_begins(self) -> None:
        """Remember where the next write starts (it is dropped again if it syncs)."""
        storages = self.inner._storages
        self._marks.append(
            ({g: len(s._unsynced) for g, s in storages.items()}, len(self.inner.engine._undo))
        )

    def synced(self) -> None:
        """Every write so far is durable (one WAL: a synced write syncs all before it)."""
        for storage in self.inner._storages.values():
            storage.sync()
        self.inner.engine.sync()
        self._marks.clear()

    def point(self, name: str) -> None:
        if self.armed == name:
            self.armed = None
            self.hit = name
            raise _CrashNow(name)

    def crash(self, mode: str, rng: random.Random | None = None) -> None:
        """The process died: a power loss forgets unsynced writes, a kill keeps them, a
        torn crash keeps a random prefix of them, in write order across the engine and
        every group's storage (drawn from `rng`, only in that mode): a proper one, neither
        empty nor whole, when there are two or more (none or all is a power loss or a
        kill, which the other profiles draw)."""
        self.armed = None
        if mode == CrashMode.TORN:
            assert rng is not None
            n = len(self._marks)
            keep = rng.randint(1, n - 1) if n >= 2 else rng.randint(0, n)
            self.last_torn = (keep, n)
            if keep < n:
                self._drop_from(self._marks[keep])
            self.synced()  # what survived is on the disk now
        elif mode != CrashMode.KILL:
            self.inner.crash()
            self._marks.clear()

    def _drop_from(self, mark: tuple[dict[int, int], int]) -> None:
        """Lose every write from `mark` on: each storage's later batches, and the engine's
        later writes (undone newest first, as `MemEngine.crash` undoes them all)."""
        counts, engine_undo = mark
        for group_id, storage in self.inner._storages.items():
            del storage._unsynced[counts.get(group_id, 0) :]
        engine = self.inner.engine
        for key, previous in reversed(engine._undo[engine_undo:]):
            engine._raw_set(key, previous)
        del engine._undo[engine_undo:]


# ---------------------------------------------------------------------- routed RPC

OnAnswer = Callable[[kv.Response | None, bool], None]


@dataclass(slots=True, eq=False)
class _Call:
    id: int
    group: int | None
    data: bytes
    deadline: float
    on_done: OnAnswer
    write: bool
    attempt: int = 0
    token: int = 0
    rot: int = 0
    target: int = 0
    ambiguous: bool = False
    done: bool = False
    #: False: a write that is not idempotent, never re-sent once it may have been proposed.
    resend: bool = True


class Rpc:
    """Requests to group leaders over the simulated network, with redirects and re-sends.

    Every request sent through it must be idempotent: it is re-sent on silence (after
    `ATTEMPT_TIMEOUT_S`) and on NOT_LEADER / UNAVAILABLE / OUTCOME_UNKNOWN answers until its
    deadline. `ambiguous` in the answer tells whether some attempt may have been proposed.
    """

    ATTEMPT_TIMEOUT_S = 0.25

    def __init__(self, host: Host, sim: ClusterSim) -> None:
        self.host = host
        self.sim = sim
        self.world = sim.world
        self.leaders: dict[int, int] = {}
        self.calls: dict[int, _Call] = {}
        self.alive = True

    def call(
        self,
        group_id: int | None,
        request: kv.Request,
        timeout_s: float,
        on_done: OnAnswer,
        resend: bool = True,
    ) -> None:
        # Ids are unique in the whole run: a late answer to a dead process's (or a previous
        # incarnation's) request must never match a call of its successor.
        self.sim.next_call_id += 1
        call = _Call(
            id=self.sim.next_call_id,
            group=group_id,
            data=request.SerializeToString(),
            deadline=self.world.now + timeout_s,
            on_done=on_done,
            write=request.WhichOneof("op") not in READ_KINDS,
            resend=resend,
        )
        self.calls[call.id] = call
        self._attempt(call)

    def _candidates(self, group: int | None) -> list[int]:
        if group is None:
            return self.sim.node_ids
        return list(self.sim.shard_map.replicas(group))

    def _attempt(self, c: _Call) -> None:
        if not self.alive or c.done:
            return
        now = self.world.now
        if now >= c.deadline:
            self._finish(c, None)
            return
        nodes = self._candidates(c.group)
        target = self.leaders.get(c.group) if c.group is not None else None
        if target is None or target not in nodes:
            target = nodes[c.rot % len(nodes)]
            c.rot += 1
        c.attempt += 1
        c.target = target
        self.world.net.send(self.host.id, target, ("req", c.id, c.attempt, c.data))
        c.token += 1
        self.world.schedule(
            min(now + self.ATTEMPT_TIMEOUT_S, c.deadline), self._on_timeout, c, c.token
        )

    def _on_timeout(self, c: _Call, token: int) -> None:
        if not self.alive or c.done or token != c.token:
            return
        if c.write:
            c.ambiguous = True
        if c.group is not None and self.leaders.get(c.group) == c.target:
            del self.leaders[c.group]
        if c.ambiguous and not c.resend:
            self._finish(c, None)  # it may have been proposed: no second copy
            return
        self._attempt(c)

    def _on_retry(self, c: _Call, token: int) -> None:
        if self.alive and not c.done and token == c.token:
            self._attempt(c)

    def on_response(self, src: int, call_id: int, attempt: int, data: bytes) -> None:
        c = self.calls.get(call_id)
        if c is None or c.done or not self.alive:
            return
        response = kv.Response.FromString(data)
        error = error_of(response)
        code = error.code
        if code in (kv.NOT_LEADER, kv.UNAVAILABLE, kv.OUTCOME_UNKNOWN):
            if attempt != c.attempt:
                return  # an older attempt's refusal; the current one is still in flight
            if code == kv.OUTCOME_UNKNOWN:
                c.ambiguous = True
                if not c.resend:
                    self._finish(c, None)
                    return
            rng = self.world.rng
            if code == kv.NOT_LEADER and error.leader_id and c.group is not None:
                self.leaders[c.group] = error.leader_id
                delay = rng.uniform(0.0005, 0.003)
            else:
                if c.group is not None:
                    self.leaders.pop(c.group, None)
                delay = rng.uniform(0.005, 0.04)
            c.token += 1
            self.world.schedule(self.world.now + delay, self._on_retry, c, c.token)
            return
        if c.group is not None:
            self.leaders[c.group] = src
        self._finish(c, response)

    def _finish(self, c: _Call, response: kv.Response | None) -> None:
        c.done = True
        self.calls.pop(c.id, None)
        c.on_done(response, c.ambiguous)


# ---------------------------------------------------------------------- nodes


class NodeHost(Host):
    """A node process: a NodeCore over a SimNodeDisk, driven like shard/runtime.py."""

    def __init__(
        self, sim: ClusterSim, node_id: int, timing: HostTiming, skew_s: float, rate: float = 1.0
    ) -> None:
        super().__init__(sim.world, node_id, timing, rate)
        self.sim = sim
        self.skew_s = skew_s
        self.disk = SimNodeDisk()
        self.core: NodeCore | None = None
        self.rpc: Rpc | None = None
        self._outgoing: list[tuple[int, int, int, bytes]] = []
        # (client host, call id, attempt) of every request delivered here, across restarts.
        self.requests_seen: set[tuple[int, int, int]] = set()
        self.cycles = 0
        self.applied_in_wake = False
        #: How the node last went down (a `CrashMode`): the real client's connections see it.
        self.down_mode = ""

    # ------------------------------------------------------------------ clocks

    def wall_ns(self) -> int:
        return int((WALL_EPOCH_S + self.world.now + self.skew_s) * 1e9)

    # ------------------------------------------------------------------ life cycle

    def boot(self) -> None:
        for client in self.sim.client_hosts():
            client.node_restarted(self.id)
        k = self.sim.knobs
        self.core = NodeCore(
            cluster_id=CLUSTER_ID,
            node_id=self.id,
            bootstrap_map=self.sim.shard_map,
            disk=self.disk,
            paxos_settings=k.paxos,
            rng=random.Random(self.world.rng.getrandbits(64)),
            request_timeout_s=k.node_request_timeout_s,
            txn_settings=k.txn,
        )
        self.rpc = Rpc(self, self.sim)
        self._outgoing = []

    def on_crash(self, mode: str) -> None:
        self.down_mode = mode
        self.disk.crash(mode, self.world.rng)
        for client in self.sim.client_hosts():
            client.node_crashed(self.id, mode)
        if self.rpc is not None:
            self.rpc.alive = False
        self.core = None
        self.rpc = None
        self._outgoing = []

    # ------------------------------------------------------------------ the loop

    def _send_peer(self, group_id: int, msgs: Any) -> None:
        send = self.world.net.send
        me = self.id
        for msg in msgs:
            send(me, msg.dst, ("peer", group_id, msg))

    def _reply_to(self, src: int, call_id: int, attempt: int) -> Callable[[kv.Response], None]:
        incarnation = self.incarnation

        def reply(response: kv.Response) -> None:
            if incarnation != self.incarnation or not self.up:
                return
            self._outgoing.append((src, call_id, attempt, response.SerializeToString()))
            self.request_wake(self.world.now)

        return reply

    def on_wake(self, timer: bool) -> None:
        core = self.core
        rpc = self.rpc
        assert core is not None and rpc is not None
        core.tick(self.local_now(), self.wall_ns())
        if self.inbox:
            inbox, self.inbox = self.inbox, []
            for src, payload in inbox:
                kind = payload[0]
                if kind == "peer":
                    msg: Message = payload[2]
                    core.step(payload[1], msg)
                elif kind == "req":
                    # A client's request travels on a stream: it arrives once or not at all.
                    # (A duplicate answered NOT_LEADER while its original copy was already
                    # proposed made the client report a committed transaction failed.)
                    copy = (src, payload[1], payload[2])
                    if copy in self.requests_seen:
                        continue
                    self.requests_seen.add(copy)
                    request = kv.Request.FromString(payload[3])
                    core.submit(request, self._reply_to(src, payload[1], payload[2]))
                elif kind == "resp":
                    rpc.on_response(src, payload[1], payload[2], payload[3])
                elif kind == "unary":
                    self._outgoing.append((src, payload[1], 0, self._unary(*payload[2:])))
        cycles = 0
        try:
            background_cycle(core, self.disk)
            while cycles < MAX_CYCLES_PER_WAKE and execute_cycle(core, self.disk, self._send_peer):
                cycles += 1
        except _CrashNow as point:
            self.sim.on_crash_point(self, str(point))
            return
        self.cycles += cycles
        # Triggers first: a crash point "after the decision is applied, before participants
        # learn it" must also stop the Resolves the same cycle queued (found by review: they
        # left before the crash, so that point was never reached).
        if cycles and self.sim.after_cycles(self):
            return  # a trigger crashed this node: its requests and replies never leave
        if core.outbound:
            outbound, core.outbound = core.outbound, []
            timeout_s = self.sim.knobs.node_request_timeout_s
            for group_id, request, callback in outbound:
                rpc.call(group_id, request, timeout_s, self._outbound_done(callback))
        if self._outgoing:
            outgoing, self._outgoing = self._outgoing, []
            send = self.world.net.send
            for dst, call_id, attempt, data in outgoing:
                # To a real client: on its connection (real_client.py), never lost.
                reliable = self.sim.real_client and dst not in self.sim.nodes
                send(self.id, dst, ("resp", call_id, attempt, data), reliable)
        if cycles:
            self.world.trace("cycles", self.id, cycles)

    def _unary(self, method: str, data: bytes) -> bytes:
        """A real client's unary call (real_client.SimStub), answered as the servicer does."""
        core = self.core
        assert core is not None
        if method == "GetShardMap":
            return shard_map_response(core, kv.ShardMapRequest.FromString(data)).SerializeToString()
        assert method == "Status", method
        return core.status().SerializeToString()

    def _outbound_done(
        self, callback: Callable[[kv.Response | None], None]
    ) -> Callable[[kv.Response | None, bool], None]:
        """As the runtime's RoutingClient: only OK and CONFLICT answers reach the core."""
        incarnation = self.incarnation

        def done(response: kv.Response | None, _ambiguous: bool) -> None:
            if incarnation != self.incarnation or not self.up:
                return
            if response is not None and error_of(response).code not in (kv.OK, kv.CONFLICT):
                response = None
            callback(response)
            self.request_wake(self.world.now)

        return done

    # ------------------------------------------------------------------ inspection

    def rebuilding(self) -> bool:
        """Whether a replica of this node still rebuilds lost data (Paxos rule 14)."""
        core = self.core
        return core is not None and any(h.replica.status().rebuilding for h in core.hosts.values())

    def leads(self, group_id: int) -> bool:
        core = self.core
        if core is None or not self.up:
            return False
        host = core.hosts.get(group_id)
        return host is not None and host.replica.role is Role.LEADER


# ---------------------------------------------------------------------- clients


#: The host id (and process number) of the watcher's machine, apart from the clients'.
WATCHER_HOST_ID = 199


class ClientHost(Host):
    """A client machine: one `SimTxnClient` process at a time over an `Rpc` (the Transport)."""

    def __init__(self, sim: ClusterSim, host_id: int, process: int, skew_s: float) -> None:
        super().__init__(sim.world, host_id, HostTiming(tick_interval_s=3600.0))
        self.sim = sim
        self.cluster_id = CLUSTER_ID
        self.shard_map = sim.shard_map
        self.rng = sim.world.rng
        self.skew_s = skew_s
        self.process = process
        self.rpc = Rpc(self, sim)
        self.client = self._new_client()
        self.busy = False
        self.stopped = False

    # Transport ---------------------------------------------------------------------------

    def now(self) -> float:
        return self.world.now

    def wall_ns(self) -> int:
        return int((WALL_EPOCH_S + self.world.now + self.skew_s) * 1e9)

    def later(self, delay_s: float, fn: Callable[[], None]) -> None:
        rpc = self.rpc
        self.world.schedule(self.world.now + delay_s, self._later, rpc, fn)

    def _later(self, rpc: Rpc, fn: Callable[[], None]) -> None:
        if rpc.alive:
            fn()

    def call(
        self,
        group_id: int | None,
        request: kv.Request,
        timeout_s: float,
        on_done: OnAnswer,
        resend: bool = True,
    ) -> None:
        self.rpc.call(group_id, request, timeout_s, on_done, resend)
        self.sim.maybe_copy_late(self.id, group_id, request)

    def count(self, name: str) -> None:
        self.sim.stats_add(name)

    # Host --------------------------------------------------------------------------------

    def boot(self) -> None:
        pass

    def on_wake(self, timer: bool) -> None:
        pass

    def on_crash(self, mode: str) -> None:
        pass

    def receive(self, src: int, payload: Any) -> None:
        if payload[0] != "resp":
            return
        if isinstance(self.client, RealTxnClient):
            self.client.net.receive(payload[1], payload[3])
        else:
            self.rpc.on_response(src, payload[1], payload[2], payload[3])

    def dies_during(self) -> float | None:
        """For the real client, at the start of an operation: after how long this process
        dies (None: it does not), at a random moment of an operation's usual time."""
        if not self.sim.real_client_dies():
            return None
        return self.world.rng.uniform(0.0, REAL_CLIENT_DEATH_WITHIN_S)

    def node_crashed(self, node_id: int, mode: str) -> None:
        if isinstance(self.client, RealTxnClient):
            self.client.net.node_crashed(node_id, mode)

    def node_restarted(self, node_id: int) -> None:
        if isinstance(self.client, RealTxnClient):
            self.client.net.node_restarted(node_id)

    # the process -------------------------------------------------------------------------

    def _abandon(self, point: str) -> bool:
        """The fault hook of SimTxnClient: maybe die at `point` (a new process takes over)."""
        if not self.sim.client_dies(point):
            return False
        self.rpc.alive = False  # everything the dead process had in flight stops here
        self.rpc = Rpc(self, self.sim)
        self.sim.stats_add(f"client_died@{point}")
        return True

    def background_done(self) -> bool:
        """Whether the process has no work left that it does after answering (the model's
        goes on in the host's `Rpc`, which outlives its processes)."""
        return not isinstance(self.client, RealTxnClient) or self.client.background_done()

    def new_process(self, commit_timeout_s: float | None = None) -> None:
        """After an indeterminate outcome the process counts as crashed (Jepsen's rule).
        The new one's deadline is `commit_timeout_s`, else the run's."""
        if isinstance(self.client, RealTxnClient):
            self.client.kill()
        self.process += self.sim.knobs.clients
        self.client = self._new_client(commit_timeout_s)

    def _new_client(self, commit_timeout_s: float | None = None) -> SimTxnClient | RealTxnClient:
        k = self.sim.knobs
        timeout_s = k.commit_timeout_s if commit_timeout_s is None else commit_timeout_s
        if self.sim.real_client:
            return RealTxnClient(self, timeout_s, k.settle_unknown)
        return SimTxnClient(
            self,
            commit_timeout_s=timeout_s,
            abandon=self._abandon,
            mutations=self.sim.mutations,
            settle_unknown=k.settle_unknown,
            forged_resolves=k.forged_resolves,
        )


# ---------------------------------------------------------------------- workloads


def encode_list(values: list[int]) -> bytes:
    return b",".join(b"%d" % v for v in values)


def decode_list(data: bytes | None) -> list[int]:
    if not data:
        return []
    return [int(x) for x in data.split(b",")]


@dataclass(slots=True, kw_only=True)
class TxnRecord:
    """One transaction of the history, with what the client concluded."""

    process: int
    kind: str  # "rw" | "snapshot" | "get" (a plain linearizable read of one key)
    mops: list[list[Any]]
    invoke: float
    complete: float = 0.0
    result: TxnResult | None = None


class Workload:
    """Generates transactions and judges the history; see ListAppend and Bank."""

    name = ""

    def __init__(self, sim: ClusterSim) -> None:
        self.sim = sim
        self.rng = sim.world.rng
        self.records: list[TxnRecord] = []
        #: (key, version) of every applied version a single-key write (outside any
        #: transaction) accounts for; `check` fills it, `ClusterSim.verify` reads it.
        self.single_key_versions: set[tuple[bytes, int]] = set()

    def all_keys(self) -> list[bytes]:
        raise NotImplementedError

    def setup(self, client: ClientHost, done: Callable[[bool], None]) -> None:
        done(True)

    def start_one(self, client: ClientHost, done: Callable[[TxnRecord], None]) -> None:
        raise NotImplementedError

    def final_read(self, client: ClientHost, done: Callable[[TxnRecord], None]) -> None:
        raise NotImplementedError

    def check(self, final: TxnRecord) -> list[str]:
        raise NotImplementedError

    def _run_rw(
        self,
        client: ClientHost,
        kind: str,
        mops: list[list[Any]],
        keys: list[bytes],
        body: Callable[[dict[bytes, bytes | None]], dict[bytes, bytes | None]],
        done: Callable[[TxnRecord], None],
        scans: Sequence[tuple[bytes, bytes]] = (),
    ) -> TxnRecord:

        def launch(finished: Callable[[TxnResult], None]) -> None:
            if kind == "snapshot":
                client.client.snapshot(keys, finished)
            elif kind == "get":
                client.client.get(keys[0], finished)
            else:
                client.client.transaction(keys, body, finished, scans)

        return self._run_op(client, kind, mops, launch, done)

    def _run_op(
        self,
        client: ClientHost,
        kind: str,
        mops: list[list[Any]],
        launch: Callable[[Callable[[TxnResult], None]], None],
        done: Callable[[TxnRecord], None],
    ) -> TxnRecord:
        """Record one operation `launch(finished)` starts (a transaction, a read, a
        single-key write, a scan)."""
        record = TxnRecord(process=client.process, kind=kind, mops=mops, invoke=self.sim.world.now)
        self.records.append(record)

        def finished(result: TxnResult) -> None:
            record.complete = self.sim.world.now
            record.result = result
            done(record)

        launch(finished)
        return record


class ListAppend(Workload):
    """Elle's list-append: each key holds an encoded list; append = read-modify-write."""

    name = "append"

    def __init__(self, sim: ClusterSim) -> None:
        super().__init__(sim)
        self._keys = [b"k%02d" % i for i in range(sim.knobs.keys)]
        self._hot_keys = self._keys[: max(2, len(self._keys) // 2)]
        self._next_value = 1

    def all_keys(self) -> list[bytes]:
        return self._keys

    def _key_name(self, key: bytes) -> int:
        return int(key[1:])

    def start_one(self, client: ClientHost, done: Callable[[TxnRecord], None]) -> None:
        rng = self.rng
        # No draw at all without plain gets: the other profiles' seeds keep their schedules.
        if self.sim.knobs.plain_gets and rng.random() < self.sim.knobs.plain_gets:
            key = rng.choice(self._hot_keys)
            self._execute(client, "get", [["r", self._key_name(key), None]], done)
            return
        n = rng.randint(1, 4)
        mops: list[list[Any]] = []
        hot = self._hot_keys if rng.random() < 0.5 else self._keys
        for _ in range(n):
            key = rng.choice(hot)
            if rng.random() < 0.5:
                mops.append(["r", self._key_name(key), None])
            else:
                mops.append(["append", self._key_name(key), self._next_value])
                self._next_value += 1
        read_only = all(m[0] == "r" for m in mops)
        kind = "snapshot" if read_only and rng.random() < 0.5 else "rw"
        self._execute(client, kind, mops, done)

    def _execute(
        self,
        client: ClientHost,
        kind: str,
        mops: list[list[Any]],
        done: Callable[[TxnRecord], None],
    ) -> None:
        keys = [b"k%02d" % m[1] for m in mops]
        observed: list[list[Any]] = [list(m) for m in mops]

        def body(values: dict[bytes, bytes | None]) -> dict[bytes, bytes]:
            state = {k: decode_list(v) for k, v in values.items()}
            written: dict[bytes, bytes] = {}
            for m in observed:
                key = b"k%02d" % m[1]
                if m[0] == "r":
                    m[2] = list(state[key])
                else:
                    state[key].append(m[2])
                    written[key] = encode_list(state[key])
            return written

        def finished(record: TxnRecord) -> None:
            result = record.result
            assert result is not None
            if result.status == "ok":
                if kind in ("snapshot", "get"):
                    for m in observed:
                        m[2] = decode_list(result.reads[b"k%02d" % m[1]][0])
                record.mops = observed
            done(record)

        self._run_rw(client, kind, mops, keys, body, finished)

    def final_read(self, client: ClientHost, done: Callable[[TxnRecord], None]) -> None:
        mops: list[list[Any]] = [["r", self._key_name(k), None] for k in self._keys]
        self._execute(client, "rw", mops, done)

    def history(self) -> list[dict[str, Any]]:
        """The Jepsen-style history (invoke and completion events, in time order)."""
        events: list[tuple[float, int, dict[str, Any]]] = []
        for i, rec in enumerate(self.records):
            invoke_value = [list(m) for m in rec.mops]
            for m in invoke_value:
                if m[0] == "r":
                    m[2] = None
            events.append(
                (
                    rec.invoke,
                    2 * i,
                    {
                        "process": rec.process,
                        "type": "invoke",
                        "value": invoke_value,
                        "time": rec.invoke,
                    },
                )
            )
            if rec.result is None:
                continue
            status = rec.result.status
            value = rec.mops if status == "ok" else invoke_value
            events.append(
                (
                    rec.complete,
                    2 * i + 1,
                    {"process": rec.process, "type": status, "value": value, "time": rec.complete},
                )
            )
        events.sort(key=lambda e: (e[0], e[1]))
        return [e[2] for e in events]

    def check(self, final: TxnRecord) -> list[str]:
        problems: list[str] = []
        history = self.history()
        report = elle.check(history, realtime=True)
        if not report["valid"]:
            problems.append(f"elle: {elle.describe(report)}")
        # Every acknowledged append is read back at the end.
        final_lists = {m[1]: m[2] for m in final.mops}
        for rec in self.records:
            if rec.result is None or rec.result.status != "ok":
                continue
            for m in rec.mops:
                if m[0] == "append" and m[2] not in (final_lists.get(m[1]) or []):
                    problems.append(
                        f"lost append: {m[2]} to key {m[1]} acknowledged "
                        f"(txn {rec.result.txn_id.hex()}) but absent from the final read"
                    )
        return problems


class _Transfers(Workload):
    """Transfers between keys over every shard, read whole: every read of all keys, snapshot
    or read-write, sums to `total` (no partial transfer visible)."""

    total = 0
    #: Whether a transfer never takes a key below 0 (so a negative one is a violation).
    _negative_refused = False

    def __init__(self, sim: ClusterSim) -> None:
        super().__init__(sim)
        self._keys = [b"k%02d" % i for i in range(sim.knobs.keys)]

    def all_keys(self) -> list[bytes]:
        return self._keys

    def _amount(self, value: bytes | None) -> int:
        """What a key holding `value` counts for the sum."""
        raise NotImplementedError

    def _maybe_read_all(self, client: ClientHost, done: Callable[[TxnRecord], None]) -> bool:
        """Read every key instead of a transfer, three times in ten (mostly snapshots)."""
        rng = self.rng
        if rng.random() >= 0.3:
            return False
        kind = "snapshot" if rng.random() < 0.7 else "rw"
        self._run_rw(client, kind, [["read"]], list(self._keys), lambda _v: {}, done)
        return True

    def final_read(self, client: ClientHost, done: Callable[[TxnRecord], None]) -> None:
        self._run_rw(client, "rw", [["read"]], list(self._keys), lambda _v: {}, done)

    def _read_problems(self, final: TxnRecord) -> list[str]:
        problems: list[str] = []
        for rec in [*self.records, final]:
            res = rec.result
            if res is None or res.status != "ok" or rec.mops[0][0] != "read":
                continue
            amounts = {k: self._amount(v) for k, (v, _ver) in res.reads.items()}
            total = sum(amounts.values())
            if total != self.total:
                where = f"snapshot at {res.snapshot_ts}" if rec.kind == "snapshot" else "rw read"
                problems.append(
                    f"{self.name} total {total} != {self.total} in {where} "
                    f"(txn {res.txn_id.hex()}, t={rec.complete:.3f}): {amounts}"
                )
            if self._negative_refused and any(v < 0 for v in amounts.values()):
                problems.append(f"negative balance in txn {res.txn_id.hex()}: {amounts}")
        return problems


class Bank(_Transfers):
    """Transfers between accounts over every shard; snapshot reads keep a constant total."""

    name = "bank"
    INITIAL = 100
    _negative_refused = True

    def __init__(self, sim: ClusterSim) -> None:
        super().__init__(sim)
        self.total = self.INITIAL * len(self._keys)

    def _amount(self, value: bytes | None) -> int:
        return int(value or b"0")

    def setup(self, client: ClientHost, done: Callable[[bool], None]) -> None:
        def body(values: dict[bytes, bytes | None]) -> dict[bytes, bytes]:
            return {k: b"%d" % self.INITIAL for k, v in values.items() if v is None}

        def finished(record: TxnRecord) -> None:
            assert record.result is not None
            done(record.result.status == "ok")

        self._run_rw(client, "rw", [["setup"]], list(self._keys), body, finished)

    def start_one(self, client: ClientHost, done: Callable[[TxnRecord], None]) -> None:
        if self._maybe_read_all(client, done):
            return
        rng = self.rng
        a, b = rng.sample(self._keys, 2)
        amount = rng.randint(1, 30)

        def body(values: dict[bytes, bytes | None]) -> dict[bytes, bytes]:
            balance_a = int(values[a] or b"0")
            balance_b = int(values[b] or b"0")
            if balance_a < amount:
                return {}
            return {a: b"%d" % (balance_a - amount), b: b"%d" % (balance_b + amount)}

        self._run_rw(client, "rw", [["transfer", a, b, amount]], [a, b], body, done)

    def check(self, final: TxnRecord) -> list[str]:
        return self._read_problems(final)


class Claims(Workload):
    """Claims by scan, a constraint no single key holds (rule P6, phantoms).

    Each round is a key range across a shard boundary (when the map has one there). A claim
    scans its round's range and, only if no key of it is held, writes its own claim id to a
    key of the range (two claims may pick the same key); a release scans the range and frees
    every held key (writes an empty value). Serializable scans keep at most one claim of a
    round held at every timestamp, and never let a claim overwrite another; the check sweeps
    the versions applied to every round in timestamp order. Without phantom
    protection two claims that both saw the range free both commit.
    """

    name = "claims"
    CLAIMANTS = 4

    def __init__(self, sim: ClusterSim) -> None:
        super().__init__(sim)
        n = sim.knobs.keys
        self._next_claim = 1
        #: Round r covers key numbers 2r+1 and 2r+2: [k(2r+1), k(2r+3)).
        self._rounds = [
            (b"k%02d" % (2 * r + 1), b"k%02d" % (2 * r + 3)) for r in range(max(1, n // 2 - 1))
        ]
        self._keys = [
            b"k%02d/%d" % (2 * r + 1 + j, c)
            for r in range(len(self._rounds))
            for j in (0, 1)
            for c in range(self.CLAIMANTS)
        ]

    def all_keys(self) -> list[bytes]:
        return self._keys

    def _in(self, r: int, key: bytes) -> bool:
        start, end = self._rounds[r]
        return start <= key < end

    def start_one(self, client: ClientHost, done: Callable[[TxnRecord], None]) -> None:
        rng = self.rng
        r = rng.randrange(len(self._rounds))
        if rng.random() < 0.3:

            def release(values: dict[bytes, bytes | None]) -> dict[bytes, bytes]:
                return {k: b"" for k, v in values.items() if self._in(r, k) and v}

            self._run_rw(client, "rw", [["release", r]], [], release, done, [self._rounds[r]])
            return
        mine = rng.choice([k for k in self._keys if self._in(r, k)])
        claim_id = b"claim-%d" % self._next_claim
        self._next_claim += 1

        def claim(values: dict[bytes, bytes | None]) -> dict[bytes, bytes]:
            if any(v for k, v in values.items() if self._in(r, k)):
                return {}
            return {mine: claim_id}

        self._run_rw(client, "rw", [["claim", r, mine]], [], claim, done, [self._rounds[r]])

    def final_read(self, client: ClientHost, done: Callable[[TxnRecord], None]) -> None:
        self._run_rw(client, "rw", [["read"]], [], lambda _v: {}, done, self._rounds)

    def check(self, final: TxnRecord) -> list[str]:
        # Every version applied, collected since or not (verify() checks the stores hold them).
        chains = self.sim.applied_chains()
        problems = []
        for r in range(len(self._rounds)):
            events = sorted(
                (version, key, value)
                for key in self._keys
                if self._in(r, key)
                for version, value in chains.get(key, [])
            )
            held: dict[bytes, bytes] = {}
            for i, (version, key, value) in enumerate(events):
                if value and held.get(key) and held[key] != value:
                    problems.append(
                        f"claims: {value!r} took {key!r} at {version} from {held[key]!r} "
                        "without a release"
                    )
                    break
                held[key] = value
                last_at_ts = i + 1 == len(events) or events[i + 1][0] != version
                holders = sorted(k for k, v in held.items() if v)
                if last_at_ts and len(holders) > 1:
                    problems.append(
                        f"claims: round {r} has {len(holders)} holders at {version}: {holders}"
                    )
                    break
        return problems


class Counters(_Transfers):
    """Atomic adds (txn/atomic.py): transfers between counters that read nothing.

    A transfer adds d to one counter and -d to another (`AtomicOp.ADD`, often on two
    shards); reads are snapshots and read-write reads of every counter. The checks, beside
    `ClusterSim.verify`'s (which recomputes every version an acknowledged or committed
    transaction's atomic write left from the version just below it: the replicas applied
    the operations to the value at the commit timestamp):

    - every read of all counters, snapshot or read-write, sums to 0 (no partial transfer
      visible);
    - every counter's final value lies between what the acknowledged transfers and those
      whose outcome is unknown add up to (each acknowledged add applied exactly once, none
      the client was told failed).
    """

    name = "counters"

    def _amount(self, value: bytes | None) -> int:
        return decode_int(value)

    def start_one(self, client: ClientHost, done: Callable[[TxnRecord], None]) -> None:
        if self._maybe_read_all(client, done):
            return
        rng = self.rng
        a, b = rng.sample(self._keys, 2)
        amount = rng.randint(1, 5)
        writes: dict[bytes, Write] = {
            a: Atomic(((AtomicOp.ADD, encode_int(amount)),)),
            b: Atomic(((AtomicOp.ADD, encode_int(-amount)),)),
        }
        self._run_rw(client, "rw", [["add", a, b, amount]], [], lambda _v: writes, done)

    def check(self, final: TxnRecord) -> list[str]:
        problems = self._read_problems(final)
        if final.result is None or final.result.status != "ok":
            return problems
        low = dict.fromkeys(self._keys, 0)
        high = dict.fromkeys(self._keys, 0)
        for rec in self.records:
            res = rec.result
            if res is None or rec.mops[0][0] != "add" or res.status == "fail":
                continue
            _, a, b, amount = rec.mops[0]
            for key, delta in ((a, amount), (b, -amount)):
                if res.status == "ok":
                    low[key] += delta
                    high[key] += delta
                elif delta > 0:
                    high[key] += delta
                else:
                    low[key] += delta
        for key, (value, _ver) in final.result.reads.items():
            if not low[key] <= decode_int(value) <= high[key]:
                problems.append(
                    f"counter {key!r} is {decode_int(value)} at the end, outside [{low[key]}, "
                    f"{high[key]}], what acknowledged and unknown transfers add up to"
                )
        return problems


class Registers(Workload):
    """Registers (one per key) written by transactions and by single-key writes at once.

    Every write writes a value never written before (or deletes the key), so each version
    the replicas applied names the operation that wrote it. The operations, on a few keys
    across the shards:

    - transactions of 1-3 keys: each key read and written, only read, or written blind; a
      quarter of the writes delete the key (tombstones: participant rules P3 and R2);
    - single-key Put, Delete, and compare-and-set (after a plain get: on its version, its
      value or the key's absence; it writes a new value or deletes) outside transactions,
      racing the transactions' intents (rule W1; the leader's wait, rule L1; rule 1's
      commit wait);
    - snapshot scans of the whole key space (one timestamp, every shard: node rule 3's safe
      time over a range, `snapshot_safe` and `scan_page`'s coverage), snapshot gets;
    - plain linearizable gets and scans (each shard's part at its leader, rule 2).

    The checks, against the versions the replicas applied (`ClusterSim.versions_applied`),
    beside `ClusterSim.verify`'s (atomicity, timestamp order, snapshot reads, real time):

    - every applied version is a committed transaction's write or one single-key write's:
      an acknowledged single-key write is applied at the version it was told, once; a
      refused one (CONFLICT until its deadline, a failed comparison) never; one whose
      outcome is unknown at most once; a compare-and-set that wrote found what it expected
      just below its version, and one that failed reported a state the key had;
    - a snapshot scan at T shows exactly the state at T: every key whose newest version at
      or below T is a value, with that value and version, and no other (no partial
      transaction, no deleted key);
    - each part of a plain scan shows the state of its group at one point of its history;
    - per key, the versions are a linearization in real time: an operation (read or write)
      that began after another ended is at or above its version, and no read shows a
      version whose writer began after the read ended.
    """

    name = "registers"
    RANGE = (b"k", b"l")

    def __init__(self, sim: ClusterSim) -> None:
        super().__init__(sim)
        self._keys = [b"k%02d" % i for i in range(sim.knobs.keys)]
        self._next_value = 1

    def all_keys(self) -> list[bytes]:
        return self._keys

    def _value(self, tag: bytes) -> bytes:
        value = b"%s%d" % (tag, self._next_value)
        self._next_value += 1
        return value

    def start_one(self, client: ClientHost, done: Callable[[TxnRecord], None]) -> None:
        rng = self.rng
        x = rng.random()
        key = rng.choice(self._keys)
        if x < 0.30:
            self._transaction(client, done)
        elif x < 0.42:
            value = self._value(b"p")
            ttl_ms = self._ttl_ms(value)
            self._run_op(
                client,
                "put",
                [["put", key, value]],
                lambda f: client.client.put(key, value, f, ttl_ms),
                done,
            )
        elif x < 0.48:
            self._run_op(
                client, "delete", [["delete", key]], lambda f: client.client.delete(key, f), done
            )
        elif x < 0.60:
            self._compare_and_set(client, key, done)
        elif x < 0.78:
            self._run_op(
                client,
                "scan",
                [["scan"]],
                lambda f: client.client.scan([self.RANGE], f, snapshot=True),
                done,
            )
        elif x < 0.86:
            self._run_rw(client, "get", [["r", key]], [key], lambda _v: {}, done)
        elif x < 0.93:
            self._run_op(
                client,
                "pscan",
                [["pscan"]],
                lambda f: client.client.scan([self.RANGE], f, snapshot=False),
                done,
            )
        else:
            keys = rng.sample(self._keys, 2)
            self._run_rw(client, "snapshot", [["r", k] for k in keys], keys, lambda _v: {}, done)

    def _transaction(self, client: ClientHost, done: Callable[[TxnRecord], None]) -> None:
        rng = self.rng
        plan: list[tuple[bytes, str, bytes | None]] = []
        for key in rng.sample(self._keys, rng.randint(1, 3)):
            y = rng.random()
            mode = "rmw" if y < 0.6 else ("r" if y < 0.75 else "w")
            value = None
            if mode != "r" and rng.random() >= 0.25:
                value = self._value(b"t")
            plan.append((key, mode, value))
        reads = [k for k, mode, _v in plan if mode != "w"]
        writes = {
            k: self._blind_write(v) if mode == "w" else self._leased(v)
            for k, mode, v in plan
            if mode != "r"
        }
        mops: list[list[Any]] = [[mode, k, v] for k, mode, v in plan]
        self._run_rw(client, "rw", mops, reads, lambda _v: dict(writes), done)

    def _compare_and_set(
        self, client: ClientHost, key: bytes, done: Callable[[TxnRecord], None]
    ) -> None:
        """A plain get, then a compare-and-set on what it showed."""
        rng = self.rng
        new_value = self._value(b"c") if rng.random() < 0.8 else None
        by_value = rng.random() < 0.5

        def got(record: TxnRecord) -> None:
            res = record.result
            assert res is not None
            if res.status != "ok":
                done(record)
                return
            value, version = res.reads[key]
            expect: dict[str, Any] = {}
            if value is not None and by_value:
                expect = {"expected_value": value}
            elif value is not None:
                expect = {"expected_version": version}
            mops = [["cas", key, expect, new_value]]
            ttl_ms = 0 if new_value is None else self._ttl_ms(new_value)
            self._run_op(
                client,
                "cas",
                mops,
                lambda f: client.client.cas(key, f, new_value=new_value, ttl_ms=ttl_ms, **expect),
                done,
            )

        self._run_rw(client, "get", [["r", key]], [key], lambda _v: {}, got)

    def _blind_write(self, value: bytes | None) -> Write:
        """What a transaction writes to a key it did not read (`AtomicRegisters` draws)."""
        return self._leased(value)

    def _leased(self, value: bytes | None) -> Write:
        """A transaction's write of `value`, with a time to live if `_ttl_ms` draws one."""
        ttl_ms = 0 if value is None else self._ttl_ms(value)
        return Leased(value, ttl_ms) if value is not None and ttl_ms else value

    def _ttl_ms(self, value: bytes) -> int:
        """The time to live `value` is written with (`LeaseRegisters` draws one; no draw
        here, so the other workloads' seeds replay as before)."""
        return 0

    def final_read(self, client: ClientHost, done: Callable[[TxnRecord], None]) -> None:
        self._run_rw(client, "rw", [["read"]], list(self._keys), lambda _v: {}, done)

    # ------------------------------------------------------------------ the checks

    def check(self, final: TxnRecord) -> list[str]:
        chains = self.sim.applied_chains()
        problems: list[str] = []
        txn_versions = self._txn_versions()
        writer_invoke: dict[tuple[bytes, int], float] = {}
        # key -> (invoke, complete, position, label) of every operation on it.
        events: dict[bytes, list[tuple[float, float, int, str]]] = {k: [] for k in self._keys}
        inf = float("inf")
        for (key, version), (invoke, complete, label) in txn_versions.items():
            writer_invoke[(key, version)] = invoke
            events.setdefault(key, []).append((invoke, complete, version, label))
        problems += self._match_single_writes(chains, txn_versions, writer_invoke, events)
        for rec in self.records:
            res = rec.result
            if res is None:
                continue
            label = f"{rec.kind} {res.txn_id.hex()}"
            if rec.kind == "scan" and res.status == "ok":
                problems += self._scan_shows_state_at(res, chains)
            if rec.kind == "pscan" and res.status == "ok":
                problems += self._parts_show_one_state(res, chains)
            if rec.kind == "cas" and res.status == "fail" and res.reads:
                ((value, version),) = res.reads.values()
                found = dict(chains.get(rec.mops[0][1], [])).get(version, _NOTHING)
                if value is not None and found != value:
                    problems.append(
                        f"{label} failed reporting {rec.mops[0][1]!r}={value!r}@{version}, "
                        f"but the replicas applied {'nothing' if found is _NOTHING else found!r} "
                        "there"
                    )
            # Reads with a version, per key.
            reads: list[tuple[bytes, int]] = []
            if res.status == "ok" and rec.kind in ("get", "pscan", "rw"):
                reads = [(k, ver) for k, (_v, ver) in res.reads.items()]
            elif rec.kind == "cas" and res.status == "fail" and res.reads:
                reads = [(k, ver) for k, (v, ver) in res.reads.items() if v is not None]
            for key, version in reads:
                events.setdefault(key, []).append((rec.invoke, rec.complete, version, label))
                writer = writer_invoke.get((key, version))
                if version and writer is not None and writer > rec.complete:
                    problems.append(
                        f"real time: {label} (t={rec.invoke:.4f}-{rec.complete:.4f}) read "
                        f"{key!r}@{version}, written by an operation begun at t={writer:.4f}"
                    )
        for key, evs in sorted(events.items()):
            ended = sorted((c, pos, label) for _i, c, pos, label in evs if c != inf)
            completes = [c for c, _p, _l in ended]
            best: list[tuple[int, str, float]] = []
            for c, pos, label in ended:
                best.append(max(best[-1], (pos, label, c)) if best else (pos, label, c))
            for invoke, _complete, pos, label in evs:
                before = bisect.bisect_left(completes, invoke)
                if before and best[before - 1][0] > pos:
                    top, top_label, top_end = best[before - 1]
                    problems.append(
                        f"real time: {label} begun at t={invoke:.4f} is at {key!r}@{pos}, below "
                        f"{top_label} at {top}, which ended before (t={top_end:.4f})"
                    )
        return problems

    def _txn_versions(self) -> dict[tuple[bytes, int], tuple[float, float, str]]:
        """(key, version) -> (invoke, complete, label) of every committed transaction's
        applied write (complete: inf when the client does not know it committed)."""
        out: dict[tuple[bytes, int], tuple[float, float, str]] = {}
        applied = self.sim.versions_applied
        for rec in self.records:
            res = rec.result
            if res is None or rec.kind != "rw" or not res.coordinator or not res.writes:
                continue
            decision = self.sim._decision(res.coordinator, res.txn_id)
            if decision is None or not decision.committed:
                continue
            complete = rec.complete if res.status == "ok" else float("inf")
            for key in res.writes:
                if decision.commit_ts in applied.get(key, {}):
                    out[(key, decision.commit_ts)] = (
                        rec.invoke,
                        complete,
                        f"txn {res.txn_id.hex()}",
                    )
        return out

    def _match_single_writes(
        self,
        chains: dict[bytes, list[tuple[int, bytes | None]]],
        txn_versions: dict[tuple[bytes, int], tuple[float, float, str]],
        writer_invoke: dict[tuple[bytes, int], float],
        events: dict[bytes, list[tuple[float, float, int, str]]],
    ) -> list[str]:
        """Match every applied version no transaction wrote to the single-key write that
        did (by its unique value; a tombstone to a delete told that version, else to one
        whose outcome is unknown); fill `single_key_versions`."""
        problems: list[str] = []
        singles = [r for r in self.records if r.kind in SINGLE_WRITES and r.result is not None]
        by_value: dict[bytes, TxnRecord] = {}
        deletes: dict[bytes, list[TxnRecord]] = {}
        for rec in singles:
            new = rec.mops[0][2] if rec.kind == "put" else None
            if rec.kind == "cas":
                new = rec.mops[0][3]
            if new is not None:
                by_value[new] = rec
            else:
                deletes.setdefault(rec.mops[0][1], []).append(rec)
        matched: dict[int, int] = {}  # id(record) -> the version it wrote
        inf = float("inf")
        for key, chain in sorted(chains.items()):
            for version, value in sorted(chain):
                if (key, version) in txn_versions:
                    continue
                rec = None
                if value is not None:
                    rec = by_value.get(value)
                else:
                    told = [
                        r
                        for r in deletes.get(key, [])
                        if r.result is not None
                        and r.result.status == "ok"
                        and r.result.commit_ts == version
                    ]
                    # Of unknown outcome: the first begun that may have written it (a
                    # compare-and-set only if its comparison held there).
                    unknown = [
                        r
                        for r in deletes.get(key, [])
                        if r.result is not None
                        and r.result.status == "info"
                        and id(r) not in matched
                        and r.invoke < _version_time(version)
                        and (r.kind == "delete" or not self._compare_held(r, chain, version))
                    ]
                    rec = (told or unknown or [None])[0]
                if rec is None or rec.mops[0][1] != key:
                    continue  # `verify` reports it: it belongs to no committed transaction
                res = rec.result
                assert res is not None
                label = f"{rec.kind} {res.txn_id.hex()}"
                if id(rec) in matched:
                    problems.append(
                        f"{label} applied twice: {key!r}@{matched[id(rec)]} and @{version}"
                    )
                    continue
                matched[id(rec)] = version
                self.single_key_versions.add((key, version))
                writer_invoke[(key, version)] = rec.invoke
                complete = rec.complete if res.status == "ok" else inf
                events.setdefault(key, []).append((rec.invoke, complete, version, label))
                if res.status == "fail":
                    problems.append(
                        f"{label} was refused ({res.why}) but the replicas applied it: "
                        f"{key!r}@{version}={value!r}"
                    )
                elif res.status == "ok" and res.commit_ts != version:
                    problems.append(
                        f"{label} acknowledged at version {res.commit_ts}, applied at {version}"
                    )
                if rec.kind == "cas":
                    problems += self._compare_held(rec, chain, version)
        for rec in singles:
            res = rec.result
            assert res is not None
            if res.status == "ok" and res.commit_ts and id(rec) not in matched:
                problems.append(
                    f"lost write: {rec.kind} {res.txn_id.hex()} of {rec.mops[0][1]!r} "
                    f"acknowledged at version {res.commit_ts}, which the replicas never applied"
                )
        return problems

    @staticmethod
    def _compare_held(
        rec: TxnRecord, chain: list[tuple[int, bytes | None]], version: int
    ) -> list[str]:
        """A compare-and-set that wrote at `version` found what it expected just below."""
        _cas, key, expect, _new = rec.mops[0]
        below = next(((v, value) for v, value in chain if v < version), (0, None))
        if "expected_value" in expect:
            holds = below[1] == expect["expected_value"]
        elif "expected_version" in expect:
            holds = below[1] is not None and below[0] == expect["expected_version"]
        else:
            holds = below[1] is None
        if holds:
            return []
        assert rec.result is not None
        return [
            f"cas {rec.result.txn_id.hex()} expected {expect or 'absent'} and wrote {key!r}@"
            f"{version}, but the version below it is {below}"
        ]

    def _scan_shows_state_at(
        self, res: TxnResult, chains: dict[bytes, list[tuple[int, bytes | None]]]
    ) -> list[str]:
        """A snapshot scan at T shows exactly every key live at T, at its version then."""
        at = res.snapshot_ts
        shown = {k: (v, ver) for k, (v, ver) in res.reads.items()}
        want: dict[bytes, tuple[bytes | None, int]] = {}
        for key in self._keys:
            found = next(((v, val) for v, val in chains.get(key, []) if v <= at), None)
            if found is not None and found[1] is not None:
                want[key] = (found[1], found[0])
        if shown == want:
            return []
        diff = {
            k: (shown.get(k), want.get(k))
            for k in sorted(set(shown) | set(want))
            if shown.get(k) != want.get(k)
        }
        return [
            f"snapshot scan at {at} (txn {res.txn_id.hex()}) differs from the state the "
            f"replicas applied at that timestamp: key: (shown, applied) {diff}"
        ]

    def _parts_show_one_state(
        self, res: TxnResult, chains: dict[bytes, list[tuple[int, bytes | None]]]
    ) -> list[str]:
        """Each part of a plain scan (one group's answer) shows that group's keys as they
        were at one version of the group's history (the applied index it was served at)."""
        out = []
        for start, end in res.scanned:
            keys = [k for k in self._keys if start <= k and (end is None or k < end)]
            shown = {k: res.reads[k] for k in keys if k in res.reads}
            cuts = sorted({0, *(v for k in keys for v, _val in chains.get(k, []))})
            for cut in cuts:
                state = {}
                for key in keys:
                    found = next(((v, val) for v, val in chains.get(key, []) if v <= cut), None)
                    if found is not None and found[1] is not None:
                        state[key] = (found[1], found[0])
                if state == shown:
                    break
            else:
                out.append(
                    f"plain scan {res.txn_id.hex()} of [{start!r}, {end!r}) shows {shown}, the "
                    "state of that group at no version"
                )
        return out


def _version_time(version: int) -> float:
    """The world time (the simulator's clock) a hybrid timestamp's physical part stands
    for, plus a second of slack for clock offsets (a bound, not an equality)."""
    return physical_us(version) / 1e6 - WALL_EPOCH_S + 1.0


class AtomicRegisters(Registers):
    """`Registers` whose transactions also write by atomic operations, among the single-key
    Puts, Deletes and compare-and-sets and the scans on the same keys: half of the blind
    writes append a value never written before (`APPEND_IF_FITS`, so every version still
    names its writer) or clear the key if it holds a value drawn from those written before
    (`COMPARE_AND_CLEAR`: a tombstone when it matches, the same value again when not).
    Its checks are `Registers`' with `ClusterSim.verify` recomputing every version an atomic
    write left from the version below it: the single-key writes' refusal over intents (rule
    W1) and the deletion of an absent key writing nothing (R2) now meet atomic writes."""

    name = "atomics"

    def _blind_write(self, value: bytes | None) -> Write:
        rng = self.rng
        if rng.random() < 0.5:
            return value
        if value is not None and rng.random() < 0.7:
            return Atomic(((AtomicOp.APPEND_IF_FITS, value),))
        older = b"%s%d" % (rng.choice((b"p", b"c", b"t")), rng.randint(1, self._next_value))
        return Atomic(((AtomicOp.COMPARE_AND_CLEAR, older),))


#: After the heal, how long past its deadline a value with a time to live may still be read:
#: an Expire that met an intent is proposed again after EXPIRE_RETRY_S, a new leader's
#: first check comes after its election, and nodes' clocks are offset.
EXPIRY_SLACK_S = EXPIRE_RETRY_S + 1.0


class LeaseRegisters(Registers):
    """`Registers` whose values half live a time to live (20-400 ms): single-key Puts and
    compare-and-sets with `ttl_ms`, transactions' writes with it (`Leased`), so the leaders'
    Expires (node rule 17) race every other write, intents, scans, crashes and new leaders;
    and renewals (touches, state machine rule 8) of the version a plain get just read.
    Beside `Registers`' checks, every version no write accounts for must be an expiry: a
    tombstone just above a value with a time to live, at or past its deadline (state
    machine rule 7) and every deadline an acknowledged touch of that value answered; and
    the final read, after the heal, finds no value more than EXPIRY_SLACK_S past its
    deadline (its latest touch's, when acknowledged; a value touched with an unknown
    outcome is not judged)."""

    name = "leases"
    MAX_TTL_MS = 400

    def __init__(self, sim: ClusterSim) -> None:
        super().__init__(sim)
        self._ttls: dict[bytes, int] = {}  # value -> its time to live, in ms

    def start_one(self, client: ClientHost, done: Callable[[TxnRecord], None]) -> None:
        if self.rng.random() >= 0.15:
            super().start_one(client, done)
            return
        key = self.rng.choice(self._keys)
        ttl_ms = self.rng.randint(20, self.MAX_TTL_MS)

        def got(record: TxnRecord) -> None:
            res = record.result
            assert res is not None
            value, version = res.reads.get(key, (None, 0))
            if res.status != "ok" or value is None:
                done(record)
                return
            self._run_op(
                client,
                "touch",
                [["touch", key, version, ttl_ms]],
                lambda f: client.client.touch(key, version, ttl_ms, f),
                done,
            )

        self._run_rw(client, "get", [["r", key]], [key], lambda _v: {}, got)

    def _renewed_until(self) -> dict[tuple[bytes, int], list[float]]:
        """(key, version) -> for each acknowledged touch of it, the world time until which
        it promised the value to live at least: its invoke time plus its TTL."""
        out: dict[tuple[bytes, int], list[float]] = {}
        for rec in self.records:
            if rec.kind == "touch" and rec.result is not None and rec.result.status == "ok":
                _op, key, version, ttl_ms = rec.mops[0]
                out.setdefault((key, version), []).append(rec.invoke + ttl_ms / 1000)
        return out

    def _touches(self, status: str) -> dict[tuple[bytes, int], list[int]]:
        """(key, version) -> the deadlines the touches of that version with `status`
        answered (``info`` ones: none known)."""
        out: dict[tuple[bytes, int], list[int]] = {}
        for rec in self.records:
            if rec.kind == "touch" and rec.result is not None and rec.result.status == status:
                _op, key, version, _ttl = rec.mops[0]
                out.setdefault((key, version), []).append(rec.result.expires_at)
        return out

    def _ttl_ms(self, value: bytes) -> int:
        if self.rng.random() < 0.5:
            return 0
        ttl_ms = self.rng.randint(20, self.MAX_TTL_MS)
        self._ttls[value] = ttl_ms
        return ttl_ms

    def final_read(self, client: ClientHost, done: Callable[[TxnRecord], None]) -> None:
        """Once every value written has run out its time to live and the slack: the read
        must then find none of them."""
        world = self.sim.world
        wait_s = EXPIRY_SLACK_S + self.MAX_TTL_MS / 1000
        world.schedule(world.now + wait_s, super().final_read, client, done)

    def check(self, final: TxnRecord) -> list[str]:
        problems = super().check(final)
        res = final.result
        if res is None or res.status != "ok":
            return problems
        touched, unknown = self._touches("ok"), self._touches("info")
        for key, (value, version) in sorted(res.reads.items()):
            ttl_ms = self._ttls.get(value, 0) if value is not None else 0
            if not ttl_ms or (key, version) in unknown:
                continue
            deadline = max(deadline_of(version, ttl_ms), *touched.get((key, version), [0]))
            due = _world_time(deadline)
            if due + EXPIRY_SLACK_S < final.invoke:
                problems.append(
                    f"expiry: the final read at t={final.invoke:.3f} found {key!r}@{version}="
                    f"{value!r}, whose {ttl_ms} ms ran out at t={due:.3f}"
                )
        return problems

    def _match_single_writes(
        self,
        chains: dict[bytes, list[tuple[int, bytes | None]]],
        txn_versions: dict[tuple[bytes, int], tuple[float, float, str]],
        writer_invoke: dict[tuple[bytes, int], float],
        events: dict[bytes, list[tuple[float, float, int, str]]],
    ) -> list[str]:
        """`Registers`' matching, with the expiries set apart first: the tombstones the
        replicas' Expire commands wrote (`ClusterSim.expired_versions`), each checked
        against the value it ended. (Found by a soak: told apart by their timestamps, a
        delete of unknown outcome stamped past the value's deadline by a client clock
        ahead was taken for the Expire, and judged early in real time.)"""
        problems = []
        expired: dict[tuple[bytes, int], tuple[float, float, str]] = {}
        for key, chain in sorted(chains.items()):
            for (below, below_value), (version, _value) in itertools.pairwise(sorted(chain)):
                if (key, version) not in self.sim.expired_versions:
                    continue
                expired[(key, version)] = (math.inf, math.inf, "expiry")
                ttl_ms = 0 if below_value is None else self._ttls.get(below_value, 0)
                if not ttl_ms:
                    problems.append(
                        f"expiry: an Expire deleted {key!r}@{below}={below_value!r} at "
                        f"{version}, a value written without a time to live"
                    )
                elif version < deadline_of(below, ttl_ms):
                    problems.append(
                        f"expiry: {key!r}@{below}={below_value!r} ({ttl_ms} ms) was deleted at "
                        f"{version}, before its deadline {deadline_of(below, ttl_ms)}"
                    )
        problems += super()._match_single_writes(
            chains, {**txn_versions, **expired}, writer_invoke, events
        )
        self.single_key_versions.update(expired)
        touched = self._touches("ok")
        renewed = self._renewed_until()
        for key, version in sorted(expired):
            below, value = max((v, val) for v, val in chains[key] if v < version)
            answered = max(touched.get((key, below), [0]))
            if version < answered:
                problems.append(
                    f"expiry: {key!r}@{below} was deleted at {version}, before the deadline "
                    f"{answered} an acknowledged touch of it answered"
                )
            # In real time, whatever the hybrid clocks said: applied no earlier than a TTL
            # after its write began, nor than an acknowledged touch's TTL after it began.
            assert value is not None
            written = writer_invoke.get((key, below), 0.0) + self._ttls[value] / 1000
            until = max([written, *renewed.get((key, below), [])])
            gone_at = self.sim.first_applied_at[(key, version)]
            if gone_at < until:
                problems.append(
                    f"expiry in real time: {key!r}@{below}={value!r} was deleted at "
                    f"t={gone_at:.4f}, before t={until:.4f}, its write's or an acknowledged "
                    "renewal's invocation plus its TTL"
                )
        return problems


def _world_time(ts: int) -> float:
    """The world time (the simulator's clock) a hybrid timestamp's physical part stands for."""
    return physical_us(ts) / 1e6 - WALL_EPOCH_S


WORKLOADS: dict[str, type[Workload]] = {
    "append": ListAppend,
    "atomics": AtomicRegisters,
    "leases": LeaseRegisters,
    "bank": Bank,
    "claims": Claims,
    "counters": Counters,
    "registers": Registers,
}


# ---------------------------------------------------------------------- knobs and faults


@dataclass(frozen=True, slots=True)
class Fault:
    """One scheduled fault; `target` 0 = the leader of a random data group at that time."""

    at: float
    kind: str
    target: int = 0
    sides: tuple[tuple[int, ...], ...] = ()
    other: int = 0
    duration: float = 0.0
    mode: str = CrashMode.POWER_LOSS
    point: str = ""
    #: "redeliver": messages sent this long before are delivered again (0: any).
    lookback_s: float = 0.0
    #: "planned_stop": how long the node stays down once stopped.
    restart_after: float = 0.0

    def describe(self) -> str:
        parts = [f"{self.at:.3f}s {self.kind}"]
        if self.kind in ("crash", "cycle_crash", "isolate", "lose_disk", "planned_stop"):
            parts.append(f"host={self.target or 'leader'}")
        if self.sides:
            parts.append("sides=" + "|".join(",".join(map(str, s)) for s in self.sides))
        if self.other:
            parts.append(f"{self.target}->{self.other}")
        if self.duration:
            parts.append(f"for={self.duration:.3f}s")
        if self.kind in ("crash", "cycle_crash", "crash_all"):
            parts.append(f"mode={self.mode}")
        if self.point:
            parts.append(f"at={self.point}")
        if self.kind == "redeliver":
            parts.append(describe_lookback(self.lookback_s))
        if self.restart_after:
            parts.append(f"restart_after={self.restart_after:.3f}s")
        return " ".join(parts)


@dataclass(slots=True)
class Trigger:
    """Crash the node that satisfies `kind` (see the module table) when it first does."""

    kind: str
    mode: str
    restart_after: float
    remaining: int = 1

    def describe(self) -> str:
        return (
            f"{self.kind}(mode={self.mode}, restart={self.restart_after:.3f}s, n={self.remaining})"
        )


@dataclass(slots=True, kw_only=True)
class Knobs:
    """Everything a profile draws; printed with a failing seed."""

    nodes: int = 3
    groups: int = 3
    keys: int = 6
    clients: int = 4
    chaos_s: float = 2.0
    #: How long the clients keep starting transactions after the heal, on the healed cluster.
    after_heal_s: float = 0.0
    #: The fewest acknowledged writing transactions the run must have (`MIN_WRITERS`).
    min_writers: int = 0
    think_s: float = 0.01
    #: The client's deadline for a commit (a short one makes CommitUnknown frequent).
    commit_timeout_s: float = 2.0
    #: The nodes' deadline for a client request (and their own requests to other groups);
    #: a write still undecided then is answered OUTCOME_UNKNOWN (node rule 5). NodeCore's
    #: `request_timeout_s`, so it also paces the transaction duties: when old notes are
    #: forgotten and when a purge pass is given up (`PURGE_PASS_TIMEOUTS` of it).
    node_request_timeout_s: float = NODE_REQUEST_TIMEOUT_S
    net: NetworkConfig = field(default_factory=NetworkConfig)
    timing: HostTiming = field(default_factory=HostTiming)
    paxos: PaxosSettings = field(default_factory=PaxosSettings)
    txn: TxnSettings = field(default_factory=TxnSettings)
    #: Wall-clock offsets of nodes then clients (all within the max clock offset).
    skews: tuple[float, ...] = ()
    #: Rates of the nodes' monotonic clocks (within the lease drift margin).
    rates: tuple[float, ...] = ()
    faults: list[Fault] = field(default_factory=list)
    triggers: list[Trigger] = field(default_factory=list)
    #: Probability that a client process dies at each abandon point of `death_points`.
    client_death: float = 0.0
    death_points: tuple[str, ...] = ABANDON_POINTS
    #: Clients settle a commit whose outcome is unknown (`txn_status(ref, settle=True)`).
    settle_unknown: bool = False
    #: Probability that the network delivers a copy of a commit request (Prepare, one-phase
    #: commit, Decide, Resolve) again after 1-3 retention windows (participant rules P7, O5).
    late_copies: float = 0.0
    #: Share of the list-append operations that are plain linearizable gets of one hot key
    #: (outside transactions; node rule 14 serves some through a proven commit's intent).
    plain_gets: float = 0.0
    #: Probability of each forgery of a buggy client: a Resolve(commit) with the votes it
    #: has so far and made-up ones for the rest; a Resolve(abort) of a committed
    #: transaction's part, or a Decide(abort) of it at a group with no part in it (node
    #: rule 12, participant rule R7).
    forged_resolves: float = 0.0

    def describe(self) -> str:
        return (
            f"nodes={self.nodes} groups={self.groups} keys={self.keys} clients={self.clients} "
            f"chaos={self.chaos_s}s after_heal={self.after_heal_s}s min_writers={self.min_writers} "
            f"commit_timeout={self.commit_timeout_s}s node_timeout={self.node_request_timeout_s}s "
            f"net={self.net} timing={self.timing} paxos={self.paxos} "
            f"txn={self.txn} skews={self.skews} rates={self.rates} client_death={self.client_death} "
            f"settle_unknown={self.settle_unknown} late_copies={self.late_copies} "
            f"forged_resolves={self.forged_resolves} plain_gets={self.plain_gets} "
            f"triggers={[t.describe() for t in self.triggers]} "
            f"faults={[f.describe() for f in self.faults]}"
        )


PROFILES = (
    "calm",
    "lossy",
    "dups",
    "partitions",
    "crashes",
    "2pc",
    "clocks",
    "chaos",
    "rebuild",
    "purge",
    "forgery",
    "reads",
    "torn",
    "purge-forgery",
    "redeliver",
    "planned",
)

# The profiles whose faults the real client meets (real_client.py): all but those whose
# faults are the model client's forged Resolves.
REAL_CLIENT_PROFILES = tuple(p for p in PROFILES if p not in ("forgery", "purge-forgery"))
# The "redeliver" fault: each node gets this many old Paxos messages again every
# `world.REDELIVER_EVERY_S`.
REDELIVER_COUNT = 2
# The "purge" profile's retention window: longer than its clients' commit deadline (0.4 s:
# a client's own re-sent Prepare is then never below a purge mark, where rule P7 would
# refuse it), shorter than its outage.
PURGE_RETENTION_S = 0.5
# Progress: the fewest acknowledged writing transactions a run of (workload, profile) must
# have, a quarter of the fewest seen in seeds 0-649 (calm: append 29, bank 20; chaos, with
# its 2 s after the heal: append 18, bank 8; partitions: append 8; forgery: append 6, bank
# 5; rebuild: append 5; redeliver, in seeds 0-99: append 5; registers calm, in seeds 0-99
# with either client: 41). No floor where a run saw 4 or
# fewer: the claims (a release starves behind the claims that keep scanning its range), and
# faults that can stall a whole short chaos phase (bank partitions and rebuild 3; clocks,
# crashes, lossy 1-3; dups, 2pc, purge and reads 0-1 in seeds 0-149; bank redeliver 4 in
# seeds 0-99).
MIN_WRITERS: dict[tuple[str, str], int] = {
    ("append", "calm"): 7,
    ("bank", "calm"): 5,
    ("append", "chaos"): 4,
    ("bank", "chaos"): 2,
    ("append", "partitions"): 2,
    ("append", "forgery"): 1,
    ("bank", "forgery"): 1,
    ("append", "rebuild"): 1,
    ("append", "redeliver"): 1,
    ("registers", "calm"): 10,
}


#: In the leases workload, how far ahead of the nodes the first client's clock runs: node rule
#: 9 takes request timestamps up to 4 offsets + 0.5 s ahead, and each such request pushes a
#: leader's hybrid clock ahead of its wall clock, by which no expiry may be judged.
LEASES_CLIENT_AHEAD_S = 0.15


def draw_knobs(workload: str, profile: str, rng: random.Random) -> Knobs:
    """The knobs of one run (every random choice from `rng`)."""
    k = _drawn_knobs(workload, profile, rng)
    if workload == "leases":  # derived, not drawn: the other workloads' seeds replay as before
        skews = list(k.skews) or [0.0] * (k.nodes + k.clients)
        skews[k.nodes] += LEASES_CLIENT_AHEAD_S
        k.skews = tuple(skews)
    return k


def _drawn_knobs(workload: str, profile: str, rng: random.Random) -> Knobs:
    if profile not in PROFILES:
        raise ValueError(f"unknown profile {profile!r}; choose from {PROFILES}")
    k = Knobs()
    k.min_writers = MIN_WRITERS.get((workload, profile), 0)
    k.nodes = rng.choice((3, 4, 5))
    k.groups = rng.choice((2, 3))
    k.keys = rng.choice((4, 6, 8)) if workload == "append" else rng.choice((4, 6))
    k.clients = rng.choice((3, 4, 6))
    k.chaos_s = rng.choice((1.0, 1.5, 2.0))
    k.commit_timeout_s = rng.choice((0.4, 1.0, 2.0))
    # The short deadline makes CommitUnknown frequent: those clients settle it, as
    # `txn.Client(settle_unknown=True)` does. Derived, not drawn (seeds keep their schedules).
    k.settle_unknown = k.commit_timeout_s == 0.4
    epsilon = rng.choice((0.0, 0.0, 0.003, 0.02))
    k.skews = tuple(rng.uniform(0.0, epsilon) for _ in range(k.nodes + k.clients))
    k.timing = HostTiming(
        tick_interval_s=rng.choice((0.005, 0.01)),
        wake_delay_max_s=rng.choice((0.0, 0.001, 0.003)),
        tick_on_message=True,
    )
    compact = rng.random() < 0.3
    k.paxos = PaxosSettings(
        max_batch_count=rng.choice((1, 8, 1024)),
        pipeline_window=rng.choice((1, 32)),  # 1: the node default
        compact_threshold=rng.choice((20, 60)) if compact else 20_000,
        compact_keep=rng.choice((2, 10)) if compact else 2_000,
        thrifty_accepts=rng.random() < 0.75,
    )
    # Pre-vote (Paxos rule 13) with the node default window, as the nodes run; without it
    # on the others, where rule 12 carries the rejoins. Derived, not drawn.
    k.paxos = replace(k.paxos, pre_vote=k.paxos.pipeline_window == 1)
    if k.paxos.max_batch_count == 8:
        # Derived, not drawn (seeds keep their schedules): one slot applied per cycle.
        k.paxos = replace(k.paxos, max_apply_bytes=1)
    collect = rng.random() < 0.5
    # Half of the runs that compact build and restore snapshots in steps of 50 records
    # (crashes then land inside restores). No draw of its own: seeds keep their schedules.
    steps = compact and k.paxos.compact_keep == 2
    k.txn = TxnSettings(
        max_clock_offset_s=epsilon,
        resolve_after_s=rng.choice((0.2, 0.4)),
        decision_retention_s=3600.0,
        purge_interval_s=3600.0,
        mvcc_retention_s=rng.choice((0.3, 1.0)) if collect else 600.0,
        gc_interval_s=rng.choice((0.1, 0.5)) if collect else 30.0,
        snapshot_step_records=50 if steps else 2_000,
        snapshot_step_bytes=4096 if steps else 1024 * 1024,
        snapshot_whole_bytes=0 if steps else 64 * 1024,
    )
    nodes = list(range(1, k.nodes + 1))
    if profile == "calm":
        return k
    if profile == "dups":
        # Every third message twice, one in five held up to 0.6 s, few hot keys: requests
        # arrive again long after their answer (as a deposed leader's accepted proposal can
        # be chosen long after the client moved on).
        k.keys = 3
        k.net = NetworkConfig(
            drop=0.05, duplicate=0.3, delay_max_s=0.003, long_delay=0.2, long_delay_max_s=0.6
        )
        return k
    if profile in ("lossy", "chaos"):
        k.net = NetworkConfig(
            drop=rng.choice((0.01, 0.05, 0.1)),
            duplicate=rng.choice((0.0, 0.05, 0.15)),
            delay_max_s=rng.choice((0.002, 0.01)),
            long_delay=rng.choice((0.0, 0.02, 0.05)),
            long_delay_max_s=rng.choice((0.1, 0.3)),
        )
    else:
        k.net = NetworkConfig(drop=rng.choice((0.0, 0.01)), duplicate=rng.choice((0.0, 0.01)))
    weights: dict[str, float] = {}
    rate = 0.0
    if profile == "lossy":
        weights = {"clog": 1, "heal": 1}
        rate = 2
    elif profile == "partitions":
        weights = {"partition": 3, "isolate": 3, "clog": 1, "heal": 2}
        rate = 4
    elif profile == "crashes":
        weights = {"crash": 3, "cycle_crash": 3, "crash_all": 0.5}
        rate = 3
    elif profile == "2pc":
        rate = 0.5
        weights = {"crash": 1}
    elif profile == "clocks":
        # Wall clocks at the extremes of the allowed offset, monotonic clocks at different
        # rates (within the lease drift), leaders crashed and isolated: commit wait, the new
        # leader's clock bump and lease hand-over are what keep snapshots and real time right.
        epsilon = rng.choice((0.003, 0.02))
        k.txn = replace(k.txn, max_clock_offset_s=epsilon)
        k.skews = tuple(rng.choice((0.0, epsilon)) for _ in range(k.nodes + k.clients))
        k.rates = tuple(rng.uniform(0.97, 1.03) for _ in range(k.nodes))
        weights = {"isolate": 2, "crash": 2, "heal": 1}
        rate = 3
    elif profile == "rebuild":
        # Nodes lose their disks under transactions and rebuild (Paxos rule 14) while
        # others crash and leaders are cut off.
        weights = {"lose_disk": 3, "crash": 1, "isolate": 1, "heal": 1}
        rate = 3
    elif profile in ("purge", "purge-forgery"):
        # Decision records purged while every group is down longer than the retention
        # window, with clients dying and 2PC crash points losing Resolves: no transaction
        # may be left in doubt by a purge (coordinator rules G1, G2). Set after every
        # shared draw. "purge-forgery" adds the "forgery" profile's clients (below).
        k.commit_timeout_s = 0.4
        k.settle_unknown = True
        k.late_copies = rng.choice((0.0, 0.1, 0.3))
        k.txn = replace(k.txn, decision_retention_s=PURGE_RETENTION_S, purge_interval_s=0.1)
        weights = {"crash": 2, "partition": 1}
        rate = 2
    elif profile == "forgery":
        # A buggy client forges Resolves and Decides under crashes: atomicity must hold
        # because the nodes take none of them (node rule 12, participant rule R7).
        k.forged_resolves = rng.choice((0.2, 0.5))
        weights = {"crash": 2, "partition": 1}
        rate = 2
    elif profile == "torn":
        # Crashes (also inside a cycle, every node at once, and at the 2PC crash points)
        # that keep a random prefix of the unsynced writes, in write order across the engine
        # and every group's Paxos storage, as a power loss does to the real node's one
        # RocksDB write-ahead log: recovery must rebuild from any such prefix. The modes are
        # the drawn ones made torn below (derived, not drawn: a torn crash keeping none or
        # all of them is a power loss or a kill).
        weights = {"crash": 3, "cycle_crash": 3, "crash_all": 0.5, "partition": 1}
        rate = 3
    elif profile == "reads":
        # Plain linearizable gets among the transactions, under crashes and 2PC crash
        # points: each must show a committed state, in real-time order (Elle), at a version
        # the replicas applied with that value (node rule 14's reads through the intents of
        # proven commits).
        k.plain_gets = 0.4
        weights = {"crash": 2, "isolate": 1, "heal": 1}
        rate = 2
    elif profile == "redeliver":
        # Paxos messages between nodes, sent any time before, delivered again while leaders
        # crash and are cut off: every group's replies count only for the ballot they answer.
        k.net = replace(k.net, keep_sent=True)
        weights = {"redeliver": 3, "crash": 2, "isolate": 1, "partition": 1, "heal": 1}
        rate = 4
    elif profile == "planned":
        # Rolling restarts under transactions: a node told to stop hands the groups it leads
        # to peers (node rule 15, paxos replica rule 19), then stops once none is left or
        # its bound runs out, and comes back; among crashes and a cut-off leader.
        weights = {"planned_stop": 4, "crash": 1, "isolate": 1, "heal": 1}
        rate = 3
    elif profile == "chaos":
        # Its faults leave clients waiting out deadlines longer than its phase (a median of
        # 5 acknowledged writers in seeds 0-29, 8 with 3 or fewer): the clients work on
        # after the heal, beside what recovery still resolves, for longer than the requests
        # sent during the faults may wait (reads 1.5 s, commits 2 s).
        k.after_heal_s = 2.0
        weights = {
            "partition": 2,
            "isolate": 2,
            "clog": 1,
            "heal": 2,
            "crash": 2,
            "cycle_crash": 2,
            "crash_all": 0.3,
        }
        rate = 4
    if profile in ("2pc", "chaos", "purge", "reads", "torn", "purge-forgery"):
        count = rng.choice((0, 1, 2)) if profile == "chaos" else rng.choice((1, 2, 3))
        for _ in range(count):
            k.triggers.append(
                Trigger(
                    kind=rng.choice(TRIGGERS),
                    mode=rng.choice((CrashMode.POWER_LOSS, CrashMode.KILL)),
                    restart_after=rng.choice((0.05, 0.3, 1.0)),
                    remaining=rng.choice((1, 2)),
                )
            )
        k.client_death = rng.choice((0.02, 0.05, 0.1))
    k.faults = plan_faults(rng, weights, rate, nodes, 0.1, k.chaos_s)
    if profile in ("purge", "purge-forgery"):
        # Every node down at once for longer than the window: on restart, each group's first
        # purge meets records older than it while other groups may still hold those
        # transactions prepared (their Resolves lost with a dying client or a crash).
        outage = PURGE_RETENTION_S * rng.uniform(1.2, 2.5)
        mode = rng.choice((CrashMode.POWER_LOSS, CrashMode.KILL))
        at = rng.uniform(0.2, k.chaos_s / 2)
        k.faults = sorted(
            [*k.faults, Fault(at, "crash_all", mode=mode, duration=outage)], key=lambda f: f.at
        )
    if profile == "redeliver":
        # At least one burst (a third of the short chaos phases drew none).
        burst = Fault(
            rng.uniform(0.1, k.chaos_s / 2),
            "redeliver",
            duration=rng.uniform(0.2, 0.5),
            lookback_s=rng.choice(REDELIVER_LOOKBACKS_S),
        )
        k.faults = sorted([*k.faults, burst], key=lambda f: f.at)
    if profile == "purge-forgery":
        # The "purge" profile's draws, then the "forgery" profile's clients: forged Resolves
        # and recovery Decides meet groups whose records were purged, or whose purges lag
        # (participant rule R5's exception, coordinator rule D4). Drawn last, as the review's
        # hand-made combination did, so a seed draws its knobs (not its run: that one passed
        # them in, and its world's draws began at the seed); its seed 2086486748 of the bank
        # failed before R5's exception, and `ClusterSim("bank", "purge", 2086486748,
        # knobs=draw_knobs("bank", "purge-forgery", Random(2086486748)))` still fails
        # without it.
        k.forged_resolves = rng.choice((0.2, 0.5))
    if profile == "torn":
        # Derived, not drawn: every crash the schedule and the 2PC crash points hold is torn.
        k.faults = [replace(f, mode=CrashMode.TORN) for f in k.faults]
        k.triggers = [replace(t, mode=CrashMode.TORN) for t in k.triggers]
    return k


def _is_peer_message(payload: Any) -> bool:
    """What the "redeliver" fault may deliver again. Peer streams deliver once too, but
    Paxos's safety must not rest on that; a node's request path does (`requests_seen`: a
    client request arrives once or not at all), so client requests and answers are not
    kept."""
    return bool(payload[0] == "peer")


def plan_faults(
    rng: random.Random,
    weights: dict[str, float],
    rate_per_s: float,
    nodes: list[int],
    start: float,
    end: float,
) -> list[Fault]:
    """A fault schedule for [start, end) of the chaos phase (times relative to its start)."""
    faults: list[Fault] = []
    if not weights or rate_per_s <= 0:
        return faults
    kinds = sorted(weights)
    t = start
    while True:
        t += rng.expovariate(rate_per_s)
        if t >= end:
            break
        kind = rng.choices(kinds, weights=[weights[x] for x in kinds])[0]
        target = 0 if rng.random() < 0.5 else rng.choice(nodes)
        mode = rng.choice((CrashMode.POWER_LOSS, CrashMode.KILL))
        if kind == "partition":
            shuffled = list(nodes)
            rng.shuffle(shuffled)
            cut = rng.randint(1, len(nodes) - 1)
            sides = (tuple(sorted(shuffled[:cut])), tuple(sorted(shuffled[cut:])))
            faults.append(Fault(t, kind, sides=sides, duration=rng.uniform(0.1, 0.8)))
        elif kind == "isolate":
            faults.append(Fault(t, kind, target=target, duration=rng.uniform(0.1, 0.8)))
        elif kind == "clog":
            a, b = rng.sample(nodes, 2)
            faults.append(Fault(t, kind, target=a, other=b, duration=rng.uniform(0.05, 0.5)))
        elif kind == "heal":
            faults.append(Fault(t, kind))
        elif kind == "crash":
            faults.append(Fault(t, kind, target=target, mode=mode, duration=rng.uniform(0.05, 1.0)))
        elif kind == "crash_all":
            faults.append(Fault(t, kind, mode=mode, duration=rng.uniform(0.05, 0.5)))
        elif kind == "lose_disk":
            faults.append(Fault(t, kind, target=target, duration=rng.uniform(0.05, 0.5)))
        elif kind == "planned_stop":
            # `duration`: the bound on the handoff (the runtime's: two election timeouts).
            faults.append(
                Fault(
                    t,
                    kind,
                    target=target,
                    duration=rng.choice((0.05, 0.6)),
                    restart_after=rng.uniform(0.05, 1.0),
                )
            )
        elif kind == "redeliver":
            lookback = rng.choice(REDELIVER_LOOKBACKS_S)
            faults.append(Fault(t, kind, duration=rng.uniform(0.05, 0.5), lookback_s=lookback))
        elif kind == "cycle_crash":
            faults.append(
                Fault(
                    t,
                    kind,
                    target=target,
                    mode=mode,
                    duration=rng.uniform(0.05, 1.0),
                    point=rng.choice(CYCLE_POINTS),
                )
            )
    return faults


# ---------------------------------------------------------------------- the simulation


@dataclass(frozen=True, slots=True)
class ClusterResult:
    """What a run reports (equal for equal seeds: the determinism property)."""

    digest: str
    txns: int
    ok: int
    failed: int
    info: int
    stats: tuple[tuple[str, int], ...]
    virtual_s: float


class ClusterSim:
    """One seeded run of a workload on a simulated cluster under a fault profile."""

    WARMUP_BOUND_S = 5.0
    DRAIN_BOUND_S = 6.0
    FINAL_READ_BOUND_S = 10.0
    QUIESCE_BOUND_S = 6.0
    #: The commit deadline of the setup's retries (the model client's reads keep theirs).
    #: Under the long delays of some profiles (dups: a fifth of the messages up to 0.6 s
    #: late, behind which a stream's later ones wait) a run's 0.4 s deadline can fail every
    #: attempt for seconds, and the setup is not what a run tests.
    SETUP_RETRY_TIMEOUT_S = 5.0
    #: The longest wait for a setup process's work after answering before the next one.
    SETUP_SETTLE_S = 1.0

    def __init__(
        self,
        workload: str,
        profile: str,
        seed: int,
        knobs: Knobs | None = None,
        mutations: frozenset[str] = frozenset(),
        real_client: bool = False,
        node_request_timeout_s: float | None = None,
        watch: bool = False,
    ) -> None:
        if workload not in WORKLOADS:
            raise ValueError(f"unknown workload {workload!r}; choose from {sorted(WORKLOADS)}")
        self.workload_name = workload
        self.profile = profile
        self.seed = seed
        self.mutations = mutations
        #: The clients run the real `txn.AsyncClient` (real_client.py), not the model.
        self.real_client = real_client
        if watch and not real_client:
            raise ValueError("a watcher runs the real client: watch needs real_client")
        #: A process watches every key for the run (real_client.SimWatcher), judged at the end.
        self.watch = watch
        self.watcher: SimWatcher | None = None
        self.rng = random.Random(seed)
        self.knobs = knobs if knobs is not None else draw_knobs(workload, profile, self.rng)
        if node_request_timeout_s is not None:
            # Set after the draws, so the run's schedule is the usual one of its seed.
            self.knobs.node_request_timeout_s = node_request_timeout_s
        k = self.knobs
        self.world = World(self.rng, k.net)
        self.world.net.keepable = _is_peer_message
        self.node_ids = list(range(1, k.nodes + 1))
        self.shard_map = _cluster_map(self.node_ids, k.groups, k.keys)
        self.nodes: dict[int, NodeHost] = {}
        for i, node_id in enumerate(self.node_ids):
            rate = k.rates[i] if i < len(k.rates) else 1.0
            self.nodes[node_id] = NodeHost(self, node_id, k.timing, _at(k.skews, i), rate)
        #: What the real client's processes reported that no correct run may (real_client).
        self.real_client_errors: list[str] = []
        self.clients: list[ClientHost] = []
        for c in range(k.clients):
            skew = _at(k.skews, k.nodes + c)
            self.clients.append(ClientHost(self, 101 + c, c, skew))
        self.workload = WORKLOADS[workload](self)
        self.stats: dict[str, int] = {}
        self.next_call_id = 0
        self.fault_log: list[str] = []
        # txn id -> (coordinator group, participants, groups seen holding its PREPARE).
        self.prepares_logged: dict[bytes, tuple[int, frozenset[int], set[int]]] = {}
        self.chaos = False
        #: Clients start new transactions (the chaos phase, and `Knobs.after_heal_s`).
        self.clients_running = False
        self.triggers: list[Trigger] = []
        self._chaos_start = 0.0
        self.final: TxnRecord | None = None
        self._pending_cycle_crash: dict[int, tuple[str, float]] = {}
        # (group, txn id) -> the newest decision record a replica applied: the truth the
        # checkers read after a purge deleted it (the "purge" profile's short retention).
        self.decisions_applied: dict[tuple[int, bytes], DecisionInfo] = {}
        # key -> version -> value of every version a replica of its group applied: the
        # history the checkers judge, which MVCC collection removes from the stores.
        self.versions_applied: dict[bytes, dict[int, bytes | None]] = {}
        #: (key, version) -> the world time a replica first applied it.
        self.first_applied_at: dict[tuple[bytes, int], float] = {}
        #: (key, version) of every tombstone a replica's Expire command wrote.
        self.expired_versions: set[tuple[bytes, int]] = set()
        # What replicas applied differently at one place (a decision, a version's value).
        self.apply_conflicts: list[str] = []

    # ------------------------------------------------------------------ helpers

    def client_hosts(self) -> list[ClientHost]:
        """Every client machine, the watcher's included: each sees nodes crash and restart."""
        extra = [] if self.watcher is None else [self.watcher.host]
        return self.clients + extra

    def stats_add(self, name: str, n: int = 1) -> None:
        self.stats[name] = self.stats.get(name, 0) + n

    def replay_hint(self) -> str:
        timeout = self.knobs.node_request_timeout_s
        run = Replay(
            self.workload_name,
            self.profile,
            self.seed,
            self.real_client,
            None if timeout == NODE_REQUEST_TIMEOUT_S else timeout,
            self.watch,
        )
        return REPLAY_HINT.format(run=run)

    def leader_of(self, group_id: int) -> NodeHost | None:
        best: NodeHost | None = None
        best_ballot: Any = None
        for node_id in self.shard_map.replicas(group_id):
            node = self.nodes[node_id]
            if node.leads(group_id):
                assert node.core is not None
                ballot = node.core.hosts[group_id].replica.status().promised
                if best is None or ballot > best_ballot:
                    best, best_ballot = node, ballot
        return best

    def data_groups(self) -> list[int]:
        return [g for g in self.shard_map.group_ids() if g != META_GROUP_ID]

    # ------------------------------------------------------------------ faults

    def maybe_copy_late(self, src: int, group_id: int | None, request: kv.Request) -> None:
        """Maybe hold a copy of a commit request longer than the retention window (a
        middlebox, a stuck retransmission), then deliver it to its group's leader: every
        record of the transaction there may be purged by then (rules P7, O5)."""
        k = self.knobs
        if not self.chaos or k.late_copies <= 0 or group_id is None:
            return
        if request.WhichOneof("op") not in LATE_COPY_KINDS or self.rng.random() >= k.late_copies:
            return
        self.next_call_id += 1  # its answer matches no call
        copy = ("req", self.next_call_id, 1, request.SerializeToString())
        at = self.world.now + self.rng.uniform(1.0, 3.0) * k.txn.decision_retention_s
        self.world.schedule(at, self._deliver_late_copy, src, group_id, copy)

    def _deliver_late_copy(self, src: int, group_id: int, copy: tuple[Any, ...]) -> None:
        leader = self.leader_of(group_id)
        if leader is not None:
            self.stats_add("late_copies_delivered")
            self.world.net.send(src, leader.id, copy)

    def client_dies(self, point: str) -> bool:
        k = self.knobs
        if not self.chaos or k.client_death <= 0 or point not in k.death_points:
            return False
        return self.rng.random() < k.client_death

    def real_client_dies(self) -> bool:
        """Whether a real client process dies during the transaction it starts: as likely
        as one of the model's at any of the points it may die at."""
        k = self.knobs
        if not self.chaos or k.client_death <= 0:
            return False
        return self.rng.random() < k.client_death * len(k.death_points)

    def _resolve_target(self, target: int) -> int | None:
        if target:
            return target
        group = self.rng.choice(self.data_groups())
        leader = self.leader_of(group)
        if leader is not None:
            return leader.id
        up = [n for n in self.node_ids if self.nodes[n].up]
        return self.rng.choice(up) if up else None

    def _crash(self, node: NodeHost, mode: str, restart_after: float | None, why: str) -> None:
        if not node.up:
            return
        node.crash(mode)
        self.stats_add(f"crash:{why}")
        if mode == CrashMode.TORN and node.disk.last_torn is not None:
            kept, unsynced = node.disk.last_torn
            if not unsynced:
                self.stats_add("torn_kept:nothing_unsynced")
            else:
                part = "all" if kept == unsynced else "part" if kept else "none"
                self.stats_add(f"torn_kept:{part}")
            mode = f"{mode}: kept {kept} of {unsynced} unsynced writes"
        self.fault_log.append(f"{self.world.now:.3f}s crash node {node.id} ({why}, {mode})")
        if restart_after is not None:
            self.world.schedule(self.world.now + restart_after, self._restart, node.id)

    def _lose_disk(self, fault: Fault) -> None:
        """A node's disk is replaced: it restarts empty, every group it hosts marked
        rebuilding, as `paxoskv node --rebuild` does. One at a time, with every other node
        up: more is a lost majority of some group, which no protocol survives."""
        target = self._resolve_target(fault.target)
        nodes = self.nodes.values()
        if target is None or any(not n.up or n.rebuilding() for n in nodes):
            return
        node = self.nodes[target]
        self._crash(node, CrashMode.POWER_LOSS, fault.duration, "lose_disk")
        node.disk = SimNodeDisk()
        marks = PersistBatch(rebuilding=True)
        node.disk.inner.persist([(g, marks) for g in self.shard_map.groups_of_node(node.id)])

    def _planned_stop_poll(
        self, node_id: int, core: NodeCore, deadline: float, restart_after: float, led: bool
    ) -> None:
        """A stopping node's handoff wait (shard/runtime.py `_hand_off_leadership`): stop
        (a kill: a clean stop loses nothing) once no group is being handed over, or at the
        bound; moot if the node crashed meanwhile."""
        node = self.nodes[node_id]
        if node.core is not core:
            return
        if core.handing_off() and self.world.now < deadline:
            self.world.schedule(
                self.world.now + 0.005,
                self._planned_stop_poll,
                node_id,
                core,
                deadline,
                restart_after,
                led,
            )
            return
        if not led:
            self.stats_add("planned_stop:led_nothing")
        else:
            kept = core.led_groups()
            self.stats_add("planned_stop:kept" if kept else "planned_stop:handed_off")
        self._crash(node, CrashMode.KILL, restart_after, "planned_stop")

    def _restart(self, node_id: int) -> None:
        node = self.nodes[node_id]
        if not node.up:
            node.start()
            self.fault_log.append(f"{self.world.now:.3f}s restart node {node_id}")

    def _apply_fault(self, fault: Fault) -> None:
        if not self.chaos:
            return
        net = self.world.net
        now = self.world.now
        self.stats_add(f"fault:{fault.kind}")
        if fault.kind == "partition":
            net.partition(*fault.sides)
            self.world.schedule(now + fault.duration, net.heal)
        elif fault.kind == "isolate":
            target = self._resolve_target(fault.target)
            if target is not None:
                net.isolate(target)
                self.world.schedule(now + fault.duration, net.heal)
        elif fault.kind == "clog":
            net.clog(fault.target, fault.other, now + fault.duration)
        elif fault.kind == "heal":
            net.heal()
        elif fault.kind == "crash":
            target = self._resolve_target(fault.target)
            if target is not None:
                self._crash(self.nodes[target], fault.mode, fault.duration, "scheduled")
        elif fault.kind == "crash_all":
            for node in self.nodes.values():
                self._crash(node, fault.mode, fault.duration, "all")
        elif fault.kind == "lose_disk":
            self._lose_disk(fault)
        elif fault.kind == "planned_stop":
            target = self._resolve_target(fault.target)
            if target is not None and self.nodes[target].up:
                core = self.nodes[target].core
                assert core is not None
                led = bool(core.led_groups())
                core.retire()
                self._planned_stop_poll(
                    target, core, now + fault.duration, fault.restart_after, led
                )
        elif fault.kind == "redeliver":
            net.redeliver_until(now + fault.duration, REDELIVER_COUNT, fault.lookback_s)
        elif fault.kind == "cycle_crash":
            target = self._resolve_target(fault.target)
            if target is not None and self.nodes[target].up:
                node = self.nodes[target]
                node.disk.armed = fault.point
                self._pending_cycle_crash[target] = (fault.mode, fault.duration)
        self.fault_log.append(f"{now:.3f}s {fault.describe()}")

    def on_crash_point(self, node: NodeHost, point: str) -> None:
        """A crash point inside execute_cycle fired on `node`."""
        mode, restart_after = self._pending_cycle_crash.pop(node.id, (CrashMode.POWER_LOSS, 0.1))
        self._crash(node, mode, restart_after if self.chaos else 0.0, f"cycle@{point}")

    def after_cycles(self, node: NodeHost) -> bool:
        """The 2PC crash points: True when a trigger crashed `node`."""
        self._note_prepares(node)
        if not self.chaos or not self.triggers:
            return False
        core = node.core
        assert core is not None
        for trigger in self.triggers:
            if trigger.remaining <= 0:
                continue
            if self._trigger_holds(trigger.kind, core):
                trigger.remaining -= 1
                self._crash(node, trigger.mode, trigger.restart_after, trigger.kind)
                return True
        return False

    def _note_prepares(self, node: NodeHost) -> None:
        """Remember which groups logged a PREPARE of each multi-group txn (for `verify`)."""
        if node.core is None:
            return
        for group_id, host in node.core.hosts.items():
            if group_id == META_GROUP_ID:
                continue
            for prepared in host.shard.prepared_txns():
                if len(prepared.participants) < 2:
                    continue
                _, _, groups = self.prepares_logged.setdefault(
                    prepared.txn_id,
                    (prepared.coordinator_group, frozenset(prepared.participants), set()),
                )
                groups.add(group_id)

    @staticmethod
    def _trigger_holds(kind: str, core: NodeCore) -> bool:
        for group_id, host in core.hosts.items():
            if group_id == META_GROUP_ID or host.replica.role is not Role.LEADER:
                continue
            shard = host.shard
            if kind == "coord_decided":
                for decision in shard.unfinished_decisions():
                    state = host.resolving.get(decision.txn_id)
                    delivered = set() if state is None else state.confirmed - {group_id}
                    if len(decision.participants) > 1 and not delivered:
                        return True
                continue
            for prepared in shard.prepared_txns():
                if len(prepared.participants) < 2:
                    continue
                is_coord = prepared.coordinator_group == group_id
                if is_coord == (kind == "coord_prepared"):
                    return True
        return False

    # ------------------------------------------------------------------ clients

    def _client_loop(self, client: ClientHost) -> None:
        if client.stopped or not self.clients_running:
            client.busy = False
            return
        client.busy = True
        self.workload.start_one(client, lambda rec: self._client_done(client, rec))

    def _client_done(self, client: ClientHost, record: TxnRecord) -> None:
        result = record.result
        assert result is not None
        self.stats_add(f"txn:{result.status}")
        self.world.trace("txn", client.id, record.process, result.status, result.commit_ts)
        if result.status == "info":
            client.new_process()
        client.busy = False
        if self.clients_running:
            client.busy = True
            think = self.rng.uniform(0, self.knobs.think_s)
            self.world.schedule(self.world.now + think, self._client_loop, client)

    # ------------------------------------------------------------------ phases

    def run(self) -> ClusterResult:
        with self._recording_applies(), deterministic_txn_ids(self.rng):
            return self._run()

    @contextlib.contextmanager
    def _recording_applies(self) -> Iterator[None]:
        """Every decision record and every committed version any replica applies during the
        run also goes to `decisions_applied` and `versions_applied`: a purge deletes the
        records and MVCC collection the versions before the verdict, which needs both (the
        simulator runs one cluster at a time in its process)."""
        store_class = state_machine_module._BatchTxnStore
        put_decision, write_version = store_class.put_decision, store_class.write_version
        # Single-key Put, Delete and CAS write through the state machine's own `_write`.
        machine_class = state_machine_module.ShardStateMachine
        single_write = machine_class._write
        expire = machine_class._expire

        def recording_put_decision(store: Any, info: DecisionInfo) -> None:
            key = (store._sm._group_id, info.txn_id)
            seen = self.decisions_applied.get(key)
            if seen is not None and (seen.committed, seen.commit_ts) != (
                info.committed,
                info.commit_ts,
            ):
                self.apply_conflicts.append(
                    f"group {key[0]} changed its decision of txn {info.txn_id.hex()}: "
                    f"{seen} then {info}"
                )
            self.decisions_applied[key] = info
            put_decision(store, info)

        def recording_write_version(
            store: Any, key: bytes, value: bytes | None, version: int, ttl_ms: int = 0
        ) -> None:
            record_version(store._sm._group_id, key, value, version)
            write_version(store, key, value, version, ttl_ms)

        def record_version(group_id: int, key: bytes, value: bytes | None, version: int) -> None:
            applied = self.versions_applied.setdefault(key, {})
            self.first_applied_at.setdefault((key, version), self.world.now)
            if version in applied and applied[version] != value:
                self.apply_conflicts.append(
                    f"group {group_id} applied {key!r}@{version} as "
                    f"{applied[version]!r} and as {value!r}"
                )
            applied[version] = value

        def recording_single_write(
            machine: Any, key: bytes, value: bytes | None, ts: int, batch: Any
        ) -> int:
            version: int = single_write(machine, key, value, ts, batch)
            record_version(machine._group_id, key, value, version)
            return version

        def recording_expire(machine: Any, cmd: Any, batch: Any) -> Any:
            result = expire(machine, cmd, batch)
            if result.version:
                self.expired_versions.add((cmd.key, result.version))
            return result

        store_class.put_decision = recording_put_decision  # type: ignore[method-assign]
        store_class.write_version = recording_write_version  # type: ignore[method-assign]
        machine_class._write = recording_single_write  # type: ignore[method-assign]
        machine_class._expire = recording_expire  # type: ignore[method-assign]
        try:
            yield
        finally:
            store_class.put_decision = put_decision  # type: ignore[method-assign]
            store_class.write_version = write_version  # type: ignore[method-assign]
            machine_class._write = single_write  # type: ignore[method-assign]
            machine_class._expire = expire  # type: ignore[method-assign]

    def _run(self) -> ClusterResult:
        world = self.world
        k = self.knobs
        for node in self.nodes.values():
            node.start()
        for client in self.clients:
            client.start()
        # Warm-up: every group elects a leader.
        groups = list(self.shard_map.group_ids())
        if not world.run_until(
            world.now + self.WARMUP_BOUND_S,
            lambda: all(self.leader_of(g) is not None for g in groups),
        ):
            raise LivenessViolation(self._fail_text("no leader for every group after warm-up"))
        self._setup()
        if self.watch:
            host = ClientHost(self, WATCHER_HOST_ID, WATCHER_HOST_ID, 0.0)
            host.start()
            self.watcher = SimWatcher(host)
            self.watcher.start()
        # Chaos.
        self.chaos = self.clients_running = True
        self.triggers = [Trigger(t.kind, t.mode, t.restart_after, t.remaining) for t in k.triggers]
        start = self._chaos_start = world.now
        for fault in k.faults:
            world.schedule(start + fault.at, self._apply_fault, fault)
        for i, client in enumerate(self.clients):
            world.schedule(start + 0.002 * i, self._client_loop, client)
            client.busy = True
        world.run_until(start + k.chaos_s)
        self._heal()
        if k.after_heal_s:
            world.run_until(world.now + k.after_heal_s)
        self.clients_running = False
        # Drain: clients finish what they started.
        if not world.run_until(
            world.now + self.DRAIN_BOUND_S, lambda: not any(c.busy for c in self.clients)
        ):
            raise LivenessViolation(self._fail_text("clients still busy after heal"))
        self._final_read()
        self._quiesce()
        if self.watcher is not None:
            self._catch_up_watcher(self.watcher)
            # The nodes' duties ran on meanwhile (a purge of decisions, say): settle again,
            # or a replica a slot behind was taken for one disagreeing with the others (a
            # soak: bank:purge:1196128472:real:watch, a purge applied on one of three).
            self._quiesce()
        return self._result()

    def _catch_up_watcher(self, watcher: SimWatcher) -> None:
        """Run until the watcher has delivered every version applied, then stop it."""
        newest = max((v for applied in self.versions_applied.values() for v in applied), default=0)
        if not self.world.run_until(
            self.world.now + self.FINAL_READ_BOUND_S, lambda: watcher.through >= newest
        ):
            raise LivenessViolation(
                self._fail_text(f"the watch stayed at {watcher.through} below {newest}")
            )
        watcher.stop()

    def _setup(self) -> None:
        """The workload's setup, retried until it commits; a retry runs in a new process
        with a long deadline, and the chaos phase in one with the run's own."""
        client = self.clients[0]
        outcome: list[bool] = []
        deadline = self.world.now + self.FINAL_READ_BOUND_S
        while not outcome or not outcome[-1]:
            if self.world.now >= deadline:
                raise LivenessViolation(self._fail_text("the workload setup did not commit"))
            if outcome:
                self._next_setup_process(client, self.SETUP_RETRY_TIMEOUT_S)
                self.stats_add("setup_retry")
            pending: list[bool] = []
            self.workload.setup(client, pending.append)
            self.world.run_until(deadline, lambda p=pending: bool(p))  # type: ignore[misc]
            outcome.extend(pending)
        if len(outcome) > 1:
            self._next_setup_process(client, None)

    def _next_setup_process(self, client: ClientHost, commit_timeout_s: float | None) -> None:
        """A new process for `client` once the old one has finished what it does after
        answering (or after SETUP_SETTLE_S): a process switch, not a client death, which
        the profile may not draw."""
        if not client.background_done():
            self.world.run_until(self.world.now + self.SETUP_SETTLE_S, client.background_done)
        client.new_process(commit_timeout_s)

    def _heal(self) -> None:
        """End of chaos: disarm, heal the network, restart every crashed node."""
        self.chaos = False
        self.triggers = []
        world = self.world
        world.net.config = NetworkConfig()
        world.net.heal()
        world.net.stop_keeping()
        self._pending_cycle_crash.clear()
        for node in self.nodes.values():
            node.disk.armed = None
            if not node.up:
                node.start()
        self.fault_log.append(f"{world.now:.3f}s heal: network healed, every node up")

    def _final_read(self) -> None:
        """One reader reads every key after heal (retried until it commits)."""
        world = self.world
        reader = self.clients[0]
        reader.process = 10_000
        deadline = world.now + self.FINAL_READ_BOUND_S
        while self.final is None:
            if world.now >= deadline:
                raise LivenessViolation(self._fail_text("the final read never committed"))
            got: list[TxnRecord] = []
            self.workload.final_read(reader, got.append)
            world.run_until(deadline, lambda g=got: bool(g))  # type: ignore[misc]
            if got and got[0].result is not None and got[0].result.status == "ok":
                self.final = got[0]
            elif got and got[0].result is not None and got[0].result.status == "info":
                reader.new_process()
            if self.final is None:
                world.run_until(world.now + 0.05)

    def _quiesce(self) -> None:
        world = self.world
        done = world.run_until(world.now + self.QUIESCE_BOUND_S, self._quiet)
        if not done:
            raise LivenessViolation(self._fail_text("not quiescent after heal: " + self._doubts()))

    def _quiet(self) -> bool:
        if self.world.events_run % 50:
            return False
        return not self._doubts()

    def _doubts(self) -> str:
        """What still keeps the cluster from being settled ('' when settled)."""
        out = []
        for group_id in self.shard_map.group_ids():
            indexes = set()
            for node_id in self.shard_map.replicas(group_id):
                node = self.nodes[node_id]
                if node.core is None:
                    out.append(f"node {node_id} down")
                    continue
                host = node.core.hosts[group_id]
                indexes.add(host.app.applied_index)
                if group_id == META_GROUP_ID:
                    continue
                shard = host.shard
                prepared = shard.prepared_txns()
                if prepared:
                    out.append(
                        f"group {group_id} node {node_id}: prepared "
                        f"{[p.txn_id.hex()[:8] for p in prepared]}"
                    )
                intents = shard.intents_in_range(shard.key_range[0], shard.key_range[1])
                if intents:
                    out.append(f"group {group_id} node {node_id}: {len(intents)} intents")
                unfinished = shard.unfinished_decisions()
                if unfinished:
                    out.append(
                        f"group {group_id} node {node_id}: unfinished decisions "
                        f"{[d.txn_id.hex()[:8] for d in unfinished]}"
                    )
            if len(indexes) > 1:
                out.append(f"group {group_id}: replicas at applied indexes {sorted(indexes)}")
        return "; ".join(out)

    # ------------------------------------------------------------------ verdict

    def _fail_text(self, what: str) -> str:
        if self.real_client_errors:
            what += f"\nthe real client reported: {self.real_client_errors[:3]}"
        return (
            f"{what}\nseed={self.seed} workload={self.workload_name} profile={self.profile}\n"
            f"knobs: {self.knobs.describe()}\nfault log: {self.fault_log}\n"
            f"replay: {self.replay_hint()}"
        )

    def gc_horizon(self, group_id: int) -> int:
        """The highest MVCC collection horizon among `group_id`'s replicas: below it, a
        replica may have dropped versions another still has (each collects on its clock)."""
        horizons = []
        for node_id in self.shard_map.replicas(group_id):
            core = self.nodes[node_id].core
            assert core is not None
            horizons.append(core.hosts[group_id].shard.gc_horizon)
        return max(horizons)

    def versions(
        self, node: NodeHost, group_id: int, horizon: int
    ) -> dict[bytes, list[tuple[int, bytes | None]]]:
        """Every version of every workload key of `group_id` on `node` readable at or above
        `horizon`, newest first: the ones above it (a deletion's tombstone as None) and the
        value visible at it (none when a deletion is: collection removes that tombstone)."""
        assert node.core is not None
        shard = node.core.hosts[group_id].shard
        out: dict[bytes, list[tuple[int, bytes | None]]] = {}
        for key in self.workload.all_keys():
            if self.shard_map.locate(key).group_id != group_id:
                continue
            # Every version record of the key, tombstones included (collection removes
            # none above the horizon; below it, a pass may be half way: not read here).
            base = shard._version_prefix + key.replace(b"\x00", b"\x00\xff")
            records = shard._engine.scan(base + KEY_TERMINATOR, base + KEY_TERMINATOR_END, None)
            chain: list[tuple[int, bytes | None]] = []
            for record_key, value in records:
                version = MAX_U64 - int.from_bytes(record_key[-9:-1], "big")
                if version <= horizon:
                    break
                chain.append((version, None if record_key[-1] == KIND_TOMBSTONE_INT else value))
            found = shard.get(key, horizon) if horizon else None
            if found is not None:
                chain.append((found[1], found[0]))
            out[key] = chain
        return out

    def applied_chains(self) -> dict[bytes, list[tuple[int, bytes | None]]]:
        """`versions_applied`: each key's versions newest first, as `versions` gives them."""
        return {
            key: sorted(applied.items(), reverse=True)
            for key, applied in self.versions_applied.items()
        }

    def verify(self) -> list[str]:
        """Every safety property over the settled cluster and the history."""
        assert self.final is not None
        # The workload's own verdict (Elle, bank totals) first: it names the anomaly.
        problems: list[str] = self.workload.check(self.final)
        problems += self.apply_conflicts
        problems += [f"the real client reported: {e}" for e in self.real_client_errors]
        if self.watcher is not None:
            commits = [
                (r.invoke, r.result.commit_ts)
                for r in self.workload.records
                if r.result is not None and r.result.status == "ok" and r.result.commit_ts
            ]
            problems += watch_problems(self.watcher.segments, self.versions_applied, commits)
        # The versions applied are the history every later check judges, collected or not;
        # each replica must store exactly them from its group's collection horizon on.
        chains = self.applied_chains()
        for group_id in self.data_groups():
            horizon = self.gc_horizon(group_id)
            views = {
                node_id: self.versions(self.nodes[node_id], group_id, horizon)
                for node_id in self.shard_map.replicas(group_id)
            }
            first_id, first = next(iter(views.items()))
            for node_id, view in views.items():
                if view != first:
                    problems.append(
                        f"group {group_id}: replicas {first_id} and {node_id} store different "
                        f"versions: {first} vs {view}"
                    )
            for key, stored in first.items():
                applied = _kept_at(chains.get(key, []), horizon)
                if stored != applied:
                    problems.append(
                        f"group {group_id} stores {key!r} as {stored} from its collection "
                        f"horizon {horizon} on, but its replicas applied {applied}"
                    )
        # The truth of every transaction: its coordinator group's decision record.
        expected: dict[tuple[bytes, int], tuple[Write, bytes]] = {}
        records = list(self.workload.records)
        for rec in records:
            res = rec.result
            if res is None or rec.kind == "snapshot" or not res.coordinator:
                continue
            decision = self._decision(res.coordinator, res.txn_id)
            committed = decision is not None and decision.committed
            if res.status == "ok" and res.writes is not None:
                if not committed:
                    problems.append(
                        f"txn {res.txn_id.hex()} acknowledged committed at {res.commit_ts} but "
                        f"its coordinator group {res.coordinator} recorded "
                        f"{'abort' if decision else 'nothing'}"
                    )
                elif decision is not None and decision.commit_ts != res.commit_ts:
                    problems.append(
                        f"txn {res.txn_id.hex()} acknowledged at {res.commit_ts} but decided at "
                        f"{decision.commit_ts}"
                    )
            if res.status == "fail" and committed:
                problems.append(f"txn {res.txn_id.hex()} reported failed ({res.why}) but committed")
            if committed and decision is not None:
                for key, value in res.writes.items():
                    where = (key, decision.commit_ts)
                    other = expected.get(where)
                    if other is not None and other[1] != res.txn_id:
                        # One version per (key, timestamp): one of the two writes is lost
                        # (the dict kept the second alone, found by review).
                        problems.append(
                            f"committed txns {other[1].hex()} and {res.txn_id.hex()} both wrote "
                            f"{key!r} at {decision.commit_ts}"
                        )
                    expected[where] = (value, res.txn_id)
                problems.extend(self._reads_current_at(res, decision.commit_ts, chains))
        for (key, ts), (written, txn_id) in sorted(expected.items(), key=lambda e: e[0]):
            got = self.versions_applied.get(key, {}).get(ts, _NOTHING)
            # An atomic write's operations apply to the value just below (participant rules
            # P5, O4).
            value = written_value(written, _value_below(chains.get(key, []), ts))
            if value is None and got is _NOTHING and _absent_below(chains.get(key, []), ts):
                continue  # a deletion of an absent key writes nothing (participant rule R2)
            if got != value:
                problems.append(
                    f"atomicity: committed txn {txn_id.hex()} wrote {key!r}={value!r} at {ts}, "
                    f"the replicas of its group applied {'nothing' if got is _NOTHING else got!r} "
                    "there"
                )
        # Versions the workload's single-key writes account for (its `check` matched them).
        single = self.workload.single_key_versions
        for key, applied in sorted(self.versions_applied.items()):
            for version, value in sorted(applied.items()):
                if (key, version) not in expected and (key, version) not in single:
                    problems.append(
                        f"atomicity: applied version {key!r}@{version}={value!r} belongs to no "
                        "committed transaction"
                    )
        for rec in records:
            res = rec.result
            if rec.kind in READ_RECORDS and res is not None and res.status == "ok":
                problems.extend(self._reads_at_their_timestamp(res, chains))
        problems += self._real_time_order(records)
        # Parallel commits: a transaction committed the moment its last PREPARE was logged,
        # whoever knew it (txn.coordinator); no abort may be recorded over that.
        for txn_id, (coordinator, participants, groups) in sorted(self.prepares_logged.items()):
            if groups >= participants:
                decision = self._decision(coordinator, txn_id)
                if decision is None or not decision.committed:
                    problems.append(
                        f"parallel commit: every participant {sorted(participants)} logged the "
                        f"PREPARE of txn {txn_id.hex()}, but its coordinator group "
                        f"{coordinator} recorded {'abort' if decision else 'nothing'}"
                    )
        return problems

    @staticmethod
    def _reads_current_at(
        res: TxnResult, commit_ts: int, chains: dict[bytes, list[tuple[int, bytes | None]]]
    ) -> list[str]:
        """Timestamp order: every version a committed txn read is the newest one applied
        just below its commit_ts (the txn could have run at once at commit_ts)."""
        out = []
        for key, (_value, version) in res.reads.items():
            below = [(v, value) for v, value in chains.get(key, []) if v < commit_ts]
            newest = below[0][0] if below else 0
            if version == 0 and below and below[0][1] is None:
                continue  # read absent, deleted at commit_ts: P3 takes 0 as a tombstone
            if newest != version:
                out.append(
                    f"timestamp order: txn {res.txn_id.hex()} committed at {commit_ts} read "
                    f"{key!r} at version {version}, but the newest version below its commit_ts "
                    f"is {newest}"
                )
        return out

    @staticmethod
    def _reads_at_their_timestamp(
        res: TxnResult, chains: dict[bytes, list[tuple[int, bytes | None]]]
    ) -> list[str]:
        """A snapshot at T saw exactly the newest versions <= T applied in the whole run: no
        commit landed at or below a timestamp already served (every read was at or above
        its group's collection horizon when served, so none was collected yet). A plain get
        (no snapshot timestamp) saw a version applied, with that value: what a read through
        a proven commit's intent shows is what its Resolve wrote (node rule 14)."""
        out = []
        for key, read in res.reads.items():
            at = res.snapshot_ts or read[1]
            found = next(((v, val) for v, val in chains.get(key, []) if v <= at), None)
            applied = (None, 0) if found is None else (found[1], found[0])
            if res.snapshot_ts and applied[0] is None:
                applied = (None, 0)  # a snapshot read of a deleted key shows no version
            if applied != read:
                out.append(
                    f"{'snapshot' if res.snapshot_ts else 'plain get'} at {at} "
                    f"(txn {res.txn_id.hex()}) read {key!r} = {read}, but the replicas "
                    f"applied {applied} at that timestamp"
                )
        return out

    @staticmethod
    def _real_time_order(records: list[TxnRecord]) -> list[str]:
        """Real time: a snapshot or transaction invoked after a writing transaction was
        acknowledged must see it: a snapshot reads at or above its commit_ts, a transaction
        reads just below its own commit_ts (`_reads_current_at`), so it commits above it.
        With the other checks, the versions it read are then the ones it must see. Elle
        checks this too for list-append; for the bank and claims it is the only check."""
        acked = sorted(
            (rec.complete, rec.result.commit_ts, rec.result.txn_id)
            for rec in records
            if rec.result is not None
            and rec.result.status == "ok"
            and rec.result.writes
            and rec.result.commit_ts
        )
        completes = [complete for complete, _ts, _txn in acked]
        # newest[i]: the newest commit among the first i + 1 acknowledged.
        newest: list[tuple[int, bytes]] = []
        for _complete, commit_ts, txn_id in acked:
            newest.append(max(newest[-1], (commit_ts, txn_id)) if newest else (commit_ts, txn_id))
        out = []
        for rec in records:
            res = rec.result
            if res is None or res.status != "ok":
                continue
            if rec.kind in ("snapshot", "scan"):
                reads_at = res.snapshot_ts
            elif rec.kind in ("rw", *SINGLE_WRITES) and res.commit_ts:
                # A single-key write's version is above every commit it must follow.
                reads_at = res.commit_ts - 1
            else:
                continue  # a plain get has no timestamp (Elle orders it); an empty txn none
            before = bisect.bisect_left(completes, rec.invoke)
            if before and newest[before - 1][0] > reads_at:
                commit_ts, txn_id = newest[before - 1]
                out.append(
                    f"real time: {rec.kind} {res.txn_id.hex()} invoked at t={rec.invoke:.4f} "
                    f"reads at {reads_at}, below txn {txn_id.hex()} committed at {commit_ts} "
                    "and acknowledged before"
                )
        return out

    def _decision(self, group_id: int, txn_id: bytes) -> Any:
        found = []
        for node_id in self.shard_map.replicas(group_id):
            node = self.nodes[node_id]
            assert node.core is not None
            found.append(node.core.hosts[group_id].shard.decision(txn_id))
        if any(d != found[0] for d in found):
            raise SafetyViolation(
                self._fail_text(f"replicas of group {group_id} disagree on txn {txn_id.hex()}")
            )
        if found[0] is None:  # never recorded, or purged since (rule G1)
            return self.decisions_applied.get((group_id, txn_id))
        return found[0]

    def _result(self) -> ClusterResult:
        # The real client's tasks that ended with an exception nobody retrieved are reported
        # when collected (sim_loop.py): collect now, so that the verdict holds them all.
        gc.collect()
        problems = self.verify()
        if problems:
            shown = "\n  ".join(problems[:20])
            more = f"\n  ... and {len(problems) - 20} more" if len(problems) > 20 else ""
            raise SafetyViolation(self._fail_text(f"{len(problems)} problems:\n  {shown}{more}"))
        # The workload's setup, before the chaos phase, does not count.
        writers = sum(
            1
            for rec in self.workload.records
            if rec.invoke >= self._chaos_start
            and rec.result is not None
            and rec.result.status == "ok"
            and rec.result.writes
        )
        if writers < self.knobs.min_writers:
            raise LivenessViolation(
                self._fail_text(
                    f"too little progress: {writers} writing transactions acknowledged, "
                    f"fewer than the profile's floor of {self.knobs.min_writers}"
                )
            )
        counts = {"ok": 0, "fail": 0, "info": 0}
        for rec in self.workload.records:
            if rec.result is not None:
                counts[rec.result.status] = counts.get(rec.result.status, 0) + 1
        self.world.trace("final", repr([m for m in (self.final.mops if self.final else [])]))
        return ClusterResult(
            digest=self.world.digest(),
            txns=len(self.workload.records),
            ok=counts["ok"],
            failed=counts["fail"],
            info=counts["info"],
            stats=tuple(sorted(self.stats.items())),
            virtual_s=round(self.world.now, 6),
        )


_NOTHING: Any = object()


def _value_below(chain: list[tuple[int, bytes | None]], ts: int) -> bytes | None:
    """The value the key of `chain` (newest first) held just below `ts` (None: absent)."""
    return next((value for v, value in chain if v < ts), None)


def _absent_below(chain: list[tuple[int, bytes | None]], ts: int) -> bool:
    """Whether the key of `chain` (newest first) was absent (deleted or never written)
    just below `ts`."""
    return _value_below(chain, ts) is None


def _kept_at(chain: list[tuple[int, bytes | None]], horizon: int) -> list[tuple[int, bytes | None]]:
    """The versions of `chain` (newest first) a store collected at `horizon` keeps, as
    `ClusterSim.versions` reads them: every one above it and the one visible at it, unless
    that one is a deletion (collection removes it: nothing is visible there)."""
    above = [(v, value) for v, value in chain if v > horizon]
    visible = next(((v, value) for v, value in chain if v <= horizon), None)
    return above if visible is None or visible[1] is None else [*above, visible]


def _at(values: tuple[float, ...], i: int) -> float:
    return values[i] if i < len(values) else 0.0


def _cluster_map(node_ids: list[int], groups: int, keys: int) -> ShardMap:
    """The bootstrap map: `groups` data groups splitting keys k00.. evenly, 3 replicas."""
    nodes = [
        NodeAddress(node_id=n, name=f"n{n}", client_addr=f"sim:{n}", peer_addr=f"sim:{n}")
        for n in node_ids
    ]
    splits = [b"k%02d" % (keys * i // groups) for i in range(1, groups)]
    return bootstrap(nodes, splits, 3)


@dataclass(frozen=True)
class Replay:
    """A run to replay, as `ClusterSim.replay_hint` prints it."""

    workload: str
    profile: str
    seed: int
    real_client: bool = False
    #: `Knobs.node_request_timeout_s` when the run set it (None: as drawn).
    node_request_timeout_s: float | None = None
    #: A watcher ran (`ClusterSim.watch`).
    watch: bool = False

    def __str__(self) -> str:
        """The form `parse_replay` reads."""
        text = f"{self.workload}:{self.profile}:{self.seed}"
        if self.real_client:
            text += ":real"
        if self.watch:
            text += ":watch"
        if self.node_request_timeout_s is not None:
            text += f":nodes={self.node_request_timeout_s:g}"
        return text

    def sim(self) -> ClusterSim:
        return ClusterSim(
            self.workload,
            self.profile,
            self.seed,
            real_client=self.real_client,
            node_request_timeout_s=self.node_request_timeout_s,
            watch=self.watch,
        )


def parse_replay(text: str) -> Replay:
    """`workload:profile:seed[:real][:watch][:nodes=S]` (as printed by a failing run):
    `real`, the clients were the real one (`real_client`); `watch`, a watcher ran;
    `nodes=S`, the nodes' request deadline."""
    workload, profile, seed, *rest = text.split(":")
    real = rest[:1] == ["real"]
    rest = rest[1:] if real else rest
    watch = rest[:1] == ["watch"]
    rest = rest[1:] if watch else rest
    timeout: float | None = None
    if rest[:1] and rest[0].startswith("nodes="):
        timeout = float(rest.pop(0).removeprefix("nodes="))
    if rest:
        raise ValueError(f"expected workload:profile:seed[:real][:watch][:nodes=S], got {text!r}")
    return Replay(workload, profile, int(seed), real, timeout, watch)


def run_cluster(
    workload: str,
    profile: str,
    seed: int,
    mutations: frozenset[str] = frozenset(),
    real_client: bool = False,
    watch: bool = False,
) -> ClusterResult:
    """Build, run and verify one seeded simulation; raises on any violation."""
    return ClusterSim(
        workload, profile, seed, mutations=mutations, real_client=real_client, watch=watch
    ).run()
