"""Node rule 15 (a stopping node hands its groups over): a campaign that was already out
when the node retired may still win, and the stop waits for it to end either way."""

from __future__ import annotations

from paxos import Ballot, Role
from paxos.messages import Heartbeat
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
