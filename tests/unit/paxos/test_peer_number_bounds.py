"""Replica rule 15: a peer's ballot round and slot numbers are bounded before they count
(found by review: one decodable message with an extreme number stopped a node, or made its
next Phase 1 propose billions of no-ops)."""

from __future__ import annotations

from paxos import Ballot, Role
from paxos.codec import encode
from paxos.messages import (
    Accept,
    Accepted,
    AcceptedEntry,
    Nack,
    Prepare,
    PreVote,
    Promise,
)
from paxos.replica import MAX_ROUND, MAX_ROUND_STEP, MAX_SLOTS_AHEAD
from tests.unit.paxos.test_replica_paths import Group, one_slot_accept

U64_MAX = 2**64 - 1


def test_a_round_above_max_round_is_dropped_so_the_next_campaign_stays_encodable() -> None:
    g = Group(3, fast=(2,))
    g.tick_all(0.0)
    g.r(2)._max_seen_round = MAX_ROUND - 1  # as after 2**30 steps up (next test)
    g.r(2).step(PreVote(src=1, dst=2, ballot=Ballot(U64_MAX, 1), seq=1))
    g.r(2).step(PreVote(src=3, dst=2, ballot=Ballot(MAX_ROUND, 3), seq=1))  # the highest taken
    g.process(2)
    g.inflight.clear()
    # Its election timer runs out: it campaigns above every round it counted.
    prepares = _next_campaign(g, 2, until=1.0)
    assert all(MAX_ROUND < m.ballot.round <= U64_MAX for m in prepares)


def test_a_round_far_above_every_round_held_counts_for_nothing() -> None:
    """Found by a fuzzer: one Prepare at MAX_ROUND from a peer with the secret left every
    campaign at a round the others drop, the group without a leader for good (the promise
    is durable, so a restart kept it)."""
    g = Group(3, fast=(2,))
    g.tick_all(0.0)
    held = max(g.r(2).status().promised.round, g.r(2)._max_seen_round)
    for round_ in (MAX_ROUND, held + MAX_ROUND_STEP + 1):
        g.r(2).step(Prepare(src=3, dst=2, ballot=Ballot(round_, 3), from_slot=1))
        assert g.r(2).status().promised.round == held and g.r(2)._max_seen_round == held
    g.r(2).step(PreVote(src=3, dst=2, ballot=Ballot(held + MAX_ROUND_STEP, 3), seq=1))
    assert g.r(2)._max_seen_round == held + MAX_ROUND_STEP  # within the step: taken
    g.process(2)
    g.inflight.clear()
    first = min(m.ballot.round for m in _next_campaign(g, 2, until=1.0))
    assert first == held + MAX_ROUND_STEP + 1


def test_a_nacks_promised_round_above_max_round_counts_for_nothing() -> None:
    """Found by a later review: the bound covered a message's own ballot, not the promise a
    Nack reports, which was taken as the highest round seen."""
    g = Group(3, fast=(2,))
    g.tick_all(0.0)
    g.idle(2, 1.0)
    assert g.r(2).role is Role.CANDIDATE
    ballot = g.r(2).status().promised
    g.process(2)
    g.inflight.clear()
    g.r(2).step(Nack(src=1, dst=2, ballot=ballot, promised=Ballot(U64_MAX, 1), leader_hint=None))
    assert g.r(2).role is Role.FOLLOWER
    g.process(2)
    _next_campaign(g, 2, until=3.0)


def _next_campaign(g: Group, i: int, until: float) -> list[Prepare]:
    """Replica i's campaign once its election timer runs out by `until`: its Prepares, each
    encodable (a round of 2**64 raised ValueError there, and the node stopped)."""
    g.idle(i, until)
    assert g.r(i).role is Role.CANDIDATE
    prepares = [m for m in g.r(i).ready().messages_after_persist if isinstance(m, Prepare)]
    assert prepares
    for message in prepares:
        encode(message)
    return prepares


def _accept(g: Group, slot: int) -> Accept:
    """An Accept of `slot` from leader 1 to follower 3 at 1's ballot."""
    return one_slot_accept(1, 3, g.r(1).status().promised, slot, (b"x",))


def test_an_acceptor_votes_for_no_slot_more_than_max_slots_ahead_of_its_watermark() -> None:
    g = Group(3, fast=(1,))
    g.elect(1)
    watermark = g.r(3).status().chosen_watermark
    far, near = watermark + MAX_SLOTS_AHEAD + 1, watermark + MAX_SLOTS_AHEAD
    g.r(3).step(_accept(g, far))
    g.r(3).step(_accept(g, near))
    ready = g.process(3)
    assert far not in g.storage[3].load().accepted
    assert near in g.storage[3].load().accepted
    voted = [m.slots for m in ready.messages_after_persist if isinstance(m, Accepted)]
    assert voted == [(near,)]


def test_a_candidate_drops_a_promise_showing_a_slot_more_than_max_slots_ahead() -> None:
    """Taken, it would make the new leader propose a no-op for every slot up to it."""
    g = Group(3, fast=(1,))
    g.tick_all(0.0)
    g.tick(1, 0.5)
    assert g.r(1).role is Role.CANDIDATE
    ballot = g.r(1).status().promised
    first = g.r(1).status().chosen_watermark + 1

    def promise(src: int, slot: int) -> Promise:
        entry = AcceptedEntry(slot=slot, ballot=Ballot(1, src), value=(b"v",), chosen=False)
        return Promise(
            src=src,
            dst=1,
            ballot=ballot,
            from_slot=first,
            accepted=(entry,),
            chosen_watermark=0,
            log_start=1,
        )

    g.r(1).step(promise(2, first + MAX_SLOTS_AHEAD + 1))
    assert g.r(1).role is Role.CANDIDATE
    g.r(1).step(promise(3, first + MAX_SLOTS_AHEAD))
    assert g.r(1).role is Role.LEADER
    assert len(g.r(1).ready().persist.accepted) == MAX_SLOTS_AHEAD + 1
