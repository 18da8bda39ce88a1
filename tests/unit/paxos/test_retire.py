"""Rule 19 (retiring): a replica whose node is about to stop campaigns no more, and its
leader neither hands it leadership nor prefers it for thrifty Accepts, while it still votes.
And `hears_leader`, which tells the node's health service whether a live leader is known."""

from __future__ import annotations

from paxos import Role
from paxos.messages import Accept, Heartbeat, HeartbeatAck, Prepare
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
    # The transfer times out and the leader leads on.
    for _ in range(4):
        g.heartbeat(1)
    assert g.r(1).role is Role.LEADER
    assert g.r(1).handoff_target is None


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
    g.idle(1, g.now[1] + 0.5)  # nobody acknowledges: check-quorum
    assert not g.r(1).hears_leader(g.now[1])
