"""Node rule 4 for what arrives from outside: the groups a Prepare or Decide names must
exist, a snapshot from a peer must restore, a scan answer stays within its byte budget, and
recovery does not take a purged record for an abort, nor a purge forget a commit in doubt
elsewhere.

Found by review: a Decide naming 200,000 groups that do not exist was recorded and
delivered forever (20,000 of them kept a real cluster's leaders churning), and a Prepare
whose coordinator group does not exist held its intent for good.
"""

from __future__ import annotations

import pytest

from paxos.messages import InstallSnapshot
from router import kv_pb2 as kv
from router.limits import MAX_PARTICIPANTS
from tests.unit.shard.test_node_core import (
    OneNode,
    ThreeNodes,
    _now_ts,
    get,
    header,
    prepare_request,
    put,
    recover_until_decided,
    tid,
    vouched,
)
from tests.unit.txn.txn_harness import rewrite_as_before_g2
from txn.proofs import MAC_BYTES
from txn.records import PurgeDecisions

# OneNode's map: data groups 1 and 2 (split at b"m").


def prepare(coordinator: int, participants: list[int]) -> kv.Request:
    return kv.Request(
        prepare=kv.PrepareRequest(
            header=header(1),
            txn_id=tid(b"t1"),
            coordinator_group=coordinator,
            participants=participants,
            ts=1,
            writes=[kv.WriteItem(key=b"apple", value=b"v")],
        )
    )


def decide(participants: list[int], commit: bool = False, commit_ts: int = 0) -> kv.Request:
    return kv.Request(
        decide=kv.DecideRequest(
            header=header(1),
            txn_id=tid(b"t2"),
            participants=participants,
            commit=commit,
            commit_ts=commit_ts,
        )
    )


def _cut_off(node: OneNode) -> None:
    """200 s in which no request between the groups arrives (each fails, as the runtime
    reports a lost one)."""
    for _ in range(40):
        node.advance(5.0, step=0.05)
        outbound, node.core.outbound = node.core.outbound, []
        for _group, _request, done in outbound:
            done(None)


def _connected(
    node: OneNode, rounds: int = 40, seconds: float = 0.05, watch: str = ""
) -> list[kv.Response]:
    """Let the groups reach each other for `rounds` steps of `seconds`, every request the
    node sends answered; returns the answers to requests of kind `watch`."""
    watched = []
    for _ in range(rounds):
        node.advance(seconds, step=0.05)
        outbound, node.core.outbound = node.core.outbound, []
        for _group, request, done in outbound:
            response = node.call(request)
            if request.WhichOneof("op") == watch:
                watched.append(response)
            done(response)
    return watched


def _all_checked(answers: list[kv.Response], asks: str) -> bool:
    """Whether every `prevent` / `decide` answer is `unknown` / `pending` and `checked`."""
    bodies = [getattr(a, asks) for a in answers]
    in_doubt = [b.unknown if asks == "prevent" else b.pending for b in bodies]
    return bool(bodies) and all(in_doubt) and all(b.checked for b in bodies)


def _resolve(
    node: OneNode,
    txn_id: bytes,
    commit_ts: int,
    groups: tuple[int, ...],
    participants: tuple[int, ...] = (1, 2),
) -> None:
    for group in groups:
        resolve = vouched(
            kv.ResolveRequest(
                header=header(group), txn_id=txn_id, commit=True, commit_ts=commit_ts
            ),
            participants=participants,
        )
        assert node.call(kv.Request(resolve=resolve)).resolve.error.code == kv.OK


