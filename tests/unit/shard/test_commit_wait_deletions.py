"""Rule 2 (shard/node.py): an answer must not finish before every clock passed the newest
version it shows, a deletion included (found by reviews).

A linearizable get of a deleted key always waited for the deletion's commit wait (it
reports the tombstone's version). A scan that showed the same deletion (the key missing),
a second delete ("was absent"), a compare-and-set that found the key absent and a snapshot
get of the deleted key answered at once: with clocks apart, a snapshot started after such
an answer could take a timestamp below the deletion and see the key again.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from router import kv_pb2 as kv
from tests.unit.shard.test_node_core import OneNode, get, header, put
from txn.hlc import LOGICAL_BITS


def delete(key: bytes) -> kv.Request:
    return kv.Request(delete=kv.DeleteRequest(header=header(1), key=key))


def scan(**kw: int | bool) -> kv.Request:
    return kv.Request(scan=kv.ScanRequest(header=header(), start=b"a", end=b"b", **kw))


def failed_cas() -> kv.Request:
    # Condition "value is red" fails: the key is gone (the answer shows it absent).
    cas = kv.CasRequest(header=header(), key=b"apple", expected_value=b"red", new_value=b"x")
    return kv.Request(cas=cas)


# Each makes its request from a snapshot timestamp above the deletion (used by snapshots).
SHOWING_THE_DELETION: dict[str, Callable[[int], kv.Request]] = {
    "get": lambda at: get(b"apple"),  # the control: it always waited
    "scan": lambda at: scan(),
    "second-delete": lambda at: delete(b"apple"),
    "failed-cas": lambda at: failed_cas(),
    "snapshot-get": lambda at: get(b"apple", snapshot=True, at_version=at),
    "snapshot-scan": lambda at: scan(snapshot=True, at_version=at),
}


@pytest.mark.parametrize("kind", SHOWING_THE_DELETION)
def test_an_answer_that_shows_a_fresh_deletion_waits_for_its_commit_wait(kind: str) -> None:
    node = OneNode(max_clock_offset_s=0.2)
    assert node.call(put(b"apple", b"red"), settle=0.3).put.error.code == kv.OK
    node.advance(0.5)  # the put's version is well in the past on every clock
    deleted: list[kv.Response] = []
    node.core.submit(delete(b"apple"), deleted.append)
    node.advance(0.1)
    assert deleted == []  # applied, still in its commit wait
    at = node.core._hlc.now(node.wall)
    answers: list[kv.Response] = []
    node.core.submit(SHOWING_THE_DELETION[kind](at), answers.append)
    node.advance(0.05)
    # The answer shows "apple" gone; a snapshot started after it may take a timestamp below
    # the tombstone's and see "apple" again, unless it waits as the deleter does.
    assert answers == [], f"answered before the deletion's commit wait ended: {answers}"
    node.advance(0.3)
    assert len(answers) == 1 and len(deleted) == 1
    version_us = deleted[0].delete.version >> LOGICAL_BITS
    assert node.wall // 1000 > version_us + 200_000
