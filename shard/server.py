"""The client gRPC service of a node: thin handlers that decode, submit to the core, await."""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterable
from functools import partial

import grpc

from router import kv_pb2 as kv
from router import kv_pb2_grpc, router_pb2
from router.client import WRITE_BYTES, WRITE_REQUESTS
from router.client_errors import OUTCOME_ADVICE
from router.codec import encode_shard_map
from shard import __version__
from shard.client_memory import ClientMemory, memory_cost
from shard.node import READ_KINDS, NodeCore
from txn.records import quote_key

Submit = Callable[[kv.Request, Callable[[kv.Response], None]], None]

#: Requests one Batch stream may have unanswered; more are refused (UNAVAILABLE: retried).
MAX_OUTSTANDING = 65_536
#: The stream's reader lets the loop run after this many requests of one message.
SUBMIT_SLICE = 256
#: Answers one stream may hold ready but not yet written (gRPC writes them as fast as the
#: client reads). Past this the reader waits, so gRPC's flow control holds the client back:
#: a client that sent on without reading its answers grew the node's memory without bound
#: with refusals past MAX_OUTSTANDING (found by review).
MAX_UNWRITTEN = 65_536
#: Scans one stream may have unanswered (an answer is up to MAX_SCAN_RESPONSE_BYTES, 4 MiB);
#: the others wait in line (`_KindSlots`) until answers leave. Found by review: 256 scans in
#: one 8 KB message made 800 MB of answers.
MAX_STREAM_SCANS = 16
#: Gets one stream may have unanswered or unwritten; the others wait in line.
MAX_STREAM_GETS = 128
#: Waits for a change (a watch's, `ScanRequest.await_change`, node rule 16) one stream may
#: have parked; the others wait in line. Their own slots, not the scans': a parked wait
#: holds its slot for up to half its deadline, and 16 quiet watches of one client held up
#: its scans and its other watches' reads by up to 2 s each (found by review).
MAX_STREAM_WAITS = 256
#: Gets (or scans, or waits) one stream may have waiting in line; past this the reader
#: waits, and gRPC's flow control holds the client back (each counts in the stream's bytes
#: too).
MAX_STREAM_WAITING = 1024
#: Bytes one stream may hold in the node: its requests submitted and not answered yet (a
#: put holds its value until chosen) and its answers not yet written. Past this, or past
#: the node's budget for all streams (shard.client_memory), the reader waits and gRPC's flow
#: control holds the client back (before, a client that sent 5,000 puts of 1 MiB at once,
#: each within its limits, made the node hold all 5 GB of them), and an answer that would
#: pass it and reports nothing done is shed (`_shed`).
MAX_STREAM_BYTES = 64 << 20
SHED_MESSAGE = (
    "the node holds as many answers for its clients as it may (memory); retry once this "
    "client reads its answers or others finish"
)


class _KindSlots:
    """The requests of one kind (gets, scans) a stream may have submitted and not yet
    written; the rest wait here, in order, without holding up the stream's other requests.

    Found by a client trial: the reader waited for a free slot, and so did every request
    behind it. 200 transactions of one client reading a hot key for update filled the 128
    get slots with reads queued on the key's lock, and the lock holder's commit, read after
    them, waited until they timed out: 14 of 200 committed in 67 s."""

    def __init__(self, limit: int) -> None:
        self._free = limit
        self._waiting: deque[Callable[[], None]] = deque()

    def line_full(self) -> bool:
        return len(self._waiting) >= MAX_STREAM_WAITING

    def submit(self, start: Callable[[], None]) -> None:
        """Run `start` now if a slot is free and nobody waits, else once one frees."""
        if self._free > 0 and not self._waiting:
            self._free -= 1
            start()
        else:
            self._waiting.append(start)

    def release(self) -> None:
        """An answer of this kind was written: its slot goes to the next in line."""
        if self._waiting:
            self._waiting.popleft()()
        else:
            self._free += 1


