"""Transaction records <-> protobuf bytes; the only importer of `txn_pb2`.

Two families, all plain bytes in and out (other packages embed them without touching
`txn_pb2`; the shard's `Command.txn` field is a `TxnCommand`):

- commands: `encode_command` / `decode_command` (`txn.records.TxnCommand`);
- stored state: `encode_intents`, `encode_prepared`, `encode_decision` and their decoders.

Decoders of untrusted bytes raise `MalformedTxnRecord` (a ValueError) and never anything
else; encoders take well-formed records (construction validated them). Serialization is
deterministic (no map fields), so every replica stores the same bytes.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from router.limits import MAX_ATOMIC_OPS, MAX_TTL_MS
from txn import txn_pb2 as pb
from txn.atomic import ATOMIC_MARKER, AtomicOp
from txn.records import (
    CommitOnePhase,
    Decide,
    DecisionInfo,
    Finish,
    IntentInfo,
    IntentKind,
    KeyRange,
    Prepare,
    PreparedInfo,
    Prevent,
    PurgeDecisions,
    ReadItem,
    Resolve,
    TxnCommand,
    WriteItem,
)

__all__ = [
    "MalformedTxnRecord",
    "decode_command",
    "decode_decision",
    "decode_intents",
    "decode_prepared",
    "encode_command",
    "encode_decision",
    "encode_intents",
    "encode_prepared",
    "write_item",
    "write_item_fields",
    "write_item_refusal",
]


class MalformedTxnRecord(ValueError):
    """Bytes that do not decode to a well-formed transaction record."""


# --------------------------------------------------------------------------------------------
# Commands


def _reads_pb(reads: Sequence[ReadItem]) -> list[pb.ReadItem]:
    return [pb.ReadItem(key=r.key, version=r.version) for r in reads]


_KNOWN_OPS = frozenset(int(op) for op in AtomicOp)


def write_item_fields(write: WriteItem) -> dict[str, Any]:
    """The fields of `write` as a WriteItem message (txn.proto's or kv.proto's) carries
    them: an atomic write's operations with the delete-and-marker pair (ATOMIC_MARKER)."""
    ttl = {"ttl_ms": write.ttl_ms} if write.ttl_ms else {}
    if write.ops:
        ops = [{"kind": int(op), "operand": operand} for op, operand in write.ops]
        return {"key": write.key, "delete": True, "value": ATOMIC_MARKER, "ops": ops, **ttl}
    if write.value is None:
        return {"key": write.key, "delete": True}
    return {"key": write.key, "value": write.value, **ttl}


def write_item_refusal(w: Any) -> str | None:
    """Why a WriteItem message (txn.proto's or kv.proto's) is no write, or None."""
    if w.ttl_ms > MAX_TTL_MS:
        return f"the write of {w.key!r} has a ttl_ms over MAX_TTL_MS ({MAX_TTL_MS})"
    if w.ops:
        if not (w.delete and w.value == ATOMIC_MARKER):
            return (
                f"the atomic write of {w.key!r} lacks delete: true and value "
                f"{ATOMIC_MARKER!r} (txn.atomic.ATOMIC_MARKER)"
            )
        if len(w.ops) > MAX_ATOMIC_OPS:
            return f"the write of {w.key!r} has over {MAX_ATOMIC_OPS} atomic operations"
        for op in w.ops:
            if op.kind not in _KNOWN_OPS:
                return f"the write of {w.key!r} has an unknown atomic operation {op.kind}"
        return None
    if w.delete and w.value:
        return f"the write of {w.key!r} has delete: true and a value"
    if w.delete and w.ttl_ms:
        return f"the delete of {w.key!r} has a ttl_ms: a delete leaves nothing to expire"
    return None


def write_item(w: Any) -> WriteItem:
    """The WriteItem message `w` (txn.proto's or kv.proto's), which `write_item_refusal`
    passed, as a record."""
    if w.ops:
        ops = tuple((AtomicOp(op.kind), op.operand) for op in w.ops)
        return WriteItem(key=w.key, value=None, ops=ops, ttl_ms=w.ttl_ms)
    if w.delete:
        return WriteItem(key=w.key, value=None)
    return WriteItem(key=w.key, value=w.value, ttl_ms=w.ttl_ms)


def _writes_pb(writes: Sequence[WriteItem]) -> list[pb.WriteItem]:
    return [pb.WriteItem(**write_item_fields(w)) for w in writes]


def _ranges_pb(ranges: Sequence[KeyRange]) -> list[pb.KeyRange]:
    return [pb.KeyRange(start=r.start, end=r.end) for r in ranges]


