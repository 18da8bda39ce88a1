"""A fake paxoskv cluster for the transaction client's tests, plus tests of the fake itself.

Three in-process grpc.aio nodes serve the KV `Batch` stream (plus Status and GetShardMap) for a
map split at "g" and "p" (groups 1, 2, 3). One in-memory store implements the transaction
protocol of router/kv.proto closely enough to test the client's logic: MVCC versions with
tombstones, write intents, Prepare (read-version validation, intents, idempotent by txn id),
Decide (first decision wins), Resolve, CommitOnePhase (idempotent by txn id), TxnStatus,
Timestamp and snapshot reads. Leadership: each group's preferred leader; other nodes answer
NOT_LEADER with a hint, so the real RoutingClient routes as it would in production.

A node in `FakeKV.frozen` answers nothing at all (SIGSTOP, cut off); `FakeKV.unanswered`
logs what reached it. `FakeKV.answer_delay_s` delays the answers of a kind of request (a
slow but live leader), the others still answered at once; `FakeKV.reading` cleared holds
every node's reader of its Batch streams. A test injects faults through
`FakeKV.hook(node, request)`, which may return a `kv.Response` (answer that instead), `DROP`
(neither apply nor answer), `LOSE` (apply, drop the answer) or None (normal); `on_kind`
makes one for every request of a kind. `FakeKV.seen` logs every request that reached a
leader.

Other test modules import this one by name (tests/ has no packages).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import inspect
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import grpc
import pytest

from router import NodeAddress, bootstrap, kv_pb2_grpc
from router import kv_pb2 as kv
from router import router_pb2 as rpb
from router.codec import encode_shard_map
from txn import AsyncClient, Client

CLUSTER = "fake"
DROP = "drop"  # neither apply nor answer
LOSE = "lose"  # apply, then lose the answer

Hook = Callable[[int, kv.Request], Any]


def on_kind(kind: str, outcome: Any) -> Hook:
    """A hook giving every `kind` request `outcome`: DROP, LOSE, or the answer a function of
    the request returns (`lambda r: conflict_response(r, key, "commit")`); others pass."""

    def hook(node: int, request: kv.Request) -> Any:
        if request.WhichOneof("op") != kind:
            return None
        return outcome(request) if callable(outcome) else outcome

    return hook


@dataclass
class Prepared:
    group: int
    coordinator: int
    participants: list[int]
    prepare_ts: int
    writes: list[tuple[bytes, bytes | None]]
    read_keys: list[bytes]


@dataclass
class FakeStore:
    """The protocol semantics, one store for all groups (their keys never overlap)."""

    clock: int = field(default_factory=lambda: (time.time_ns() // 1000) << 12)
    versions: dict[bytes, list[tuple[int, bytes | None]]] = field(default_factory=dict)
    intents: dict[bytes, bytes] = field(default_factory=dict)  # write intents: key -> txn
    prepared: dict[tuple[bytes, int], Prepared] = field(default_factory=dict)
    # Each group's own records, as real nodes keep them: a decision recorded in one group
    # says nothing in another (rule P2 there, TxnStatus there).
    decisions: dict[tuple[bytes, int], tuple[bool, int]] = field(default_factory=dict)
    one_phase: dict[tuple[bytes, int], kv.CommitOnePhaseResponse] = field(default_factory=dict)
    deliver: bool = True  # the coordinator delivers decisions itself (as real nodes do)

    def tick(self, at_least: int = 0) -> int:
        self.clock = max(self.clock + 1, at_least)
        return self.clock

    def observe(self, ts: int) -> None:
        self.clock = max(self.clock, ts)

    def latest(self, key: bytes) -> tuple[int, bytes | None]:
        history = self.versions.get(key)
        return history[-1] if history else (0, None)

    def at(self, key: bytes, ts: int) -> tuple[int, bytes | None]:
        for version, value in reversed(self.versions.get(key, [])):
            if version <= ts:
                return version, value
        return 0, None

    def write(self, key: bytes, value: bytes | None, version: int) -> None:
        self.versions.setdefault(key, []).append((version, value))

    def value(self, key: bytes) -> bytes | None:
        return self.latest(key)[1]

    def decided(self, txn_id: bytes) -> dict[int, bool]:
        """Whether each group that recorded a decision of `txn_id` recorded a commit."""
        return {g: d[0] for (t, g), d in self.decisions.items() if t == txn_id}

    # -- validation shared by Prepare and CommitOnePhase

    def validate(self, txn_id: bytes, reads: Any, writes: Any, phase: str) -> kv.Error | None:
        for item in reads:
            other = self.intents.get(item.key)
            if other is not None and other != txn_id:
                return conflict(item.key, other, phase, "the key is held by a prepared write")
            version = self.latest(item.key)[0]
            if version != item.version:
                return conflict(item.key, b"", phase, f"read version {item.version}, now {version}")
        for item in writes:
            other = self.intents.get(item.key)
            if other is not None and other != txn_id:
                return conflict(item.key, other, phase, "the key is held by a prepared write")
        return None

    # -- operations

    def apply(self, group: int, kind: str, op: Any, response: kv.Response) -> None:
        body = getattr(response, kind)
        body.SetInParent()
        if kind == "get":
            if op.snapshot:
                version, value = self.at(op.key, op.at_version)
                self.observe(op.at_version)
            else:
                other = self.intents.get(op.key)
                if other is not None:
                    body.error.CopyFrom(conflict(op.key, other, "read", "a prepared write"))
                    return
                version, value = self.latest(op.key)
            body.version = version
            if value is not None:
                body.found, body.value = True, value
        elif kind == "scan":
            end = op.end if op.HasField("end") else None
            keys = sorted(k for k in self.versions if k >= op.start and (end is None or k < end))
            body.reverse = op.reverse
            for key in reversed(keys) if op.reverse else keys:
                if not op.snapshot and key in self.intents:
                    body.error.CopyFrom(
                        conflict(key, self.intents[key], "read", "a prepared write")
                    )
                    del body.items[:]
                    return
                version, value = self.at(key, op.at_version) if op.snapshot else self.latest(key)
                if value is not None:
                    body.items.add(key=key, value=value, version=version)
                if len(body.items) >= (op.limit or 1000):
                    break
        elif kind in ("put", "delete", "cas"):
            other = self.intents.get(op.key)
            if other is not None:
                body.error.CopyFrom(conflict(op.key, other, "write", "a prepared write"))
                return
            if kind == "put":
                body.version = self.tick()
                self.write(op.key, op.value, body.version)
            elif kind == "delete":
                if self.value(op.key) is not None:
                    body.version = self.tick()
                    self.write(op.key, None, body.version)
            else:
                version, value = self.latest(op.key)
                expect = op.WhichOneof("expect")
                ok = (
                    (expect == "expect_absent" and value is None)
                    or (expect == "expected_value" and value == op.expected_value)
                    or (expect == "expected_version" and version == op.expected_version)
                )
                body.succeeded = ok
                if ok:
                    body.version = self.tick()
                    delete = op.WhichOneof("action") == "delete"
                    self.write(op.key, None if delete else op.new_value, body.version)
                else:
                    body.found = value is not None
                    body.current_value = value or b""
                    body.current_version = version
        elif kind == "prepare":
            self.observe(op.ts)
            known = self.prepared.get((op.txn_id, group))
            if known is not None:
                body.prepare_ts = known.prepare_ts
                return
            error = self.validate(op.txn_id, op.reads, op.writes, "prepare")
            if (op.txn_id, group) in self.decisions:  # rule P2: decided here, too late
                error = conflict(b"", op.txn_id, "prepare", "already decided")
            if error is not None:
                body.error.CopyFrom(error)
                return
            writes = [(w.key, None if w.delete else w.value) for w in op.writes]
            for key, _ in writes:
                self.intents[key] = op.txn_id
            prepare_ts = self.tick(op.ts)
            self.prepared[(op.txn_id, group)] = Prepared(
                group,
                op.coordinator_group,
                list(op.participants),
                prepare_ts,
                writes,
                [r.key for r in op.reads],
            )
            body.prepare_ts = prepare_ts
        elif kind == "decide":
            self.observe(op.commit_ts)
            if (
                op.recover
                and (op.txn_id, group) not in self.decisions
                and (op.txn_id, group) in self.prepared
            ):
                # Rule D3: record nothing, answer pending; the prevent round (done here at
                # once) records COMMIT if every participant prepared, else ABORT, which
                # then stops any later Prepare (P2).
                votes = [self.prepared.get((op.txn_id, g)) for g in op.participants]
                if all(votes):
                    commit_ts = max(v.prepare_ts for v in votes if v is not None)
                    self.decisions[(op.txn_id, group)] = (True, commit_ts)
                else:
                    commit_ts = 0
                    self.decisions[(op.txn_id, group)] = (False, 0)
                if self.deliver:
                    for g in op.participants:
                        self.resolve(op.txn_id, g, commit_ts > 0, commit_ts)
                body.pending = True
                return
            if (op.txn_id, group) not in self.decisions:
                commit_ts = op.commit_ts if op.commit else 0
                self.decisions[(op.txn_id, group)] = (op.commit, commit_ts)
                if self.deliver:
                    for g in op.participants:
                        self.resolve(op.txn_id, g, op.commit, commit_ts)
            committed, commit_ts = self.decisions[(op.txn_id, group)]
            body.committed, body.commit_ts = committed, commit_ts
        elif kind == "resolve":
            record = self.prepared.get((op.txn_id, group))
            if record is not None and record.coordinator == group:
                # Rule R5: the coordinator group keeps the outcome its Resolve applied.
                commit_ts = op.commit_ts if op.commit else 0
                self.decisions.setdefault((op.txn_id, group), (op.commit, commit_ts))
            self.resolve(op.txn_id, group, op.commit, op.commit_ts)
        elif kind == "commit_one_phase":
            self.observe(op.ts)
            known = self.one_phase.get((op.txn_id, group))
            if known is not None:
                body.CopyFrom(known)
                return
            if (op.txn_id, group) in self.decisions:  # rule O1: an abort recorded first (settled)
                body.error.CopyFrom(conflict(b"", op.txn_id, "commit", "already aborted"))
                return
            error = self.validate(op.txn_id, op.reads, op.writes, "commit")
            if error is not None:
                body.error.CopyFrom(error)
            else:
                body.commit_ts = self.tick(op.ts)
                for w in op.writes:
                    self.write(w.key, None if w.delete else w.value, body.commit_ts)
                self.decisions[(op.txn_id, group)] = (True, body.commit_ts)
            self.one_phase[(op.txn_id, group)] = kv.CommitOnePhaseResponse()
            self.one_phase[(op.txn_id, group)].CopyFrom(body)
        elif kind == "txn_status":
            decision = self.decisions.get((op.txn_id, group))
            if decision is not None:
                committed, commit_ts = decision
                body.state = (
                    kv.TxnStatusResponse.COMMITTED if committed else (kv.TxnStatusResponse.ABORTED)
                )
                body.commit_ts = commit_ts
            elif (op.txn_id, group) in self.prepared:
                record = self.prepared[(op.txn_id, group)]
                body.state = kv.TxnStatusResponse.IN_PROGRESS
                body.prepare_ts = record.prepare_ts
                body.participants.extend(record.participants)
            else:
                body.state = kv.TxnStatusResponse.UNKNOWN
        elif kind == "timestamp":
            body.ts = self.tick()
        else:  # pragma: no cover - the fake is incomplete
            raise AssertionError(f"fake: unsupported request {kind}")

    def resolve(self, txn_id: bytes, group: int, commit: bool, commit_ts: int) -> None:
        record = self.prepared.pop((txn_id, group), None)
        if record is None:
            return
        for key, value in record.writes:
            if commit:
                self.write(key, value, commit_ts)
            if self.intents.get(key) == txn_id:
                del self.intents[key]
        if commit:
            self.observe(commit_ts)


def conflict(key: bytes, other: bytes, phase: str, reason: str) -> kv.Error:
    return kv.Error(
        code=kv.CONFLICT,
        message=f"conflict on {key!r}: {reason}",
        conflict=kv.Conflict(key=key, other_txn=other, phase=phase, reason=reason),
    )


def error_response(request: kv.Request, code: int, **fields: Any) -> kv.Response:
    response = kv.Response(id=request.id)
    getattr(response, request.WhichOneof("op")).error.CopyFrom(
        kv.Error(code=code, message="injected", **fields)
    )
    return response


def conflict_response(request: kv.Request, key: bytes, phase: str) -> kv.Response:
    response = kv.Response(id=request.id)
    error = conflict(key, b"\xee" * 4, phase, "injected")
    getattr(response, request.WhichOneof("op")).error.CopyFrom(error)
    return response


class FakeNode(kv_pb2_grpc.KVServicer):
    def __init__(self, cluster: FakeKV, node_id: int) -> None:
        self.cluster = cluster
        self.node_id = node_id
        self.server: grpc.aio.Server | None = None
        self.port = 0

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    async def start(self) -> None:
        # No SO_REUSEPORT: with it, a port-0 bind may share a port another test process's
        # server holds, and connections then land in the wrong process.
        self.server = grpc.aio.server(options=[("grpc.so_reuseport", 0)])
        kv_pb2_grpc.add_KVServicer_to_server(self, self.server)
        self.port = self.server.add_insecure_port("127.0.0.1:0")
        await self.server.start()

    async def stop(self) -> None:
        if self.server is not None:
            await self.server.stop(0)
            self.server = None

    async def Status(self, request: kv.StatusRequest, context: Any) -> kv.StatusResponse:
        """Every group's replica here: leader of the groups `FakeKV.leaders` gives it."""
        groups = [
            kv.GroupStatus(
                group_id=group,
                role="leader" if self.cluster.leaders.get(group) == self.node_id else "follower",
                ballot="1.1",
                chosen_index=1,
                applied_index=1,
            )
            for group in self.cluster.map.group_ids()
        ]
        return kv.StatusResponse(
            cluster_id=CLUSTER, node_id=self.node_id, node_name=f"n{self.node_id}", groups=groups
        )

    async def GetShardMap(self, request: kv.ShardMapRequest, context: Any) -> kv.ShardMapResponse:
        if self.node_id in self.cluster.frozen:
            await asyncio.Event().wait()  # answers nothing (the client's liveness probe)
        shard_map = rpb.ShardMap()
        shard_map.ParseFromString(encode_shard_map(self.cluster.map))
        return kv.ShardMapResponse(shard_map=shard_map)

    async def Batch(self, request_iterator: Any, context: grpc.aio.ServicerContext) -> Any:
        answers: asyncio.Queue[list[kv.Response] | None] = asyncio.Queue()
        loop = asyncio.get_running_loop()

        def answer(requests: list[kv.Request]) -> None:
            responses = [self.cluster.handle(self.node_id, request) for request in requests]
            answers.put_nowait([r for r in responses if r is not None])

        async def read() -> None:
            async for batch in request_iterator:
                await self.cluster.reading.wait()
                now: list[kv.Request] = []
                for request in batch.requests:
                    delay = self.cluster.answer_delay_s.get(request.WhichOneof("op"), 0.0)
                    if delay:  # a slow answer, while the node answers the others at once
                        loop.call_later(delay, answer, [request])
                    else:
                        now.append(request)
                answer(now)
            answers.put_nowait(None)

        reader = loop.create_task(read())
        try:
            while (responses := await answers.get()) is not None:
                if responses:
                    yield kv.ResponseBatch(responses=responses)
        finally:
            reader.cancel()


