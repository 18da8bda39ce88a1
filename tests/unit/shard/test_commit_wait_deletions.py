"""Rule 2 (shard/node.py): an answer must not finish before every clock passed the newest
version it shows, a deletion included (found by review).

A get of a deleted key always waited for the deletion's commit wait (it reports the
tombstone's version). A scan that showed the same deletion (the key missing), a second
delete ("was absent") and a compare-and-set that found the key absent answered at once:
with clocks apart, a snapshot started after such an answer could take a timestamp below
the deletion and see the key again.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from router import kv_pb2 as kv
from tests.unit.shard.test_node_core import OneNode, get, header, put
from txn.hlc import LOGICAL_BITS


def delete(key: bytes) -> kv.Request:
    return kv.Request(delete=kv.DeleteRequest(header=header(1), key=key))


@pytest.mark.parametrize(
    "read",
    [get(b"apple"), kv.Request(scan=kv.ScanRequest(header=header(), start=b"a", end=b"b"))],
    ids=["get", "scan"],
)
def test_a_read_that_shows_a_fresh_deletion_waits_for_its_commit_wait(read: kv.Request) -> None:
    node = OneNode(max_clock_offset_s=0.2)
    assert node.call(put(b"apple", b"red"), settle=0.3).put.error.code == kv.OK
    node.advance(0.5)  # the put's version is well in the past on every clock
    deleted: list[kv.Response] = []
    node.core.submit(delete(b"apple"), deleted.append)
    node.advance(0.1)
    assert deleted == []  # applied, still in its commit wait
    answers: list[kv.Response] = []
    node.core.submit(read, answers.append)
    node.advance(0.05)
    # The reader sees "apple" gone; a snapshot started after it may take a timestamp below
    # the tombstone's and see "apple" again, unless the reader waits as the deleter does.
    assert answers == [], f"answered before the deletion's commit wait ended: {answers}"
    node.advance(0.3)
    assert len(answers) == 1 and len(deleted) == 1
    version_us = deleted[0].delete.version >> LOGICAL_BITS
    assert node.wall // 1000 > version_us + 200_000


def cas_absent_fails() -> kv.Request:
    # Condition "value is red" fails: the key is gone (the answer shows it absent).
    return kv.Request(
        cas=kv.CasRequest(header=header(), key=b"apple", expected_value=b"red", new_value=b"x")
    )


@pytest.mark.parametrize(
    "make", [lambda: delete(b"apple"), cas_absent_fails], ids=["second-delete", "failed-cas"]
)
def test_a_write_that_observes_a_fresh_deletion_waits_for_its_commit_wait(
    make: Callable[[], kv.Request],
) -> None:
    node = OneNode(max_clock_offset_s=0.2)
    assert node.call(put(b"apple", b"red"), settle=0.3).put.error.code == kv.OK
    node.advance(0.5)
    deleted: list[kv.Response] = []
    node.core.submit(delete(b"apple"), deleted.append)
    node.advance(0.1)
    assert deleted == []
    answers: list[kv.Response] = []
    node.core.submit(make(), answers.append)
    node.advance(0.05)
    assert answers == [], f"answered 'absent' before the deletion's commit wait ended: {answers}"
    node.advance(0.3)
    assert len(answers) == 1 and len(deleted) == 1


@pytest.mark.parametrize("kind", ["scan", "get"])
def test_a_snapshot_read_that_shows_a_fresh_deletion_waits_for_its_commit_wait(kind: str) -> None:
    """Found by a later review: a snapshot get of a deleted key reported version 0, so it
    answered "absent" at once (a snapshot scan waited since the scan fix)."""
    node = OneNode(max_clock_offset_s=0.2)
    assert node.call(put(b"apple", b"red"), settle=0.3).put.error.code == kv.OK
    node.advance(0.5)
    deleted: list[kv.Response] = []
    node.core.submit(delete(b"apple"), deleted.append)
    node.advance(0.1)
    assert deleted == []  # applied, still in its commit wait
    at = node.core._hlc.now(node.wall)  # a snapshot timestamp above the tombstone
    if kind == "get":
        read = get(b"apple", snapshot=True, at_version=at)
    else:
        scan = kv.ScanRequest(header=header(), start=b"a", end=b"b", snapshot=True, at_version=at)
        read = kv.Request(scan=scan)
    answers: list[kv.Response] = []
    node.core.submit(read, answers.append)
    node.advance(0.05)
    assert answers == [], f"answered 'absent' before the deletion's commit wait ended: {answers}"
    node.advance(0.3)
    assert len(answers) == 1 and len(deleted) == 1
    version_us = deleted[0].delete.version >> LOGICAL_BITS
    assert node.wall // 1000 > version_us + 200_000