@pytest.mark.parametrize(
    "request_,message",
    [
        (prepare(77, [1, 77]), "participant 77 is not a data group"),
        (prepare(2, [1, 2, 77]), "participant 77 is not a data group"),
        (prepare(0, [0, 1]), "participant 0 is not a data group"),
        (prepare(2, [2]), "group 1 is not among the participants"),
        (prepare(2, [1]), "the coordinator group is no participant"),
        (decide(list(range(1, MAX_PARTICIPANTS + 1))), "participant 3 is not a data group"),
        (decide([1, 2, 9]), "participant 9 is not a data group"),
        (decide([2]), "group 1 is not among the participants"),
        (decide([1, 2], commit=True, commit_ts=5), "a Decide only asks for an abort"),
        (decide([1, 2], commit=True), "a Decide only asks for an abort"),
        (
            kv.Request(resolve=kv.ResolveRequest(header=header(1), txn_id=tid(b"t2"), commit=True)),
            "a resolve to commit needs its commit_ts",
        ),
    ],
)
def test_a_transaction_naming_groups_that_do_not_exist_is_refused(
    request_: kv.Request, message: str
) -> None:
    node = OneNode()
    answer = node.call(request_)
    kind = answer.WhichOneof("result")
    error = getattr(answer, kind).error
    assert error.code == kv.INVALID_ARGUMENT and message in error.message
    shard = node.core.hosts[1].shard
    assert shard.prepared(tid(b"t1")) is None and shard.decision(tid(b"t2")) is None
    assert node.call(put(b"apple", b"x")).put.error.code == kv.OK  # no intent left


def test_a_commit_decide_from_the_wire_cannot_commit_over_a_missing_vote() -> None:
    """Rule 11: group 2 never prepared, so the transaction is not committed; a commit
    Decide sent to the coordinator group (a buggy or hostile client) records nothing, and
    the transaction still ends aborted."""
    node = OneNode(resolve_after_s=0.2)
    vote = node.call(prepare_request(1, b"apple")).prepare
    assert vote.error.code == kv.OK
    shard = node.core.hosts[1].shard
    before = shard.applied_index
    forced = kv.DecideRequest(
        header=header(1),
        txn_id=tid(b"t1"),
        participants=[1, 2],
        commit=True,
        commit_ts=vote.prepare_ts,
    )
    refused = node.call(kv.Request(decide=forced)).decide
    assert refused.error.code == kv.INVALID_ARGUMENT and not refused.committed
    assert shard.applied_index == before and shard.decision(tid(b"t1")) is None
    recover_until_decided(node, tid(b"t1"))
    decision = shard.decision(tid(b"t1"))
    assert decision is not None and not decision.committed
    assert node.call(get(b"apple")).get.value == b""


def _yes(node: OneNode, request: kv.Request) -> kv.VoteProof:
    """The yes vote `request`, a Prepare, gets, with its proof."""
    vote = node.call(request).prepare
    assert vote.error.code == kv.OK and len(vote.vote_mac) == MAC_BYTES, vote.error
    group = request.prepare.header.group_id
    return kv.VoteProof(group_id=group, prepare_ts=vote.prepare_ts, mac=vote.vote_mac)


def _votes(node: OneNode, parts: tuple[tuple[int, bytes], ...]) -> list[kv.VoteProof]:
    """Prepare t1 (participants 1 and 2) in each (group, key) of `parts`: the yes votes."""
    return [_yes(node, prepare_request(group, key)) for group, key in parts]


def _resolve_commit(
    group: int, votes: list[kv.VoteProof], commit_ts: int | None = None
) -> kv.Request:
    """t1's Resolve(commit) with `votes` as its proof (participants 1 and 2), at `commit_ts`
    (default: the largest prepare_ts, as the client sends it)."""
    return kv.Request(
        resolve=kv.ResolveRequest(
            header=header(group),
            txn_id=tid(b"t1"),
            commit=True,
            commit_ts=max(v.prepare_ts for v in votes) if commit_ts is None else commit_ts,
            participants=[1, 2],
            votes=votes,
        )
    )


def test_a_resolve_commit_needs_every_yes_vote() -> None:
    """Rule 12: group 2 never prepared, so t1 is not committed, and a Resolve(commit) to
    group 1 with only its own vote, or none, or a forged one, is refused and changes
    nothing; the transaction ends aborted."""
    node = OneNode(resolve_after_s=0.2)
    [vote] = _votes(node, ((1, b"apple"),))
    shard = node.core.hosts[1].shard
    before = shard.applied_index
    forged = kv.VoteProof(group_id=2, prepare_ts=vote.prepare_ts, mac=b"\0" * MAC_BYTES)
    for votes in ([vote], [], [vote, forged]):
        refused = node.call(_resolve_commit(1, votes, vote.prepare_ts)).resolve
        assert refused.error.code == kv.INVALID_ARGUMENT
        assert "proof of every participant's yes vote" in refused.error.message
    assert shard.applied_index == before and shard.decision(tid(b"t1")) is None
    recover_until_decided(node, tid(b"t1"))
    decision = shard.decision(tid(b"t1"))
    assert decision is not None and not decision.committed
    assert node.call(get(b"apple")).get.value == b""


