"""The replica's tricky paths, one hand-driven scenario each (etcd raft_test.go style).

`Group` joins replicas by a list of in-flight messages that a test delivers, drops, duplicates
or reorders explicitly, a MemoryStorage per replica, and a list of applied slots per replica.
`process(i)` executes one Ready in the order of paxos/ready.py; `crash(i)` and `restart(i)`
rebuild a replica from its storage and its (durable) applied list. Each replica has its own
`now`; time only moves when a test ticks.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Callable

import pytest

from paxos import (
    NOOP,
    Ballot,
    DurableState,
    InvariantViolation,
    MemoryStorage,
    NotLeader,
    PersistBatch,
    Ready,
    Replica,
    ReplicaConfig,
    Role,
    Value,
)
from paxos.messages import (
    Accept,
    AcceptedEntry,
    CatchUpReply,
    CatchUpRequest,
    Heartbeat,
    InstallSnapshot,
    Message,
    Nack,
    Prepare,
    Promise,
    SlotValue,
)

FAST = dict(election_timeout_min_s=0.15, election_timeout_max_s=0.16)
SLOW = dict(election_timeout_min_s=50.0, election_timeout_max_s=60.0)
LEASE = 0.12


def config(node_id: int, voters: tuple[int, ...], fast: bool, **extra: object) -> ReplicaConfig:
    """The paths below follow each Accept, so they send to every follower unless a test asks
    for thrifty Accepts (`thrifty_accepts=True`); and a timer that runs out starts a campaign
    at once unless a test asks for a pre-vote first (`pre_vote=True`)."""
    settings = {**(FAST if fast else SLOW), "thrifty_accepts": False, "pre_vote": False, **extra}
    return ReplicaConfig(node_id=node_id, voters=voters, **settings)  # type: ignore[arg-type]


class Group:
    """Replicas of one group joined by an explicit message list."""

    def __init__(self, n: int = 3, fast: tuple[int, ...] = (1,), **extra: object) -> None:
        self.voters = tuple(range(1, n + 1))
        self.fast = fast
        self.extra = extra
        self.storage = {i: MemoryStorage() for i in self.voters}
        # Applied slots per replica, and the durable copy (what survives a crash).
        self.applied: dict[int, list[tuple[int, Value]]] = {i: [] for i in self.voters}
        self.replicas: dict[int, Replica] = {}
        self.now = dict.fromkeys(self.voters, 0.0)
        self.inflight: list[Message] = []
        self.readies: dict[int, list[Ready]] = {i: [] for i in self.voters}
        for i in self.voters:
            self._boot(i)

    def _extra(self, i: int) -> dict[str, object]:
        """Config fields of replica i beyond the defaults."""
        return self.extra

    def _boot(self, i: int) -> None:
        cfg = config(i, self.voters, i in self.fast, **self._extra(i))
        index = self.applied[i][-1][0] if self.applied[i] else 0
        self.replicas[i] = Replica(cfg, self.storage[i].load(), index, random.Random(i))

    def r(self, i: int) -> Replica:
        return self.replicas[i]

    # ------------------------------------------------------------------ time

    def tick(self, i: int, now: float) -> None:
        self.now[i] = now
        self.r(i).tick(now)

    def tick_all(self, now: float) -> None:
        for i in self.voters:
            self.tick(i, now)

    def idle(self, i: int, until: float, step: float = 0.01) -> None:
        """Tick `i` every `step` seconds up to `until`, stepping nothing (a silent network)."""
        t = self.now[i]
        while t + step < until:
            t += step
            self.tick(i, t)
        self.tick(i, until)

    # ------------------------------------------------------------------ readies

    def process(self, i: int) -> Ready:
        """Execute one Ready of replica i: send, persist, send after persist, apply, advance."""
        replica = self.r(i)
        ready = replica.ready()
        self.inflight.extend(ready.messages)
        if not ready.persist.is_empty():
            self.storage[i].save(ready.persist)
        self.inflight.extend(ready.messages_after_persist)
        if ready.snapshot is not None:
            self.applied[i] = _decode(ready.snapshot.data)
        for entry in ready.committed:
            last = self.applied[i][-1][0] if self.applied[i] else 0
            assert entry.slot == last + 1, "applied out of order"
            self.applied[i].append((entry.slot, entry.value))
        for peer in ready.snapshot_requests:
            replica.send_snapshot(peer, self.applied[i][-1][0], _encode(self.applied[i]))
        replica.advance(ready)
        self.readies[i].append(ready)
        return ready

    def process_all(self) -> None:
        for i in self.voters:
            while self.r(i).has_ready():
                self.process(i)

    def deliver(self, keep: Callable[[Message], bool] = lambda m: True) -> int:
        """Step every in-flight message `keep` accepts (others are dropped); returns count."""
        batch, self.inflight = self.inflight, []
        delivered = 0
        for msg in batch:
            if keep(msg):
                self.r(msg.dst).step(msg)
                delivered += 1
        return delivered

    def stabilize(self, keep: Callable[[Message], bool] = lambda m: True) -> None:
        self.process_all()
        for _ in range(100):
            if not self.inflight:
                return
            self.deliver(keep)
            self.process_all()
        raise AssertionError("no quiescence")

    # ------------------------------------------------------------------ faults

    def crash(self, i: int) -> None:
        self.storage[i].crash()
        self.inflight = [m for m in self.inflight if m.dst != i]

    def restart(self, i: int, now: float) -> None:
        self._boot(i)
        self.tick(i, now)

    def elect(self, i: int, now: float = 0.2) -> None:
        """Start every replica at 0, then let `i` campaign at `now` and win."""
        self.tick_all(0.0)
        for j in self.voters:
            # Others: past their restart lease block (0.12 s), before any election timeout.
            self.tick(j, now if j == i else 0.13)
        if not self.r(i).config.pre_vote:
            assert self.r(i).role is Role.CANDIDATE
        self.stabilize()
        assert self.r(i).role is Role.LEADER

    def settle_among(self, *nodes: int) -> None:
        """The others cut off: tick `nodes` (in this order) silently up to 1 s, past their
        election timeouts, then let them exchange messages only with each other."""
        for i in nodes:
            self.idle(i, 1.0)
        self.stabilize(keep=between(*nodes))

    def heartbeat(self, leader: int, keep: Callable[[Message], bool] = lambda m: True) -> None:
        """Let the leader's heartbeat timer fire (the followers learn the watermark)."""
        self.tick(leader, self.now[leader] + 0.06)
        self.stabilize(keep)

    def chosen(self, i: int) -> list[Value]:
        return [value for _, value in self.applied[i]]


def _encode(applied: list[tuple[int, Value]]) -> bytes:
    return repr(applied).encode()


def _decode(data: bytes) -> list[tuple[int, Value]]:
    import ast

    return list(ast.literal_eval(data.decode()))


