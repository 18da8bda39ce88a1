"""Safety checkers for simulated Paxos groups.

`GroupOracle` watches every durable vote, every apply and every snapshot restore, and raises
`SafetyViolation` at the first event that breaks:

- agreement: two replicas apply different values at one slot; or two different values reach
  a quorum of durable votes at one slot ("chosen", the ground truth of Paxos Made Simple §2);
- durability: a replica applies a slot before a quorum durably accepted its value; a
  Promise, Accepted or HeartbeatAck leaves before the state it vouches for is durable
  (PITFALLS: "persist before you answer");
- validity: a chosen command that no client proposed, or that the replica refused
  (NotLeader at propose) or reported `dropped`; a command chosen in two slots;
- integrity: a replica applies a slot out of order, twice, or with a gap (per incarnation,
  and on its durable disk across restarts);
- leases: at any instant at most one replica holds a valid lease on its own clock.

`check_linearizable` runs at the end over the client history (writes in slot order, reads
at the index they were served at) with a greedy interval check; `check_read_values` compares
every served read with the registers the chosen log defines.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

from paxos import Ballot, PersistBatch, Value
from paxos.messages import Accepted, HeartbeatAck, Message, Promise

if TYPE_CHECKING:
    from paxos_group import PaxosHost, ReadOp, WriteOp


class SafetyViolation(AssertionError):
    """A broken safety property: a bug in the replica or in the driver."""


class GroupOracle:
    """Per-event safety checks of one Paxos group."""

    def __init__(self, quorum: int) -> None:
        self.quorum = quorum
        #: Values learned by applying (or restoring) replicas.
        self.applied: dict[int, Value] = {}
        #: Values with a quorum of durable votes under one ballot: chosen.
        self.chosen: dict[int, Value] = {}
        self._votes: dict[tuple[int, Ballot, Value], set[int]] = {}
        #: Every command handed to a host, and what became of it.
        self.submitted: dict[bytes, WriteOp] = {}
        self._cmd_slot: dict[bytes, int] = {}
        self._next_apply: dict[int, int] = {}
        self.lease_checks = 0
        self.max_slot = 0

    # ------------------------------------------------------------------ events

    def on_boot(self, host: PaxosHost) -> None:
        self._next_apply[host.id] = host.app.index + 1
        # A restarted replica's durable application state must agree with what was chosen.
        for slot, value in host.app.log:
            self._learn(host, slot, value, "restart")

    def on_persist(self, host: PaxosHost, batch: PersistBatch) -> None:
        for slot, (ballot, value) in batch.accepted.items():
            key = (slot, ballot, value)
            voters = self._votes.get(key)
            if voters is None:
                voters = self._votes[key] = set()
            voters.add(host.id)
            if len(voters) >= self.quorum:
                known = self.chosen.get(slot)
                if known is None:
                    self.chosen[slot] = value
                    self._check_against_applied(slot, value)
                elif known != value:
                    raise SafetyViolation(
                        f"agreement: slot {slot} chosen twice: {_short(known)} and "
                        f"{_short(value)} (quorum {sorted(voters)} at ballot {ballot})"
                    )

    def on_send(self, host: PaxosHost, msg: Message) -> None:
        """A vote must be durable before it leaves (checked against the host's disk)."""
        if isinstance(msg, Accepted):
            state = host.disk.durable.paxos
            for slot in msg.slots:
                vote = state.accepted.get(slot)
                if vote is not None and vote[0] >= msg.ballot:
                    # A vote at a higher ballot may have superseded this one in the same
                    # cycle (an acceptor keeps only its highest vote): still consistent.
                    continue
                if slot <= state.chosen_watermark or slot < state.log_start:
                    continue  # durably known chosen: the reply vouches for nothing new
                raise SafetyViolation(
                    f"durability: host {host.id} sent Accepted(slot {slot}, ballot "
                    f"{msg.ballot}) before the vote was durable"
                )
        elif isinstance(msg, Promise | HeartbeatAck):
            promised = host.disk.durable.paxos.promised
            if promised < msg.ballot:
                raise SafetyViolation(
                    f"durability: host {host.id} sent {type(msg).__name__}({msg.ballot}) "
                    f"with only {promised} durable"
                )

    def on_apply(self, host: PaxosHost, slot: int, value: Value) -> None:
        expected = self._next_apply.get(host.id)
        if slot != expected:
            raise SafetyViolation(
                f"integrity: host {host.id} applied slot {slot}, expected slot {expected}"
            )
        self._next_apply[host.id] = slot + 1
        if slot not in self.chosen:
            # DESIGN contract 2: what a replica applies (and may acknowledge) is already
            # durable on a quorum. Votes count here only once their persist returned.
            raise SafetyViolation(
                f"durability: host {host.id} applied slot {slot} before a quorum durably "
                "accepted it"
            )
        self._learn(host, slot, value, "apply")

    def on_restore(self, host: PaxosHost, index: int, log: list[tuple[int, Value]]) -> None:
        expected = self._next_apply.get(host.id, 1)
        if index < expected:
            raise SafetyViolation(
                f"integrity: host {host.id} restored a snapshot at {index} after applying "
                f"{expected - 1}"
            )
        if [slot for slot, _ in log] != list(range(1, index + 1)):
            raise SafetyViolation(f"integrity: snapshot at {index} is not slots 1..{index}")
        for slot, value in log:
            self._learn(host, slot, value, "snapshot")
        self._next_apply[host.id] = index + 1

    # ------------------------------------------------------------------ checks

    def _learn(self, host: PaxosHost, slot: int, value: Value, how: str) -> None:
        known = self.applied.get(slot)
        if known is None:
            self.applied[slot] = value
            if slot > self.max_slot:
                self.max_slot = slot
            self._check_validity(slot, value)
            chosen = self.chosen.get(slot)
            if chosen is not None and chosen != value:
                raise SafetyViolation(
                    f"agreement: host {host.id} {how} slot {slot} = {_short(value)} but "
                    f"{_short(chosen)} was chosen"
                )
        elif known != value:
            raise SafetyViolation(
                f"agreement: host {host.id} {how} slot {slot} = {_short(value)}, another "
                f"replica applied {_short(known)}"
            )

    def _check_against_applied(self, slot: int, value: Value) -> None:
        applied = self.applied.get(slot)
        if applied is not None and applied != value:
            raise SafetyViolation(
                f"agreement: slot {slot} chosen {_short(value)} after {_short(applied)} was applied"
            )

    def _check_validity(self, slot: int, value: Value) -> None:
        for command in value:
            op = self.submitted.get(command)
            if op is None:
                raise SafetyViolation(f"validity: slot {slot} holds unproposed {command!r}")
            if op.status in ("rejected", "dropped"):
                raise SafetyViolation(
                    f"validity: {command!r} was reported {op.status} (NotLeader) but was "
                    f"chosen at slot {slot}"
                )
            other = self._cmd_slot.setdefault(command, slot)
            if other != slot:
                raise SafetyViolation(f"validity: {command!r} chosen at slots {other} and {slot}")

    def on_write_done(self, op: WriteOp) -> None:
        """A client saw an outcome: refusals must not already be chosen."""
        if op.status in ("rejected", "dropped") and op.command in self._cmd_slot:
            raise SafetyViolation(
                f"validity: {op.command!r} reported {op.status} after it was chosen at slot "
                f"{self._cmd_slot[op.command]}"
            )
        if op.status == "acked":
            assert op.slot is not None
            value = self.applied.get(op.slot)
            if value is None or op.command not in value:
                raise SafetyViolation(
                    f"durability: {op.command!r} acknowledged at slot {op.slot}, which holds "
                    f"{_short(value)}"
                )

    def check_leases(self, hosts: Iterable[PaxosHost]) -> None:
        """At most one replica holds a valid lease at this instant (each on its own clock)."""
        self.lease_checks += 1
        holders = [
            h.id
            for h in hosts
            if h.up and h.replica is not None and h.replica.has_valid_lease(h.local_now())
        ]
        if len(holders) > 1:
            raise SafetyViolation(f"leases: replicas {holders} hold valid leases at once")

    def check_acked_durable(self, writes: Iterable[WriteOp]) -> None:
        """Every acknowledged write is in the chosen log at its slot (never lost)."""
        for op in writes:
            if op.status != "acked":
                continue
            assert op.slot is not None
            value = self.applied.get(op.slot)
            if value is None or op.command not in value:
                raise SafetyViolation(f"durability: acknowledged {op.command!r} was lost")


def _short(value: Value | None) -> str:
    if value is None:
        return "nothing"
    if not value:
        return "no-op"
    shown = b",".join(value[:3]).decode(errors="replace")
    return f"[{shown}{'...' if len(value) > 3 else ''}]({len(value)})"


# ---------------------------------------------------------------------- linearizability


def check_linearizable(
    chosen_log: dict[int, Value],
    writes: Sequence[WriteOp],
    reads: Sequence[ReadOp],
) -> int:
    """Check that the history linearizes in slot order; returns the number of ops checked.

    The replicated log fixes the order of writes (slot, then position in the batch); a read
    served at applied index X sits after every write of slots <= X and before every write of
    later slots. The history is linearizable iff each operation can take a point inside its
    [invoke, response] interval, non-decreasing along that order. Taking each point as early
    as possible decides it (reads at one index are mutually unordered, so only their maximum
    bounds the next write). Unacknowledged writes have an open response.
    """
    by_command = {op.command: op for op in writes}
    reads_at: dict[int, list[ReadOp]] = {}
    for read in reads:
        if read.status == "served":
            assert read.index is not None
            reads_at.setdefault(read.index, []).append(read)
    checked = 0
    point = float("-inf")
    top = max([*chosen_log, *reads_at], default=0)
    for slot in range(0, top + 1):
        if slot > 0:
            value = chosen_log.get(slot)
            if value is None:
                if any(idx >= slot for idx in reads_at):
                    raise SafetyViolation(f"linearizability: a read saw slot {slot} unknown")
                continue
            for command in value:
                op = by_command.get(command)
                if op is None:
                    continue
                point = max(point, op.invoke)
                if op.status == "acked" and op.resp is not None and point > op.resp:
                    raise SafetyViolation(
                        f"linearizability: write {command!r} (slot {slot}, acked at "
                        f"{op.resp:.6f}) must follow an operation at {point:.6f}"
                    )
                checked += 1
        latest = point
        for read in reads_at.get(slot, ()):
            assert read.resp is not None
            at = max(point, read.invoke)
            if at > read.resp:
                raise SafetyViolation(
                    f"linearizability: read of {read.key!r} invoked {read.invoke:.6f}, served "
                    f"{read.resp:.6f} at index {slot}, misses a write acknowledged at "
                    f"{point:.6f}"
                )
            latest = max(latest, at)
            checked += 1
        point = latest
    return checked


def check_read_values(chosen_log: dict[int, Value], reads: Sequence[ReadOp]) -> None:
    """Every served read returned the register value the chosen log defines at its index."""
    served = sorted(
        (r for r in reads if r.status == "served"), key=lambda r: (r.index or 0, r.op_id)
    )
    regs: dict[bytes, bytes] = {}
    slot = 0
    for read in served:
        assert read.index is not None
        while slot < read.index:
            slot += 1
            for command in chosen_log.get(slot, ()):
                key, _, val = command.partition(b"=")
                regs[key] = val
        if regs.get(read.key) != read.value:
            raise SafetyViolation(
                f"read of {read.key!r} at index {read.index} returned {read.value!r}, the log "
                f"says {regs.get(read.key)!r}"
            )
