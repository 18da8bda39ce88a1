"""A promise past `max_promise_bytes` of votes goes in parts (rule 18: Phase 1 in chunks).

A follower whose learning stalled (it missed one slot: rule 4 stops at the gap, and its
catch-up is paced) goes on voting under heavy writes, and every vote it does not know
chosen must travel in its next promise. Found by review: such a promise could pass the
64 MiB a peer message carries; the link then failed, dropping every group's messages
queued on it. The acceptor then promised nothing past the bound, which left the group
without a leader when every acceptor a quorum needs was past it. Now it cuts its promise
after the last vote that fits, and the candidate asks for the rest, part by part, at the
same ballot.
"""

from __future__ import annotations

from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import paxos.replica as replica_module
import tests.unit.paxos.test_replica_paths as paths
from paxos import Ballot, Role
from paxos.codec import encode
from paxos.messages import (
    Accept,
    AcceptedEntry,
    CatchUpReply,
    CatchUpRequest,
    Heartbeat,
    Message,
    Nack,
    Prepare,
    PreVote,
    PreVoteReply,
    Promise,
    SlotValue,
)
from paxos.replica import _wire_bytes as wire_bytes
from tests.unit.paxos.test_replica_paths import Group, between

BOUND = 2_400  # two votes of about 1,060 bytes each
VALUE = b"x" * 1_000
SLOTS = 10  # about 10.6 kB of votes replica 2 does not know chosen: five parts or more


def no_catchup(m: Message) -> bool:
    return not isinstance(m, (CatchUpRequest, CatchUpReply))


def one_command_slots(bound: int, **extra: object) -> Group:
    """Three replicas, leader 1 elected, one command of up to 1,100 bytes per slot."""
    g = Group(
        3,
        fast=(1,),
        max_batch_count=1,
        max_batch_bytes=1_100,
        max_inflight_bytes=2_000,
        max_promise_bytes=bound,
        **extra,
    )
    g.elect(1)
    return g


def group_with_a_stalled_learner(bound: int, **extra: object) -> Group:
    """Leader 1. Replica 2 misses the first write (chosen by 1 and 3), then 3 is cut off
    and 2 votes for SLOTS more writes without learning any (no catch-up reaches it)."""
    g = one_command_slots(bound, **extra)
    g.r(1).propose(VALUE + b"first")
    g.stabilize(keep=between(1, 3))
    g.heartbeat(1, keep=between(1, 3))
    for i in range(SLOTS):
        g.r(1).propose(VALUE + bytes([i]))
        g.stabilize(keep=lambda m: between(1, 2)(m) and no_catchup(m))
    g.heartbeat(1, keep=lambda m: between(1, 2)(m) and no_catchup(m))
    assert g.r(2).status().chosen_watermark < g.r(3).status().chosen_watermark
    assert g.r(1).status().chosen_watermark - g.r(3).status().chosen_watermark == SLOTS
    return g


def campaign_of_3(g: Group) -> None:
    """Leader 1 dies; replica 3's election timer runs out first, and its Prepare reaches 2."""
    g.crash(1)
    g.idle(2, 1.0)
    g.idle(3, 61.0)
    assert g.r(3).role is Role.CANDIDATE
    g.process_all()
    g.deliver(keep=between(2, 3))
    g.process(2)


def asked_for_a_further_part(**extra: object) -> tuple[Group, Prepare]:
    """Replica 3 campaigns; replica 2's first part came and 3 asked for the next (lost)."""
    g = group_with_a_stalled_learner(BOUND, **extra)
    campaign_of_3(g)
    g.deliver(keep=between(2, 3))
    g.process(3)
    (ask,) = [m for m in g.inflight if isinstance(m, Prepare) and m.dst == 2]
    g.inflight.clear()
    return g, ask


def promises_from(g: Group, src: int) -> list[Promise]:
    return [m for m in g.inflight if isinstance(m, Promise) and m.src == src]