def one_slot_accept(
    src: int, dst: int, ballot: Ballot, slot: int, value: Value, chosen_watermark: int = 0
) -> Accept:
    """An Accept of one slot, as a leader at `ballot` sends it."""
    return Accept(
        src=src,
        dst=dst,
        ballot=ballot,
        entries=(SlotValue(slot=slot, value=value),),
        chosen_watermark=chosen_watermark,
    )


def to(*dsts: int) -> Callable[[Message], bool]:
    return lambda m: m.dst in dsts


def between(*nodes: int) -> Callable[[Message], bool]:
    return lambda m: m.src in nodes and m.dst in nodes


# ---------------------------------------------------------------------- leader change


def test_value_accepted_by_a_minority_is_reproposed_if_in_the_promise_quorum() -> None:
    """Paxos Made Simple §2.2: a new leader re-proposes what a promiser accepted."""
    g = Group(3, fast=(1, 3))
    g.elect(1)
    g.r(1).propose(b"x")
    ready = g.r(1).ready()  # the leader sends its Accepts, then crashes before persisting
    assert {m.dst for m in ready.messages if isinstance(m, Accept)} == {2, 3}
    g.inflight = [m for m in ready.messages if m.dst == 2]  # only node 2 hears it
    g.crash(1)
    g.deliver()
    g.process(2)  # node 2 durably accepted (ballot of 1, x) and answers a dead leader
    assert g.storage[2].load().accepted[1][1] == (b"x",)
    g.inflight.clear()
    # Node 3 campaigns; its promise quorum {3, 2} includes the minority that accepted x.
    g.idle(2, 1.0)
    g.idle(3, 1.0)
    assert g.r(3).role is Role.CANDIDATE
    g.stabilize(keep=between(2, 3))
    assert g.r(3).role is Role.LEADER
    g.heartbeat(3, keep=between(2, 3))
    assert g.chosen(3) == [(b"x",)]
    assert g.chosen(2) == [(b"x",)]


def test_a_chosen_value_survives_a_leader_change_whatever_the_quorum() -> None:
    for other in (1, 2):
        g = Group(3, fast=(1, 3))
        g.elect(1)
        g.r(1).propose(b"v")
        g.stabilize(keep=between(1, 2))  # chosen by {1, 2}; node 3 heard nothing
        assert g.chosen(1) == [(b"v",)]
        g.settle_among(other, 3)
        assert g.r(3).role is Role.LEADER
        assert g.chosen(3) == [(b"v",)]


def test_holes_are_filled_with_noops() -> None:
    """Paxos Made Simple §3: a new leader fills slots no promiser accepted with no-ops."""
    g = Group(3, fast=(1, 2), pipeline_window=8, max_batch_count=1)
    g.elect(1)
    for command in (b"a", b"b", b"c"):
        g.r(1).propose(command)
    g.process(1)
    # Node 2 hears slots 1 and 3 only; nobody else hears anything.
    g.inflight = [
        Accept(
            src=m.src,
            dst=m.dst,
            ballot=m.ballot,
            entries=tuple(e for e in m.entries if e.slot != 2),
            chosen_watermark=m.chosen_watermark,
        )
        for m in g.inflight
        if isinstance(m, Accept) and m.dst == 2
    ]
    g.deliver()
    g.process(2)
    g.inflight.clear()
    g.crash(1)
    g.settle_among(3, 2)
    assert g.r(2).role is Role.LEADER
    g.heartbeat(2, keep=between(2, 3))
    assert g.chosen(2) == [(b"a",), NOOP, (b"c",)]
    assert g.chosen(3) == [(b"a",), NOOP, (b"c",)]


def test_phase1_takes_the_highest_ballot_value_per_slot() -> None:
    """Rule 3: per slot, the value of the highest ballot among the promises, not the newest
    looking one and not the candidate's own."""
    g = Group(3, fast=(1,))
    g.tick_all(0.0)
    g.tick(1, 0.5)
    assert g.r(1).role is Role.CANDIDATE
    ballot = g.r(1).status().promised
    low, high = Ballot(1, 2), Ballot(2, 3)
    promise = Promise(
        src=2,
        dst=1,
        ballot=ballot,
        from_slot=1,
        accepted=(
            AcceptedEntry(slot=1, ballot=low, value=(b"older",), chosen=False),
            AcceptedEntry(slot=2, ballot=high, value=(b"winner",), chosen=False),
            AcceptedEntry(slot=3, ballot=low, value=(b"only",), chosen=False),
        ),
        chosen_watermark=0,
        log_start=1,
    )
    # Pretend node 1 itself had voted for slot 1 at a higher ballot and slot 2 at a lower one.
    g.r(1)._log[1] = (high, (b"mine-high",))
    g.r(1)._log[2] = (low, (b"mine-low",))
    g.r(1)._merge_votes(g.r(1)._votes_from(1)[0])
    g.r(1).step(promise)
    assert g.r(1).role is Role.LEADER
    ready = g.r(1).ready()
    accepted = ready.persist.accepted
    assert accepted[1] == (ballot, (b"mine-high",))
    assert accepted[2] == (ballot, (b"winner",))
    assert accepted[3] == (ballot, (b"only",))


def test_a_value_known_chosen_wins_over_any_ballot() -> None:
    g = Group(3, fast=(1,))
    g.tick_all(0.0)
    g.tick(1, 0.5)
    ballot = g.r(1).status().promised
    promise = Promise(
        src=2,
        dst=1,
        ballot=ballot,
        from_slot=1,
        accepted=(AcceptedEntry(slot=1, ballot=Ballot(1, 2), value=(b"c",), chosen=True),),
        chosen_watermark=1,
        log_start=1,
    )
    g.r(1)._log[1] = (Ballot(5, 3), (b"not-chosen",))
    g.r(1)._merge_votes(g.r(1)._votes_from(1)[0])
    g.r(1).step(promise)
    assert g.r(1).ready().persist.accepted[1] == (ballot, (b"c",))


# ---------------------------------------------------------------------- stale leaders


def test_a_stale_leader_cannot_get_anything_chosen_and_drops_with_not_leader() -> None:
    g = Group(3, fast=(1, 2))
    g.elect(1)
    # Partition {1} | {2, 3}; node 2 becomes leader after the lease it promised expires.
    g.settle_among(3, 2)
    assert g.r(2).role is Role.LEADER
    assert g.r(1).role is Role.LEADER  # it has not noticed yet
    stale = g.r(1).propose(b"stale")
    g.process(1)
    g.inflight = [m for m in g.inflight if m.dst in (2, 3)]
    # Heal: the stale Accepts reach replicas that promised a higher ballot: Nack.
    g.deliver()
    g.process_all()
    nacks = [m for m in g.inflight if isinstance(m, Nack) and m.dst == 1]
    assert nacks and all(n.promised > n.ballot for n in nacks)
    g.deliver(to(1))
    assert g.r(1).role is Role.FOLLOWER
    assert g.r(1).leader_hint == 2
    # The slot the stale leader used gets chosen by the new leader; its proposal is dropped.
    g.r(2).propose(b"fresh")
    g.stabilize()
    g.heartbeat(2)
    g.heartbeat(2)
    dropped = [pid for ready in g.readies[1] for pid, _ in ready.dropped]
    errors = [exc for ready in g.readies[1] for _, exc in ready.dropped]
    assert dropped == [stale]
    assert all(isinstance(e, NotLeader) for e in errors)
    assert all(b"stale" not in value for value in g.chosen(2))
    assert g.chosen(1) == g.chosen(2) == g.chosen(3)


