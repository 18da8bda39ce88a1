"""The real client in the simulator: `txn.AsyncClient` over `router.client.RoutingClient`,
with only gRPC's channels and streams replaced.

Theory of operation
-------------------
`sim_client.SimTxnClient` is a model of the client's protocol; this module runs the client
itself, so that the whole-cluster properties also judge `txn/commit.py`, `txn/client.py`,
`txn/transaction.py`, `txn/resend.py` and `router/client.py` (routing, NotLeader hints,
map refreshes, the Batch stream's session, silence detection, re-sent copies,
CommitUnknown, settling a lost commit) under the simulator's faults. Each client process is
a `sim_loop.SimLoop` (asyncio in virtual time) with one `AsyncClient`, whose
`RoutingClient` connects with `SimConnection`s: `router.client._Connection`, session and
reader included, over a `SimChannel` and a `SimStub` in place of grpc.aio's.

What the simulated gRPC does, and how it departs from a real one:

- `SimStub.Batch()` opens a `SimStream`: each request written goes to the node as one
  message (`("req", id, 1, bytes)`, as the model's requests do; the node answers each),
  each answer comes back as a one-response batch. A connection's messages are never
  dropped or duplicated and arrive in order (`SimNetwork.send(reliable=True)`); a cut link
  holds them until it works again, and a paused node answers nothing meanwhile: silence,
  which the client must detect (`_SilenceWatch`). So a request may reach its node long
  after the client gave up on it, but never twice: the "purge" profile's late copies
  (`ClusterSim.maybe_copy_late`, a copy delivered again after the retention window) are
  the model's datagrams, not a connection's. (Sent on the real client's streams, they
  applied a one-phase commit whose every copy the nodes had refused, after the client
  had rightly reported it failed: `registers:purge:316`.)
- A node killed (`CrashMode.KILL`: its kernel resets the connections) breaks its streams
  at once and refuses new connections while it is down (`SimChannel`: TRANSIENT_FAILURE,
  so what was queued fails as never sent); a machine that lost power says nothing: its
  streams stay open, what is written to them goes nowhere (silence, which the client must
  detect), a new connection keeps CONNECTING until the connect timeout, and the streams
  break when it restarts (its first answer to the old connection is a reset). A broken
  stream's reader fails with UNAVAILABLE, so its requests in flight fail as possibly sent.
- `SimStub.Status` and `GetShardMap` are answered from the node
  (`shard.server.shard_map_response`, the servicer's code), or raise what grpc.aio raises:
  `AioRpcError` UNAVAILABLE "connection refused" at a killed node, DEADLINE_EXCEEDED when
  no answer comes in time.
- What grpc.aio does and these do not: flow control (a write never waits), `AioRpcError`
  from a write (a reset shows at the reader), and one round trip per write for a whole
  batch (each request is a message of its own, in order on its link).

`RealTxnClient` offers the model's interface to the workloads and records what the real
client concluded, by the client's contract (`txn.errors`): a return is ``ok``; an error
OutcomeUnknown (CommitUnknown included) is ``info``; a Conflict, Unavailable,
TransactionTooOld, a SnapshotTooOld of a snapshot read once the collecting runs' retention
has passed since its timestamp, or a TooManyRetries whose last error is one of those, is
``fail``, a promise that nothing was applied, which the checkers hold it to
(`RealTxnClient._expected_refusal`). Any other error (InvalidArgument, ServerError,
TransactionClosed, a SnapshotTooOld too early...) cannot come from a correct client and
cluster here: it fails the run. (Found so: a snapshot
read below the collection horizon was refused as INVALID_ARGUMENT, which says the request
was malformed; it is SNAPSHOT_TOO_OLD now, `txn.SnapshotTooOld`, retryable.)
Transactions run as one attempt of `client.run` (`max_attempts` 1: the workload's next
operation is the retry), so that a lost commit is settled as `run(settle_unknown=True)`
settles it in the runs with the short deadline.

Client deaths: where a profile kills client processes (`Knobs.client_death`), a process
may die at a random moment in the first `REAL_CLIENT_DEATH_WITHIN_S` of an operation
(`ClientHost.dies_during`; before, during or after its commit), not at the model's named
points: its outcome is ``info``, and what it had sent is left to the nodes' recovery.
Plain gets, snapshot gets and scans outside transactions run the code of
`AsyncClient.get`, `AsyncSnapshot.get` and `scan` one level down (`_get_versioned`,
`_read_at`, `_scan_range`), which keeps the version each read that the public calls drop
and the checkers judge. Every other scan, in a transaction or not, reads its range in
reverse (the nodes' reverse MVCC reads, the client's reverse paging and rule P6's range),
and snapshot scans and scans in transactions read theirs in pages of `PAGE_KEYS` keys
(pages cut by their limit inside a shard, each page of a transaction recording its part of
the range). Not covered: the model's forged Resolves. Transaction ids come
from the world's RNG (`deterministic_txn_ids`), and a transaction's age from the world's
clock (`AsyncClient(monotonic=)`), so that a seed replays.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import random
from collections.abc import Awaitable, Callable, Coroutine, Iterator, Sequence
from typing import TYPE_CHECKING, Any

import grpc
from sim_client import SCAN_LIMIT, Atomic, Body, Leased, TxnResult
from sim_loop import SimLoop
from world import CrashMode

import txn.client as txn_client
from router import kv_pb2 as kv
from router.client import _Connection
from router.watch_lanes import Change
from txn import AsyncClient, AsyncTransaction, AsyncWatch
from txn.errors import (
    Conflict,
    OutcomeUnknown,
    PaxosKVError,
    SnapshotTooOld,
    TooManyRetries,
    TransactionTooOld,
    Unavailable,
)
from txn.hlc import physical_us
from txn.txn_ids import RANDOM_BYTES, txn_id_with_start

if TYPE_CHECKING:
    from cluster_sim import ClientHost

#: Items per page of a scan the real client reads in pages (snapshot scans and scans in
#: transactions): small, so that pages end inside shards.
PAGE_KEYS = 2

__all__ = ["RealTxnClient", "SimWatcher", "deterministic_txn_ids", "watch_problems"]

OnResult = Callable[[TxnResult], None]


@contextlib.contextmanager
def deterministic_txn_ids(rng: random.Random) -> Iterator[None]:
    """Transaction ids' random part from `rng` while the simulation runs (the real client
    draws it from `secrets`, which no seed replays)."""
    real = txn_client.new_txn_id

    def new_txn_id(start_ts: int) -> bytes:
        return txn_id_with_start(start_ts, rng.randbytes(RANDOM_BYTES))

    txn_client.new_txn_id = new_txn_id
    try:
        yield
    finally:
        txn_client.new_txn_id = real


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


def _rpc_error(code: grpc.StatusCode, details: str) -> grpc.aio.AioRpcError:
    return grpc.aio.AioRpcError(code, grpc.aio.Metadata(), grpc.aio.Metadata(), details)


class ClientNet:
    """One client process's side of the simulated network: its calls waiting for answers
    and its open streams."""

    def __init__(self, host: ClientHost, loop: SimLoop) -> None:
        self.host = host
        self.loop = loop
        self.sim = host.sim
        self._answers: dict[int, Callable[[bytes], None]] = {}
        self.streams: list[SimStream] = []
        self._waiting_back: dict[int, list[asyncio.Future[None]]] = {}

    def node_of(self, address: str) -> int:
        return int(address.split(":", 1)[1])

    def up(self, node: int) -> bool:
        return self.sim.nodes[node].up

    def refuses(self, node: int) -> bool:
        """Whether connecting to `node` is refused at once: its process was killed (its
        machine answers with a reset); a machine that lost power answers nothing."""
        host = self.sim.nodes[node]
        return not host.up and host.down_mode == CrashMode.KILL

    def back(self, node: int) -> asyncio.Future[None]:
        """Done when `node` restarts."""
        future: asyncio.Future[None] = self.loop.create_future()
        self._waiting_back.setdefault(node, []).append(future)
        return future

    def send(self, node: int, payload: Callable[[int], tuple[Any, ...]], on_answer: Any) -> None:
        """Send `payload(call_id)` to `node` on a connection (never dropped nor duplicated);
        `on_answer(bytes)` runs in the loop."""
        self.sim.next_call_id += 1
        call_id = self.sim.next_call_id
        self._answers[call_id] = on_answer
        self.sim.world.net.send(self.host.id, node, payload(call_id), reliable=True)

    def receive(self, call_id: int, data: bytes) -> None:
        on_answer = self._answers.pop(call_id, None)
        if on_answer is not None:
            self.loop.call_soon(on_answer, data)

    def node_crashed(self, node: int, mode: str) -> None:
        """A killed process's kernel resets its connections now; a machine that lost power
        says nothing (`node_restarted` resets them)."""
        if mode == CrashMode.KILL:
            self.node_restarted(node)

    def node_restarted(self, node: int) -> None:
        """The node's new process resets every connection its predecessor had."""
        for stream in self.streams:
            if stream.node == node:
                self.loop.call_soon(stream.reset)
        self.streams = [s for s in self.streams if s.node != node]
        for future in self._waiting_back.pop(node, []):
            self.loop.call_soon(_resolve, future)


