"""Peer transport: one gRPC stream per peer node, each message a batch of many groups' messages.

Sending never blocks and never raises: messages queue per peer and a writer task drains the
whole queue into one PeerBatch per stream write. A broken stream is reopened with capped
exponential backoff; what was queued meanwhile is dropped (Paxos retransmits what matters).
A new stream opens with an empty batch (a hello), and a new stream from a peer cuts our
link's backoff to that peer short: a restarted peer is redialled as soon as it dials us,
not after a backoff that grew while it was down (up to a second, which every group whose
leader died meanwhile spent without one).

The Peer service shares the client port, so a cluster with a `peer_secret` makes every
stream present it (gRPC metadata, compared in constant time): without it, anyone who can
reach a client port and read the cluster id from Status could send Paxos messages as a
node. It authenticates, it does not encrypt: run the cluster on a private network.

A holder of the secret is still held to what a node sends (found by review): a stream
speaks for the node of its first batch only, a batch of more messages than a node puts in
one (BATCH_MESSAGES) ends the stream, messages for groups this node does not host are
dropped before they are decoded or gathered, and a large batch lets the loop run every
YIELD_EVERY messages, so it cannot hold the other streams' heartbeats.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import logging
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass

import grpc
from google.protobuf.message import DecodeError

from paxos import codec as paxos_codec
from paxos.messages import InstallSnapshot, Message
from router.client import GRPC_OPTIONS as GRPC_OPTIONS
from router.codec import encode_shard_map
from router.shard_map import ShardMap
from router.tls import aio_channel
from shard import peer_pb2, peer_pb2_grpc
from shard.node_identity import MAX_RUNS, RUN_BYTES, Admission, Incarnation, split_runs
from shard.peer_parts import (
    BATCH_MESSAGES,
    Queued,
    SnapshotAssembler,
    group_messages,
    take_batch,
)
from txn.records import quote_key

log = logging.getLogger("paxoskv.transport")

#: Called with a peer's node id and incarnation at a stream's hello: whether to take the
#: stream (shard.node_identity.admit_peer, with the other nodes' records at a first contact).
Admit = Callable[[int, Incarnation], Awaitable[Admission]]
#: Called with a node id: the digest of its incarnation this node recorded (None: none).
Recorded = Callable[[int], "bytes | None"]
#: Called with a node id and the digest of an incarnation of it: whether a rebuild replaced
#: that one here (shard.node_identity.retired_here).
Retired = Callable[[int, bytes], bool]
#: A link that sends none (tests of the transport alone).
NO_INCARNATION = Incarnation(b"", rebuilt=False)

#: A link takes no more messages once it queues this many (one send, a snapshot's parts,
#: may pass it; its batches are cut at BATCH_MESSAGES of shard.peer_parts, the same number,
#: which the peer enforces) ...
MAX_QUEUED = 50_000
#: ... and at most this many bytes (an Accept carries up to max_batch_bytes, 4 MiB: counted
#: in messages alone, a peer that stopped reading could hold 200 GB of ours). One message
#: larger than the bound on its own (a snapshot's parts) goes into a queue within it.
MAX_QUEUED_BYTES = 256 * 1024 * 1024
# A node's server and its peer channels take the clients' GRPC_OPTIONS (re-exported here):
# one message limit and one keepalive ping policy on both ends of every connection.
# Each dial its own subchannel: with gRPC's shared pool, a dial right after a failed one
# met the failed connection's backoff in gRPC and failed too, however the peer was doing.
CHANNEL_OPTIONS = [*GRPC_OPTIONS, ("grpc.use_local_subchannel_pool", 1)]
SECRET_HEADER = "x-paxoskv-peer-secret"
#: Redial backoff: the first delay and the cap (each delay is drawn from [d/2, d]).
BACKOFF_BASE_S = 0.02
BACKOFF_MAX_S = 1.0
#: The shortest pause between two dials, also when the peer is known to be up.
REDIAL_MIN_S = 0.02
#: A failed stream's gRPC reason is logged up to this many characters.
MAX_LOGGED_REASON = 300
#: The version of what nodes exchange and log. Raise it whenever the replicated meaning of
#: a command or message changes (docs/ARCHITECTURE.md, "Operations": upgrades are all at
#: once). A node refuses a peer's stream in another version, and sends a peer nothing but
#: its hello until the peer accepted it in this one, so nodes of two versions never apply
#: each other's commands; they act as a partition. Versions before this field sent 0; 2:
#: a first contact is confirmed with every other node (`RecordedIncarnation`), which a
#: node of version 1 cannot answer; 3: a Promise may leave its chosen slots out
#: (`chosen_omitted`, Paxos replica rule 16), which a candidate of version 2 would read as
#: slots nobody voted for; 4: the hello carries the digest of the sender's config map
#: (`map_digest`), which a node of version 3 leaves empty; 5: a Promise may come in parts
#: (`more_from`, Paxos replica rule 18), which a candidate of version 4 would read as a whole
#: promise missing the votes of its later parts; 6: a transaction's write may carry atomic
#: operations (`WriteItem.ops`, txn/atomic.py), which a replica of version 5 would refuse
#: while the others apply it; 7: a Put or CAS may carry a time to live, and a group's log
#: an Expire (`shard.ttl`), which a replica of version 6 would ignore and refuse; 8: a touch
#: passes read intents and scanned ranges (participant rule W1), which a replica of
#: version 7 would refuse while the others apply it.
PROTOCOL = 8
#: Until the peer accepted the stream (one round trip, or for good with a peer of an older
#: version, which never does) a link queues at most this many messages and bytes: they only
#: leave once it does, so the full bounds would hold up to 256 MB per such peer for as long
#: as its stream lives. One message larger than the bound goes in as above.
MAX_GATED = 1_000
MAX_GATED_BYTES = 4 * 1024 * 1024
#: A stream the peer has not accepted after this long is logged once (an older version,
#: most likely: it accepts every stream and never answers in a version).
ACCEPT_WARN_S = 5.0
#: The Peer service logs a refusal with a given reason (or dropped messages for groups it
#: does not host) at most once per this many seconds.
REFUSAL_LOG_EVERY_S = 60.0
#: The Peer service lets the loop run (the node's wake, other streams' heartbeats) after
#: this many messages of one batch: a batch of BATCH_MESSAGES tiny messages took about
#: 0.25 s to decode and deliver, beyond a leader's heartbeat interval.
YIELD_EVERY = 1_000


class PeerLink:
    """The outgoing stream to one peer."""

    def __init__(
        self,
        cluster_id: str,
        my_id: int,
        peer_id: int,
        address: str,
        secret: str = "",
        backoff_s: tuple[float, float] = (BACKOFF_BASE_S, BACKOFF_MAX_S),
        credentials: Callable[[], grpc.ChannelCredentials] | None = None,
        incarnation: Incarnation = NO_INCARNATION,
        map_digest: bytes = b"",
    ) -> None:
        """`map_digest`: of the shard map this node's config gives (`map_digest()`), sent
        in the hello."""
        self._cluster_id = cluster_id
        self._incarnation = incarnation
        self._map_digest = map_digest
        # Called at each dial: a node's TLS files may have been taken up again since.
        self._credentials = credentials
        self._backoff_base_s, self._backoff_max_s = backoff_s
        self._peer_up = asyncio.Event()
        # Set once the peer accepted this stream's hello in our protocol version.
        self._accepted = asyncio.Event()
        self._metadata = _secret_metadata(secret)
        self._my_id = my_id
        self.peer_id = peer_id
        self.address = address
        self._queue: list[Queued] = []
        self._queued_bytes = 0
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._rng = random.Random(peer_id)
        self._generation = 0
        self._closed = False
        self.connected = False
        #: Streams opened so far (each dial of the peer opens one).
        self.dials = 0
        #: The reason the peer gave for refusing our newest stream, until it accepts one
        #: (shown by Status: a node its peers refuse takes no part in consensus).
        self.refusal: str | None = None
        self._last_failure: str | None = None

    def send(self, group_id: int, msgs: Sequence[Message]) -> None:
        max_count = MAX_QUEUED if self.accepted else MAX_GATED
        max_bytes = MAX_QUEUED_BYTES if self.accepted else MAX_GATED_BYTES
        if len(self._queue) >= max_count:
            return
        for msg in msgs:
            items = [(item, item.ByteSize()) for item in group_messages(group_id, msg)]
            size = sum(item_size for _, item_size in items)
            # Dropped whole, never some parts of a snapshot. A message larger than the bound
            # on its own goes in while the queue is within it (so at most the bound plus one
            # such message is held): when it had to find the queue empty, a large snapshot
            # behind the heartbeat its own wake queued first was dropped at every try, and
            # the follower never caught up (found by review).
            if self._queued_bytes + size > max_bytes and (
                size <= max_bytes or self._queued_bytes > max_bytes
            ):
                continue
            self._queue.extend(items)
            self._queued_bytes += size
        self._wake.set()

    @property
    def accepted(self) -> bool:
        """Whether the peer accepted this stream in our protocol version: until then only
        MAX_GATED messages (MAX_GATED_BYTES) are kept for it."""
        return self._accepted.is_set()

    def peer_up(self) -> None:
        """The peer is up (a new stream from it opened): end a redial backoff early."""
        self._peer_up.set()

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"peer-{self.peer_id}")

    async def stop(self, timeout_s: float = 2.0) -> None:
        """Stop the writer; bounded, because grpc.aio can swallow a cancellation."""
        self._closed = True
        self._wake.set()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, TimeoutError):
                await asyncio.wait_for(self._task, timeout_s)

    async def _batches(self, generation: int) -> AsyncIterator[peer_pb2.PeerBatch]:
        # A failed call may leave gRPC's request consumer parked in here; the generation check
        # ends such a stale generator instead of letting it steal batches from the new stream.
        # The hello: tells the peer we are up (it redials us at once), and checks the cluster
        # id and secret before there is anything to send.
        yield peer_pb2.PeerBatch(
            cluster_id=self._cluster_id,
            from_node=self._my_id,
            protocol=PROTOCOL,
            incarnation=self._incarnation.token,
            rebuilt=self._incarnation.rebuilt,
            map_digest=self._map_digest,
            runs=b"".join(self._incarnation.runs),
            run_count=self._incarnation.run_count,
        )
        # Also ended by stop(): gRPC's task consuming this generator outlived the call, and
        # the node's last wait for its tasks waited on it in vain.
        while generation == self._generation and not self._closed:
            await self._wake.wait()
            if generation != self._generation or self._closed:
                return
            self._wake.clear()
            # Nothing but the hello before the peer accepted it in our version (PROTOCOL):
            # a node of an older version would apply what it does not understand.
            while self._queue and self._accepted.is_set() and generation == self._generation:
                messages, size, self._queue = take_batch(self._queue)
                self._queued_bytes -= size
                yield peer_pb2.PeerBatch(
                    cluster_id=self._cluster_id,
                    from_node=self._my_id,
                    messages=messages,
                    protocol=PROTOCOL,
                )

    async def _run(self) -> None:
        attempt = 0
        loop = asyncio.get_running_loop()
        while not self._closed:
            opened_at = loop.time()
            try:
                credentials = None if self._credentials is None else self._credentials()
                async with aio_channel(self.address, credentials, CHANNEL_OPTIONS) as ch:
                    stub = peer_pb2_grpc.PeerStub(ch)
                    self._peer_up.clear()
                    self._accepted.clear()
                    self.dials += 1
                    self._clear_queue()
                    self._generation += 1
                    call = stub.Exchange(self._batches(self._generation), metadata=self._metadata)
                    self.connected = True
                    warn = loop.call_later(ACCEPT_WARN_S, self._warn_not_accepted, self._generation)
                    try:
                        async for reply in call:
                            if reply.refusal:
                                self.refusal = reply.refusal
                                self._log_refusal(reply.refusal, for_now=reply.for_now)
                            elif reply.protocol == PROTOCOL:
                                self.refusal = None
                                self._accepted.set()
                                self._wake.set()
                                # Found by an operations review: the log showed a peer's
                                # streams failing, never one coming back.
                                log.info(
                                    "peer stream accepted",
                                    extra={"peer": self.peer_id, "address": self.address},
                                )
                    finally:
                        warn.cancel()
                        call.cancel()
            except asyncio.CancelledError:
                raise
            except grpc.aio.AioRpcError as exc:
                self._log_failure(exc)
            except Exception:
                log.exception("peer stream failed", extra={"peer": self.peer_id})
            self.connected = False
            self._accepted.clear()  # the gated bounds while no stream is accepted
            self._generation += 1
            self._wake.set()
            self._clear_queue()
            # Only a stream that stayed up a while resets the backoff: Exchange() returns
            # before any connection exists, so a dead peer would otherwise be redialled
            # every few milliseconds.
            if loop.time() - opened_at > 1.0:
                attempt, self._last_failure = 0, None
            else:
                attempt += 1
            delay = min(self._backoff_max_s, self._backoff_base_s * 2 ** min(attempt, 10))
            await self._pause_before_redial(self._rng.uniform(delay / 2, delay))

    def _clear_queue(self) -> None:
        self._queue.clear()
        self._queued_bytes = 0

    def _warn_not_accepted(self, generation: int) -> None:
        if generation == self._generation and not self._accepted.is_set():
            log.warning(
                "peer has not accepted our stream: nothing but its hello goes to the peer "
                "(a node of an older paxoskv version accepts without saying its version: "
                "run one version on every node; or the peer's loop is held)",
                extra={"peer": self.peer_id, "address": self.address, "protocol": PROTOCOL},
            )

    def _log_refusal(self, refusal: str, *, for_now: bool) -> None:
        """A peer of another version refuses every redial, about once a second, for good;
        one confirming our first contact with the other nodes, until they answer."""
        if for_now:
            self._log_once(logging.INFO, "peer refused our stream for now", refusal)
        else:
            self._log_once(logging.ERROR, "peer refused our stream", refusal)

    def _log_failure(self, exc: grpc.aio.AioRpcError) -> None:
        """A TLS handshake refused, for one, otherwise only shows as groups that never
        elect."""
        reason = f"{exc.code().name}: {exc.details() or ''}"
        self._log_once(logging.WARNING, "peer stream failed", reason)

    def _log_once(self, level: int, event: str, reason: str) -> None:
        """Log `event` once per distinct reason in a row, not at every redial."""
        reason = reason[:MAX_LOGGED_REASON]
        if reason != self._last_failure:
            self._last_failure = reason
            extra = {"peer": self.peer_id, "address": self.address, "reason": reason}
            log.log(level, event, extra=extra)

    async def _pause_before_redial(self, delay: float) -> None:
        """Wait `delay`, or only REDIAL_MIN_S once the peer is known to be up."""
        await asyncio.sleep(min(delay, REDIAL_MIN_S))
        if delay > REDIAL_MIN_S and not self._peer_up.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._peer_up.wait(), delay - REDIAL_MIN_S)


Deliver = Callable[[int, int, Message], None]
#: Called with a peer's node id when a stream from it opens (its first accepted batch).
PeerSeen = Callable[[int], None]


class PeerServicer(peer_pb2_grpc.PeerServicer):
    """Receives peers' streams; refuses other clusters, unknown nodes and (when the cluster has
    a peer secret) streams without it; drops garbage."""

    def __init__(
        self,
        cluster_id: str,
        my_id: int,
        peers: set[int],
        deliver: Deliver,
        secret: str = "",
        seen: PeerSeen = lambda node_id: None,
        admit: Admit | None = None,
        recorded: Recorded = lambda node_id: None,
        retired: Retired = lambda node_id, digest: False,
        nodes: set[int] | None = None,
        hosts: Callable[[int], bool] = lambda group_id: True,
        map_digest: bytes = b"",
    ) -> None:
        """`peers`: the nodes whose streams it takes; `nodes`: every other node of the
        cluster, which may ask what it recorded of a node (default: `peers`); `hosts`:
        whether this node hosts a group (messages for other groups are dropped here, before
        they are decoded, gathered or delivered); `map_digest`: of the shard map this
        node's config gives, which a peer's hello must carry too."""
        self._cluster_id = cluster_id
        self._map_digest = map_digest
        self._admit = admit if admit is not None else _admit_all
        self._recorded = recorded
        self._retired = retired
        self._nodes = peers if nodes is None else nodes
        self._secret = secret.encode()
        self._my_id = my_id
        self._peers = peers
        self._deliver = deliver
        self._seen = seen
        self._hosts = hosts
        self.refused = 0
        self.malformed = 0
        #: Messages dropped because this node hosts no such group.
        self.unhosted = 0
        # When each refusal reason (and the unhosted drops) was last logged: `_log_due`.
        self._logged_at: dict[str, float] = {}
        # Each peer's newest admitted stream's assembler: one snapshot gathered per peer.
        self._assemblers: dict[int, SnapshotAssembler] = {}

    async def Exchange(
        self,
        request_iterator: AsyncIterator[peer_pb2.PeerBatch],
        context: grpc.aio.ServicerContext,
    ) -> AsyncIterator[peer_pb2.PeerReply]:
        refusal = self._check_secret(context)
        if refusal:
            yield self._refuse(refusal, context)
            return
        assembler = SnapshotAssembler()  # this stream's, once its hello is admitted
        # The node the stream's first batch (its hello) named and had admitted: every later
        # batch must name the same (found by review: only the hello was checked, and later
        # batches could speak as any other node; the cluster id is ours on every batch).
        sender: int | None = None
        batches = aiter(request_iterator)
        while True:
            try:
                batch = await anext(batches)
            except StopAsyncIteration:
                return
            except DecodeError:
                # Refused as any bad stream, its log line rate-limited (found by review:
                # grpc answered UNKNOWN and logged a traceback per such stream).
                yield self._refuse("undecodable peer batch: the bytes are not a PeerBatch", context)
                return
            refusal = self._check(batch)
            if not refusal and assembler.superseded:
                refusal = f"node {sender} opened a newer stream, which replaces this one"
            if not refusal and sender is not None and batch.from_node != sender:
                refusal = (
                    f"a stream of node {sender} sent a batch as node {batch.from_node}: a "
                    "stream speaks for the node of its first batch only"
                )
            if not refusal and len(batch.messages) > BATCH_MESSAGES:
                refusal = (
                    f"node {batch.from_node} sent a batch of {len(batch.messages)} messages, "
                    f"more than a node ever sends in one (BATCH_MESSAGES, {BATCH_MESSAGES})"
                )
            if refusal:
                yield self._refuse(refusal, context)
                return
            if sender is None and batch.map_digest != self._map_digest:
                # Found by review: a node restarted (or rebuilt) with moved split points took
                # part in its groups on its own ranges and lost the writes outside them.
                yield self._refuse(
                    f"node {batch.from_node}'s config gives another shard map (nodes, "
                    f"addresses, split points or replication) than node {self._my_id}'s: run "
                    "every node on the cluster's config",
                    context,
                )
                return
            if sender is None:
                runs = split_runs(batch.runs)
                if runs is None or batch.run_count < len(runs):
                    yield self._refuse(
                        f"node {batch.from_node} sent malformed runs in its hello "
                        f"({len(batch.runs)} bytes: a multiple of {RUN_BYTES}, at most "
                        f"{MAX_RUNS * RUN_BYTES}, and no more runs than its count, "
                        f"{batch.run_count})",
                        context,
                    )
                    return
                incarnation = Incarnation(batch.incarnation, batch.rebuilt, runs, batch.run_count)
                admission = await self._admit(batch.from_node, incarnation)
                if admission.refusal:
                    yield self._refuse(admission.refusal, context, for_now=admission.for_now)
                    return
                # Once per stream (its hello): a peer whose stream we accept while it
                # refuses ours must not cut our backoff at each of its heartbeats.
                sender = batch.from_node
                older = self._assemblers.get(sender)
                if older is not None:
                    older.supersede()
                self._assemblers[sender] = assembler
                self._seen(batch.from_node)
                yield peer_pb2.PeerReply(protocol=PROTOCOL)  # accepted: it may send now
            await self._take(batch, assembler)

    async def _take(self, batch: peer_pb2.PeerBatch, assembler: SnapshotAssembler) -> None:
        """Decode and deliver a batch's messages for groups this node hosts, letting the
        loop run every YIELD_EVERY messages."""
        unhosted = 0
        for n, item in enumerate(batch.messages, 1):
            if n % YIELD_EVERY == 0:
                await asyncio.sleep(0)
            if not self._hosts(item.group_id):
                unhosted += 1
                continue
            try:
                msg = paxos_codec.from_proto(item.message)
            except Exception:
                self.malformed += 1
                continue
            if msg.src != batch.from_node or msg.dst != self._my_id:
                self.malformed += 1
                continue
            if item.HasField("part"):
                if not isinstance(msg, InstallSnapshot):
                    self.malformed += 1
                    continue
                whole = assembler.add(item.group_id, msg, item.part)
                if whole is None:
                    continue
                msg = whole
            self._deliver(batch.from_node, item.group_id, msg)
        if unhosted:
            self._count_unhosted(batch.from_node, unhosted)

    def _count_unhosted(self, from_node: int, count: int) -> None:
        self.unhosted += count
        if self._log_due("unhosted"):
            log.debug(
                "dropped peer messages for groups this node does not host",
                extra={"peer": from_node, "dropped": count, "unhosted": self.unhosted},
            )

    async def RecordedIncarnation(
        self, request: peer_pb2.IncarnationQuery, context: grpc.aio.ServicerContext
    ) -> peer_pb2.IncarnationAnswer:
        """What this node recorded of node `request.node_id` (shard/node_identity.py)."""
        refusal = self._check_secret(context) or self._check_node(
            request.cluster_id, request.from_node, request.protocol, self._nodes
        )
        if not refusal and request.node_id not in self._nodes:
            refusal = f"node {request.node_id} is not a node of this cluster"
        if refusal:
            return peer_pb2.IncarnationAnswer(refusal=refusal)
        return peer_pb2.IncarnationAnswer(
            digest=self._recorded(request.node_id) or b"",
            retired=bool(request.candidate) and self._retired(request.node_id, request.candidate),
        )

    def _refuse(
        self, reason: str, context: grpc.aio.ServicerContext, *, for_now: bool = False
    ) -> peer_pb2.PeerReply:
        """Count and log a refused stream; the reply that ends it."""
        self.refused += 1
        if self._log_due(reason):
            log.log(
                logging.INFO if for_now else logging.WARNING,
                "refused peer stream for now" if for_now else "refused peer stream",
                # Where it came from (found by an operations review: a wrong secret's
                # refusal named no peer); the reason names the node when it is known.
                extra={"reason": reason, "refused": self.refused, "from": context.peer()},
            )
        return peer_pb2.PeerReply(refusal=reason, for_now=for_now)

    def _log_due(self, what: str) -> bool:
        """Whether a line about `what` may be logged now: once per REFUSAL_LOG_EVERY_S each
        (a node of another version or secret redials about once a second, for good)."""
        now = time.monotonic()
        last = self._logged_at.get(what)
        if last is not None and now - last < REFUSAL_LOG_EVERY_S:
            return False
        if len(self._logged_at) >= 64:
            self._logged_at.clear()  # bounded: refusal reasons hold what peers sent
        self._logged_at[what] = now
        return True

    def _check_secret(self, context: grpc.aio.ServicerContext) -> str:
        if not self._secret:
            return ""
        presented = dict(context.invocation_metadata() or ()).get(SECRET_HEADER, "")
        if hmac.compare_digest(str(presented).encode(), self._secret):
            return ""
        return "missing or wrong peer secret (peer_secret in the cluster config)"

    def _check(self, batch: peer_pb2.PeerBatch) -> str:
        return self._check_node(batch.cluster_id, batch.from_node, batch.protocol, self._peers)

    def _check_node(self, cluster_id: str, from_node: int, protocol: int, known: set[int]) -> str:
        if cluster_id != self._cluster_id:
            return (
                f"cluster id {quote_key(cluster_id)} does not match this node's cluster "
                f"{self._cluster_id!r}"
            )
        if from_node not in known:
            return f"node {from_node} is not a peer of node {self._my_id}"
        if protocol != PROTOCOL:
            return (
                f"node {from_node} speaks protocol version {protocol}, node "
                f"{self._my_id} version {PROTOCOL}: run one paxoskv version on every node "
                "(stop every node, upgrade, start)"
            )
        return ""


def map_digest(shard_map: ShardMap) -> bytes:
    """What a hello carries of the shard map a node's config gives (`PeerBatch.map_digest`)."""
    return hashlib.sha256(encode_shard_map(shard_map)).digest()