def test_a_partitioned_leader_steps_down_and_drops_its_queue() -> None:
    """Rule 8 (check-quorum): without acks from a quorum the leader stops accepting."""
    g = Group(3, fast=(1,), pipeline_window=1, max_batch_count=1)
    g.elect(1)
    g.r(1).propose(b"a")
    queued = g.r(1).propose(b"b")  # waits for the window
    g.process(1)
    g.inflight.clear()
    g.tick(1, 0.2 + g.r(1).config.election_timeout_max_s + 0.01)
    assert g.r(1).role is Role.FOLLOWER
    ready = g.process(1)
    assert [pid for pid, _ in ready.dropped] == [queued]
    with pytest.raises(NotLeader):
        g.r(1).propose(b"c")


def test_not_leader_carries_the_hint() -> None:
    g = Group(3, fast=(1,))
    g.elect(1)
    for follower in (2, 3):
        with pytest.raises(NotLeader) as info:
            g.r(follower).propose(b"x")
        assert info.value.leader_hint == 1
        with pytest.raises(NotLeader) as info:
            g.r(follower).read(7, 0.3)
        assert info.value.leader_hint == 1


# ---------------------------------------------------------------------- restarts


def test_a_restarted_acceptor_keeps_its_promise_and_its_votes() -> None:
    g = Group(3, fast=(1,))
    g.elect(1)
    g.r(1).propose(b"kept")
    g.stabilize()
    g.tick(1, 0.3)  # a heartbeat tells the followers the slot is chosen
    g.stabilize()
    promised = g.r(2).status().promised
    g.crash(2)
    g.restart(2, 5.0)
    assert g.r(2).status().promised == promised
    assert g.r(2).chosen_value(1) == (b"kept",)
    # A lower ballot is refused; a higher one learns the vote in the Promise.
    g.r(2).step(Prepare(src=3, dst=2, ballot=Ballot(0, 3), from_slot=1))
    assert any(isinstance(m, Nack) for m in g.r(2).ready().messages)
    g.tick(2, 5.0 + LEASE + 0.01)
    g.r(2).step(Prepare(src=3, dst=2, ballot=Ballot(promised.round + 1, 3), from_slot=1))
    promise = next(m for m in g.r(2).ready().messages_after_persist if isinstance(m, Promise))
    assert promise.accepted[0].value == (b"kept",)
    assert promise.accepted[0].ballot == promised


def test_a_candidates_round_is_durable_and_never_reused_after_a_restart() -> None:
    """Ballots are unique: a candidate persists its own round before its Prepares leave, so
    after a crash it campaigns above it. Reused, (round, node id) could name two proposals,
    and a follower's old vote under it would be learned as chosen where another value was."""
    g = Group(3)
    g.tick_all(0.0)
    g.tick(2, 0.13)
    g.tick(3, 0.13)
    g.tick(1, 0.2)
    assert g.r(1).role is Role.CANDIDATE
    ready = g.process(1)
    assert not [m for m in ready.messages if isinstance(m, Prepare)]
    assert [m for m in ready.messages_after_persist if isinstance(m, Prepare)]
    first = g.r(1).status().promised
    assert first.node_id == 1
    assert g.storage[1].load().promised == first
    g.inflight.clear()  # its Prepares are lost
    g.crash(1)
    g.restart(1, 10.0)
    g.idle(1, 12.0)
    assert g.r(1).role is Role.CANDIDATE
    g.process(1)
    again = {m.ballot for m in g.inflight if isinstance(m, Prepare)}
    assert again and all(b.round > first.round for b in again)


def test_unsynced_state_is_lost_and_nothing_was_answered_for_it() -> None:
    """Promises and Accepted leave only after their persist: a crash before it loses both."""
    g = Group(3, fast=(1,))
    g.elect(1)
    g.r(1).propose(b"x")
    g.process(1)
    g.deliver(to(2))
    ready = g.r(2).ready()
    assert ready.messages_after_persist  # the Accepted waits for the persist...
    g.storage[2].save(ready.persist, sync=False)
    g.crash(2)  # ...which never became durable, so it never left
    assert 1 not in g.storage[2].load().accepted


def test_a_restarted_follower_refuses_candidates_for_a_lease_duration() -> None:
    """Rule 6: it may have promised a lease before the crash and forgotten it."""
    g = Group(3, fast=(1,))
    g.elect(1)
    g.crash(2)
    g._boot(2)
    ballot = Ballot(g.r(1).status().promised.round + 1, 3)
    # Before its first tick it cannot measure anything: refused.
    g.r(2).step(Prepare(src=3, dst=2, ballot=ballot, from_slot=1))
    refused = g.r(2).ready().messages
    assert [m.lease_held for m in refused if isinstance(m, Nack)] == [True]
    g.tick(2, 10.0)
    g.r(2).step(Prepare(src=3, dst=2, ballot=ballot, from_slot=1))
    assert any(isinstance(m, Nack) and m.lease_held for m in g.r(2).ready().messages)
    g.tick(2, 10.0 + LEASE + 0.001)
    g.r(2).step(Prepare(src=3, dst=2, ballot=ballot, from_slot=1))
    assert any(isinstance(m, Promise) for m in g.r(2).ready().messages_after_persist)


def test_a_follower_measures_its_lease_promise_from_a_fresh_tick() -> None:
    """Rule 6: a heartbeat stepped with a stale `now` must not shorten the promise."""
    g = Group(3, fast=(1,))
    g.elect(1, now=0.2)
    leader_ballot = g.r(1).status().promised
    g.tick(2, 1.0)  # the follower's last tick
    # The heartbeat really arrives at 1.05 (the driver has not ticked since 1.0).
    g.r(2).step(Heartbeat(src=1, dst=2, ballot=leader_ballot, chosen_watermark=0, seq=99))
    g.r(2).ready()
    g.tick(2, 1.05)
    # The leader's lease from a round sent at ~1.05 lasts until 1.05 + LEASE - drift; the
    # follower must still refuse a candidate at 1.05 + LEASE - 0.001.
    g.tick(2, 1.05 + LEASE - 0.001)
    g.r(2).step(Prepare(src=3, dst=2, ballot=Ballot(leader_ballot.round + 1, 3), from_slot=1))
    assert any(isinstance(m, Nack) and m.lease_held for m in g.r(2).ready().messages)


# ---------------------------------------------------------------------- reads


