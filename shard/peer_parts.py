"""Peer messages within gRPC's message limit: snapshots in parts, batches bounded in bytes.

A shard's snapshot holds all of its data, so it outgrows one gRPC message (64 MiB here)
long before the shard is large: sent whole, it failed every time, broke the stream it was
on (with the other groups' heartbeats queued behind it), and a lagging replica never caught
up. So an InstallSnapshot larger than PART_BYTES travels as parts, each a GroupMessage with
the snapshot's header and one slice, and a PeerBatch stops growing at BATCH_BYTES. The
receiving stream reassembles the parts in order and delivers one InstallSnapshot; the
Paxos core never sees a part. Parts travel in order on one stream; a part out of order (or
a stream that breaks) drops what was gathered, and the leader sends the snapshot again.

What a stream holds is bounded by what an honest sender does, since a peer with the secret
may still send anything (found by review: 2 GiB of parts for two groups no node hosts
grew the receiver to 3 GB). A sender queues a snapshot's parts together and its batches
keep queue order, so parts of two snapshots never interleave: a stream gathers one
snapshot at a time (a new first part replaces it), a node one stream at a time (its newer
stream supersedes the older one's gathering), the servicer hands it only parts of groups
its node hosts, and a part beyond the claimed total is dropped before it is kept.
A batch carries at most BATCH_MESSAGES messages, which the receiver enforces.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from paxos import codec as paxos_codec
from paxos.messages import InstallSnapshot, Message
from shard import peer_pb2

PART_BYTES = 4 * 1024 * 1024
BATCH_BYTES = 8 * 1024 * 1024
#: A batch also stops at this many messages. The link's queue holds at most MAX_QUEUED
#: (shard.transport, the same number) before a send, so this only cuts the rare batch a
#: full queue's last send overfilled; it makes the bound exact, and a receiver refuses a
#: stream whose batch carries more (found by review: one batch of a million heartbeats, 14
#: MB, held the receiver's loop for 4.7 s and cost elections).
BATCH_MESSAGES = 50_000
# A claimed snapshot size beyond this is not gathered (memory is the receiver's).
MAX_SNAPSHOT_BYTES = 64 * 1024 * 1024 * 1024


def group_messages(group_id: int, msg: Message) -> list[peer_pb2.GroupMessage]:
    """`msg` as the GroupMessages that carry it: one, or a large snapshot's parts."""
    if not isinstance(msg, InstallSnapshot) or len(msg.data) <= PART_BYTES:
        return [peer_pb2.GroupMessage(group_id=group_id, message=paxos_codec.to_proto(msg))]
    header = paxos_codec.to_proto(dataclasses.replace(msg, data=b""))
    data = msg.data
    total = len(data)
    return [
        peer_pb2.GroupMessage(
            group_id=group_id,
            message=header,
            part=peer_pb2.SnapshotPart(
                offset=offset, total=total, data=data[offset : offset + PART_BYTES]
            ),
        )
        for offset in range(0, total, PART_BYTES)
    ]


Queued = tuple[peer_pb2.GroupMessage, int]  # a message and its size in bytes


def take_batch(queue: Sequence[Queued]) -> tuple[list[peer_pb2.GroupMessage], int, list[Queued]]:
    """The first messages of `queue` up to BATCH_BYTES (at least one) and at most
    BATCH_MESSAGES, their bytes, and the rest."""
    size = 0
    for n, (_, item_size) in enumerate(queue):
        size += item_size
        if size >= BATCH_BYTES or n + 1 >= BATCH_MESSAGES:
            return [item for item, _ in queue[: n + 1]], size, list(queue[n + 1 :])
    return [item for item, _ in queue], size, []


@dataclasses.dataclass(slots=True)
class _Gathering:
    group_id: int
    header: InstallSnapshot
    total: int
    parts: list[bytes]
    size: int = 0


class SnapshotAssembler:
    """Gathers the parts of the snapshot arriving on one stream: one snapshot at a time."""

    def __init__(self) -> None:
        self._gathering: _Gathering | None = None
        self.dropped = 0
        #: A newer stream of the same node took over: nothing more is gathered here.
        self.superseded = False

    def supersede(self) -> None:
        """Drop what was gathered and gather nothing more: the node's newer stream has its
        own assembler (found by a fuzzer: a peer's streams, each gathering up to
        MAX_SNAPSHOT_BYTES, grew the receiver by a gigabyte in 4 s)."""
        self.superseded = True
        self._gathering = None

    @property
    def gathered_bytes(self) -> int:
        """The bytes held for the snapshot being gathered (0: none)."""
        return 0 if self._gathering is None else self._gathering.size

    def add(
        self, group_id: int, header: InstallSnapshot, part: peer_pb2.SnapshotPart
    ) -> InstallSnapshot | None:
        """The whole snapshot once its last part is in; None before. A first part (offset
        0) replaces whatever was gathered, of any group; a part that does not continue
        what is gathered (another snapshot, a gap, data past the claimed total) drops it
        and itself, before keeping any of its bytes."""
        if self.superseded:
            self.dropped += 1
            return None
        state = self._gathering
        if part.offset == 0:
            self._gathering = None
            if part.total > MAX_SNAPSHOT_BYTES:
                self.dropped += 1
                return None
            state = _Gathering(group_id=group_id, header=header, total=part.total, parts=[])
        elif (
            state is None
            or state.group_id != group_id
            or state.header != header
            or state.total != part.total
            or state.size != part.offset
        ):
            self.dropped += 1
            self._gathering = None
            return None
        if state.size + len(part.data) > state.total:
            self.dropped += 1
            self._gathering = None
            return None
        state.parts.append(part.data)
        state.size += len(part.data)
        if state.size < state.total:
            self._gathering = state
            return None
        self._gathering = None
        return dataclasses.replace(state.header, data=b"".join(state.parts))
