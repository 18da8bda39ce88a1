"""Made-up requests that split a transaction before node rule 12 and participant rules P1,
R7 and V3 (found by review of rule 12's first version), and made-up `asker_ts` claims that
made a purged commit's txn_status answer ABORTED before node rule 13 (for an id without a
start, until such ids were refused). Groups of OneNode(splits=(b"h", b"p")): 1 = [.., h),
2 = [h, p), 3 = [p, ..)."""

from __future__ import annotations

import pytest

from router import kv_pb2 as kv
from tests.unit.shard.test_node_core import OneNode, _now_ts, get, header, prepare_request, tid
from tests.unit.shard.test_node_input import _commit_everywhere_and_purge, _resolve_commit, _yes
from txn.hlc import LOGICAL_BITS
from txn.records import PurgeDecisions
from txn.txn_ids import new_txn_id


def _node() -> OneNode:
    node = OneNode(splits=(b"h", b"p"))
    assert sorted(g for g in node.core.hosts if g) == [1, 2, 3]
    return node


def _deliver_outbound(node: OneNode, rounds: int = 20) -> None:
    """Play the shell for the node's own requests for a while."""
    for _ in range(rounds):
        node.advance(0.05)
        outbound, node.core.outbound = node.core.outbound, []
        for _group, request, done in outbound:
            done(node.call(request))


def _values(node: OneNode) -> tuple[bytes, bytes]:
    a = node.call(get(b"apple", group=1)).get.value
    b = node.call(get(b"kiwi", group=2)).get.value
    return a, b


def test_a_wire_decide_at_a_group_that_is_not_the_coordinator_aborts_no_committed_txn() -> None:
    """t1 prepared at 1 and 2 (participants [1, 2], coordinator 1): every vote yes, so it
    is COMMITTED. A Decide(abort) sent to group 3 naming participants [1, 2, 3] finds no
    PREPARE there and records an abort; group 3's leader then delivers Resolve(abort) with
    a valid decision_mac to groups 1 and 2. With the client's Resolve(commit) reaching
    group 1 first, group 1 committed and group 2 aborted: split. Now group 2 takes no
    decision over participants [1, 2, 3] (rule R7)."""
    node = _node()
    votes = [_yes(node, prepare_request(1, b"apple")), _yes(node, prepare_request(2, b"kiwi"))]
    committed = node.call(_resolve_commit(1, votes)).resolve
    assert committed.error.code == kv.OK
    forged = kv.DecideRequest(
        header=header(3), txn_id=tid(b"t1"), participants=[1, 2, 3], recover=True, asker_ts=0
    )
    answer = node.call(kv.Request(decide=forged)).decide
    assert answer.error.code == kv.OK and not answer.committed and not answer.pending
    _deliver_outbound(node)
    assert _values(node) == (b"v", b"v"), "split: group 1 committed, group 2 aborted"


def test_a_vote_mac_over_any_participant_set_from_a_duplicate_prepare() -> None:
    """Prepare is idempotent (rule P1): a re-sent Prepare was answered with the recorded
    prepare_ts whatever participants it named, and the vote MAC is computed over the
    REQUEST's participants, not the logged ones. Group 2 logs t1 as participants [2, 3],
    coordinator 3; a second Prepare naming [1, 2] yielded a valid vote of group 2 over
    [1, 2], with which a Resolve(commit) was taken at group 1 although group 2's own
    recovery (asking group 3, which never prepared) aborts its part. Fixed: the copy is
    refused and carries no proof."""
    node = OneNode(splits=(b"h", b"p"), resolve_after_s=600.0)
    vote1 = _yes(node, prepare_request(1, b"apple"))  # [1, 2], coordinator 1
    _yes(node, prepare_request(2, b"kiwi", coordinator=3, participants=(2, 3)))
    copy = node.call(prepare_request(2, b"kiwi")).prepare  # the "copy": [1, 2], coordinator 1
    assert copy.error.code == kv.CONFLICT and not copy.vote_mac, "a vote over unlogged participants"
    vote2 = kv.VoteProof(group_id=2, prepare_ts=copy.prepare_ts, mac=copy.vote_mac)
    refused = node.call(_resolve_commit(1, [vote1, vote2])).resolve
    assert refused.error.code == kv.INVALID_ARGUMENT


