"""MVCC garbage collection in steps never shows a deleted key's older value.

Found by review: a pass removed a deleted key's tombstone (its newest version at or below the
horizon) before the key's older versions, so a step that stopped between them showed the
deleted value to snapshot reads and latest scans; after a restart or a snapshot taken then,
for good (the pass cursor lives in memory). The tombstone now goes once the pass leaves the
key.
"""

from __future__ import annotations

from test_shard_snapshot_gc import run

from shard.codec import encode_delete, encode_put
from shard.engine import MemEngine
from shard.state_machine import ShardStateMachine

ALL: tuple[bytes, bytes | None] = (b"", None)


def test_deleted_key_never_reads_as_present_between_gc_steps() -> None:
    engine = MemEngine()
    sm = ShardStateMachine(3, ALL, engine)
    run(sm, engine, encode_put(b"k", b"old-value", 10))  # version 10
    run(sm, engine, encode_delete(b"k", 20))  # tombstone at 20
    run(sm, engine, encode_put(b"z", b"other", 40))  # unrelated write at 40
    # Before any collection, a snapshot read at 30 sees the deletion.
    assert sm.get(b"k", at_version=30) is None
    assert [k for k, _, _ in sm.scan(b"", None, 10, at_version=30)] == []

    batch = engine.new_batch()
    assert sm.start_gc(30, batch)
    engine.write(batch, sync=False)
    # One bounded step (as NodeCore.apply runs them, GC_RECORDS_PER_STEP / GC_BYTES_PER_STEP):
    # this one stops right after the key's tombstone.
    batch = engine.new_batch()
    sm.gc_step(batch, max_records=1)
    engine.write(batch, sync=False)
    assert sm.gc_pending
    # A snapshot read at 30 (at the horizon, so allowed) must still see the key deleted.
    assert sm.get(b"k", at_version=30) is None, sm.get(b"k", at_version=30)
    assert b"k" not in [k for k, _, _ in sm.scan(b"", None, 10, at_version=35)]


def test_byte_bound_can_stop_between_tombstone_and_older_value() -> None:
    engine = MemEngine()
    sm = ShardStateMachine(3, ALL, engine)
    run(sm, engine, encode_put(b"a", b"x" * 1000, 5))
    run(sm, engine, encode_put(b"k", b"old-value", 10))
    run(sm, engine, encode_delete(b"k", 20))
    batch = engine.new_batch()
    sm.start_gc(30, batch)
    engine.write(batch, sync=False)
    batch = engine.new_batch()
    # The byte bound is crossed by the tombstone record (a's value + k's tombstone).
    sm.gc_step(batch, max_records=1000, max_bytes=_bytes_through_tombstone(engine))
    engine.write(batch, sync=False)
    assert sm.gc_pending
    assert sm.get(b"k", at_version=30) is None, sm.get(b"k", at_version=30)


def _bytes_through_tombstone(engine: MemEngine) -> int:
    prefix = b"d" + (3).to_bytes(4, "big") + b"v"
    total = 0
    for key, value in engine.scan(prefix, prefix + b"\xff", None):
        total += len(key) + len(value)
        if key[-1:] == b"t":
            return total
    raise AssertionError("no tombstone")


def _half_collected() -> tuple[MemEngine, ShardStateMachine]:
    """A pass at horizon 30 that stopped right after k's tombstone (one bounded step)."""
    engine = MemEngine()
    sm = ShardStateMachine(3, ALL, engine)
    run(sm, engine, encode_put(b"k", b"old-value", 10))
    run(sm, engine, encode_delete(b"k", 20))
    batch = engine.new_batch()
    sm.start_gc(30, batch)
    sm.gc_step(batch, max_records=1)
    engine.write(batch, sync=False)
    assert sm.gc_pending
    return engine, sm


def test_a_restart_mid_pass_resurrects_a_deleted_value_for_good() -> None:
    engine, _ = _half_collected()
    restarted = ShardStateMachine(3, ALL, engine)  # the cursor lived in memory only
    assert not restarted.gc_pending
    batch = engine.new_batch()
    restarted.gc_below(1000, batch)  # later passes, at higher horizons
    engine.write(batch, sync=False)
    assert restarted.get(b"k") is None  # the latest record still says deleted ...
    # ... but every snapshot read says the deleted value is there.
    assert restarted.get(b"k", at_version=2000) is None, restarted.get(b"k", at_version=2000)


def test_a_snapshot_built_mid_pass_resurrects_a_deleted_value_on_the_follower() -> None:
    _, leader = _half_collected()
    blob = leader.snapshot()
    follower_engine = MemEngine()
    follower = ShardStateMachine(3, ALL, follower_engine)
    batch = follower_engine.new_batch()
    follower.restore(ShardStateMachine.snapshot_index(blob), blob, batch)
    follower_engine.write(batch, sync=False)
    batch = follower_engine.new_batch()
    follower.gc_below(1000, batch)
    follower_engine.write(batch, sync=False)
    assert follower.get(b"k", at_version=2000) is None, follower.get(b"k", at_version=2000)


def test_a_latest_scan_between_steps_returns_a_deleted_key() -> None:
    _, sm = _half_collected()
    assert sm.get(b"k") is None  # the latest record: deleted
    # A linearizable scan (at_version None, what tx.scan and client.scan read) reads the
    # version records, where the deleted key's old value is now the newest.
    assert sm.scan(b"", None, 10) == [], sm.scan(b"", None, 10)


def test_after_a_restart_mid_pass_latest_scans_return_the_deleted_key_for_good() -> None:
    engine, _ = _half_collected()
    restarted = ShardStateMachine(3, ALL, engine)
    batch = engine.new_batch()
    restarted.gc_below(1000, batch)
    engine.write(batch, sync=False)
    assert restarted.scan(b"", None, 10) == [], restarted.scan(b"", None, 10)


def test_a_finished_pass_removes_the_tombstone_and_every_older_version() -> None:
    engine, sm = _half_collected()
    while sm.gc_pending:
        batch = engine.new_batch()
        sm.gc_step(batch, max_records=1)
        engine.write(batch, sync=False)
    prefix = b"d" + (3).to_bytes(4, "big") + b"v"
    assert list(engine.scan(prefix, prefix + b"\xff", None)) == []
    assert sm.get(b"k") is None