class SimStream:
    """A Batch stream (grpc.aio's StreamStreamCall, what `_Connection` uses of it)."""

    def __init__(self, net: ClientNet, node: int) -> None:
        self._net = net
        self.node = node
        self._answers: asyncio.Queue[kv.ResponseBatch | BaseException] = asyncio.Queue()
        self._done = False
        net.streams.append(self)

    def done(self) -> bool:
        return self._done

    def cancel(self) -> bool:
        if not self._done:
            self._done = True
            self._answers.put_nowait(asyncio.CancelledError())  # a read then raises it
        return True

    async def write(self, batch: kv.RequestBatch) -> None:
        if self._done:
            raise asyncio.InvalidStateError("the RPC has already finished")  # as grpc.aio
        for request in batch.requests:
            data = request.SerializeToString()
            self._net.send(self.node, lambda call_id, d=data: ("req", call_id, 1, d), self._answer)

    async def read(self) -> kv.ResponseBatch:
        item = await self._answers.get()
        if isinstance(item, BaseException):
            self._done = True
            raise item
        return item

    def _answer(self, data: bytes) -> None:
        if not self._done:
            self._answers.put_nowait(kv.ResponseBatch(responses=[kv.Response.FromString(data)]))

    def reset(self) -> None:
        if not self._done:
            self._answers.put_nowait(_rpc_error(grpc.StatusCode.UNAVAILABLE, "Socket closed"))


