"""Decision records and clocks ahead (node rules 9, P7, O5 and the purge horizon): found by
review, each with a clock offset far above the default and a short retention window."""

from __future__ import annotations

import pytest

from router import kv_pb2 as kv
from shard.clock_limits import fewest_decision_retention_s
from tests.unit.shard.test_node_core import OneNode, header, prepare_request, tid, vouched
from txn.hlc import LOGICAL_BITS
from txn.records import Finish, PurgeDecisions

S = 1_000_000  # one second, in µs


def _wall_ts(node: OneNode, ahead_s: float = 0.0) -> int:
    """A hybrid timestamp at the node's wall clock, `ahead_s` seconds ahead."""
    return (node.wall // 1000 + int(ahead_s * S)) << LOGICAL_BITS


@pytest.mark.parametrize("offset_ms", [0, 250, 7_375, 10_000, 60_000])
def test_at_the_shortest_window_a_node_takes_rule_p7s_margin_is_uncapped(offset_ms: int) -> None:
    """`fewest_decision_retention_s` is what keeps the node's cap of the P7 margin (a
    quarter of the window, for the simulator's short ones) from binding on a real node."""
    retention_s = fewest_decision_retention_s(offset_ms)
    node = OneNode(max_clock_offset_s=offset_ms / 1000, decision_retention_s=float(retention_s))
    assert node.core._began_margin == node.core._max_ahead_us << LOGICAL_BITS
    shorter = OneNode(max_clock_offset_s=offset_ms / 1000, decision_retention_s=retention_s - 5.0)
    assert offset_ms < 7_500 or shorter.core._began_margin < node.core._began_margin


def test_a_late_prepare_from_a_client_ahead_is_refused_after_its_abort_was_purged() -> None:
    """Rule P7 with the largest offset, at the shortest window the config takes with it
    (`fewest_decision_retention_s`): at 120 s the margin was capped at 30 s, and a copy of
    a Prepare from a client 40 s ahead voted yes after the coordinator's Prevent recorded
    the transaction's abort at this group and the record was purged."""
    node = OneNode(
        max_clock_offset_s=60.0, decision_retention_s=float(fewest_decision_retention_s(60_000))
    )
    node.advance(130.0, step=0.5)  # past the new leader's raise of two offsets (rule 3)
    start = _wall_ts(node, ahead_s=40.0)  # the client's clock, within the offset
    txn = tid(b"t1", start=start)
    prevent = kv.PreventRequest(header=header(2), txn_id=txn, participants=[1, 2])
    answer = node.call(kv.Request(prevent=prevent)).prevent
    assert answer.error.code == kv.OK and not answer.prepared and not answer.unknown
    recorded = node.core.hosts[2].shard.decision(txn)
    assert recorded is not None and not recorded.committed
    purge = PurgeDecisions(before_ts=recorded.decided_ts + 1)
    node.core._propose_internal(node.core.hosts[2], purge, lambda _result: None)
    node.advance(0.05)
    assert node.core.hosts[2].shard.decision(txn) is None
    node.core.hosts[2].aborted.clear()  # as after a leader change: only the log remembers
    answers: list[kv.Response] = []
    node.core.submit(prepare_request(2, b"zebra", txn_id=txn, ts=start), answers.append)
    node.advance(0.5)
    assert node.core.hosts[2].shard.prepared(txn) is None
    assert [a.prepare.error.code for a in answers] == [kv.CONFLICT], answers


@pytest.mark.parametrize("kind", ["decide", "resolve"])
def test_an_abort_stamped_below_its_start_is_purged_only_with_its_late_prepare_refused(
    kind: str,
) -> None:
    """As the Prevent above, for the other abort records a request from the wire leaves
    stamped by the recording node's clock, below the start its id carries (the start is
    not observed): a recovery Decide at the coordinator group (1), a vouched
    Resolve(abort) at a participant (2) holding nothing prepared. Once the record is
    purged, a late Prepare there is refused by rule P7, which judges it by the start less
    the margin of rule 9 (`NodeCore._began_bound`), not by the start itself."""
    node = OneNode(
        max_clock_offset_s=60.0, decision_retention_s=float(fewest_decision_retention_s(60_000))
    )
    node.advance(130.0, step=0.5)  # past the new leader's raise of two offsets (rule 3)
    start = _wall_ts(node, ahead_s=40.0)  # the client's clock, within the offset
    txn = tid(b"t1", start=start)
    group = 1 if kind == "decide" else 2
    if kind == "decide":
        decide = kv.DecideRequest(header=header(1), txn_id=txn, participants=[1, 2])
        answer = node.call(kv.Request(decide=decide)).decide
        assert answer.error.code == kv.OK and not answer.committed and not answer.pending
        node.core._propose_internal(node.core.hosts[1], Finish(txn_id=txn), lambda _r: None)
        node.advance(0.05)
    else:
        resolve = vouched(kv.ResolveRequest(header=header(2), txn_id=txn, commit=False))
        assert node.call(kv.Request(resolve=resolve)).resolve.error.code == kv.OK
    host = node.core.hosts[group]
    recorded = host.shard.decision(txn)
    assert recorded is not None and not recorded.committed and recorded.finished
    assert recorded.decided_ts < start  # the premise: stamped below the txn's start
    purge = PurgeDecisions(before_ts=recorded.decided_ts + 1)
    node.core._propose_internal(host, purge, lambda _result: None)
    node.advance(0.05)
    assert host.shard.decision(txn) is None
    # Judged by its start alone, the late Prepare would be taken: the mark is below it.
    assert 0 < host.shard.purge_counters().mark < start
    host.aborted.clear()  # as after a leader change: only the log remembers
    answers: list[kv.Response] = []
    late = prepare_request(group, b"apple" if group == 1 else b"zebra", txn_id=txn, ts=start)
    node.core.submit(late, answers.append)
    node.advance(0.5)
    assert host.shard.prepared(txn) is None
    assert [a.prepare.error.code for a in answers] == [kv.CONFLICT], answers
    assert "purge mark" in answers[0].prepare.error.message


def test_a_clock_pushed_ahead_purges_no_decision_before_its_retention_ran_out() -> None:
    """The purge horizon is behind the wall clock as well as the hybrid one: a request's
    timestamp 40 s ahead (rule 9 takes 4 offsets + 0.5 s) moved the hybrid clock, and with
    it the horizon, 40 s ahead, purging a committed one-phase commit's record 40 s early."""
    retention_s = fewest_decision_retention_s(10_000)  # 162 s
    node = OneNode(max_clock_offset_s=10.0, decision_retention_s=float(retention_s))
    node.advance(25.0, step=0.5)  # past the new leader's raise of two offsets (rule 3)
    start = _wall_ts(node)
    txn = tid(b"t1", start=start)
    commit = kv.CommitOnePhaseRequest(
        header=header(1), txn_id=txn, ts=start, writes=[kv.WriteItem(key=b"apple", value=b"v")]
    )
    node.core.submit(kv.Request(commit_one_phase=commit), lambda _answer: None)
    node.advance(0.5)  # applied (its answer waits out the commit wait)
    shard = node.core.hosts[1].shard
    recorded = shard.decision(txn)
    assert recorded is not None and recorded.committed
    # Purge passes run every 60 s of node time: the third, at 180 s, sees the wall clock
    # 155 s past the commit, and a hybrid clock a request has just pushed 40 s ahead.
    node.advance(170.0 - node.now, step=0.5)
    ahead = _wall_ts(node, ahead_s=40.0)
    other = prepare_request(2, b"zebra", txn_id=tid(b"t2", start=ahead), ts=ahead)
    node.core.submit(other, lambda _answer: None)
    node.advance(185.0 - node.now, step=0.5)
    assert node.wall // 1000 - (start >> LOGICAL_BITS) < retention_s * S
    assert shard.decision(txn) is not None, "purged before its retention ran out"
    node.advance(245.0 - node.now, step=0.5)  # the next pass, past the retention
    assert shard.decision(txn) is None
