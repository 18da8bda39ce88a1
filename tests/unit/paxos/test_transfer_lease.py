"""Rule 9 (leadership transfer) and the leases: a leader gives up its lease when it starts a
transfer, a heartbeat round that named the target renews no lease even when acked late,
and a copy of that round grants what the round grants."""

from __future__ import annotations

from test_replica_paths import Group, between

from paxos.ballot import Ballot
from paxos.messages import Heartbeat, HeartbeatAck, Nack, Prepare, Promise
from paxos.replica import Role


def test_a_transfer_ends_the_lease_at_once() -> None:
    """Rule 9: a leader gives up its lease the moment it starts a transfer. Its handoff
    heartbeats let the followers promise the target at once, so the target may be elected by
    them (without this leader's own promise) while a lease counted from an earlier round would
    still let this leader answer reads."""
    g = Group(3, fast=(1,))
    g.elect(1, now=0.2)
    g.heartbeat(1)
    now = g.now[1]
    assert g.r(1).has_valid_lease(now)
    assert g.r(1).transfer_leadership(3)
    assert not g.r(1).has_valid_lease(now)
    g.r(1).read(1, now)
    ready = g.process(1)
    assert [r for r in ready.reads if r.via_lease] == []


def test_a_target_elected_by_the_other_followers_overlaps_no_lease_of_the_old_leader() -> None:
    g = Group(3, fast=(1,))
    g.elect(1, now=0.2)
    g.heartbeat(1)
    now = g.now[1]
    g.tick(2, now)
    g.tick(3, now)
    assert g.r(1).transfer_leadership(3)
    g.process(1)
    g.inflight = [m for m in g.inflight if isinstance(m, Heartbeat)]
    g.deliver()  # the handoff round reaches nodes 2 and 3; node 3 campaigns at once
    g.inflight = []
    g.stabilize(keep=between(2, 3))  # node 1 is cut off from here on
    assert g.r(3).role is Role.LEADER
    holders = [i for i in (1, 2, 3) if g.r(i).has_valid_lease(now + 0.01)]
    assert len(holders) <= 1, f"replicas {holders} hold leases at once"


def test_a_handoff_round_acked_after_the_transfer_timed_out_renews_no_lease() -> None:
    """Rule 9: a heartbeat round that named a transfer target renews no lease, even when its
    acks arrive after the leader gave the transfer up: the followers that acked it granted the
    target, so a lease counted from that round could overlap the target's."""
    g = Group(3, fast=(1,))
    g.elect(1, now=0.2)
    g.heartbeat(1)
    leader = g.r(1)
    assert leader.transfer_leadership(3)
    deadline = g.now[1] + leader.config.election_timeout_max_s
    g.process(1)
    g.inflight = [m for m in g.inflight if m.dst == 2]  # the target hears nothing
    g.stabilize(keep=lambda m: 3 not in (m.src, m.dst))
    held: list[HeartbeatAck] = []
    t = g.now[1]
    while t + 0.05 < deadline:  # the handoff rounds go on; node 2 acknowledges them
        t += 0.05
        g.tick(1, t)
        g.tick(2, t)
        g.process_all()
        rounds = [m for m in g.inflight if isinstance(m, Heartbeat) and m.dst == 2]
        assert rounds and all(m.handoff_to == 3 for m in rounds)
        g.inflight = rounds
        g.deliver()
        g.process(2)
        held = [m for m in g.inflight if isinstance(m, HeartbeatAck)]
        g.inflight = []
        if t + 0.05 < deadline:
            for ack in held:
                leader.step(ack)
    # The acks of the last handoff round are late: the transfer times out first.
    g.tick(1, deadline)
    g.process(1)
    g.inflight = []
    for ack in held:
        leader.step(ack)
    assert not leader.has_valid_lease(deadline)
    leader.read(7, deadline)
    assert [r for r in g.process(1).reads if r.via_lease] == []


def test_a_duplicated_handoff_heartbeat_still_lets_the_target_through() -> None:
    """Rule 9: a copy of the handoff round (a duplicating network, or the leader's own
    `repeat_heartbeats`) grants what the round grants: the same (ballot, seq) is not older
    than the newest round seen, so the copy must not revoke the permission."""
    g = Group(3, fast=(1,))
    g.elect(1)
    g.heartbeat(1)
    assert g.r(1).transfer_leadership(3)
    ready = g.process(1)
    g.inflight = []
    (to_2,) = [m for m in ready.messages if isinstance(m, Heartbeat) and m.dst == 2]
    assert to_2.handoff_to == 3
    g.r(2).step(to_2)
    g.r(2).step(to_2)  # the network delivers the same round twice
    g.process(2)
    g.inflight = []
    ballot = Ballot(g.r(1).status().promised.round + 1, 3)
    g.r(2).step(Prepare(src=3, dst=2, ballot=ballot, from_slot=1))
    ready = g.process(2)
    assert not [m for m in ready.messages if isinstance(m, Nack)]
    assert [m.ballot for m in ready.messages_after_persist if isinstance(m, Promise)] == [ballot]