class SimChannel:
    """What `_Connection` uses of a grpc.aio channel: READY while the node is up; while it
    is down, TRANSIENT_FAILURE if its process was killed (connections refused), and if its
    machine lost power READY for a channel connected before (nothing tells the client, as
    gRPC's keepalive takes longer than these outages) or CONNECTING for a new one, until
    the node restarts or the caller's connect timeout ends the wait."""

    def __init__(self, net: ClientNet, node: int) -> None:
        self._net = net
        self._node = node
        self._connected = False

    def get_state(self, try_to_connect: bool = False) -> grpc.ChannelConnectivity:
        if self._net.up(self._node):
            self._connected = True
            return grpc.ChannelConnectivity.READY
        if self._net.refuses(self._node):
            self._connected = False
            return grpc.ChannelConnectivity.TRANSIENT_FAILURE
        if self._connected:
            return grpc.ChannelConnectivity.READY
        return grpc.ChannelConnectivity.CONNECTING

    async def wait_for_state_change(self, last_observed_state: Any) -> None:
        if self.get_state() is last_observed_state:
            await self._net.back(self._node)

    async def close(self) -> None:
        pass


class SimStub:
    """The calls of `kv_pb2_grpc.KVStub` the routing client makes."""

    def __init__(self, net: ClientNet, node: int) -> None:
        self._net = net
        self._node = node

    def Batch(self) -> SimStream:
        return SimStream(self._net, self._node)

    async def Status(self, request: kv.StatusRequest, timeout: float) -> kv.StatusResponse:
        return kv.StatusResponse.FromString(await self._call("Status", request, timeout))

    async def GetShardMap(self, request: kv.ShardMapRequest, timeout: float) -> kv.ShardMapResponse:
        return kv.ShardMapResponse.FromString(await self._call("GetShardMap", request, timeout))

    async def _call(self, method: str, request: Any, timeout: float) -> bytes:
        net = self._net
        if net.refuses(self._node):
            raise _rpc_error(grpc.StatusCode.UNAVAILABLE, "failed to connect: Connection refused")
        answer: asyncio.Future[bytes] = net.loop.create_future()

        def done(data: bytes) -> None:
            if not answer.done():
                answer.set_result(data)

        data = request.SerializeToString()
        net.send(self._node, lambda call_id: ("unary", call_id, method, data), done)
        try:
            return await asyncio.wait_for(answer, timeout)
        except TimeoutError:
            raise _rpc_error(grpc.StatusCode.DEADLINE_EXCEEDED, "Deadline Exceeded") from None