def command_message(record: TxnCommand) -> pb.TxnCommand:
    """`record` as a `paxoskv.txn.TxnCommand` message (to embed in another message)."""
    if isinstance(record, Prepare):
        return pb.TxnCommand(
            prepare=pb.Prepare(
                txn_id=record.txn_id,
                coordinator_group=record.coordinator_group,
                participants=record.participants,
                reads=_reads_pb(record.reads),
                writes=_writes_pb(record.writes),
                read_ranges=_ranges_pb(record.read_ranges),
                began_ts=record.began_ts,
            )
        )
    if isinstance(record, Resolve):
        return pb.TxnCommand(
            resolve=pb.Resolve(
                txn_id=record.txn_id,
                commit=record.commit,
                commit_ts=record.commit_ts,
                if_prepared=record.if_prepared,
                participants=record.participants,
            )
        )
    if isinstance(record, Decide):
        return pb.TxnCommand(
            decide=pb.Decide(
                txn_id=record.txn_id,
                participants=record.participants,
                commit=record.commit,
                commit_ts=record.commit_ts,
                recover=record.recover,
                asker_ts=record.asker_ts,
                if_prepared=record.if_prepared,
            )
        )
    if isinstance(record, Finish):
        return pb.TxnCommand(finish=pb.Finish(txn_id=record.txn_id))
    if isinstance(record, PurgeDecisions):
        return pb.TxnCommand(
            purge_decisions=pb.PurgeDecisions(
                before_ts=record.before_ts, verified=list(record.verified)
            )
        )
    if isinstance(record, CommitOnePhase):
        return pb.TxnCommand(
            commit_one_phase=pb.CommitOnePhase(
                txn_id=record.txn_id,
                reads=_reads_pb(record.reads),
                writes=_writes_pb(record.writes),
                read_ranges=_ranges_pb(record.read_ranges),
                began_ts=record.began_ts,
            )
        )
    if isinstance(record, Prevent):
        return pb.TxnCommand(
            prevent=pb.Prevent(
                txn_id=record.txn_id, asker_ts=record.asker_ts, participants=record.participants
            )
        )
    raise TypeError(f"not a transaction command: {record!r}")


def encode_command(record: TxnCommand) -> bytes:
    """Encode a transaction command as `paxoskv.txn.TxnCommand` bytes."""
    data: bytes = command_message(record).SerializeToString()
    return data


def _reads(items: Sequence[pb.ReadItem]) -> tuple[ReadItem, ...]:
    return tuple(ReadItem(key=r.key, version=r.version) for r in items)


def _ranges(items: Sequence[pb.KeyRange]) -> tuple[KeyRange, ...]:
    return tuple(KeyRange(start=r.start, end=r.end) for r in items)


def _writes(items: Sequence[pb.WriteItem]) -> tuple[WriteItem, ...]:
    out = []
    for w in items:
        refusal = write_item_refusal(w)
        if refusal is not None:
            raise MalformedTxnRecord(refusal)
        out.append(write_item(w))
    return tuple(out)


def _decode_command_pb(msg: pb.TxnCommand) -> TxnCommand:
    which = msg.WhichOneof("op")
    if which == "prepare":
        p = msg.prepare
        return Prepare(
            txn_id=p.txn_id,
            coordinator_group=p.coordinator_group,
            participants=tuple(p.participants),
            reads=_reads(p.reads),
            writes=_writes(p.writes),
            read_ranges=_ranges(p.read_ranges),
            began_ts=p.began_ts,
        )
    if which == "resolve":
        r = msg.resolve
        return Resolve(
            txn_id=r.txn_id,
            commit=r.commit,
            commit_ts=r.commit_ts,
            if_prepared=r.if_prepared,
            participants=tuple(r.participants),
        )
    if which == "decide":
        d = msg.decide
        return Decide(
            txn_id=d.txn_id,
            participants=tuple(d.participants),
            commit=d.commit,
            commit_ts=d.commit_ts,
            recover=d.recover,
            asker_ts=d.asker_ts,
            if_prepared=d.if_prepared,
        )
    if which == "finish":
        return Finish(txn_id=msg.finish.txn_id)
    if which == "purge_decisions":
        return PurgeDecisions(
            before_ts=msg.purge_decisions.before_ts, verified=tuple(msg.purge_decisions.verified)
        )
    if which == "commit_one_phase":
        c = msg.commit_one_phase
        return CommitOnePhase(
            txn_id=c.txn_id,
            reads=_reads(c.reads),
            writes=_writes(c.writes),
            read_ranges=_ranges(c.read_ranges),
            began_ts=c.began_ts,
        )
    if which == "prevent":
        p = msg.prevent
        return Prevent(txn_id=p.txn_id, asker_ts=p.asker_ts, participants=tuple(p.participants))
    raise MalformedTxnRecord("transaction command without an operation")


