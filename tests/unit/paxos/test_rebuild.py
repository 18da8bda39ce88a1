"""Rule 14: a replica that lost its durable state rebuilds as a non-voter and votes again
only once its forgotten promises and votes are covered (Paxos Made Live §5.1)."""

from __future__ import annotations

import pytest
from test_replica_paths import Group, between, one_slot_accept, to

from paxos import MemoryStorage, PersistBatch, Role
from paxos.ballot import Ballot
from paxos.messages import (
    Accept,
    Accepted,
    CatchUpReply,
    Heartbeat,
    HeartbeatAck,
    Message,
    Prepare,
    PreVote,
    PreVoteReply,
    Promise,
)


def lose_disk(g: Group, i: int, now: float, *, rebuilding: bool = True) -> None:
    """Replica i's disk is replaced: it restarts with nothing (and, as `paxoskv node
    --rebuild` writes it, the rebuilding flag)."""
    g.storage[i] = MemoryStorage()
    if rebuilding:
        g.storage[i].save(PersistBatch(rebuilding=True))
    g.applied[i] = []
    g.readies[i] = []
    g.inflight = [m for m in g.inflight if m.dst != i]
    g.restart(i, now)


def sent(g: Group, i: int, kind: type) -> list[Message]:
    return [
        m
        for ready in g.readies[i]
        for m in ready.messages + ready.messages_after_persist
        if isinstance(m, kind)
    ]


def wake_past_the_lease(g: Group, i: int, now: float) -> None:
    """Tick replica i once just after it heard the leader (its lease promise is measured
    from there, Paxos rule 6), then at `now`, long after that promise and its election
    timer ran out."""
    g.tick(i, 0.14)
    g.tick(i, now)


def chosen_by_1_and_2() -> Group:
    """Node 1 leads; b"v" is chosen at slot 1 by nodes 1 and 2; node 3 heard nothing."""
    g = Group(3, fast=(1, 3))
    g.elect(1)
    g.r(1).propose(b"v")
    g.stabilize(keep=between(1, 2))
    assert g.chosen(1) == [(b"v",)]
    return g


@pytest.mark.parametrize("rebuilding", [True, False])
def test_a_forgotten_vote_cannot_lose_a_chosen_value(rebuilding: bool) -> None:
    """Node 2 loses the vote that chose b"v", then node 1 goes away and node 3 campaigns.
    Had node 2 come back as a plain empty acceptor (rebuilding=False, what the node refuses
    to start as), node 3 would win with it, knowing nothing of slot 1, and choose its own
    next write there."""
    g = chosen_by_1_and_2()
    lose_disk(g, 2, 0.5, rebuilding=rebuilding)
    g.settle_among(2, 3)  # node 1 is gone
    if not rebuilding:
        assert g.r(3).role is Role.LEADER
        g.r(3).propose(b"w")
        g.stabilize(keep=between(2, 3))
        g.heartbeat(3, keep=between(2, 3))
        assert g.chosen(3) == [(b"w",)]  # slot 1 chosen twice: b"v" by {1, 2}, b"w" now
        return
    assert g.r(3).role is not Role.LEADER
    assert sent(g, 2, Promise) == [] and sent(g, 2, Accepted) == []
    assert g.r(2).status().rebuilding


def test_a_rebuilt_replica_votes_again_once_it_knows_what_was_chosen() -> None:
    g = chosen_by_1_and_2()
    lose_disk(g, 2, 0.3)
    # Node 1 is still there: node 2 learns the floor (every peer's promise), then a
    # heartbeat of node 1 (ballot at least the floor) names its next slot, and node 2
    # catches up to it.
    g.tick(2, 0.31)
    g.stabilize()
    g.heartbeat(1)
    g.stabilize()
    status = g.r(2).status()
    assert not status.rebuilding
    assert status.promised >= g.r(1).status().promised
    assert g.chosen(2) == [(b"v",)]
    assert g.storage[2].load().rebuilding is False  # durably
    # Now node 1 goes away: node 3's campaign needs node 2, which reports b"v".
    g.idle(2, 2.0)
    g.idle(3, 2.0)
    g.stabilize(keep=between(2, 3))
    assert g.r(3).role is Role.LEADER
    g.heartbeat(3, keep=between(2, 3))
    assert g.chosen(3) == [(b"v",)]


