"""ShardStateMachine: commands, MVCC reads, idempotent apply, and the applied index's batch."""

from __future__ import annotations

import random
from collections.abc import Sequence
from pathlib import Path

import pytest

from shard.codec import CommandResult, encode_cas, encode_delete, encode_put
from shard.engine import Engine, MemEngine
from shard.errors import (
    ApplyOrderError,
    InvalidArgument,
    LimitExceeded,
    Status,
    WrongShard,
)
from shard.limits import MAX_KEY_BYTES, MAX_TS, MAX_VALUE_BYTES
from shard.rocks_engine import RocksEngine
from shard.state_machine import ShardStateMachine

ALL: tuple[bytes, bytes | None] = (b"", None)


class Driver:
    """Applies one slot per call through a fresh batch, as the node's event loop does."""

    def __init__(
        self,
        engine: Engine | None = None,
        group_id: int = 1,
        key_range: tuple[bytes, bytes | None] = ALL,
    ) -> None:
        self.engine = engine if engine is not None else MemEngine()
        self.sm = ShardStateMachine(group_id, key_range, self.engine)

    def run(self, *commands: bytes, sync: bool = False) -> list[CommandResult]:
        batch = self.engine.new_batch()
        results = self.sm.apply(self.sm.applied_index + 1, commands, batch)
        self.engine.write(batch, sync)
        return results

    def run1(self, command: bytes) -> CommandResult:
        (result,) = self.run(command)
        return result


def test_put_get_delete() -> None:
    d = Driver()
    r = d.run1(encode_put(b"k", b"v1", ts=10))
    assert r.ok and r.version == 10
    assert d.sm.get(b"k") == (b"v1", 10)
    r = d.run1(encode_put(b"k", b"v2", ts=20))
    assert d.sm.get(b"k") == (b"v2", 20)
    r = d.run1(encode_delete(b"k", ts=30))
    assert r.ok and r.version == 30
    assert d.sm.get(b"k") is None
    # Deleting an absent key writes nothing.
    r = d.run1(encode_delete(b"k", ts=40))
    assert r.ok and r.version == 0
    assert d.run1(encode_delete(b"never", ts=41)).version == 0
    assert d.sm.max_version == 30
    # Empty values are values.
    d.run1(encode_put(b"e", b"", ts=50))
    assert d.sm.get(b"e") == (b"", 50)


def test_version_is_max_of_ts_and_last_plus_one() -> None:
    d = Driver()
    results = d.run(
        encode_put(b"a", b"1", ts=100),
        encode_put(b"b", b"1", ts=5),  # ts went backwards
        encode_put(b"a", b"2", ts=100),  # equal ts
        encode_put(b"c", b"1", ts=0),
        encode_put(b"a", b"3", ts=500),
    )
    assert [r.version for r in results] == [100, 101, 102, 103, 500]
    assert d.run1(encode_delete(b"a", ts=1)).version == 501
    assert d.sm.max_version == 501


def test_compare_and_set_by_value() -> None:
    d = Driver()
    r = d.run1(encode_cas(b"k", 1, expected_value=b"x", new_value=b"y"))
    assert r.status is Status.CAS_FAILED and not r.ok
    assert (r.current_value, r.current_version, r.version) == (None, 0, 0)
    d.run1(encode_put(b"k", b"x", ts=5))
    r = d.run1(encode_cas(b"k", 6, expected_value=b"nope", new_value=b"y"))
    assert (r.status, r.current_value, r.current_version) == (Status.CAS_FAILED, b"x", 5)
    r = d.run1(encode_cas(b"k", 7, expected_value=b"x", new_value=b"y"))
    assert r.ok and r.version == 7
    assert d.sm.get(b"k") == (b"y", 7)
    # An empty expected value does not match an absent key.
    r = d.run1(encode_cas(b"absent", 8, expected_value=b"", new_value=b"z"))
    assert r.status is Status.CAS_FAILED


