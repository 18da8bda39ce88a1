"""Rule 9 with rule 6, found by a fresh-eyes review of the replica (session 27; the test
failed before its fix): a transfer's target restarted after the transfer was abandoned took
the delayed handoff round as fresh (a restart forgets the newest round seen) and campaigned
at once, inside its restart block; the other follower, which never saw the leader resume,
still granted the transfer. Two leaders: the new one chose a write while the old one, whose
lease the target's own acks had renewed before its restart, served a lease read without it.
"""

from __future__ import annotations

import pytest

from paxos import Role
from paxos.messages import Heartbeat
from tests.unit.paxos.test_replica_paths import Group, between


def _abandoned_transfer_with_target_in_lease_quorum(g: Group) -> tuple[list[Heartbeat], float]:
    """Leader 1 hands over to 2; its handoff round reaches 3 but is delayed to 2. The transfer
    times out; 1 resumes its lease with rounds acknowledged by 2 only (3 hears none)."""
    g.elect(1, now=0.2)
    g.r(1).propose(b"w0")
    g.stabilize()
    g.heartbeat(1)
    t = g.now[1]
    assert g.r(1).transfer_leadership(2)
    g.process(1)
    delayed = [m for m in g.inflight if isinstance(m, Heartbeat) and m.dst == 2]
    assert delayed and delayed[0].handoff_to == 2
    g.inflight = [m for m in g.inflight if m.dst != 2]
    # While the transfer lasts, only 3 hears the leader (it keeps the leader's quorum contact).
    while g.r(1)._handoff_target is not None:
        g.tick(1, g.now[1] + 0.05)
        if g.r(1)._handoff_target is None:
            break
        g.tick(3, g.now[1])
        g.stabilize(keep=between(1, 3))
    g.process(1)
    g.inflight = [m for m in g.inflight if m.dst != 3]  # the first round after it: lost to 3
    # The transfer timed out: the leader resumes its lease with node 2's acks; 3 hears nothing.
    while not g.r(1).has_valid_lease(g.now[1]) or g.now[1] < t + 0.3:
        g.tick(1, g.now[1] + 0.05)
        g.tick(2, g.now[1])
        g.stabilize(keep=between(1, 2))
    return delayed, g.now[1]


@pytest.mark.parametrize("production", [False, True], ids=["harness-defaults", "pre_vote+thrifty"])
def test_a_restarted_transfer_target_does_not_campaign_inside_its_restart_block(
    production: bool,
) -> None:
    extra = {"pre_vote": True, "thrifty_accepts": True} if production else {}
    g = Group(3, fast=(1,), **extra)
    delayed, now = _abandoned_transfer_with_target_in_lease_quorum(g)
    assert g.r(1).role is Role.LEADER and g.r(1).has_valid_lease(now)
    g.crash(2)
    g.restart(2, now)  # inside its restart block (rule 6) until now + lease_duration
    g.inflight = delayed  # the delayed handoff round arrives
    g.deliver()
    g.process_all()
    g.stabilize(keep=between(2, 3))  # 1 hears from neither 2 nor 3 meanwhile
    assert g.r(2).role is not Role.LEADER
    # Leader 1's clock has not moved: its lease still holds, and it alone may serve reads.
    g.r(1).read(7, now)
    assert [r.read_id for r in g.process(1).reads if r.via_lease] == [7]