def test_a_resolve_commit_with_every_yes_vote_commits() -> None:
    node = OneNode()
    votes = _votes(node, ((1, b"apple"), (2, b"zebra")))
    commit_ts = max(v.prepare_ts for v in votes)
    wrong_ts = node.call(_resolve_commit(1, votes, commit_ts - 1)).resolve
    assert wrong_ts.error.code == kv.INVALID_ARGUMENT  # not their largest prepare_ts
    for group in (1, 2):
        assert node.call(_resolve_commit(group, votes, commit_ts)).resolve.error.code == kv.OK
    for key, group in ((b"apple", 1), (b"zebra", 2)):
        read = node.call(get(key, group=group)).get
        assert (read.value, read.version) == (b"v", commit_ts)


def test_an_abort_nobody_vouched_for_leaves_a_prepared_part_alone() -> None:
    """Rule 12: every vote of t1 is yes (it committed) when a Resolve(abort) without the
    decision's proof reaches group 1: it is answered, but its part stays prepared and the
    commit still lands there. Nor does such an abort record anything where the txn is not
    prepared (after a purge it would stand over a commit); a vouched one does."""
    node = OneNode()
    votes = _votes(node, ((1, b"apple"), (2, b"zebra")))
    shard = node.core.hosts[1].shard
    before = shard.applied_index
    forged = kv.ResolveRequest(header=header(1), txn_id=tid(b"t1"), commit=False)
    assert node.call(kv.Request(resolve=forged)).resolve.error.code == kv.OK
    assert shard.prepared(tid(b"t1")) is not None and shard.decision(tid(b"t1")) is None
    commit_ts = max(v.prepare_ts for v in votes)
    assert node.call(_resolve_commit(1, votes, commit_ts)).resolve.error.code == kv.OK
    read = node.call(get(b"apple")).get
    assert (read.value, read.version) == (b"v", commit_ts)
    free = kv.ResolveRequest(header=header(1), txn_id=tid(b"t9"), commit=False)
    assert node.call(kv.Request(resolve=free)).resolve.error.code == kv.OK
    assert shard.decision(tid(b"t9")) is None
    assert shard.applied_index == before + 1  # the commit's Resolve alone
    assert node.call(kv.Request(resolve=vouched(free))).resolve.error.code == kv.OK
    decision = shard.decision(tid(b"t9"))
    assert decision is not None and not decision.committed


def test_a_recovery_abort_without_participants_is_still_taken() -> None:
    """A settle of a bare transaction reference knows no participants."""
    node = OneNode()
    answer = node.call(decide([]))
    assert answer.decide.error.code == kv.OK


def test_a_long_absent_coordinator_still_completes_a_commit_resolved_elsewhere() -> None:
    """Rules G2, D4/V2 end to end: group 2 was resolved by the commit, then group 1 (the
    coordinator, still prepared) could reach nobody, nor anybody it, for longer than the
    retention window. Group 2 keeps its record while it cannot check group 1, and once
    group 1 is back the commit is completed there too. Before rule G2, group 2 purged its
    record meanwhile, and the transaction stayed in doubt for good, its intents held (an
    abort over the commit, which recovery recorded before rule D4, was worse; both found by
    review)."""
    node = OneNode(resolve_after_s=0.2, decision_retention_s=120.0)
    votes = [node.call(prepare_request(g, k)).prepare for g, k in ((1, b"apple"), (2, b"zebra"))]
    commit_ts = max(v.prepare_ts for v in votes)
    _resolve(node, tid(b"t1"), commit_ts, (2,))
    assert node.core.hosts[2].shard.decision(tid(b"t1")) is not None
    _cut_off(node)
    assert node.core.hosts[2].shard.decision(tid(b"t1")) is not None  # kept: group 1 unchecked
    _connected(node)
    assert node.core.hosts[1].shard.prepared(tid(b"t1")) is None
    assert node.call(get(b"apple", group=1)).get.version == commit_ts
    assert node.call(get(b"zebra", group=2)).get.version == commit_ts


