"""Size limits, command and result encoding, and the MVCC key encoding."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shard import mvcc
from shard.codec import (
    Command,
    CommandResult,
    Expect,
    Op,
    decode_command,
    encode_cas,
    encode_command,
    encode_delete,
    encode_put,
)
from shard.errors import InvalidArgument, LimitExceeded, MalformedCommand, Status
from shard.limits import (
    MAX_COMMAND_BYTES,
    MAX_KEY_BYTES,
    MAX_TS,
    MAX_VALUE_BYTES,
    validate_command_size,
    validate_key,
    validate_ts,
    validate_value,
)


def test_key_limits() -> None:
    validate_key(b"k")
    validate_key(b"k" * MAX_KEY_BYTES)
    with pytest.raises(InvalidArgument, match="empty key"):
        validate_key(b"")
    with pytest.raises(LimitExceeded) as info:
        validate_key(b"k" * (MAX_KEY_BYTES + 1))
    assert info.value.size == MAX_KEY_BYTES + 1 and info.value.limit == MAX_KEY_BYTES
    assert "key is 4097 bytes, over the limit of 4096 bytes (MAX_KEY_BYTES)" in str(info.value)
    assert info.value.status is Status.LIMIT_EXCEEDED


def test_value_command_and_ts_limits() -> None:
    validate_value(b"")
    validate_value(b"v" * MAX_VALUE_BYTES)
    with pytest.raises(LimitExceeded, match="MAX_VALUE_BYTES"):
        validate_value(b"v" * (MAX_VALUE_BYTES + 1))
    with pytest.raises(LimitExceeded, match="MAX_COMMAND_BYTES"):
        validate_command_size(b"x" * (3 * MAX_VALUE_BYTES))
    validate_ts(0)
    validate_ts(MAX_TS)
    for bad in (-1, MAX_TS + 1):
        with pytest.raises(InvalidArgument):
            validate_ts(bad)


def test_largest_valid_cas_fits_the_command_limit() -> None:
    data = encode_cas(
        b"k" * MAX_KEY_BYTES,
        MAX_TS,
        expected_value=b"v" * MAX_VALUE_BYTES,
        new_value=b"w" * MAX_VALUE_BYTES,
    )
    validate_command_size(data)


def test_command_round_trips() -> None:
    cases = [
        (encode_put(b"k", b"v", 7), Command(Op.PUT, b"k", 7, b"v")),
        (encode_put(b"k", b"", 0), Command(Op.PUT, b"k", 0, b"")),
        (encode_delete(b"k", 9), Command(Op.DELETE, b"k", 9)),
        (
            encode_cas(b"k", 1, expected_value=b"", new_value=b"n"),
            Command(Op.CAS, b"k", 1, b"n", Expect.VALUE, b""),
        ),
        (
            encode_cas(b"k", 1, expected_version=0, delete=True),
            Command(Op.CAS, b"k", 1, None, Expect.VERSION, None, 0),
        ),
        (
            encode_cas(b"k", 1, expect_absent=True, new_value=b""),
            Command(Op.CAS, b"k", 1, b"", Expect.ABSENT),
        ),
    ]
    for data, command in cases:
        assert decode_command(data) == command
        assert encode_command(command) == data


def test_cas_needs_one_condition_and_one_action() -> None:
    with pytest.raises(InvalidArgument):
        encode_cas(b"k", 1, new_value=b"v")
    with pytest.raises(InvalidArgument):
        encode_cas(b"k", 1, expected_version=1, expect_absent=True, new_value=b"v")
    with pytest.raises(InvalidArgument):
        encode_cas(b"k", 1, expected_version=1)
    with pytest.raises(InvalidArgument):
        encode_cas(b"k", 1, expected_version=1, new_value=b"v", delete=True)


def test_malformed_commands() -> None:
    # field 4 (cas) with an expect_absent=false condition and a delete=false action
    for bad in [b"\xff", b"", b"\x22\x00", b"\x22\x02\x20\x00", b"\x22\x04\x20\x01\x30\x00"]:
        with pytest.raises(MalformedCommand):
            decode_command(bad)


@given(st.binary(max_size=64))
def test_decoding_arbitrary_bytes_never_raises_anything_else(data: bytes) -> None:
    try:
        command = decode_command(data)
    except MalformedCommand:
        return
    assert command.op in (Op.PUT, Op.DELETE, Op.CAS)


def test_ok_means_the_command_took_effect() -> None:
    assert CommandResult(Status.OK).ok and not CommandResult(Status.CAS_FAILED).ok


@given(st.binary(max_size=12), st.binary(max_size=12), st.integers(0, 2**63))
def test_key_encoding_preserves_order_and_is_prefix_free(a: bytes, b: bytes, v: int) -> None:
    ea, eb = mvcc.escape_key(a), mvcc.escape_key(b)
    assert (ea < eb) == (a < b)
    assert mvcc.unescape_key(ea) == a
    if a != b:
        assert not eb.startswith(ea)
    # Records of key a (any version) sort below every record of a larger key b.
    if a < b:
        assert ea + mvcc.invert_version(0) + b"t" < eb + mvcc.invert_version(2**64 - 1)
    record = ea + mvcc.invert_version(v) + b"v"
    assert mvcc.record_version(record) == v


def test_prefixes() -> None:
    assert mvcc.group_prefix(1) == b"d\x00\x00\x00\x01"
    assert mvcc.storage_prefix_end(b"d\x00\x00\x00\xff") == b"d\x00\x00\x01"
    assert mvcc.storage_prefix_end(mvcc.group_prefix(2**32 - 1)) == b"e"
    with pytest.raises(ValueError):
        mvcc.group_prefix(2**32)
    with pytest.raises(ValueError):
        mvcc.storage_prefix_end(b"\xff")


def test_the_command_limit_is_inclusive() -> None:
    validate_command_size(b"x" * MAX_COMMAND_BYTES)
    with pytest.raises(LimitExceeded, match="MAX_COMMAND_BYTES"):
        validate_command_size(b"x" * (MAX_COMMAND_BYTES + 1))