def votes_bytes(promise: Promise) -> int:
    """The encoded bytes of the promise's votes (the message less its empty form)."""
    return len(encode(promise)) - len(encode(replace(promise, accepted=())))


def assert_every_value_kept(g: Group, written: list[tuple[bytes, ...]], *alive: int) -> None:
    """A new leader among `alive` gets one more write chosen; every replica of `alive` has
    every written value before it."""
    leader = next(i for i in alive if g.r(i).role is Role.LEADER)
    g.r(leader).propose(b"after")
    g.stabilize(keep=between(*alive))
    g.heartbeat(leader, keep=between(*alive))
    for i in alive:
        values = [v for v in g.chosen(i) if v and v != (b"",)]
        assert all(v in values for v in written), f"replica {i} lost a chosen value"
        assert g.chosen(i)[-1] == (b"after",)


def test_an_acceptor_past_the_bound_promises_in_parts_and_the_candidate_elects() -> None:
    g = group_with_a_stalled_learner(BOUND)
    campaign_of_3(g)
    (first,) = promises_from(g, 2)
    assert first.more_from > first.from_slot
    assert votes_bytes(first) <= BOUND
    assert g.r(2).status().promised == g.r(3).status().promised  # it holds the ballot
    parts = [first]

    def count_parts(m: Message) -> bool:
        if isinstance(m, Promise) and m.src == 2 and m is not first:
            parts.append(m)
        return between(2, 3)(m)

    g.stabilize(keep=count_parts)
    assert g.r(3).role is Role.LEADER
    assert g.r(3).status().phase1_parts == len(parts)  # what the node logs of its election
    assert not g.r(3)._phase1_best  # the votes went to the log, not kept twice
    assert len(parts) >= SLOTS // 2
    assert [p.from_slot for p in parts[1:]] == [p.more_from for p in parts[:-1]]
    assert parts[-1].more_from == 0
    assert all(votes_bytes(p) <= BOUND for p in parts)
    written = [(VALUE + b"first",)] + [(VALUE + bytes([i]),) for i in range(SLOTS)]
    assert_every_value_kept(g, written, 2, 3)


def test_under_the_bound_the_same_acceptor_promises_in_one_message() -> None:
    g = group_with_a_stalled_learner(48 * 1024 * 1024)
    campaign_of_3(g)
    (promise,) = promises_from(g, 2)
    assert promise.more_from == 0
    assert sum(1 for e in promise.accepted if not e.chosen) >= SLOTS
    g.stabilize(keep=between(2, 3))
    assert g.r(3).role is Role.LEADER
    assert g.r(3).status().phase1_parts == 0


def test_a_new_leaders_recovery_goes_in_accepts_of_at_most_a_slots_bytes() -> None:
    """The first Accept of a new leader re-proposes every slot its promises showed (here 2's
    SLOTS votes): one message held them all, as many bytes as a quorum's promises together,
    past what a peer message carries. It is cut at `max_batch_bytes` of values."""
    g = group_with_a_stalled_learner(48 * 1024 * 1024)
    campaign_of_3(g)
    g.deliver(keep=between(2, 3))
    g.process_all()
    assert g.r(3).role is Role.LEADER
    accepts = [m for m in g.inflight if isinstance(m, Accept) and m.src == 3]
    recovered = {e.slot for m in accepts for e in m.entries}
    assert len(recovered) >= SLOTS
    assert all(sum(len(b"".join(e.value)) for e in m.entries) <= 1_100 for m in accepts)
    assert max(len(m.entries) for m in accepts) < len(recovered)
    g.stabilize(keep=between(2, 3))
    g.heartbeat(3, keep=between(2, 3))
    written = [(VALUE + b"first",)] + [(VALUE + bytes([i]),) for i in range(SLOTS)]
    assert all(v in g.chosen(3) for v in written)