@pytest.mark.parametrize(
    "prepared_in,asks", [(1, "prevent"), (2, "decide")], ids=["coordinator", "participant"]
)
def test_a_group_away_past_the_retention_gets_the_abort_of_a_part_never_prepared(
    prepared_in: int, asks: str
) -> None:
    """t1 prepared in one group only, its Prepare in the other lost (or refused, which
    records nothing either), and the groups reached each other not at all for longer than
    the retention window, so the other group's purge mark passed t1's prepare_ts. Prepared
    in group 1 (the coordinator): its Prevent to group 2 answers `unknown` (rule V2);
    prepared in group 2: its recovery Decide to group 1 answers `pending` (rule D4). Both
    are `checked` (no purge there deleted a commit record unchecked), so the group holding
    t1 prepared aborts it while it still does (rules D5, R6) and frees its intent. Before,
    t1 stayed in doubt for good, its intent held (found by review). The lost Prepare,
    arriving at last, is refused: its yes vote would now complete t1's set of yes votes,
    the definition of committed, after the abort. At the coordinator group, which recorded
    no decision, rule P7 refuses it (at a participant the delivered abort's record does,
    P2)."""
    node = OneNode(resolve_after_s=0.2, decision_retention_s=120.0)
    key = b"apple" if prepared_in == 1 else b"zebra"
    assert node.call(prepare_request(prepared_in, key)).prepare.error.code == kv.OK
    _cut_off(node)
    marks = node.core.hosts[3 - prepared_in].shard.purge_counters()
    prepared = node.core.hosts[prepared_in].shard.prepared(tid(b"t1"))
    assert prepared is not None and marks.mark > prepared.prepare_ts
    assert marks.unverified_mark == 0
    assert _all_checked(_connected(node, watch=asks), asks)
    assert node.core.hosts[prepared_in].shard.prepared(tid(b"t1")) is None  # the intent is freed
    decision = node.core.hosts[prepared_in].shard.decision(tid(b"t1"))
    assert decision is not None and not decision.committed
    assert node.call(put(key, b"after", group=prepared_in)).put.error.code == kv.OK
    lost = b"zebra" if prepared_in == 1 else b"apple"
    late = node.call(prepare_request(3 - prepared_in, lost)).prepare
    reason = "purge mark" if prepared_in == 2 else "already aborted"
    assert late.error.code == kv.CONFLICT and reason in late.error.message
    assert node.core.hosts[3 - prepared_in].shard.prepared(tid(b"t1")) is None


def test_a_copy_of_a_transaction_held_longer_than_the_retention_is_refused() -> None:
    """Rules P7 and O5 through the node: the request's own timestamp is its `began_ts`. A
    one-phase commit, delivered again after its record was purged, would write its value a
    second time over a newer one; a Prepare of a transaction that began that long ago
    would vote after every record of it may be gone."""
    node = OneNode(decision_retention_s=120.0)
    commit = kv.Request(
        commit_one_phase=kv.CommitOnePhaseRequest(
            header=header(1),
            txn_id=tid(b"t1"),
            ts=_now_ts(node),
            writes=[kv.WriteItem(key=b"apple", value=b"once")],
        )
    )
    assert node.call(commit).commit_one_phase.error.code == kv.OK
    assert node.call(put(b"apple", b"newer")).put.error.code == kv.OK
    _connected(node, rounds=80, seconds=2.5)  # 200 s: t1's record is purged
    assert node.core.hosts[1].shard.decision(tid(b"t1")) is None
    again = node.call(commit).commit_one_phase.error
    assert again.code == kv.CONFLICT and "purge mark" in again.message
    assert node.call(get(b"apple", group=1)).get.value == b"newer"
    old = prepare_request(1, b"avocado", txn_id=tid(b"t2"), ts=commit.commit_one_phase.ts)
    refused = node.call(old).prepare.error
    assert refused.code == kv.CONFLICT and "purge mark" in refused.message
    assert node.core.hosts[1].shard.prepared(tid(b"t2")) is None


