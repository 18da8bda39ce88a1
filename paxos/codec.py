"""Paxos messages <-> protobuf bytes. The only module that imports paxos_pb2."""

from __future__ import annotations

import math

from google.protobuf.message import DecodeError

from paxos import paxos_pb2 as pb
from paxos.ballot import Ballot
from paxos.errors import PaxosError
from paxos.messages import (
    Accept,
    Accepted,
    AcceptedEntry,
    CatchUpReply,
    CatchUpRequest,
    Heartbeat,
    HeartbeatAck,
    InstallSnapshot,
    Message,
    Nack,
    Prepare,
    PreVote,
    PreVoteReply,
    Promise,
    SlotValue,
    Value,
)


class MalformedMessage(PaxosError):
    """Bytes from a peer that do not decode to a valid Paxos message."""


def _ballot_to_pb(ballot: Ballot, out: pb.Ballot) -> None:
    out.round = ballot.round
    out.node_id = ballot.node_id


def _ballot(b: pb.Ballot) -> Ballot:
    return Ballot(b.round, b.node_id)


def _slot_values(entries: tuple[SlotValue, ...], out: object) -> None:
    for entry in entries:
        item = out.add()  # type: ignore[attr-defined]
        item.slot = entry.slot
        item.value.commands.extend(entry.value)


def _value(v: pb.Value) -> Value:
    return tuple(v.commands)


def to_proto(msg: Message) -> pb.PaxosMessage:
    """Encode one message into a PaxosMessage."""
    out = pb.PaxosMessage(src=msg.src, dst=msg.dst)
    _ballot_to_pb(msg.ballot, out.ballot)
    match msg:
        case PreVote():
            out.pre_vote.seq = msg.seq
        case PreVoteReply():
            out.pre_vote_reply.seq = msg.seq
            out.pre_vote_reply.granted = msg.granted
            out.pre_vote_reply.rebuilding = msg.rebuilding
        case Prepare():
            out.prepare.from_slot = msg.from_slot
        case Promise():
            body = out.promise
            body.chosen_watermark = msg.chosen_watermark
            body.log_start = msg.log_start
            body.chosen_omitted = msg.chosen_omitted
            body.from_slot = msg.from_slot
            body.more_from = msg.more_from
            for entry in msg.accepted:
                item = body.accepted.add(slot=entry.slot, chosen=entry.chosen)
                _ballot_to_pb(entry.ballot, item.ballot)
                item.value.commands.extend(entry.value)
        case Nack():
            _ballot_to_pb(msg.promised, out.nack.promised)
            out.nack.leader_hint = msg.leader_hint or 0
            out.nack.lease_held = msg.lease_held
        case Accept():
            out.accept.chosen_watermark = msg.chosen_watermark
            _slot_values(msg.entries, out.accept.entries)
        case Accepted():
            out.accepted.slots.extend(msg.slots)
        case Heartbeat():
            out.heartbeat.chosen_watermark = msg.chosen_watermark
            out.heartbeat.seq = msg.seq
            out.heartbeat.handoff_to = msg.handoff_to
            out.heartbeat.next_slot = msg.next_slot
            # Rounded up (after float noise): a follower blocks at least as long as said.
            remaining_us = math.ceil(round(msg.lease_remaining_s * 1e6, 3))
            out.heartbeat.lease_remaining_us = min(remaining_us, 2**32 - 1)
        case HeartbeatAck():
            out.heartbeat_ack.seq = msg.seq
            out.heartbeat_ack.chosen_watermark = msg.chosen_watermark
            out.heartbeat_ack.rebuilding = msg.rebuilding
            out.heartbeat_ack.retiring = msg.retiring
            # Rounded down (after float noise): a promise said shorter only shortens the lease.
            promise_us = int(round(msg.lease_promise_s * 1e6, 3))
            out.heartbeat_ack.lease_promise_us = min(promise_us, 2**32 - 1)
        case CatchUpRequest():
            out.catch_up_request.from_slot = msg.from_slot
            out.catch_up_request.to_slot = msg.to_slot
        case CatchUpReply():
            out.catch_up_reply.chosen_watermark = msg.chosen_watermark
            _slot_values(msg.entries, out.catch_up_reply.entries)
        case InstallSnapshot():
            out.install_snapshot.index = msg.index
            out.install_snapshot.data = msg.data
    return out


