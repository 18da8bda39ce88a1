"""Rule 19 (retiring): a replica whose node is about to stop campaigns no more, and its
leader neither hands it leadership nor prefers it for thrifty Accepts, while it still votes.
And `hears_leader`, which tells the node's health service whether a live leader is known."""

from __future__ import annotations

from paxos import Role
from paxos.ballot import Ballot
from paxos.messages import Accept, CatchUpRequest, Heartbeat, HeartbeatAck, Nack, Prepare
from tests.unit.paxos.test_replica_paths import Group, between


def test_retiring_followers_never_campaign_when_their_leader_is_gone() -> None:
    g = Group(3, fast=(1, 2, 3))
    g.elect(1)
    g.r(2).retire()
    g.r(3).retire()
    g.crash(1)
    for now in (0.5, 1.0, 2.0, 5.0):
        g.idle(2, now)
        g.idle(3, now)
        g.stabilize(keep=between(2, 3))
        assert g.r(2).role is Role.FOLLOWER
        assert g.r(3).role is Role.FOLLOWER


def test_a_retiring_follower_still_votes_so_the_group_goes_on() -> None:
    g = Group(3, fast=(1, 3))
    g.elect(1)
    g.r(2).retire()
    g.crash(3)
    g.r(1).propose(b"v")
    g.stabilize(keep=between(1, 2))
    assert g.chosen(1) == [(b"v",)]
    # And a campaign of the other follower gets its promise: it leads once 1 is gone.
    g.restart(3, 0.5)
    g.crash(1)
    g.settle_among(3, 2)
    assert g.r(3).role is Role.LEADER
    assert g.r(2).role is Role.FOLLOWER


def test_the_acks_of_a_retiring_follower_say_so_and_its_leader_hands_it_nothing() -> None:
    g = Group(3, fast=(1,))
    g.elect(1)
    g.r(3).retire()
    g.tick(1, g.now[1] + 0.06)
    g.process_all()
    g.deliver()
    g.process_all()
    acks = [m for m in g.inflight if isinstance(m, HeartbeatAck)]
    assert {(m.src, m.retiring) for m in acks} == {(2, False), (3, True)}
    g.stabilize()
    assert not g.r(1).transfer_leadership(3)
    assert g.r(1).handoff_target is None
    assert g.r(1).transfer_leadership(2)
    assert g.r(1).handoff_target == 2


def test_a_retiring_transfer_target_does_not_take_over() -> None:
    """The handoff named it before its leader heard it retire: it lets the transfer time
    out rather than lead a group it is about to leave."""
    g = Group(3, fast=(1,))
    g.elect(1)
    g.heartbeat(1)
    assert g.r(1).transfer_leadership(3)
    g.r(3).retire()
    g.process_all()
    handoffs = [m for m in g.inflight if isinstance(m, Heartbeat) and m.handoff_to == 3]
    assert handoffs
    g.stabilize()
    assert g.r(3).role is Role.FOLLOWER
    assert not [m for r in g.readies[3] for m in r.messages_after_persist if isinstance(m, Prepare)]
    # Its ack says it is retiring: the leader ends the transfer at once, not at its timeout.
    assert g.r(1).role is Role.LEADER
    assert g.r(1).handoff_target is None
    g.r(1).propose(b"v")
    g.stabilize()
    assert g.chosen(1) == [(b"v",)]


def test_a_retiring_leader_hands_over_and_never_takes_the_group_back() -> None:
    g = Group(3, fast=(1, 2, 3))
    g.elect(1)
    g.heartbeat(1)
    g.r(1).retire()
    assert g.r(1).transfer_leadership(2)
    g.stabilize()
    assert g.r(2).role is Role.LEADER
    assert g.r(1).role is Role.FOLLOWER
    # Node 2 dies: node 3 takes over, never node 1.
    g.crash(2)
    g.settle_among(1, 3)
    assert g.r(3).role is Role.LEADER
    assert g.r(1).role is Role.FOLLOWER


def test_thrifty_accepts_go_to_a_follower_that_is_not_retiring() -> None:
    g = Group(3, fast=(1,), thrifty_accepts=True)
    g.elect(1)
    g.r(2).retire()
    g.heartbeat(1)
    g.r(1).propose(b"v")
    ready = g.process(1)
    accepts = [m for m in ready.messages if isinstance(m, Accept)]
    assert [m.dst for m in accepts] == [3]
    g.stabilize()
    assert g.chosen(1) == [(b"v",)]