def test_lease_read_is_immediate_read_index_waits_for_a_heartbeat_round() -> None:
    g = Group(3, fast=(1,))
    g.elect(1, now=0.2)
    g.r(1).propose(b"w")
    g.stabilize()
    assert g.r(1).has_valid_lease(0.2)
    g.r(1).read(1, 0.2)
    ready = g.process(1)
    assert [(r.read_id, r.index, r.via_lease) for r in ready.reads] == [(1, 1, True)]
    # Once the lease has run out, a read needs a fresh quorum round.
    later = 0.2 + LEASE
    assert not g.r(1).has_valid_lease(later)
    g.tick(1, later)
    g.r(1).read(2, later)
    ready = g.process(1)
    assert ready.reads == []
    heartbeats = [m for m in g.inflight if isinstance(m, Heartbeat)]
    assert {m.dst for m in heartbeats} == {2, 3}
    g.deliver(to(2))  # one follower acknowledges: with the leader, a quorum
    g.process(2)
    g.deliver(to(1))
    # The ack alone makes the Ready: a driver that waits for has_ready() (the node's cycle)
    # must not leave the confirmed read for the next heartbeat (found by review).
    assert g.r(1).has_ready()
    ready = g.process(1)
    assert [(r.read_id, r.index, r.via_lease) for r in ready.reads] == [(2, 1, False)]


def test_a_leaders_lease_ends_the_drift_margin_before_its_followers_promise_does() -> None:
    """Leases need disjointness: the followers refuse candidates for LEASE after they
    acknowledged a round, measured on their own clocks; the leader's lease from that round
    ends `lease_drift_s` earlier on its clock, so that a clock running slow by up to the
    drift never lets it serve a read after another leader could be elected."""
    drift = 0.02
    g = Group(3, fast=(1,), lease_drift_s=drift)
    g.elect(1, now=0.2)
    g.r(1).propose(b"w")
    g.stabilize()
    assert g.r(1).has_valid_lease(0.2 + LEASE - drift - 0.001)
    assert not g.r(1).has_valid_lease(0.2 + LEASE - drift)


def test_a_deposed_leader_never_answers_a_read_index_read() -> None:
    g = Group(3, fast=(1, 2))
    g.elect(1)
    g.settle_among(3, 2)
    assert g.r(2).role is Role.LEADER
    # Node 1 has not ticked since 0.2, so it has noticed nothing; its lease is over.
    assert g.r(1).role is Role.LEADER and not g.r(1).has_valid_lease(0.45)
    g.r(1).read(5, 0.45)
    g.stabilize()
    reads = [r for ready in g.readies[1] for r in ready.reads]
    dropped = [rid for ready in g.readies[1] for rid, _ in ready.dropped_reads]
    assert reads == [] and dropped == [5]


# ---------------------------------------------------------------------- messages


def test_duplicated_and_reordered_messages_change_nothing() -> None:
    reference = Group(3, fast=(1,), max_batch_count=1, pipeline_window=4)
    noisy = Group(3, fast=(1,), max_batch_count=1, pipeline_window=4)
    for g, noise in ((reference, False), (noisy, True)):
        g.elect(1)
        for i in range(6):
            g.r(1).propose(b"c%d" % i)
        g.process_all()
        for _ in range(50):
            if not g.inflight:
                break
            if noise:
                g.inflight = list(reversed(g.inflight + g.inflight))
            g.deliver()
            g.process_all()
        g.tick_all(0.3)
        g.stabilize()
    assert noisy.chosen(1) == reference.chosen(1)
    assert noisy.chosen(1) == noisy.chosen(2) == noisy.chosen(3)
    assert [c for v in noisy.chosen(1) for c in v] == [b"c%d" % i for i in range(6)]


def test_messages_for_someone_else_or_from_a_stranger_are_ignored() -> None:
    g = Group(3, fast=(1,))
    g.tick_all(0.0)
    g.r(2).step(Prepare(src=9, dst=2, ballot=Ballot(9, 9), from_slot=1))
    g.r(2).step(Prepare(src=3, dst=1, ballot=Ballot(9, 3), from_slot=1))
    assert not g.r(2).has_ready()


# ---------------------------------------------------------------------- snapshots


def test_snapshot_install_after_compaction() -> None:
    g = Group(3, fast=(1,), compact_threshold=4, compact_keep=1, max_batch_count=1)
    g.elect(1)
    for i in range(12):
        g.r(1).propose(b"c%d" % i)
        g.stabilize(keep=between(1, 2))  # node 3 is cut off
    assert g.r(1).status().log_start > 1  # the leader compacted
    g.tick_all(0.3)
    g.stabilize()  # node 3 asks to catch up, gets a snapshot, then the rest
    assert g.chosen(3) == g.chosen(1)
    installs = [ready for ready in g.readies[3] if ready.snapshot is not None]
    assert installs
    # Rule 11: the Ready carrying the snapshot does not truncate; the next one does.
    first = installs[0]
    assert first.persist.log_start is None
    after = g.readies[3][g.readies[3].index(first) + 1]
    assert after.persist.log_start == first.snapshot.index + 1


def test_nothing_else_is_handled_in_the_ready_that_carries_a_snapshot() -> None:
    g = Group(3, fast=(1,))
    g.tick_all(0.0)
    snap = _encode([(1, (b"a",)), (2, (b"b",))])
    g.r(3).step(InstallSnapshot(src=1, dst=3, ballot=Ballot(1, 1), index=2, data=snap))
    g.r(3).step(one_slot_accept(1, 3, Ballot(1, 1), 3, (b"c",), 3))
    ready = g.process(3)
    assert ready.snapshot is not None and ready.persist.is_empty()
    assert ready.messages_after_persist == []  # the Accept was dropped, not half-handled
    follow = g.process(3)
    assert follow.persist.log_start == 3 and follow.persist.chosen_watermark == 2


def test_a_restart_after_a_surviving_restore_finishes_the_install() -> None:
    """Rule 11: the restore reached the disk, the truncation did not."""
    storage = MemoryStorage()
    stale = Ballot(1, 2)
    storage.save(PersistBatch(promised=stale, accepted={1: (stale, (b"never-chosen",))}))
    cfg = config(3, (1, 2, 3), fast=False)
    replica = Replica(cfg, storage.load(), applied_index=5, rng=random.Random(0))
    assert replica.chosen_watermark == 5 and replica.status().log_start == 6
    # The stale vote at slot 1 must not come back as a "chosen" entry of a Promise.
    replica.tick(100.0)
    replica.tick(100.0 + LEASE + 0.01)
    replica.step(Prepare(src=1, dst=3, ballot=Ballot(9, 1), from_slot=1))
    ready = replica.ready()
    promise = next(m for m in ready.messages_after_persist if isinstance(m, Promise))
    assert promise.accepted == () and promise.log_start == 6
    assert ready.persist.log_start == 6 and ready.persist.chosen_watermark == 5


def test_an_application_below_the_compacted_log_is_refused() -> None:
    state = DurableState(log_start=10, chosen_watermark=12)
    with pytest.raises(InvariantViolation):
        Replica(config(1, (1, 2, 3), fast=False), state, 3, random.Random(0))


# ---------------------------------------------------------------------- driver contract