def test_compare_and_set_by_version_and_absence() -> None:
    d = Driver()
    assert d.run1(encode_cas(b"k", 1, expect_absent=True, new_value=b"a")).version == 1
    r = d.run1(encode_cas(b"k", 2, expect_absent=True, new_value=b"b"))
    assert (r.status, r.current_value, r.current_version) == (Status.CAS_FAILED, b"a", 1)
    r = d.run1(encode_cas(b"k", 3, expected_version=2, new_value=b"b"))
    assert (r.status, r.current_version) == (Status.CAS_FAILED, 1)
    r = d.run1(encode_cas(b"k", 4, expected_version=1, delete=True))
    assert r.ok and r.version == 4
    assert d.sm.get(b"k") is None
    # A deleted key is absent: version 0 and expect_absent both match it.
    r = d.run1(encode_cas(b"k", 5, expected_version=0, new_value=b"c"))
    assert r.ok and r.version == 5
    d.run1(encode_delete(b"k", 6))
    assert d.run1(encode_cas(b"k", 7, expect_absent=True, new_value=b"d")).ok
    # CAS-delete of an absent key succeeds and writes nothing.
    r = d.run1(encode_cas(b"gone", 8, expect_absent=True, delete=True))
    assert r.ok and r.version == 0


def test_later_command_in_same_cycle_sees_earlier_write() -> None:
    d = Driver()
    batch = d.engine.new_batch()
    r1 = d.sm.apply(1, [encode_put(b"k", b"a", 1)], batch)
    r2 = d.sm.apply(2, [encode_cas(b"k", 2, expected_value=b"a", new_value=b"b")], batch)
    r3 = d.sm.apply(3, [encode_cas(b"k", 3, expected_version=2, delete=True)], batch)
    r4 = d.sm.apply(4, [encode_delete(b"k", 4)], batch)
    assert [r.ok for r in r1 + r2 + r3] == [True, True, True]
    assert r4[0].version == 0  # already deleted earlier in this batch
    d.engine.write(batch, sync=False)
    assert d.sm.get(b"k") is None
    assert d.sm.get(b"k", at_version=2) == (b"b", 2)


def test_read_at_version() -> None:
    d = Driver()
    d.run1(encode_put(b"k", b"v10", 10))
    d.run1(encode_put(b"k", b"v20", 20))
    d.run1(encode_delete(b"k", 30))
    d.run1(encode_put(b"k", b"v40", 40))
    expect = {0: None, 9: None, 10: (b"v10", 10), 19: (b"v10", 10), 20: (b"v20", 20)}
    expect |= {29: (b"v20", 20), 30: None, 39: None, 40: (b"v40", 40), 10**6: (b"v40", 40)}
    for at, want in expect.items():
        assert d.sm.get(b"k", at_version=at) == want, at
    assert d.sm.get(b"k") == (b"v40", 40)


def test_keys_with_zero_bytes_and_prefixes_stay_apart() -> None:
    d = Driver()
    keys = [b"a", b"a\x00", b"a\x00\x00", b"a\x00\x01", b"a\x01", b"\x00", b"\x00\xff", b"ab"]
    for i, k in enumerate(keys):
        d.run(encode_put(k, b"v%d" % i, 1), encode_put(k, b"w%d" % i, 1))
    for i, k in enumerate(keys):
        assert d.sm.get(k)[0] == b"w%d" % i  # type: ignore[index]
    assert [k for k, _, _ in d.sm.scan(b"", None, 100)] == sorted(keys)
    assert [k for k, _, _ in d.sm.scan(b"a", b"a\x01", 100)] == [
        b"a",
        b"a\x00",
        b"a\x00\x00",
        b"a\x00\x01",
    ]