def test_the_floor_covers_a_promise_the_replica_forgot() -> None:
    """Node 3 campaigns at ballot 2.3 and only node 2 promises it before losing its disk;
    node 3 takes that promise with its own as a quorum and leads. Node 1, still leading at
    1.1, proposes b"old". A rebuilt node 2 that accepted 1.1 again (its promise of 2.3
    forgotten) would choose b"old" with node 1 while node 3 chooses b"new" for the same
    slot. The floor (node 3 reports 2.3) keeps node 2 from voting for 1.1."""
    g = Group(3, fast=(1, 3))
    g.elect(1)
    wake_past_the_lease(g, 3, 5.0)  # node 3 heard nothing since: it campaigns
    assert g.r(3).role is Role.CANDIDATE
    g.process(3)
    to_2 = [m for m in g.inflight if m.dst == 2]
    g.inflight = []
    wake_past_the_lease(g, 2, 5.0)
    for m in to_2:
        g.r(2).step(m)
    g.process(2)  # node 2 promised 2.3, durably, and answers
    promise = [m for m in g.inflight if isinstance(m, Promise) and m.dst == 3]
    assert promise and promise[0].ballot.node_id == 3
    lose_disk(g, 2, 5.01)
    g.r(3).step(promise[0])
    assert g.r(3).role is Role.LEADER  # a quorum: its own promise and node 2's
    new_ballot = g.r(3).status().promised
    g.process(3)
    g.inflight = [m for m in g.inflight if m.dst != 1]  # node 1 hears nothing of node 3
    # Node 1 (1.1) proposes; node 2 stores its Accept but must not vote for it.
    g.r(1).propose(b"old")
    g.tick(2, 5.02)  # node 2 asks every peer for its promise
    g.process_all()
    g.deliver(keep=lambda m: not (m.src == 3 and m.dst == 1) and not (m.src == 1 and m.dst == 3))
    g.process_all()
    for _ in range(5):
        g.deliver(keep=lambda m: m.src != 3 or m.dst == 2)
        g.process_all()
    assert g.r(2)._floor == new_ballot
    assert not any(m.dst == 1 for m in sent(g, 2, Accepted))
    assert g.r(2).status().rebuilding  # node 1's ballot is below the floor: no target
    # Node 1 hears node 3 again: it follows 2.3, node 3's b"new" is chosen for slot 1
    # with it, node 2 reaches its target from node 3's heartbeat and votes again.
    g.r(3).propose(b"new")
    g.heartbeat(3)
    g.stabilize()
    g.heartbeat(3)
    assert not g.r(2).status().rebuilding
    assert g.r(2).status().promised == new_ballot
    for i in (1, 2, 3):
        assert g.chosen(i)[0] == (b"new",)
        assert (b"old",) not in g.chosen(i)


def test_no_floor_while_a_peer_is_silent_or_rebuilding_too() -> None:
    g = chosen_by_1_and_2()
    lose_disk(g, 2, 0.3)
    g.tick(2, 0.31)
    g.process(2)
    asks = [m for m in g.inflight if isinstance(m, PreVote)]
    assert sorted(m.dst for m in asks) == [1, 3]
    seq = asks[0].seq
    g.inflight = []
    g.r(2).step(PreVoteReply(src=1, dst=2, ballot=Ballot(1, 1), seq=seq, granted=True))
    g.r(2).step(
        PreVoteReply(src=3, dst=2, ballot=Ballot(9, 3), seq=seq, granted=False, rebuilding=True)
    )
    assert g.r(2)._floor is None  # node 3 is rebuilding: its promise bounds nothing
    # A reply to a pre-vote of node 2's life before the loss (a small seq) counts for nothing.
    g.r(2).step(PreVoteReply(src=3, dst=2, ballot=Ballot(1, 1), seq=1, granted=True))
    assert g.r(2)._floor is None
    g.r(2).step(PreVoteReply(src=3, dst=2, ballot=Ballot(2, 3), seq=seq, granted=True))
    assert g.r(2)._floor == Ballot(2, 3)