class FakeKV:
    """Three fake nodes; groups 1 [-inf, g), 2 [g, p), 3 [p, +inf) plus meta group 0."""

    def __init__(self) -> None:
        self.nodes = {i: FakeNode(self, i) for i in (1, 2, 3)}
        self.store = FakeStore()
        self.hook: Hook | None = None
        self.seen: list[tuple[int, str, kv.Request]] = []  # (group, kind, request copy)
        self.map: Any = None
        self.leaders: dict[int, int] = {}
        self.lock = threading.Lock()
        self.frozen: set[int] = set()  # nodes that answer nothing
        self.answer_delay_s: dict[str, float] = {}  # request kind -> its answers' delay
        # Cleared: the nodes read no more of their Batch streams (a node's reader held by
        # the stream's limits), though they answer unary calls.
        self.reading = asyncio.Event()
        self.reading.set()
        self.unanswered: list[tuple[int, str]] = []  # (node, kind) of what reached them

    async def start(self) -> None:
        for node in self.nodes.values():
            await node.start()
        self.map = bootstrap(
            [
                NodeAddress(node_id=i, name=f"n{i}", client_addr=n.address, peer_addr=n.address)
                for i, n in self.nodes.items()
            ],
            [b"g", b"p"],
            3,
        )
        self.leaders = {g: self.map.preferred_leader(g) for g in self.map.group_ids()}

    async def stop(self) -> None:
        for node in self.nodes.values():
            await node.stop()

    @property
    def seeds(self) -> list[str]:
        return [self.nodes[1].address]

    def group_of(self, key: bytes) -> int:
        return int(self.map.locate(key).group_id)

    def requests(self, kind: str) -> list[tuple[int, kv.Request]]:
        """(group, request) of every `kind` request that reached a leader, in order."""
        with self.lock:
            return [(g, r) for g, k, r in self.seen if k == kind]

    def count(self, kind: str) -> int:
        return len(self.requests(kind))

    def handle(self, node_id: int, request: kv.Request) -> kv.Response | None:
        kind = request.WhichOneof("op")
        if node_id in self.frozen:
            with self.lock:
                self.unanswered.append((node_id, kind))
            return None
        op = getattr(request, kind)
        has_header = "header" in op.DESCRIPTOR.fields_by_name
        group = op.header.group_id if has_header else 0
        if has_header:
            if op.header.cluster_id != CLUSTER:
                return error_response(request, kv.WRONG_CLUSTER)
            leader = self.leaders.get(group)
            if leader is None or group == 0:
                return error_response(request, kv.UNKNOWN_GROUP, map_version=self.map.version)
            if leader != node_id:
                return error_response(
                    request,
                    kv.NOT_LEADER,
                    leader_id=leader,
                    leader_addr=self.nodes[leader].address,
                )
        with self.lock:
            copy = kv.Request()
            copy.CopyFrom(request)
            self.seen.append((group, kind, copy))
        outcome = self.hook(node_id, request) if self.hook is not None else None
        if isinstance(outcome, kv.Response):
            return outcome
        if outcome == DROP:
            return None
        response = kv.Response(id=request.id)
        with self.lock:
            self.store.apply(group, kind, op, response)
        return None if outcome == LOSE else response


