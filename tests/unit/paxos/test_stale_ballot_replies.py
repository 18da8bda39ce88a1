"""Replies count only for the ballot they answer: a Promise, an Accepted or a HeartbeatAck
sent for an earlier ballot of the same replica says nothing about its current one (the
sender may have promised a third ballot in between). Rules 3 and 4: a leader needs a
quorum of promises for its ballot, and a slot a quorum of votes under its ballot; rule 9: a
transfer target must have acknowledged this leadership."""

from __future__ import annotations

from test_replica_paths import Group, one_slot_accept, to

from paxos.ballot import Ballot
from paxos.messages import Accept, Accepted, HeartbeatAck, Nack, Prepare, Promise
from paxos.replica import Role


def test_a_promise_to_an_earlier_campaign_does_not_elect_the_next() -> None:
    g = Group(3, fast=(1,))
    g.tick_all(0.0)
    g.tick(2, 0.13)
    g.tick(3, 0.13)
    g.tick(1, 0.2)
    assert g.r(1).role is Role.CANDIDATE
    g.process(1)
    first = [m for m in g.inflight if isinstance(m, Prepare) and m.dst == 2]
    g.inflight = []
    g.idle(1, 0.6)  # no answer: it campaigns again with a higher ballot
    g.process(1)
    g.inflight = []
    assert g.r(1).role is Role.CANDIDATE and g.r(1).status().promised > first[0].ballot
    # Node 2's promise to the first campaign arrives now.
    g.r(2).step(first[0])
    g.process(2)
    (promise,) = [m for m in g.inflight if isinstance(m, Promise)]
    g.inflight = []
    g.r(1).step(promise)
    assert g.r(1).role is Role.CANDIDATE


def _recampaign(g: Group, nacker: int, promised: Ballot) -> None:
    """Rule 12: leader 1, within its lease, is nacked by `nacker` and campaigns at once;
    only the other follower's promise reaches it."""
    old = g.r(1).status().promised
    g.r(1).step(Nack(src=nacker, dst=1, ballot=old, promised=promised, leader_hint=None))
    assert g.r(1).role is Role.CANDIDATE
    other = 5 - nacker  # the follower that is neither 1 nor the nacker (3 voters)
    g.process(1)
    g.inflight = [m for m in g.inflight if m.dst == other]
    g.deliver()
    g.process(other)
    g.inflight = [m for m in g.inflight if m.dst == 1]
    g.deliver()
    assert g.r(1).role is Role.LEADER and g.r(1).status().promised > promised


def test_an_accepted_for_the_previous_ballot_chooses_nothing() -> None:
    g = Group(3, fast=(1,))
    g.elect(1, now=0.2)
    g.heartbeat(1)
    old = g.r(1).status().promised
    g.r(1).propose(b"x")
    g.process(1)
    g.inflight = [m for m in g.inflight if isinstance(m, Accept) and m.dst == 2]
    g.deliver()
    g.process(2)
    stale = [m for m in g.inflight if isinstance(m, Accepted)]  # node 2's vote for x at `old`
    assert stale
    g.inflight = []
    # Node 3 meanwhile voted y for slot 1 under a higher ballot of node 2's.
    b2 = Ballot(old.round + 1, 2)
    g.tick(3, 0.5)
    g.r(3).step(one_slot_accept(2, 3, b2, 1, (b"y",)))
    g.process(3)
    g.inflight = []
    g.tick(3, 1.0)
    g.tick(3, 1.2)  # past its lease promise to node 2 (measured from the tick at 1.0)
    _recampaign(g, nacker=2, promised=b2)  # node 3's promise shows y at b2: y is recovered
    g.process(1)  # its own vote for y at the new ballot is durable
    g.inflight = []  # nobody else votes
    for m in stale:
        g.r(1).step(m)  # node 2's vote for x under the old ballot arrives late
    g.process(1)
    assert g.chosen(1) == []  # one vote for y at the new ballot: nothing chosen


def test_a_heartbeat_ack_to_the_previous_ballot_makes_no_transfer_target() -> None:
    g = Group(3, fast=(1,))
    g.elect(1, now=0.2)
    g.heartbeat(1)
    g.tick(1, g.now[1] + 0.06)
    g.process(1)  # a heartbeat round; node 2's ack of it is delayed
    g.deliver(to(2))
    g.process(2)
    stale = [m for m in g.inflight if isinstance(m, HeartbeatAck)]
    assert stale
    g.inflight = []
    g.tick(3, 1.0)
    _recampaign(g, nacker=2, promised=Ballot(g.r(1).status().promised.round + 1, 2))
    for m in stale:
        g.r(1).step(m)
    assert g.r(1).peer_watermark(2) == -1  # node 2 has acknowledged nothing of this ballot
    assert not g.r(1).transfer_leadership(2)
