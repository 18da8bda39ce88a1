"""shard.changes.ChangesCollector: where a page of changes ends, and what it says it covers."""

from __future__ import annotations

from typing import Any

from router.watch_lanes import Change
from shard.changes import ChangesCollector, ChangesPage
from shard.codec import encode_delete, encode_put
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


def _prev_page(
    records: list[tuple[bytes, list[tuple[int, bytes | None]]]],
    after: int,
    limit: int = 100,
    max_bytes: int = 1 << 20,
) -> ChangesPage:
    """As `_page` with previous values: a key's records at or below `after` give its floor
    (the newest of them), as the shard's reader offers it."""
    collector = ChangesCollector(after, 100, limit, max_bytes, 1000, prev_values=True)
    for key, versions in records:
        page = collector.start_key(key)
        if page is not None:
            return page
        for version, value in versions:
            if version <= after:
                collector.offer_floor(version, value)
                break
            collector.offer(version, value)
    return collector.end()


def test_each_change_carries_the_value_its_key_held_just_before() -> None:
    page = _prev_page(
        [
            (b"a", [(40, b"a4"), (30, None), (20, b"a2"), (10, b"a1")]),
            (b"b", [(35, b"b3"), (5, None)]),  # deleted before the window: held nothing
            (b"c", [(25, b"c2")]),  # never written before
            (b"d", [(15, b"d1")]),  # nothing in the window: no change, whatever its floor
        ],
        after=15,
    )
    assert page.changes == [
        Change(20, b"a", b"a2", b"a1", 10),  # the floor, from below the window
        Change(25, b"c", b"c2", None, 0),
        Change(30, b"a", None, b"a2", 20),  # a deletion: what it removed
        Change(35, b"b", b"b3", None, 0),
        Change(40, b"a", b"a4", None, 0),  # after a deletion: held nothing
    ]
    plain = _page([(b"a", [(40, b"a4"), (30, None), (20, b"a2"), (10, b"a1")])], after=15)
    assert [(c.prev_value, c.prev_version) for c in plain.changes] == [(None, 0)] * 3


def test_previous_values_count_in_a_pages_bytes_and_survive_a_cut_by_version() -> None:
    versions: list[tuple[int, bytes | None]] = [(v, b"%03d" % v) for v in (50, 40, 30, 20, 10)]
    cut = _prev_page([(b"hot", versions), (b"next", [(60, b"x")])], after=10, limit=2)
    assert cut.changes == [
        Change(20, b"hot", b"020", b"010", 10),
        Change(30, b"hot", b"030", b"020", 20),
    ]
    assert cut.covered_end == b"hot\x00" and cut.through == 39
    # k's change: 1 + 3 bytes of key and value, and 3 of the previous value; l's: 2.
    records: list[tuple[bytes, list[tuple[int, bytes | None]]]] = [
        (b"k", [(20, b"bbb"), (10, b"aaa")]),
        (b"l", [(30, b"x")]),
    ]
    by_bytes = _prev_page(records, 10, max_bytes=8)
    assert [c.key for c in by_bytes.changes] == [b"k"] and by_bytes.covered_end == b"l"
    assert [c.key for c in _page(records, 10, max_bytes=8).changes] == [b"k", b"l"]


def test_a_shard_reads_previous_values_also_across_its_collection() -> None:
    """The value before a window's first change may be older than the collection horizon:
    collection keeps each key's newest version at or below it, which is that value (a
    deletion there is collected, and the key held nothing then anyway)."""
    engine = MemEngine()
    sm = ShardStateMachine(1, (b"", None), engine)
    writes = [
        encode_put(b"a", b"a10", 10),
        encode_put(b"a", b"a20", 20),
        encode_put(b"b", b"b30", 30),
        encode_delete(b"b", 40),
        encode_put(b"a", b"a50", 50),
        encode_put(b"b", b"b60", 60),
    ]
    for slot, command in enumerate(writes, 1):
        batch = engine.new_batch()
        sm.apply(slot, [command], batch)
        engine.write(batch, sync=False)
    batch = engine.new_batch()
    assert sm.gc_below(45, batch) > 0  # a10 and b30 collected, b's deletion at 40 too
    engine.write(batch, sync=False)
    reopened = ShardStateMachine(1, (b"", None), engine)  # nothing listed: every key read
    for shard in (sm, reopened):
        page = shard.changes(b"", None, 45, 60, 100, 1 << 20, 1000, prev_values=True)
        assert page.changes == [
            Change(50, b"a", b"a50", b"a20", 20),
            Change(60, b"b", b"b60", None, 0),
        ]


def test_without_previous_values_a_keys_floor_examines_nothing() -> None:
    """Found by review: the floor counted toward `max_records` also when no previous value
    was asked for, so a read over many keys unchanged in its window was cut into pages
    (and a wait for a change answered at once, for nothing)."""
    collector = ChangesCollector(50, 100, 100, 1 << 20, max_records=2)
    for key in (b"a", b"b", b"c", b"d"):
        assert collector.start_key(key) is None
        collector.offer_floor(10, b"old")
    assert collector.end() == ChangesPage([], None, 100)
    counted = ChangesCollector(50, 100, 100, 1 << 20, max_records=2, prev_values=True)
    for key in (b"a", b"b"):
        assert counted.start_key(key) is None
        counted.offer_floor(10, b"old")
    # Two floors examined: the page ends before c.
    assert counted.start_key(b"c") == ChangesPage([], b"c", 100)