def test_participant_lists_that_differ_between_groups_split_through_recovery_alone() -> None:
    """No forged Resolve at all: t1 prepared at group 1 as ([1, 2], coordinator 1) and at
    group 2 as ([2, 3], coordinator 3), every vote yes. Group 1's prevent round asks group
    2, which answers "prepared" (rule V1 does not compare participants) -> COMMIT at group
    1; group 2's recovery asks group 3, which holds nothing -> ABORT. The commit then
    delivered to group 2 meets its abort record. Group 1 committed, group 2 aborted."""
    node = OneNode(splits=(b"h", b"p"), resolve_after_s=0.2)
    _yes(node, prepare_request(1, b"apple"))
    _yes(node, prepare_request(2, b"kiwi", coordinator=3, participants=(2, 3)))
    _deliver_outbound(node, rounds=40)
    assert _values(node) in ((b"v", b"v"), (b"", b"")), "split"


def test_a_third_partys_decide_elsewhere_aborts_no_honest_committed_txn() -> None:
    """The same hole against an honest client: a third party that learned t1's id (every
    Conflict names the other transaction) sends Decide(abort) to group 3 between t1's
    votes and its client's Resolves. The client reported t1 committed; none of it lands."""
    node = _node()
    votes = [_yes(node, prepare_request(1, b"apple")), _yes(node, prepare_request(2, b"kiwi"))]
    forged = kv.DecideRequest(header=header(3), txn_id=tid(b"t1"), participants=[1, 2, 3])
    assert node.call(kv.Request(decide=forged)).decide.error.code == kv.OK
    _deliver_outbound(node)
    for group in (1, 2):  # the honest client's Resolves, with every vote
        assert node.call(_resolve_commit(group, votes)).resolve.error.code == kv.OK
    assert _values(node) == (b"v", b"v"), "a committed transaction was aborted"


def _commit_and_purge(node: OneNode, txn_id: bytes = tid(b"t1"), ts: int = 1) -> None:
    parts = ((1, b"apple"), (2, b"kiwi"))
    votes = [node.call(prepare_request(g, k, txn_id=txn_id, ts=ts)).prepare for g, k in parts]
    assert all(v.error.code == kv.OK for v in votes)
    _commit_everywhere_and_purge(node, votes, txn_id)


def _commit_tagged_and_purge(node: OneNode) -> bytes:
    """A transaction whose id carries its start (txn/txn_ids.py), committed and purged."""
    start = _now_ts(node)
    txn_id = new_txn_id(start)
    _commit_and_purge(node, txn_id, ts=start + 1)
    return txn_id


def _status(node: OneNode, group: int, txn_id: bytes = tid(b"t1")) -> kv.TxnStatusResponse:
    request = kv.TxnStatusRequest(header=header(group), txn_id=txn_id)
    return node.call(kv.Request(txn_status=request)).txn_status


def _claim(node: OneNode, claim: str) -> int:
    """A made-up asker_ts: none, or one above the purge mark."""
    return 0 if claim == "none" else _now_ts(node)


@pytest.mark.parametrize("claim", ["none", "above the purge mark"])
def test_after_a_purge_a_wire_decide_claiming_any_asker_ts_records_no_abort_over_a_commit(
    claim: str,
) -> None:
    """Node rule 13: the id says when the transaction started, so rule D4 holds whatever
    the Decide claims, and the coordinator group records no abort over the purged commit."""
    node = _node()
    txn_id = _commit_tagged_and_purge(node)
    forged = kv.DecideRequest(
        header=header(1), txn_id=txn_id, participants=[1, 2], asker_ts=_claim(node, claim)
    )
    answer = node.call(kv.Request(decide=forged)).decide
    # Pending (rule D4, not checked: the node answers "retry"), never an abort.
    assert answer.error.code == kv.UNAVAILABLE and "finding out" in answer.error.message
    assert _status(node, 1, txn_id).state == kv.TxnStatusResponse.UNKNOWN