class SimConnection(_Connection):
    """`_Connection` over a `SimChannel` and a `SimStub`."""

    def __init__(self, address: str, attempt_timeout_s: float, net: ClientNet) -> None:
        self._net = net
        super().__init__(address, (), None, attempt_timeout_s)

    def _open(self, options: Sequence[tuple[str, Any]], credentials: Any) -> tuple[Any, Any]:
        node = self._net.node_of(self.address)
        return SimChannel(self._net, node), SimStub(self._net, node)


class RealTxnClient:
    """One client process running `AsyncClient`, with the model's interface."""

    def __init__(self, host: ClientHost, commit_timeout_s: float, settle_unknown: bool) -> None:
        self.host = host
        self.errors = host.sim.real_client_errors
        self.loop = SimLoop(host.world, self.errors)
        self.net = ClientNet(host, self.loop)
        world = host.world
        self.client = AsyncClient(
            [n.client_addr for n in host.shard_map.nodes.values()],
            cluster_id=host.cluster_id,
            timeout_s=commit_timeout_s,
            max_attempts=1,
            rng=random.Random(world.rng.getrandbits(64)),
            wall_ns=host.wall_ns,
            monotonic=lambda: world.now,
            tls=None,
            settle_unknown=settle_unknown,
        )
        self._scans = itertools.count()  # every other scan reads its range in reverse
        routing = self.client.routing

        def connect(address: str) -> _Connection:
            return SimConnection(address, routing._attempt_timeout_s, self.net)

        routing._new_connection = connect  # type: ignore[method-assign]

    def kill(self) -> None:
        """The process dies: nothing it started runs on, nothing it waits for arrives."""
        self.loop.kill()

    @property
    def commit_timeout_s(self) -> float:
        return self.client._timeout_s

    def background_done(self) -> bool:
        """Whether the work `AsyncClient` does after answering (the Resolves after a
        commit, the releases after an abort) is over."""
        return not self.client._tasks

    # ------------------------------------------------------------------ operations

    def transaction(
        self,
        keys: list[bytes],
        body: Body,
        done: OnResult,
        scans: Sequence[tuple[bytes, bytes]] = (),
    ) -> None:
        attempt = _Attempt()

        def died() -> TxnResult:
            return attempt.described(TxnResult(txn_id=b"", status="info"))

        self._start(lambda: self._transaction(attempt, keys, body, scans), done, died)

    def snapshot(self, keys: list[bytes], done: OnResult) -> None:
        self._start(lambda: self._snapshot(keys), done)

    def get(self, key: bytes, done: OnResult) -> None:
        self._start(lambda: self._get(key), done)

    def put(self, key: bytes, value: bytes, done: OnResult, ttl_ms: int = 0) -> None:
        self._start(
            lambda: self._write(key, value, self.client.put(key, value, ttl_s=_ttl_s(ttl_ms))),
            done,
            lambda: _unknown_write(key, value),
        )

    def delete(self, key: bytes, done: OnResult) -> None:
        self._start(
            lambda: self._write(key, None, self.client.delete(key)),
            done,
            lambda: _unknown_write(key, None),
        )

    def cas(
        self,
        key: bytes,
        done: OnResult,
        *,
        expected_value: bytes | None = None,
        expected_version: int = 0,
        new_value: bytes | None = None,
        ttl_ms: int = 0,
    ) -> None:
        """As the model's: expect `expected_value`, else `expected_version` when not 0, else
        the key absent; write `new_value` (living `ttl_ms`, if any), or delete when None."""
        if expected_value is not None:
            condition: dict[str, Any] = {"expected_value": expected_value}
        elif expected_version:
            condition = {"expected_version": expected_version}
        else:
            condition = {"expect_absent": True}
        self._start(
            lambda: self._cas(key, condition, new_value, ttl_ms),
            done,
            lambda: _unknown_write(key, new_value),
        )

    def touch(self, key: bytes, version: int, ttl_ms: int, done: OnResult) -> None:
        """As the model's: a renewal of `version`'s time to live; writes nothing."""
        self._start(lambda: self._touch(key, version, ttl_ms), done)

    def scan(self, ranges: Sequence[tuple[bytes, bytes]], done: OnResult, snapshot: bool) -> None:
        self._start(lambda: self._scan(ranges, snapshot), done)

    def _start(
        self,
        work: Callable[[], Coroutine[Any, Any, TxnResult]],
        done: OnResult,
        died: Callable[[], TxnResult] = lambda: TxnResult(txn_id=b"", status="info"),
    ) -> None:
        """Run `work()` in the process; it may die meanwhile (`host.dies_during`): then the
        outcome is `died()`, ``info`` with what the operation may have written."""
        running = [True]

        world = self.host.world

        def finished(task: asyncio.Task[TxnResult]) -> None:
            running[0] = False
            # As a world event: an error of the harness then stops the run where it is.
            world.schedule(world.now, done, task.result())

        self.loop.call_soon(lambda: self.loop.create_task(work()).add_done_callback(finished))
        dies_in = self.host.dies_during()
        if dies_in is not None:
            world.schedule(world.now + dies_in, self._die, running, done, died)

    def _die(self, running: list[bool], done: OnResult, died: Callable[[], TxnResult]) -> None:
        if self.loop.dead or not running[0]:
            return  # it finished first (or the process died of something else)
        self.kill()
        self.host.sim.stats_add("client_died@random")
        result = died()
        result.why = "the client process died"
        done(result)

    async def _transaction(
        self,
        attempt: _Attempt,
        keys: list[bytes],
        body: Body,
        scans: Sequence[tuple[bytes, bytes]],
    ) -> TxnResult:
        """One attempt of `client.run` (`max_attempts` 1: the workload's next operation is
        the retry), so that a lost commit is settled as `run` settles it."""

        async def work(tx: AsyncTransaction) -> None:
            attempt.tx = tx
            values = attempt.values
            for start, end in scans:
                values.update(await self._scan_in_pages(tx, start, end))
            for key in keys:
                if key not in values:
                    values[key] = await tx.get(key)
            for key, value in body(values).items():
                if isinstance(value, Atomic):
                    for op, operand in value.ops:
                        tx.atomic(key, op, operand)
                elif isinstance(value, Leased):
                    tx.put(key, value.value, ttl_s=_ttl_s(value.ttl_ms))
                elif value is None:
                    tx.delete(key)
                else:
                    tx.put(key, value)

        result = TxnResult(txn_id=b"")
        try:
            await self.client.run(work)
        except PaxosKVError as exc:
            self._concluded(result, exc)
        else:
            assert attempt.tx is not None and attempt.tx.commit_ts is not None
            result.status, result.commit_ts = "ok", attempt.tx.commit_ts
        return attempt.described(result)

    async def _snapshot(self, keys: list[bytes]) -> TxnResult:
        result = TxnResult(txn_id=b"")
        snap = self.client.snapshot()
        try:
            result.snapshot_ts = await snap.timestamp()
            for key in keys:
                result.reads[key] = await self.client._read_at(key, result.snapshot_ts)
        except PaxosKVError as exc:
            return self._concluded(result, exc)
        result.status = "ok"
        return result

    async def _get(self, key: bytes) -> TxnResult:
        result = TxnResult(txn_id=b"")
        try:
            result.reads[key] = await self.client._get_versioned(key)
        except PaxosKVError as exc:
            return self._concluded(result, exc)
        result.status = "ok"
        return result

    async def _write(self, key: bytes, value: bytes | None, write: Awaitable[int]) -> TxnResult:
        """A single-key Put or Delete."""
        result = TxnResult(txn_id=b"")
        try:
            version = await write
        except PaxosKVError as exc:
            return self._concluded(result, exc, {key: value})
        result.status, result.commit_ts = "ok", version
        result.writes = {key: value} if version else {}  # a delete of an absent key: nothing
        return result

    async def _cas(
        self, key: bytes, condition: dict[str, Any], new_value: bytes | None, ttl_ms: int
    ) -> TxnResult:
        result = TxnResult(txn_id=b"")
        action: dict[str, Any] = {"delete": True}
        if new_value is not None:
            action = {"new_value": new_value, "ttl_s": _ttl_s(ttl_ms)}
        try:
            answer = await self.client.cas(key, **condition, **action)
        except PaxosKVError as exc:
            return self._concluded(result, exc, {key: new_value})
        if not answer.succeeded:
            result.reads[key] = (answer.current_value, answer.current_version)
            result.status, result.why = "fail", "compare-and-set: the comparison failed"
            return result
        result.status, result.commit_ts = "ok", answer.version
        result.writes = {key: new_value}
        return result

    async def _touch(self, key: bytes, version: int, ttl_ms: int) -> TxnResult:
        result = TxnResult(txn_id=b"")
        try:
            answer = await self.client.cas(
                key, expected_version=version, touch=True, ttl_s=_ttl_s(ttl_ms)
            )
        except PaxosKVError as exc:
            return self._concluded(result, exc, {})
        if not answer.succeeded:
            result.reads[key] = (answer.current_value, answer.current_version)
            result.status, result.why = "fail", "touch: the key no longer holds that version"
            return result
        result.status = "ok"  # no commit: the version it names is the one it kept
        result.expires_at = answer.expires_at
        return result

    async def _scan(self, ranges: Sequence[tuple[bytes, bytes]], snapshot: bool) -> TxnResult:
        """`client.scan` (each shard's part linearizable) or a snapshot's `scan`, through
        `_scan_range`, the code both run, for the versions they drop."""
        result = TxnResult(txn_id=b"")
        try:
            await self.client.connect()
            shard_map = self.client._map()
            result.scanned = tuple(
                (lo, hi)
                for start, end in ranges
                for _d, lo, hi in shard_map.split_range(start, end)
            )
            if snapshot:
                result.snapshot_ts = await self.client.snapshot().timestamp()
            for start, end in ranges:
                result.reads.update(await self._scan_versions(start, end, result.snapshot_ts))
        except PaxosKVError as exc:
            return self._concluded(result, exc)
        result.status = "ok"
        return result

    def _reverse_next(self) -> bool:
        """Whether the next scan reads its range from the end down (every other one)."""
        return next(self._scans) % 2 == 1

    async def _scan_in_pages(
        self, tx: AsyncTransaction, start: bytes, end: bytes
    ) -> dict[bytes, bytes]:
        """Every key of [start, end) by `tx.scan`s of PAGE_KEYS items each, as a caller
        paging through a range does: each page cut by its limit, so the transaction records
        each page's part of the range (rule P6), in key order or in reverse."""
        reverse = self._reverse_next()
        out: dict[bytes, bytes] = {}
        while True:
            page = await tx.scan(start, end, PAGE_KEYS, reverse=reverse)
            out.update(page)
            if len(page) < PAGE_KEYS:
                return out
            if reverse:
                end = page[-1][0]
            else:
                start = page[-1][0] + b"\x00"

    async def _scan_versions(
        self, start: bytes, end: bytes, snapshot_ts: int
    ) -> dict[bytes, tuple[bytes, int]]:
        """Every key of [start, end) with its version, by `_scan_range`: a snapshot scan
        (`snapshot_ts` > 0) in pages of PAGE_KEYS, each page cut by its limit inside a
        shard and the next begun where the last one stopped, in key order or in reverse;
        a plain scan in one call (a part paged at two moments would show its group at no
        one version, which the checker holds each part to)."""
        reverse = self._reverse_next()
        limit = PAGE_KEYS if snapshot_ts else SCAN_LIMIT
        out: dict[bytes, tuple[bytes, int]] = {}
        while True:
            items, resume = await self.client._scan_range(
                start, end, limit, reverse=reverse, at_ts=snapshot_ts
            )
            out.update((k, (v, version)) for k, v, version in items)
            if resume is None:
                return out
            if reverse:
                end = resume
            else:
                start = resume

    def _concluded(
        self,
        result: TxnResult,
        exc: PaxosKVError,
        writes: dict[bytes, bytes | None] | None = None,
    ) -> TxnResult:
        """`result` of an operation that raised `exc`, by the client's contract (the
        module docstring); `writes`: what a single-key write may have applied. An error no
        correct run may give is kept in `errors` (the run fails) and is ``info``, claiming
        nothing."""
        result.why = f"{type(exc).__name__}: {exc}"
        if exc.maybe_committed and writes is not None:
            result.writes = writes
        if isinstance(exc, OutcomeUnknown):  # CommitUnknown too
            result.status = "info"
        elif self._expected_refusal(exc, result.snapshot_ts):
            result.status = "fail"
        else:
            result.status = "info"
            self.errors.append(f"an operation raised what no correct run may: {result.why}")
        return result

    def _expected_refusal(self, exc: PaxosKVError, read_at: int) -> bool:
        """Whether `exc` is a refusal (nothing applied) a correct client and cluster may
        give here: a conflict, no leader or no answer in time, a transaction too old, and
        a snapshot too old for a read at `read_at` only once the retention has passed."""
        if isinstance(exc, TooManyRetries):
            return self._expected_refusal(exc.last_error, read_at)
        if isinstance(exc, SnapshotTooOld):
            return read_at > 0 and self._retention_passed(read_at)
        return isinstance(exc, (Conflict, Unavailable, TransactionTooOld))

    def _retention_passed(self, ts: int) -> bool:
        """Whether a node may have collected below `ts` by now: its collection horizon is at
        most its wall clock minus the retention, and the clocks of this client, the node
        that gave `ts` and the one that refused it are within the maximum offset."""
        settings = self.host.sim.knobs.txn
        age_s = self.host.wall_ns() / 1e9 - physical_us(ts) / 1e6  # by this client's clock
        return age_s >= settings.mvcc_retention_s - 3 * settings.max_clock_offset_s - 0.001


