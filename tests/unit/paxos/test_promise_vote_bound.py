"""An acceptor promises nothing when its promise's votes pass `max_promise_bytes` (rule 18).

A follower whose learning stalled (it missed one slot: rule 4 stops at the gap, and its
catch-up is paced) goes on voting under heavy writes, and every vote it does not know
chosen must travel in its next promise. Found by review: such a promise could pass the
64 MiB a peer message carries; the link then failed, dropping every group's messages
queued on it, and the candidate's re-sent Prepare made it fail again. Now the acceptor
promises nothing past the bound (neither its promise nor its answer: as if the Prepare
were lost), asks the candidate for the chosen slots it lacks, and the group still elects
a leader that keeps every chosen value.
"""

from __future__ import annotations

from paxos import Role
from paxos.messages import Accept, CatchUpReply, CatchUpRequest, Message, Promise
from tests.unit.paxos.test_replica_paths import Group, between

BOUND = 8_000  # at least the config's promise_floor (7,656 bytes here)
VALUE = b"x" * 1_000
SLOTS = 10  # about 10.6 kB of votes replica 2 does not know chosen: past the bound


def no_catchup(m: Message) -> bool:
    return not isinstance(m, (CatchUpRequest, CatchUpReply))


def one_command_slots(bound: int) -> Group:
    """Three replicas, leader 1 elected, one command of up to 1,100 bytes per slot."""
    g = Group(
        3,
        fast=(1,),
        max_batch_count=1,
        max_batch_bytes=1_100,
        max_inflight_bytes=2_000,
        max_promise_bytes=bound,
    )
    g.elect(1)
    return g


def group_with_a_stalled_learner(bound: int) -> Group:
    """Leader 1. Replica 2 misses the first write (chosen by 1 and 3), then 3 is cut off
    and 2 votes for SLOTS more writes without learning any (no catch-up reaches it)."""
    g = one_command_slots(bound)
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


def test_an_acceptor_past_the_bound_promises_nothing_and_asks_for_the_chosen_slots() -> None:
    g = group_with_a_stalled_learner(BOUND)
    promised_before = g.r(2).status().promised
    campaign_of_3(g)
    assert not [m for m in g.inflight if isinstance(m, Promise) and m.src == 2]
    assert g.r(2).status().promised == promised_before  # it blocks no one either
    (asked,) = [m for m in g.inflight if isinstance(m, CatchUpRequest) and m.src == 2]
    assert asked.dst == 3
    # 3 cannot lead without 2; 2, caught up as far as 3 knows, then campaigns itself
    # (its own votes need no message) and re-proposes every value it voted for.
    g.stabilize(keep=between(2, 3))
    g.idle(2, 122.0)
    g.stabilize(keep=between(2, 3))
    leader = next(i for i in (2, 3) if g.r(i).role is Role.LEADER)
    g.r(leader).propose(b"after")
    g.stabilize(keep=between(2, 3))
    g.heartbeat(leader, keep=between(2, 3))
    written = [(VALUE + b"first",)] + [(VALUE + bytes([i]),) for i in range(SLOTS)]
    for i in (2, 3):
        values = [v for v in g.chosen(i) if v and v != (b"",)]
        assert all(v in values for v in written), f"replica {i} lost a chosen value"
        assert g.chosen(i)[-1] == (b"after",)


def test_under_the_bound_the_same_acceptor_promises_as_before() -> None:
    g = group_with_a_stalled_learner(48 * 1024 * 1024)
    campaign_of_3(g)
    (promise,) = [m for m in g.inflight if isinstance(m, Promise) and m.src == 2]
    assert sum(1 for e in promise.accepted if not e.chosen) >= SLOTS
    g.stabilize(keep=between(2, 3))
    assert g.r(3).role is Role.LEADER


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
    g = Group(
        3,
        fast=(1,),
        max_batch_count=10,
        max_batch_bytes=1_100,
        max_inflight_bytes=2_000,
        max_promise_bytes=12_000,  # the floor here: 2,000 + 2 x 1,100 + 64 x (48 + 6 x 10)
        pipeline_window=1,
    )
    g.elect(1)
    g.r(1).propose(b"first")
    g.stabilize(keep=between(1, 3))
    g.heartbeat(1, keep=between(1, 3))
    for _ in range(130):  # 130 slots of 10 one-byte commands: 1,300 bytes, 15 kB encoded
        for j in range(10):
            g.r(1).propose(bytes([j]))
        g.stabilize(keep=lambda m: between(1, 2)(m) and no_catchup(m))
    campaign_of_3(g)
    assert not [m for m in g.inflight if isinstance(m, Promise) and m.src == 2]


def test_an_acceptor_past_the_bound_by_its_chosen_slots_promises_them_left_out() -> None:
    """Rule 18's first resort: votes under the bound, but not with the chosen slots the
    candidate lacks (under `max_batch_bytes`, so rule 16 kept them). The acceptor promises
    with them left out (`chosen_omitted`), not nothing: the candidate catches up first."""
    unchosen = 7  # about 7.4 kB of votes: under the bound, past it with 1 kB chosen more
    g = one_command_slots(BOUND)
    g.r(1).propose(VALUE + b"known")  # chosen by 1 and 2; 2 learns it, 3 never sees it
    g.stabilize(keep=between(1, 2))
    g.heartbeat(1, keep=between(1, 2))
    g.r(1).propose(VALUE + b"gap")  # chosen by 1 and 3: 2's learning stops here
    g.stabilize(keep=lambda m: between(1, 3)(m) and no_catchup(m))
    for i in range(unchosen):
        g.r(1).propose(VALUE + bytes([i]))
        g.stabilize(keep=lambda m: between(1, 2)(m) and no_catchup(m))
    g.heartbeat(1, keep=lambda m: between(1, 2)(m) and no_catchup(m))
    assert g.r(2).status().chosen_watermark > g.r(3).status().chosen_watermark
    campaign_of_3(g)
    (promise,) = [m for m in g.inflight if isinstance(m, Promise) and m.src == 2]
    assert promise.chosen_omitted
    assert not [e for e in promise.accepted if e.chosen]
    assert sum(1 for e in promise.accepted if not e.chosen) == unchosen
    g.stabilize(keep=between(2, 3))
    g.idle(2, 122.0)
    g.idle(3, 122.0)
    g.stabilize(keep=between(2, 3))
    leader = next(i for i in (2, 3) if g.r(i).role is Role.LEADER)
    g.r(leader).propose(b"after")
    g.stabilize(keep=between(2, 3))
    g.heartbeat(leader, keep=between(2, 3))
    written = [(VALUE + b"known",), (VALUE + b"gap",)]
    written += [(VALUE + bytes([i]),) for i in range(unchosen)]
    for i in (2, 3):
        values = [v for v in g.chosen(i) if v and v != (b"",)]
        assert all(v in values for v in written), f"replica {i} lost a chosen value"
        assert g.chosen(i)[-1] == (b"after",)