def test_has_ready_is_false_while_the_pipeline_window_is_full() -> None:
    """A driver loops `while has_ready()`: queued commands must not keep it spinning."""
    g = Group(3, fast=(1,), pipeline_window=1, max_batch_count=1)
    g.elect(1)
    g.r(1).propose(b"a")
    g.r(1).propose(b"b")
    g.process(1)  # slot for "a" in flight, "b" waits
    assert not g.r(1).has_ready()
    g.inflight.clear()


# ---------------------------------------------------------------------- leadership transfer


@pytest.mark.parametrize("follower_restarts", [False, True])
def test_a_reordered_handoff_heartbeat_cannot_reopen_an_abandoned_transfer(
    follower_restarts: bool,
) -> None:
    """Rule 9: after a transfer times out and the leader renews its lease, a delayed
    heartbeat of the abandoned transfer must not let the target in while that lease holds.

    With `follower_restarts` (rules 6 and 9, found by review): node 2, whose ack renewed
    that lease, restarts before the delayed rounds arrive, so it has forgotten the newest
    round it saw; its restart block must keep the target out instead."""
    g = Group(3, fast=(1,))
    g.elect(1, now=0.2)
    g.r(1).propose(b"w")
    g.stabilize()
    g.heartbeat(1)  # everyone caught up: the leader knows its followers' watermarks
    t = g.now[1]
    assert g.r(1).transfer_leadership(3)
    g.process(1)
    handoff = [m for m in g.inflight if isinstance(m, Heartbeat) and m.handoff_to == 3]
    assert {m.dst for m in handoff} == {2, 3}
    g.inflight.clear()  # both are delayed in the network
    # The transfer times out; node 2 keeps acknowledging, the leader keeps its quorum.
    while g.r(1).status().lease_until <= g.now[1] or g.now[1] < t + 0.2:
        g.tick(1, g.now[1] + 0.05)
        g.tick(2, g.now[1])
        g.stabilize(keep=between(1, 2))
    now = g.now[1]
    assert g.r(1).role is Role.LEADER and g.r(1).has_valid_lease(now)
    if follower_restarts:
        g.crash(2)
        g.restart(2, now)
    # The stale handoff heartbeats arrive now: node 3 campaigns, node 2 is asked to promise.
    g.inflight = handoff
    g.deliver()
    g.tick(3, now)
    g.process_all()
    g.stabilize(keep=lambda m: {m.src, m.dst} != {1, 3})  # 1 and 3 cannot talk
    holders = [i for i in (1, 2, 3) if g.r(i).has_valid_lease(now)]
    assert len(holders) <= 1, f"replicas {holders} hold leases at once"


# ---------------------------------------------------------------------- batching


def test_batches_respect_count_and_byte_limits_and_keep_proposal_ids() -> None:
    g = Group(3, fast=(1,), max_batch_count=3, max_batch_bytes=10, pipeline_window=2)
    g.elect(1)
    commands = [b"aaaa", b"bbbb", b"cc", b"dddddddddd", b"e", b"f", b"g", b"h"]
    ids = [g.r(1).propose(c) for c in commands]
    g.stabilize()
    for _ in range(5):
        g.heartbeat(1)
    values = g.chosen(1)
    # count <= 3, bytes <= 10 (a single command may fill a slot), order kept
    assert values == [(b"aaaa", b"bbbb", b"cc"), (b"dddddddddd",), (b"e", b"f", b"g"), (b"h",)]
    committed = {
        pid: command
        for ready in g.readies[1]
        for entry in ready.committed
        for pid, command in zip(entry.proposal_ids, entry.value, strict=True)
    }
    assert committed == dict(zip(ids, commands, strict=True))


# ---------------------------------------------------------------------- thrifty Accepts


def _accept_targets(ready: Ready) -> set[int]:
    return {m.dst for m in ready.messages if isinstance(m, Accept)}


def test_thrifty_accepts_go_to_a_quorum_the_other_follower_catches_up_in_bulk() -> None:
    g = Group(3, thrifty_accepts=True)
    g.elect(1)
    g.heartbeat(1)
    for value in (b"a", b"b", b"c"):
        g.r(1).propose(value)
        targets = _accept_targets(g.process(1))
        assert len(targets) == 1  # with the leader: a quorum
        g.stabilize()
    (fresh,) = targets
    (other,) = {2, 3} - targets
    assert g.chosen(1) == [(b"a",), (b"b",), (b"c",)]
    assert g.chosen(other) == []  # nothing was sent to it per slot
    g.heartbeat(1)  # both learn the watermark; the other asks once for every slot it lacks
    g.heartbeat(1)
    assert g.chosen(fresh) == g.chosen(other) == g.chosen(1)


def test_thrifty_accept_to_a_silent_follower_is_resent_to_the_others() -> None:
    g = Group(3, thrifty_accepts=True)
    g.elect(1)
    g.heartbeat(1)
    g.r(1).propose(b"x")
    (silent,) = _accept_targets(g.process(1))
    (other,) = {2, 3} - {silent}
    g.deliver(lambda m: m.dst != silent)  # its Accept is lost
    g.process_all()
    assert g.chosen(1) == []
    g.tick(1, g.now[1] + 0.06)  # a heartbeat interval later the slot goes to every non-voter
    g.stabilize(lambda m: silent not in (m.src, m.dst))
    assert g.chosen(1) == [(b"x",)]
    # The other follower answered last: the next slot's Accept goes to it.
    g.r(1).propose(b"y")
    assert _accept_targets(g.process(1)) == {other}


def test_a_catch_up_reply_is_bounded_by_bytes() -> None:
    g = Group(3, max_batch_bytes=1000)
    g.elect(1)
    g.heartbeat(1)
    for i in range(6):  # node 3 is cut off while six 400-byte slots are chosen
        g.r(1).propose(bytes([i]) * 400)
        g.stabilize(between(1, 2))
    assert len(g.chosen(1)) == 6 and g.chosen(3) == []
    replies: list[Message] = []
    for _ in range(10):  # healed: node 3 catches up from the heartbeats' watermark
        g.tick(1, g.now[1] + 0.06)
        g.process_all()
        for _ in range(5):
            replies += [m for m in g.inflight if isinstance(m, CatchUpReply)]
            g.deliver()
            g.process_all()
        if len(g.chosen(3)) == 6:
            break
    assert g.chosen(3) == g.chosen(1)
    assert replies and all(len(m.entries) <= 2 for m in replies)  # 2 x (400 + 64) <= 1000


# ---------------------------------------------------------------------- next_deadline


def test_a_leader_ticked_only_at_its_deadline_keeps_its_heartbeats_on_time() -> None:
    g = Group()
    g.elect(1)
    start = g.now[1]
    beats: list[float] = []
    while g.now[1] < start + 0.5:
        due = g.r(1).next_deadline()
        assert due > g.now[1] - 1e-9  # never a deadline it has already served
        g.tick(1, max(due, g.now[1]))
        seen = len(g.readies[1])
        g.stabilize()  # the followers acknowledge: the leader keeps its quorum contact
        if any(isinstance(m, Heartbeat) for r in g.readies[1][seen:] for m in r.messages):
            beats.append(g.now[1])
    gaps = [b - a for a, b in itertools.pairwise(beats)]
    interval = g.r(1).config.heartbeat_interval_s
    assert len(beats) >= 8 and all(abs(gap - interval) < 1e-6 for gap in gaps), gaps