def _shed(response: kv.Response) -> kv.Response | None:
    """UNAVAILABLE in place of an answer that reports nothing done (a read, a compare-and-set
    that did not set), which a retry may ask again; None for any other answer.

    Found by review: a budget that learned an answer's size only once it was made let 16
    streams that sent gets of a 1 MiB value, never reading the answers, take a node from
    260 MiB to 2.5 GB (each stream within its own bound: 64 MiB, plus 128 gets in flight);
    a failed compare-and-set answers with the current value, up to 1 MiB, too. Reserving
    room for each read's largest answer at its submit bounded that but held honest clients'
    small gets to a thousand per node. A large answer is refused only when it would not fit.
    """
    kind = response.WhichOneof("result")
    if kind not in ("get", "scan", "cas"):
        return None
    answer = getattr(response, kind)
    # An error stays as it is (small; OUTCOME_UNKNOWN must never read "nothing done").
    if answer.error.code != kv.OK or (kind == "cas" and answer.succeeded):
        return None
    shed = kv.Response(id=response.id)
    error = getattr(shed, kind).error
    error.code = kv.UNAVAILABLE
    error.message = SHED_MESSAGE
    return shed


def _held_answer(
    response: kv.Response, held: int, fits: Callable[[int], bool], memory: ClientMemory
) -> tuple[kv.Response, int]:
    """The answer to hold in place of the `held` bytes of its request, and its size: shed
    (`_shed`, counted in `memory`) when it reports nothing done and the bytes it adds do not
    `fits`."""
    size = memory_cost(response)
    if size > held and not fits(size - held):
        shed = _shed(response)
        if shed is not None:
            memory.shed += 1
            return shed, memory_cost(shed)
    return response, size


def shard_map_response(core: NodeCore, request: kv.ShardMapRequest) -> kv.ShardMapResponse:
    """The answer to GetShardMap: the node's map, or WRONG_CLUSTER."""
    if request.cluster_id and request.cluster_id != core.cluster_id:
        return kv.ShardMapResponse(
            error=kv.Error(
                code=kv.WRONG_CLUSTER,
                message=f"this node belongs to cluster {core.cluster_id!r}, "
                f"not {quote_key(request.cluster_id)}",
            )
        )
    shard_map = router_pb2.ShardMap()
    shard_map.ParseFromString(encode_shard_map(core.shard_map))
    return kv.ShardMapResponse(shard_map=shard_map)


