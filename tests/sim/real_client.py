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
recovery. Not covered: single-key writes, plain gets and scans outside transactions (the
"registers" workload and the "reads" profile), and the model's forged Resolves.
Transaction ids come from the world's RNG (`deterministic_txn_ids`) so that a seed
replays.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import Callable, Coroutine, Iterator, Sequence
from typing import TYPE_CHECKING, Any

import grpc
from sim_client import SCAN_LIMIT, Body, TxnResult
from sim_loop import SimLoop

import txn.client as txn_client
from router import kv_pb2 as kv
from router.client import ClientClosed, RoutingClient, _Connection, _take_write
from txn import AsyncClient, AsyncTransaction
from txn.errors import CommitUnknown, PaxosKVError
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

    def forget(self, call_id: int) -> None:
        self._answers.pop(call_id, None)

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
            rng=rng,
            wall_ns=host.wall_ns,
            settle_unknown=settle_unknown,
        )
        #: The transaction running (with the values it read), for `_die`.
        self._current: tuple[AsyncTransaction | None, dict[bytes, bytes | None]] = (None, {})
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
        self._start(lambda: self._transaction(keys, body, scans), done)

    def snapshot(self, keys: list[bytes], done: OnResult) -> None:
        self._start(lambda: self._snapshot(keys), done)

    def _start(self, work: Callable[[], Coroutine[Any, Any, TxnResult]], done: OnResult) -> None:
        """Run `work()` in the process; it may die meanwhile (`host.dies_during`): then the
        outcome is ``info``, with what the transaction had sent (`_died`)."""

        running = [True]

        def finished(task: asyncio.Task[TxnResult]) -> None:
            running[0] = False
            done(task.result())

        self.loop.run_soon(lambda: self.loop.create_task(work()).add_done_callback(finished))
        dies_in = self.host.dies_during()
        if dies_in is not None:
            self.host.world.schedule(
                self.host.world.now + dies_in, self._die, self.loop.life, running, done
            )

    def _die(self, life: int, running: list[bool], done: OnResult) -> None:
        if life != self.loop.life or not running[0]:
            return  # it finished first (or the process died of something else)
        self.kill()
        self.host.sim.stats_add("client_died@random")
        result = TxnResult(txn_id=b"", status="info", why="the client process died")
        tx, values = self._current
        if tx is not None:
            result.txn_id = tx.txn_id
            self._describe(result, tx, values)
        done(result)

    async def _transaction(
        self, keys: list[bytes], body: Body, scans: Sequence[tuple[bytes, bytes]]
    ) -> TxnResult:
        tx = self.client.transaction()
        result = TxnResult(txn_id=tx.txn_id)
        values: dict[bytes, bytes | None] = {}
        self._current = (tx, values)
        try:
            for start, end in scans:
                values.update(await tx.scan(start, end, limit=SCAN_LIMIT))
            for key in keys:
                if key not in values:
                    values[key] = await tx.get(key)
            writes = body(values)
            for key, value in writes.items():
                if value is None:
                    tx.delete(key)
                else:
                    tx.put(key, value)
            commit_ts = await tx.commit()
        except CommitUnknown as exc:
            result.status, result.why = "info", str(exc)
        except PaxosKVError as exc:
            result.status, result.why = "fail", f"{type(exc).__name__}: {exc}"
        else:
            result.status, result.commit_ts = "ok", commit_ts
        self._current = (None, {})
        self._describe(result, tx, values)
        return result

    @staticmethod
    def _describe(
        result: TxnResult, tx: AsyncTransaction, values: dict[bytes, bytes | None]
    ) -> None:
        """What `tx` read, wrote and sent its commit to, into `result`."""
        read_set = tx.read_set
        result.reads = {k: (values[k], read_set[k]) for k in values if k in read_set}
        result.writes = tx.write_set
        if tx.ref is None:
            result.writes = {}  # no commit request was sent: nothing can be applied
            return
        result.coordinator = tx.ref.group_id
        result.participants = tuple(tx._participants)
        result.one_phase = len(tx._participants) == 1

    async def _snapshot(self, keys: list[bytes]) -> TxnResult:
        snap = self.client.snapshot()
        result = TxnResult(txn_id=b"", versions_known=False)
        try:
            values = {key: await snap.get(key) for key in keys}
        except PaxosKVError as exc:
            result.status, result.why = "fail", f"{type(exc).__name__}: {exc}"
            return result
        result.status = "ok"
        result.snapshot_ts = snap.read_ts or 0
        result.reads = {k: (v, 0) for k, v in values.items()}
        return result
