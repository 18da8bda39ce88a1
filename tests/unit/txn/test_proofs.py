"""txn/proofs.py: what proves a commit, and that nothing less does."""

from __future__ import annotations

import pytest

from txn.proofs import (
    MAC_BYTES,
    decision_mac,
    decision_proves,
    proof_key,
    vote_mac,
    votes_prove_commit,
)

KEY = proof_key("cluster", "a-peer-secret-of-16+")
TXN = b"txn-1"
PARTS = (1, 2, 3)
TS = {1: 100, 2: 300, 3: 200, 4: 50}


def votes(key: bytes = KEY, parts: tuple[int, ...] = PARTS) -> list[tuple[int, int, bytes]]:
    return [(g, TS[g], vote_mac(key, TXN, g, TS[g], parts)) for g in parts]


def test_every_yes_vote_at_the_largest_prepare_ts_proves_the_commit() -> None:
    assert votes_prove_commit(KEY, TXN, PARTS, votes(), 300)
    assert votes_prove_commit(KEY, TXN, (3, 1, 2), reversed(votes()), 300)  # any order
    assert len(votes()[0][2]) == MAC_BYTES


@pytest.mark.parametrize(
    "why,participants,given,commit_ts",
    [
        ("a vote missing", PARTS, votes()[:2], 300),
        ("not the largest prepare_ts", PARTS, votes(), 200),
        ("above it", PARTS, votes(), 301),
        ("a vote twice", PARTS, [*votes(), votes()[0]], 300),
        ("a vote of a group that is no participant", (1, 2), votes(), 300),
        ("votes over another set of participants", PARTS, votes(parts=(1, 2, 3, 4))[:3], 300),
        ("another cluster's key", PARTS, votes(key=proof_key("other", "x" * 16)), 300),
        ("a MAC of another prepare_ts", PARTS, [(1, 101, votes()[0][2]), *votes()[1:]], 300),
        ("a cut MAC", PARTS, [(1, 100, votes()[0][2][:8]), *votes()[1:]], 300),
        ("no participants", (), [], 0),
    ],
)
def test_nothing_less_proves_a_commit(
    why: str, participants: tuple[int, ...], given: list[tuple[int, int, bytes]], commit_ts: int
) -> None:
    assert not votes_prove_commit(KEY, TXN, participants, given, commit_ts), why


def test_a_decision_mac_vouches_for_that_decision_only() -> None:
    mac = decision_mac(KEY, TXN, True, 300, PARTS)
    assert decision_proves(KEY, TXN, True, 300, (3, 2, 1), mac)
    assert not decision_proves(KEY, TXN, True, 301, PARTS, mac)
    assert not decision_proves(KEY, TXN, False, 0, PARTS, mac)
    assert not decision_proves(KEY, b"txn-2", True, 300, PARTS, mac)
    assert not decision_proves(KEY, TXN, True, 300, (1, 2), mac)  # other participants
    assert not decision_proves(KEY, TXN, True, 300, PARTS, b"")
    abort = decision_mac(KEY, TXN, False, 0, PARTS)
    assert decision_proves(KEY, TXN, False, 0, PARTS, abort)
    # A vote's MAC is no decision's, whatever its fields.
    vote = vote_mac(KEY, TXN, 1, 300, PARTS)
    assert not decision_proves(KEY, TXN, True, 300, PARTS, vote)


def test_the_key_needs_the_secret_when_there_is_one() -> None:
    assert proof_key("c", "s" * 16) != proof_key("c", "t" * 16)
    assert proof_key("c", "s" * 16) != proof_key("d", "s" * 16)
    assert proof_key("c", "") != proof_key("d", "")  # without one, from the cluster id
