"""RoutingClient: the asyncio client of a paxoskv cluster (grpc.aio), routing by shard map.

Theory of operation
-------------------
The client keeps a `RoutingCache` (the newest shard map it has seen and a leader guess per
group) and, per node address, one `_Connection`: one gRPC channel carrying ONE long-lived
`Batch` stream. Requests of every concurrent caller are queued on the connection; a writer
task drains the queue into one `RequestBatch` per stream write (up to WRITE_BYTES: a batch
of large values would pass gRPC's message limit and fail every request in it), and a reader task
resolves each caller's future by request id from the `ResponseBatch`es the node sends back.
For the same reason no request is queued that the node would refuse for its size, or that is
over MAX_REQUEST_BYTES (`router.limits`): it is refused at once with `LimitExceeded`.
A gRPC message costs ~200 µs of CPU per side here (REFERENCE.md), so under load many
operations share one message each way; a single caller still gets one message per op.

`send()` is the request core that every operation (and the transaction client) uses: it
routes one `kv.Request` to its group's guessed leader and retries until the deadline:

- NOT_LEADER(hint): follow the hint at once (back off only if hints keep bouncing).
- UNAVAILABLE from a node (no leader yet, shutting down), or a request that surely never
  left the client (node unreachable, stream broke before the write, or submitted while the
  connection's stream ends and its last answers are read): rotate to the next replica and
  retry after a jittered backoff.
- WRONG_SHARD / UNKNOWN_GROUP: refresh the shard map (one fetch shared by all callers) and
  route again.
- A stream that breaks after a request was written, or a deadline that passes while waiting
  for its answer: a read is retried (or raises DeadlineExceeded); a write may have been
  applied, so it raises `OutcomeUnknown` and is never re-sent.
- A node silent for `attempt_timeout_s` while a request waits there (nothing heard, not
  even the answer to a probe: `_SilenceWatch`; SIGSTOPped, cut off) loses its place as the
  group's leader guess while that request keeps waiting for its answer: requests sent from
  then on go to the next replica, which serves them or names the new leader, instead of
  queueing behind the silent node until their own deadlines (found by review: every request
  waited out its whole deadline there while another replica led). The request itself is
  not re-sent here: a write may have been applied (rule 1). A request its caller marks
  `idempotent` (reads, `txn`'s commit requests) is given up at a silent node: a read is
  sent again here where the guess now points, a commit request by its caller
  (`txn.resend`); at a live node it gets one more copy on the same stream after each
  attempt timeout without an answer, the first answer without an error winning.

Rules
-----
1. A write is re-sent only when it surely was not applied: refused by the node with a code
   that says so (NOT_LEADER, UNAVAILABLE, WRONG_SHARD, UNKNOWN_GROUP), or never written to a
   stream. Everything else indeterminate is `OutcomeUnknown` (PITFALLS.md, jetcd 0.8.2).
2. A request abandoned by its caller (deadline, cancellation) before the writer took it is
   never written afterwards, so "DeadlineExceeded" really means "not applied".
3. Every wait is bounded by the operation's deadline (`timeout_s`, default 10 s).
4. A leader guess is moved only through `RoutingCache.on_not_leader`, so that a guess another
   request corrected meanwhile stays (router.cache).

Only this module and the gRPC stubs touch sockets in `router/`; the decisions it makes on
answers come from the sans-I/O `RoutingCache` and `Backoff`.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import itertools
import os
import random
import re
from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import grpc

from router import kv_pb2 as kv
from router import kv_pb2_grpc
from router.cache import Backoff, RoutingCache
from router.cancelling import cancel_and_wait
from router.client_errors import (
    OUTCOME_ADVICE,
    ClientClosed,
    ClientError,
    DeadlineExceeded,
    InvalidArgument,
    LimitExceeded,
    OutcomeUnknown,
    ServerError,
    SnapshotTooOld,
    Unavailable,
    WrongCluster,
)
from router.codec import decode_shard_map
from router.errors import RouterError, UnknownGroup, WrongShard
from router.limits import MAX_REQUEST_BYTES, request_refusal
from router.scan_cursor import ScanCursor
from router.seeds import check_address, parse_seeds
from router.shard_map import ShardMap
from router.tls import ClientTls, TlsFiles, TlsSetupError, aio_channel, resolve_client_tls
from router.ttl import cas_ttl_ms, check_expiry, ttl_ms_of

__all__ = [
    "CHANNEL_OPTIONS",
    "GRPC_OPTIONS",
    "KEEPALIVE_TIME_MS",
    "CasResult",
    "NodeStatus",
    "RoutingClient",
    "default_attempt_timeout",
]

# One stream write carries requests up to this many bytes (at least one request).
WRITE_BYTES = 8 * 1024 * 1024
#: ... and at most this many requests; a node refuses the rest of a larger batch.
WRITE_REQUESTS = 4096

KEEPALIVE_TIME_MS = 10_000
"""How often a channel pings a connection it has calls on, so that a dead node (a connection
that silently went away) is found within this plus gRPC's 20 s ping timeout."""

GRPC_OPTIONS: list[tuple[str, Any]] = [
    ("grpc.max_send_message_length", 64 * 1024 * 1024),
    ("grpc.max_receive_message_length", 64 * 1024 * 1024),
    ("grpc.keepalive_time_ms", KEEPALIVE_TIME_MS),
    # gRPC sends 2 pings while no data flows, then one a minute (max_pings_without_data):
    # without this, an idle stream was checked once a minute, not every KEEPALIVE_TIME_MS.
    ("grpc.http2.max_pings_without_data", 0),
    # Server side, what a node takes of those pings. gRPC's default counts a ping less
    # than 5 minutes after the last (no data sent in between) as a strike and ends the
    # connection at the third (GOAWAY "too_many_pings"): found by review, a client's idle
    # stream was torn down after 75-95 s (its pings at 10 s, 20 s, then a minute later),
    # with any write then in flight reported OutcomeUnknown. Half the ping interval
    # leaves room for timer slack and network jitter between two pings.
    ("grpc.http2.min_ping_interval_without_data_ms", KEEPALIVE_TIME_MS // 2),
]
"""The gRPC options of every channel and server of paxoskv, clients' and nodes' alike
(shard/transport.py): one message limit and one ping policy on both ends of a connection.
A server-side option has no effect on a channel, and a channel-side one none on a server."""

CHANNEL_OPTIONS: list[tuple[str, Any]] = [
    *GRPC_OPTIONS,
    # Reconnect soon after a node comes back (gRPC's default first backoff is 1 s).
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.min_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 1000),
    # This client's own TCP connections, not shared with other channels of the process.
    ("grpc.use_local_subchannel_pool", 1),
]

SCAN_PAGE = 1000
"""Largest number of items asked of one node in one scan request."""

CONNECT_TIMEOUT_S = 2.0
"""Longest wait for one node's channel to connect before trying another replica."""

CLUSTER_CHECK_S = 0.5
"""Longest wait for a second seed to name its cluster at `connect`."""

#: How long a stream's reader may take to read what an ending stream still brings (a
#: stopping node's last answers and its `drained` batch).
READER_END_S = 1.0

MAX_HEADER_TIMEOUT_MS = 3_600_000
"""The most a request's header says the client waits (Header.timeout_ms)."""

_STATUS_TIMEOUT_S = 2.0
MIN_ATTEMPT_TIMEOUT_S = 0.5
"""The shortest default attempt timeout (`default_attempt_timeout`): well above a leader's
answer time, and above an election timeout (150-300 ms), so that the replica asked next
already knows the new leader of a group whose old one went silent."""
_NOT_LEADER_FREE_HOPS = 3  # redirects followed without sleeping before backing off
# A retry is not started with less than this left before the deadline: its answer could not
# come in time, and a write sent then ends as OutcomeUnknown ("may have been applied")
# where DeadlineExceeded ("not applied") was true (a CI run on a loaded machine hit it).
_MIN_RETRY_LEFT_S = 0.02


def default_attempt_timeout(timeout_s: float) -> float:
    """How long a node may stay silent while a request waits there, by default: a quarter
    of the operation's deadline, at least MIN_ATTEMPT_TIMEOUT_S (so up to four replicas can
    be tried in it)."""
    return max(MIN_ATTEMPT_TIMEOUT_S, timeout_s / 4)