def test_votes_are_counted_as_encoded_not_by_their_commands_bytes() -> None:
    """Votes of many small commands: their commands' bytes are under the bound, but each
    command costs its field tag and length in the message too, which rule 18 counts."""
    bound = 2_000
    g = Group(
        3,
        fast=(1,),
        max_batch_count=10,
        max_batch_bytes=1_100,
        max_inflight_bytes=2_000,
        max_promise_bytes=bound,
        pipeline_window=1,
    )
    g.elect(1)
    g.r(1).propose(b"first")
    g.stabilize(keep=between(1, 3))
    g.heartbeat(1, keep=between(1, 3))
    for _ in range(20):  # 20 slots of 10 one-byte commands: 200 bytes, 2.2 kB encoded
        for j in range(10):
            g.r(1).propose(bytes([j]))
        g.stabilize(keep=lambda m: between(1, 2)(m) and no_catchup(m))
    campaign_of_3(g)
    (promise,) = promises_from(g, 2)
    assert promise.more_from  # cut, though all of 2's votes hold 210 bytes of commands
    assert votes_bytes(promise) <= bound


def test_two_followers_stalled_at_different_gaps_elect_a_leader() -> None:
    """The case that had no leader before the parts: leader 1 dies while each follower's
    learning is stopped at a different gap, so each holds, above the other's first unknown
    slot, more votes than one promise may carry. Neither could promise the other."""
    g = one_command_slots(BOUND)
    g.r(1).propose(VALUE + b"gap of 2")
    g.stabilize(keep=lambda m: between(1, 3)(m) and no_catchup(m))
    g.r(1).propose(VALUE + b"gap of 3")
    g.stabilize(keep=lambda m: between(1, 2)(m) and no_catchup(m))
    for i in range(SLOTS):
        g.r(1).propose(VALUE + bytes([i]))
        g.stabilize(keep=no_catchup)
    g.heartbeat(1, keep=no_catchup)
    for i in (2, 3):
        assert g.r(1).status().chosen_watermark - g.r(i).status().chosen_watermark > SLOTS
    g.crash(1)
    g.idle(2, 1.0)
    g.idle(3, 61.0)
    g.stabilize(keep=between(2, 3))
    written = [(VALUE + b"gap of 2",), (VALUE + b"gap of 3",)]
    written += [(VALUE + bytes([i]),) for i in range(SLOTS)]
    assert_every_value_kept(g, written, 2, 3)


def test_a_part_asked_under_a_ballot_the_acceptor_no_longer_holds_is_refused() -> None:
    """Between two parts the acceptor promised a higher ballot: its votes may have changed
    since the first part, so it sends no second one, and the candidate stands down."""
    g, ask = asked_for_a_further_part()
    assert ask.ballot == g.r(3).status().promised and ask.from_slot > 1
    higher = Ballot(ask.ballot.round + 1, 1)
    g.r(2).step(Prepare(src=1, dst=2, ballot=higher, from_slot=1))
    g.process(2)
    g.inflight.clear()
    g.r(2).step(ask)
    g.process(2)
    assert not promises_from(g, 2)
    (nack,) = [m for m in g.inflight if isinstance(m, Nack)]
    assert nack.promised == higher
    g.deliver(keep=between(2, 3))
    assert g.r(3).role is Role.FOLLOWER


