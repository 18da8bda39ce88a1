"""Messages exchanged by the replicas of one Paxos group.

Every message carries its sender, its destination and a ballot. Values are batches: a tuple of
opaque commands; the empty tuple is the no-op that fills holes (Paxos Made Simple §3).
Messages are frozen, slotted, keyword-only dataclasses; only `paxos.codec` turns them into
protobuf.
"""

from __future__ import annotations

from dataclasses import dataclass

from paxos.ballot import Ballot

Value = tuple[bytes, ...]
NOOP: Value = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class SlotValue:
    """A value for one slot, as carried by Accept and CatchUpReply."""

    slot: int
    value: Value


@dataclass(frozen=True, slots=True, kw_only=True)
class AcceptedEntry:
    """An acceptor's vote for one slot, reported in a Promise.

    `chosen` is true when the acceptor knows the value was chosen; such a value wins over any
    ballot comparison.
    """

    slot: int
    ballot: Ballot
    value: Value
    chosen: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class Prepare:
    """Phase 1a, for every slot from `from_slot` on. At the ballot the receiver already
    promised the sender, it asks for the rest of a promise cut at `more_from` (rule 18)."""

    src: int
    dst: int
    ballot: Ballot
    from_slot: int


@dataclass(frozen=True, slots=True, kw_only=True)
class PreVote:
    """Would you promise me if I campaigned now? (asked before a campaign, rule 13)

    `ballot` is the asker's current promise, not a raised one: a pre-vote persists nothing
    and raises no round on either side. `seq` tells one pre-vote's replies from another's.
    """

    src: int
    dst: int
    ballot: Ballot
    seq: int


@dataclass(frozen=True, slots=True, kw_only=True)
class PreVoteReply:
    """`granted` when the replier would promise the asker now (it holds no lease for another
    leader); `ballot` is the replier's promise, so the asker's campaign goes above it (and a
    rebuilding asker's floor, rule 14). `rebuilding`: the replier is rebuilding too, so its
    promise bounds nothing."""

    src: int
    dst: int
    ballot: Ballot
    seq: int
    granted: bool
    rebuilding: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class Promise:
    """Phase 1b: the acceptor promised `ballot` and reports its votes from `from_slot` (the
    Prepare's slot).

    `chosen_omitted`: the chosen slots among them were left out, more than `max_batch_bytes`
    (replica rule 16); the candidate must catch up before it may lead. `more_from`: not 0
    when the votes were cut at `max_promise_bytes` (replica rule 18): they cover the slots
    below it only, and the candidate asks again from there with a Prepare of the same ballot.
    """

    src: int
    dst: int
    ballot: Ballot
    from_slot: int
    accepted: tuple[AcceptedEntry, ...]
    chosen_watermark: int
    log_start: int
    chosen_omitted: bool = False
    more_from: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class Nack:
    """A refusal: the acceptor has promised `promised`, which is higher than `ballot`.

    `lease_held` means the refusal is only the follower's lease promise to `leader_hint`.
    """

    src: int
    dst: int
    ballot: Ballot
    promised: Ballot
    leader_hint: int | None
    lease_held: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class Accept:
    """Phase 2a for a run of slots; also carries the leader's chosen watermark."""

    src: int
    dst: int
    ballot: Ballot
    entries: tuple[SlotValue, ...]
    chosen_watermark: int


@dataclass(frozen=True, slots=True, kw_only=True)
class Accepted:
    """Phase 2b: the acceptor durably accepted these slots at `ballot`."""

    src: int
    dst: int
    ballot: Ballot
    slots: tuple[int, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class Heartbeat:
    """Leader liveness, lease renewal and read-index confirmation (round `seq`).

    `handoff_to` (0 = none) names the replica the leader hands its leadership to: the leader
    has already given up its lease, so followers may promise that replica at once.
    `next_slot` is the first slot the leader has not proposed yet (a rebuilding follower's
    target, rule 14). `lease_remaining_s`: how long the leader's lease still ran as it sent
    the round (0: none, or a node from before): a follower promises nobody else for at least
    that long after hearing it (rule 6), which a follower that forgot a promise it made in
    an earlier life under a longer lease (a rebuilt one) learns this way.
    """

    src: int
    dst: int
    ballot: Ballot
    chosen_watermark: int
    seq: int
    handoff_to: int = 0
    next_slot: int = 0
    lease_remaining_s: float = 0.0


@dataclass(frozen=True, slots=True, kw_only=True)
class HeartbeatAck:
    """A follower still follows `ballot`; `chosen_watermark` tells the leader how far it got.
    `rebuilding`: the follower does not vote yet (rule 14), so the leader sends it no Accepts
    and hands it no leadership. `retiring`: the follower's node is stopping (rule 19), so
    the leader hands it no leadership. `lease_promise_s`: how long from hearing the round
    the follower promises nobody else (its lease_duration, rule 6), which bounds the lease
    the round gives the leader; 0 when not said (a node from before: the leader's own)."""

    src: int
    dst: int
    ballot: Ballot
    seq: int
    chosen_watermark: int
    rebuilding: bool = False
    retiring: bool = False
    lease_promise_s: float = 0.0


@dataclass(frozen=True, slots=True, kw_only=True)
class CatchUpRequest:
    """A replica asks for the chosen values of slots [from_slot, to_slot]."""

    src: int
    dst: int
    ballot: Ballot
    from_slot: int
    to_slot: int


@dataclass(frozen=True, slots=True, kw_only=True)
class CatchUpReply:
    """Chosen values, contiguous from the requested slot."""

    src: int
    dst: int
    ballot: Ballot
    entries: tuple[SlotValue, ...]
    chosen_watermark: int


@dataclass(frozen=True, slots=True, kw_only=True)
class InstallSnapshot:
    """The application state as of slot `index`, for a replica whose slots were compacted."""

    src: int
    dst: int
    ballot: Ballot
    index: int
    data: bytes


Message = (
    PreVote
    | PreVoteReply
    | Prepare
    | Promise
    | Nack
    | Accept
    | Accepted
    | Heartbeat
    | HeartbeatAck
    | CatchUpRequest
    | CatchUpReply
    | InstallSnapshot
)