@pytest.mark.parametrize("claim", ["none", "above the purge mark"])
def test_after_a_purge_a_prevent_claiming_any_asker_ts_records_no_abort_over_a_commit(
    claim: str,
) -> None:
    """Node rule 13 for participant rule V2."""
    node = _node()
    txn_id = _commit_tagged_and_purge(node)
    prevent = kv.PreventRequest(header=header(1), txn_id=txn_id, asker_ts=_claim(node, claim))
    answer = node.call(kv.Request(prevent=prevent)).prevent
    assert answer.error.code == kv.OK and answer.unknown, answer
    assert _status(node, 1, txn_id).state == kv.TxnStatusResponse.UNKNOWN


def _opening_request(kind: str, txn_id: bytes, ts: int) -> kv.Request:
    """A request of `kind` that would leave a record (prepare, commit_one_phase) or a lock
    (get for update) of `txn_id` at group 1, about the key apple."""
    if kind == "get":
        return get(b"apple", group=1, lock_txn_id=txn_id, lock_priority=ts)
    request = prepare_request(1, b"apple", txn_id=txn_id, ts=ts)
    if kind == "commit_one_phase":
        op = request.prepare
        request = kv.Request(
            commit_one_phase=kv.CommitOnePhaseRequest(
                header=op.header, txn_id=op.txn_id, ts=op.ts, writes=op.writes
            )
        )
    return request


def _assert_left_nothing(node: OneNode, txn_id: bytes) -> None:
    shard = node.core.hosts[1].shard
    assert shard.prepared(txn_id) is None and shard.decision(txn_id) is None
    assert len(node.core.hosts[1].locks) == 0
    assert node.call(get(b"apple", group=1)).get.version == 0


@pytest.mark.parametrize("kind", ["prepare", "commit_one_phase"])
def test_a_commit_request_below_the_start_its_id_carries_is_refused(kind: str) -> None:
    """Node rule 13: every record of a transaction is stamped at or above its id's start,
    which D4 and V2 rely on; a request that would stamp one below it changes nothing."""
    node = _node()
    start = _now_ts(node) + 1000
    txn_id = new_txn_id(start)
    answer = getattr(node.call(_opening_request(kind, txn_id, ts=start - 1)), kind)
    assert answer.error.code == kv.INVALID_ARGUMENT
    assert "below the start" in answer.error.message
    _assert_left_nothing(node, txn_id)


def test_a_prepare_whose_id_started_before_the_purge_mark_is_refused() -> None:
    """Rule P7 with node rule 13: a Decide or Prevent of a tagged id is judged by its start,
    so a group that answered one from "no record" must refuse the transaction's later
    Prepares by that start too, even when their ts is fresh."""
    node = _node()
    early = new_txn_id(_now_ts(node))
    _commit_tagged_and_purge(node)  # raises groups 1 and 2's purge marks to about now
    node.advance(2 * (node.core._began_margin >> LOGICAL_BITS) / 1e6)  # ts well above them
    late = prepare_request(1, b"apple", txn_id=early, ts=_now_ts(node))
    answer = node.call(late).prepare
    assert answer.error.code == kv.CONFLICT
    assert "purge mark" in answer.error.message


@pytest.mark.parametrize("kind", ["prepare", "commit_one_phase", "get"])
def test_a_transaction_id_without_a_start_is_refused(kind: str) -> None:
    """Node rule 13 for every transaction: a request that could leave a record or a lock
    names its transaction by an id that carries its start, so every Decide and Prevent
    about a transaction with a record is judged by that start. Before, an id without one
    was judged by what its asker claimed: after its commit was purged, a Decide or Prevent
    claiming asker_ts 0 recorded an abort over it, and txn_status answered ABORTED."""
    node = _node()
    answer = getattr(node.call(_opening_request(kind, b"t1", ts=_now_ts(node))), kind)
    assert answer.error.code == kv.INVALID_ARGUMENT
    assert "carries no start" in answer.error.message
    _assert_left_nothing(node, b"t1")


