"""Snapshot/restore of a shard group, and garbage collection of old versions."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from shard import state_machine
from shard.codec import CommandResult, encode_delete, encode_put
from shard.engine import Engine, MemEngine
from shard.errors import SnapshotCorrupt, VersionCompacted
from shard.mvcc import KIND_TOMBSTONE, MAX_U64, pack_latest
from shard.rocks_engine import RocksEngine
from shard.state_machine import ShardStateMachine
from tests.unit.shard.test_shard_txn import Node as TxnNode
from tests.unit.shard.test_snapshot_steps import OP_KEYS, any_op, apply_op

ALL: tuple[bytes, bytes | None] = (b"", None)


def run(sm: ShardStateMachine, engine: Engine, *commands: bytes) -> list[CommandResult]:
    batch = engine.new_batch()
    results = sm.apply(sm.applied_index + 1, commands, batch)
    engine.write(batch, sync=False)
    return results


def dump(engine: Engine, group_id: int) -> list[tuple[bytes, bytes]]:
    prefix = b"d" + group_id.to_bytes(4, "big")
    return [(k[len(prefix) :], v) for k, v in engine.scan(prefix, prefix + b"\xff", None)]


def _populate(sm: ShardStateMachine, engine: Engine) -> None:
    run(sm, engine, *[encode_put(b"k%03d" % i, b"v%d" % i, 10) for i in range(100)])
    run(sm, engine, *[encode_put(b"k%03d" % i, b"w%d" % i, 10) for i in range(0, 100, 2)])
    run(sm, engine, *[encode_delete(b"k%03d" % i, 10) for i in range(0, 100, 5)])
    run(sm, engine, encode_put(b"z\x00", b"", 5000))


def test_snapshot_restore_round_trip_into_a_fresh_engine(tmp_path: Path) -> None:
    src = MemEngine()
    sm = ShardStateMachine(3, ALL, src)
    _populate(sm, src)
    data = sm.snapshot()
    assert ShardStateMachine.snapshot_index(data) == sm.applied_index == 4

    dst = RocksEngine(str(tmp_path / "db"))
    # The destination already hosts stale data of this group and data of another group.
    other = ShardStateMachine(4, ALL, dst)
    run(other, dst, encode_put(b"k000", b"other", 1))
    stale = ShardStateMachine(3, ALL, dst)
    run(stale, dst, encode_put(b"stale", b"x", 1))
    batch = dst.new_batch()
    stale.restore(4, data, batch)
    assert stale.applied_index == 4 and stale.max_version == sm.max_version
    dst.write(batch, sync=True)

    assert dump(dst, 3) == dump(src, 3)
    fresh = ShardStateMachine(3, ALL, dst)
    assert (fresh.applied_index, fresh.max_version) == (sm.applied_index, sm.max_version)
    assert fresh.scan(b"", None, 1000) == sm.scan(b"", None, 1000)
    assert fresh.get(b"k000", at_version=150) == sm.get(b"k000", at_version=150)
    assert fresh.get(b"stale") is None
    assert other.get(b"k000") == (b"other", 1)
    # It continues exactly where the source left off.
    assert run(fresh, dst, encode_put(b"n", b"1", 1)) == run(sm, src, encode_put(b"n", b"1", 1))
    dst.close()


def test_snapshot_sees_written_state_only() -> None:
    engine = MemEngine()
    sm = ShardStateMachine(1, ALL, engine)
    run(sm, engine, encode_put(b"a", b"1", 1))
    batch = engine.new_batch()
    sm.apply(2, [encode_put(b"b", b"2", 2)], batch)  # staged, not written
    data = sm.snapshot()
    assert ShardStateMachine.snapshot_index(data) == 1
    engine.write(batch, sync=False)
    target = MemEngine()
    restored = ShardStateMachine(1, ALL, target)
    batch = target.new_batch()
    restored.restore(1, data, batch)
    target.write(batch, sync=False)
    assert restored.get(b"a") == (b"1", 1) and restored.get(b"b") is None


def test_empty_snapshot_round_trip() -> None:
    sm = ShardStateMachine(1, ALL, MemEngine())
    data = sm.snapshot()
    assert ShardStateMachine.snapshot_index(data) == 0
    engine = MemEngine()
    target = ShardStateMachine(1, ALL, engine)
    run(target, engine, encode_put(b"x", b"y", 1))
    batch = engine.new_batch()
    target.restore(0, data, batch)
    engine.write(batch, sync=False)
    assert engine.scan(b"", None, None) == [(b"d\x00\x00\x00\x01m", bytes(24))]
    assert target.get(b"x") is None and target.applied_index == 0


def test_corrupt_snapshots_are_refused() -> None:
    engine = MemEngine()
    sm = ShardStateMachine(1, ALL, engine)
    run(sm, engine, encode_put(b"a", b"1", 1))
    data = sm.snapshot()
    flipped = bytearray(data)
    flipped[20] ^= 1
    for bad in [b"", b"garbage", data[:-1], bytes(flipped), b"PKVSNAP\x02" + data[8:]]:
        with pytest.raises(SnapshotCorrupt):
            ShardStateMachine.snapshot_index(bad)
        with pytest.raises(SnapshotCorrupt):
            sm.restore(1, bad, engine.new_batch())
    with pytest.raises(SnapshotCorrupt, match="covers index 1, not 2"):
        sm.restore(2, data, engine.new_batch())
    assert sm.applied_index == 1


def test_gc_keeps_newest_at_or_below_horizon() -> None:
    engine = MemEngine()
    sm = ShardStateMachine(1, ALL, engine)
    for v in (10, 20, 30, 40):
        run(sm, engine, encode_put(b"a", b"a%d" % v, v))
    run(sm, engine, encode_put(b"b", b"b50", 50), encode_delete(b"b", 60))  # deleted
    run(sm, engine, encode_put(b"c", b"c70", 70), encode_delete(b"c", 80))
    run(sm, engine, encode_put(b"c", b"c90", 90))  # deleted, then re-created
    before = {(k, v): sm.get(k, at_version=v) for k in (b"a", b"b", b"c") for v in (35, 100)}

    batch = engine.new_batch()
    removed = sm.gc_below(35, batch)
    engine.write(batch, sync=False)
    assert removed == 2  # a@10, a@20
    assert sm.gc_horizon == 35
    for (k, v), want in before.items():
        assert sm.get(k, at_version=v) == want
    assert sm.get(b"a", at_version=35) == (b"a30", 30)
    with pytest.raises(VersionCompacted):
        sm.get(b"a", at_version=34)
    with pytest.raises(VersionCompacted):
        sm.scan(b"", None, 10, at_version=0)

    batch = engine.new_batch()
    removed = sm.gc_below(85, batch)
    engine.write(batch, sync=False)
    # a@30 (a@40 is kept); b's tombstone and b@50 and its latest record; c@80 tombstone, c@70.
    assert removed == 5
    assert sm.get(b"a") == (b"a40", 40) and sm.get(b"b") is None
    assert sm.get(b"c") == (b"c90", 90) and sm.get(b"c", at_version=85) is None
    assert sm.scan(b"", None, 10, at_version=85) == [(b"a", b"a40", 40)]
    assert sm.gc_below(50, engine.new_batch()) == 0  # below the horizon: nothing to do
    versions = [k for k, _ in engine.scan(b"d\x00\x00\x00\x01v", b"d\x00\x00\x00\x01w", None)]
    assert len(versions) == 2  # a@40, c@90
    # b's versions are gone; its latest record stays, a deletion at 60, so every replica
    # validates a read of b against the same version (test_shard_txn).
    assert engine.get(b"d\x00\x00\x00\x01lb") == pack_latest(60, KIND_TOMBSTONE)
    # The horizon is durable with the data.
    assert ShardStateMachine(1, ALL, engine).gc_horizon == 85


def test_gc_never_removes_what_the_batch_moved_on() -> None:
    engine = MemEngine()
    sm = ShardStateMachine(1, ALL, engine)
    run(sm, engine, encode_put(b"k", b"1", 1), encode_delete(b"k", 2))
    batch = engine.new_batch()
    sm.apply(2, [encode_put(b"k", b"again", 3)], batch)  # staged, same cycle as the GC
    sm.gc_below(2, batch)
    engine.write(batch, sync=False)
    assert sm.get(b"k") == (b"again", 3)
    assert ShardStateMachine(1, ALL, engine).applied_index == 2


def test_gc_across_scan_pages() -> None:
    engine = MemEngine()
    sm = ShardStateMachine(1, ALL, engine)
    for round_ in range(3):
        run(sm, engine, *[encode_put(b"k%04d" % i, b"r%d" % round_, 1) for i in range(400)])
    horizon = sm.max_version
    run(sm, engine, *[encode_delete(b"k%04d" % i, 1) for i in range(0, 400, 2)])
    batch = engine.new_batch()
    assert sm.gc_below(horizon, batch) == 800
    engine.write(batch, sync=False)
    assert len(sm.scan(b"", None, 1000, at_version=horizon)) == 400
    assert len(sm.scan(b"", None, 1000)) == 200


def _versions_store(keys: int, rounds: int) -> tuple[MemEngine, ShardStateMachine]:
    engine = MemEngine()
    sm = ShardStateMachine(1, ALL, engine)
    for round_ in range(rounds):
        run(
            sm,
            engine,
            *[encode_put(b"k%04d" % i, b"r%d" % round_, round_ + 1) for i in range(keys)],
        )
    run(sm, engine, *[encode_delete(b"k%04d" % i, rounds + 1) for i in range(0, keys, 3)])
    return engine, sm


def _version_records(engine: MemEngine) -> list[bytes]:
    return [k for k, _ in engine.scan(b"d\x00\x00\x00\x01v", b"d\x00\x00\x00\x01w", None)]


def _record_scans(engine: MemEngine) -> list[list[tuple[bytes, bytes]]]:
    """The pairs each `gc_step` reads: append an empty list before each step."""
    steps: list[list[tuple[bytes, bytes]]] = []
    scan_bounded = engine.scan_bounded

    def recorded(lo: bytes, hi: bytes, limit: int, max_bytes: int) -> list[tuple[bytes, bytes]]:
        assert limit >= 1 and max_bytes >= 1
        pairs = scan_bounded(lo, hi, limit, max_bytes)
        steps[-1].extend(pairs)
        return pairs

    engine.scan_bounded = recorded  # type: ignore[method-assign]
    return steps


def test_gc_in_bounded_steps_ends_as_one_pass_does() -> None:
    whole_engine, whole = _versions_store(keys=300, rounds=4)
    stepped_engine, stepped = _versions_store(keys=300, rounds=4)
    horizon = whole.max_version
    batch = whole_engine.new_batch()
    removed_at_once = whole.gc_below(horizon, batch)
    whole_engine.write(batch, sync=False)

    batch = stepped_engine.new_batch()
    assert stepped.start_gc(horizon, batch)
    assert stepped.gc_horizon == horizon and stepped.gc_pending
    steps, removed = 0, 0
    while stepped.gc_pending:
        before = len(batch)
        removed += stepped.gc_step(batch, max_records=50)
        assert len(batch) - before <= 50
        steps += 1
    stepped_engine.write(batch, sync=False)
    assert removed == removed_at_once > 0 and steps > 10
    assert _version_records(stepped_engine) == _version_records(whole_engine)
    assert stepped.scan(b"", None, 1000) == whole.scan(b"", None, 1000)


def test_gc_steps_stop_at_their_byte_bound_and_end_as_one_pass_does() -> None:
    """Large values: a step reads no more than its byte bound (one record at least)."""

    def store() -> tuple[MemEngine, ShardStateMachine, int]:
        engine = MemEngine()
        sm = ShardStateMachine(1, ALL, engine)
        horizon = 0
        for round_ in range(5):
            value = bytes([round_]) * 10_000
            run(sm, engine, *[encode_put(b"k%02d" % i, value, round_ + 1) for i in range(20)])
            if round_ == 3:
                horizon = sm.max_version
        return engine, sm, horizon

    whole_engine, whole, horizon = store()
    batch = whole_engine.new_batch()
    removed_at_once = whole.gc_below(horizon, batch)
    whole_engine.write(batch, sync=False)

    engine, sm, _ = store()
    batch = engine.new_batch()
    sm.start_gc(horizon, batch)
    steps = _record_scans(engine)
    removed = 0
    while sm.gc_pending:
        steps.append([])
        removed += sm.gc_step(batch, max_records=1_000, max_bytes=25_000)
    engine.write(batch, sync=False)
    read_per_step = [sum(len(k) + len(v) for k, v in step) for step in steps]
    assert removed == removed_at_once == 60  # 3 of each key's 5 versions
    assert len(read_per_step) == 34  # 100 records of 10 kB, three a step (the third crosses)
    assert max(read_per_step) < 25_000 + 10_100  # the bound, plus the record crossing it
    assert _version_records(engine) == _version_records(whole_engine)


@pytest.mark.parametrize("bounds", [(0, 1), (1, 0)])
def test_gc_step_refuses_empty_bounds(bounds: tuple[int, int]) -> None:
    engine, sm = _versions_store(keys=5, rounds=2)
    batch = engine.new_batch()
    sm.start_gc(2, batch)
    with pytest.raises(ValueError, match="at least 1"):
        sm.gc_step(batch, max_records=bounds[0], max_bytes=bounds[1])


_AWKWARD_KEYS = [b"", b"\x00", b"a", b"a\x00", b"a\x00b", b"ab", b"b", b"\xff"]
_write = st.tuples(st.sampled_from(_AWKWARD_KEYS), st.booleans(), st.integers(0, 120))


def _store_of(writes: list[tuple[bytes, bool, int]]) -> tuple[MemEngine, ShardStateMachine]:
    engine = MemEngine()
    sm = ShardStateMachine(1, ALL, engine)
    for write in writes:
        _apply_write(sm, engine, write)
    return engine, sm


def _apply_write(sm: ShardStateMachine, engine: Engine, write: tuple[bytes, bool, int]) -> None:
    key, delete, size = write
    run(sm, engine, encode_delete(key, 0) if delete else encode_put(key, b"v" * size, 0))


@given(
    writes=st.lists(_write, min_size=1, max_size=30),
    horizon_share=st.floats(0, 1),
    max_records=st.integers(1, 8),
    # A byte bound, or the exact size of the first n version records: a page then ends
    # exactly on the bound.
    max_bytes=st.one_of(st.integers(1, 400), st.just(MAX_U64), st.tuples(st.integers(1, 6))),
    page=st.sampled_from([1, 2, 3, 256]),
    between=st.lists(_write, max_size=6),
)
def test_any_stepped_gc_pass_reads_each_record_once_and_ends_as_one_pass_does(
    writes: list[tuple[bytes, bool, int]],
    horizon_share: float,
    max_records: int,
    max_bytes: int | tuple[int],
    page: int,
    between: list[tuple[bytes, bool, int]],
) -> None:
    """Any bounds, pages that end anywhere (exactly on a bound too), tombstones, and writes
    between the steps (newer than the horizon, as a node's are)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(state_machine, "_SCAN_PAGE", page)
        _check_stepped_pass(writes, horizon_share, max_records, max_bytes, between)


def _check_stepped_pass(
    writes: list[tuple[bytes, bool, int]],
    horizon_share: float,
    max_records: int,
    max_bytes: int | tuple[int],
    between: list[tuple[bytes, bool, int]],
) -> None:
    whole_engine, whole = _store_of(writes)
    horizon = max(1, int(horizon_share * whole.max_version))
    batch = whole_engine.new_batch()
    whole.gc_below(horizon, batch)
    whole_engine.write(batch, sync=False)
    for write in between:
        _apply_write(whole, whole_engine, write)

    engine, sm = _store_of(writes)
    records = engine.scan(sm._version_prefix, sm._version_end, None)
    sizes = {k: len(k) + len(v) for k, v in records}
    if isinstance(max_bytes, tuple):
        max_bytes = max(1, sum(len(k) + len(v) for k, v in records[: max_bytes[0]]))
    steps = _record_scans(engine)
    batch = engine.new_batch()
    sm.start_gc(horizon, batch)
    engine.write(batch, sync=False)
    pending = list(between)
    while sm.gc_pending:
        assert len(steps) <= len(sizes) + len(between) + 2, "the pass makes no progress"
        steps.append([])
        batch = engine.new_batch()
        sm.gc_step(batch, max_records, max_bytes)
        engine.write(batch, sync=False)
        read = [k for k, _ in steps[-1]]
        assert len(read) <= max_records
        assert sum(sizes.get(k, 0) for k in read[:-1]) < max_bytes  # only the last crosses
        assert read or not sm.gc_pending
        if pending:
            _apply_write(sm, engine, pending.pop(0))
    for write in pending:
        _apply_write(sm, engine, write)
    read_keys = [k for step in steps for k, _ in step]
    assert len(read_keys) == len(set(read_keys)), "a record was read twice"
    assert set(sizes) <= set(read_keys), "a record was skipped"
    assert engine.scan(b"", None, None) == whole_engine.scan(b"", None, None)


def test_a_gc_pass_refuses_reads_below_its_horizon_from_its_first_step() -> None:
    engine, sm = _versions_store(keys=300, rounds=4)
    batch = engine.new_batch()
    sm.start_gc(3, batch)
    sm.gc_step(batch, max_records=10)
    engine.write(batch, sync=False)
    assert sm.gc_pending
    # k0299 is not collected yet, but a read below the horizon is refused all the same: a
    # store half collected never answers an old read.
    with pytest.raises(VersionCompacted):
        sm.get(b"k0299", at_version=2)
    assert ShardStateMachine(1, ALL, engine).gc_horizon == 3  # durable with the first step


def test_a_restore_ends_a_pending_gc_pass() -> None:
    engine, sm = _versions_store(keys=50, rounds=3)
    source = sm.snapshot()
    batch = engine.new_batch()
    sm.start_gc(2, batch)
    sm.gc_step(batch, max_records=5)
    assert sm.gc_pending
    sm.restore(sm.applied_index, source, batch)
    assert not sm.gc_pending
    assert sm.gc_step(batch, max_records=5) == 0


def test_a_hot_keys_versions_are_collected_across_steps() -> None:
    engine = MemEngine()
    sm = ShardStateMachine(1, ALL, engine)
    for v in range(1, 201):
        run(sm, engine, encode_put(b"hot", b"v%d" % v, v))
    batch = engine.new_batch()
    sm.start_gc(200, batch)
    steps = 0
    while sm.gc_pending:
        before = len(batch)
        sm.gc_step(batch, max_records=16)
        assert len(batch) - before <= 16  # never one key's 200 versions in one step
        steps += 1
    engine.write(batch, sync=False)
    assert steps >= 12
    assert len(_version_records(engine)) == 1 and sm.get(b"hot") == (b"v200", 200)


def test_a_pass_longer_than_the_interval_goes_on_at_the_higher_horizon() -> None:
    # A pass that outlives gc_interval_s must not restart from the first key, or on a large
    # store the last keys would never be collected.
    engine, sm = _versions_store(keys=300, rounds=4)  # k0299 at versions 300 ... 1200
    batch = engine.new_batch()
    sm.start_gc(600, batch)
    sm.gc_step(batch, max_records=600)
    cursor = sm._gc_cursor
    assert cursor is not None
    assert sm.start_gc(1200, batch)
    assert sm._gc_cursor == cursor and sm.gc_horizon == 1200
    while sm.gc_pending:
        sm.gc_step(batch, max_records=600)
    engine.write(batch, sync=False)
    # The keys after the cursor were collected to 1200: their newest version only is left.
    assert sm.get(b"k0299", at_version=1200) == (b"r3", 1200)
    assert sum(1 for k in _version_records(engine) if k.startswith(b"d\x00\x00\x00\x01vk0299")) == 1


def test_a_gc_step_needs_a_budget() -> None:
    engine, sm = _versions_store(keys=3, rounds=2)
    sm.start_gc(1, engine.new_batch())
    with pytest.raises(ValueError, match="max_records"):
        sm.gc_step(engine.new_batch(), max_records=0)


@settings(max_examples=100, deadline=None)
@given(
    history=st.lists(
        st.one_of(any_op, st.tuples(st.just("restart")), st.tuples(st.just("snapshot"))),
        max_size=30,
    )
)
# A step that stops right after a deleted key's tombstone (tests above, found by review).
@example(history=[("put", b"c", b"x", 10), ("delete", b"c", 20), ("gc", 30, 1)])
def test_collection_never_changes_a_read_at_or_above_the_horizon(
    history: list[tuple[Any, ...]],
) -> None:
    """Against a replica that never collects: the same results for every command, and the
    same answer to every read at or above the collecting one's horizon, with transactions,
    tombstones, versions written below the horizon (old commit timestamps), passes left half
    done, restarts and snapshots taken mid-pass."""
    collecting, plain = TxnNode(), TxnNode()
    for op in history:
        if op[0] == "restart":
            collecting = TxnNode(collecting.engine)
        elif op[0] == "snapshot":
            blob = collecting.sm.snapshot()
            restored = TxnNode()
            batch = restored.engine.new_batch()
            restored.sm.restore(collecting.sm.applied_index, blob, batch)
            restored.engine.write(batch, sync=False)
            collecting = restored
        else:
            apply_op(collecting, op)
            if op[0] != "gc":
                apply_op(plain, op)
        a, b = collecting.sm, plain.sm
        for at in [None, *range(a.gc_horizon, a.gc_horizon + 500, 17)]:
            assert [a.get(k, at) for k in OP_KEYS] == [b.get(k, at) for k in OP_KEYS], at
            assert a.scan(b"c", b"x", 100, at) == b.scan(b"c", b"x", 100, at), at
    assert collecting.sm.applied_index == plain.sm.applied_index
