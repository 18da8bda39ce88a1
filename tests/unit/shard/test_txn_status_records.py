"""`txn_status` answered from the coordinator group's decision records, within their retention.

The commit-outcome API reads what the coordinator group recorded: COMMITTED with the commit
timestamp, ABORTED, IN_PROGRESS while prepared and undecided, and UNKNOWN once a decision is
older than `decision_retention_s` and purged (the documented window). Found by an audit of
the issue's points: the client's tests ask right after a commit, while the coordinator's
Resolve is still held (node rule 8) and the group still shows the transaction prepared, so
the answer came from that path and never from a record; a record answering commit_ts 0, or
every commit as aborted, failed no test, nor did a purge that ignored the window.
"""

from __future__ import annotations

from router import kv_pb2 as kv
from tests.unit.shard.test_node_core import (
    OneNode,
    header,
    prepare_request,
    recover_until_decided,
    tid,
)

State = kv.TxnStatusResponse
RETENTION_S = 2.0


def advance_answering(node: OneNode, seconds: float) -> None:
    """Advance, playing the shell for the node's own requests (a purge asks the other
    participants before it deletes a commit record, rule G2)."""
    end = node.now + seconds
    while node.now < end:
        node.advance(0.05)
        outbound, node.core.outbound = node.core.outbound, []
        for _group, request, done in outbound:
            done(node.call(request))


def status(node: OneNode, txn_id: bytes) -> kv.TxnStatusResponse:
    request = kv.Request(txn_status=kv.TxnStatusRequest(header=header(1), txn_id=txn_id))
    answer = node.call(request).txn_status
    assert answer.error.code == kv.OK, answer
    return answer


def committed_in_two_groups(node: OneNode, txn_id: bytes, ts: int = 1) -> int:
    """Prepare `txn_id` in groups 1 (its coordinator) and 2, let recovery record and deliver
    the commit (its client is gone), and return the commit timestamp: max(prepare_ts)."""
    votes = [
        node.call(prepare_request(g, k, txn_id, ts=ts)).prepare
        for g, k in ((1, b"apple"), (2, b"zebra"))
    ]
    assert all(v.error.code == kv.OK for v in votes), votes
    recover_until_decided(node, txn_id)
    return max(v.prepare_ts for v in votes)


def test_each_state_comes_from_the_coordinator_groups_records() -> None:
    node = OneNode(resolve_after_s=0.2)
    commit_ts = committed_in_two_groups(node, tid(b"t1"))
    assert node.core.hosts[1].shard.prepared(tid(b"t1")) is None  # resolved: records only
    abort = kv.DecideRequest(header=header(1), txn_id=tid(b"t2"), participants=[1, 2])
    assert node.call(kv.Request(decide=abort)).decide.error.code == kv.OK  # never prepared
    in_progress = node.call(prepare_request(1, b"avocado", tid(b"t3"), participants=(1, 2)))
    assert in_progress.prepare.error.code == kv.OK

    first = status(node, tid(b"t1"))
    assert (first.state, first.commit_ts) == (State.COMMITTED, commit_ts)
    assert status(node, tid(b"t2")).state == State.ABORTED
    third = status(node, tid(b"t3"))
    assert third.state == State.IN_PROGRESS
    assert third.prepare_ts == in_progress.prepare.prepare_ts
    assert list(third.participants) == [1, 2]
    assert status(node, tid(b"never")).state == State.UNKNOWN


def test_a_decision_is_answered_through_its_retention_and_unknown_after_it() -> None:
    node = OneNode(resolve_after_s=0.2, decision_retention_s=RETENTION_S, purge_interval_s=0.2)
    # The node's clock now: a purge's horizon stays below the transaction's start.
    start = node.call(kv.Request(timestamp=kv.TimestampRequest())).timestamp.ts
    txn_id = tid(b"t1", start=start)
    commit_ts = committed_in_two_groups(node, txn_id, ts=start)
    decided_at = node.now
    advance_answering(node, RETENTION_S / 2)
    kept = status(node, txn_id)
    assert (kept.state, kept.commit_ts) == (State.COMMITTED, commit_ts)
    advance_answering(node, decided_at + RETENTION_S + 1.0 - node.now)
    assert node.core.hosts[1].shard.decision(txn_id) is None  # purged
    assert status(node, txn_id).state == State.UNKNOWN
    # And a copy of its Prepare that arrives now cannot write it again (rule P7).
    late = node.call(prepare_request(1, b"apple", txn_id, ts=start)).prepare
    assert late.error.code != kv.OK
    assert "purge" in late.error.message
