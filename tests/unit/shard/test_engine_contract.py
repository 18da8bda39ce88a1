"""The Engine contract (`shard.engine` module docstring, rules 1-5), run on every engine."""

from __future__ import annotations

import itertools
import os
import random
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from shard.engine import Engine, EngineBatch, MemEngine
from shard.rocks_engine import RocksEngine

MakeEngine = Callable[[], Engine]


def _put_all(engine: Engine, items: dict[bytes, bytes], sync: bool = False) -> None:
    batch = engine.new_batch()
    for k, v in items.items():
        batch.put(k, v)
    engine.write(batch, sync)


def check_engine(make: MakeEngine) -> None:
    """Run every contract check on fresh engines from `make`."""
    for check in (
        _check_get_put_delete,
        _check_scan_bounds_and_order,
        _check_scan_limit_and_reverse,
        _check_scan_bounded,
        _check_batch_read_your_writes,
        _check_batch_order_and_range_delete,
        _check_batch_single_use,
        _check_scan_is_point_in_time,
        _check_iterate_is_point_in_time,
        _check_against_model,
        _check_batch_iterate_against_model,
    ):
        check(make())


def _check_get_put_delete(e: Engine) -> None:
    assert e.get(b"a") is None
    _put_all(e, {b"a": b"1", b"b": b""})
    assert e.get(b"a") == b"1"
    assert e.get(b"b") == b""  # empty values are values, not absence
    batch = e.new_batch()
    batch.delete(b"a")
    batch.delete(b"zz")  # deleting an absent key is fine
    e.write(batch, sync=True)
    assert e.get(b"a") is None
    assert e.get(b"b") == b""


def _check_scan_bounds_and_order(e: Engine) -> None:
    keys = [b"\x00", b"a", b"a\x00", b"a\xff", b"b", b"ba", b"\xff", b"\xff\xff"]
    _put_all(e, {k: k * 2 for k in reversed(keys)})
    assert [k for k, _ in e.scan(b"", None, None)] == keys
    assert e.scan(b"a", b"b", None) == [(k, k * 2) for k in (b"a", b"a\x00", b"a\xff")]
    assert [k for k, _ in e.scan(b"a\x00", b"ba", None)] == [b"a\x00", b"a\xff", b"b"]
    assert e.scan(b"b", b"b", None) == []
    assert e.scan(b"c", b"b", None) == []
    assert [k for k, _ in e.scan(b"\xff", None, None)] == [b"\xff", b"\xff\xff"]


def _check_scan_limit_and_reverse(e: Engine) -> None:
    _put_all(e, {b"k%02d" % i: b"%d" % i for i in range(20)})
    assert [k for k, _ in e.scan(b"k05", b"k15", 3)] == [b"k05", b"k06", b"k07"]
    assert e.scan(b"k05", b"k15", 0) == []
    assert [k for k, _ in e.scan(b"k05", b"k15", 3, reverse=True)] == [b"k14", b"k13", b"k12"]
    assert [k for k, _ in e.scan(b"k05", b"k08", None, reverse=True)] == [
        b"k07",
        b"k06",
        b"k05",
    ]
    assert len(e.scan(b"k", None, None, reverse=True)) == 20
    assert e.scan(b"k", None, 1, reverse=True)[0][0] == b"k19"
    assert len(e.scan(b"k", b"l", 100)) == 20


def _check_scan_bounded(e: Engine) -> None:
    pairs = [(b"k%d" % i, b"v%d" % i * 5) for i in range(6)]  # 12 bytes each
    _put_all(e, dict(pairs))
    assert e.scan_bounded(b"k", b"l", 100, 10_000) == pairs
    assert e.scan_bounded(b"k", b"l", 2, 10_000) == pairs[:2]
    # The pair that reaches the byte bound is the last: 36 bytes is 3 pairs, 37 is 4.
    assert e.scan_bounded(b"k", b"l", 100, 36) == pairs[:3]
    assert e.scan_bounded(b"k", b"l", 100, 37) == pairs[:4]
    assert e.scan_bounded(b"k", b"l", 100, 1) == pairs[:1]  # one at least
    assert e.scan_bounded(b"k2", b"k4", 100, 10_000) == pairs[2:4]
    assert e.scan_bounded(b"k4", b"k2", 100, 10_000) == []
    assert e.scan_bounded(b"x", b"y", 100, 10_000) == []