def test_hears_leader_says_whether_a_live_leader_is_known() -> None:
    """For the node's health service: a leader with a quorum and its followers say yes; a
    follower that has not heard its leader for the longest election timeout, and a leader
    cut off from its quorum, say no."""
    g = Group(3, fast=(1,))
    g.elect(1)
    g.heartbeat(1)
    assert g.r(1).hears_leader(g.now[1])
    assert g.r(2).hears_leader(g.now[1])
    silence = g.now[1] + 61.0  # replica 2's timeout is SLOW (50-60 s): still a follower
    assert not g.r(2).hears_leader(silence)
    # Still leader (no tick yet ran check-quorum), but nobody acknowledged it lately.
    assert g.r(1).role is Role.LEADER
    assert not g.r(1).hears_leader(g.now[1] + 0.5)
    g.idle(1, g.now[1] + 0.5)  # check-quorum: it steps down
    assert not g.r(1).hears_leader(g.now[1])


def test_a_lone_replica_hears_itself() -> None:
    g = Group(1, fast=(1,))
    g.tick(1, 0.0)
    g.idle(1, 1.0)
    g.process_all()
    assert g.r(1).role is Role.LEADER
    assert g.r(1).hears_leader(g.now[1] + 100.0)


def test_a_live_retiring_follower_gets_the_accept_before_a_silent_one() -> None:
    """Rule 19 demotes a retiring peer only among peers that answer: with the other
    follower down, the Accept goes to the retiring one, and the slot is chosen at once."""
    g = Group(3, fast=(1,), thrifty_accepts=True)
    g.elect(1)
    g.heartbeat(1)
    g.crash(3)
    for _ in range(3):
        g.heartbeat(1, keep=between(1, 2))
    g.r(2).retire()
    g.heartbeat(1, keep=between(1, 2))
    g.r(1).propose(b"v")
    accepts = [m for m in g.process(1).messages if isinstance(m, Accept)]
    assert [m.dst for m in accepts] == [2]
    g.stabilize(keep=between(1, 2))
    assert g.chosen(1) == [(b"v",)]


def test_a_retiring_follower_does_not_take_over_through_a_caught_up_handoff() -> None:
    """Named as target while behind, it catches up (the path where a target campaigns once
    its catch-up reply arrives), and still does not campaign."""
    g = Group(3, fast=(1,))
    g.elect(1)
    g.heartbeat(1)
    for i in range(3):
        g.r(1).propose(b"x%d" % i)
        g.stabilize(keep=between(1, 2))  # node 3 falls behind
    g.heartbeat(1, keep=between(1, 2))
    g.r(1)._peer_watermark[3] = g.r(1).chosen_watermark  # let the transfer start
    g.r(1)._last_ack[3] = g.now[1]
    assert g.r(1).transfer_leadership(3)
    g.process(1)
    g.deliver(keep=lambda m: isinstance(m, Heartbeat) and m.dst == 3)
    g.process_all()  # node 3 asks to catch up before it campaigns
    assert any(isinstance(m, CatchUpRequest) and m.src == 3 for m in g.inflight)
    g.r(3).retire()  # ... and is told to stop before the reply comes
    g.stabilize()
    assert g.r(3).role is Role.FOLLOWER
    assert g.chosen(3) == g.chosen(1)


def test_a_leader_nacked_while_retiring_steps_down_instead_of_campaigning_again() -> None:
    """Rule 12 is a campaign: a retiring leader nacked by a rejoining replica does not take
    a higher ballot."""
    g = Group(3, fast=(1,))
    g.elect(1)
    g.heartbeat(1)
    g.r(1).retire()
    ballot = g.r(1).status().promised
    higher = Ballot(ballot.round + 5, 3)
    g.r(1).step(Nack(src=3, dst=1, ballot=ballot, promised=higher, leader_hint=None))
    assert g.r(1).role is Role.FOLLOWER
    assert g.r(1).status().promised.round <= higher.round


def _campaign_unanswered(retire: bool) -> Group:
    """Replica 1 campaigns at 0.2 s, its Prepares lost; retired at once if `retire`, then
    left alone past two election timeouts (0.15-0.16 s each)."""
    g = Group(3, fast=(1,))
    g.tick_all(0.0)
    g.tick(1, 0.2)
    assert g.r(1).role is Role.CANDIDATE
    g.process_all()
    g.inflight.clear()
    if retire:
        g.r(1).retire()
        g.tick(1, 0.25)
        assert g.r(1).role is Role.CANDIDATE, "a campaign out at the retirement may still win"
    g.idle(1, 0.55)
    g.process_all()
    return g


def test_a_retiring_candidate_gives_its_campaign_up_at_its_election_timeout() -> None:
    """Rule 19: a campaign sent before the retirement is not renewed; once its time runs out
    the replica is a follower (the node's stop no longer waits for it)."""
    g = _campaign_unanswered(retire=True)
    assert g.r(1).role is Role.FOLLOWER
    assert not [m for m in g.inflight if isinstance(m, Prepare)], "it campaigned again"


def test_an_unanswered_candidate_that_is_not_retiring_campaigns_again() -> None:
    """The control: without the retirement the same schedule starts a new campaign."""
    g = _campaign_unanswered(retire=False)
    assert g.r(1).role is Role.CANDIDATE
    assert [m for m in g.inflight if isinstance(m, Prepare)]