def test_a_candidate_counts_a_promiser_once_its_last_part_came_and_drops_bad_parts() -> None:
    """Parts merge slot by slot (rule 3 over every part); a copy of an earlier part, a part
    it did not ask for, and a part with a vote outside its slots are dropped."""
    g = Group(3, fast=(1,))
    g.tick_all(0.0)
    g.tick(1, 0.5)
    assert g.r(1).role is Role.CANDIDATE
    ballot = g.r(1).status().promised
    g.process(1)
    g.inflight.clear()

    def part(slots: range, more_from: int, src: int = 2) -> Promise:
        entries = tuple(
            AcceptedEntry(slot=s, ballot=Ballot(1, 3), value=(b"v%d" % s,), chosen=False)
            for s in slots
        )
        return Promise(
            src=src,
            dst=1,
            ballot=ballot,
            from_slot=slots.start,
            accepted=entries,
            chosen_watermark=0,
            log_start=1,
            more_from=more_from,
        )

    def asks() -> list[Prepare]:
        return [m for m in g.r(1).ready().messages if isinstance(m, Prepare)]

    g.r(1).step(part(range(1, 3), more_from=3))
    assert [(m.dst, m.from_slot, m.ballot) for m in asks()] == [(2, 3, ballot)]
    g.process(1)
    g.r(1).step(part(range(1, 3), more_from=3))  # a copy of the first part
    g.r(1).step(part(range(5, 6), more_from=0))  # not the part asked for
    g.r(1).step(part(range(3, 6), more_from=5))  # slot 5 is not below its more_from
    g.r(1).step(part(range(3, 6), more_from=0, src=3))  # 3's must start at slot 1
    assert not asks()
    assert g.r(1).role is Role.CANDIDATE
    g.r(1).step(part(range(3, 5), more_from=0))
    assert g.r(1).role is Role.LEADER
    accepted = g.r(1).ready().persist.accepted
    assert [accepted[s] for s in range(1, 5)] == [(ballot, (b"v%d" % s,)) for s in range(1, 5)]


def test_an_acceptors_timer_moves_on_with_each_ask_for_a_further_part_not_with_a_copy() -> None:
    """A big Phase 1 runs part by part: each new ask shows the candidate getting on, so the
    acceptor does not campaign meanwhile; a copy of an old ask shows nothing."""
    g, ask = asked_for_a_further_part()
    # Replica 2's timer runs 50-60 s (SLOW); 20 s on, a reset lands past the old deadline.
    g.tick(2, g.now[2] + 20.0)
    before = g.r(2).next_deadline()
    g.r(2).step(ask)
    moved = g.r(2).next_deadline()
    assert moved > before
    g.tick(2, g.now[2] + 20.0)
    g.r(2).step(ask)
    assert g.r(2).next_deadline() == moved


@pytest.mark.parametrize("pre_vote", [False, True])
def test_a_part_dropped_by_rule_15_leaves_the_group_a_leader(
    monkeypatch: pytest.MonkeyPatch, pre_vote: bool
) -> None:
    """Found by review: a candidate that dropped a part (a vote too far ahead of its first
    slot, rule 15) asked for it again every heartbeat interval, each ask resetting the
    acceptor's election timer, so the acceptor, which could win, never campaigned (no
    leader in 20 s; with one whole promise, replica 2 led after about 1 s)."""
    monkeypatch.setattr(replica_module, "MAX_SLOTS_AHEAD", 8)
    monkeypatch.setattr(
        paths, "FAST", {"election_timeout_min_s": 0.15, "election_timeout_max_s": 0.3}
    )
    g = Group(3, fast=(2, 3), max_promise_bytes=200, pre_vote=pre_vote)
    g.crash(1)  # the old leader, for good
    g.tick_all(0.0)
    # 2 learned slots 1-4 chosen and voted for 5-12; 3 was cut off from the start, so 2's
    # votes from 3's first slot on reach past 3's limit (MAX_SLOTS_AHEAD).
    old = Ballot(1, 1)
    for slots in (range(1, 5), range(5, 13)):
        entries = tuple(SlotValue(slot=s, value=(b"x" * 100,)) for s in slots)
        g.r(2).step(Accept(src=1, dst=2, ballot=old, entries=entries, chosen_watermark=4))
    g.process_all()
    for seq, now in enumerate((0.1, 0.2, 0.3), start=1):  # 1's heartbeats reach 2 only
        g.tick(2, now)
        g.r(2).step(Heartbeat(src=1, dst=2, ballot=old, chosen_watermark=4, seq=seq))
        g.process_all()
    g.inflight.clear()
    g.tick(3, 0.3)
    g.tick(2, 0.31)  # 2's lease promise to 1 runs from here (rule 6)...
    g.tick(2, 0.45)  # ...and is over here
    g.tick(3, 0.45)
    g.r(3)._campaign()  # 3's timer runs out first
    now = 0.45
    while now < 20.0 and not any(g.r(i).role is Role.LEADER for i in (2, 3)):
        now = round(now + 0.01, 2)
        g.tick(3, now)
        g.tick(2, now)
        g.process_all()
        for _ in range(5):  # the messages of 50 ms: a few round trips each step
            g.deliver(keep=between(2, 3))
            g.process_all()
    assert g.r(2).role is Role.LEADER, f"no leader by {now} s"


