"""`prefix_end`: a scan of [prefix, prefix_end(prefix)) holds exactly the keys with that
prefix, including prefixes that end in 0xff bytes (the examples' own copies overflowed)."""

from __future__ import annotations

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
    assert txn.prefix_end is prefix_end  # the client's import


# Short keys over a tiny alphabet, so that keys with the prefix (and near misses) come up.
_keys = st.binary(max_size=4).map(lambda b: bytes(c % 3 + 0xFD for c in b))


@given(prefix=_keys, key=_keys)
def test_the_scan_of_a_prefix_holds_exactly_its_keys(prefix: bytes, key: bytes) -> None:
    assert in_scan(key, prefix, prefix_end(prefix)) == key.startswith(prefix)


@given(prefix=st.binary(max_size=6), key=st.binary(max_size=8))
def test_the_scan_of_any_prefix_holds_exactly_its_keys(prefix: bytes, key: bytes) -> None:
    assert in_scan(key, prefix, prefix_end(prefix)) == key.startswith(prefix)
