"""Proofs that a transaction's outcome is real, so that no client can split one.

A transaction commits when every participant has logged its PREPARE; the client, which alone
sees every vote, then resolves the participants. A node cannot see the other votes, so a
Resolve(commit) carries them: each yes vote is answered with a MAC (keyed BLAKE2b) over (txn
id, group, prepare_ts, participants) under a key only the nodes hold, and a participant takes
a Resolve(commit) only with a valid MAC of every participant's vote and the commit timestamp
they give (the largest prepare_ts). A Resolve a node sends from a recorded decision carries a
MAC over that decision and its participants instead. A participant takes either only if its
own PREPARE names the same participants (participant rule R7). Without a valid proof a
Resolve(commit) is refused, and a Resolve(abort) only frees the update locks the leader holds
in memory, as a client's abort of a transaction that sent no commit request does; it is not
logged (shard/node.py rule 12).

The key derives from the cluster's `peer_secret`, which separates nodes from clients (every
`paxoskv cluster start` cluster has one). Without a secret it derives from the cluster id,
which clients know: the proofs then stop mistakes (a buggy client), not forgery.
"""

from __future__ import annotations

import hashlib
import hmac
import struct
from collections.abc import Iterable, Sequence

MAC_BYTES = 16
_DOMAIN = b"paxoskv outcome proofs v1"


def proof_key(cluster_id: str, peer_secret: str) -> bytes:
    """The key every node of the cluster derives alike."""
    secret = (peer_secret or cluster_id).encode()
    return hmac.digest(secret, _DOMAIN + b"|" + cluster_id.encode(), "sha256")


def _mac(key: bytes, kind: bytes, txn_id: bytes, fields: bytes) -> bytes:
    # Keyed BLAKE2b is a MAC (RFC 7693 §2.5), and a third of HMAC-SHA256's cost here; the
    # length prefix keeps a txn id from running into the fields after it.
    message = struct.pack(">I", len(txn_id)) + txn_id + fields
    return hashlib.blake2b(message, key=key, digest_size=MAC_BYTES, person=kind).digest()


def vote_mac(
    key: bytes, txn_id: bytes, group_id: int, prepare_ts: int, participants: Iterable[int]
) -> bytes:
    """The MAC of `group_id`'s yes vote, answered with its Prepare."""
    groups = sorted(set(participants))
    return _mac(
        key, b"vote", txn_id, struct.pack(f">QQ{len(groups)}Q", group_id, prepare_ts, *groups)
    )


def decision_mac(
    key: bytes, txn_id: bytes, commit: bool, commit_ts: int, participants: Iterable[int]
) -> bytes:
    """The MAC of a recorded decision over `participants`, sent with its Resolves."""
    groups = sorted(set(participants))
    fields = struct.pack(f">?Q{len(groups)}Q", commit, commit_ts if commit else 0, *groups)
    return _mac(key, b"decision", txn_id, fields)


def votes_prove_commit(
    key: bytes,
    txn_id: bytes,
    participants: Sequence[int],
    votes: Iterable[tuple[int, int, bytes]],
    commit_ts: int,
) -> bool:
    """Whether `votes` (group, prepare_ts, mac) hold a valid yes vote of every one of
    `participants` and `commit_ts` is the largest of their prepare_ts."""
    groups = set(participants)
    if not groups:
        return False
    seen: dict[int, int] = {}
    for group_id, prepare_ts, mac in votes:
        if group_id not in groups or group_id in seen:
            return False
        if not hmac.compare_digest(mac, vote_mac(key, txn_id, group_id, prepare_ts, groups)):
            return False
        seen[group_id] = prepare_ts
    return set(seen) == groups and max(seen.values()) == commit_ts


def decision_proves(
    key: bytes,
    txn_id: bytes,
    commit: bool,
    commit_ts: int,
    participants: Iterable[int],
    mac: bytes,
) -> bool:
    """Whether `mac` vouches for this decision."""
    if not mac:  # a client's Resolve: no MAC to compute
        return False
    return hmac.compare_digest(mac, decision_mac(key, txn_id, commit, commit_ts, participants))