def _seed_list(seeds: str | Sequence[str]) -> list[str]:
    """The addresses of `seeds`, a "host:port,..." string or a sequence of such strings.

    Raises:
        InvalidArgument: an entry is not a str (found by review: `[addr, 5]` was accepted
            and failed at connect with "'int' object has no attribute 'encode'"), or not
            HOST:PORT (`router.seeds.check_address`, as the command line checks it).
    """
    if isinstance(seeds, str):
        return [check_address(address) for address in parse_seeds(seeds)]
    if isinstance(seeds, bytes | bytearray) or not isinstance(seeds, Iterable):
        entries: list[object] = [seeds]
    else:
        entries = list(seeds)
    addresses: list[str] = []
    for entry in entries:
        if not isinstance(entry, str):
            where = "" if entry is seeds else f" in {seeds!r}"
            raise InvalidArgument(
                f"a cluster address must be a str HOST:PORT, got {entry!r} "
                f"({type(entry).__name__}){where}"
            )
        addresses += (check_address(address) for address in parse_seeds(entry))
    return addresses


@dataclass(frozen=True, slots=True)
class CasResult:
    """The outcome of a compare-and-set.

    `version` is the version written when `succeeded` (a touch: the version it kept).
    When not: `current_value` and `current_version` describe the key as the node saw it
    (None and 0 when absent). `expires_at` is the timestamp from which the value's leader
    deletes it, when it succeeded with a `ttl_s` (0: it lives for ever).
    """

    succeeded: bool
    version: int
    current_value: bytes | None
    current_version: int
    expires_at: int = 0


@dataclass(frozen=True, slots=True)
class NodeStatus:
    """One node of the map as `status_all` saw it: its StatusResponse, or why none came."""

    node_id: int
    name: str
    address: str
    status: kv.StatusResponse | None
    error: str | None

    @property
    def reachable(self) -> bool:
        return self.status is not None


# ---------------------------------------------------------------------------- transport


class _SendFailed(Exception):
    """The connection failed before an answer came; `sent` = the request may have reached
    the node (it was written to a stream), False = it surely did not."""

    def __init__(self, address: str, reason: str, *, sent: bool) -> None:
        super().__init__(f"{address}: {reason}")
        self.address = address
        self.reason = reason
        self.sent = sent


class _TimedOut(Exception):
    """No answer by the deadline; `silent`: given up before it, the node having sent
    nothing at all for an attempt timeout (`_SilenceWatch`)."""

    def __init__(self, *, sent: bool, silent: bool = False) -> None:
        super().__init__("deadline passed while waiting for the answer")
        self.sent = sent
        self.silent = silent


class _Call:
    __slots__ = ("abandoned", "future", "request", "sent")

    def __init__(self, request: kv.Request, future: asyncio.Future[kv.Response]) -> None:
        self.request = request
        self.future = future
        self.sent = False
        self.abandoned = False


def _connection_refused(exc: BaseException) -> bool:
    """Whether the call never had a connection: the node refused it (nothing was sent)."""
    return (
        isinstance(exc, grpc.aio.AioRpcError)
        and exc.code() is grpc.StatusCode.UNAVAILABLE
        and "onnection refused" in (exc.details() or "")
    )


#: What `connect` says of a seed it ran out of time for, not one that failed.
_OUT_OF_TIME = frozenset({"no answer before the deadline", "not tried (deadline)"})
#: What `connect` says of a seed that answered in another protocol than gRPC's.
_NOT_GRPC = "not a gRPC server (it answered as an HTTP/1 one, such as a node's metrics port)"
#: Below this a timeout_s that ran out is said to be too short (connecting takes a few ms).
SHORT_TIMEOUT_S = 0.1

#: The address gRPC puts in its details ("last error: UNAVAILABLE: ipv4:127.0.0.1:7001:
#: Socket closed"), which every caller names already.
_GRPC_ADDRESS = re.compile(r"\b(?:ipv4|ipv6|unix):\S+: ")


def _describe_rpc_error(exc: BaseException) -> str:
    """A short reason for a failed gRPC call (gRPC's own details run to several lines),
    without gRPC's own copy of the address, so the same reason reads the same at every
    address."""
    if _connection_refused(exc):
        return "connection refused"
    if isinstance(exc, grpc.aio.AioRpcError):
        code = exc.code()
        details = _GRPC_ADDRESS.sub("", exc.details() or "")
        if code is grpc.StatusCode.DEADLINE_EXCEEDED:
            return "no answer before the deadline"
        if code is grpc.StatusCode.UNAVAILABLE and "timed out" in details:
            # gRPC's "connection attempt timed out before receiving SETTINGS frame": the
            # port accepts, the process does not answer (found by a README walk-through).
            return "no answer: the connection timed out (the node may be paused or overloaded)"
        if "Failed parsing HTTP/2" in details:
            # Found by an operator trial: a node's metrics port given as the cluster
            # address printed gRPC's parse error, cut off mid-sentence.
            return _NOT_GRPC
        if len(details) > 120:
            details = details[:117].rsplit(" ", 1)[0] + "..."  # at a word boundary
        return f"{code.name}: {details}".rstrip(": ")
    if isinstance(exc, TimeoutError):
        return "no answer before the deadline"
    return f"{type(exc).__name__}: {exc}"


@dataclass(slots=True)
class _Waiting:
    """A request `_SilenceWatch` watches."""

    on_silence: Callable[[], None]
    on_slow: Callable[[], None] | None
    quiet: int = 0  # checks in a row with nothing heard from the node
    checks: int = 0


class _SilenceWatch:
    """Tells a silent node from a slow one while requests wait at it: one per connection.

    A request may wait long at a live leader (parked for a lock or an intent, or behind a
    load), and nothing else may come back on the connection meanwhile. So while requests
    wait, every half attempt timeout with nothing heard from the node the connection probes
    it (`_Connection.probe`, outside the Batch stream); a request that has seen three such
    checks in a row with nothing heard, the probe's answer included (an attempt timeout or
    a little more), finds the node silent (found by review: a first form took a wait with
    nothing else heard for silence, and re-sent reads abandoned every copy at a live but
    slow leader, up to the deadline). One timer per connection, not one per request: a
    timer per request cost the put benchmark about a tenth of its throughput at 64 clients.
    """

    def __init__(self, conn: _Connection, period_s: float) -> None:
        self._conn = conn
        self._half_s = period_s / 2
        # Each waiting request: its silence callback, its callback once it has waited an
        # attempt timeout at a live node (None: none), quiet checks and checks in all.
        self._waiting: dict[_Call, _Waiting] = {}
        self._heard = conn.messages_in
        self._checked_at = 0.0
        self._timer: asyncio.TimerHandle | None = None

    def add(
        self, call: _Call, on_silence: Callable[[], None], on_slow: Callable[[], None] | None
    ) -> None:
        self._waiting[call] = _Waiting(on_silence, on_slow)
        if self._timer is None:
            loop = asyncio.get_running_loop()
            self._heard = self._conn.messages_in
            self._checked_at = loop.time()
            self._timer = loop.call_later(self._half_s, self._check)

    def discard(self, call: _Call) -> None:
        self._waiting.pop(call, None)

    def _check(self) -> None:
        self._timer = None
        conn = self._conn
        heard = conn.messages_in != self._heard or conn.probed_at > self._checked_at
        self._heard = conn.messages_in
        self._checked_at = asyncio.get_running_loop().time()
        quiet = False
        for call, waiting in list(self._waiting.items()):
            if call.future.done():
                del self._waiting[call]
                continue
            waiting.checks += 1
            waiting.quiet = 0 if heard else waiting.quiet + 1
            if waiting.quiet >= 3:
                del self._waiting[call]
                waiting.on_silence()
                continue
            quiet = quiet or waiting.quiet > 0
            if waiting.on_slow is not None and waiting.checks % 2 == 0:
                waiting.on_slow()  # an attempt timeout more at a node not (yet) silent
        if quiet:
            conn.probe(self._half_s)
        # A copy sent by `on_slow` above is added to the watch, which started the timer
        # again already (found by a test: two timers checked twice as often).
        if self._waiting and self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(self._half_s, self._check)

    def stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._waiting.clear()