def _secret_metadata(secret: str) -> tuple[tuple[str, str], ...] | None:
    """The gRPC metadata presenting the cluster's peer secret (none without one)."""
    return ((SECRET_HEADER, secret),) if secret else None


async def _admit_all(node_id: int, incarnation: Incarnation) -> Admission:
    """A servicer without an `admit` (tests of the transport alone) takes every stream."""
    return Admission()


@dataclass(frozen=True)
class RecordAnswer:
    """A node's answer to `ask_recorded_incarnation`."""

    digest: bytes = b""  # of the incarnation it recorded (b"": none)
    retired: bool = False  # a later rebuild replaced the candidate there
    refusal: str = ""  # why it refused the question (then nothing else is said)


async def ask_recorded_incarnation(
    address: str,
    *,
    cluster_id: str,
    my_id: int,
    node_id: int,
    candidate: bytes = b"",
    secret: str = "",
    credentials: grpc.ChannelCredentials | None = None,
    timeout_s: float = 1.0,
) -> RecordAnswer | None:
    """What the node at `address` recorded of node `node_id`, and whether a rebuild replaced
    there the incarnation whose digest is `candidate`, or why it refused the question
    (another cluster, secret or version); None when it did not answer (down, unreachable)."""
    query = peer_pb2.IncarnationQuery(
        cluster_id=cluster_id,
        from_node=my_id,
        protocol=PROTOCOL,
        node_id=node_id,
        candidate=candidate,
    )
    try:
        async with aio_channel(address, credentials, CHANNEL_OPTIONS) as ch:
            answer = await peer_pb2_grpc.PeerStub(ch).RecordedIncarnation(
                query, metadata=_secret_metadata(secret), timeout=timeout_s
            )
    except grpc.aio.AioRpcError as exc:
        log.info(
            "no answer about a peer's incarnation",
            extra={"address": address, "peer": node_id, "reason": exc.code().name},
        )
        return None
    if answer.refusal:
        log.warning(
            "question about a peer's incarnation refused",
            extra={"address": address, "peer": node_id, "reason": answer.refusal},
        )
        return RecordAnswer(refusal=answer.refusal)
    return RecordAnswer(bytes(answer.digest), answer.retired)