def test_a_prepare_from_a_clock_ahead_of_the_record_it_would_meet_is_refused() -> None:
    """Rule P7's bound through the node: the coordinator's Prevent recorded t1's abort in
    group 2 (rule V1) at group 2's clock, which may lag the client's. A copy of t1's
    Prepare whose `ts` is a little above that record's timestamp, arriving after a purge
    just past the record, must still be refused: it would vote yes where the coordinator
    was told "not prepared". So the node claims the request's ts less how far a clock may
    run ahead (rule 9), not the ts itself."""
    node = OneNode()
    prevent = kv.PreventRequest(header=header(2), txn_id=tid(b"t1"))
    assert node.call(kv.Request(prevent=prevent)).prevent.error.code == kv.OK
    recorded = node.core.hosts[2].shard.decision(tid(b"t1"))
    assert recorded is not None and not recorded.committed
    purge = PurgeDecisions(before_ts=recorded.decided_ts + 1)
    node.core._propose_internal(node.core.hosts[2], purge, lambda _result: None)
    node.advance(0.05)
    assert node.core.hosts[2].shard.decision(tid(b"t1")) is None
    node.core.hosts[2].aborted.clear()  # as after a leader change: only the log remembers
    late = prepare_request(2, b"zebra", ts=recorded.decided_ts + 2)
    refused = node.call(late).prepare.error
    assert refused.code == kv.CONFLICT and "purge mark" in refused.message
    assert node.core.hosts[2].shard.prepared(tid(b"t1")) is None


def _commit_everywhere_and_purge(
    node: OneNode, votes: list[kv.PrepareResponse], txn_id: bytes = tid(b"t1")
) -> None:
    """`txn_id`, prepared in groups 1 and 2 (`votes`), resolved by its commit in both, and
    both records purged after rule G2's check (neither group holds it prepared any more)."""
    commit_ts = max(v.prepare_ts for v in votes)
    _resolve(node, txn_id, commit_ts, (1, 2))
    node.advance(0.05)
    now = _now_ts(node)
    for group in (1, 2):
        purge = PurgeDecisions(before_ts=now, verified=(txn_id,))
        node.core._propose_internal(node.core.hosts[group], purge, lambda _result: None)
    node.advance(0.05)
    assert all(node.core.hosts[g].shard.decision(txn_id) is None for g in (1, 2))
    assert node.call(get(b"apple", group=1)).get.version == commit_ts


def test_a_stale_prevent_round_records_no_abort_over_a_purged_commit() -> None:
    """Rule D5: the coordinator group's leader started a prevent round while it held t1
    prepared; by the time group 2's answer arrives, t1 committed and was resolved and
    purged everywhere, so group 2 answers `unknown` and `checked`. The round's abort must
    then record nothing: an ABORT recorded now would contradict the commit (txn_status
    would answer aborted for a committed transaction)."""
    node = OneNode(resolve_after_s=600.0)
    first = node.call(prepare_request(1, b"apple")).prepare
    node.core._duties.start_prevention(node.core.hosts[1], tid(b"t1"))
    ((_group, stale, answered),) = node.core.outbound
    node.core.outbound = []
    assert stale.WhichOneof("op") == "prevent"
    second = node.call(prepare_request(2, b"zebra")).prepare
    _commit_everywhere_and_purge(node, [first, second])
    answer = node.call(stale)
    assert answer.prevent.unknown and answer.prevent.checked
    answered(answer)
    node.advance(0.05)
    assert node.core.hosts[1].shard.decision(tid(b"t1")) is None