class _Attempt:
    """The transaction `client.run` gave the body, and the values the body read."""

    def __init__(self) -> None:
        self.tx: AsyncTransaction | None = None
        self.values: dict[bytes, bytes | None] = {}

    def described(self, result: TxnResult) -> TxnResult:
        """`result` with what the transaction read, wrote and sent its commit to."""
        tx = self.tx
        if tx is None:
            return result  # run() had not begun it: nothing read, nothing sent
        result.txn_id = tx.txn_id
        read_set = tx.read_set
        result.reads = {k: (v, read_set[k]) for k, v in self.values.items() if k in read_set}
        if tx.ref is None:
            return result  # no commit request was sent: nothing can be applied
        result.writes = {
            **tx.write_set,
            **{key: Atomic(tuple(ops)) for key, ops in tx.atomic_ops.items()},
        }
        result.coordinator = tx.ref.group_id
        result.participants = tuple(tx._participants)
        result.one_phase = len(tx._participants) == 1
        return result


def _unknown_write(key: bytes, value: bytes | None) -> TxnResult:
    """A single-key write whose process died: it may have been applied."""
    return TxnResult(txn_id=b"", status="info", writes={key: value})


#: The watcher's progress interval (virtual seconds): long enough that most rounds are
#: started by a shard's answer to a wait for a change, short enough that a lost wait shows.
WATCH_PROGRESS_S = 0.3
#: Changes per page the watcher asks for: small, so its rounds read lanes cut into pages
#: (and at once), as a watch of a busy range does with the default thousand.
WATCH_PAGE_CHANGES = 2
#: Set to "1": the watcher's watch reads on through outages itself (`resume=True`) instead of
#: being started again from `through` after an Unavailable, its segments unbroken by them.
WATCH_RESUME_ENV = "PAXOSKV_SIM_WATCH_RESUME"


