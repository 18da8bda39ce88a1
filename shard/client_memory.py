"""One bound on the bytes that all of a node's client Batch streams (and unary calls) hold.

Each stream bounds what it holds (shard.server: requests submitted and not answered,
answers not yet written), but a bound per stream alone let N streams hold N times as
much: found by review, 16 streams that sent gets of a 1 MiB value and never read their
answers took a node from 260 MiB to 2.5 GB, and a hundred would have taken the machine. Streams now also draw on one budget for the node.
A stream whose reader would pass it waits (gRPC's flow control then holds its client back),
except that a stream with no answer waiting to be written may always hold up to a small
floor: clients that read no answers can fill the budget and slow the others down, but not
stop them, and they cannot use the floor, which only a stream that reads its answers gets.
An answer that would pass the budget (a stream's own held bytes past the floor) and reports
nothing done, a read's, is answered UNAVAILABLE instead (shard.server `_shed`): how large a
read's answer is becomes known only once it is made.
"""

from __future__ import annotations

import asyncio

from google.protobuf.message import Message

#: Bytes all Batch streams of a node may hold together.
MAX_CLIENT_BYTES = 1 << 30
#: What a stream with no answer waiting to be written may hold whatever the others hold.
STREAM_FLOOR_BYTES = 4 << 20
#: What a request or an answer held costs in Python objects besides its encoded bytes (a
#: parsed get, its reply closure and its place in line measured 440 bytes). Found by
#: review: counting encoded bytes alone, a stream's 65,536 unanswered gets of 20 bytes
#: held some 30 MB that no budget saw.
MESSAGE_OVERHEAD_BYTES = 512


def memory_cost(message: Message) -> int:
    """What holding `message` costs the node, as its budget counts it."""
    size: int = message.ByteSize()
    return size + MESSAGE_OVERHEAD_BYTES


class ClientMemory:
    """The bytes every client stream of a node holds, against `limit`."""

    def __init__(self, limit: int = MAX_CLIENT_BYTES, floor: int = STREAM_FLOOR_BYTES) -> None:
        self.limit = limit
        self.floor = floor
        self.held = 0
        #: Answers shed (shard.server `_shed`) since the node started.
        self.shed = 0
        self._waiting: set[asyncio.Event] = set()

    def adjust(self, delta: int) -> None:
        """A stream holds `delta` bytes more (less, when negative)."""
        self.held += delta
        if delta < 0 and self.held < self.limit:
            for event in self._waiting:
                event.set()

    def allows(self, own_bytes: int, own_unwritten: int) -> bool:
        """Whether a stream holding `own_bytes`, with `own_unwritten` answers not yet
        written, may take one more request now."""
        return self.held < self.limit or (own_unwritten == 0 and own_bytes < self.floor)

    def takes(self, more: int) -> bool:
        """Whether `more` bytes fit the node's budget."""
        return self.held + more <= self.limit

    def fits(self, own_bytes: int, more: int, own_limit: int) -> bool:
        """Whether a stream holding `own_bytes` may hold `more`: within its own limit, and
        within the node's budget or its floor."""
        if own_bytes + more > own_limit:
            return False
        return self.takes(more) or own_bytes + more <= self.floor

    async def wait(self, freed: asyncio.Event) -> None:
        """Until `freed` is set: by the stream itself (an answer written) or by any stream
        that gives bytes back while the node is under its limit."""
        freed.clear()
        self._waiting.add(freed)
        try:
            await freed.wait()
        finally:
            self._waiting.discard(freed)
