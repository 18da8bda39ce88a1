"""Ballots: (round, node_id), totally ordered, unique per proposer (Paxos Made Simple §2.2)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True, order=True)
class Ballot:
    """A proposal number. Compared lexicographically: round first, then node id.

    A node never reuses a round: the round it campaigns with is persisted as its own promise
    before its Prepare leaves, and the next campaign takes a round above the highest promised.
    """

    round: int
    node_id: int

    def __str__(self) -> str:
        return f"{self.round}.{self.node_id}"


ZERO_BALLOT = Ballot(0, 0)