def test_a_stale_recovery_answer_records_no_abort_over_a_purged_commit() -> None:
    """Rule R6, the mirror case: group 2 asked the coordinator group about t1 while it held
    it prepared; by the time the answer comes, t1 committed and was resolved and purged
    everywhere, so the answer is `pending` and `checked`. Group 2's own abort must change
    nothing: not prepared any more, it must not record an abort of a committed
    transaction (its txn_status would answer aborted, and a Prevent "not prepared")."""
    node = OneNode(resolve_after_s=0.2)
    votes = [node.call(prepare_request(g, k)).prepare for g, k in ((1, b"apple"), (2, b"zebra"))]
    stale = None
    for _ in range(40):  # until group 2's recovery asks group 1 (its asker_ts: its vote)
        node.advance(0.05)
        outbound, node.core.outbound = node.core.outbound, []
        for _group, request, done in outbound:
            asks = request.WhichOneof("op") == "decide"
            if asks and request.decide.asker_ts == votes[1].prepare_ts and stale is None:
                stale = (request, done)
            else:
                done(None)  # group 1's own recovery gets nowhere meanwhile
        if stale is not None:
            break
    assert stale is not None
    _commit_everywhere_and_purge(node, votes)
    request, answered = stale
    answer = node.call(request)
    assert answer.decide.pending and answer.decide.checked
    answered(answer)
    node.advance(0.05)
    assert all(node.core.hosts[g].shard.decision(tid(b"t1")) is None for g in (1, 2))


def test_a_prevent_round_is_decided_by_any_conclusive_answer_whatever_came_first() -> None:
    """Rule 6 with three participants: group 2 answers `unknown` without `checked` (it
    purged a record an older version wrote), group 3 "not prepared" (it recorded the
    abort, V1). The transaction can never commit, so the round records the abort. Found by
    review: the round was given up at the first inconclusive answer, and its outcome hung
    on which group answered first (each new round in the same order stayed in doubt)."""
    node = OneNode(splits=(b"h", b"p"), resolve_after_s=600.0)
    old = prepare_request(2, b"kiwi", tid(b"t9"), coordinator=2, participants=(2, 3))
    _resolve(node, tid(b"t9"), node.call(old).prepare.prepare_ts, (2,), participants=(2, 3))
    rewrite_as_before_g2(node.disk.engine, 2, tid(b"t9"))
    assert node.call(_prepare_three(1, b"apple")).prepare.error.code == kv.OK
    now = _now_ts(node)
    node.core._propose_internal(node.core.hosts[2], PurgeDecisions(before_ts=now), lambda _r: None)
    node.advance(0.05)
    assert node.core.hosts[2].shard.purge_counters().unverified_mark == now
    node.core._duties.start_prevention(node.core.hosts[1], tid(b"t1"))
    questions = sorted(node.core.outbound, key=lambda o: o[0])  # group 2's answer first
    node.core.outbound = []
    answers = []
    for _group, request, done in questions:
        answer = node.call(request)
        answers.append((answer.prevent.prepared, answer.prevent.unknown, answer.prevent.checked))
        done(answer)
    assert answers == [(False, True, False), (False, False, False)]
    node.advance(0.05)
    decision = node.core.hosts[1].shard.decision(tid(b"t1"))
    assert decision is not None and not decision.committed
    assert node.core.hosts[1].shard.prepared(tid(b"t1")) is None


def test_a_late_answer_to_a_round_given_up_does_not_end_the_next_round() -> None:
    """Rule 6: the leader lost and regained its group (its rounds cleared) and started a
    new prevent round; an answer to the old round that arrives now belongs to no round.
    Fed to the new one (found by review: answers were matched by transaction id), a late
    inconclusive one ended it early and the new round's own answer was dropped."""
    node = OneNode(resolve_after_s=600.0)
    assert node.call(prepare_request(1, b"apple")).prepare.error.code == kv.OK
    host = node.core.hosts[1]
    node.core._duties.start_prevention(host, tid(b"t1"))
    ((_g, _old_request, old_answered),) = node.core.outbound
    host.preventing.clear()  # as a lost leadership does
    node.core.outbound = []
    node.core._duties.start_prevention(host, tid(b"t1"))
    ((_g, request, answered),) = node.core.outbound
    node.core.outbound = []
    old_answered(None)  # the old round's question came to nothing
    answered(node.call(request))  # group 2 never prepared t1: it records the abort (V1)
    node.advance(0.05)
    decision = host.shard.decision(tid(b"t1"))
    assert decision is not None and not decision.committed