def test_a_rebuilding_replica_casts_no_vote_and_never_campaigns() -> None:
    g = Group(3, fast=(2,))
    lose_disk(g, 2, 0.0)
    g.tick_all(0.0)
    g.idle(2, 2.0)  # its election timer ran out many times
    assert g.r(2).role is Role.FOLLOWER
    assert sent(g, 2, Prepare) == []
    g.r(2).step(Prepare(src=1, dst=2, ballot=Ballot(5, 1), from_slot=1))
    g.r(2).step(PreVote(src=1, dst=2, ballot=Ballot(5, 1), seq=1))
    g.r(2).step(one_slot_accept(1, 2, Ballot(5, 1), 1, (b"x",)))
    ready = g.process(2)
    out = ready.messages + ready.messages_after_persist
    assert not any(isinstance(m, Promise | Accepted) for m in out)
    replies = [m for m in out if isinstance(m, PreVoteReply) and m.dst == 1]
    assert replies and not replies[0].granted and replies[0].rebuilding
    assert g.storage[2].load().accepted[1][1] == (b"x",)  # stored, not a vote


def test_leaders_send_no_thrifty_accepts_and_hand_no_leadership_to_a_rebuilding_follower() -> None:
    g = Group(3, fast=(1,), thrifty_accepts=True)
    g.elect(1)
    lose_disk(g, 2, 0.3)
    g.heartbeat(1)
    acks = [m for m in sent(g, 2, HeartbeatAck) if m.dst == 1]
    assert acks and acks[-1].rebuilding
    g.inflight = []
    g.r(1).propose(b"w")
    ready = g.process(1)
    assert [m.dst for m in ready.messages if isinstance(m, Accept)] == [3]
    assert not g.r(1).transfer_leadership(2)
    # Once rebuilt, it is a target again.
    g.stabilize()
    g.heartbeat(1)
    g.heartbeat(1)
    assert not g.r(2).status().rebuilding
    assert 2 not in g.r(1)._rebuilding_peers


def test_a_rebuild_survives_a_crash_half_way() -> None:
    g = chosen_by_1_and_2()
    lose_disk(g, 2, 0.3)
    g.tick(2, 0.31)
    g.stabilize(keep=to(1, 3))  # node 2 heard nothing back yet
    g.crash(2)
    g.restart(2, 0.4)
    assert g.r(2).status().rebuilding  # the flag is durable
    g.stabilize()
    g.heartbeat(1)
    g.stabilize()
    assert not g.r(2).status().rebuilding
    assert g.chosen(2) == [(b"v",)]


def test_the_target_comes_from_a_leader_at_or_above_the_floor() -> None:
    """Node 3 leads at 2.3 with node 2's promise and gets b"p" chosen at slot 1 by nodes 3
    and 2; node 2 loses its disk, answers the floor query (node 3 says 2.3), and node 3
    goes away before its next heartbeat. Node 1, still at 1.1, knows nothing of slot 1: a
    target taken from its heartbeat would let node 2 vote with an empty log, and node 1
    would then choose its own write for slot 1 with it."""
    g = Group(3, fast=(1, 3))
    g.elect(1)
    wake_past_the_lease(g, 3, 5.0)
    wake_past_the_lease(g, 2, 5.0)
    g.stabilize(keep=between(2, 3))
    assert g.r(3).role is Role.LEADER
    g.r(3).propose(b"p")
    g.stabilize(keep=between(2, 3))
    assert g.chosen(3) == [(b"p",)]
    lose_disk(g, 2, 5.1)
    g.tick(2, 5.11)  # the floor query
    g.stabilize(keep=lambda m: isinstance(m, PreVote | PreVoteReply))
    assert g.r(2)._floor == g.r(3).status().promised
    # Node 3 is gone from now on. Node 1 still leads at 1.1 and heartbeats node 2.
    g.heartbeat(1, keep=between(1, 2))
    g.heartbeat(1, keep=between(1, 2))
    assert g.r(2).status().rebuilding
    # Node 1 tries to take over; without node 2's promise it cannot.
    g.idle(1, 8.0)
    g.idle(2, 8.0)
    g.stabilize(keep=between(1, 2))
    assert g.r(1).role is not Role.LEADER
    assert sent(g, 2, Promise) == []
    # Node 3 is back: node 2 learns slot 1 from it and votes again.
    g.heartbeat(3)
    g.stabilize()
    g.heartbeat(3)
    assert not g.r(2).status().rebuilding
    assert g.chosen(2) == [(b"p",)]


