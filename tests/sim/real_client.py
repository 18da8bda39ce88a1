"""The real client in the simulator: `txn.AsyncClient` over `router.client.RoutingClient`,
with only gRPC replaced.

Theory of operation
-------------------
`sim_client.SimTxnClient` is a model of the client's protocol; this module runs the client
itself, so that the whole-cluster properties also judge `txn/commit.py`, `txn/client.py`,
`txn/transaction.py`, `txn/resend.py` and `router/client.py` (routing, NotLeader hints,
map refreshes, silence detection, re-sent copies, CommitUnknown) under the simulator's
faults. Each client process is a `sim_loop.SimLoop` (asyncio in virtual time) with one
`AsyncClient` whose `RoutingClient` makes `SimConnection`s instead of gRPC channels:

- a `SimConnection` is `router.client._Connection` with its stream session replaced: every
  request written goes to the node as one simulated message (`("req", id, 1, bytes)`, as
  the model's requests do), and every answer comes back through `_take_answers`, the code
  the gRPC reader runs. The network may drop, delay, duplicate and reorder them (a
  connection that loses a message looks like a silent node, which the real client must
  detect); a node that crashes breaks its streams (their requests in flight fail as
  possibly sent) and refuses new ones while it is down (nothing was sent);
- `SimStub` answers the unary calls the routing client makes (`Status`, `GetShardMap`) from
  the node (`shard.server.shard_map_response`, the servicer's code), or raises what
  grpc.aio raises: `AioRpcError` UNAVAILABLE "connection refused" at a node that is down,
  DEADLINE_EXCEEDED when no answer comes in time.

`RealTxnClient` offers the model's interface to the workloads (`transaction`, `snapshot`,
`get`) and records what the real client concluded, by the client's contract: a commit
that returned is ``ok`` at its timestamp; `CommitUnknown` is ``info``; any other error is
``fail``, a promise that the transaction did not commit, which the checkers hold it to.

Client deaths: where a profile kills client processes (`Knobs.client_death`), a process
may die at a random moment of a transaction (`ClientHost.dies_during`), not at the
model's named points: its outcome is ``info``, and what it had sent is left to the nodes'
recovery. Plain gets, snapshot gets and scans outside transactions run the code of
`AsyncClient.get`, `AsyncSnapshot.get` and `scan` one level down (`_get_versioned`,
`_read_at`, `_scan_range`), which keeps the version each read that the public calls drop
and the checkers judge. Not covered: the model's forged Resolves.
Transaction ids come from the world's RNG (`deterministic_txn_ids`) so that a seed
replays.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import Awaitable, Callable, Coroutine, Iterator, Sequence
from typing import TYPE_CHECKING, Any

import grpc
from sim_client import SCAN_LIMIT, Body, TxnResult
from sim_loop import SimLoop

import txn.client as txn_client
from router import kv_pb2 as kv
from router.client import ClientClosed, RoutingClient, _Connection, _take_write
from txn import AsyncClient, AsyncTransaction
from txn.errors import CommitUnknown, OutcomeUnknown, PaxosKVError
from txn.txn_ids import RANDOM_BYTES, txn_id_with_start

if TYPE_CHECKING:
    from cluster_sim import ClientHost

__all__ = ["RealTxnClient", "deterministic_txn_ids"]

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


def _rpc_error(code: grpc.StatusCode, details: str) -> grpc.aio.AioRpcError:
    return grpc.aio.AioRpcError(code, grpc.aio.Metadata(), grpc.aio.Metadata(), details)


class ClientNet:
    """One client process's side of the simulated network: its calls waiting for answers."""

    def __init__(self, host: ClientHost, loop: SimLoop) -> None:
        self.host = host
        self.loop = loop
        self.sim = host.sim
        self._answers: dict[int, Callable[[bytes], None]] = {}
        self.connections: list[SimConnection] = []

    def node_of(self, address: str) -> int:
        return int(address.split(":", 1)[1])

    def node_up(self, node: int) -> bool:
        return self.sim.nodes[node].up

    def send(self, node: int, payload: Callable[[int], tuple[Any, ...]], on_answer: Any) -> None:
        """Send `payload(call_id)` to `node`; `on_answer(bytes)` runs in the loop."""
        self.sim.next_call_id += 1
        call_id = self.sim.next_call_id
        self._answers[call_id] = on_answer
        self.sim.world.net.send(self.host.id, node, payload(call_id))

    def receive(self, call_id: int, data: bytes) -> None:
        on_answer = self._answers.pop(call_id, None)
        if on_answer is not None:
            self.loop.run_soon(on_answer, data)

    def node_crashed(self, node: int) -> None:
        """The node's process died: its streams break, as a kill's reset reaches us."""
        for conn in self.connections:
            if conn.node == node:
                self.loop.run_soon(conn.broken)


