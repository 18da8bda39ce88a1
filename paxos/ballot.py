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


def ballot_from_text(text: str) -> Ballot:
    """The ballot a node printed as "ROUND.NODE" (in a Status answer); ZERO_BALLOT, the
    lowest, when `text` is not one, so that any real ballot compares above it."""
    round_text, dot, node_text = text.partition(".")
    # isascii: str.isdigit() also takes digits such as "²", which int() refuses.
    if not (dot and all(t.isascii() and t.isdigit() for t in (round_text, node_text))):
        return ZERO_BALLOT
    return Ballot(int(round_text), int(node_text))