def _check_batch_read_your_writes(e: Engine) -> None:
    _put_all(e, {b"x": b"old", b"y": b"y0"})
    batch = e.new_batch()
    assert batch.get(b"x") == b"old"
    batch.put(b"x", b"new")
    batch.delete(b"y")
    batch.put(b"z", b"z1")
    assert (batch.get(b"x"), batch.get(b"y"), batch.get(b"z")) == (b"new", None, b"z1")
    assert batch.scan(b"x", b"zz") == [(b"x", b"new"), (b"z", b"z1")]
    assert len(batch) == 3
    # Unwritten: the engine does not see it.
    assert (e.get(b"x"), e.get(b"y"), e.get(b"z")) == (b"old", b"y0", None)
    e.write(batch, sync=False)
    assert (e.get(b"x"), e.get(b"y"), e.get(b"z")) == (b"new", None, b"z1")


def _check_batch_order_and_range_delete(e: Engine) -> None:
    _put_all(e, {b"r1": b"1", b"r2": b"2", b"r3": b"3", b"s": b"s"})
    batch = e.new_batch()
    batch.put(b"r4", b"4")  # staged before the range delete: removed by it
    batch.delete_range(b"r", b"s")
    batch.put(b"r2", b"again")  # staged after: survives
    assert batch.get(b"r1") is None
    assert batch.get(b"r4") is None
    assert batch.get(b"r2") == b"again"
    assert batch.get(b"s") == b"s"
    # A batch scan shows the range as the write will leave it (rule 3 for ranges).
    assert batch.scan(b"r", b"t") == [(b"r2", b"again"), (b"s", b"s")]
    assert batch.scan(b"r1", b"r3") == [(b"r2", b"again")]
    e.write(batch, sync=False)
    assert e.scan(b"", None, None) == [(b"r2", b"again"), (b"s", b"s")]


def _check_batch_single_use(e: Engine) -> None:
    batch = e.new_batch()
    batch.put(b"a", b"1")
    e.write(batch, sync=False)
    with pytest.raises(RuntimeError):
        e.write(batch, sync=False)
    with pytest.raises(RuntimeError):
        batch.put(b"b", b"2")


def _check_scan_is_point_in_time(e: Engine) -> None:
    _put_all(e, {b"p%03d" % i: b"v" for i in range(300)})
    before = e.scan(b"p", b"q", None)
    _put_all(e, {b"p%03d" % i: b"w" for i in range(300)})
    assert all(v == b"v" for _, v in before)
    assert all(v == b"w" for _, v in e.scan(b"p", b"q", None))


def _check_iterate_is_point_in_time(e: Engine) -> None:
    # A snapshot build holds its iterator across many wakes' writes (shard/snapshots.py):
    # it must show the range as it was when iterate() was called, not when first read.
    _put_all(e, {b"p1": b"v", b"p2": b"v", b"p3": b"v"})
    records = e.iterate(b"p", b"q")
    batch = e.new_batch()
    batch.put(b"p0", b"new")
    batch.put(b"p2", b"w")
    batch.delete(b"p3")
    e.write(batch, sync=False)
    assert list(records) == [(b"p1", b"v"), (b"p2", b"v"), (b"p3", b"v")]
    assert list(e.iterate(b"p2", b"p1")) == []


Model = dict[bytes, bytes]