class SimStub:
    """The unary calls of `kv_pb2_grpc.KVStub` the routing client makes."""

    def __init__(self, net: ClientNet, node: int) -> None:
        self._net = net
        self._node = node

    async def Status(self, request: kv.StatusRequest, timeout: float) -> kv.StatusResponse:
        return kv.StatusResponse.FromString(await self._call("Status", request, timeout))

    async def GetShardMap(self, request: kv.ShardMapRequest, timeout: float) -> kv.ShardMapResponse:
        return kv.ShardMapResponse.FromString(await self._call("GetShardMap", request, timeout))

    async def _call(self, method: str, request: Any, timeout: float) -> bytes:
        net = self._net
        if not net.node_up(self._node):
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


class _SimChannel:
    async def close(self) -> None:
        pass


class SimConnection(_Connection):
    """`_Connection` whose stream is the simulated network (see the module docstring)."""

    def __init__(self, address: str, attempt_timeout_s: float, net: ClientNet) -> None:
        self._net = net
        self.node = net.node_of(address)
        super().__init__(address, (), None, attempt_timeout_s)
        net.connections.append(self)

    def _open(self, options: Sequence[tuple[str, Any]], credentials: Any) -> tuple[Any, Any]:
        return _SimChannel(), SimStub(self._net, self.node)

    def broken(self) -> None:
        self._fail_inflight("the stream broke (the node closed the connection)")

    async def _run(self) -> None:
        self.sessions += 1
        try:
            while True:
                await self._wake.wait()
                self._wake.clear()
                if not self._queue:
                    continue
                if not self._net.node_up(self.node):
                    self._fail_queued("cannot connect (connection refused or node down)")
                    continue
                batch, self._queue = _take_write(self._queue)
                if self._queue:
                    self._wake.set()
                calls = [c for c in batch if not (c.abandoned or c.future.done())]
                for call in calls:
                    call.sent = True
                    self._inflight[call.request.id] = call
                    data = call.request.SerializeToString()
                    self._net.send(
                        self.node, lambda call_id, d=data: ("req", call_id, 1, d), self._answer
                    )
                if calls:
                    self.messages_out += 1
                    self.requests_out += len(calls)
        except asyncio.CancelledError:
            self._fail_all(ClientClosed("the client is closed"))
            raise

    def _answer(self, data: bytes) -> None:
        self._take_answers(kv.ResponseBatch(responses=[kv.Response.FromString(data)]))


class SimRoutingClient(RoutingClient):
    """A RoutingClient whose connections are `SimConnection`s."""

    def __init__(self, net: ClientNet, **kwargs: Any) -> None:
        self._net = net
        super().__init__(**kwargs)

    def _new_connection(self, address: str) -> _Connection:
        return SimConnection(address, self._attempt_timeout_s, self._net)


