"""Waits for a change (node rule 16, shard.change_waits): what a watch parks at a replica
between rounds, answered changed as soon as a version of its range above its
`changes_after` is applied there, unchanged once half its time is up; never asleep
through a change, whichever way the version came (a put, a delete, a transaction's
commit, a snapshot restored)."""

from __future__ import annotations

import pytest
from test_node_changes import delete, now_ts
from test_node_core import OneNode, ThreeNodes, header, prepare_request, put, tid, vouched

from router import kv_pb2 as kv
from shard.change_waits import ChangeWaits, changed_since
from shard.config import PaxosSettings
from shard.node import TxnSettings


def wait(
    after: int, start: bytes = b"c", end: bytes | None = b"f", group: int = 1, timeout_ms: int = 0
) -> kv.Request:
    op = kv.ScanRequest(header=header(group), start=start, changes_after=after, await_change=True)
    op.header.timeout_ms = timeout_ms
    if end is not None:
        op.end = end
    return kv.Request(scan=op)


def parked(node: OneNode, request: kv.Request) -> list[kv.Response]:
    answers: list[kv.Response] = []
    node.core.submit(request, answers.append)
    node.advance(0.05)
    return answers


def test_a_wait_is_answered_at_once_when_its_range_changed_after_its_version() -> None:
    """With the version that changed: the client's next round reads at least up to it
    (found by review: from a clock behind it, rounds found nothing and the wait answered
    again at once, round after round)."""
    node = OneNode()
    after = now_ts(node)
    version = node.call(put(b"d", b"1")).put.version
    node.call(put(b"x", b"other range"))
    answer = node.call(wait(after)).scan
    assert answer.error.code == kv.OK and answer.waited and answer.changed
    assert answer.through == version and not answer.items


def test_a_wait_sleeps_through_writes_outside_its_range_and_wakes_on_one_inside() -> None:
    node = OneNode()
    node.call(put(b"d", b"old"))  # at or below `after`: not a change
    after = now_ts(node)
    answers = parked(node, wait(after))
    for key in (b"b", b"f", b"k"):  # the same group, outside [c, f)
        node.call(put(key, b"1"))
    node.call(put(b"x", b"1", group=2))
    assert answers == []
    version = node.call(put(b"e", b"1")).put.version
    assert len(answers) == 1
    assert answers[0].scan.changed and answers[0].scan.waited
    assert answers[0].scan.through == version


def test_a_wait_on_a_range_without_an_end_covers_the_group_to_its_end() -> None:
    node = OneNode()
    answers = parked(node, wait(now_ts(node), start=b"h", end=None, group=1))
    assert answers[0].scan.error.code == kv.WRONG_SHARD  # group 1 ends at m
    answers = parked(node, wait(now_ts(node), start=b"p", end=None, group=2))
    assert answers == []
    node.call(put(b"zz", b"1", group=2))
    assert answers[0].scan.changed


def test_a_deletion_wakes_a_wait() -> None:
    node = OneNode()
    node.call(put(b"d", b"1"))
    answers = parked(node, wait(now_ts(node)))
    node.call(delete(b"d"))
    assert answers and answers[0].scan.changed


def test_a_transaction_wakes_a_wait_when_it_commits_not_when_it_prepares() -> None:
    node = OneNode()
    answers = parked(node, wait(now_ts(node), start=b"j", end=b"l"))
    prepared = node.call(prepare_request(1, b"k")).prepare
    assert prepared.error.code == kv.OK
    node.advance(0.1)
    assert answers == []  # an intent is no version yet
    resolve = vouched(
        kv.ResolveRequest(
            header=header(), txn_id=tid(b"t1"), commit=True, commit_ts=prepared.prepare_ts
        )
    )
    assert node.call(kv.Request(resolve=resolve)).resolve.error.code == kv.OK
    assert answers and answers[0].scan.changed


def test_a_wait_ends_unchanged_once_half_its_time_is_up() -> None:
    node = OneNode()
    answers = parked(node, wait(now_ts(node), timeout_ms=2000))
    node.advance(0.9)
    assert answers == []
    node.advance(0.1)
    assert len(answers) == 1
    assert answers[0].scan.waited and not answers[0].scan.changed
    assert answers[0].scan.error.code == kv.OK


def test_a_wait_never_outlasts_half_the_nodes_request_timeout() -> None:
    node = OneNode()  # request_timeout_s 5.0
    answers = parked(node, wait(now_ts(node), timeout_ms=3_600_000))
    node.advance(2.4)
    assert answers == []
    node.advance(0.2)
    assert answers and not answers[0].scan.changed


def test_a_stopping_node_answers_its_waits_unchanged() -> None:
    node = OneNode()
    answers = parked(node, wait(now_ts(node)))
    node.core.end_change_waits()
    assert len(answers) == 1 and answers[0].scan.waited and not answers[0].scan.changed
    assert not node.core.has_client_requests()


def test_a_wait_below_the_gc_horizon_is_answered_changed_for_the_round_to_refuse() -> None:
    node = OneNode(mvcc_retention_s=1.0, gc_interval_s=0.5)
    for i in range(3):
        node.call(put(b"d", b"%d" % i))
    node.advance(2.0)
    horizon = node.core.hosts[1].shard.gc_horizon
    assert horizon > 0
    assert node.call(wait(horizon - 1)).scan.changed


