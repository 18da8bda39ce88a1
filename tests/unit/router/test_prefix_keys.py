"""`prefix_end`: a scan of [prefix, prefix_end(prefix)) holds exactly the keys with that
prefix, including prefixes that end in 0xff bytes (the examples' own copies overflowed)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

import txn
from router.keys import prefix_end


def in_scan(key: bytes, start: bytes, end: bytes | None) -> bool:
    return start <= key and (end is None or key < end)


def test_prefix_end_examples() -> None:
    assert prefix_end(b"user/") == b"user0"
    assert prefix_end(b"a\xff") == b"b"
    assert prefix_end(b"a\xfe\xff\xff") == b"a\xff"
    assert prefix_end(b"\xff\xff") is None  # no key is past every such key: no end
    assert prefix_end(b"") is None
    assert txn.prefix_end(b"user/") == b"user0"  # the client's, which checks its argument


def test_the_clients_prefix_end_refuses_what_is_not_bytes() -> None:
    with pytest.raises(txn.InvalidArgument, match=r"encode a str prefix first"):
        txn.prefix_end("user/")  # type: ignore[arg-type]
    with pytest.raises(txn.InvalidArgument, match="a prefix is bytes, got int"):
        txn.prefix_end(3)  # type: ignore[arg-type]
    assert txn.prefix_end(bytearray(b"a")) == b"b"
    assert txn.prefix_end(b"") is None


# Short keys over a tiny alphabet, so that keys with the prefix (and near misses) come up.
_keys = st.binary(max_size=4).map(lambda b: bytes(c % 3 + 0xFD for c in b))


@given(prefix=_keys, key=_keys)
def test_the_scan_of_a_prefix_holds_exactly_its_keys(prefix: bytes, key: bytes) -> None:
    assert in_scan(key, prefix, prefix_end(prefix)) == key.startswith(prefix)


@given(prefix=st.binary(max_size=6), key=st.binary(max_size=8))
def test_the_scan_of_any_prefix_holds_exactly_its_keys(prefix: bytes, key: bytes) -> None:
    assert in_scan(key, prefix, prefix_end(prefix)) == key.startswith(prefix)