def _random_batches(
    e: Engine,
    rng: random.Random,
    *,
    batches: int,
    key: Callable[[], bytes],
    key_range: Callable[[], tuple[bytes, bytes]],
    check_staged: Callable[[EngineBatch, Model], None],
    check_written: Callable[[Model], None],
) -> None:
    """Write `batches` random batches of puts, deletes and range deletes, keeping a model:
    `check_staged` after each staged operation (the batch against what it staged on the
    written state), `check_written` after each write (the engine against the model)."""
    model: Model = {}
    for _ in range(batches):
        batch = e.new_batch()
        staged = dict(model)
        for _ in range(rng.randrange(1, 15)):
            action = rng.random()
            if action < 0.55:
                k, v = key(), bytes([rng.randrange(256)])
                batch.put(k, v)
                staged[k] = v
            elif action < 0.85:
                k = key()
                batch.delete(k)
                staged.pop(k, None)
            else:
                lo, hi = key_range()
                if lo < hi:
                    batch.delete_range(lo, hi)
                    staged = {kk: vv for kk, vv in staged.items() if not lo <= kk < hi}
            check_staged(batch, staged)
        e.write(batch, sync=rng.random() < 0.5)
        model = staged
        check_written(model)


def _in_range(model: Model, lo: bytes, hi: bytes) -> list[tuple[bytes, bytes]]:
    return sorted(kv for kv in model.items() if lo <= kv[0] < hi)


def _check_against_model(e: Engine) -> None:
    """Rules 1-3 for points: a batch reads its own staged writes; `scan` of the engine, with
    limits and in reverse, agrees with the written state."""
    rng = random.Random(7)

    def key() -> bytes:
        return bytes([rng.randrange(4), rng.randrange(4)])

    def key_range() -> tuple[bytes, bytes]:
        lo = bytes([rng.randrange(4)])
        return lo, bytes([lo[0] + rng.randrange(1, 3)])

    def check_staged(batch: EngineBatch, staged: Model) -> None:
        probe = key()
        assert batch.get(probe) == staged.get(probe)

    def check_written(model: Model) -> None:
        assert e.scan(b"", None, None) == sorted(model.items())
        lo, hi = sorted([bytes([rng.randrange(5)]), bytes([rng.randrange(5)])])
        limit = rng.randrange(0, 6)
        expect = _in_range(model, lo, hi)
        assert e.scan(lo, hi, limit) == expect[:limit]
        assert e.scan(lo, hi, limit, reverse=True) == expect[::-1][:limit]

    _random_batches(
        e,
        rng,
        batches=40,
        key=key,
        key_range=key_range,
        check_staged=check_staged,
        check_written=check_written,
    )


def _check_batch_iterate_against_model(e: Engine) -> None:
    """Rule 3 for ranges: a batch's `iterate` merges its staged puts, deletes and range
    deletes with the engine, in order, however little of it the caller reads (the phantom
    check stops at the first key it did not read); `scan_bounded` and `iterate` of the
    engine agree with the written state."""
    rng = random.Random(11)

    def key() -> bytes:
        return bytes([rng.randrange(4), rng.randrange(3)])

    def key_range() -> tuple[bytes, bytes]:
        lo, hi = sorted([bytes([rng.randrange(5), rng.randrange(3)]), bytes([rng.randrange(5)])])
        return lo, hi

    def check_staged(batch: EngineBatch, staged: Model) -> None:
        lo, hi = key_range()
        expect = _in_range(staged, lo, hi)
        assert list(batch.iterate(lo, hi)) == expect
        taken = rng.randrange(4)
        assert list(itertools.islice(batch.iterate(lo, hi), taken)) == expect[:taken]

    def check_written(model: Model) -> None:
        lo, hi = key_range()
        expect = _in_range(model, lo, hi)
        assert list(e.iterate(lo, hi)) == expect
        limit, max_bytes = rng.randrange(1, 5), rng.randrange(1, 10)
        bounded = []
        for kv in expect:
            bounded.append(kv)
            if len(bounded) >= limit or sum(len(k) + len(v) for k, v in bounded) >= max_bytes:
                break
        assert e.scan_bounded(lo, hi, limit, max_bytes) == bounded

    _random_batches(
        e,
        rng,
        batches=30,
        key=key,
        key_range=key_range,
        check_staged=check_staged,
        check_written=check_written,
    )


