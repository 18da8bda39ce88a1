"""Rule 13, pre-vote: a replica asks before it campaigns, and a campaign nobody would grant
never raises a round (the Raft thesis §9.6; etcd's PreVote)."""

from __future__ import annotations

from paxos.ballot import Ballot
from paxos.messages import Message, Prepare, PreVote, PreVoteReply, Promise
from paxos.replica import Role
from tests.unit.paxos.test_replica_paths import Group, between, to


def kinds(msgs: list[Message]) -> list[str]:
    return [type(m).__name__ for m in msgs]


def node_1_asks() -> Group:
    """Three fresh replicas; nodes 2 and 3 are past their restart lease block (they would
    promise anyone) and node 1's election timer has just run out."""
    g = Group(3, fast=(1,), pre_vote=True)
    g.tick_all(0.0)
    for j in (2, 3):
        g.tick(j, 0.13)
    g.tick(1, 0.2)
    return g


def test_a_timer_that_runs_out_asks_first_and_persists_nothing() -> None:
    g = Group(3, fast=(1,), pre_vote=True)
    g.tick_all(0.0)
    g.tick(1, 0.2)
    ready = g.r(1).ready()
    assert kinds(ready.messages) == ["PreVote", "PreVote"]
    assert ready.messages_after_persist == []  # no Prepare yet
    assert ready.persist.is_empty()  # no promise raised
    assert g.r(1).role is Role.FOLLOWER
    assert g.r(1).status().promised == g.storage[1].load().promised


def test_a_quorum_of_yeses_starts_the_campaign_above_every_round_it_heard() -> None:
    g = node_1_asks()
    # Node 2 has promised round 7 to node 3 (whose campaign went nowhere): it still says
    # yes, and its reply carries that promise.
    g.r(2).step(Prepare(src=3, dst=2, ballot=Ballot(7, 3), from_slot=1))
    g.process(2)
    g.inflight = []
    g.process(1)
    g.deliver()  # the PreVotes
    for j in (2, 3):
        ready = g.process(j)
        assert [m.granted for m in ready.messages if isinstance(m, PreVoteReply)] == [True]
    g.deliver()  # the yeses
    assert g.r(1).role is Role.CANDIDATE
    prepares = [m for m in g.r(1).ready().messages_after_persist if isinstance(m, Prepare)]
    assert len(prepares) == 2
    assert all(m.ballot > Ballot(7, 3) for m in prepares)


def test_the_campaign_then_wins() -> None:
    g = node_1_asks()
    g.stabilize()
    assert g.r(1).role is Role.LEADER


def test_peers_that_hear_a_leader_say_no_and_the_asker_keeps_its_round() -> None:
    g = Group(3, fast=(1,), pre_vote=True)
    g.elect(1)
    round_before = g.r(3).status().promised
    # Node 3 stops hearing the leader (the link from 1 to 3 is cut) while node 2 still does.
    t = g.now[1]
    for step in range(1, 200):
        now = t + step * 0.01
        g.tick(1, now)
        g.tick(2, now)
        g.tick(3, 100.0 + step * 60.0)  # its election timer (50-60 s) runs out each time
        g.stabilize(keep=lambda m: not (m.src == 1 and m.dst == 3))
    asked = [r for r in g.readies[3] if any(isinstance(m, PreVote) for m in r.messages)]
    assert asked, "node 3 never asked"
    assert g.r(3).status().promised == round_before  # never raised
    assert g.r(1).role is Role.LEADER
    assert g.r(1).status().promised == round_before  # the leader was never disturbed


def test_a_stale_or_overtaken_yes_starts_nothing() -> None:
    g = node_1_asks()
    g.process(1)
    first = [m for m in g.inflight if isinstance(m, PreVote)]
    g.inflight = []
    # A second pre-vote (its timer ran out again) makes the first one's yes stale.
    g.tick(1, 0.5)
    g.process(1)
    g.inflight = []
    for ask in first:
        g.r(ask.dst).step(ask)
        g.process(ask.dst)
    g.deliver()
    assert g.r(1).role is Role.FOLLOWER
    assert not any(isinstance(m, Prepare) for m in g.inflight)


def test_a_yes_that_arrives_after_a_leader_was_heard_starts_nothing() -> None:
    g = Group(3, fast=(1, 2), pre_vote=True)
    g.elect(2, now=0.2)
    leader_round = g.r(2).status().promised
    # Node 1's timer runs out with the heartbeats from 2 held back; node 3's yes is in
    # flight when 2's heartbeat reaches node 1.
    for j in (3, 1):
        g.tick(j, g.now[j] + 0.001)  # the first tick after hearing 2 starts the lease promise
        g.tick(j, g.now[j] + 1.0)  # which has run out: node 3 would say yes, 1 asks
    g.process(1)
    asks = [m for m in g.inflight if isinstance(m, PreVote) and m.dst == 3]
    g.inflight = []
    g.r(3).step(asks[0])
    g.process(3)
    yes = [m for m in g.inflight if isinstance(m, PreVoteReply)]
    g.inflight = []
    assert [m.granted for m in yes] == [True]
    g.heartbeat(2, keep=between(1, 2))  # node 1 follows 2 again
    g.r(1).step(yes[0])
    assert g.r(1).role is Role.FOLLOWER
    assert g.r(1).status().promised == leader_round


