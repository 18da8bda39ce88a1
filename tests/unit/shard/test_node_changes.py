"""A node's reads of changes (what a watch reads): every version and deletion of a range in
a window of versions, refused when malformed, held while a prepared transaction could still
add a change to the window, and cut into pages that say what they cover."""

from __future__ import annotations

import pytest
from test_node_core import OneNode, header, prepare_request, put, tid, vouched

from router import kv_pb2 as kv
from shard import answers


def changes(
    after: int, at: int, start: bytes = b"", end: bytes | None = b"m", group: int = 1, **kw: object
) -> kv.Request:
    op = kv.ScanRequest(header=header(group), start=start, changes_after=after, at_version=at, **kw)
    if end is not None:
        op.end = end
    return kv.Request(scan=op)


def now_ts(node: OneNode) -> int:
    return node.call(kv.Request(timestamp=kv.TimestampRequest())).timestamp.ts


def delete(key: bytes) -> kv.Request:
    return kv.Request(delete=kv.DeleteRequest(header=header(), key=key))


def test_every_version_and_deletion_of_the_window_oldest_first() -> None:
    node = OneNode()
    before = now_ts(node)
    v1 = node.call(put(b"b", b"1")).put.version
    v2 = node.call(put(b"a", b"2")).put.version
    v3 = node.call(delete(b"b")).delete.version
    node.call(put(b"x", b"other group", group=2))
    at = now_ts(node)
    answer = node.call(changes(before, at)).scan
    assert answer.error.code == kv.OK and answer.changes
    assert [(i.key, i.value, i.version, i.deleted) for i in answer.items] == [
        (b"b", b"1", v1, False),
        (b"a", b"2", v2, False),
        (b"b", b"", v3, True),
    ]
    assert answer.through == at and not answer.HasField("covered_end") and not answer.more
    later = node.call(changes(v1, v2)).scan
    assert [i.version for i in later.items] == [v2] and later.through == v2


@pytest.mark.parametrize(
    ("fields", "words"),
    [
        ({"at_version": 0}, "needs at_version"),
        ({"reverse": True}, "takes neither reverse nor stale_ok"),
        ({"stale_ok": True}, "takes neither reverse nor stale_ok"),
        ({"changes_after": "at + 1"}, "is above at_version"),
    ],
)
def test_a_malformed_read_of_changes_is_refused(fields: dict[str, object], words: str) -> None:
    node = OneNode()
    request = changes(0, now_ts(node))
    for name, value in fields.items():
        setattr(request.scan, name, request.scan.at_version + 1 if value == "at + 1" else value)
    error = node.call(request).scan.error
    assert error.code == kv.INVALID_ARGUMENT and words in error.message, error.message


def test_changes_from_below_the_gc_horizon_are_too_old() -> None:
    node = OneNode(mvcc_retention_s=1.0, gc_interval_s=0.5)
    for i in range(3):
        node.call(put(b"k", b"%d" % i))
    node.advance(2.0)
    horizon = node.core.hosts[1].shard.gc_horizon
    assert horizon > 0
    error = node.call(changes(horizon - 1, now_ts(node))).scan.error
    assert error.code == kv.SNAPSHOT_TOO_OLD
    assert "garbage-collected" in error.message
    at = now_ts(node)
    assert node.call(changes(at - 1, at)).scan.error.code == kv.OK  # within the retention