@pytest.mark.parametrize(
    ("fields", "words"),
    [
        ({"at_version": 5}, "takes neither at_version"),
        ({"reverse": True}, "takes neither at_version, reverse"),
        ({"snapshot": True}, "nor snapshot"),
        ({"changes_after": None}, "needs changes_after"),
    ],
)
def test_a_malformed_wait_is_refused(fields: dict[str, object], words: str) -> None:
    node = OneNode()
    request = wait(now_ts(node))
    for name, value in fields.items():
        if value is None:
            request.scan.ClearField(name)
        else:
            setattr(request.scan, name, value)
    error = node.call(request).scan.error
    assert error.code == kv.INVALID_ARGUMENT and words in error.message, error.message


@pytest.mark.parametrize("whole_bytes", [0, 1 << 20])
def test_a_snapshot_restored_at_a_lagging_replica_wakes_its_waits(
    whole_bytes: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Any replica answers a wait; one that catches up by a snapshot (whole, or in steps)
    applies no version one by one, so the restore's end must wake its waits."""
    nodes = ThreeNodes(
        PaxosSettings(compact_threshold=20, compact_keep=2),
        TxnSettings(snapshot_step_records=5, snapshot_whole_bytes=whole_bytes),
    )
    leader = nodes.leader(1)
    lagging = next(i for i in nodes.cores if i != leader)
    after = nodes.call(leader, kv.Request(timestamp=kv.TimestampRequest())).timestamp.ts
    nodes.cut = lagging
    for i in range(60):
        assert nodes.call(leader, put(b"b%02d" % i, b"2")).put.error.code == kv.OK
    answers: list[kv.Response] = []
    # Keys only the snapshot brings: later entries of the log do not touch them.
    nodes.cores[lagging].submit(wait(after, start=b"b00", end=b"b10"), answers.append)
    shard = nodes.cores[lagging].hosts[1].shard
    restores: list[int] = []
    begin_restore = shard.begin_restore

    def counted(index: int, data: bytes) -> object:
        restores.append(index)
        return begin_restore(index, data)

    monkeypatch.setattr(shard, "begin_restore", counted)
    nodes.cut = None
    for _ in range(2000):
        nodes.advance(0.001)
        if answers:
            break
    assert restores
    assert answers and answers[0].scan.changed


def test_waits_end_once_each() -> None:
    waits: ChangeWaits[str] = ChangeWaits()
    waits.park(1, b"a", b"c", 10, 5.0, "ab")
    waits.park(1, b"c", None, 10, 1.0, "c+")
    waits.park(2, b"a", b"c", 10, 5.0, "other group")
    assert waits.woken(1, [(b"b", 10), (b"z", 9)]) == []  # at or below `after`
    assert waits.woken(1, [(b"z", 11), (b"c", 13)]) == [("c+", 13)]  # the newest it sees
    assert waits.woken(1, [(b"z", 12)]) == []
    assert waits.due(4.9) == []
    assert waits.due(5.0) == ["ab", "other group"]
    assert waits.take_all() == []  # each ended once
    waits.park(3, b"", None, 0, 9.0, "restored")
    assert waits.woken_all(3) == ["restored"] and waits.take_all() == []


def test_changed_since_looks_at_the_range_only() -> None:
    node = OneNode()
    shard = node.core.hosts[1].shard
    after = now_ts(node)
    assert not changed_since(shard, b"", b"m", after)
    node.call(put(b"k", b"1"))
    assert changed_since(shard, b"a", b"m", after)
    assert not changed_since(shard, b"a", b"k", after)
    assert not changed_since(shard, b"a", b"m", shard.max_version)


def test_waits_past_the_node_wide_bound_are_parked_unchecked_until_due(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Found by review: every applied batch looked at every parked wait of its group, and
    clients' streams may park 256 each. Past MAX_CHECKED_WAITS a wait is only answered when
    its time is up (its watch reads a round by `progress_s` anyway), and a checked wait that
    ends makes room for the next."""
    from shard import change_waits

    monkeypatch.setattr(change_waits, "MAX_CHECKED_WAITS", 2)
    waits: ChangeWaits[str] = ChangeWaits()
    waits.park(1, b"a", None, 10, 5.0, "first")
    waits.park(1, b"a", None, 10, 5.0, "second")
    waits.park(1, b"a", None, 10, 3.0, "over, group 1")
    waits.park(2, b"a", None, 10, 4.0, "over, group 2")
    assert waits.woken(1, [(b"k", 11)]) == [("first", 11), ("second", 11)]
    assert waits.due(2.9) == []
    assert waits.due(3.0) == ["over, group 1"]  # never checked, answered when due
    waits.park(1, b"a", None, 10, 9.0, "checked again")  # the ended ones made room
    assert waits.woken(1, [(b"k", 12)]) == [("checked again", 12)]
    waits.park(2, b"x", None, 10, 9.0, "checked in group 2")
    waits.park(2, b"x", None, 10, 9.0, "another")
    waits.park(2, b"x", None, 10, 8.0, "over again")
    assert sorted(waits.woken_all(2)) == [
        "another", "checked in group 2", "over again", "over, group 2"
    ]  # fmt: skip
    assert waits.take_all() == []
