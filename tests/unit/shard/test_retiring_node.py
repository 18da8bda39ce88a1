"""Node rule 15 (a stopping node hands its groups over): a campaign that was already out
when the node retired may still win, and the stop waits for it to end either way."""

from __future__ import annotations

from paxos import Ballot, Role
from paxos.messages import Heartbeat, Prepare
from tests.unit.shard.scripted_peers import NodeOneOfThree


def test_a_campaign_won_after_retiring_is_handed_over_before_the_stop_ends() -> None:
    node = NodeOneOfThree()
    prepare = node.campaign_until_prepared(1)
    node.core.retire()
    assert node.core.led_groups() == []
    assert node.core.handing_off() == [1], "the stop must wait: the campaign may still win"
    node.promise_from_2(1, prepare)
    node.tick()
    node.cycle()
    node.heartbeats_acked_by_2(1)
    assert node.core.handing_off() == [1]
    assert node.core.hosts[1].replica.handoff_target == 2


def test_a_campaign_lost_after_retiring_leaves_nothing_to_wait_for() -> None:
    node = NodeOneOfThree()
    prepare = node.campaign_until_prepared(1)
    node.core.retire()
    higher = Ballot(prepare.ballot.round + 1, 2)
    node.core.step(1, Heartbeat(src=2, dst=1, ballot=higher, chosen_watermark=0, seq=1))
    assert node.core.hosts[1].replica.role is Role.FOLLOWER
    assert node.core.handing_off() == []


def test_a_campaign_unanswered_after_retiring_is_given_up_at_its_election_timeout() -> None:
    """A whole cluster stopping answers no campaign: the stop waits one election timeout
    for it, not its whole handoff budget."""
    node = NodeOneOfThree()
    node.campaign_until_prepared(1)
    node.core.retire()
    replica = node.core.hosts[1].replica
    timeout_s = replica.config.election_timeout_max_s
    started = node.now
    while node.core.handing_off() and node.now - started <= timeout_s:
        node.tick()
        node.cycle()
    assert node.core.handing_off() == []
    assert replica.role is Role.FOLLOWER
    assert not any(isinstance(m, Prepare) for _, m in node.take_sent()), "it campaigned anew"
