"""Property: what a transaction reads (get and scan, with its own buffered writes) equals a
plain model — the stored data overlaid with the transaction's writes — for random stores and
random operation sequences, across shard boundaries and scan limits. And what it commits is
exactly the overlay."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from test_client_fakekv import FakeKV, decided_sync, fake_in_thread, sync_client

from txn import Client

# Keys on both sides of the split points "g" and "p", so scans cross shards.
KEYS = [b"a", b"ab", b"b", b"f", b"g", b"ga", b"h", b"o", b"p", b"pa", b"q", b"z"]
BOUNDS = [b"", b"a", b"b", b"g", b"gb", b"p", b"q", b"zz"]

keys = st.sampled_from(KEYS)
values = st.binary(min_size=0, max_size=3)
ops = st.one_of(
    st.tuples(st.just("put"), keys, values),
    st.tuples(st.just("delete"), keys),
    st.tuples(st.just("get"), keys),
    st.tuples(
        st.just("scan"),
        st.sampled_from(BOUNDS),
        st.one_of(st.none(), st.sampled_from(BOUNDS)),
        st.one_of(st.none(), st.integers(min_value=1, max_value=6)),
    ),
)


@pytest.fixture(scope="module")
def setup() -> Iterator[tuple[FakeKV, Client]]:
    with fake_in_thread() as fake, sync_client(fake) as client:
        yield fake, client


def model_scan(
    data: dict[bytes, bytes], start: bytes, end: bytes | None, limit: int | None
) -> list[tuple[bytes, bytes]]:
    items = sorted((k, v) for k, v in data.items() if k >= start and (end is None or k < end))
    return items if limit is None else items[:limit]


@settings(max_examples=60)
@given(
    stored=st.dictionaries(keys, st.binary(min_size=1, max_size=3), max_size=8),
    tombstones=st.sets(keys, max_size=3),
    program=st.lists(ops, max_size=12),
)
def test_transaction_reads_match_the_model(
    setup: tuple[FakeKV, Client],
    stored: dict[bytes, bytes],
    tombstones: set[bytes],
    program: list[tuple[object, ...]],
) -> None:
    fake, client = setup
    with fake.lock:
        fake.store.versions.clear()
        for key in sorted(tombstones):
            fake.store.write(key, b"gone", fake.store.tick())
            fake.store.write(key, None, fake.store.tick())
        for key, value in sorted(stored.items()):
            fake.store.write(key, value, fake.store.tick())
    model = dict(stored)
    with client.transaction() as tx:
        for op in program:
            if op[0] == "put":
                _, key, value = op
                tx.put(key, value)  # type: ignore[arg-type]
                model[key] = value  # type: ignore[index]
            elif op[0] == "delete":
                tx.delete(op[1])  # type: ignore[arg-type]
                model.pop(op[1], None)  # type: ignore[arg-type]
            elif op[0] == "get":
                assert tx.get(op[1]) == model.get(op[1])  # type: ignore[arg-type]
            else:
                _, start, end, limit = op
                got = tx.scan(start, end, limit)  # type: ignore[arg-type]
                assert got == model_scan(model, start, end, limit)  # type: ignore[arg-type]
        # Every read recorded the version the store had (0 when never written).
        for key, version in tx.read_set.items():
            assert version == fake.store.latest(key)[0]
    decided_sync(fake)
    committed = {k: v for k, hist in fake.store.versions.items() if (v := hist[-1][1]) is not None}
    assert committed == model
