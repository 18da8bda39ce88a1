"""Decision purge keeps up with the decisions a group records (found by review).

A PurgeDecisions command deletes at most MAX_PURGE_PER_COMMAND records and says `more`
when it stopped there; the leader proposed one per `purge_interval_s` (60 s) and ignored
`more`, so a group recording more than 4,096 finished decisions a minute (every Resolve
leaves one, rule R5; every one-phase commit too, O4: about 70 transactions a second) never
caught up, and its decision records and purge queue grew without bound.
"""

from __future__ import annotations

import pytest

import txn.coordinator as coordinator_module
from router import kv_pb2 as kv
from tests.unit.shard.test_node_core import OneNode, header, vouched

PER_COMMAND = 2
RECORDS = 7


def test_a_purge_that_stopped_at_its_bound_goes_on_until_the_backlog_is_gone(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(coordinator_module, "MAX_PURGE_PER_COMMAND", PER_COMMAND)
    node = OneNode(decision_retention_s=120.0, purge_interval_s=30.0)
    txn_ids = [b"t%d" % i for i in range(RECORDS)]
    for txn_id in txn_ids:
        # A Resolve of a transaction never prepared here still leaves its record (R5).
        resolve = vouched(
            kv.ResolveRequest(header=header(1), txn_id=txn_id, commit=True, commit_ts=1)
        )
        assert node.call(kv.Request(resolve=resolve)).resolve.error.code == kv.OK
    shard = node.core.hosts[1].shard
    assert all(shard.decision(t) is not None for t in txn_ids)
    # Past the retention window, the first purge after it (t = 150 s) and a second more.
    node.advance(151.0 - node.now, step=0.05)
    left = [t for t in txn_ids if shard.decision(t) is not None]
    assert left == [], f"{len(left)} of {RECORDS} expired records still stored"