def decode_command(data: bytes) -> TxnCommand:
    """Decode `paxoskv.txn.TxnCommand` bytes.

    Raises:
        MalformedTxnRecord: undecodable bytes, or a record that fails validation (empty or
            oversized txn id, duplicate keys, duplicate participants).
    """
    try:
        msg = pb.TxnCommand.FromString(data)
    except Exception as exc:  # untrusted bytes: any decoder failure
        raise MalformedTxnRecord(f"bad transaction command: {exc}") from None
    return decode_command_message(msg)


def decode_command_message(msg: pb.TxnCommand) -> TxnCommand:
    """The record of a parsed `paxoskv.txn.TxnCommand` (embedded in another message).

    Raises:
        MalformedTxnRecord: a record that fails validation (as `decode_command`).
    """
    try:
        return _decode_command_pb(msg)
    except MalformedTxnRecord:
        raise
    except Exception as exc:  # untrusted input: any validation failure
        raise MalformedTxnRecord(f"bad transaction command: {exc}") from None


# --------------------------------------------------------------------------------------------
# Stored state (written and read by the shard state machine; corrupt bytes are a bug)


def encode_intents(intents: Sequence[IntentInfo]) -> bytes:
    """Encode every intent of one key (the caller orders them by txn_id)."""
    msg = pb.KeyIntents(
        intents=[
            pb.IntentRecord(
                txn_id=i.txn_id,
                write=i.kind is IntentKind.WRITE,
                value=i.value or b"",
                delete=i.kind is IntentKind.WRITE and i.value is None,
                prepare_ts=i.prepare_ts,
                ttl_ms=i.ttl_ms,
            )
            for i in intents
        ]
    )
    data: bytes = msg.SerializeToString()
    return data


def decode_intents(data: bytes) -> list[IntentInfo]:
    """Decode the intents of one key.

    Raises:
        MalformedTxnRecord: undecodable bytes.
    """
    try:
        msg = pb.KeyIntents.FromString(data)
    except Exception as exc:
        raise MalformedTxnRecord(f"bad intent record: {exc}") from None
    return [
        IntentInfo(
            txn_id=i.txn_id,
            kind=IntentKind.WRITE if i.write else IntentKind.READ,
            prepare_ts=i.prepare_ts,
            value=None if (i.delete or not i.write) else i.value,
            ttl_ms=i.ttl_ms,
        )
        for i in msg.intents
    ]


def encode_prepared(info: PreparedInfo) -> bytes:
    """Encode a participant's prepared record."""
    data: bytes = pb.PreparedRecord(
        txn_id=info.txn_id,
        coordinator_group=info.coordinator_group,
        participants=info.participants,
        prepare_ts=info.prepare_ts,
        write_keys=info.write_keys,
        read_keys=info.read_keys,
        read_ranges=_ranges_pb(info.read_ranges),
    ).SerializeToString()
    return data


def decode_prepared(data: bytes) -> PreparedInfo:
    """Decode a prepared record.

    Raises:
        MalformedTxnRecord: undecodable bytes.
    """
    try:
        msg = pb.PreparedRecord.FromString(data)
    except Exception as exc:
        raise MalformedTxnRecord(f"bad prepared record: {exc}") from None
    return PreparedInfo(
        txn_id=msg.txn_id,
        coordinator_group=msg.coordinator_group,
        participants=tuple(msg.participants),
        prepare_ts=msg.prepare_ts,
        write_keys=tuple(msg.write_keys),
        read_keys=tuple(msg.read_keys),
        read_ranges=_ranges(msg.read_ranges),
    )


def encode_decision(info: DecisionInfo) -> bytes:
    """Encode a coordinator's decision record."""
    data: bytes = pb.DecisionRecord(
        txn_id=info.txn_id,
        committed=info.committed,
        commit_ts=info.commit_ts,
        participants=info.participants,
        decided_ts=info.decided_ts,
        finished=info.finished,
        one_phase=info.one_phase,
        late=info.late,
    ).SerializeToString()
    return data


def decode_decision(data: bytes) -> DecisionInfo:
    """Decode a decision record.

    Raises:
        MalformedTxnRecord: undecodable bytes.
    """
    try:
        msg = pb.DecisionRecord.FromString(data)
    except Exception as exc:
        raise MalformedTxnRecord(f"bad decision record: {exc}") from None
    return DecisionInfo(
        txn_id=msg.txn_id,
        committed=msg.committed,
        commit_ts=msg.commit_ts,
        participants=tuple(msg.participants),
        decided_ts=msg.decided_ts,
        finished=msg.finished,
        one_phase=msg.one_phase,
        late=msg.late,
    )
