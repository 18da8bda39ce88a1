"""Replicas configured with different leases (rule 6), as during a rolling change of the
setting: found by an operator trial, a leader whose lease outlasted its followers' promises
served stale linearizable reads for half a second after they had elected another leader.
The simulator's `mixed_leases` profile runs the same under faults."""

from __future__ import annotations

from dataclasses import replace

import pytest
from test_rebuild import lose_disk
from test_replica_paths import Group, between

from paxos import Ballot, Ready, Role, codec
from paxos.config import MAX_LEASE_S
from paxos.messages import Heartbeat, HeartbeatAck, Nack, Prepare, Promise

LONG = {"lease_duration_s": 0.4, "election_timeout_min_s": 0.45, "election_timeout_max_s": 0.5}
SHORT = {"lease_duration_s": 0.06}
DRIFT = 0.02  # the default lease_drift_s


class MixedGroup(Group):
    """A Group whose replicas each have their own settings (`settings[i]`), which a test
    may change before a restart."""

    def __init__(self, settings: dict[int, dict[str, float]], **kwargs: object) -> None:
        self.settings = settings
        super().__init__(**kwargs)  # type: ignore[arg-type]

    def _extra(self, i: int) -> dict[str, object]:
        return {**self.extra, **self.settings.get(i, {})}


def test_a_leaders_lease_lasts_no_longer_than_the_promises_of_its_quorum() -> None:
    g = MixedGroup({1: LONG}, n=3, fast=(1,))
    g.elect(1, now=0.6)
    g.r(1).propose(b"w")
    g.stabilize()
    # The followers promise 0.12 s (the default), not the leader's 0.4.
    assert g.r(1).has_valid_lease(0.6 + 0.12 - DRIFT - 0.001)
    assert not g.r(1).has_valid_lease(0.6 + 0.12 - DRIFT)


def test_a_quorum_that_promises_the_long_lease_gives_it() -> None:
    g = MixedGroup({1: LONG, 2: LONG, 3: LONG}, n=3, fast=(1,))
    g.tick_all(0.0)
    for j in (2, 3):
        g.tick(j, 0.41)  # past their restart block (0.4 s), before their election timeout
    g.tick(1, 0.6)
    g.stabilize()
    assert g.r(1).role is Role.LEADER
    g.r(1).propose(b"w")
    g.stabilize()
    assert g.r(1).has_valid_lease(0.6 + 0.4 - DRIFT - 0.001)
    assert not g.r(1).has_valid_lease(0.6 + 0.4 - DRIFT)


def test_an_ack_that_says_no_promise_is_taken_at_the_leaders_own() -> None:
    """A node from before `lease_promise_s` says 0: the leader counts its own lease, as
    every node did before."""
    g = MixedGroup({}, n=3, fast=(1,))
    g.elect(1, now=0.2)
    g.tick(1, 0.3)  # a heartbeat round goes out
    g.process(1)
    seq = max(m.seq for m in g.inflight if hasattr(m, "seq"))
    ballot = g.r(1).status().promised
    g.inflight.clear()
    g.r(1).step(HeartbeatAck(src=2, dst=1, ballot=ballot, seq=seq, chosen_watermark=0))
    g.process(1)
    assert g.r(1).has_valid_lease(0.3 + 0.12 - DRIFT - 0.001)


def test_a_replica_restarted_with_a_shorter_lease_waits_out_its_longer_promise() -> None:
    g = MixedGroup({2: LONG}, n=3, fast=(1,))
    g.elect(1, now=0.2)
    g.heartbeat(1)  # node 2 acknowledges a round: it promised the leader 0.4 s
    acked = [
        r
        for r in g.readies[2]
        if any(isinstance(m, HeartbeatAck) for m in r.messages_after_persist)
    ]
    # Recorded in the very Ready whose ack promises it, so before the ack leaves.
    assert acked and acked[0].persist.lease_promise_s == 0.4
    assert g.storage[2].load().lease_promise_s == 0.4
    g.crash(2)
    g.settings[2] = SHORT  # restarted under a 0.06 s lease
    g.restart(2, now=10.0)
    ballot = Ballot(g.r(1).status().promised.round + 1, 3)
    g.tick(2, 10.0 + 0.1)  # past its own 0.06 s, inside the 0.4 s it promised before
    g.r(2).step(Prepare(src=3, dst=2, ballot=ballot, from_slot=1))
    assert any(isinstance(m, Nack) and m.lease_held for m in g.r(2).ready().messages)
    g.tick(2, 10.0 + 0.4 + 0.001)
    # Its block has passed: the record comes down to its own lease, and it promises.
    ready = g.process(2)
    assert ready.persist.lease_promise_s == 0.06
    assert g.storage[2].load().lease_promise_s == 0.06
    g.r(2).step(Prepare(src=3, dst=2, ballot=ballot, from_slot=1))
    assert any(isinstance(m, Promise) for m in g.r(2).ready().messages_after_persist)
    assert g.r(2).role is Role.FOLLOWER