# --------------------------------------------------------------------------------------------


@pytest.fixture
def rocks_factory(tmp_path: Path) -> Iterator[MakeEngine]:
    opened: list[RocksEngine] = []

    def make() -> Engine:
        engine = RocksEngine(str(tmp_path / f"db{len(opened)}"))
        opened.append(engine)
        return engine

    yield make
    for engine in opened:
        engine.close()


def test_mem_engine_contract() -> None:
    check_engine(MemEngine)


def test_rocks_engine_contract(rocks_factory: MakeEngine) -> None:
    check_engine(rocks_factory)


def test_batch_from_another_engine_is_refused(rocks_factory: MakeEngine) -> None:
    a, b = MemEngine(), MemEngine()
    with pytest.raises(ValueError):
        a.write(b.new_batch(), sync=False)
    r = rocks_factory()
    with pytest.raises(ValueError):
        r.write(a.new_batch(), sync=False)


def test_mem_engine_crash_loses_only_unsynced_writes() -> None:
    e = MemEngine()
    _put_all(e, {b"a": b"1", b"b": b"1"}, sync=True)
    _put_all(e, {b"a": b"2", b"c": b"2"}, sync=False)
    batch = e.new_batch()
    batch.delete_range(b"a", b"z")
    e.write(batch, sync=False)
    assert e.scan(b"", None, None) == []
    e.crash()
    assert e.scan(b"", None, None) == [(b"a", b"1"), (b"b", b"1")]


def test_mem_engine_sync_write_makes_earlier_writes_durable() -> None:
    e = MemEngine()
    _put_all(e, {b"a": b"1"}, sync=False)
    _put_all(e, {b"b": b"1"}, sync=True)
    e.crash()
    assert e.scan(b"", None, None) == [(b"a", b"1"), (b"b", b"1")]


def test_rocks_engine_reopen_keeps_written_batches(tmp_path: Path) -> None:
    path = str(tmp_path / "db")
    e = RocksEngine(path)
    _put_all(e, {b"a": b"1"}, sync=True)
    _put_all(e, {b"b": b"2"}, sync=False)
    e.close()
    e = RocksEngine(path)
    assert e.scan(b"", None, None) == [(b"a", b"1"), (b"b", b"2")]
    e.close()


def test_rocks_engine_shares_its_db(tmp_path: Path) -> None:
    e = RocksEngine(str(tmp_path / "db"))
    e.db.put(b"p\x00\x00\x00\x01", b"paxos")  # the Paxos storage writes the same DB
    shared = RocksEngine(db=e.db)
    assert shared.get(b"p\x00\x00\x00\x01") == b"paxos"
    with pytest.raises(ValueError):
        RocksEngine()
    e.close()


def test_an_iterator_keeps_its_bound_when_the_callers_bound_is_a_temporary(
    tmp_path: Path,
) -> None:
    """Found by review: rocksdict 0.3.29's ReadOptions.set_iterate_upper_bound keeps a
    pointer into the bound's bytes; `iterate` dropped its ReadOptions on return, so once the
    caller's bound was freed too, a long-lived iterator (a snapshot build's) stopped early
    or ran into the next group's keys."""
    engine = RocksEngine(str(tmp_path / "db"))
    _put_all(engine, {b"group-%c-%04d" % (c, i): b"v" for c in b"ab" for i in range(100)})
    rows = engine.iterate(b"group-a", b"".join((b"group-", b"b")))  # a bound nobody holds
    junk = [os.urandom(5) for _ in range(200_000)]  # the loop allocates meanwhile
    keys = [key for key, _ in rows]
    del junk
    assert len(keys) == 100
    assert all(key.startswith(b"group-a") for key in keys)
    engine.close()