def test_a_lost_part_is_asked_for_again_after_two_heartbeat_intervals() -> None:
    g, ask = asked_for_a_further_part()  # the ask is lost
    asked_at = g.now[3]
    g.tick(3, asked_at + 0.09)
    g.process(3)
    assert not [m for m in g.inflight if isinstance(m, Prepare)]
    assert g.r(3).next_deadline() <= asked_at + 0.1
    g.tick(3, asked_at + 0.1)
    g.process(3)
    (again,) = [m for m in g.inflight if isinstance(m, Prepare)]
    assert (again.dst, again.ballot, again.from_slot) == (2, ask.ballot, ask.from_slot)
    g.stabilize(keep=between(2, 3))
    assert g.r(3).role is Role.LEADER


def test_parts_go_by_slot_whatever_order_the_votes_came_in() -> None:
    g = one_command_slots(BOUND)
    acceptor = g.r(2)
    for slot in (9, 3, 7, 1, 5, 2, 8, 4, 6):
        acceptor._log[slot] = (Ballot(1, 1), (VALUE + bytes([slot]),))
    slots, start = [], 1
    while True:
        part = acceptor._make_promise(3, acceptor.status().promised, start)
        slots += [e.slot for e in part.accepted]
        if not part.more_from:
            break
        start = part.more_from
    assert slots == list(range(1, 10))


def test_a_phase_1_in_parts_is_not_cut_short_by_the_replicas_it_does_not_ask() -> None:
    """Found by review: 5 voters, 1 (the old leader) and 5 dead, replica 3 holding 20 votes
    of one part each. Replicas 2 and 4 promise at once, and their timers then run out
    while 2 or 4 still asks 3 for parts: they took turns cutting each other's Phase 1
    short, and 3, whose timer every ask reset, never campaigned (79 campaigns, no leader
    in 10 s). Now whoever takes part in a Phase 1 in parts refuses the others' pre-votes
    meanwhile."""
    g = Group(5, fast=(2, 3, 4), max_promise_bytes=200, pre_vote=True)
    g.crash(1)
    g.crash(5)
    g.tick_all(0.0)
    entries = tuple(SlotValue(slot=s, value=(b"x" * 100,)) for s in range(1, 21))
    g.r(3).step(Accept(src=1, dst=3, ballot=Ballot(1, 1), entries=entries, chosen_watermark=0))
    g.process_all()
    g.inflight.clear()
    alive = (2, 3, 4)
    campaigns: set[Ballot] = set()
    now = 0.0
    while now < 10.0 and not any(g.r(i).role is Role.LEADER for i in alive):
        now = round(now + 0.01, 2)  # a message takes 10 ms
        for i in alive:
            g.tick(i, now)
        g.process_all()
        campaigns |= {g.r(i).status().promised for i in alive if g.r(i).role is Role.CANDIDATE}
        g.deliver(keep=between(*alive))
        g.process_all()
    assert any(g.r(i).role is Role.LEADER for i in alive), f"no leader in 10 s: {campaigns}"
    assert now < 1.0 and max(b.round for b in campaigns) <= 3, (now, campaigns)


def pre_vote_granted(g: Group, voter: int, asker: int) -> bool:
    g.inflight.clear()
    g.r(voter).step(PreVote(src=asker, dst=voter, ballot=g.r(asker).status().promised, seq=9))
    g.process(voter)
    (reply,) = [m for m in g.inflight if isinstance(m, PreVoteReply)]
    g.inflight.clear()
    return reply.granted