def test_a_follower_ticked_only_at_its_deadline_campaigns_on_time() -> None:
    g = Group()
    g.tick_all(0.0)
    due = g.r(1).next_deadline()
    assert due > 0.0
    g.tick(1, due - 0.001)
    assert g.r(1).role is Role.FOLLOWER
    g.tick(1, due)
    assert g.r(1).role is Role.CANDIDATE
    assert g.r(1).next_deadline() > due  # the new election timer


def test_a_leader_ticked_only_at_its_deadlines_ends_an_unanswered_handoff_on_time() -> None:
    g = Group(3, fast=(1,))
    g.elect(1, now=0.2)
    g.heartbeat(1)
    assert g.r(1).transfer_leadership(3)
    ends_at = g.r(1)._handoff_deadline
    g.process(1)
    g.inflight.clear()  # the target never hears of it
    ticks: list[float] = []
    while g.r(1)._handoff_target is not None and len(ticks) < 50:
        due = g.r(1).next_deadline()
        assert due <= ends_at  # the handoff's end is one of the deadlines
        g.tick(1, max(due, g.now[1]))
        ticks.append(g.now[1])
        g.stabilize(keep=between(1, 2))
    assert g.r(1)._handoff_target is None and ticks[-1] == ends_at
    assert g.r(1).role is Role.LEADER


def _chosen_after_a_newer_leader(g: Group, commands: tuple[bytes, ...]) -> list[Value]:
    """Leader 1 proposes `commands`, which only it accepts; 3 leads with {2, 3} (seeing
    nothing of them) and holds a lease; then 3 is cut off and 1 leads again with {1, 2}.
    Returns the commands chosen after 3 led (no-ops left out)."""
    g.elect(1)
    for command in commands:
        g.r(1).propose(command)
    g.process(1)  # node 1 durably accepts them; its Accepts are lost
    g.inflight.clear()
    g.settle_among(2, 3)
    assert g.r(3).role is Role.LEADER
    g.heartbeat(3, keep=between(2, 3))
    assert g.r(3).has_valid_lease(g.now[3])  # node 3 may serve reads now
    seen_by_3 = list(g.chosen(3))
    g.idle(2, 3.0)
    g.idle(1, 3.0)
    g.stabilize(keep=between(1, 2))
    assert g.r(1).role is Role.LEADER
    g.heartbeat(1, keep=between(1, 2))
    return [v for v in g.chosen(2) if v not in seen_by_3 and v != ()]


def test_the_election_fence_keeps_an_older_ballots_command_from_being_chosen_later() -> None:
    """`election_fence`: the new leader fills the slots past what its promises show with
    no-ops, so a command an older leader got accepted by a minority beyond them can never be
    chosen after the new leader served reads (its timestamp would be older than theirs;
    found by the simulator, seed bank:partitions:4052547049)."""
    fenceless = Group(3, fast=(1, 3), election_fence=False, pipeline_window=2)
    assert _chosen_after_a_newer_leader(fenceless, (b"x",)) == [(b"x",)]  # legal Paxos
    fenced = Group(3, fast=(1, 3), election_fence=True, pipeline_window=2)
    assert _chosen_after_a_newer_leader(fenced, (b"x",)) == []


class _MixedWindows(Group):
    """Node 1 keeps 4 slots in flight; nodes 2 and 3 one."""

    windows = {1: 4, 2: 1, 3: 1}

    def _extra(self, i: int) -> dict[str, object]:
        return {**self.extra, "pipeline_window": self.windows[i]}


def test_the_election_fence_holds_whatever_window_the_old_leader_had() -> None:
    """Found by review: a fence as long as the new leader's own window (1) let the old
    leader's commands at slots 2 and 3 (its window was 4) be chosen after the new leader
    held a lease; the fence is now MAX_PIPELINE_WINDOW long on every node."""
    g = _MixedWindows(3, fast=(1, 3), election_fence=True, max_batch_count=1)
    assert _chosen_after_a_newer_leader(g, (b"x1", b"x2", b"x3")) == []


def test_recovery_accepts_go_to_every_peer_even_when_thrifty() -> None:
    """Found by review: at election every peer ties on recent acks, and the one thrifty
    Accepts picked could be the old leader that just died: the fence waited a heartbeat."""
    g = Group(3, fast=(2,), election_fence=True, thrifty_accepts=True)
    g.tick_all(0.0)
    for j in g.voters:
        g.tick(j, 0.2 if j == 2 else 0.13)
    accepts: list[Message] = []
    for _ in range(10):
        g.process_all()
        accepts += [m for m in g.inflight if isinstance(m, Accept)]
        if accepts:
            break
        g.deliver()
    assert g.r(2).role is Role.LEADER
    assert {m.dst for m in accepts} == {1, 3}


def test_a_transfer_survives_a_follower_that_missed_the_handoff() -> None:
    """Rule 9: the target's Prepare meets a follower still under the old leader's lease (it
    missed the handoff heartbeat, or an Accept after it) and a promise from the old leader.
    Seen on real nodes: the target gave up at the first lease refusal, the old leader had
    already promised it, and the group had no leader for an election timeout."""
    g = Group(3, fast=(1,))
    g.elect(1)
    g.heartbeat(1)
    assert g.r(1).transfer_leadership(3)
    g.process(1)
    g.deliver(to(3))  # node 2 misses the handoff round
    g.process(3)  # node 3 campaigns
    prepares = [m for m in g.inflight if isinstance(m, Prepare)]
    g.inflight = []
    assert {m.dst for m in prepares} == {1, 2}
    for prepare in sorted(prepares, key=lambda m: m.dst != 2):  # node 2's refusal first
        g.r(prepare.dst).step(prepare)
        g.process(prepare.dst)
    replies = sorted(g.inflight, key=lambda m: m.src != 2)
    g.inflight = []
    assert isinstance(replies[0], Nack) and replies[0].lease_held
    for reply in replies:
        g.r(3).step(reply)
    assert g.r(3).role is Role.LEADER
    g.stabilize()
    assert g.r(3).role is Role.LEADER and g.r(1).role is Role.FOLLOWER


def test_a_transfer_to_a_target_a_few_slots_behind_catches_it_up_first() -> None:
    """Rule 9 under a stream of writes: the target's last acknowledged watermark trails the
    leader's (with thrifty Accepts the third replica catches up once per heartbeat). Before,
    such a target was never eligible, and leaders stayed where a failover had put them for
    as long as writes went on; now it catches up during the handoff and takes over."""
    g = Group(3, fast=(1,))
    g.elect(1)
    g.heartbeat(1)
    for i in range(5):  # chosen by nodes 1 and 2; node 3 hears none of it
        g.r(1).propose(b"w%d" % i)
        g.stabilize(keep=lambda m: 3 not in (m.src, m.dst))
    assert g.r(1).chosen_watermark > g.r(3).chosen_watermark
    assert g.r(1).peer_watermark(3) < g.r(1).chosen_watermark
    assert g.r(1).transfer_leadership(3)
    g.stabilize()
    assert g.r(3).role is Role.LEADER
    g.r(3).propose(b"after")
    g.stabilize()
    g.heartbeat(3)
    assert g.chosen(1)[-6:] == [(b"w0",), (b"w1",), (b"w2",), (b"w3",), (b"w4",), (b"after",)]
    assert g.chosen(3) == g.chosen(1)