def test_scan_with_limit_across_many_keys_and_tombstones() -> None:
    d = Driver()
    for i in range(0, 700, 50):
        d.run(*[encode_put(b"k%04d" % j, b"v%d" % j, 1) for j in range(i, i + 50)])
    # Overwrite some (old versions to skip), delete every third key.
    d.run(*[encode_put(b"k%04d" % j, b"x%d" % j, 1) for j in range(0, 700, 2)])
    cut = d.sm.max_version
    d.run(*[encode_delete(b"k%04d" % j, 1) for j in range(0, 700, 3)])
    live = [j for j in range(700) if j % 3]
    got = d.sm.scan(b"k", b"l", 1000)
    assert [k for k, _, _ in got] == [b"k%04d" % j for j in live]
    assert all(
        v == (b"x%d" % j if j % 2 == 0 else b"v%d" % j)
        for (_, v, _), j in zip(got, live, strict=True)
    )
    assert [k for k, _, _ in d.sm.scan(b"k0100", b"l", 5)] == [
        b"k%04d" % j for j in [100, 101, 103, 104, 106]
    ]
    assert d.sm.scan(b"k", b"l", 0) == []
    # At the version before the deletes, every key is visible again.
    assert len(d.sm.scan(b"k", b"l", 1000, at_version=cut)) == 700
    assert d.sm.scan(b"k", b"l", 3, at_version=cut)[0] == (b"k0000", b"x0", 701)
    assert d.sm.scan(b"k", b"l", 1000, at_version=0) == []


def test_a_reverse_scan_pages_through_old_versions_and_tombstones(tmp_path: Path) -> None:
    """From the last key down, a key's records come oldest first, so its visible version is
    the last one read of it, also when a page of records ends inside the key."""
    for engine in (MemEngine(), RocksEngine(str(tmp_path / "db"))):
        d = Driver(engine)
        for round_ in range(40):  # 40 versions of each key: pages end inside keys
            d.run(*[encode_put(b"k%02d" % j, b"%d.%d" % (j, round_), 1) for j in range(30)])
        cut = d.sm.max_version
        d.run(*[encode_delete(b"k%02d" % j, 1) for j in range(0, 30, 3)])
        live = [(b"k%02d" % j, b"%d.39" % j) for j in range(29, -1, -1) if j % 3]
        assert [(k, v) for k, v, _ in d.sm.scan(b"k", b"l", 1000, reverse=True)] == live
        assert [k for k, _, _ in d.sm.scan(b"k", b"k20", 3, reverse=True)] == [
            b"k19",
            b"k17",
            b"k16",
        ]
        items, deleted_at = d.sm.scan_with_deletions(b"k", b"l", 1000, reverse=True)
        assert deleted_at == d.sm.max_version and len(items) == 20
        assert len(d.sm.scan(b"k", b"l", 1000, at_version=cut, reverse=True)) == 30
        size = len(b"k29") + len(b"29.39")
        assert [k for k, _, _ in d.sm.scan(b"", None, 10, max_bytes=size, reverse=True)] == [b"k29"]
        assert d.sm.scan(b"k", b"l", 1000, at_version=0, reverse=True) == []
        if isinstance(engine, RocksEngine):
            engine.close()


def test_reapplying_a_slot_is_a_no_op() -> None:
    d = Driver()
    d.run(encode_put(b"k", b"1", 5))
    batch = d.engine.new_batch()
    assert d.sm.apply(1, [encode_put(b"k", b"2", 6)], batch) == []
    assert len(batch) == 0
    with pytest.raises(ApplyOrderError):
        d.sm.apply(3, [], batch)
    assert d.sm.get(b"k") == (b"1", 5)


def test_empty_slot_advances_applied_index() -> None:
    d = Driver()
    assert d.run() == []
    assert d.sm.applied_index == 1
    assert ShardStateMachine(1, ALL, d.engine).applied_index == 1


