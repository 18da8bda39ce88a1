"""shard.changes.ChangesCollector: where a page of changes ends, and what it says it covers."""

from __future__ import annotations

from typing import Any

from router.watch_lanes import Change
from shard.changes import ChangesCollector, ChangesPage
from shard.codec import encode_put
from shard.engine import MemEngine
from shard.state_machine import ShardStateMachine


def _page(
    records: list[tuple[bytes, list[tuple[int, bytes | None]]]],
    after: int = 0,
    at: int = 100,
    limit: int = 100,
    max_bytes: int = 1 << 20,
    max_records: int = 1000,
) -> ChangesPage:
    """Offer `records` (per key, its versions newest first, as the engine holds them)."""
    collector = ChangesCollector(after, at, limit, max_bytes, max_records)
    for key, versions in records:
        page = collector.start_key(key)
        if page is not None:
            return page
        for version, value in versions:
            collector.offer(version, value)
    return collector.end()


def _count_records_read(engine: MemEngine) -> list[int]:
    """From now on, the number of records each of `engine`'s scans returns."""
    read: list[int] = []
    scan = engine.scan

    def counted(lo: bytes, hi: bytes, limit: int | None = None, reverse: bool = False) -> Any:
        records = scan(lo, hi, limit, reverse)
        read.append(len(records))
        return records

    engine.scan = counted  # type: ignore[method-assign]
    return read


def test_the_window_is_after_exclusive_at_inclusive_oldest_first() -> None:
    page = _page([(b"a", [(30, b"a3"), (20, None), (10, b"a1")]), (b"b", [(20, b"b2")])], 10, 30)
    assert page == ChangesPage(
        [Change(20, b"a", None), Change(20, b"b", b"b2"), Change(30, b"a", b"a3")], None, 30
    )


def test_a_page_ends_before_the_key_that_does_not_fit() -> None:
    records: list[tuple[bytes, list[tuple[int, bytes | None]]]] = [
        (b"a", [(2, b"x")]),
        (b"b", [(4, b"x"), (3, b"x")]),
        (b"c", [(5, b"x")]),
    ]
    by_count = _page(records, limit=2)
    assert [c.key for c in by_count.changes] == [b"a"] and by_count.covered_end == b"b"
    assert by_count.through == 100  # every change of [start, b) up to `at`
    by_records = _page(records, max_records=1)
    assert [c.key for c in by_records.changes] == [b"a"] and by_records.covered_end == b"b"
    by_bytes = _page(records, max_bytes=5)  # a: 2 bytes; a and b: 6
    assert [c.key for c in by_bytes.changes] == [b"a"] and by_bytes.covered_end == b"b"


def test_a_first_key_too_big_for_the_page_is_cut_by_version_keeping_the_oldest() -> None:
    versions: list[tuple[int, bytes | None]] = [(v, b"v%d" % v) for v in (50, 40, 30, 20, 10)]
    by_count = _page([(b"hot", versions), (b"next", [(60, b"x")])], limit=2)
    assert [c.version for c in by_count.changes] == [10, 20]
    assert by_count.covered_end == b"hot\x00" and by_count.through == 29
    by_bytes = _page([(b"hot", versions)], max_bytes=12)  # 6 bytes a change
    assert [c.version for c in by_bytes.changes] == [10, 20]
    assert by_bytes.covered_end == b"hot\x00" and by_bytes.through == 20


def test_one_change_over_the_byte_budget_is_a_page_of_its_own() -> None:
    page = _page([(b"big", [(7, b"x" * 100)]), (b"more", [(8, b"y")])], max_bytes=10)
    assert [c.key for c in page.changes] == [b"big"] and page.covered_end == b"more"
    assert page.through == 100


def test_a_read_of_changes_stops_at_each_keys_first_version_below_its_window() -> None:
    """Found by review: a hot key's whole history (every version the retention keeps) was
    read on every poll; a key's records come newest first, so the rest are skipped. (A
    shard listing two versions: these windows lie below them, so every key is visited.)"""
    engine = MemEngine()
    sm = ShardStateMachine(1, (b"", None), engine, recent_versions=2)
    for slot in range(1, 2001):
        batch = engine.new_batch()
        sm.apply(slot, [encode_put(b"hot", b"%d" % slot, slot)], batch)
        engine.write(batch, sync=False)
    read = _count_records_read(engine)
    page = sm.changes(b"", None, 1998, 2000, 100, 1 << 20, 1000)
    assert [c.value for c in page.changes] == [b"1999", b"2000"]
    assert sum(read) <= 256 + 1  # one page of the engine, not 2,000 records
    read.clear()
    assert sm.changes(b"", None, 2000, 2000, 100, 1 << 20, 1000).changes == []
    assert read == []  # an empty window (a watch's start pin) reads nothing
    # Past the skipped history the keys after it are read as before.
    batch = engine.new_batch()
    sm.apply(2001, [encode_put(b"next", b"n", 2001), encode_put(b"a", b"a", 2001)], batch)
    engine.write(batch, sync=False)
    page = sm.changes(b"", None, 1999, 2002, 100, 1 << 20, 1000)
    assert [(c.key, c.value) for c in page.changes] == [
        (b"hot", b"2000"),
        (b"next", b"n"),  # versions 2001 and 2002: one command after the other
        (b"a", b"a"),
    ]


def test_a_read_of_changes_visits_only_the_keys_that_changed_in_its_window() -> None:
    """A shard lists the versions it staged (`RECENT_VERSIONS`): a window above the oldest
    listed reads the records of the keys changed in it alone, so a watch's round over a
    large range costs what changed; a window below it (versions from before a restart, or
    dropped from the list) reads every key of the range, with the same answer."""
    engine = MemEngine()
    sm = ShardStateMachine(1, (b"", None), engine)
    batch = engine.new_batch()
    sm.apply(1, [encode_put(b"k%04d" % i, b"v", 1) for i in range(1000)], batch)
    engine.write(batch, sync=False)
    sm = ShardStateMachine(1, (b"", None), engine)  # reopened: nothing listed
    before = sm.max_version
    batch = engine.new_batch()
    sm.apply(2, [encode_put(b"k0500", b"new", 2), encode_put(b"k0007", b"new", 2)], batch)
    engine.write(batch, sync=False)
    read = _count_records_read(engine)
    changed = sm.changes(b"", None, before, sm.max_version, 100, 1 << 20, 10_000)
    assert [(c.key, c.value) for c in changed.changes] == [(b"k0500", b"new"), (b"k0007", b"new")]
    assert sum(read) <= 4  # two keys, two versions each at most
    read.clear()
    everything = sm.changes(b"", None, 0, sm.max_version, 2000, 1 << 20, 10_000)
    assert len(everything.changes) == 1002 and sum(read) >= 1002  # below the list: all keys
    read.clear()
    last_before = sm.changes(b"", None, before - 1, sm.max_version, 100, 1 << 20, 10_000)
    assert [c.key for c in last_before.changes] == [b"k0999", b"k0500", b"k0007"]
    assert sum(read) >= 1000
    read.clear()
    narrow = sm.changes(b"k0100", b"k0600", before, sm.max_version, 100, 1 << 20, 10_000)
    assert [c.key for c in narrow.changes] == [b"k0500"] and sum(read) <= 2