@pytest.mark.parametrize("group", [0, 1])
def test_a_snapshot_that_would_not_restore_is_dropped_on_arrival(group: int) -> None:
    """Found by review: a forged InstallSnapshot with garbage stopped the node's loop when
    the apply met it. It is dropped where it arrives; the node goes on."""
    nodes = ThreeNodes()
    leader = nodes.leader(group)
    follower = next(i for i in nodes.cores if i != leader)
    core = nodes.cores[follower]
    ballot = nodes.cores[leader].hosts[group].replica.status().promised
    whole = core.hosts[group].app.snapshot_build().step(1 << 62, 1 << 62)
    assert whole is not None
    for data in (b"\xff garbage", whole[1]):
        index = core.hosts[group].app.applied_index + 50  # the real one claims another index
        msg = InstallSnapshot(src=leader, dst=follower, ballot=ballot, index=index, data=data)
        assert core.step(group, msg)
    assert core.snapshots_refused == 2
    nodes.advance(0.2)
    assert nodes.call(nodes.leader(1), put(b"apple", b"red")).put.error.code == kv.OK


def test_a_scan_answer_stops_at_the_byte_budget_and_says_more() -> None:
    """Found by review: a scan of 70 values of 1 MiB (each within limits) made an answer over
    gRPC's 64 MiB message limit, and it failed every time."""
    node = OneNode()
    mib = b"x" * (1 << 20)
    for i in range(6):
        assert node.call(put(b"k%d" % i, mib)).put.error.code == kv.OK
    first = node.call(
        kv.Request(scan=kv.ScanRequest(header=header(1), start=b"k", end=b"m", limit=100))
    )
    assert [i.key for i in first.scan.items] == [b"k0", b"k1", b"k2", b"k3"]
    assert first.scan.more
    rest = node.call(
        kv.Request(scan=kv.ScanRequest(header=header(1), start=b"k3\x00", end=b"m", limit=100))
    )
    assert [i.key for i in rest.scan.items] == [b"k4", b"k5"] and not rest.scan.more
    small = node.call(
        kv.Request(scan=kv.ScanRequest(header=header(1), start=b"k", end=b"m", limit=2))
    )
    assert len(small.scan.items) == 2 and not small.scan.more


@pytest.mark.parametrize(
    "request_",
    [
        kv.Request(scan=kv.ScanRequest(header=header(1), start=b"a" * 5000)),
        kv.Request(scan=kv.ScanRequest(header=header(1), start=b"a", end=b"b" * 5000)),
        kv.Request(
            cas=kv.CasRequest(
                header=header(1), key=b"a", expected_value=b"v" * (2 << 20), new_value=b"w"
            )
        ),
    ],
    ids=["scan start", "scan end", "cas expected value"],
)
def test_an_oversized_bound_or_expected_value_is_refused_as_such(request_: kv.Request) -> None:
    node = OneNode()
    answer = node.call(request_)
    error = getattr(answer, answer.WhichOneof("result")).error
    assert error.code == kv.LIMIT_EXCEEDED
    assert "range" in error.message or "value is" in error.message, error.message


def test_a_scan_pages_on_after_a_key_of_the_largest_size() -> None:
    """Found by review: the next page starts at the last key + b"\\x00", one byte over the key
    limit when that key is as long as a key may be."""
    node = OneNode()
    keys = [b"a" * 4095 + bytes([c]) for c in b"12345"]
    for key in keys:
        assert node.call(put(key, b"v" * (1 << 20))).put.error.code == kv.OK
    first = node.call(
        kv.Request(scan=kv.ScanRequest(header=header(1), start=b"a", end=b"b", limit=10))
    ).scan
    assert first.more and len(first.items) == 4
    cursor = first.items[-1].key + b"\x00"
    second = node.call(
        kv.Request(scan=kv.ScanRequest(header=header(1), start=cursor, end=b"b", limit=6))
    ).scan
    assert second.error.code == kv.OK, second.error.message
    assert [i.key for i in second.items] == keys[4:]