def from_proto(m: pb.PaxosMessage) -> Message:
    """Decode a PaxosMessage; raises MalformedMessage when it carries no known body."""
    src, dst, ballot = m.src, m.dst, _ballot(m.ballot)
    kind = m.WhichOneof("body")
    if kind == "pre_vote":
        return PreVote(src=src, dst=dst, ballot=ballot, seq=m.pre_vote.seq)
    if kind == "pre_vote_reply":
        r = m.pre_vote_reply
        return PreVoteReply(
            src=src, dst=dst, ballot=ballot, seq=r.seq, granted=r.granted, rebuilding=r.rebuilding
        )
    if kind == "prepare":
        return Prepare(src=src, dst=dst, ballot=ballot, from_slot=m.prepare.from_slot)
    if kind == "promise":
        p = m.promise
        return Promise(
            src=src,
            dst=dst,
            ballot=ballot,
            from_slot=p.from_slot,
            accepted=tuple(
                AcceptedEntry(
                    slot=e.slot, ballot=_ballot(e.ballot), value=_value(e.value), chosen=e.chosen
                )
                for e in p.accepted
            ),
            chosen_watermark=p.chosen_watermark,
            log_start=p.log_start,
            chosen_omitted=p.chosen_omitted,
            more_from=p.more_from,
        )
    if kind == "nack":
        n = m.nack
        return Nack(
            src=src,
            dst=dst,
            ballot=ballot,
            promised=_ballot(n.promised),
            leader_hint=n.leader_hint or None,
            lease_held=n.lease_held,
        )
    if kind == "accept":
        a = m.accept
        return Accept(
            src=src,
            dst=dst,
            ballot=ballot,
            entries=tuple(SlotValue(slot=e.slot, value=_value(e.value)) for e in a.entries),
            chosen_watermark=a.chosen_watermark,
        )
    if kind == "accepted":
        return Accepted(src=src, dst=dst, ballot=ballot, slots=tuple(m.accepted.slots))
    if kind == "heartbeat":
        h = m.heartbeat
        return Heartbeat(
            src=src,
            dst=dst,
            ballot=ballot,
            chosen_watermark=h.chosen_watermark,
            seq=h.seq,
            handoff_to=h.handoff_to,
            next_slot=h.next_slot,
            lease_remaining_s=h.lease_remaining_us / 1e6,
        )
    if kind == "heartbeat_ack":
        k = m.heartbeat_ack
        return HeartbeatAck(
            src=src,
            dst=dst,
            ballot=ballot,
            seq=k.seq,
            chosen_watermark=k.chosen_watermark,
            rebuilding=k.rebuilding,
            retiring=k.retiring,
            lease_promise_s=k.lease_promise_us / 1e6,
        )
    if kind == "catch_up_request":
        c = m.catch_up_request
        return CatchUpRequest(
            src=src, dst=dst, ballot=ballot, from_slot=c.from_slot, to_slot=c.to_slot
        )
    if kind == "catch_up_reply":
        r = m.catch_up_reply
        return CatchUpReply(
            src=src,
            dst=dst,
            ballot=ballot,
            entries=tuple(SlotValue(slot=e.slot, value=_value(e.value)) for e in r.entries),
            chosen_watermark=r.chosen_watermark,
        )
    if kind == "install_snapshot":
        s = m.install_snapshot
        return InstallSnapshot(src=src, dst=dst, ballot=ballot, index=s.index, data=s.data)
    raise MalformedMessage(f"paxos message from node {src} has no known body")


def encode(msg: Message) -> bytes:
    return bytes(to_proto(msg).SerializeToString())


def decode(data: bytes) -> Message:
    """Decode bytes from a peer; raises MalformedMessage on anything invalid."""
    m = pb.PaxosMessage()
    try:
        m.ParseFromString(data)
    except DecodeError as exc:
        raise MalformedMessage(f"undecodable paxos message: {exc}") from exc
    return from_proto(m)