def test_the_candidate_and_the_acceptor_of_a_phase_1_in_parts_refuse_a_third_pre_vote() -> None:
    g, ask = asked_for_a_further_part()
    assert not pre_vote_granted(g, 3, asker=1)  # the candidate, once a part came
    g.r(2).step(ask)
    g.process(2)
    g.inflight.clear()
    assert not pre_vote_granted(g, 2, asker=1)  # the acceptor, once asked for more
    assert pre_vote_granted(g, 2, asker=3)  # but not its own candidate's
    # For the shortest election timeout only (50 s here: replicas 2 and 3 are SLOW).
    g.tick(2, g.now[2] + 50.0)
    assert pre_vote_granted(g, 2, asker=1)


def test_a_higher_promise_ends_the_acceptors_refusal_at_once() -> None:
    g, ask = asked_for_a_further_part()
    g.r(2).step(ask)
    g.process(2)
    higher = Ballot(ask.ballot.round + 1, 1)
    g.r(2).step(Prepare(src=1, dst=2, ballot=higher, from_slot=1))
    g.process(2)
    assert pre_vote_granted(g, 2, asker=1)


def test_a_candidate_whose_timer_runs_out_asks_no_more_at_that_ballot() -> None:
    """With pre-vote, a candidate whose timer ran out keeps its ballot while it asks whether
    it may campaign again; its part asks end there (found by review: a candidate whose
    pre-votes kept failing asked every 100 ms for good, each ask a part built)."""
    g, ask = asked_for_a_further_part()
    g.r(3).config = replace(g.r(3).config, pre_vote=True)
    g.idle(3, g.r(3)._election_deadline - 0.001)  # asking again, as it should
    g.process(3)
    g.inflight.clear()
    g.idle(3, g.now[3] + 0.5)  # its pre-vote starts; nobody answers
    g.process(3)
    assert g.r(3).status().promised == ask.ballot
    assert any(isinstance(m, PreVote) for m in g.inflight)
    assert not [m for m in g.inflight if isinstance(m, Prepare)]


@settings(max_examples=300, deadline=None)
@given(
    slots=st.sets(st.integers(min_value=1, max_value=60), max_size=40),
    log_start=st.integers(min_value=1, max_value=30),
    watermark=st.integers(min_value=0, max_value=60),
    from_slot=st.integers(min_value=0, max_value=70),
    omit_chosen=st.booleans(),
    bound=st.integers(min_value=1, max_value=3_000),
)
def test_a_part_is_the_sorted_votes_from_its_slot_cut_at_the_bound(
    slots: set[int],
    log_start: int,
    watermark: int,
    from_slot: int,
    omit_chosen: bool,
    bound: int,
) -> None:
    """`_votes_from` goes slot by slot from the first held; the reference sorts the log."""
    g = Group(3, fast=(1,))
    acceptor = g.r(2)
    acceptor._log = {
        s: (Ballot(1, 1 + s % 3), (b"v" * (s * 7 % 200),)) for s in slots if s >= log_start
    }
    acceptor._log_start = log_start
    acceptor._chosen_watermark = max(watermark, log_start - 1)
    wanted = [
        s
        for s in sorted(acceptor._log)
        if s >= from_slot and not (omit_chosen and s <= acceptor._chosen_watermark)
    ]
    entries, more_from = acceptor._votes_from(from_slot, omit_chosen, bound)
    taken, size = [], 0
    for s in wanted:
        size += wire_bytes(acceptor._log[s][1])
        if size > bound and taken:
            break
        taken.append(s)
    assert [e.slot for e in entries] == taken
    assert more_from == (wanted[len(taken)] if len(taken) < len(wanted) else 0)
    assert all(e.chosen == (e.slot <= acceptor._chosen_watermark) for e in entries)