class WatchSegment:
    """An unbroken stretch of a watch: every change above `start` up to its watch's
    `through`, as delivered (a SnapshotTooOld ends it; an Unavailable one resumes it)."""

    def __init__(self, start: int, started_at: float) -> None:
        self.start = start
        #: World time when `start()` returned: a write invoked after it lands above `start`.
        self.started_at = started_at
        self.changes: list[Change] = []
        self.watch: AsyncWatch | None = None
        self.resumed = 0  # new watches started from its `through` after an Unavailable
        self.read_again = 0  # reads again by a `resume` watch itself, over all its watches

    @property
    def through(self) -> int:
        through = None if self.watch is None else self.watch.through
        return self.start if through is None else through


class SimWatcher:
    """A client process that watches every key for the whole run (the real `AsyncWatch`)
    and keeps what it delivers, for `ClusterSim.verify`: each segment must hold every
    version applied in (start, through], once each, in (version, key) order."""

    def __init__(self, host: ClientHost) -> None:
        assert isinstance(host.client, RealTxnClient)
        self.host = host
        self.real = host.client
        self.sim = host.sim
        self.segments: list[WatchSegment] = []

    def start(self) -> None:
        loop = self.real.loop
        loop.call_soon(lambda: loop.create_task(self._run()))

    def stop(self) -> None:
        self.real.kill()

    @property
    def through(self) -> int:
        """Every change up to this version is delivered (0 before the watch started)."""
        return self.segments[-1].through if self.segments else 0

    async def _run(self) -> None:
        segment: WatchSegment | None = None
        resume = os.environ.get(WATCH_RESUME_ENV) == "1"
        while True:
            after = None if segment is None else segment.through
            watch = self.real.client.watch(
                b"", None, after=after, progress_s=WATCH_PROGRESS_S, prev_values=True, resume=resume
            )
            watch._page_changes = WATCH_PAGE_CHANGES
            counted = 0  # this watch's reads again already added to the segment
            try:
                start = await watch.start()
                if segment is None:
                    segment = WatchSegment(start, self.sim.world.now)
                    self.segments.append(segment)
                segment.watch = watch
                async for batch in watch:
                    segment.changes.extend(batch)
                    if watch.resumed > counted:
                        self.sim.stats_add("watch_read_again", watch.resumed - counted)
                        segment.read_again += watch.resumed - counted
                        counted = watch.resumed
            except Unavailable:  # DeadlineExceeded too: resume where it stopped
                self.sim.stats_add("watch_resumed")
                if segment is not None:
                    segment.resumed += 1
            except SnapshotTooOld:  # fell behind the collection: a new segment from now
                self.sim.stats_add("watch_too_old")
                segment = None
            except PaxosKVError as exc:
                self.sim.real_client_errors.append(f"the watch raised {exc!r}")
                return