@pytest.mark.parametrize(
    "prepared_in,asks", [(1, "prevent"), (2, "decide")], ids=["coordinator", "participant"]
)
def test_a_late_resolve_of_another_commit_does_not_keep_a_part_never_prepared_in_doubt(
    prepared_in: int, asks: str
) -> None:
    """As the test above, but while the groups could not reach each other the other group
    took a late copy of the Resolve of t9, a commit of both groups whose records there were
    purged after their check (rule G2) well before. That Resolve records t9's commit anew,
    without participants (R5), and its purge raised the unverified purge mark above t1's
    prepare_ts: every later Prevent or recovery Decide about t1 answered unchecked, and t1,
    which never committed, stayed in doubt for good, its intent held (found by review). The
    late record's purge leaves nothing in doubt: t9's first record there was checked."""
    node = OneNode(resolve_after_s=0.2, decision_retention_s=120.0)
    other = 3 - prepared_in
    votes = [
        node.call(prepare_request(g, k, txn_id=tid(b"t9"))).prepare
        for g, k in ((1, b"avocado"), (2, b"zucchini"))
    ]
    commit_ts = max(v.prepare_ts for v in votes)
    _resolve(node, tid(b"t9"), commit_ts, (1, 2))
    _connected(node, rounds=80, seconds=2.5)  # 200 s: t9's records are checked and purged
    assert node.core.hosts[other].shard.decision(tid(b"t9")) is None
    key = b"apple" if prepared_in == 1 else b"zebra"
    now = _now_ts(node)
    t1_id = tid(b"t1", start=now)  # t1 begins now
    t1 = prepare_request(prepared_in, key, txn_id=t1_id, ts=now)
    assert node.call(t1).prepare.error.code == kv.OK
    _resolve(node, tid(b"t9"), commit_ts, (other,))  # a late copy of t9's Resolve
    _cut_off(node)
    assert node.core.hosts[other].shard.decision(tid(b"t9")) is None  # purged again
    prepared = node.core.hosts[prepared_in].shard.prepared(t1_id)
    assert prepared is not None
    assert node.core.hosts[other].shard.purge_counters().mark > prepared.prepare_ts
    assert _all_checked(_connected(node, watch=asks), asks)
    assert node.core.hosts[prepared_in].shard.prepared(t1_id) is None  # the intent is freed
    assert node.call(put(key, b"after", group=prepared_in)).put.error.code == kv.OK


def _prepare_three(group: int, key: bytes) -> kv.Request:
    """t1's Prepare in `group`, with groups 1 (its coordinator), 2 and 3 participants."""
    return prepare_request(group, key, participants=(1, 2, 3))


@pytest.mark.parametrize("inconclusive_first", [True, False])
def test_a_prevent_round_with_an_inconclusive_and_a_prepared_answer_ends(
    inconclusive_first: bool,
) -> None:
    """Rule 6 with three participants, t1 prepared at groups 1 (the coordinator) and 3:
    group 2's answer is lost (the runtime calls back with None), group 3 answers prepared.
    Nothing is decided, so the round must be given up, and the next recovery Decide starts
    a new one. Before, the round was given up only when the *inconclusive* answer came
    last: with the prepared answer last it stayed in `host.preventing` for good, every
    later start_prevention was a no-op, and t1 stayed in doubt until a leader change."""
    node = OneNode(splits=(b"h", b"p"), resolve_after_s=600.0)
    assert node.call(_prepare_three(1, b"apple")).prepare.error.code == kv.OK
    assert node.call(_prepare_three(3, b"zebra")).prepare.error.code == kv.OK
    host = node.core.hosts[1]
    node.core._duties.start_prevention(host, tid(b"t1"))
    questions = sorted(node.core.outbound, key=lambda o: o[0], reverse=not inconclusive_first)
    node.core.outbound = []
    assert [g for g, _r, _d in sorted(questions, key=lambda o: o[0])] == [2, 3]
    for group, request, done in questions:
        done(None if group == 2 else node.call(request))
    node.advance(0.05)
    assert host.shard.decision(tid(b"t1")) is None
    assert tid(b"t1") not in host.preventing  # given up: nothing decided it
    node.core._duties.start_prevention(host, tid(b"t1"))  # the next recovery Decide's round
    again = node.core.outbound
    node.core.outbound = []
    assert sorted(g for g, _r, _d in again) == [2, 3]
    for _group, request, done in again:
        done(node.call(request))
    node.advance(0.05)
    decision = host.shard.decision(tid(b"t1"))
    assert decision is not None and not decision.committed