class RealTxnClient:
    """One client process running `AsyncClient`, with the model's interface."""

    def __init__(self, host: ClientHost, commit_timeout_s: float, settle_unknown: bool) -> None:
        self.host = host
        self.loop = SimLoop(host.world)
        self.net = ClientNet(host, self.loop)
        rng = random.Random(host.world.rng.getrandbits(64))
        seeds = [n.client_addr for n in host.shard_map.nodes.values()]
        self.client = AsyncClient(
            seeds,
            cluster_id=host.cluster_id,
            timeout_s=commit_timeout_s,
            max_attempts=1,
            rng=rng,
            wall_ns=host.wall_ns,
            settle_unknown=settle_unknown,
        )
        self.client._routing = SimRoutingClient(
            self.net,
            seeds=seeds,
            cluster_id=host.cluster_id,
            timeout_s=commit_timeout_s,
            rng=rng,
            tls=None,
        )

    def kill(self) -> None:
        """The process dies: nothing it started runs on, nothing it waits for arrives."""
        self.loop.kill()

    @property
    def errors(self) -> list[str]:
        return self.loop.errors

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

    def put(self, key: bytes, value: bytes, done: OnResult) -> None:
        self._start(
            lambda: self._write(key, value, self.client.put(key, value)),
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
    ) -> None:
        """As the model's: expect `expected_value`, else `expected_version` when not 0, else
        the key absent; write `new_value`, or delete when None."""
        if expected_value is not None:
            condition: dict[str, Any] = {"expected_value": expected_value}
        elif expected_version:
            condition = {"expected_version": expected_version}
        else:
            condition = {"expect_absent": True}
        self._start(
            lambda: self._cas(key, condition, new_value),
            done,
            lambda: _unknown_write(key, new_value),
        )

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

        def finished(task: asyncio.Task[TxnResult]) -> None:
            running[0] = False
            done(task.result())

        self.loop.run_soon(lambda: self.loop.create_task(work()).add_done_callback(finished))
        dies_in = self.host.dies_during()
        if dies_in is not None:
            self.host.world.schedule(
                self.host.world.now + dies_in, self._die, self.loop.life, running, done, died
            )

    def _die(
        self, life: int, running: list[bool], done: OnResult, died: Callable[[], TxnResult]
    ) -> None:
        if life != self.loop.life or not running[0]:
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
                values.update(await tx.scan(start, end, limit=SCAN_LIMIT))
            for key in keys:
                if key not in values:
                    values[key] = await tx.get(key)
            for key, value in body(values).items():
                if value is None:
                    tx.delete(key)
                else:
                    tx.put(key, value)

        result = TxnResult(txn_id=b"")
        try:
            await self.client.run(work)
        except CommitUnknown as exc:
            result.status, result.why = "info", str(exc)
        except PaxosKVError as exc:
            _failed(result, exc)
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
            return _failed(result, exc)
        result.status = "ok"
        return result

    async def _get(self, key: bytes) -> TxnResult:
        result = TxnResult(txn_id=b"")
        try:
            result.reads[key] = await self.client._get_versioned(key)
        except PaxosKVError as exc:
            return _failed(result, exc)
        result.status = "ok"
        return result

    async def _write(self, key: bytes, value: bytes | None, write: Awaitable[int]) -> TxnResult:
        """A single-key Put or Delete: ``info`` on OutcomeUnknown, ``fail`` on any other
        error (nothing was applied, by the client's contract)."""
        result = TxnResult(txn_id=b"")
        try:
            version = await write
        except OutcomeUnknown as exc:
            result.status, result.why, result.writes = "info", str(exc), {key: value}
            return result
        except PaxosKVError as exc:
            return _failed(result, exc)
        result.status, result.commit_ts = "ok", version
        result.writes = {key: value} if version else {}  # a delete of an absent key: nothing
        return result

    async def _cas(
        self, key: bytes, condition: dict[str, Any], new_value: bytes | None
    ) -> TxnResult:
        result = TxnResult(txn_id=b"")
        action: dict[str, Any] = {"delete": True} if new_value is None else {"new_value": new_value}
        try:
            answer = await self.client.cas(key, **condition, **action)
        except OutcomeUnknown as exc:
            result.status, result.why, result.writes = "info", str(exc), {key: new_value}
            return result
        except PaxosKVError as exc:
            return _failed(result, exc)
        if not answer.succeeded:
            result.reads[key] = (answer.current_value, answer.current_version)
            result.status, result.why = "fail", "compare-and-set: the comparison failed"
            return result
        result.status, result.commit_ts = "ok", answer.version
        result.writes = {key: new_value}
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
                items, _ = await self.client._scan_range(
                    start, end, SCAN_LIMIT, at_ts=result.snapshot_ts
                )
                result.reads.update((k, (v, version)) for k, v, version in items)
        except PaxosKVError as exc:
            return _failed(result, exc)
        result.status = "ok"
        return result


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
        result.writes = tx.write_set
        result.coordinator = tx.ref.group_id
        result.participants = tuple(tx._participants)
        result.one_phase = len(tx._participants) == 1
        return result


def _unknown_write(key: bytes, value: bytes | None) -> TxnResult:
    """A single-key write whose process died: it may have been applied."""
    return TxnResult(txn_id=b"", status="info", writes={key: value})


def _failed(result: TxnResult, exc: PaxosKVError) -> TxnResult:
    result.status, result.why = "fail", f"{type(exc).__name__}: {exc}"
    return result