def test_a_rebuilt_replica_votes_only_once_it_caught_up_to_the_target() -> None:
    """Node 2 has its floor and a target from node 1, but every catch-up reply is lost:
    it stays a non-voter, so node 3 cannot win an election with it and lose slot 1."""
    g = chosen_by_1_and_2()
    lose_disk(g, 2, 0.3)
    g.tick(2, 0.31)
    no_catch_up = lambda m: not isinstance(m, CatchUpReply)  # noqa: E731
    g.stabilize(keep=no_catch_up)
    g.heartbeat(1, keep=no_catch_up)
    g.heartbeat(1, keep=no_catch_up)
    assert g.r(2)._rebuild_target == 2
    assert g.r(2).status().rebuilding
    g.settle_among(2, 3)  # node 1 is gone
    assert g.r(3).role is not Role.LEADER
    # Node 1 is back: the catch-up arrives and node 2 votes again, knowing slot 1.
    g.heartbeat(1)
    g.stabilize()
    g.heartbeat(1)
    assert not g.r(2).status().rebuilding
    assert g.chosen(2) == [(b"v",)]


# ---------------------------------------------------------------------- found by review


def test_a_rebuilding_ack_does_not_confirm_a_deposed_leaders_read() -> None:
    """Node 1 leads at 1.1. Nodes 2 and 3 stop hearing it; node 2 wins 2.2 with node 3's
    promise and gets b"w" chosen with it: the write is acknowledged. Node 3 then loses its
    disk and rebuilds; it forgot its promise of 2.2. Node 1, cut off from node 2 but heard
    by node 3 again, still believes it leads (its check-quorum horizon has not passed when
    node 3's acks resume, and they keep it satisfied). A read-index round acknowledged by
    the rebuilding node 3 must not confirm node 1's leadership: node 3's ack says nothing
    about the promise of 2.2 it forgot, and node 1's index does not cover b"w"."""
    g = Group(3, fast=(1, 2))
    g.elect(1)
    g.settle_among(3, 2)
    assert g.r(2).role is Role.LEADER
    g.r(2).propose(b"w")
    g.stabilize(keep=between(2, 3))
    acked = [e for rd in g.readies[2] for e in rd.committed if e.proposal_ids[0] is not None]
    assert [e.value for e in acked] == [(b"w",)]  # the client was told b"w" is written
    lose_disk(g, 3, 1.1)
    # Node 1 (stalled since 0.2, as in test_a_deposed_leader_never_answers_a_read_index_read)
    # asks for a linearizable read; only node 3 hears it.
    assert g.r(1).role is Role.LEADER
    g.r(1).read(7, 0.45)
    g.stabilize(keep=between(1, 3))
    g.process(1)  # a driver takes a Ready after a step (the ack alone makes none pending)
    reads = [r for rd in g.readies[1] for r in rd.reads if r.read_id == 7]
    # A read answered here is served at an index without slot 1: a stale read.
    assert reads == [], f"stale read confirmed by a rebuilding replica: {reads}"
    # Nor does node 1 hold a lease thanks to node 3.
    assert not g.r(1).has_valid_lease(0.46)


def test_a_rebuilding_ack_renews_no_lease_of_a_deposed_leader_ticking_all_along() -> None:
    """The same with every replica ticking every 10 ms: node 1 is cut off at 0.2; the
    first of nodes 2 and 3 to campaign wins with the other's promise and gets b"w" chosen.
    The other one then loses its disk and restarts at once, rebuilding, and the partition
    moves: it hears node 1, which has not reached its check-quorum horizon yet. Its acks
    then keep node 1 leading and its lease renewed, and node 1 answers a lease read at
    an index without b"w", acknowledged before the read began."""
    g = Group(3, fast=(1, 2, 3))
    g.elect(1)
    t = 0.2
    while Role.LEADER not in (g.r(2).role, g.r(3).role):
        t = round(t + 0.01, 3)
        assert t < 1.0
        for i in (1, 2, 3):
            g.tick(i, t)
        g.stabilize(keep=between(2, 3))
    new, other = (2, 3) if g.r(2).role is Role.LEADER else (3, 2)
    g.r(new).propose(b"w")
    g.stabilize(keep=between(2, 3))
    assert g.chosen(new) == [(b"w",)]  # acknowledged to its client
    assert g.r(1).role is Role.LEADER  # check-quorum has not fired yet
    lose_disk(g, other, t)
    g.inflight = []
    # The partition moves: nodes 1 and `other` hear each other, `new` is cut off.
    served = []
    for _ in range(100):
        t = round(t + 0.01, 3)
        for i in (1, 2, 3):
            g.tick(i, t)
        g.stabilize(keep=between(1, other))
        if g.r(1).has_valid_lease(t):
            g.r(1).read(100, t)
            g.process(1)
            served = [r for rd in g.readies[1] for r in rd.reads if r.read_id == 100]
            break
    assert served == [], f"node 1 served a lease read at {served} without slot 1 (t={t})"


