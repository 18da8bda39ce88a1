"""Errors the Paxos library reports to its caller."""

from __future__ import annotations


class PaxosError(Exception):
    """Base class of every error raised by the paxos package."""


class NotLeader(PaxosError):
    """This replica cannot get the request chosen; `leader_hint` names the leader it knows.

    Raised or reported only when the command was certainly not assigned a slot by this
    replica, so the caller may retry it elsewhere without risk of a double apply.
    """

    def __init__(self, leader_hint: int | None, reason: str = "not the leader") -> None:
        self.leader_hint = leader_hint
        self.reason = reason
        hint = f"; leader is node {leader_hint}" if leader_hint is not None else "; leader unknown"
        super().__init__(f"{reason}{hint}")


class ProposalTooLarge(PaxosError):
    """A single command exceeds the replica's batch byte limit."""


class InvariantViolation(PaxosError):
    """A broken internal invariant: a bug. The replica must not be used any further."""