class KVServicer(kv_pb2_grpc.KVServicer):
    """Unary calls for tools, and the multiplexed Batch stream for the client library."""

    def __init__(
        self,
        core: NodeCore,
        submit: Submit,
        node_name: str,
        timeout_s: float,
        memory: ClientMemory | None = None,
        refusals: Callable[[], Iterable[tuple[int, str]]] = tuple,
    ) -> None:
        self._core = core
        self._refusals = refusals
        self._submit = submit
        self._node_name = node_name
        self._timeout_s = timeout_s
        self._memory = memory or ClientMemory()
        self._draining = False
        # One per open Batch stream: stops its reading (see `drain`).
        self._stream_drains: set[Callable[[], None]] = set()

    def drain(self) -> None:
        """Stop reading every Batch stream: each writes its last answers, then tells its
        client that it read no more (`drained`), so the rest was never applied.

        Called on stop, once the core has answered what it had. Before, the server's stop
        cancelled the streams: requests still unread in them, and answers not yet written,
        were both reported OutcomeUnknown by the client (found by review).
        """
        self._draining = True
        for stop_reading in list(self._stream_drains):
            stop_reading()

    def open_streams(self) -> int:
        """Batch streams that have not said `drained` (nor ended) yet."""
        return len(self._stream_drains)

    def _refuse_excess(self, request: kv.Request) -> kv.Response:
        """UNAVAILABLE (nothing was done, the client retries after a pause): a bulk load of
        more requests at once than this is slowed down, not failed (found by review)."""
        return self._core.refusal(
            request,
            kv.UNAVAILABLE,
            f"this stream has {MAX_OUTSTANDING} requests unanswered, the most it may; retry "
            "once some are answered",
        )

    async def _call(self, kind: str, op: object, context: grpc.aio.ServicerContext) -> kv.Response:
        """A unary call: its request, then its answer, count in the node's client memory
        until the call ends (gRPC holds the answer until the client reads it); a request
        that does not fit the budget is refused UNAVAILABLE (nothing done), and a read's
        answer that would pass it is shed, as on a Batch stream (no floor here: a tool's
        call, and a stream's floor per call would bound nothing)."""
        memory = self._memory
        request = kv.Request()
        getattr(request, kind).CopyFrom(op)
        held = memory_cost(request)
        if not memory.takes(held):
            # Refused, not held until chosen (found by review: unary calls were counted but
            # never bounded, so enough concurrent 1 MiB puts held past the budget).
            memory.shed += 1
            return self._core.refusal(request, kv.UNAVAILABLE, SHED_MESSAGE)
        memory.adjust(held)

        def release(_: object) -> None:
            memory.adjust(-held)

        context.add_done_callback(release)
        response, size = _held_answer(await self._answer(kind, request), held, memory.takes, memory)
        memory.adjust(size - held)
        held = size
        return response

    async def _answer(self, kind: str, request: kv.Request) -> kv.Response:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[kv.Response] = loop.create_future()

        def reply(response: kv.Response) -> None:
            if not future.done():
                future.set_result(response)

        self._submit(request, reply)
        try:
            # The core answers by the request deadline; this is only a backstop.
            return await asyncio.wait_for(future, self._timeout_s + 1.0)
        except TimeoutError:
            response = kv.Response()
            error = getattr(response, kind).error
            if kind in READ_KINDS:
                error.code = kv.UNAVAILABLE
                error.message = "the node did not answer in time"
            else:  # submitted, so perhaps proposed: only `fail` what surely did not happen
                error.code = kv.OUTCOME_UNKNOWN
                error.message = (
                    "the node did not answer in time; the write may or may not have been "
                    f"applied, and {OUTCOME_ADVICE}"
                )
            return response

    async def Get(
        self, request: kv.GetRequest, context: grpc.aio.ServicerContext
    ) -> kv.GetResponse:
        return (await self._call("get", request, context)).get

    async def Put(
        self, request: kv.PutRequest, context: grpc.aio.ServicerContext
    ) -> kv.PutResponse:
        return (await self._call("put", request, context)).put

    async def Delete(
        self, request: kv.DeleteRequest, context: grpc.aio.ServicerContext
    ) -> kv.DeleteResponse:
        return (await self._call("delete", request, context)).delete

    async def CompareAndSet(
        self, request: kv.CasRequest, context: grpc.aio.ServicerContext
    ) -> kv.CasResponse:
        return (await self._call("cas", request, context)).cas

    async def Scan(
        self, request: kv.ScanRequest, context: grpc.aio.ServicerContext
    ) -> kv.ScanResponse:
        return (await self._call("scan", request, context)).scan

    async def Status(self, request: kv.StatusRequest, context: object) -> kv.StatusResponse:
        return self.node_status()

    def node_status(self) -> kv.StatusResponse:
        """What Status answers (and the metrics show): the core's groups and the server's
        own state."""
        status = self._core.status()
        status.node_name = self._node_name
        status.software_version = __version__
        status.client_bytes_held = self._memory.held
        status.client_bytes_limit = self._memory.limit
        status.answers_shed = self._memory.shed
        status.refused_by.extend(
            kv.PeerRefusal(node_id=node_id, reason=reason) for node_id, reason in self._refusals()
        )
        return status

    async def GetShardMap(
        self, request: kv.ShardMapRequest, context: object
    ) -> kv.ShardMapResponse:
        return shard_map_response(self._core, request)

    async def Batch(
        self,
        request_iterator: AsyncIterator[kv.RequestBatch],
        context: grpc.aio.ServicerContext,
    ) -> AsyncIterator[kv.ResponseBatch]:
        # Each answer with its size and the slot its request took (freed once written).
        answers: asyncio.Queue[tuple[kv.Response, int, _KindSlots | None] | None] = asyncio.Queue()
        slots = {"scan": _KindSlots(MAX_STREAM_SCANS), "get": _KindSlots(MAX_STREAM_GETS)}
        wait_slots = _KindSlots(MAX_STREAM_WAITS)
        memory = self._memory
        outstanding = 0
        unwritten = 0  # answers in `answers` or in the write under way
        held_bytes = 0  # see MAX_STREAM_BYTES; also counted in `memory`
        written = asyncio.Event()
        reader_done = False
        closed = False  # what the stream held went back to `memory` at its end
        drained = False  # the reader was stopped by `drain`
        failure: list[str] = []

        def hold(delta: int) -> None:
            nonlocal held_bytes
            held_bytes += delta
            memory.adjust(delta)

        def stream_takes(more: int) -> bool:
            return memory.fits(held_bytes, more, MAX_STREAM_BYTES)

        def replier(held_for_it: int, slot: _KindSlots | None) -> Callable[[kv.Response], None]:
            def reply(response: kv.Response) -> None:
                nonlocal unwritten
                if closed:
                    return  # answered after the stream ended: nobody will write it
                response, size = _held_answer(response, held_for_it, stream_takes, memory)
                unwritten += 1
                hold(size - held_for_it)
                answers.put_nowait((response, size, slot))

            return reply

        async def read() -> None:
            nonlocal outstanding, reader_done
            try:
                async for batch in request_iterator:
                    if len(batch.requests) > WRITE_REQUESTS:
                        # No client of ours sends one: end the stream at once, not one
                        # refusal per request (millions fit in a 64 MiB message).
                        failure.append(
                            f"a request batch carries at most {WRITE_REQUESTS} requests, "
                            f"this one {len(batch.requests)}"
                        )
                        return
                    for n, request in enumerate(batch.requests):
                        kind = request.WhichOneof("op")
                        waits = kind == "scan" and request.scan.await_change
                        slot = wait_slots if waits else slots.get(kind or "")
                        while (
                            unwritten >= MAX_UNWRITTEN
                            or held_bytes >= MAX_STREAM_BYTES
                            or not memory.allows(held_bytes, unwritten)
                            or (slot is not None and slot.line_full())
                        ):
                            await memory.wait(written)
                        # Counted once nothing awaits before its submit: a drain that stops
                        # the reader leaves no request counted that will never be answered
                        # (one waiting for a slot is submitted when an answer is written).
                        outstanding += 1
                        size = memory_cost(request)
                        hold(size)
                        if outstanding > MAX_OUTSTANDING:
                            start = partial(replier(size, slot), self._refuse_excess(request))
                        else:
                            start = partial(self._submit, request, replier(size, slot))
                        if slot is None:
                            start()
                        else:
                            # Every such answer (refusals too) frees its slot once written.
                            slot.submit(start)
                        if n % SUBMIT_SLICE == SUBMIT_SLICE - 1:
                            # Found by review: 20,000 requests in one message held the
                            # loop (heartbeats, peer links, other clients) until all were in.
                            await asyncio.sleep(0)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                failure.append(f"undecodable request batch: {exc}")
            finally:
                reader_done = True
                answers.put_nowait(None)

        reader = asyncio.create_task(read())

        def stop_reading() -> None:
            nonlocal drained
            drained = True
            reader.cancel()

        self._stream_drains.add(stop_reading)
        if self._draining:
            stop_reading()
        try:
            while True:
                item = await answers.get()
                responses = []
                freed: list[_KindSlots | None] = []
                size = 0
                while True:
                    if item is not None:
                        responses.append(item[0])
                        size += item[1]
                        freed.append(item[2])
                    if answers.empty() or size >= WRITE_BYTES:
                        # Past WRITE_BYTES the rest waits for the next write: a batch of
                        # large values would pass gRPC's message limit and fail them all.
                        break
                    item = answers.get_nowait()
                outstanding -= len(responses)
                if responses:
                    yield kv.ResponseBatch(responses=responses)
                    unwritten -= len(responses)
                    hold(-size)
                    written.set()
                    # Written (gRPC asked for the next message): their gets', scans' and
                    # waits' slots are free.
                    for slot in freed:
                        if slot is not None:
                            slot.release()
                if failure:
                    await context.abort(grpc.StatusCode.INVALID_ARGUMENT, failure[0])
                if reader_done and outstanding <= 0:
                    if drained:
                        # Every request read is answered above: the client may retry the
                        # rest, which this node never read (router/client.py). Said in a
                        # message, not by ending the stream: a stream that ends while the
                        # client writes can fail there with INTERNAL, its ending unseen.
                        yield kv.ResponseBatch(drained=True)
                        self._stream_drains.discard(stop_reading)
                        await asyncio.Future()  # until the client or the server's stop ends it
                    return
        finally:
            self._stream_drains.discard(stop_reading)
            reader.cancel()
            closed = True
            hold(-held_bytes)