def test_a_read_of_changes_waits_for_a_prepared_writer_anywhere_in_its_range() -> None:
    """A snapshot scan of a few keys waits only for intents on the keys it shows; a read of
    changes shows the whole range, so an intent past any limit holds it too: its commit
    may land inside the window."""
    node = OneNode()
    before = now_ts(node)
    node.call(put(b"a", b"1"))
    prepared = node.call(prepare_request(1, b"k")).prepare
    assert prepared.error.code == kv.OK
    at = now_ts(node)
    waiting: list[kv.Response] = []
    node.core.submit(changes(before, at, limit=1), waiting.append)
    node.advance(0.2)
    assert waiting == []
    resolve = vouched(
        kv.ResolveRequest(
            header=header(), txn_id=tid(b"t1"), commit=True, commit_ts=prepared.prepare_ts
        )
    )
    assert node.call(kv.Request(resolve=resolve)).resolve.error.code == kv.OK
    node.advance(0.05)
    assert len(waiting) == 1
    first = waiting[0].scan
    assert [i.key for i in first.items] == [b"a"] and first.more
    assert first.covered_end == b"k" and first.through == at
    rest = node.call(changes(before, at, start=first.covered_end)).scan
    assert [(i.key, i.value, i.version) for i in rest.items] == [(b"k", b"v", prepared.prepare_ts)]


def test_a_page_stops_at_a_key_once_it_examined_its_records(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    node = OneNode()
    before = now_ts(node)
    for key in (b"a", b"b", b"c"):
        node.call(put(key, b"v"))
    monkeypatch.setattr(answers, "MAX_CHANGES_RECORDS", 2)
    at = now_ts(node)
    page = node.call(changes(before, at)).scan
    assert [i.key for i in page.items] == [b"a", b"b"] and page.covered_end == b"c"
    assert page.through == at and page.more


def test_a_read_of_changes_with_prev_values_says_so_and_carries_them() -> None:
    node = OneNode()
    v1 = node.call(put(b"a", b"1")).put.version
    before = now_ts(node)
    v2 = node.call(put(b"a", b"2")).put.version
    v3 = node.call(delete(b"a")).delete.version
    answer = node.call(changes(before, now_ts(node), prev_values=True)).scan
    assert answer.error.code == kv.OK and answer.prev_values
    assert [
        (i.version, i.HasField("prev_value"), i.prev_value, i.prev_version) for i in answer.items
    ] == [
        (v2, True, b"1", v1),
        (v3, True, b"2", v2),
    ]
    plain = node.call(changes(before, now_ts(node))).scan
    assert not plain.prev_values
    assert not any(i.HasField("prev_value") or i.prev_version for i in plain.items)


@pytest.mark.parametrize(
    "request_",
    [
        kv.Request(scan=kv.ScanRequest(header=header(), start=b"a", prev_values=True)),
        kv.Request(
            scan=kv.ScanRequest(
                header=header(), start=b"a", changes_after=1, await_change=True, prev_values=True
            )
        ),
    ],
    ids=["a scan of values", "a wait for a change"],
)
def test_prev_values_outside_a_read_of_changes_is_refused(request_: kv.Request) -> None:
    node = OneNode()
    node.call(put(b"a", b"1"))
    error = node.call(request_).scan.error
    assert (
        error.code == kv.INVALID_ARGUMENT
        and "prev_values is for a read of changes" in error.message
    )


def test_a_hybrid_clock_pushed_ahead_does_not_cut_the_retention_short() -> None:
    """The collection horizon is the wall clock less the retention, not the hybrid clock
    less it: a request's timestamp from a clock ahead (node rule 9) pushes the hybrid clock
    ahead of real time, and the horizon with it cut 0.15 s from a 0.3 s retention (found by
    a simulator soak: snapshots refused as too old well inside the retention)."""
    from txn.hlc import physical_us, ts_at_wall_ns

    node = OneNode(mvcc_retention_s=1.0, gc_interval_s=0.1)
    for i in range(3):
        node.call(put(b"k", b"%d" % i))
    node.advance(2.0)
    node.core._hlc.observe(ts_at_wall_ns(node.wall + 500_000_000))  # 0.5 s ahead
    node.advance(0.2)
    # A collection pass begins in the apply cycle of this put (its answer then waits for the
    # wall clock to pass its version: the commit wait).
    collected_at_us = node.wall // 1000
    node.call(put(b"k", b"later"))
    horizon_us = physical_us(node.core.hosts[1].shard.gc_horizon)
    assert collected_at_us - 1_100_000 < horizon_us <= collected_at_us + 20_000 - 1_000_000