def test_a_resolve_commit_proves_nothing_at_a_group_whose_vote_it_lacks() -> None:
    """Guards the `header.group_id in participants` clause of `_vouched` (no other test
    fails without it): the votes of groups 1 and 2 over [1, 2] are complete, but group 3
    prepared t1 as ([3, 4], coordinator 4) and group 4 never did. A Resolve(commit) with
    the votes of 1 and 2 sent to group 3 must be refused: taken, it commits group 3's part
    where t1 never committed (group 4 then records the abort group 3's recovery asks for)."""
    node = OneNode(splits=(b"h", b"p", tid(b"t")))
    assert sorted(g for g in node.core.hosts if g) == [1, 2, 3, 4]
    votes = [_yes(node, prepare_request(1, b"apple")), _yes(node, prepare_request(2, b"kiwi"))]
    _yes(node, prepare_request(3, b"pear", coordinator=4, participants=(3, 4)))
    answer = node.call(_resolve_commit(3, votes)).resolve
    assert answer.error.code == kv.INVALID_ARGUMENT
    assert node.core.hosts[3].shard.prepared(tid(b"t1")) is not None
    assert node.call(get(b"pear", group=3)).get.value == b""


def test_a_purged_commit_is_not_reported_aborted_after_an_abort_elsewhere() -> None:
    """Found by review: after a committed txn's records were purged (rule G2's check), a
    third party's recovery Decide at a group OUTSIDE the txn, naming it and the real
    participants, found no record there and a purge mark still at or below the id's start
    (that group's purges lag), recorded the abort and delivered it, vouched for, to the
    participants. Holding neither a PREPARE (R7 had nothing to compare) nor a record, they
    stored ABORT records (R5), and txn_status and a settle answered aborted."""
    node = _node()
    txn_id = _commit_tagged_and_purge(node)
    assert node.call(get(b"apple", group=1)).get.value == b"v"
    assert node.call(get(b"kiwi", group=2)).get.value == b"v"
    assert _status(node, 1, txn_id).state == kv.TxnStatusResponse.UNKNOWN
    # Group 3 (no part of the txn, no purge since its start) takes the forged Decide.
    forged = kv.DecideRequest(header=header(3), txn_id=txn_id, participants=[1, 2, 3], recover=True)
    answer = node.call(kv.Request(decide=forged)).decide
    assert answer.error.code == kv.OK
    _deliver_outbound(node)
    # The committed writes are still there ...
    assert node.call(get(b"apple", group=1)).get.value == b"v"
    # ... but the coordinator group now says the transaction aborted.
    state = _status(node, 1, txn_id).state
    assert state != kv.TxnStatusResponse.ABORTED, "a committed transaction reported ABORTED"
    # The real client's settle path asks group 1 with a recovery Decide: same lie.
    settle = kv.DecideRequest(header=header(1), txn_id=txn_id, participants=[1, 2], recover=True)
    body = node.call(kv.Request(decide=settle)).decide
    assert body.committed or body.pending, "settle answered 'aborted' for a committed txn"


def test_a_purged_one_phase_commit_is_not_reported_aborted_after_an_abort_elsewhere() -> None:
    """The same for a one-phase commit at group 1: after its record's purge, a Decide(abort)
    at group 3 naming [1, 3] is delivered vouched for to group 1, which records an ABORT."""
    node = _node()
    start = _now_ts(node)
    txn_id = new_txn_id(start)
    op = kv.CommitOnePhaseRequest(
        header=header(1),
        txn_id=txn_id,
        ts=start + 1,
        writes=[kv.WriteItem(key=b"apple", value=b"one")],
    )
    body = node.call(kv.Request(commit_one_phase=op)).commit_one_phase
    assert body.error.code == kv.OK and body.commit_ts
    node.advance(0.05)
    purge = PurgeDecisions(before_ts=_now_ts(node))
    node.core._propose_internal(node.core.hosts[1], purge, lambda _r: None)
    node.advance(0.05)
    assert node.core.hosts[1].shard.decision(txn_id) is None
    forged = kv.DecideRequest(header=header(3), txn_id=txn_id, participants=[1, 3], recover=True)
    assert node.call(kv.Request(decide=forged)).decide.error.code == kv.OK
    _deliver_outbound(node)
    assert node.call(get(b"apple", group=1)).get.value == b"one"
    state = _status(node, 1, txn_id).state
    assert state != kv.TxnStatusResponse.ABORTED, "a committed one-phase txn reported ABORTED"