@pytest.mark.parametrize("restarts", [False, True], ids=["runs on", "restarts after rebuild"])
@pytest.mark.parametrize("rebuilt_with", [SHORT, LONG], ids=["shorter lease", "same lease"])
def test_a_replica_rebuilt_under_a_shorter_lease_still_blocks_for_the_leaders(
    rebuilt_with: dict[str, float], restarts: bool
) -> None:
    """Found by review: node 2 alone renewed node 1's 0.4 s lease, lost its disk and came
    back (rule 14) under a 0.06 s lease, forgetting its record; once cut off from node 1 it
    promised node 3, which led while node 1's lease ran. A heartbeat now says how long the
    leader's lease still runs, and a follower blocks other candidates that long too; and
    records it (found by review: restarted after its rebuild, it blocked for its own
    lease only)."""
    n3 = {"lease_duration_s": 0.06, "election_timeout_min_s": 0.15, "election_timeout_max_s": 0.16}
    g = MixedGroup({1: LONG, 2: LONG, 3: n3}, n=3, fast=(1,))
    g.tick_all(0.0)
    g.tick(2, 0.41)
    g.tick(3, 0.07)
    g.tick(1, 0.6)
    g.stabilize()
    assert g.r(1).role is Role.LEADER
    g.r(1).propose(b"w")
    g.stabilize()

    def not_1_3(m: object) -> bool:  # nodes 1 and 3 no longer hear each other
        return {m.src, m.dst} != {1, 3}  # type: ignore[attr-defined]

    g.heartbeat(1, keep=not_1_3)  # a round only node 2 acknowledges, promising 0.4 s
    t_n = g.now[1]
    g.tick(3, t_n)
    assert g.r(1).has_valid_lease(t_n + 0.37)
    g.settings[2] = rebuilt_with
    lose_disk(g, 2, t_n + 0.01)
    g.tick(2, t_n + 0.02)  # it asks for the floor
    g.stabilize(keep=not_1_3)
    for _ in range(3):
        g.heartbeat(1, keep=not_1_3)
        g.tick(2, g.now[1])
        g.stabilize(keep=not_1_3)
    assert not g.r(2).status().rebuilding
    if restarts:
        g.crash(2)
        g.restart(2, g.now[1] + 0.01)
    t = t_n + 0.33  # node 2 is cut off from node 1 too; node 3 campaigns
    g.tick(2, t)
    g.tick(3, t)
    g.stabilize(keep=between(2, 3))
    assert not (g.r(3).role is Role.LEADER and g.r(1).has_valid_lease(t))


def _heartbeats(ready: Ready) -> list[Heartbeat]:
    return [m for m in ready.messages if isinstance(m, Heartbeat)]


def test_a_heartbeat_says_the_leaders_lease_with_the_drift_margin() -> None:
    """Found by review: a follower counts the remaining lease on its own clock, which may
    run fast by up to the drift; the leader adds the margin its own lease keeps."""
    g = MixedGroup({1: LONG}, n=3, fast=(1,))
    g.elect(1, now=0.6)
    g.r(1).propose(b"w")
    g.stabilize()
    lease_end = 0.6 + 0.12 - DRIFT  # the followers promised 0.12 s
    assert g.r(1).has_valid_lease(lease_end - 0.001)
    g.tick(1, 0.66)
    (beat, *_) = _heartbeats(g.process(1))
    assert beat.lease_remaining_s == pytest.approx(lease_end + DRIFT - 0.66)


def test_a_heartbeat_covers_the_lease_a_round_still_unconfirmed_may_give() -> None:
    """Found by review: a round's acks may reach the leader after its next heartbeat left,
    and renew the lease past what that heartbeat said."""
    g = MixedGroup({1: LONG, 2: LONG, 3: LONG}, n=3, fast=(1,))
    g.tick_all(0.0)
    for j in (2, 3):
        g.tick(j, 0.41)
    g.tick(1, 0.6)
    g.stabilize()
    g.r(1).propose(b"w")
    g.stabilize()
    g.tick(1, 0.7)  # round A goes out; its acks are held back
    g.process(1)
    held, g.inflight = g.inflight, []
    g.tick(1, 0.8)  # round B goes out before A is confirmed
    (beat, *_) = _heartbeats(g.process(1))
    g.inflight = held
    g.stabilize(keep=lambda m: not isinstance(m, Heartbeat) or m.seq != beat.seq)
    assert g.r(1).has_valid_lease(0.7 + 0.4 - DRIFT - 0.001)  # A renewed the lease after B
    assert beat.lease_remaining_s == pytest.approx(0.7 + 0.4 - 0.8)