def test_applied_index_lost_with_data_on_mem_crash() -> None:
    d = Driver()
    d.run(encode_put(b"k", b"durable", 1), sync=True)
    d.run(encode_put(b"k", b"lost", 2), encode_put(b"j", b"lost", 3))
    d.engine.crash()  # type: ignore[attr-defined]
    sm = ShardStateMachine(1, ALL, d.engine)
    assert (sm.applied_index, sm.max_version) == (1, 1)
    assert sm.get(b"k") == (b"durable", 1)
    assert sm.get(b"j") is None
    # Re-applying slot 2 from the Paxos log yields the same state as before the crash.
    batch = d.engine.new_batch()
    sm.apply(2, [encode_put(b"k", b"lost", 2), encode_put(b"j", b"lost", 3)], batch)
    d.engine.write(batch, sync=False)
    assert sm.get(b"k") == (b"lost", 2) and sm.get(b"j") == (b"lost", 3)


def test_applied_index_and_data_survive_rocks_reopen(tmp_path: Path) -> None:
    path = str(tmp_path / "db")
    engine = RocksEngine(path)
    d = Driver(engine)
    d.run(encode_put(b"k", b"1", 7), encode_delete(b"k", 8), encode_put(b"j", b"2", 9))
    engine.close()
    engine = RocksEngine(path)
    sm = ShardStateMachine(1, ALL, engine)
    assert (sm.applied_index, sm.max_version) == (1, 9)
    assert sm.get(b"k") is None and sm.get(b"k", at_version=7) == (b"1", 7)
    assert sm.get(b"j") == (b"2", 9)
    engine.close()


def test_groups_share_an_engine_without_interference() -> None:
    engine = MemEngine()
    a = Driver(engine, group_id=1)
    b = Driver(engine, group_id=2)
    a.run(encode_put(b"k", b"a", 1))
    b.run(encode_put(b"k", b"b", 1), encode_put(b"k2", b"b", 1))
    b.run()
    assert a.sm.get(b"k") == (b"a", 1) and a.sm.get(b"k2") is None
    assert b.sm.get(b"k") == (b"b", 1)
    assert (a.sm.applied_index, b.sm.applied_index) == (1, 2)
    assert [k for k, _, _ in a.sm.scan(b"", None, 10)] == [b"k"]
    assert all(k.startswith(b"d") for k, _ in engine.scan(b"", None, None))


def test_key_outside_range_is_wrong_shard() -> None:
    d = Driver(key_range=(b"m", b"t"))
    results = d.run(
        encode_put(b"a", b"1", 1),
        encode_put(b"t", b"1", 1),
        encode_put(b"m", b"1", 1),
        encode_cas(b"z", 1, expect_absent=True, new_value=b"1"),
    )
    assert [r.status for r in results] == [
        Status.WRONG_SHARD,
        Status.WRONG_SHARD,
        Status.OK,
        Status.WRONG_SHARD,
    ]
    assert "outside this shard's range" in results[0].message
    with pytest.raises(WrongShard):
        d.sm.get(b"a")
    with pytest.raises(WrongShard):
        d.sm.scan(b"a", b"n", 10)
    with pytest.raises(WrongShard):
        d.sm.scan(b"m", b"u", 10)
    with pytest.raises(WrongShard):
        d.sm.scan(b"m", None, 10)
    assert [k for k, _, _ in d.sm.scan(b"m", b"t", 10)] == [b"m"]
    with pytest.raises(ValueError):
        ShardStateMachine(1, (b"b", b"a"), MemEngine())