def _candidate_with_a_pre_vote_under_way() -> tuple[Group, list[Promise], list[PreVote]]:
    """Node 1 campaigned; its Promises are held back while its timer runs out again, so it
    starts a pre-vote as a candidate."""
    g = node_1_asks()
    g.process(1)
    g.deliver()
    g.process(2)
    g.process(3)
    g.deliver()  # the yeses: node 1 campaigns
    assert g.r(1).role is Role.CANDIDATE
    g.process(1)
    g.deliver()  # the Prepares
    g.process(2)
    g.process(3)
    promises = [m for m in g.inflight if isinstance(m, Promise)]
    g.inflight = []
    g.tick(1, 0.5)  # its timer runs out again: a pre-vote, as a candidate
    g.process(1)
    asks = [m for m in g.inflight if isinstance(m, PreVote)]
    g.inflight = []
    assert len(asks) == 2
    return g, promises, asks


def test_a_yes_that_reaches_a_leader_starts_nothing() -> None:
    """Found by review: a late Promise made the candidate leader while its pre-vote was under
    way, a yes then came in (a follower says yes to its own leader) and the LEADER started a
    campaign, keeping its queued proposals and a read-index read that it later answered as
    leader of the next ballot from a stale state."""
    g, promises, asks = _candidate_with_a_pre_vote_under_way()
    g.r(1).step(promises[0])  # the late Promise: node 1 leads
    assert g.r(1).role is Role.LEADER
    g.process(1)
    g.deliver(to(2))
    g.process(2)
    g.inflight = []
    g.r(2).step(next(a for a in asks if a.dst == 2))
    g.process(2)
    yes = [m for m in g.inflight if isinstance(m, PreVoteReply)]
    g.inflight = []
    assert [m.granted for m in yes] == [True]
    ballot = g.r(1).status().promised
    g.r(1).propose(b"queued")
    g.r(1).read(77, g.now[1])
    g.r(1).step(yes[0])
    assert g.r(1).role is Role.LEADER
    assert g.r(1).status().promised == ballot
    ready = g.r(1).ready()
    assert not any(isinstance(m, Prepare) for m in ready.messages_after_persist)
    assert ready.dropped == [] and ready.dropped_reads == []


def test_a_leader_that_campaigns_again_first_drops_what_it_held() -> None:
    """Rule 12's campaign (and any other) starts from a follower: a leader's queued
    proposals and unconfirmed reads are reported dropped, not carried into the campaign."""
    g = Group(3, fast=(1,), pre_vote=True)
    g.elect(1)
    pid = g.r(1).propose(b"queued")
    g.r(1).read(77, g.now[1] + 1.0)  # lease ran out: waits for a heartbeat round
    g.r(1)._campaign()
    ready = g.r(1).ready()
    assert [p for p, _ in ready.dropped] == [pid]
    assert [r for r, _ in ready.dropped_reads] == [77]
    assert g.r(1).role is Role.CANDIDATE


def test_a_pre_vote_ends_when_its_asker_steps_down_or_campaigns() -> None:
    """A yes that arrives after the asker's pre-vote ended (it followed a new ballot's
    Prepare, or it campaigned) counts for nothing."""
    g, _, asks = _candidate_with_a_pre_vote_under_way()
    g.r(2).step(next(a for a in asks if a.dst == 2))
    g.process(2)
    yes = [m for m in g.inflight if isinstance(m, PreVoteReply)]
    g.inflight = []
    # Node 3 campaigns with a higher ballot; node 1 promises it (and stops being a
    # candidate), so its pre-vote is over.
    g.r(3)._campaign()
    g.process(3)
    g.deliver(lambda m: m.dst == 1 and isinstance(m, Prepare))
    g.inflight = []
    assert g.r(1).role is Role.FOLLOWER
    g.r(1).step(yes[0])
    assert g.r(1).role is Role.FOLLOWER
    assert not any(isinstance(m, Prepare) for m in g.r(1).ready().messages_after_persist)


def test_a_transfer_target_gets_a_yes_from_followers_told_of_the_transfer() -> None:
    """Rule 9 and 13: a follower told of a leadership transfer says yes to the target's
    pre-vote while it still holds the leader's lease, and no to anyone else's."""
    g = Group(5, fast=(1,), pre_vote=True)
    g.elect(1)
    assert g.r(1).transfer_leadership(3)
    g.tick(1, g.now[1] + 0.06)
    g.process(1)
    g.deliver(to(2))  # node 2 hears of the transfer; node 3 does not (so it does not campaign)
    g.inflight = []
    for asker, expected in ((3, True), (4, False)):
        g.r(2).step(PreVote(src=asker, dst=2, ballot=g.r(asker).status().promised, seq=5))
        replies = [m for m in g.r(2).ready().messages if isinstance(m, PreVoteReply)]
        assert [m.granted for m in replies] == [expected], asker