def test_a_heard_lease_is_recorded_until_it_runs_out() -> None:
    """A follower under a shorter lease records the leader's longer remaining lease before
    its ack, keeps it while that leader's lease may run, and lowers it after."""
    g = MixedGroup({1: LONG, 3: LONG}, n=3, fast=(1,))
    g.tick_all(0.0)
    g.tick(3, 0.41)
    g.tick(2, 0.13)
    g.tick(1, 0.6)
    g.stabilize()
    g.r(1).propose(b"w")

    def no_acks_of_2(m: object) -> bool:  # node 3's acks give the leader its 0.4 s lease
        return not (isinstance(m, HeartbeatAck) and m.src == 2)

    g.stabilize(keep=no_acks_of_2)
    g.heartbeat(1, keep=no_acks_of_2)
    g.heartbeat(1, keep=no_acks_of_2)
    assert g.storage[2].load().lease_promise_s > 0.12
    g.crash(1)
    g.tick(2, g.now[1] + 0.01)  # the heard lease still runs: the record stays
    g.process(2)
    assert g.storage[2].load().lease_promise_s > 0.12
    timeout = g.r(2).config.election_timeout_max_s
    g.tick(2, g.now[1] + 0.45)  # it ran out, but not yet an election timeout ago
    g.process(2)
    assert g.storage[2].load().lease_promise_s > 0.12
    g.tick(2, g.now[1] + 0.45 + timeout)
    g.process(2)
    assert g.storage[2].load().lease_promise_s == 0.12


def _wire(g: Group) -> None:
    """What the peers receive: each message through the codec (microseconds, rounded up)."""
    g.inflight = [codec.decode(codec.encode(m)) for m in g.inflight]


def test_one_lease_setting_makes_no_lease_record_writes_late_in_a_clocks_life() -> None:
    """Found by review: with `now` near 2e7 (a monotonic clock after ~231 days), two rounds
    sent at the same `now` said the lease ran 1 µs more than the lease setting, and every
    follower recorded that, synced, then lowered it again."""
    t = 20_000_000.0
    g = Group(n=3, fast=(1,))
    g.tick_all(t)
    for j in (2, 3):
        g.tick(j, t + 0.13)
    g.tick(1, t + 0.2)
    g.stabilize()
    g.r(1).propose(b"w")
    g.stabilize()
    now = t + 0.35  # the lease ran out: a read needs a round of its own
    g.tick(1, now)
    g.r(1).read(1, now)
    g.process(1)
    assert len({m.seq for m in g.inflight if isinstance(m, Heartbeat)}) == 2
    _wire(g)
    g.deliver()
    g.process_all()
    for j in (2, 3):
        assert g.storage[j].load().lease_promise_s == 0.12, j


def test_a_follower_with_a_shorter_lease_does_not_rewrite_its_record_at_each_heartbeat() -> None:
    """Found by review: the leader's lease (90 ms) ran out between its heartbeats (50 ms
    apart) at a follower with 30 ms, which raised its record at each heartbeat and lowered
    it before the next, each a synced write."""
    g = MixedGroup(
        {
            1: {"lease_duration_s": 0.09},
            2: {"lease_duration_s": 0.09},
            3: {"lease_duration_s": 0.03},
        },
        n=3,
        fast=(1,),
    )
    g.tick_all(0.0)
    g.tick(2, 0.13)
    g.tick(3, 0.13)
    g.tick(1, 0.2)
    g.stabilize()
    start, t = len(g.readies[3]), 0.2
    for _ in range(200):  # 1 s: 20 heartbeat rounds
        t += 0.005
        g.tick_all(t)
        g.stabilize()
    writes = [r for r in g.readies[3][start:] if r.persist.lease_promise_s is not None]
    assert len(writes) <= 3, [r.persist.lease_promise_s for r in writes]


def test_a_heard_remaining_lease_is_bounded_before_it_is_recorded() -> None:
    """Found by review: a heartbeat saying 71 minutes (the codec's most), from a bug or a
    misconfigured peer, was recorded, and the follower then refused every candidate for
    71 minutes after each restart."""
    g = Group(n=3, fast=(1,))
    g.elect(1, now=0.2)
    g.tick(1, 0.26)
    g.process(1)
    g.inflight = [
        replace(m, lease_remaining_s=(2**32 - 1) / 1e6) if isinstance(m, Heartbeat) else m
        for m in g.inflight
    ]
    g.stabilize()
    assert g.storage[2].load().lease_promise_s == MAX_LEASE_S


def test_a_heartbeat_never_says_more_than_the_leaders_lease_late_in_a_clocks_life() -> None:
    """Found by review: near `now` = 2e7, `lease_until - now + drift` of a round confirmed
    at `now` came out above the lease (0.12000000149), which the codec rounds up to
    120001 µs; the figure is capped at the leader's own lease."""
    t = 20_000_000.0
    g = Group(n=3, fast=(1,))
    g.elect(1, now=t + 0.2)
    leader = g.r(1)
    lease, drift = leader.config.lease_duration_s, leader.config.lease_drift_s
    for now in (t + 0.35, t + 0.352, t + 0.361):
        leader._now = now
        leader._lease_until = now + lease - drift  # a round confirmed at `now`
        leader._confirmed_seq = max(leader._hb_sent, default=0)
        remaining = leader._lease_remaining()
        assert remaining <= lease
        beat = Heartbeat(
            src=1,
            dst=2,
            ballot=leader.status().promised,
            chosen_watermark=0,
            seq=1,
            lease_remaining_s=remaining,
        )
        assert codec.decode(codec.encode(beat)).lease_remaining_s <= lease
