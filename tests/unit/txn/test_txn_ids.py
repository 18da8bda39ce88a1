"""Transaction ids that carry their start timestamp (txn/txn_ids.py, node rule 13)."""

from __future__ import annotations

import pytest

from txn.errors import TxnRef
from txn.hlc import LOGICAL_BITS
from txn.records import MAX_TXN_ID_BYTES
from txn.txn_ids import RANDOM_BYTES, TAG, TXN_ID_BYTES, new_txn_id, start_ts_of, txn_id_with_start


def test_an_id_gives_back_its_start_and_ids_of_one_start_differ() -> None:
    start = (1_700_000_000_000_000 << 12) | 7
    first, second = new_txn_id(start), new_txn_id(start)
    assert start_ts_of(first) == start_ts_of(second) == start
    assert first != second
    assert len(first) == TXN_ID_BYTES <= MAX_TXN_ID_BYTES and first.startswith(TAG)


def test_the_simulators_ids_are_its_nonces() -> None:
    nonce = bytes(range(RANDOM_BYTES))
    txn_id = txn_id_with_start(5, nonce)
    assert txn_id.endswith(nonce) and start_ts_of(txn_id) == 5


@pytest.mark.parametrize(
    "txn_id",
    [
        b"t1",
        bytes(16),  # a 16-byte random id of an older client
        b"x" + new_txn_id(9)[1:],  # not the tag
        new_txn_id(9) + b"!",  # the tag, but not its length
        TAG + bytes(8 + RANDOM_BYTES),  # the form, with start 0
    ],
    # Named, not shown: two of them are random, and pytest-xdist's workers must collect the
    # same test names.
    ids=["short", "older-client", "not-the-tag", "too-long", "start-0"],
)
def test_an_id_of_any_other_form_carries_no_start(txn_id: bytes) -> None:
    assert start_ts_of(txn_id) == 0


@pytest.mark.parametrize("start", [0, -1, 1 << 64])
def test_a_start_outside_a_timestamp_is_refused(start: int) -> None:
    with pytest.raises(ValueError, match="outside"):
        new_txn_id(start)


def test_a_nonce_of_another_length_is_refused() -> None:
    with pytest.raises(ValueError, match="nonce"):
        txn_id_with_start(5, b"short")


def test_a_ref_without_its_start_time_takes_the_one_its_id_carries() -> None:
    """So `paxoskv txn-status ID:GROUP --settle` works with a commit line's ref."""
    start_ns = 1_700_000_000_123_456_000
    txn_id = new_txn_id((start_ns // 1000) << LOGICAL_BITS)
    assert TxnRef.parse(f"{txn_id.hex()}:2").started_ns == start_ns
    assert TxnRef(txn_id, 2).started_ns == start_ns
    assert TxnRef(txn_id, 2, 5).started_ns == 5  # a start the caller knows wins
    assert TxnRef(b"t1", 2).started_ns == 0  # unknown: settling refuses it
