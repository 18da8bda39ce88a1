"""Atomic operations: writes whose value the shard computes from the key's value at commit.

FoundationDB's atomic mutations, with its semantics (API version 510 and later). A
transaction that adds to a counter with `tx.add(key, 1)` reads nothing: two transactions
adding to the same key never make each other's commit fail for a changed read, and each
addition is applied at most once (exactly once when the commit is acknowledged), to the
value the key has when the transaction commits.

Where the value is computed: in the replicated apply of the transaction's PREPARE (or its
one-phase commit), from the key's latest committed value (`txn.participant`, rules P5 and
O4). That value is the one at the commit timestamp: from PREPARE on, the transaction's write
intent on the key keeps every other writer out until its decision is applied. Every replica
applies the same command to the same state, so every replica computes the same value.

Every function here is pure.
"""

from __future__ import annotations

import enum
import operator
from collections.abc import Callable, Sequence

from router.limits import MAX_VALUE_BYTES

__all__ = [
    "ATOMIC_MARKER",
    "AtomicOp",
    "apply_op",
    "apply_ops",
    "decode_int",
    "encode_int",
]

#: The value of an atomic write on the wire, beside delete: true (router/kv.proto's
#: WriteItem.ops): nodes that know no `ops` but refuse a delete with a value (from commit
#: a548a7d, protocol version 3, on) refuse it instead of taking it as a plain write; nodes
#: from before that commit take it as a delete (README, "What is not there yet").
ATOMIC_MARKER = b"atomic"


class AtomicOp(enum.IntEnum):
    """An atomic operation on a key's value (`AsyncTransaction.atomic`).

    "Little-endian" operations treat the value and the operand as little-endian integers
    of the operand's length: the current value is cut to that length, or padded with zero
    bytes up to it (an absent key reads as zeros), and the result has the operand's length.
    """

    #: Little-endian addition, wrapping around (two's complement: adding
    #: `encode_int(-1)` subtracts one).
    ADD = 1
    #: Little-endian bitwise and; an absent key takes the operand.
    BIT_AND = 2
    #: Little-endian bitwise or.
    BIT_OR = 3
    #: Little-endian bitwise xor.
    BIT_XOR = 4
    #: The larger, compared as little-endian unsigned integers.
    MAX = 5
    #: The smaller, compared as little-endian unsigned integers; an absent key takes the
    #: operand.
    MIN = 6
    #: The larger in byte order (the current value uncut); an absent key takes the operand.
    BYTE_MAX = 7
    #: The smaller in byte order (the current value uncut); an absent key takes the operand.
    BYTE_MIN = 8
    #: The operand appended to the current value (an absent key takes the operand), unless
    #: the result would be over the value size limit: then the value stays as it is, and
    #: nothing says so (the commit already succeeded when the shard finds out).
    APPEND_IF_FITS = 9
    #: Delete the key if its value equals the operand; else the value stays (a version with
    #: the same value is still written, as for every operation).
    COMPARE_AND_CLEAR = 10


_BITWISE: dict[AtomicOp, Callable[[int, int], int]] = {
    AtomicOp.BIT_AND: operator.and_,
    AtomicOp.BIT_OR: operator.or_,
    AtomicOp.BIT_XOR: operator.xor,
}


def _little(data: bytes) -> int:
    return int.from_bytes(data, "little")


def _fit(value: bytes | None, size: int) -> bytes:
    """`value` cut or zero-padded to `size` bytes (None: zeros)."""
    value = value or b""
    return value[:size].ljust(size, b"\x00")


def apply_op(op: AtomicOp, current: bytes | None, operand: bytes) -> bytes | None:
    """The value `op` with `operand` leaves on a key whose value is `current` (None: the
    key is absent; a None result deletes it)."""
    size = len(operand)
    if op is AtomicOp.ADD:
        total = _little(_fit(current, size)) + _little(operand)
        return (total % (1 << (8 * size))).to_bytes(size, "little") if size else b""
    if op in _BITWISE:
        if current is None and op is AtomicOp.BIT_AND:
            return operand
        # As integers: one pass in C, where a byte at a time in Python took 42 ms a MiB.
        bits = _BITWISE[op](_little(_fit(current, size)), _little(operand))
        return bits.to_bytes(size, "little")
    if op in (AtomicOp.MAX, AtomicOp.MIN):
        if current is None and op is AtomicOp.MIN:
            return operand
        fitted = _fit(current, size)
        larger = _little(fitted) >= _little(operand)
        return fitted if larger == (op is AtomicOp.MAX) else operand
    if op is AtomicOp.BYTE_MAX:
        return operand if current is None else max(current, operand)
    if op is AtomicOp.BYTE_MIN:
        return operand if current is None else min(current, operand)
    if op is AtomicOp.APPEND_IF_FITS:
        if current is None:
            return operand
        return current + operand if len(current) + size <= MAX_VALUE_BYTES else current
    if op is AtomicOp.COMPARE_AND_CLEAR:
        return None if current == operand else current
    raise ValueError(f"unknown atomic operation {op!r}")


def apply_ops(current: bytes | None, ops: Sequence[tuple[AtomicOp, bytes]]) -> bytes | None:
    """`current` after every (op, operand) of `ops`, in order."""
    for op, operand in ops:
        current = apply_op(op, current, operand)
    return current


def encode_int(n: int) -> bytes:
    """`n` as the 8-byte little-endian operand of `AtomicOp.ADD`, `MAX` or `MIN`: two's
    complement for -2**63 <= n < 0, unsigned for 0 <= n < 2**64 (MAX and MIN compare
    unsigned: give them n >= 0)."""
    if isinstance(n, bool) or not isinstance(n, int) or not -(1 << 63) <= n < 1 << 64:
        raise ValueError(f"an 8-byte integer operand is in [-2**63, 2**64), got {n!r}")
    return (n % (1 << 64)).to_bytes(8, "little")


def decode_int(value: bytes | None, *, signed: bool = True) -> int:
    """A counter's value as `AtomicOp.ADD` of `encode_int` operands leaves it: the
    little-endian integer in `value` (None, an absent key: 0)."""
    return int.from_bytes(value or b"", "little", signed=signed)