def _unprepared(fake: FakeKV) -> bool:
    with fake.lock:
        return not fake.store.prepared


async def decided(fake: FakeKV, timeout_s: float = 5.0) -> None:
    """Wait until nothing is left prepared in the fake: the Decide a client sends after its
    commit returned (parallel commits) has landed and resolved every participant."""
    deadline = time.monotonic() + timeout_s
    while not _unprepared(fake):
        assert time.monotonic() < deadline, f"still prepared after {timeout_s} s"
        await asyncio.sleep(0.002)


def decided_sync(fake: FakeKV, timeout_s: float = 5.0) -> None:
    """`decided` for a fake served from its own thread (the synchronous Client's tests)."""
    deadline = time.monotonic() + timeout_s
    while not _unprepared(fake):
        assert time.monotonic() < deadline, f"still prepared after {timeout_s} s"
        time.sleep(0.002)


def fast_client(fake: FakeKV, **kwargs: Any) -> AsyncClient:
    kwargs.setdefault("timeout_s", 5.0)
    kwargs.setdefault("attempt_timeout_s", 0.3)
    return AsyncClient(fake.seeds, **kwargs)


async def until(condition: Callable[[], bool], what: str, deadline_s: float = 5.0) -> None:
    """Wait for `condition`, polling; fail naming `what` at the deadline."""
    end = asyncio.get_running_loop().time() + deadline_s
    while not condition():
        if asyncio.get_running_loop().time() > end:
            pytest.fail(f"timed out waiting for {what}")
        await asyncio.sleep(0.005)