def _two_lists_under_one_id(node: OneNode) -> None:
    """t1 prepared over [1, 3] at group 3, over [1, 2] at groups 1 and 2 (coordinator 1),
    and the [1, 2] set committed with its votes; group 1 never votes for [1, 3] (P1)."""
    other = node.call(prepare_request(3, b"zebra", participants=(1, 3))).prepare
    assert other.error.code == kv.OK
    votes = [_yes(node, prepare_request(1, b"apple")), _yes(node, prepare_request(2, b"kiwi"))]
    refused = node.call(prepare_request(1, b"apple", participants=(1, 3))).prepare
    assert refused.error.code == kv.CONFLICT
    for group in (1, 2):
        assert node.call(_resolve_commit(group, votes)).resolve.error.code == kv.OK


def test_a_recovery_decide_over_other_participants_commits_no_part_of_them() -> None:
    """Coordinator rule D6 (found by review): group 3's recovery asks group 1 about the
    [1, 3] transaction, which can never commit; rule D1 answered with group 1's commit of
    the [1, 2] one, and group 3 committed its part (its recovery Resolve names no
    participants, so rule R7 had nothing to check)."""
    node = OneNode(splits=(b"h", b"p"), resolve_after_s=0.2)
    _two_lists_under_one_id(node)
    _deliver_outbound(node, rounds=60)
    assert node.core.hosts[3].shard.prepared(tid(b"t1")) is None  # recovery ended it
    read = node.call(get(b"zebra", group=3)).get
    assert not read.found, (read.value, read.version)
    assert _values(node) == (b"v", b"v")  # the [1, 2] transaction stays committed


@pytest.mark.parametrize("held", ["decision", "prepare"])
def test_a_clients_abort_over_other_participants_is_answered_not_committed(held: str) -> None:
    """The same through a client's own abort (`txn.commit._abort_request`, a recovery Decide
    naming its participants): its [1, 3] commit had group 1's Prepare refused, and it was
    told `committed`, a commit group 1 never prepared; with group 1 holding only its
    PREPARE of [1, 2] (rule D3), `pending`, then the prevent round's commit."""
    node = OneNode(splits=(b"h", b"p"), resolve_after_s=60.0)
    if held == "decision":
        _two_lists_under_one_id(node)
    else:
        _yes(node, prepare_request(1, b"apple"))
    decide = kv.DecideRequest(
        header=header(1), txn_id=tid(b"t1"), participants=[1, 3], commit=False, recover=True
    )
    answer = node.call(kv.Request(decide=decide)).decide
    assert answer.error.code == kv.OK
    assert not answer.committed and not answer.pending, answer


def test_a_refusal_over_other_participants_leaves_the_groups_own_prepare_answering() -> None:
    """Found by review of D6: its answer (and V3's) read as a recorded abort at the leader,
    which then refused a re-sent copy of the honest [1, 2] Prepare it holds ("already
    aborted") instead of answering it with the logged yes vote (P1)."""
    node = OneNode(splits=(b"h", b"p"), resolve_after_s=60.0)
    first = _yes(node, prepare_request(1, b"apple"))
    decide = kv.DecideRequest(
        header=header(1), txn_id=tid(b"t1"), participants=[1, 3], commit=False, recover=True
    )
    answer = node.call(kv.Request(decide=decide)).decide
    assert not answer.committed and not answer.pending
    prevent = kv.PreventRequest(header=header(1), txn_id=tid(b"t1"), participants=[1, 3])
    assert not node.call(kv.Request(prevent=prevent)).prevent.prepared  # V3
    again = node.call(prepare_request(1, b"apple")).prepare
    assert again.error.code == kv.OK, again.error
    assert again.prepare_ts == first.prepare_ts