def test_bad_commands_apply_as_error_results() -> None:
    d = Driver()
    big_key = b"k" * (MAX_KEY_BYTES + 1)
    results = d.run(
        b"\xff\xff\xff",  # not protobuf
        b"",  # decodes, but no operation
        b"\x22\x00",  # a CAS without condition or action
        encode_put(b"", b"v", 1),
        encode_put(big_key, b"v", 1),
        encode_put(b"k", b"v" * (MAX_VALUE_BYTES + 1), 1),
        encode_put(b"k", b"v", MAX_TS + 1),
        b"\x00" * (3 * MAX_VALUE_BYTES),
        encode_put(b"ok", b"v", 1),
    )
    assert [r.status for r in results] == [
        Status.MALFORMED,
        Status.MALFORMED,
        Status.MALFORMED,
        Status.INVALID_ARGUMENT,
        Status.LIMIT_EXCEEDED,
        Status.LIMIT_EXCEEDED,
        Status.INVALID_ARGUMENT,
        Status.LIMIT_EXCEEDED,
        Status.OK,
    ]
    assert "MAX_KEY_BYTES" in results[4].message and str(MAX_KEY_BYTES + 1) in results[4].message
    assert all(r.version == 0 for r in results[:-1])
    assert d.sm.get(b"ok") == (b"v", 1)
    assert d.sm.max_version == 1 and d.sm.applied_index == 1


def test_reads_validate_the_key() -> None:
    d = Driver()
    with pytest.raises(InvalidArgument):
        d.sm.get(b"")
    with pytest.raises(LimitExceeded):
        d.sm.get(b"k" * (MAX_KEY_BYTES + 1))
    with pytest.raises(InvalidArgument):
        d.sm.get(b"k", at_version=-1)


def _apply_all(engine: Engine, slots: Sequence[Sequence[bytes]]) -> list[bytes]:
    d = Driver(engine)
    for commands in slots:
        d.run(*commands)
    return [k + b"=" + v for k, v in engine.scan(b"", None, None)]


def test_apply_is_deterministic_across_engines(tmp_path: Path) -> None:
    slots = [
        [encode_put(b"a", b"1", 5), encode_cas(b"a", 3, expected_value=b"1", new_value=b"2")],
        [],
        [encode_delete(b"a", 1), b"junk", encode_put(b"b\x00", b"x", 100)],
    ]
    rocks = RocksEngine(str(tmp_path / "db"))
    assert _apply_all(MemEngine(), slots) == _apply_all(rocks, slots)
    rocks.close()


def test_a_scan_reports_the_newest_deletion_it_passed_not_the_last_one() -> None:
    """Key order and version order disagree: "a" was deleted last (version 50), "b" first
    (version 30). The scan passes both tombstones; the deletion its answer must wait for is
    the newest one, whichever key comes last."""
    d = Driver()
    d.run(encode_put(b"a", b"1", ts=10), encode_put(b"b", b"2", ts=11))
    d.run1(encode_delete(b"b", ts=30))
    d.run1(encode_delete(b"a", ts=50))
    d.run1(encode_put(b"c", b"3", ts=60))
    items, deleted_at = d.sm.scan_with_deletions(b"a", b"z", 10)
    assert items == [(b"c", b"3", 60)]
    assert deleted_at == 50
    # As of version 40 only "b"'s deletion is visible; "a" still holds its value.
    items, deleted_at = d.sm.scan_with_deletions(b"a", b"z", 10, at_version=40)
    assert items == [(b"a", b"1", 10)] and deleted_at == 30


def test_a_scan_stops_when_its_bytes_reach_the_budget_exactly() -> None:
    d = Driver()
    d.run(encode_put(b"k1", b"vvv", ts=10), encode_put(b"k2", b"www", ts=11))
    size = len(b"k1") + len(b"vvv")
    assert d.sm.scan(b"", None, 10, max_bytes=size) == [(b"k1", b"vvv", 10)]
    assert d.sm.scan(b"", None, 10, max_bytes=size + 1) == [
        (b"k1", b"vvv", 10),
        (b"k2", b"www", 11),
    ]


