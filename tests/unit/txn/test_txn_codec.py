"""txn.codec round trips, malformed input, and record validation on construction."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from txn.codec import (
    MalformedTxnRecord,
    decode_command,
    decode_decision,
    decode_intents,
    decode_prepared,
    encode_command,
    encode_decision,
    encode_intents,
    encode_prepared,
)
from txn.records import (
    MAX_TXN_ID_BYTES,
    CommitOnePhase,
    Decide,
    DecisionInfo,
    Finish,
    IntentInfo,
    IntentKind,
    Prepare,
    PreparedInfo,
    Prevent,
    PurgeDecisions,
    ReadItem,
    Resolve,
    WriteItem,
)

READS = (ReadItem(key=b"a", version=0), ReadItem(key=b"b", version=2**64 - 1))
WRITES = (WriteItem(key=b"a", value=b""), WriteItem(key=b"c", value=None))

COMMANDS = [
    Prepare(
        txn_id=b"t",
        coordinator_group=7,
        participants=(7, 2**32),
        reads=READS,
        writes=WRITES,
        began_ts=2**63,
    ),
    Prepare(txn_id=b"t", coordinator_group=0, participants=()),
    Resolve(txn_id=b"t", commit=True, commit_ts=99),
    Resolve(txn_id=b"t", commit=False),
    Decide(txn_id=b"\x00", participants=(1, 2), commit=True, commit_ts=5),
    Decide(txn_id=b"t", participants=(), commit=False),
    Decide(txn_id=b"t", participants=(3, 4), commit=False, recover=True),
    Prevent(txn_id=b"t"),
    Finish(txn_id=b"t" * MAX_TXN_ID_BYTES),
    PurgeDecisions(before_ts=0),
    PurgeDecisions(before_ts=2**64 - 1),
    PurgeDecisions(before_ts=7, verified=(b"t1", b"t2")),
    CommitOnePhase(txn_id=b"t", reads=READS, writes=WRITES),
]


@pytest.mark.parametrize("record", COMMANDS, ids=lambda r: type(r).__name__)
def test_command_round_trip(record: object) -> None:
    assert decode_command(encode_command(record)) == record  # type: ignore[arg-type]


def test_stored_records_round_trip() -> None:
    intents = [
        IntentInfo(txn_id=b"r1", kind=IntentKind.READ, prepare_ts=3),
        IntentInfo(txn_id=b"w", kind=IntentKind.WRITE, prepare_ts=4, value=b""),
        IntentInfo(txn_id=b"x", kind=IntentKind.WRITE, prepare_ts=5, value=None),
        IntentInfo(txn_id=b"y", kind=IntentKind.WRITE, prepare_ts=6, value=b"v"),
    ]
    assert decode_intents(encode_intents(intents)) == intents
    prepared = PreparedInfo(
        txn_id=b"t",
        coordinator_group=3,
        participants=(3, 4),
        prepare_ts=10,
        write_keys=(b"a", b"b"),
        read_keys=(b"c",),
    )
    assert decode_prepared(encode_prepared(prepared)) == prepared
    decision = DecisionInfo(
        txn_id=b"t", committed=True, commit_ts=7, participants=(1,), decided_ts=6, finished=True
    )
    assert decode_decision(encode_decision(decision)) == decision


def test_encoding_is_deterministic() -> None:
    for record in COMMANDS:
        assert encode_command(record) == encode_command(record)


@pytest.mark.parametrize(
    "data",
    [
        b"\xff\xff\xff",  # not protobuf
        b"",  # no operation
        b"\x22\x00",  # Finish with an empty txn id
        b"\x0a\x00",  # Prepare with an empty txn id
    ],
)
def test_malformed_commands_raise_only_malformed(data: bytes) -> None:
    with pytest.raises(MalformedTxnRecord):
        decode_command(data)


def test_a_write_that_deletes_and_sets_is_malformed() -> None:
    from txn import txn_pb2

    msg = txn_pb2.TxnCommand()
    msg.commit_one_phase.txn_id = b"t"
    msg.commit_one_phase.writes.add(key=b"a", value=b"v", delete=True)
    with pytest.raises(MalformedTxnRecord):
        decode_command(msg.SerializeToString())


@given(st.binary(max_size=64))
def test_decode_never_raises_anything_else(data: bytes) -> None:
    with contextlib.suppress(MalformedTxnRecord):
        decode_command(data)


def test_records_validate_on_construction() -> None:
    with pytest.raises(ValueError):
        Finish(txn_id=b"")
    with pytest.raises(ValueError):
        Finish(txn_id=b"t" * (MAX_TXN_ID_BYTES + 1))
    with pytest.raises(ValueError):
        CommitOnePhase(txn_id=b"t", writes=(WriteItem(key=b"a", value=b"1"),) * 2)
    with pytest.raises(ValueError):
        Prepare(txn_id=b"t", coordinator_group=1, participants=(), reads=(READS[0],) * 2)
    with pytest.raises(ValueError):
        Decide(txn_id=b"t", participants=(1, 1), commit=True)
    with pytest.raises(ValueError):
        Resolve(txn_id=b"t", commit=True, commit_ts=-1)
    with pytest.raises(ValueError):
        ReadItem(key=b"a", version=2**64)
    # A key both read and written is the normal read-modify-write.
    Prepare(
        txn_id=b"t",
        coordinator_group=1,
        participants=(1,),
        reads=(ReadItem(key=b"a", version=1),),
        writes=(WriteItem(key=b"a", value=b"2"),),
    )
    with pytest.raises(ValueError, match="recovery or prevent-round Decide"):
        Decide(txn_id=b"t", participants=(1, 2), commit=True, commit_ts=5, recover=True)