def test_no_transfer_to_a_target_not_heard_lately() -> None:
    """Rule 9: a stopped target's last acknowledgement still shows it caught up (an idle
    group's watermark does not move). Seen on real nodes with the meta group: its leader
    tried to hand over to a SIGSTOPped node every second, each time refusing proposals for
    an election timeout, and the handoff met the node as it resumed."""
    g = Group(3, fast=(1,))
    g.elect(1)
    g.heartbeat(1)
    assert g.r(1).peer_watermark(3) == g.r(1).chosen_watermark
    t = g.now[1]
    for step in range(1, 10):  # node 3 is stopped: no ack for 0.45 s
        g.tick(1, t + step * 0.05)
        g.stabilize(keep=lambda m: 3 not in (m.src, m.dst))
    assert g.r(1).peer_watermark(3) == g.r(1).chosen_watermark
    assert not g.r(1).transfer_leadership(3)
    assert g.r(1).transfer_leadership(2)


def test_no_transfer_to_a_target_that_never_acknowledged_this_leader() -> None:
    """Found by review: node 3 (the preferred leader) is dead and node 1, elected by {1, 2},
    never heard it; a tolerance of catchup_max_slots below a young group's watermark let
    the transfer through, and node 1 refused every proposal for an election timeout, naming
    the dead node as leader, once per REBALANCE_S (shard/node.py)."""
    g = Group(3, fast=(1,))
    g.crash(3)
    g.tick_all(0.0)
    g.tick(2, 0.13)
    g.tick(1, 0.2)
    g.stabilize(keep=between(1, 2))
    assert g.r(1).role is Role.LEADER
    for i in range(3):
        g.r(1).propose(b"w%d" % i)
        g.stabilize(keep=between(1, 2))
    g.heartbeat(1, keep=between(1, 2))
    assert g.r(1).peer_watermark(3) == -1
    assert g.r(1).chosen_watermark > 0
    assert not g.r(1).transfer_leadership(3), "a node this leader never heard from"


def test_no_transfer_to_a_target_silent_since_it_died() -> None:
    """Found by review: node 3 acknowledged, then died; a handful of writes later (fewer
    than catchup_max_slots) the leader handed off to it each time it was asked."""
    g = Group(3, fast=(1,))
    g.elect(1)
    g.heartbeat(1)
    assert g.r(1).peer_watermark(3) == g.r(1).chosen_watermark
    g.crash(3)
    t = g.now[1]
    for round_ in range(3):
        g.r(1).propose(b"w%d" % round_)
        g.stabilize(keep=between(1, 2))
        for _ in range(20):  # a second (the node's rebalance period) of heartbeats
            t += 0.05
            g.tick(1, t)
            g.tick(2, t)
            g.stabilize(keep=between(1, 2))
        assert g.r(1).role is Role.LEADER
        assert not g.r(1).transfer_leadership(3), round_


def test_a_stale_handoff_permission_does_not_start_a_campaign_under_a_new_leader() -> None:
    """Found by review: node 3 (a lagging target) remembers the handoff and campaigns from
    the first catch-up reply that brings it up to the handoff watermark. The permission is
    reset only by `_follow`, not by promising another candidate. Trace: 1 hands off to 3
    (behind), 3 asks 1 for catch-up; 1 answers, then dies; the reply is delayed; 2 is
    elected with 3's promise; the reply arrives before 2's first Accept: 3 campaigned
    against leader 2."""
    g = Group(3, fast=(1, 2))
    g.elect(1)
    g.heartbeat(1)
    for i in range(3):
        g.r(1).propose(b"w%d" % i)
        g.stabilize(keep=lambda m: 3 not in (m.src, m.dst))
    assert g.r(1).transfer_leadership(3)
    g.process(1)
    g.deliver()  # handoff heartbeats reach 2 and 3
    g.process_all()  # 3: ack + CatchUpRequest to 1
    g.deliver()
    g.process_all()  # 1 answers the catch-up request
    held = [m for m in g.inflight if isinstance(m, CatchUpReply)]
    assert held and g.r(3).role is Role.FOLLOWER
    g.inflight = []
    g.crash(1)
    t = g.now[1] + 0.01
    g.tick(3, t)
    g.tick(2, t)  # the first ticks after hearing 1 start the lease promises (rule 6)
    g.tick(3, t + 0.13)  # node 3's lease promise to 1 ran out (node 3 is slow: no campaign)
    g.tick(2, t + 0.5)  # node 2's election timer fires
    assert g.r(2).role is Role.CANDIDATE
    g.process(2)
    g.deliver(keep=to(3))
    g.process(3)  # 3 promises 2
    g.deliver(keep=to(2))
    assert g.r(2).role is Role.LEADER
    g.process(2)  # 2's recovery Accepts and first heartbeat are in flight to 3...
    in_flight_from_2 = g.inflight
    g.inflight = []
    for reply in held:  # ...when the delayed catch-up reply from dead node 1 arrives
        g.r(3).step(reply)
    g.inflight = in_flight_from_2 + g.inflight
    g.process(3)
    g.stabilize(keep=between(2, 3))
    assert g.r(3).role is Role.FOLLOWER, "node 3 campaigned against the new leader 2"


def test_no_transfer_to_a_target_that_needs_a_snapshot() -> None:
    """Found by review: within catchup_max_slots is not within the leader's log: with the
    log compacted past the target's watermark (compaction keeps as few as half the applied
    slots once the log is big in bytes), the handoff's catch-up turns into a snapshot,
    which real nodes build and restore in steps while the handoff holds writes back."""
    g = Group(3, fast=(1,), compact_threshold=3, compact_keep=1)
    g.elect(1)
    g.heartbeat(1)
    for i in range(8):
        g.r(1).propose(b"w%d" % i)
        g.stabilize(keep=lambda m: 3 not in (m.src, m.dst))
    r1 = g.r(1)
    assert r1.peer_watermark(3) + 1 < r1.status().log_start
    assert not r1.transfer_leadership(3)