def test_a_rebuild_finishes_in_an_idle_group_after_its_target_leader_lost_its_tail() -> None:
    """Node 2 rebuilds and has its floor. Node 1 (leading at 1.1) proposes three writes and
    (one batch, slot 1); its next heartbeat, in the same Ready, names next slot 2: node 2
    takes 2 as its target.
    (A read-index read makes ready() send a heartbeat round after flushing the proposals,
    in `messages`, before the persist.) Node 1 crashes before that Ready's persist, and only node 2 (a non-voter) got the
    Accepts: slot 1 is chosen only if a client writes again. The group elects a new leader,
    whose next slot is 1, and no client writes. Node 2 must not wait forever for slots
    1..3 to be chosen: the new leader (at or above the floor too) bounds its forgotten
    votes as well."""
    g = Group(3, fast=(1, 3))
    g.elect(1)
    lose_disk(g, 2, 0.3)
    g.tick(2, 0.31)
    g.stabilize(keep=lambda m: isinstance(m, PreVote | PreVoteReply))
    assert g.r(2)._floor is not None and g.r(2).status().rebuilding
    for value in (b"a", b"b", b"c"):
        g.r(1).propose(value)
    g.r(1).read(1, 5.0)  # past its lease: the heartbeat round goes with the Accepts
    ready = g.r(1).ready()
    g.inflight.extend(m for m in ready.messages if m.dst == 2)  # sent before the persist
    g.crash(1)  # ... which never happened
    g.deliver()
    g.process_all()
    assert g.r(2)._rebuild_target == 2
    g.inflight = [m for m in g.inflight if m.dst != 1]
    g.restart(1, 1.0)
    g.idle(3, 1.0)
    g.idle(1, 1.2)
    g.idle(3, 1.2)
    g.stabilize()
    leader = next(i for i in (1, 3) if g.r(i).role is Role.LEADER)
    for _ in range(5):
        g.heartbeat(leader)
    assert g.r(leader).status().next_slot == 1
    assert not g.r(2).status().rebuilding, "stuck rebuilding in an idle group"


def test_a_reordered_lower_floor_report_does_not_lower_the_floor() -> None:
    """Rule 14 (a): the floor is the highest promise each peer reported. A rebuilding replica
    asks again every heartbeat interval until every peer answered, so one peer may answer two
    asks, and the replies may arrive in either order: an older, lower report arriving last
    must not lower the floor (a leader below the real floor would then set the target)."""
    g = Group(3, fast=(1,))
    g.elect(1)
    leader_ballot = g.r(1).status().promised
    lose_disk(g, 2, 0.3)
    g.process(2)
    first = [m for m in g.inflight if isinstance(m, PreVote) and m.dst == 3]
    g.inflight = []
    g.tick(2, 0.3 + g.r(2).config.heartbeat_interval_s)  # nobody answered: it asks again
    g.process(2)
    second = [m for m in g.inflight if isinstance(m, PreVote) and m.dst == 3]
    g.inflight = []
    assert first and second and second[0].seq > first[0].seq
    high = Ballot(leader_ballot.round + 5, 3)  # node 3 promised a higher ballot meanwhile
    g.r(2).step(PreVoteReply(src=3, dst=2, ballot=high, seq=second[0].seq, granted=True))
    # Node 3's answer to the first ask, from before that promise, arrives after it; node
    # 1's answer completes the floor.
    g.r(2).step(PreVoteReply(src=3, dst=2, ballot=leader_ballot, seq=first[0].seq, granted=True))
    g.r(2).step(PreVoteReply(src=1, dst=2, ballot=leader_ballot, seq=second[0].seq, granted=False))
    g.process(2)
    # A heartbeat of node 1, whose ballot is below node 3's promise, sets no target: node 2
    # stays rebuilding (it casts no vote) although it knows every slot node 1 names.
    g.r(2).step(
        Heartbeat(src=1, dst=2, ballot=leader_ballot, chosen_watermark=0, seq=50, next_slot=1)
    )
    g.process(2)
    assert g.r(2).status().rebuilding