class _Connection:
    """One node address: a channel, and one Batch stream multiplexing every request.

    A stream session starts on the first request (and after a break): wait until the channel
    is READY (or fail the queued requests as not sent), open the stream, then write every
    queued request per write while a reader resolves answers. When the stream breaks, the
    session fails what it wrote (`sent=True`) and what is still queued (`sent=False`); the
    next request starts a new session.
    """

    def __init__(
        self,
        address: str,
        options: Sequence[tuple[str, Any]],
        credentials: grpc.ChannelCredentials | None,
        attempt_timeout_s: float,
    ) -> None:
        self.address = address
        self.channel, self.stub = self._open(options, credentials)
        self._ids = itertools.count(1)
        self._queue: list[_Call] = []
        self._inflight: dict[int, _Call] = {}
        self._wake = asyncio.Event()
        self._session: asyncio.Task[None] | None = None
        self._broken = False
        self._break_reason = "the stream broke"
        self._drained = False  # the node said it reads no more of the stream (`drained`)
        #: Why the session's stream ends, from the end of its write loop to the end of the
        #: session (its reader reading the last answers): what is submitted then fails.
        self._ending: str | None = None
        self._closed = False
        # Counters: gRPC messages and requests each way (see RoutingClient.stats).
        self.messages_out = 0
        self.messages_in = 0
        self.requests_out = 0
        self.responses_in = 0
        self.sessions = 0
        #: Loop time of the last liveness probe the node answered (`probe`).
        self.probed_at = 0.0
        self._probe: asyncio.Task[None] | None = None
        #: The requests waiting here that a silent node would fail (`_SilenceWatch`).
        self.silence = _SilenceWatch(self, attempt_timeout_s)

    def _open(
        self, options: Sequence[tuple[str, Any]], credentials: grpc.ChannelCredentials | None
    ) -> tuple[Any, Any]:
        """The channel and the stub (the deterministic simulator connects otherwise)."""
        _note_grpc_use()
        channel = aio_channel(self.address, credentials, options)
        return channel, kv_pb2_grpc.KVStub(channel)

    # -- callers

    def probe(self, timeout_s: float) -> None:
        """Ask the node whether it lives, unless a probe is out already; `probed_at` moves
        when it answers. A unary call, outside the Batch stream: the node's reader of that
        stream may be held by the stream's own limits (128 gets parked for locks, its memory
        budget), and a probe queued behind them took a live node for silent (found by
        review)."""
        if self._closed or (self._probe is not None and not self._probe.done()):
            return
        self._probe = asyncio.get_running_loop().create_task(self._ask_alive(timeout_s))

    async def _ask_alive(self, timeout_s: float) -> None:
        with contextlib.suppress(grpc.RpcError):
            await self.stub.GetShardMap(kv.ShardMapRequest(), timeout=timeout_s)
            self.probed_at = asyncio.get_running_loop().time()

    def submit(self, request: kv.Request) -> _Call:
        if self._closed:
            raise ClientClosed("the client is closed")
        request.id = next(self._ids)
        call = _Call(request, asyncio.get_running_loop().create_future())
        if self._ending is not None:
            # Nothing more is written to an ending stream, and the next session starts only
            # once its reader is done (up to READER_END_S): fail now, so that the caller
            # tries the next replica at once (a node stopping in a rolling restart).
            call.future.set_exception(_SendFailed(self.address, self._ending, sent=False))
            return call
        self._queue.append(call)
        self._wake.set()
        if self._session is None or self._session.done():
            self._session = asyncio.create_task(self._run(), name=f"kv-stream-{self.address}")
        return call

    def expire(self, call: _Call, silent: bool = False) -> None:
        """The caller's deadline passed (or the node is `silent` and the caller gives up on
        it): answer it now; never write it afterwards (rule 2)."""
        if not call.future.done():
            call.future.set_exception(_TimedOut(sent=call.sent, silent=silent))
        self.abandon(call)

    def abandon(self, call: _Call) -> None:
        call.abandoned = True
        if call.sent:
            self._inflight.pop(call.request.id, None)

    async def close(self) -> None:
        self._closed = True
        self.silence.stop()
        if self._probe is not None and not self._probe.done():
            await cancel_and_wait(self._probe)
        session = self._session
        if session is not None and not session.done():
            await cancel_and_wait(session)
        self._fail_all(ClientClosed("the client is closed"))
        await self.channel.close()

    # -- the stream session

    async def _run(self) -> None:
        self.sessions += 1
        self._broken = False
        self._drained = False
        try:
            reason = await self._wait_ready()
        except asyncio.CancelledError:
            self._fail_all(ClientClosed("the client is closed"))
            raise
        if reason is not None:
            self._fail_queued(reason)
            return
        stream = self.stub.Batch()
        reader = asyncio.create_task(self._read(stream), name=f"kv-reader-{self.address}")
        failure = "the stream was closed"
        ending = False  # the stream is ending: its last answers may still come
        try:
            while True:
                await self._wake.wait()
                self._wake.clear()
                if self._broken or stream.done():
                    failure = self._break_reason
                    break
                if self.channel.get_state() is not grpc.ChannelConnectivity.READY:
                    # The connection went away (e.g. the node stopped) and the reader has not
                    # seen it yet: nothing queued is written to a dying stream.
                    failure = "the connection to the node was lost"
                    ending = True
                    break
                if not self._queue:
                    continue
                batch, self._queue = _take_write(self._queue)
                if self._queue:
                    self._wake.set()  # the rest goes in the next write
                calls = [c for c in batch if not (c.abandoned or c.future.done())]
                if not calls:
                    continue
                for call in calls:
                    call.sent = True
                    self._inflight[call.request.id] = call
                try:
                    await stream.write(kv.RequestBatch(requests=[c.request for c in calls]))
                except asyncio.InvalidStateError:
                    # grpc.aio refuses before serializing: the RPC had already finished, so
                    # nothing of this batch left the client. (An AioRpcError from the send
                    # itself proves no such thing: its bytes may have left, so those calls
                    # stay `sent` and a write among them is reported OutcomeUnknown.)
                    for call in calls:
                        call.sent = False
                        self._inflight.pop(call.request.id, None)
                    self._queue[:0] = calls
                    failure = "the stream had closed"
                    break
                self.messages_out += 1
                self.requests_out += len(calls)
        except asyncio.CancelledError:
            stream.cancel()
            reader.cancel()
            self._fail_all(ClientClosed("the client is closed"))
            raise
        except Exception as exc:
            failure = f"stream write failed ({_describe_rpc_error(exc)})"
            ending = True
            # Refused, the call never had a connection (a call keeps the one it started on):
            # none of its requests left (a node that stopped between `_wait_ready` and here).
            self._drained = _connection_refused(exc)
        # Nothing more is written to this stream: what is submitted from here on fails now.
        self._ending = failure
        try:
            await self._end(stream, reader, failure, ending)
        finally:
            self._ending = None

    async def _end(
        self, stream: Any, reader: asyncio.Task[None], failure: str, ending: bool
    ) -> None:
        """Read what the ending stream still brings, then fail what it leaves unanswered."""
        if (stream.done() or ending) and not reader.done():
            # The node ended the stream (a write to it fails), or is closing the connection (a
            # stopping node's GOAWAY): the reader reads the last answers and the `drained`
            # batch that may still come, or meets the failure.
            self._fail_queued(failure)
            with contextlib.suppress(asyncio.CancelledError, Exception, TimeoutError):
                await asyncio.wait_for(asyncio.shield(reader), READER_END_S)
        stream.cancel()
        reader.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await reader
        # The reader sets `_drained` only after the last answer: what is still in flight then
        # was never read by the node.
        self._fail_inflight(failure, sent=not self._drained)
        self._fail_queued(failure)

    async def _read(self, stream: Any) -> None:
        try:
            while True:
                batch = await stream.read()
                if batch is grpc.aio.EOF:
                    self._break_reason = "the node closed the stream"
                    break
                self._take_answers(batch)
                if batch.drained:
                    self._break_reason = "the node is shutting down"
                    self._drained = True
                    break
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self._break_reason = f"the stream broke ({_describe_rpc_error(exc)})"
        finally:
            self._broken = True
            self._wake.set()

    def _take_answers(self, batch: kv.ResponseBatch) -> None:
        """Answer the calls a batch read from the node answers."""
        self.messages_in += 1
        inflight = self._inflight
        for response in batch.responses:
            call = inflight.pop(response.id, None)
            if call is not None and not call.future.done():
                self.responses_in += 1
                call.future.set_result(response)

    async def _wait_ready(self) -> str | None:
        """None once the channel is READY, else why it is not (the node is unreachable)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + CONNECT_TIMEOUT_S
        state = self.channel.get_state(try_to_connect=True)
        while state is not grpc.ChannelConnectivity.READY:
            if state is grpc.ChannelConnectivity.SHUTDOWN:
                return "the channel is shut down"
            if state is grpc.ChannelConnectivity.TRANSIENT_FAILURE:
                # Fail fast: the caller tries another replica or backs off. gRPC reconnects
                # in the background (CHANNEL_OPTIONS bound its backoff to 1 s). The state
                # does not say why: a paused node's handshake timing out lands here too
                # (found by a user trial: a SIGSTOPped majority read "connection refused").
                return "cannot connect (refused, or the node is down, paused or unreachable)"
            remaining = deadline - loop.time()
            if remaining <= 0:
                return f"not connected after {CONNECT_TIMEOUT_S:g} s"
            try:
                await asyncio.wait_for(self.channel.wait_for_state_change(state), remaining)
            except TimeoutError:
                return f"not connected after {CONNECT_TIMEOUT_S:g} s"
            state = self.channel.get_state(try_to_connect=True)
        return None

    def _fail_queued(self, reason: str) -> None:
        queued, self._queue = self._queue, []
        for call in queued:
            if not call.future.done():
                call.future.set_exception(_SendFailed(self.address, reason, sent=False))

    def _fail_inflight(self, reason: str, *, sent: bool = True) -> None:
        inflight, self._inflight = self._inflight, {}
        for call in inflight.values():
            if not call.future.done():
                call.future.set_exception(_SendFailed(self.address, reason, sent=sent))

    def _fail_all(self, exc: ClientClosed) -> None:
        """Closing: calls already written may have been applied (a write among them is
        reported OutcomeUnknown); only the queued ones surely were not."""
        self._fail_inflight(str(exc))
        queued, self._queue = self._queue, []
        for call in queued:
            if not call.future.done():
                call.future.set_exception(exc)


# ---------------------------------------------------------------------------- client


_ROUTING_CODES = {kv.NOT_LEADER, kv.UNAVAILABLE, kv.WRONG_SHARD, kv.UNKNOWN_GROUP}


def response_error(response: kv.Response, asked: str) -> kv.Error | None:
    """The error a response to a request of kind `asked` carries, if any."""
    kind = response.WhichOneof("result")
    if kind == "error":
        return response.error
    if kind != asked:
        # No node answers so. Taken as a success, an empty answer's defaults (not prepared,
        # not committed) would read as real outcomes to recovery (found by review).
        return kv.Error(
            code=kv.INTERNAL,
            message=f"an answer of kind {kind or 'none'} to a {asked} request",
        )
    result = getattr(response, kind)
    if result.HasField("error") and result.error.code != kv.OK:
        error: kv.Error = result.error
        return error
    return None


def _code_name(code: int) -> str:
    try:
        return str(kv.ErrorCode.Name(code))
    except ValueError:
        return f"code {code}"


#: The process that first opened a gRPC channel of a client here (None: none did).
_grpc_pid: int | None = None


def _note_grpc_use() -> None:
    global _grpc_pid
    if _grpc_pid is None:
        _grpc_pid = os.getpid()


def _refuse_after_fork() -> None:
    """Found by review: a child forked (multiprocessing's default on Linux) from a process
    whose clients had used gRPC crashed (SIGSEGV) or hung until its deadline when it made
    a client of its own: gRPC's core does not survive a fork."""
    if _grpc_pid is not None and _grpc_pid != os.getpid():
        raise InvalidArgument(
            f"this process was forked from process {_grpc_pid} after paxoskv's client used "
            "gRPC there, and gRPC does not survive a fork: start worker processes with "
            "multiprocessing.get_context('spawn') (or 'forkserver'), or fork before any "
            "client is used"
        )


class RoutingClient:
    """An asyncio client of one paxoskv cluster; safe for many concurrent coroutines.

    Args:
        seeds: client addresses ("host:port") of some nodes; any one that answers will do.
        cluster_id: the cluster to talk to; learned from the first seed when None. A node
            of another cluster is refused with `WrongCluster`.
        timeout_s: the default deadline of one operation, retries included.
        attempt_timeout_s: how long a node may stay silent (answering nothing, not even a
            probe, `_SilenceWatch`) while a request waits there before it stops being its
            group's leader guess (the request goes on waiting for its answer, unless its
            caller marks it `idempotent`); default `default_attempt_timeout(timeout_s)`.
        backoff: retry delays (default: full jitter, 10 ms doubling up to 0.5 s).
        rng: the randomness of the backoff jitter (default: a fresh `random.Random()`).
        tls: the CA to trust and the certificate to present (`router.tls.TlsFiles`), or
            None for plaintext; by default the files PAXOSKV_TLS_CA/CERT/KEY name, if set.

    Use as `async with RoutingClient([...]) as client:` or call `connect()` and `close()`.
    """

    def __init__(
        self,
        seeds: Sequence[str],
        *,
        cluster_id: str | None = None,
        timeout_s: float = 10.0,
        attempt_timeout_s: float | None = None,
        backoff: Backoff | None = None,
        rng: random.Random | None = None,
        channel_options: Sequence[tuple[str, Any]] = CHANNEL_OPTIONS,
        tls: ClientTls = "env",
    ) -> None:
        _refuse_after_fork()
        seed_list = _seed_list(seeds)
        if not seed_list:
            raise InvalidArgument("no cluster address given (expected HOST:PORT[,HOST:PORT...])")
        if not timeout_s > 0:
            raise InvalidArgument(f"timeout_s must be > 0, got {timeout_s}")
        if attempt_timeout_s is not None and not attempt_timeout_s > 0:
            raise InvalidArgument(f"attempt_timeout_s must be > 0, got {attempt_timeout_s}")
        self._cache = RoutingCache(seed_list)
        self._cluster_id = cluster_id
        self._timeout_s = timeout_s
        self._attempt_timeout_s = attempt_timeout_s or default_attempt_timeout(timeout_s)
        self._backoff = backoff or Backoff(base_s=0.01, max_s=0.5)
        self._rng = rng or random.Random()
        self._options = list(channel_options)
        try:
            files = resolve_client_tls(tls)
            self._credentials = None if files is None else files.channel_credentials()
            # TlsFiles with a CA alone: the hint of an unreachable cluster names the missing
            # client certificate (a node with require_client_cert, the default, refuses it).
            self._no_client_cert = isinstance(files, TlsFiles) and files.cert_file is None
        except TlsSetupError as exc:
            raise InvalidArgument(str(exc)) from None
        self._conns: dict[str, _Connection] = {}
        self._refreshing: asyncio.Task[None] | None = None
        self._connecting: asyncio.Task[RoutingClient] | None = None
        self._closed = False

    # ------------------------------------------------------------------ lifecycle

    @property
    def shard_map(self) -> ShardMap | None:
        """The newest shard map this client has (None before `connect`)."""
        return self._cache.shard_map

    @property
    def cluster_id(self) -> str | None:
        return self._cluster_id

    @property
    def routing(self) -> RoutingCache:
        """The routing cache (leader guesses, map); read-only use intended."""
        return self._cache

    async def __aenter__(self) -> RoutingClient:
        return await self.connect()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def connect(self) -> RoutingClient:
        """Fetch the shard map from the first seed that answers; learn the cluster id (and
        check it with the next seed, when there is one that answers).

        Raises:
            WrongCluster: a seed belongs to another cluster than `cluster_id`, or (no
                `cluster_id` given) two seeds belong to two clusters.
            Unavailable: no seed answered (the message lists each seed's failure).
            ClientClosed: the client is (or was meanwhile) closed.
        """
        self._check_open()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._timeout_s
        # Each reason once, with the seeds that gave it (found by a new user's review: a
        # TLS refusal repeated gRPC's 100-character reason for every address).
        failures: dict[str, list[str]] = {}
        learns = self._cluster_id is None
        wrong_cluster: WrongCluster | None = None
        seeds = self._cache.seeds
        for n, seed in enumerate(seeds):
            now = loop.time()
            if now >= deadline:
                failures.setdefault("not tried (deadline)", []).append(seed)
                continue
            try:
                check_with = seeds[n + 1] if learns and n + 1 < len(seeds) else None
                await self._fetch_map(
                    seed, min(deadline, now + CONNECT_TIMEOUT_S + 1.0), check_with, deadline
                )
                return self
            except WrongCluster as exc:
                if learns:
                    raise
                # A seed of another cluster is no seed of ours (a port taken over after our
                # node stopped): the next one may be; refused only if none is.
                wrong_cluster = exc
                # Without the seed's own address, which `where` names (found by a
                # client-API review: each address stood twice).
                reason = str(exc).removeprefix(f"{seed}: ")
                failures.setdefault(f"another cluster ({reason})", []).append(seed)
            except ClientClosed:
                raise
            except (grpc.aio.AioRpcError, RouterError, TimeoutError, ValueError) as exc:
                failures.setdefault(_describe_rpc_error(exc), []).append(seed)
        if self._credentials is None:
            tls_hint = (
                "; a cluster with TLS needs the CA (PAXOSKV_TLS_CA) and, if it asks for one, "
                "a client certificate (PAXOSKV_TLS_CERT, PAXOSKV_TLS_KEY)"
            )
        elif self._no_client_cert:
            tls_hint = (
                "; this client speaks TLS with a CA but no client certificate, which a cluster "
                "that requires one (require_client_cert, the default) refuses: give "
                "--tls-cert and --tls-key (PAXOSKV_TLS_CERT, PAXOSKV_TLS_KEY, or "
                "TlsFiles(ca, cert, key)); also check that the nodes use TLS and that the CA "
                "signed their certificates"
            )
        else:
            tls_hint = (
                "; this client speaks TLS (tls=, or PAXOSKV_TLS_CA when none is given): check "
                "that the nodes use TLS, that the CA signed their certificates, that these "
                "name the addresses used, and that the CA signed the client certificate"
            )
        where = "; ".join(f"{', '.join(seeds)}: {reason}" for reason, seeds in failures.items())
        if wrong_cluster is not None:
            raise WrongCluster(f"no node of cluster {self._cluster_id!r} answered: {where}")
        if set(failures) <= _OUT_OF_TIME and self._timeout_s < SHORT_TIMEOUT_S:
            # Found by a client-API review: a 4 ms timeout_s got the advice to check the
            # addresses, while the cluster was fine and only the time ran out.
            raise Unavailable(
                f"no node answered at {where} within the timeout of {self._timeout_s:g} s, "
                f"too short to connect (a first connection takes a few ms): give a "
                f"timeout of {SHORT_TIMEOUT_S:g} s or more (timeout_s=, or --timeout on the "
                "command line)"
            )
        if set(failures) == {_NOT_GRPC}:
            raise Unavailable(
                f"no paxoskv node at {where}: give the nodes' client addresses (`paxoskv "
                "cluster start` and `paxoskv cluster status` print them)"
            )
        raise Unavailable(
            f"no node answered at {where} (check the cluster addresses and that the nodes are "
            f"running{tls_hint})"
        )

    async def _check_cluster_of(
        self, other: str, learned_from: str, cluster_id: str, deadline: float
    ) -> None:
        """Found by review: a node of another cluster on a seed's port (taken over after
        our node stopped) answered first, and the client wrote to that cluster. A second
        seed of another cluster says so; one that does not answer (within CLUSTER_CHECK_S:
        a stopped node refuses the connection at once, a host that is down costs that
        much) says nothing."""
        loop = asyncio.get_running_loop()
        timeout = min(deadline, loop.time() + CLUSTER_CHECK_S) - loop.time()
        try:
            status = await self._connection(other).stub.Status(
                kv.StatusRequest(), timeout=max(timeout, 0.001)
            )
        except (grpc.aio.AioRpcError, TimeoutError):
            return
        if status.cluster_id and status.cluster_id != cluster_id:
            raise WrongCluster(
                f"the seeds belong to two clusters: {learned_from} to {cluster_id!r}, "
                f"{other} to {status.cluster_id!r} (a node of another cluster on a port "
                "ours used?): give the cluster id (cluster_id=, --cluster-id)"
            )

    async def close(self) -> None:
        """Close every connection; outstanding calls fail with ClientClosed."""
        self._closed = True
        if self._refreshing is not None:
            self._refreshing.cancel()
        conns, self._conns = list(self._conns.values()), {}
        await asyncio.gather(*(c.close() for c in conns), return_exceptions=True)
        # grpc.aio finishes each cancelled call in a task of its own; give those tasks a few
        # loop turns, or closing the loop right after warns "Task was destroyed but it is
        # pending".
        for _ in range(3):
            await asyncio.sleep(0)

    def _check_open(self) -> None:
        if self._closed:
            raise ClientClosed("the client is closed")

    def _connection(self, address: str) -> _Connection:
        conn = self._conns.get(address)
        if conn is None:
            self._check_open()
            conn = self._conns[address] = self._new_connection(address)
        return conn

    def _new_connection(self, address: str) -> _Connection:
        """A connection to `address` (the deterministic simulator makes its own)."""
        return _Connection(address, self._options, self._credentials, self._attempt_timeout_s)

    def stats(self) -> dict[str, int]:
        """gRPC messages and requests sent/received over the Batch streams, summed."""
        out = {"messages_out": 0, "messages_in": 0, "requests_out": 0, "responses_in": 0}
        out["sessions"] = 0
        for c in self._conns.values():
            out["messages_out"] += c.messages_out
            out["messages_in"] += c.messages_in
            out["requests_out"] += c.requests_out
            out["responses_in"] += c.responses_in
            out["sessions"] += c.sessions
        return out

    # ------------------------------------------------------------------ shard map

    async def _fetch_map(
        self,
        address: str,
        deadline: float,
        check_with: str | None = None,
        check_deadline: float = 0.0,
    ) -> None:
        """Fetch the map from `address` by `deadline` (loop time), its cluster id first if
        this client has none; that id is checked with seed `check_with` (by
        `check_deadline`) before anything is kept."""
        try:
            await self._fetch_map_from(address, deadline, check_with, check_deadline)
        except asyncio.CancelledError:
            # close() closed the channel under the call (grpc.aio cancels it), not a
            # cancellation of the task asking.
            current = asyncio.current_task()
            if self._closed and current is not None and not current.cancelling():
                raise ClientClosed("the client is closed") from None
            raise

    async def _fetch_map_from(
        self, address: str, deadline: float, check_with: str | None, check_deadline: float
    ) -> None:
        stub = self._connection(address).stub
        loop = asyncio.get_running_loop()
        # Both calls share the one deadline (found by review: each was given the whole
        # timeout, so a seed slow to answer both held connect() for twice the client's).
        cluster_id = self._cluster_id
        check: asyncio.Task[None] | None = None
        if cluster_id is None:
            status = await stub.Status(kv.StatusRequest(), timeout=deadline - loop.time())
            if not status.cluster_id:
                raise Unavailable(f"{address} did not name its cluster")
            cluster_id = status.cluster_id
            if check_with is not None:
                # Beside the map's fetch (found by review: before it, a second seed that
                # hung took a short timeout's whole budget), and both done before the id
                # and the map are kept (found by review: kept first, the next call went on
                # with whichever cluster answered first).
                check = asyncio.ensure_future(
                    self._check_cluster_of(check_with, address, cluster_id, check_deadline)
                )
        try:
            reply = await stub.GetShardMap(
                kv.ShardMapRequest(cluster_id=cluster_id), timeout=deadline - loop.time()
            )
            if check is not None:
                await check
        finally:
            if check is not None:
                if not check.done():
                    check.cancel()
                elif not check.cancelled():
                    check.exception()  # retrieved: the map's own error, if any, stands
        if reply.HasField("error") and reply.error.code != kv.OK:
            if reply.error.code == kv.WRONG_CLUSTER:
                raise WrongCluster(f"{address}: {reply.error.message}")
            raise Unavailable(f"{address}: {reply.error.message}")
        shard_map = decode_shard_map(reply.shard_map.SerializeToString())
        self._cluster_id = cluster_id
        self._cache.update(shard_map)

    async def refresh_map(self, deadline: float | None = None) -> None:
        """Fetch a fresh shard map (one fetch shared by all concurrent callers).

        Tries the meta leader, the other nodes of the map, then the seeds. Keeps the cached
        map when none answers (routing may still work).

        Raises:
            ClientClosed: the client is (or was meanwhile) closed.
        """
        self._check_open()
        task = self._refreshing
        if task is None or task.done():
            task = self._refreshing = asyncio.create_task(self._refresh_once())
        with contextlib.suppress(TimeoutError):
            await self._await_shared(task, deadline)

    async def _refresh_once(self) -> None:
        loop = asyncio.get_running_loop()
        for address in self._cache.refresh_targets():
            try:
                await self._fetch_map(address, loop.time() + CONNECT_TIMEOUT_S)
                return
            except ClientClosed:
                raise
            except (grpc.aio.AioRpcError, RouterError, TimeoutError, ValueError):
                # RouterError includes WrongCluster: our id was confirmed at connect, so a
                # node of another cluster on one of the map's addresses is no node of ours
                # (found by review: it failed the refresh).
                continue

    # ------------------------------------------------------------------ the request core

    async def send(
        self,
        request: kv.Request,
        *,
        key: bytes | None = None,
        group_id: int | None = None,
        write: bool,
        timeout_s: float | None = None,
        passthrough: Collection[int] = (),
        idempotent: bool = False,
    ) -> kv.Response:
        """Send one request to its group's leader, retrying within the deadline.

        Args:
            request: a `kv.Request` with its op set; the op's header (cluster id, group,
                map version) is filled in on every attempt.
            key: route to the group owning this key (re-located after a map refresh).
            group_id: route to this group instead; if the map changes under it, raises
                WrongShard so the caller can re-plan (e.g. a scan split differently).
            write: the request changes state: it is never re-sent once it may have
                reached a node (OutcomeUnknown).
            timeout_s: the deadline of this call, retries included (default: the client's).
            passthrough: error codes returned in the response instead of raised (e.g. a
                transaction conflict the caller handles).
            idempotent: the request may be applied twice to the same effect: it is given
                up at a node that turns out silent while it waits there (`_SilenceWatch`);
                a read is then sent again where the leader guess now points, a write
                raises DeadlineExceeded or, when it was sent, OutcomeUnknown at once, for
                callers that re-send it elsewhere (`txn.resend`); and at a live
                node that has not answered it for an attempt timeout, one more copy goes
                there (an answer lost on the way), the first answer without an error
                winning.

        Returns:
            The node's `kv.Response` (with no error, or one of `passthrough`).

        Raises:
            OutcomeUnknown: a write may or may not have been applied.
            DeadlineExceeded: no answer within the deadline (nothing was applied).
            WrongShard / UnknownGroup: `group_id` routing and the shard map changed.
            LimitExceeded: over a size limit (`router.limits`): refused before sending when
                the client can tell, else by the node.
            WrongCluster, InvalidArgument, ServerError: see router.client_errors.
        """
        if (key is None) == (group_id is None):
            raise InvalidArgument("send() needs exactly one of key= or group_id=")
        deadline = self._deadline(timeout_s)
        await self.ready(deadline)
        return await self._send(request, key, group_id, write, deadline, passthrough, idempotent)

    async def _send(
        self,
        request: kv.Request,
        key: bytes | None,
        group_id: int | None,
        write: bool,
        deadline: float,
        passthrough: Collection[int] = (),
        idempotent: bool = False,
    ) -> kv.Response:
        self._check_open()
        loop = asyncio.get_running_loop()
        cache = self._cache
        kind = request.WhichOneof("op")
        if kind is None:
            raise InvalidArgument("the request has no operation set")
        op = getattr(request, kind)
        _refuse_oversized(request, kind, op)
        has_header = "header" in op.DESCRIPTOR.fields_by_name
        # A request routed by group was planned on this map (a scan's part, a transaction's
        # share of keys): under another one it must be planned again.
        planned = cache.map_version
        attempt = 0  # backoff exponent
        hops = 0  # consecutive NOT_LEADER redirects
        # Replicas whose address answered as another cluster (the empty frozenset is one
        # shared object: nothing allocated per request on the way that never meets one).
        foreign: frozenset[int] = frozenset()
        last = ""  # what the last try met ("": no try yet)
        started = loop.time()
        target = "the cluster"
        back_off = False  # whether the next try waits for its backoff first
        while True:
            if back_off:
                await self._sleep(attempt, deadline)
                attempt += 1
            back_off = True  # a retry below waits unless its branch says otherwise
            if loop.time() >= deadline:
                if not last:
                    # Found by an application trial: "last: no attempt made" after the
                    # process was paused said nothing of why.
                    raise DeadlineExceeded(
                        f"the deadline of a {kind} request passed {loop.time() - started:.1f} "
                        f"s in, before a try was sent to {target} (a timeout shorter than the "
                        "wait for a connection, or a process paused or starved of CPU)"
                    )
                # Every try of a write was refused or never sent (one that may have been
                # applied raised OutcomeUnknown): found by a README trial, the message left
                # a user of a cluster without a majority wondering. Not for an idempotent
                # write: its caller re-sends it (txn.resend), an earlier copy may have been
                # applied, and this message would be quoted beside that (found by review).
                written = "; nothing was written" if write and not idempotent else ""
                # The request's kind named: found by an application trial, whose watchers'
                # periodic snapshot checks read as the watches giving up.
                raise DeadlineExceeded(
                    f"gave up on a {kind} request at the deadline, after "
                    f"{loop.time() - started:.1f} s of tries at {target}{written}; last: {last}. "
                    "A group has a leader to answer once a majority of its replicas are up and "
                    "connected"
                )
            if cache.needs_refresh:
                await self.refresh_map(deadline)
            shard_map = cache.shard_map
            if shard_map is None:
                last = "no shard map: no node answered"
                continue
            gid = shard_map.locate(key).group_id if key is not None else group_id
            assert gid is not None
            if not shard_map.has_group(gid):
                raise UnknownGroup(gid, shard_map.version)
            if group_id is not None and shard_map.version != planned:
                # Found by review: a scan part planned on map v1, sent under v2 after a
                # refresh here, met WRONG_SHARD of v2 at every try until the deadline.
                raise WrongShard(key or b"", shard_map.version, gid)
            target = f"group {gid}'s leader"
            asked = cache.leader_for(gid)
            assert asked is not None
            address = cache.address_of(asked)
            if has_header:
                header = op.header
                header.cluster_id = self._cluster_id or ""
                header.group_id = gid
                header.map_version = shard_map.version
                left_s = deadline - asyncio.get_running_loop().time()
                # Capped before int(): a deadline of inf (timeout_s=math.inf, "no limit")
                # raised OverflowError from every operation (found by review).
                header.timeout_ms = max(1, int(min(left_s * 1000, MAX_HEADER_TIMEOUT_MS)))
            try:
                response = await self._exchange(
                    address,
                    request,
                    deadline,
                    functools.partial(cache.on_not_leader, gid, asked),
                    idempotent,
                    write,
                )
            except _SendFailed as exc:
                if exc.sent and write:
                    raise OutcomeUnknown(
                        f"the connection to {exc.address} failed after the write was sent "
                        f"({exc.reason}); it may or may not have been applied, and "
                        f"{OUTCOME_ADVICE}"
                    ) from None
                last = str(exc)
                cache.on_not_leader(gid, asked)
                continue
            except _TimedOut as exc:
                # A leader that does not answer at all (stopped, cut off) is no better a
                # guess than the next replica, which names the leader if it is not: the
                # caller's retry goes there (found by review: every retry waited out its
                # whole deadline at the silent node while another replica led).
                cache.on_not_leader(gid, asked)
                short = _short_time_note(deadline - started)
                if exc.sent and write:
                    raise OutcomeUnknown(
                        f"no answer from {address} before the deadline{short}; the write may "
                        f"or may not have been applied, and {OUTCOME_ADVICE}"
                    ) from None
                if exc.silent:
                    silence = (
                        f"{address} sent nothing for {self._attempt_timeout_s:g} s, not even "
                        "an answer to a probe (stopped or cut off)"
                    )
                    if write:
                        # A write sent nowhere yet: its caller re-sends it (txn.resend).
                        raise DeadlineExceeded(f"gave up: {silence}") from None
                    # A read is asked again where the guess now points, as NOT_LEADER would
                    # send it (found by review: `paxoskv get` waited out its whole --timeout
                    # at a frozen leader while another replica led).
                    last = silence
                    continue
                before = f" (the try before met: {last})" if last else ""
                raise DeadlineExceeded(
                    f"gave up: no answer from {address} before the deadline{short}{before}"
                ) from None
            error = response_error(response, request.WhichOneof("op"))
            if error is None or error.code in passthrough:
                return response
            code = error.code
            last = f"{address} answered {_code_name(code)}: {error.message}"
            if code == kv.NOT_LEADER:
                cache.on_not_leader(gid, asked, error.leader_id or None)
                hops += 1
                back_off = hops > _NOT_LEADER_FREE_HOPS
                continue
            hops = 0
            if code == kv.UNAVAILABLE:
                cache.on_not_leader(gid, asked)
                continue
            if code == kv.WRONG_CLUSTER:
                # Our cluster id came with the map from a node of our cluster (`connect`):
                # one of its addresses now answers as another cluster (a port taken over
                # after our node stopped), which is no replica of this group. Nothing was
                # applied; ask the next replica (found by review: this was fatal, though
                # the group had a live leader), unless every one answered so.
                foreign |= {asked}
                if foreign >= set(shard_map.replicas(gid)):
                    raise WrongCluster(
                        f"every replica of group {gid} answers as another cluster (last: "
                        f"{address}: {error.message}): the cluster at these addresses is "
                        f"not {self._cluster_id!r}"
                    )
                cache.on_not_leader(gid, asked)
                continue
            if code == kv.CONFLICT:
                # A prepared transaction holds the key; nothing was applied and its decision
                # is moments away: back off and retry at the same leader.
                continue
            if code in (kv.WRONG_SHARD, kv.UNKNOWN_GROUP):
                if code == kv.UNKNOWN_GROUP:
                    cache.mark_stale()
                version = shard_map.version
                if cache.on_wrong_shard(error.map_version):
                    await self.refresh_map(deadline)
                if group_id is not None and (
                    cache.map_version != version
                    or (code == kv.WRONG_SHARD and error.map_version == version)
                ):
                    # The map changed, or the node refused the request under the very map
                    # we route by: it was planned on an older one (found by review: a scan
                    # part re-sent after a CONFLICT pause, during which another request
                    # refreshed the map, was re-sent as is until the deadline).
                    if code == kv.UNKNOWN_GROUP:
                        raise UnknownGroup(gid, cache.map_version)
                    raise WrongShard(key or b"", cache.map_version or 0, gid)
                # A refreshed map is tried at once; the same one after a backoff (the node's
                # map is older than ours, ours could not be refreshed, or the node is wrong).
                back_off = cache.map_version == version
                if back_off and code == kv.WRONG_SHARD and error.map_version == version:
                    # The same version, other ranges: a node that is wrong about them
                    # (found by review: a misconfigured node held the client on it until
                    # its deadline); another replica may serve the key.
                    cache.on_not_leader(gid, asked)
                continue
            raise self._fatal(code, error, address, write)

    def _fatal(self, code: int, error: kv.Error, address: str, write: bool) -> ClientError:
        text = f"{address}: {error.message or _code_name(code)}"
        if code == kv.LIMIT_EXCEEDED:
            return LimitExceeded(text)
        if code == kv.INVALID_ARGUMENT:
            return InvalidArgument(text)
        if code == kv.SNAPSHOT_TOO_OLD:
            return SnapshotTooOld(text)
        if code == kv.OUTCOME_UNKNOWN:
            if write:
                return OutcomeUnknown(f"{text}; {OUTCOME_ADVICE}")
            return Unavailable(text)
        return ServerError(f"{_code_name(code)} from {text}", maybe_committed=write)

    async def _exchange(
        self,
        address: str,
        request: kv.Request,
        deadline: float,
        on_silence: Callable[[], None],
        idempotent: bool,
        write: bool,
    ) -> kv.Response:
        """Send `request` to `address` and wait for its answer until `deadline`; call
        `on_silence` if the node turns out silent meanwhile (`_SilenceWatch`), and then,
        when `idempotent`, give up on it (_TimedOut, `silent`): the caller sends it
        elsewhere; otherwise it still waits (only its caller may decide to re-send it).
        An `idempotent` request a live node leaves unanswered for an attempt timeout gets
        one more copy there; the first answer without an error is taken, and a `write`'s
        refusal only once no other copy written to the node is unanswered."""
        conn = self._connection(address)
        call = conn.submit(request)
        loop = asyncio.get_running_loop()
        timer = loop.call_at(deadline, conn.expire, call)
        watched = loop.time() + self._attempt_timeout_s < deadline
        copies: list[_Call] = []
        if watched:

            def silent() -> None:
                on_silence()
                if idempotent:
                    conn.expire(call, silent=True)

            def adopt(copy: asyncio.Future[kv.Response]) -> None:
                # Only an answer without an error: a copy refused (NOT_LEADER, say) says
                # nothing of the first one, which may still be applied.
                if copy.cancelled() or copy.exception() is not None or call.future.done():
                    return
                answer = copy.result()
                if response_error(answer, answer.WhichOneof("result") or "") is None:
                    call.future.set_result(answer)

            def another_copy() -> None:
                copy = kv.Request()
                copy.CopyFrom(request)
                sent = conn.submit(copy)
                sent.future.add_done_callback(adopt)
                copies.append(sent)
                # Watched too: a refusal of the first copy waits for this one, and a node
                # frozen meanwhile must be left as the first copy's silence leaves it
                # (found by review: the wait ran to the deadline, the new leader unasked).
                conn.silence.add(sent, functools.partial(copy_silent, sent), None)

            def copy_silent(copy: _Call) -> None:
                on_silence()
                conn.expire(copy, silent=True)

            conn.silence.add(call, silent, another_copy if idempotent else None)
        try:
            response = await call.future
            if write and copies:
                response = await _answer_of_copies(
                    response, copies, request.WhichOneof("op") or "", deadline
                )
            return response
        finally:
            timer.cancel()
            if watched:
                conn.silence.discard(call)
            if not call.future.done() or call.future.cancelled():
                conn.abandon(call)
            for copy in copies:
                conn.silence.discard(copy)
                if not copy.future.done():
                    conn.abandon(copy)
                    copy.future.cancel()

    async def _sleep(self, attempt: int, deadline: float) -> None:
        """The backoff before retry `attempt`; until the deadline when too little would be
        left after it for the retry to be answered (the caller then stops)."""
        loop = asyncio.get_running_loop()
        delay = self._backoff.delay(attempt, self._rng)
        if deadline - loop.time() - delay >= _MIN_RETRY_LEFT_S:
            await asyncio.sleep(delay)
            return
        while loop.time() < deadline:  # a timer may fire a hair early
            await asyncio.sleep(deadline - loop.time())

    def _deadline(self, timeout_s: float | None) -> float:
        timeout = self._timeout_s if timeout_s is None else timeout_s
        if timeout != timeout:
            # A NaN deadline is never reached: no check ends the retries, and no timer fires.
            raise InvalidArgument("timeout_s must be a number of seconds, got nan")
        return asyncio.get_running_loop().time() + timeout

    async def _await_shared(self, task: asyncio.Task[Any], deadline: float | None) -> None:
        """Wait for a task other callers share (the connect, a map refresh), until `deadline`.

        Raises:
            TimeoutError: the deadline passed first (the task goes on for the others).
            ClientClosed: the client was closed meanwhile. close() cancels the task, or the
                gRPC calls in it: that is not the cancellation of this caller's task, which
                is what a bare CancelledError here would say (found by review).
        """
        try:
            if deadline is None:
                await asyncio.shield(task)
            else:
                remaining = deadline - asyncio.get_running_loop().time()
                await asyncio.wait_for(asyncio.shield(task), max(remaining, 0.0))
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if task.cancelled() and current is not None and not current.cancelling():
                raise ClientClosed("the client is closed") from None
            raise

    async def ready(self, deadline: float | None = None) -> None:
        """Connect on first use; concurrent first callers share one connect, each waiting
        for it at most until its own `deadline` (loop time).

        A connect that no seed answered (all of them refused at once: nodes starting or
        restarting) is tried again after a backoff while `deadline` leaves time, as a
        routed request is (found by review: the first call of a new client failed at once
        with most of its deadline left).

        Raises:
            DeadlineExceeded: not connected by `deadline` (the connect goes on for others),
                or no seed answered until then: a whole deadline spent, which `txn`'s `run`
                does not retry (found by review: an Unavailable there began another attempt
                of a whole deadline).
            Unavailable: no seed answered, with no `deadline` (no retry).
            ClientClosed: the client is (or was meanwhile) closed.
        """
        loop = asyncio.get_running_loop()
        attempt = 0
        while self._cache.shard_map is None:
            task = self._connecting
            if task is None or task.done():
                task = self._connecting = asyncio.create_task(self.connect())
                # Its failure may reach no waiter (each gave up at its own deadline).
                task.add_done_callback(lambda t: t.cancelled() or t.exception())
            try:
                await self._await_shared(task, deadline)
            except TimeoutError:
                raise DeadlineExceeded(
                    "gave up: no seed answered before the deadline (still connecting)"
                ) from None
            except Unavailable as refused:
                if deadline is None:
                    raise
                delay = self._backoff.delay(attempt, self._rng)
                if deadline - loop.time() - delay < _MIN_RETRY_LEFT_S:
                    raise DeadlineExceeded(f"gave up at the deadline: {refused}") from None
                await asyncio.sleep(delay)
                attempt += 1

    # ------------------------------------------------------------------ operations

    async def get(
        self,
        key: bytes,
        *,
        stale_ok: bool = False,
        at_version: int = 0,
        timeout_s: float | None = None,
    ) -> tuple[bytes, int] | None:
        """The value and version of `key`, or None when it does not exist.

        Linearizable unless `stale_ok` (then any replica's applied state, possibly behind).
        `at_version` > 0 reads the newest version <= at_version (`SnapshotTooOld` when the
        shard's MVCC collection has passed it).
        """
        request = kv.Request(get=kv.GetRequest(key=key, stale_ok=stale_ok, at_version=at_version))
        response = await self.send(
            request, key=key, write=False, timeout_s=timeout_s, idempotent=True
        )
        got = response.get
        return (got.value, got.version) if got.found else None

    async def put(
        self,
        key: bytes,
        value: bytes,
        *,
        ttl_s: float | None = None,
        timeout_s: float | None = None,
    ) -> int:
        """Write `value` under `key` (living `ttl_s` seconds, if given); returns the new
        version."""
        ttl_ms = ttl_ms_of(ttl_s)
        request = kv.Request(put=kv.PutRequest(key=key, value=value, ttl_ms=ttl_ms))
        response = await self.send(request, key=key, write=True, timeout_s=timeout_s)
        check_expiry(ttl_ms, response.put.expires_at, key)
        return response.put.version

    async def delete(self, key: bytes, *, timeout_s: float | None = None) -> int:
        """Delete `key`; returns the deletion's version, 0 when the key was absent."""
        request = kv.Request(delete=kv.DeleteRequest(key=key))
        response = await self.send(request, key=key, write=True, timeout_s=timeout_s)
        return response.delete.version

    async def cas(
        self,
        key: bytes,
        *,
        expected_value: bytes | None = None,
        expected_version: int | None = None,
        expect_absent: bool = False,
        new_value: bytes | None = None,
        delete: bool = False,
        touch: bool = False,
        ttl_s: float | None = None,
        timeout_s: float | None = None,
    ) -> CasResult:
        """Compare-and-set: if the key matches exactly one condition, apply one action.

        Conditions: `expected_value`, `expected_version` or `expect_absent`. Actions:
        `new_value` (living `ttl_s` seconds, if given) or `delete`.

        Raises:
            InvalidArgument: not exactly one condition and one action, or a ttl_s with delete.
        """
        conditions = (expected_value is not None) + (expected_version is not None) + expect_absent
        if conditions != 1:
            raise InvalidArgument(
                "compare-and-set needs exactly one condition: expected_value, "
                "expected_version or expect_absent"
            )
        if (new_value is not None) + delete + touch != 1:
            raise InvalidArgument(
                "compare-and-set needs exactly one action: new_value, delete or touch"
            )
        if touch and expect_absent:
            raise InvalidArgument("a touch keeps a value: expect its value or version")
        op = kv.CasRequest(key=key, ttl_ms=cas_ttl_ms(ttl_s, delete, touch))
        if expected_value is not None:
            op.expected_value = expected_value
        elif expected_version is not None:
            op.expected_version = expected_version
        else:
            op.expect_absent = True
        if new_value is not None:
            op.new_value = new_value
        elif touch:
            op.touch = True
        else:
            op.delete = True
        response = await self.send(kv.Request(cas=op), key=key, write=True, timeout_s=timeout_s)
        cas = response.cas
        if cas.succeeded and not touch:  # a touch of a value with no ttl leaves none
            check_expiry(op.ttl_ms, cas.expires_at, key)
        return CasResult(
            succeeded=cas.succeeded,
            version=cas.version,
            current_value=cas.current_value if cas.found else None,
            current_version=cas.current_version,
            expires_at=cas.expires_at,
        )

    async def scan(
        self,
        start: bytes = b"",
        end: bytes | None = None,
        limit: int = 1000,
        *,
        reverse: bool = False,
        stale_ok: bool = False,
        at_version: int = 0,
        timeout_s: float | None = None,
    ) -> list[tuple[bytes, bytes, int]]:
        """Up to `limit` (key, value, version) with start <= key < end, in key order (with
        `reverse`, the last `limit` keys, highest first).

        The range is cut at shard boundaries and read shard by shard (each part linearizable
        on its own; the whole is not one snapshot across shards — for that, give `at_version`,
        as `txn.AsyncClient.snapshot().scan` does).
        `at_version` > 0 reads every part at that version (`SnapshotTooOld` when a shard's
        MVCC collection has passed it).
        """
        if limit <= 0 or (end is not None and end <= start):
            return []
        deadline = self._deadline(timeout_s)
        await self.ready(deadline)
        out: list[tuple[bytes, bytes, int]] = []
        cursor = ScanCursor(start, end, reverse)
        while len(out) < limit:
            part = cursor.next_part(self._cache.plan_scan)
            if part is None:
                break
            descriptor, sub_start, sub_end = part
            want = min(limit - len(out), SCAN_PAGE)
            op = kv.ScanRequest(start=sub_start, limit=want, stale_ok=stale_ok, reverse=reverse)
            op.at_version = at_version
            if sub_end is not None:
                op.end = sub_end
            try:
                response = await self._send(
                    kv.Request(scan=op), None, descriptor.group_id, False, deadline, idempotent=True
                )
            except (WrongShard, UnknownGroup):
                continue  # the map changed under us: re-plan from the cursor
            items = response.scan.items
            cursor.advance(part, response.scan, want)
            out.extend((item.key, item.value, item.version) for item in items)
        return out[:limit]

    async def status_all(self, *, timeout_s: float = _STATUS_TIMEOUT_S) -> list[NodeStatus]:
        """Every node of the map, in node id order: its status, or why it did not answer."""
        await self.ready()
        shard_map = self._cache.shard_map
        assert shard_map is not None
        nodes = sorted(shard_map.nodes.values(), key=lambda n: n.node_id)

        async def one(node: Any) -> NodeStatus:
            try:
                status = await self._connection(node.client_addr).stub.Status(
                    kv.StatusRequest(), timeout=timeout_s
                )
                return NodeStatus(node.node_id, node.name, node.client_addr, status, None)
            except (grpc.aio.AioRpcError, TimeoutError) as exc:
                error = _describe_rpc_error(exc)
                return NodeStatus(node.node_id, node.name, node.client_addr, None, error)

        return list(await asyncio.gather(*(one(n) for n in nodes)))


async def _answer_of_copies(
    response: kv.Response, copies: list[_Call], asked: str, deadline: float
) -> kv.Response:
    """A write's answer, given the `copies` of it also written to the node: a refusal of
    one copy says nothing of another still unanswered, which may yet be applied (found by
    review: a renewal parked behind an intent was refused CONFLICT, its second copy was
    applied once the intent went, and the client said nothing was written). So a refusal
    waits for those copies: the first answer without an error wins; every copy refused,
    the refusal stands; a copy lost on the way, or one unanswered by `deadline`, leaves
    the outcome open (_SendFailed or _TimedOut, `sent`). A copy never written is
    abandoned by the caller, unsent."""
    if response_error(response, asked) is None:
        return response
    loop = asyncio.get_running_loop()
    while True:
        # Taken again after each wait: a copy still queued then may have been written since.
        sent = [c.future for c in copies if c.sent]
        for answer in sent:
            if not answer.done() or answer.cancelled():
                continue
            if (exc := answer.exception()) is not None:
                raise exc
            if response_error(answer.result(), asked) is None:
                return answer.result()
        unanswered = [answer for answer in sent if not answer.done()]
        if not unanswered:
            return response
        done, _ = await asyncio.wait(
            unanswered, timeout=deadline - loop.time(), return_when=asyncio.FIRST_COMPLETED
        )
        if not done:
            raise _TimedOut(sent=True)


def _short_time_note(seconds: float) -> str:
    """What to say of a request that had only `seconds` for its answer: nothing, unless
    that was too short for any round trip (found by an operator trial: `--timeout 0.005`
    was told only that the write may have been applied)."""
    if seconds >= SHORT_TIMEOUT_S:
        return ""
    return (
        f" (it had {seconds:.2g} s, shorter than a round trip can take: give a timeout of "
        f"{SHORT_TIMEOUT_S:g} s or more)"
    )


def _refuse_oversized(request: kv.Request, kind: str, op: Any) -> None:
    """Refuse, before it is queued, a request the node would refuse for its size (with the
    node's message), or one too large to send at all.

    Raises:
        LimitExceeded: a key, value, range bound or transaction part over the node's limit
            (`router.limits.request_refusal`), or a request over MAX_REQUEST_BYTES. Written
            to the shared stream, one over gRPC's message limit would fail the stream, and
            every other caller's request on it, as maybe applied (module docstring).
    """
    refusal = request_refusal(kind, op)
    if refusal is not None:
        raise LimitExceeded(refusal)
    size = request.ByteSize()
    if size > MAX_REQUEST_BYTES:
        raise LimitExceeded(
            f"the {kind} request is {size} bytes, over the limit of {MAX_REQUEST_BYTES} bytes "
            "the client sends (MAX_REQUEST_BYTES); split it"
        )


def _take_write(queue: list[_Call]) -> tuple[list[_Call], list[_Call]]:
    """The first calls of `queue` up to WRITE_BYTES and WRITE_REQUESTS (at least one), and
    the rest."""
    size = 0
    for n, call in enumerate(queue[:WRITE_REQUESTS]):
        size += call.request.ByteSize()
        if size >= WRITE_BYTES:
            return queue[: n + 1], queue[n + 1 :]
    return queue[:WRITE_REQUESTS], queue[WRITE_REQUESTS:]
