"""What one transaction part may cost a group (node rule 4), found by a wire review.

- Scanned ranges must be disjoint: the phantom check reads each range, and one range listed
  2,000 times in a 42 KB Prepare held every replica's apply for 15-20 s.
- At most MAX_TXN_ITEMS keys and ranges per part: a Prepare of 100,000 small keys held the
  leader's loop for 7.5 s in admission and encoding.
- The phantom check reads lazily, so a range over a large shard with nothing read costs one
  key, not the shard.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace

from hypothesis import given
from hypothesis import strategies as st

from router import kv_pb2 as kv
from router.limits import MAX_ATOMIC_OPS
from shard.engine import KV, MemEngine
from tests.unit.shard.test_node_core import OneNode, header, put, tid
from txn.atomic import AtomicOp, encode_int
from txn.codec import write_item_fields
from txn.records import MAX_TXN_ITEMS, WriteItem


def prepare(txn_id: bytes, **fields: object) -> kv.Request:
    return kv.Request(
        prepare=kv.PrepareRequest(
            header=header(1),
            txn_id=txn_id,
            coordinator_group=1,
            participants=[1],
            ts=1,
            **fields,  # type: ignore[arg-type]
        )
    )


def error_of(answer: kv.Response) -> kv.Error:
    return getattr(answer, answer.WhichOneof("result")).error  # type: ignore[no-any-return]


def test_overlapping_scanned_ranges_are_refused() -> None:
    node = OneNode()
    ranges = [kv.KeyRange(start=b"a", end=b"f"), kv.KeyRange(start=b"c", end=b"d")]
    error = error_of(node.call(prepare(tid(b"t1"), read_ranges=ranges)))
    assert error.code == kv.INVALID_ARGUMENT and "overlap" in error.message
    whole = [kv.KeyRange(start=b"a", end=b"c"), kv.KeyRange(start=b"c", end=b"e")]
    assert error_of(node.call(prepare(tid(b"t2"), read_ranges=whole))).code == kv.OK  # adjacent
    assert node.core.hosts[1].shard.prepared(tid(b"t1")) is None


def test_a_part_over_max_txn_items_is_refused_and_nothing_changes() -> None:
    node = OneNode()
    writes = [kv.WriteItem(key=b"a%05d" % i, value=b"v") for i in range(MAX_TXN_ITEMS)]
    reads = [kv.ReadItem(key=b"b", version=0)]
    error = error_of(node.call(prepare(tid(b"t1"), writes=writes, reads=reads)))
    assert error.code == kv.LIMIT_EXCEEDED and "MAX_TXN_ITEMS" in error.message
    assert node.core.hosts[1].shard.prepared(tid(b"t1")) is None
    assert node.call(put(b"a00001", b"x")).put.error.code == kv.OK  # no intent left
    assert error_of(node.call(prepare(tid(b"t2"), writes=writes))).code == kv.OK  # at the limit


def test_a_part_over_max_atomic_ops_is_refused_and_nothing_changes() -> None:
    """Each atomic operation reads its key's value (up to 1 MiB) where the part is applied,
    which no other write does: 64 of them in a part, over all its keys, and no more."""
    node = OneNode()
    add = WriteItem(key=b"", value=None, ops=((AtomicOp.ADD, encode_int(1)),))

    def adds(count: int) -> list[kv.WriteItem]:
        return [
            kv.WriteItem(**write_item_fields(replace(add, key=b"c%03d" % i))) for i in range(count)
        ]

    error = error_of(node.call(prepare(tid(b"t1"), writes=adds(MAX_ATOMIC_OPS + 1))))
    assert error.code == kv.LIMIT_EXCEEDED and "MAX_ATOMIC_OPS" in error.message
    assert node.core.hosts[1].shard.prepared(tid(b"t1")) is None
    assert error_of(node.call(prepare(tid(b"t2"), writes=adds(MAX_ATOMIC_OPS)))).code == kv.OK


def test_atomic_operands_count_in_a_parts_bytes() -> None:
    """A part's bytes (MAX_COMMAND_BYTES) count the operands of its atomic writes, as they
    count values: 40 operands of 64 KiB are 2.5 MiB."""
    node = OneNode()
    operand = b"\x01" * (64 << 10)
    writes = [
        kv.WriteItem(
            **write_item_fields(
                WriteItem(key=b"c%03d" % i, value=None, ops=((AtomicOp.BIT_OR, operand),))
            )
        )
        for i in range(40)
    ]
    error = error_of(node.call(prepare(tid(b"t1"), writes=writes)))
    assert error.code == kv.LIMIT_EXCEEDED and "MAX_COMMAND_BYTES" in error.message
    assert node.core.hosts[1].shard.prepared(tid(b"t1")) is None


def test_the_phantom_check_stops_at_the_first_key_not_read() -> None:
    node = OneNode()
    writes = [kv.WriteItem(key=b"a%05d" % i, value=b"v") for i in range(3000)]
    one_phase = kv.CommitOnePhaseRequest(header=header(1), txn_id=tid(b"load"), ts=1, writes=writes)
    assert node.call(kv.Request(commit_one_phase=one_phase)).commit_one_phase.error.code == kv.OK
    engine = node.disk.engine
    consumed = 0
    real_iterate = engine.iterate

    def counting_iterate(lo: bytes, hi: bytes) -> Iterator[KV]:
        nonlocal consumed
        for pair in real_iterate(lo, hi):
            consumed += 1
            yield pair

    engine.iterate = counting_iterate  # type: ignore[method-assign]
    ranges = [kv.KeyRange(start=b"a", end=b"b")]
    error = error_of(node.call(prepare(tid(b"t1"), read_ranges=ranges)))
    assert error.code == kv.CONFLICT and "phantom" in error.message
    assert 0 < consumed < 50, consumed


OPS = st.lists(
    st.tuples(
        st.sampled_from(["put", "delete", "delete_range"]),
        st.binary(min_size=1, max_size=2),
        st.binary(min_size=1, max_size=2),
    ),
    max_size=30,
)


@given(base=st.dictionaries(st.binary(min_size=1, max_size=2), st.binary(max_size=2)), ops=OPS)
def test_a_batch_iterates_what_it_will_leave(base: dict[bytes, bytes], ops: list[tuple]) -> None:
    """`iterate` (and `scan`, its list) against a plain dict of what the batch will leave,
    checked after every staged operation: puts, deletes, range deletes and puts inside
    them, keys the engine has and has not."""
    engine = MemEngine()
    seed = engine.new_batch()
    for key, value in base.items():
        seed.put(key, value)
    engine.write(seed, sync=True)
    model = dict(base)
    batch = engine.new_batch()
    for op, a, b in ops:
        if op == "put":
            batch.put(a, b)
            model[a] = b
        elif op == "delete":
            batch.delete(a)
            model.pop(a, None)
        else:
            lo, hi = min(a, b), max(a, b)
            batch.delete_range(lo, hi)
            model = {k: v for k, v in model.items() if not lo <= k < hi}
        for lo, hi in ((b"", b"\xff\xff\xff"), (a, b), (min(a, b), max(a, b))):
            expected = sorted((k, v) for k, v in model.items() if lo <= k < hi)
            assert list(batch.iterate(lo, hi)) == expected