def test_a_catch_up_after_an_abandoned_handoff_starts_no_campaign() -> None:
    """Rule 9: the lagging target's catch-up reply arrives after the leader gave the
    transfer up and its next heartbeat, naming no target, revoked the permission: the
    target stays a follower (a campaign now would only raise a round the leader, whose
    followers' leases block the target again, must take back)."""
    g = Group(3, fast=(1,))
    g.elect(1)
    g.heartbeat(1)
    for i in range(3):
        g.r(1).propose(b"w%d" % i)
        g.stabilize(keep=lambda m: 3 not in (m.src, m.dst))
    assert g.r(1).transfer_leadership(3)
    g.process(1)
    g.deliver()  # the handoff round reaches 2 and 3
    g.process_all()  # 3: its ack and a catch-up request to 1
    g.deliver()
    g.process_all()  # 1 answers the catch-up request
    held = [m for m in g.inflight if isinstance(m, CatchUpReply)]
    g.inflight = []
    assert held
    t = g.now[1]
    for _ in range(4):  # past the handoff's deadline: the leader gives it up
        t += 0.05
        g.tick(1, t)
        g.tick(2, t)
        g.stabilize(keep=between(1, 2))
    assert g.r(1).role is Role.LEADER
    g.tick(1, t + 0.05)  # its next heartbeat names no target
    g.process(1)
    g.deliver(to(3))
    assert g.r(3).status().leader_hint == 1
    g.process(3)
    g.inflight = []
    for reply in held:
        g.r(3).step(reply)
    assert g.r(3).role is Role.FOLLOWER
    assert g.r(1).role is Role.LEADER


def test_a_candidate_refused_by_every_lease_holder_gives_up_and_names_the_leader() -> None:
    """Rule 6 with rule 9's counting: a candidate whose Prepare meets the leases of a
    quorum's worth of replicas steps back at once and points clients at the leader."""
    g = Group(3, fast=(1,))
    g.elect(1)
    g.heartbeat(1)
    g.r(3)._campaign()
    g.process(3)
    g.deliver()  # the Prepares: the leader and node 2 both refuse under the lease
    g.process(1)
    g.process(2)
    nacks = [m for m in g.inflight if isinstance(m, Nack) and m.dst == 3]
    g.inflight = []
    assert [m.lease_held for m in nacks] == [True, True]
    g.r(3).step(nacks[0])
    assert g.r(3).role is Role.CANDIDATE  # one refusal of three: a quorum may still come
    g.r(3).step(nacks[1])
    assert g.r(3).role is Role.FOLLOWER
    assert g.r(3).leader_hint == 1


def test_an_early_heartbeat_round_is_sent_only_by_a_leader_half_an_interval_on() -> None:
    """`heartbeat_early` (the node coalesces heartbeat rounds with writes it makes anyway):
    a leader sends the round only once half an interval has passed since its last one, and
    the round is an ordinary one, to every follower."""
    g = Group()
    g.elect(1)
    g.heartbeat(1)
    leader, last = g.r(1), g.now[1]
    interval = leader.config.heartbeat_interval_s
    g.tick(1, last + 0.4 * interval)
    assert not leader.heartbeat_early() and not leader.sending_heartbeats()
    g.tick(1, last + 0.6 * interval)  # before its timer, past half of it
    assert leader.heartbeat_early() and leader.sending_heartbeats()
    ready = g.process(1)
    assert {type(m) for m in ready.messages} == {Heartbeat}
    assert {m.dst for m in ready.messages} == {2, 3}
    assert not g.r(2).heartbeat_early()  # a follower never does
    g.stabilize()
    assert leader.heartbeat_early() is False  # the round just sent is the last one now


def _hold_leader_loop(g: Group, until: float, repeat: bool) -> None:
    """Leader 1's loop is held (a long fsync): it is not ticked and steps nothing, while
    the followers' clocks run on; with `repeat`, its driver re-sends the newest heartbeat
    round every 50 ms (`repeat_heartbeats`), and the followers' acks wait in its inbox."""
    t = g.now[2]
    while t < until:
        t = min(t + 0.05, until)
        for j in (2, 3):
            g.tick(j, t)
        if repeat:
            g.inflight.extend(g.r(1).repeat_heartbeats())
        g.deliver(keep=to(2, 3))
        for j in (2, 3):
            while g.r(j).has_ready():
                g.process(j)


def test_a_leader_held_by_its_disk_keeps_its_followers_with_repeated_heartbeats() -> None:
    """A node whose loop waits on a long fsync re-sends its newest round: the followers do
    not elect, and the copies grant nothing the round did not (rules 6 and 9)."""
    g = Group(fast=(1, 2, 3))
    g.elect(1)
    g.heartbeat(1)
    leader = g.r(1)
    round_sent_at = g.now[1]
    newest = leader.repeat_heartbeats()
    assert {(m.dst, m.seq) for m in newest} == {(2, leader._hb_seq), (3, leader._hb_seq)}
    assert g.r(2).repeat_heartbeats() == []  # only a leader repeats
    lease_before = leader._lease_until

    _hold_leader_loop(g, g.now[1] + 0.5, repeat=True)
    assert g.r(2).role is Role.FOLLOWER and g.r(3).role is Role.FOLLOWER
    acks = [m for m in g.inflight if m.dst == 1]
    assert acks and {m.seq for m in acks} == {newest[0].seq}  # the same round, acked again
    g.deliver()  # the loop resumes: the late acks renew nothing past the round's send time
    assert leader._lease_until == lease_before
    assert lease_before <= round_sent_at + leader.config.lease_duration_s


def test_a_leader_held_by_its_disk_without_repeats_loses_its_followers() -> None:
    """The same hold without the repeats: the followers' timers run out (the control)."""
    g = Group(fast=(1, 2, 3))
    g.elect(1)
    g.heartbeat(1)
    _hold_leader_loop(g, g.now[1] + 0.5, repeat=False)
    assert {g.r(2).role, g.r(3).role} != {Role.FOLLOWER}


def test_a_replica_that_stepped_down_repeats_no_heartbeat() -> None:
    g = Group(fast=(1, 2, 3))
    g.elect(1)
    g.heartbeat(1)
    assert g.r(1).repeat_heartbeats()
    assert g.r(1).transfer_leadership(2)
    g.stabilize()
    assert g.r(2).role is Role.LEADER and g.r(1).role is Role.FOLLOWER
    assert g.r(1).repeat_heartbeats() == []


def test_a_follower_learns_up_to_the_leaders_watermark_without_catch_up() -> None:
    """Rule 4: a follower that accepted every slot up to the leader's chosen watermark under the
    leader's ballot learns them all chosen from the watermark alone: all the way up to it, and
    with no catch-up request (catch-up is for slots it did not accept under that ballot)."""
    g = Group(3, fast=(1,), max_batch_count=1, pipeline_window=4)
    g.elect(1)
    for command in (b"a", b"b", b"c"):
        g.r(1).propose(command)
    g.stabilize()  # both followers voted for slots 1-3; only the leader knows them chosen
    assert g.r(1).chosen_watermark == 3 and g.r(2).chosen_watermark == 0
    g.tick(1, g.now[1] + 0.06)  # a heartbeat carries the watermark
    g.process(1)
    g.deliver()
    ready = g.process(2)
    assert g.r(2).chosen_watermark == 3
    assert g.chosen(2) == [(b"a",), (b"b",), (b"c",)]
    assert not [m for m in ready.messages if isinstance(m, CatchUpRequest)]