def test_gc_below_the_current_horizon_leaves_a_pending_pass_alone() -> None:
    """ShardStateMachine garbage collection: `gc_below` at the horizon already in force is a
    no-op, and leaves a stepped pass (start_gc / gc_step) going where it was."""
    d = Driver()
    for v in (10, 20, 30):
        d.run(encode_put(b"a", b"a%d" % v, ts=v), encode_put(b"b", b"b%d" % v, ts=v + 1))
    batch = d.engine.new_batch()
    assert d.sm.start_gc(35, batch)
    assert d.sm.gc_step(batch, max_records=1) == 0  # read a@30 only: the pass is pending
    d.engine.write(batch, False)
    assert d.sm.gc_pending
    batch = d.engine.new_batch()
    assert d.sm.gc_below(35, batch) == 0  # nothing new to collect up to
    d.engine.write(batch, False)
    assert d.sm.gc_pending  # the pass goes on where it was
    batch = d.engine.new_batch()
    removed = 0
    while d.sm.gc_pending:
        removed += d.sm.gc_step(batch, max_records=1)
    d.engine.write(batch, False)
    assert removed == 4  # a@10, a@20, b@11, b@21
    assert d.sm.get(b"a", at_version=35) == (b"a30", 30)
    assert d.sm.get(b"b", at_version=35) == (b"b30", 31)


# Keys whose escaping (0x00 -> 0x00 0xff) and order make reverse reads tricky.
ESCAPED_KEYS = [b"\x00", b"\x00\x00", b"\x00\x01", b"\x00\xff", b"a", b"a\x00", b"a\x00\x00"]
ESCAPED_KEYS += [b"a\x00\x01", b"a\x01", b"a\xff", b"b", b"\xff", b"\xff\x00"]


def test_scans_both_ways_match_a_model_with_deletions_and_byte_budgets(tmp_path: Path) -> None:
    """Random histories over keys with 0x00 and 0xff bytes, random ranges, item limits,
    byte budgets and read versions: forward and reverse scans show what a model shows, and
    report the newest deletion among the keys they passed (from a review)."""
    for seed in range(60):
        rng = random.Random(seed)
        engine = MemEngine() if seed % 4 else RocksEngine(str(tmp_path / f"db{seed}"))
        d = Driver(engine)
        history: dict[bytes, list[tuple[int, bytes | None]]] = {}
        for _ in range(rng.randrange(1, 400)):
            key = rng.choice(ESCAPED_KEYS)
            value = None if rng.random() < 0.3 else bytes(rng.randrange(3))
            command = encode_delete(key, 0) if value is None else encode_put(key, value, 0)
            result = d.run1(command)
            if result.ok and result.version:
                history.setdefault(key, []).append((result.version, value))
        for _ in range(80):
            at = rng.choice([None, rng.randrange(0, d.sm.max_version + 2)])
            start, end = sorted(rng.sample([b"", *ESCAPED_KEYS], 2))
            end_or_none = None if rng.random() < 0.2 else end
            limit = rng.randrange(1, 8)
            max_bytes = rng.choice([None, 1, 2, 3, 5])
            visible = {
                key: shown[-1]
                for key, versions in history.items()
                if (shown := [(v, val) for v, val in versions if at is None or v <= at])
            }
            in_range = sorted(
                k for k in visible if k >= start and (end_or_none is None or k < end_or_none)
            )
            live = [
                (k, value, visible[k][0]) for k in in_range if (value := visible[k][1]) is not None
            ]
            for reverse in (False, True):
                want: list[tuple[bytes, bytes, int]] = []
                budget, cut = max_bytes, False
                for item in live[::-1] if reverse else live:
                    want.append(item)
                    if len(want) >= limit:
                        cut = True
                        break
                    if budget is not None:
                        budget -= len(item[0]) + len(item[1])
                        if budget <= 0:
                            cut = True
                            break
                args = (start, end_or_none, limit, at, max_bytes, reverse)
                got, deleted_at = d.sm.scan_with_deletions(*args)
                assert got == want, (seed, args)
                last = want[-1][0] if cut else None
                passed = [
                    k for k in in_range if last is None or (k >= last if reverse else k <= last)
                ]
                newest_deletion = max(
                    (visible[k][0] for k in passed if visible[k][1] is None), default=0
                )
                assert deleted_at == newest_deletion, (seed, args)
        if isinstance(engine, RocksEngine):
            engine.close()