def with_fake(fn: Callable[..., Awaitable[None]]) -> Callable[..., None]:
    """Run an async test with a started FakeKV (stopped afterwards) in a fresh event loop;
    the test's other parameters are pytest fixtures, as usual."""

    @functools.wraps(fn)
    def wrapper(**fixtures: Any) -> None:
        async def main() -> None:
            fake = FakeKV()
            await fake.start()
            try:
                await fn(fake, **fixtures)
            finally:
                await fake.stop()

        asyncio.run(asyncio.wait_for(main(), 60))

    # pytest must see fn's fixtures, not its `fake` parameter.
    del wrapper.__wrapped__
    fixtures = list(inspect.signature(fn).parameters.values())[1:]
    wrapper.__signature__ = inspect.Signature(fixtures)  # type: ignore[attr-defined]
    return wrapper


@contextlib.contextmanager
def fake_in_thread() -> Iterator[FakeKV]:
    """A FakeKV served by its own event loop in a background thread (for the sync Client)."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    fake = FakeKV()
    asyncio.run_coroutine_threadsafe(fake.start(), loop).result(10)
    try:
        yield fake
    finally:
        asyncio.run_coroutine_threadsafe(fake.stop(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()


def sync_client(fake: FakeKV, **kwargs: Any) -> Client:
    kwargs.setdefault("timeout_s", 5.0)
    kwargs.setdefault("attempt_timeout_s", 0.3)
    return Client(fake.seeds, **kwargs)


# ---------------------------------------------------------------------------- the fake


def test_fake_store_prepare_is_idempotent_and_decide_first_wins() -> None:
    store = FakeStore()
    op = kv.PrepareRequest(
        txn_id=b"t1",
        coordinator_group=1,
        participants=[1, 2],
        ts=5,
        writes=[kv.WriteItem(key=b"a", value=b"1")],
    )
    first, second = kv.Response(), kv.Response()
    store.apply(1, "prepare", op, first)
    store.apply(1, "prepare", op, second)
    assert first.prepare.prepare_ts == second.prepare.prepare_ts > 0
    assert store.intents == {b"a": b"t1"}
    abort = kv.Response()
    store.apply(1, "decide", kv.DecideRequest(txn_id=b"t1", participants=[1], commit=False), abort)
    late = kv.Response()
    store.apply(
        1,
        "decide",
        kv.DecideRequest(txn_id=b"t1", participants=[1], commit=True, commit_ts=9),
        late,
    )
    assert not abort.decide.committed and not late.decide.committed
    assert store.intents == {} and store.value(b"a") is None


def test_fake_store_absent_key_reports_its_tombstone_version() -> None:
    store = FakeStore()
    store.write(b"k", b"v", 10)
    store.write(b"k", None, 20)
    response = kv.Response()
    store.apply(1, "get", kv.GetRequest(key=b"k"), response)
    assert not response.get.found and response.get.version == 20
