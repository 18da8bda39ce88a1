"""Atomic operations: their semantics (FoundationDB's), their wire form, and the participant
rules that compute their values (txn/atomic.py, txn/codec.py, txn.participant P5 and O4)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from router import kv_pb2 as kv
from router.limits import MAX_ATOMIC_OPS, MAX_VALUE_BYTES
from txn.atomic import (
    ATOMIC_MARKER,
    AtomicOp,
    apply_op,
    apply_ops,
    decode_int,
    encode_int,
)
from txn.codec import (
    MalformedTxnRecord,
    decode_command,
    encode_command,
    write_item,
    write_item_fields,
    write_item_refusal,
)
from txn.participant import (
    ATOMIC_VALUE_BYTES,
    PHASE_LIMIT,
    commit_one_phase,
    prepare,
    resolve,
)
from txn.records import CommitOnePhase, Prepare, ReadItem, Resolve, WriteItem
from txn.store import MemTxnStore

A = AtomicOp

# (op, current value, operand, result): FoundationDB's documented semantics.
CASES = [
    (A.ADD, None, b"\x05\x00", b"\x05\x00"),  # absent: zeros
    (A.ADD, b"\xff\x00", b"\x01\x00", b"\x00\x01"),  # carry
    (A.ADD, b"\xff\xff", b"\x01\x00", b"\x00\x00"),  # wraps at the operand's length
    (A.ADD, b"\x01\x02\x03", b"\x01", b"\x02"),  # current cut to the operand's length
    (A.ADD, b"\x01", b"\x01\x00\x00", b"\x02\x00\x00"),  # current padded with zeros
    (A.ADD, b"\x07", b"", b""),
    (A.BIT_AND, None, b"\x0f", b"\x0f"),  # absent: the operand
    (A.BIT_AND, b"\x3c\xff", b"\x0f", b"\x0c"),
    (A.BIT_AND, b"\x3c", b"\x0f\x0f", b"\x0c\x00"),
    (A.BIT_OR, None, b"\x0f", b"\x0f"),
    (A.BIT_OR, b"\x30\x01", b"\x0f", b"\x3f"),
    (A.BIT_XOR, b"\xff", b"\x0f", b"\xf0"),
    (A.BIT_XOR, None, b"\x0f", b"\x0f"),
    (A.MAX, None, b"\x02", b"\x02"),
    (A.MAX, b"\x00\x01", b"\xff\x00", b"\x00\x01"),  # little-endian: 256 > 255
    (A.MAX, b"\x03", b"\x02", b"\x03"),
    (A.MAX, b"\x01\x09", b"\x02", b"\x02"),  # current cut to 1 byte: 1 < 2
    (A.MIN, None, b"\x09", b"\x09"),  # absent: the operand, not zero
    (A.MIN, b"\x00\x01", b"\xff\x00", b"\xff\x00"),
    (A.MIN, b"\x05", b"\x09\x00", b"\x05\x00"),  # current padded
    (A.BYTE_MAX, None, b"b", b"b"),
    (A.BYTE_MAX, b"ab", b"b", b"b"),  # byte order, current uncut
    (A.BYTE_MAX, b"ba", b"b", b"ba"),
    (A.BYTE_MIN, None, b"b", b"b"),
    (A.BYTE_MIN, b"ab", b"b", b"ab"),
    (A.APPEND_IF_FITS, None, b"x", b"x"),
    (A.APPEND_IF_FITS, b"ab", b"c", b"abc"),
    (A.APPEND_IF_FITS, b"a" * MAX_VALUE_BYTES, b"c", b"a" * MAX_VALUE_BYTES),  # too big: kept
    (A.APPEND_IF_FITS, b"a" * (MAX_VALUE_BYTES - 1), b"c", b"a" * (MAX_VALUE_BYTES - 1) + b"c"),
    (A.COMPARE_AND_CLEAR, b"same", b"same", None),
    (A.COMPARE_AND_CLEAR, b"other", b"same", b"other"),
    (A.COMPARE_AND_CLEAR, None, b"same", None),
]


@pytest.mark.parametrize(("op", "current", "operand", "result"), CASES)
def test_each_operation_as_foundationdb_documents_it(
    op: AtomicOp, current: bytes | None, operand: bytes, result: bytes | None
) -> None:
    assert apply_op(op, current, operand) == result


def test_every_operation_has_a_case() -> None:
    assert {case[0] for case in CASES} == set(AtomicOp)


@given(st.lists(st.integers(min_value=-(2**63), max_value=2**63 - 1), max_size=20))
def test_adds_of_encoded_ints_sum_as_signed_64_bit_integers(deltas: list[int]) -> None:
    value = apply_ops(None, [(A.ADD, encode_int(d)) for d in deltas])
    total = sum(deltas)
    expected = (total + 2**63) % 2**64 - 2**63  # wrapped to the signed 64-bit range
    assert decode_int(value) == (expected if deltas else 0)


def test_operations_apply_in_order() -> None:
    ops = [(A.APPEND_IF_FITS, b"a"), (A.APPEND_IF_FITS, b"b"), (A.COMPARE_AND_CLEAR, b"xab")]
    assert apply_ops(b"x", ops) is None
    assert apply_ops(b"y", ops) == b"yab"


@pytest.mark.parametrize("bad", [True, 2**64, -(2**63) - 1, 1.0, "1"])
def test_encode_int_refuses_what_8_bytes_cannot_hold(bad: object) -> None:
    with pytest.raises(ValueError, match="8-byte integer"):
        encode_int(bad)  # type: ignore[arg-type]


def test_decode_int_reads_an_absent_counter_as_zero_and_unsigned_on_request() -> None:
    assert decode_int(None) == 0
    assert decode_int(encode_int(-1)) == -1
    assert decode_int(encode_int(-1), signed=False) == 2**64 - 1


# ------------------------------------------------------------------ wire form


def test_an_atomic_write_round_trips_through_both_protos_with_the_marker() -> None:
    write = WriteItem(key=b"k", value=None, ops=((A.ADD, b"\x01"), (A.BYTE_MAX, b"z")))
    fields = write_item_fields(write)
    message = kv.WriteItem(**fields)
    # An older node knows only key, value and delete: it sees a delete with a value, which
    # it refuses, never a plain write.
    assert message.delete and message.value == ATOMIC_MARKER
    assert write_item_refusal(message) is None
    assert write_item(message) == write
    record = Prepare(txn_id=b"t", coordinator_group=1, participants=(1,), writes=(write,))
    assert decode_command(encode_command(record)) == record


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        ({"ops": [{"kind": 1, "operand": b"x"}]}, "lacks delete: true"),
        ({"ops": [{"kind": 1}], "delete": True, "value": b"other"}, "lacks delete: true"),
        ({"ops": [{"kind": 0}], "delete": True, "value": ATOMIC_MARKER}, "unknown atomic"),
        ({"ops": [{"kind": 11}], "delete": True, "value": ATOMIC_MARKER}, "unknown atomic"),
        (
            {"ops": [{"kind": 1}] * (MAX_ATOMIC_OPS + 1), "delete": True, "value": ATOMIC_MARKER},
            "atomic operations",
        ),
        ({"delete": True, "value": ATOMIC_MARKER}, "has delete: true and a value"),
    ],
)
def test_malformed_atomic_writes_are_refused(fields: dict[str, object], reason: str) -> None:
    refusal = write_item_refusal(kv.WriteItem(key=b"k", **fields))  # type: ignore[arg-type]
    assert refusal is not None and reason in refusal


def test_a_logged_record_with_a_malformed_atomic_write_does_not_decode() -> None:
    from txn import txn_pb2 as pb

    command = pb.TxnCommand(
        prepare=pb.Prepare(
            txn_id=b"t",
            coordinator_group=1,
            participants=[1],
            writes=[pb.WriteItem(key=b"k", ops=[pb.AtomicOp(kind=99)])],
        )
    )
    with pytest.raises(MalformedTxnRecord, match="lacks delete"):
        decode_command(command.SerializeToString())


def test_a_write_record_takes_ops_or_a_value_not_both() -> None:
    with pytest.raises(ValueError, match="not a value"):
        WriteItem(key=b"k", value=b"v", ops=((A.ADD, b"\x01"),))
    with pytest.raises(ValueError, match="more than"):
        WriteItem(key=b"k", value=None, ops=((A.ADD, b"\x01"),) * (MAX_ATOMIC_OPS + 1))


# ------------------------------------------------------------------ participant rules


def _add(key: bytes, n: int) -> WriteItem:
    return WriteItem(key=key, value=None, ops=((A.ADD, encode_int(n)),))


def test_prepare_computes_the_value_from_the_latest_and_resolve_writes_it() -> None:
    """Rules P5 and R2: the intent carries the sum, the commit writes it at commit_ts."""
    store = MemTxnStore()
    store.write_version(b"c", encode_int(40), 10)
    store.set_max_version(10)
    cmd = Prepare(txn_id=b"t1", coordinator_group=1, participants=(1,), writes=(_add(b"c", 2),))
    result = prepare(store, cmd, 20)
    assert result.conflict is None
    (intent,) = store.intents(b"c")
    assert decode_int(intent.value) == 42
    # A copy of the Prepare (rule P1) changes nothing, and computes nothing again.
    assert prepare(store, cmd, 30).prepare_ts == result.prepare_ts
    assert decode_int(store.intents(b"c")[0].value) == 42
    resolve(store, Resolve(txn_id=b"t1", commit=True, commit_ts=25, participants=(1,)), 25)
    assert store.latest_version(b"c") == (25, False)
    assert decode_int(store.latest_value(b"c")) == 42


def test_an_atomic_write_reads_nothing_so_a_newer_version_conflicts_with_nothing() -> None:
    """The point of it: a transaction that only adds validates no read of the counter."""
    store = MemTxnStore()
    store.write_version(b"c", encode_int(1), 10)
    store.write_version(b"c", encode_int(5), 11)  # changed since "the body ran"
    store.set_max_version(11)
    one = commit_one_phase(store, CommitOnePhase(txn_id=b"t", writes=(_add(b"c", 1),)), 20)
    assert one.conflict is None and one.commit_ts == 20
    assert decode_int(store.latest_value(b"c")) == 6
    # The same body as a read-modify-write of version 10 is refused.
    stale = CommitOnePhase(
        txn_id=b"t2",
        reads=(ReadItem(key=b"c", version=10),),
        writes=(WriteItem(key=b"c", value=encode_int(2)),),
    )
    assert commit_one_phase(store, stale, 30).conflict is not None


def test_a_one_phase_commit_applies_operations_to_a_deleted_key_as_to_an_absent_one() -> None:
    store = MemTxnStore()
    store.write_version(b"c", b"old", 10)
    store.write_version(b"c", None, 11)
    store.set_max_version(11)
    ops = ((A.APPEND_IF_FITS, b"x"), (A.APPEND_IF_FITS, b"y"))
    cmd = CommitOnePhase(txn_id=b"t", writes=(WriteItem(key=b"c", value=None, ops=ops),))
    assert commit_one_phase(store, cmd, 20).commit_ts == 20
    assert store.latest_value(b"c") == b"xy"
    # A compare-and-clear that matches deletes; one that does not leaves the key alone.
    clear = WriteItem(key=b"c", value=None, ops=((A.COMPARE_AND_CLEAR, b"xy"),))
    assert commit_one_phase(store, CommitOnePhase(txn_id=b"t2", writes=(clear,)), 30).commit_ts
    assert store.latest_version(b"c") == (30, True)
    again = CommitOnePhase(txn_id=b"t3", writes=(clear,))
    assert commit_one_phase(store, again, 40).commit_ts == 40
    assert store.latest_version(b"c") == (30, True)  # deleting an absent key writes nothing


def test_another_transactions_intent_still_refuses_an_atomic_write() -> None:
    """Rule P4 holds for atomic writes: their value depends on no other writer getting in."""
    store = MemTxnStore()
    first = Prepare(txn_id=b"t1", coordinator_group=1, participants=(1,), writes=(_add(b"c", 1),))
    assert prepare(store, first, 10).conflict is None
    second = Prepare(txn_id=b"t2", coordinator_group=1, participants=(1,), writes=(_add(b"c", 1),))
    conflict = prepare(store, second, 11).conflict
    assert conflict is not None and conflict.other_txn == b"t1"


def _big_values(store: MemTxnStore, count: int) -> list[WriteItem]:
    """`count` keys holding values one byte short of MAX_VALUE_BYTES, and a one-byte append
    to each (it fits: each reads and writes a whole value)."""
    for i in range(count):
        store.write_version(b"big%d" % i, b"v" * (MAX_VALUE_BYTES - 1), 10)
    store.set_max_version(10)
    append = ((A.APPEND_IF_FITS, b"x"),)
    return [WriteItem(key=b"big%d" % i, value=None, ops=append) for i in range(count)]


def test_atomic_writes_reading_and_writing_too_many_bytes_are_refused_before_any_write() -> None:
    """Rule A1: the values an atomic part reads and writes come from the store, so only the
    apply can count them; over ATOMIC_VALUE_BYTES it is refused, phase "limit"."""
    assert ATOMIC_VALUE_BYTES < 4 * MAX_VALUE_BYTES  # two appends to 1 MiB values: 4 MiB
    store = MemTxnStore()
    writes = _big_values(store, 2)
    cmd = Prepare(txn_id=b"t1", coordinator_group=1, participants=(1,), writes=tuple(writes))
    refused = prepare(store, cmd, 20).conflict
    assert refused is not None and refused.phase == PHASE_LIMIT and refused.key == b"big1"
    assert store.intents(b"big0") == [] and store.prepared(b"t1") is None
    # The same in one phase: refused, and recorded, so a late copy is refused too (O3).
    one = CommitOnePhase(txn_id=b"t2", writes=tuple(writes))
    assert commit_one_phase(store, one, 30).conflict.phase == PHASE_LIMIT  # type: ignore[union-attr]
    again = commit_one_phase(store, one, 40).conflict
    assert again is not None and "already aborted" in again.reason
    assert store.latest_version(b"big0") == (10, False)
    # One such key fits: it reads and writes 2 MiB.
    single = CommitOnePhase(txn_id=b"t3", writes=(writes[0],))
    assert commit_one_phase(store, single, 50).commit_ts == 50
    assert store.latest_value(b"big0") == b"v" * (MAX_VALUE_BYTES - 1) + b"x"