def watch_problems(
    segments: list[WatchSegment],
    versions_applied: dict[bytes, dict[int, bytes | None]],
    commits: list[tuple[float, int]],
) -> list[str]:
    """Each segment's changes against every version any replica applied in its window,
    each change's previous value against the version before it, and the segment's start
    against `commits` ((invoked at, commit timestamp) of every write the client was told
    committed): one invoked after the start was fixed lands above it."""
    problems = []
    for n, segment in enumerate(segments):
        below = [
            ts for invoked, ts in commits if invoked > segment.started_at and ts <= segment.start
        ]
        if below:
            problems.append(
                f"watch segment {n}: {len(below)} writes invoked after its start was fixed "
                f"committed at or below it ({segment.start}), e.g. at {below[0]}"
            )
        got = [(c.version, c.key, c.value) for c in segment.changes]
        if got != sorted(set(got)):
            problems.append(f"watch segment {n}: changes out of order or repeated")
        want = sorted(
            (version, key, value)
            for key, applied in versions_applied.items()
            for version, value in applied.items()
            if segment.start < version <= segment.through
        )
        if got != want:
            missing = sorted(set(want) - set(got))[:3]
            extra = sorted(set(got) - set(want))[:3]
            problems.append(
                f"watch segment {n} (start {segment.start}, through {segment.through}, "
                f"resumed {segment.resumed}x, read again {segment.read_again}x): missing "
                f"{missing}, not applied {extra}"
            )
        wrong = [
            (c.version, c.key, (c.prev_version, c.prev_value), held)
            for c in segment.changes
            if (c.prev_version, c.prev_value) != (held := _held_before(versions_applied, c))
        ]
        if wrong:
            problems.append(
                f"watch segment {n}: {len(wrong)} changes with a wrong previous value, e.g. "
                f"(version, key, got, applied before) {wrong[:3]}"
            )
    return problems


def _held_before(
    versions_applied: dict[bytes, dict[int, bytes | None]], change: Change
) -> tuple[int, bytes | None]:
    """(version, value) of what `change.key` held just before `change` ((0, None): none)."""
    applied = versions_applied.get(change.key, {})
    older = [v for v in applied if v < change.version]
    if not older or applied[max(older)] is None:
        return 0, None
    return max(older), applied[max(older)]


def _ttl_s(ttl_ms: int) -> float | None:
    """The `ttl_s` a client call takes for the model's `ttl_ms` (0: none)."""
    return ttl_ms / 1000 if ttl_ms else None
