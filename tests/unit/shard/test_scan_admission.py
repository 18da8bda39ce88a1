"""A node's scan answers: the whole scan inside the group's range or WRONG_SHARD, and at most
MAX_SCAN_ITEMS items per answer whatever the limit (found by review)."""

from __future__ import annotations

import pytest
from test_node_core import OneNode, header, put

from router import kv_pb2 as kv
from shard import lock_wait


def _scan(group: int, start: bytes, end: bytes | None = None, limit: int = 0) -> kv.Request:
    op = kv.ScanRequest(header=header(group), start=start, limit=limit)
    if end is not None:
        op.end = end
    return kv.Request(scan=op)


def test_a_scan_that_does_not_fit_the_group_is_wrong_shard() -> None:
    """Group 1 owns [-inf, m). A client planning on an older map relies on WRONG_SHARD to
    re-plan; the node answered OK with a cut or empty answer instead."""
    node = OneNode()
    assert node.call(put(b"zebra", b"z", group=2)).put.error.code == kv.OK
    for request in (
        _scan(1, b"z"),  # starts past the range
        _scan(1, b"a"),  # no end, on a bounded range
        _scan(1, b"x", b"zz"),
        _scan(1, b"a", b"n"),  # ends past the range
    ):
        answer = node.call(request).scan
        assert answer.error.code == kv.WRONG_SHARD, request
        assert answer.error.map_version == 1
    for request in (_scan(1, b"", b"m"), _scan(2, b"m"), _scan(2, b"y", b"zz")):
        assert node.call(request).scan.error.code == kv.OK, request


@pytest.mark.parametrize("kind", ["linearizable", "snapshot", "stale_ok"])
def test_a_scan_whose_end_is_not_above_its_start_is_invalid(kind: str) -> None:
    """Found by review: answered OK with no items, where a Prepare with that range is refused
    (an empty key range). The routing clients never send one."""
    node = OneNode()
    assert node.call(put(b"c", b"v")).put.error.code == kv.OK
    for start, end in ((b"h", b"b"), (b"c", b"c"), (b"c", b"")):
        request = _scan(1, start, end)
        request.scan.snapshot = kind == "snapshot"
        request.scan.stale_ok = kind == "stale_ok"
        request.scan.at_version = 1 if kind == "snapshot" else 0
        error = node.call(request).scan.error
        assert error.code == kv.INVALID_ARGUMENT, (start, end)
        assert error.message.startswith(f"empty key range [{start!r}, {end!r})"), error.message
    assert [i.key for i in node.call(_scan(1, b"c", b"c\x00")).scan.items] == [b"c"]


def test_a_scan_answer_carries_at_most_max_scan_items(monkeypatch: pytest.MonkeyPatch) -> None:
    node = OneNode()
    for i in range(5):
        assert node.call(put(b"n%d" % i, b"v", group=2)).put.error.code == kv.OK
    monkeypatch.setattr(lock_wait, "MAX_SCAN_ITEMS", 3)  # where a scan page is cut
    huge = node.call(_scan(2, b"m", limit=1_000_000)).scan
    assert [i.key for i in huge.items] == [b"n0", b"n1", b"n2"] and huge.more
    small = node.call(_scan(2, b"m", limit=2)).scan
    assert len(small.items) == 2 and not small.more  # its own limit: not "more"
    rest = node.call(_scan(2, b"n3", limit=1_000_000)).scan
    assert [i.key for i in rest.items] == [b"n3", b"n4"] and not rest.more
