"""Transaction ids that carry their start timestamp, so a node need not take it on trust.

A recovery Decide or Prevent that finds no record of a transaction may record its abort only
if no commit record of it can have been purged (txn.coordinator rule D4, participant rule
V2). Whether one can be depends on a timestamp at or below every commit record of the
transaction. A request used to claim it (`asker_ts`), so a made-up or zero claim recorded an
abort over a purged commit, and `txn_status` then said aborted for a committed transaction.

An id made here is `TAG`, the start timestamp (an HLC timestamp, 8 bytes big-endian) and
random bytes. Its start is part of the id: a request about a transaction names it by that
id, so it cannot claim another start for it. A node refuses a Prepare or one-phase commit
whose timestamp is below its id's start (node rule 13), so every record of a committed
transaction is stamped at or above it, and for a tagged id a node takes the start in place
of any `asker_ts`. A node refuses a Prepare, one-phase commit or read for update whose id
lacks the tag, so every transaction that can leave a record or a lock carries its start; an
asker's claim is taken only about an id that an older version recorded.
"""

from __future__ import annotations

import secrets

TAG = b"pkv\x01"
"""The first bytes of an id that carries its start timestamp."""

RANDOM_BYTES = 12
TXN_ID_BYTES = len(TAG) + 8 + RANDOM_BYTES
"""The length of an id `new_txn_id` makes."""


def new_txn_id(start_ts: int) -> bytes:
    """A fresh id of a transaction that starts at HLC timestamp `start_ts` (non-zero)."""
    return txn_id_with_start(start_ts, secrets.token_bytes(RANDOM_BYTES))


def txn_id_with_start(start_ts: int, nonce: bytes) -> bytes:
    """The id of start `start_ts` and `nonce` (RANDOM_BYTES long; the simulator draws it
    from its seed)."""
    if not 0 < start_ts < 1 << 64:
        raise ValueError(f"start timestamp {start_ts} is outside (0, 2**64)")
    if len(nonce) != RANDOM_BYTES:
        raise ValueError(f"a nonce is {RANDOM_BYTES} bytes, not {len(nonce)}")
    return TAG + start_ts.to_bytes(8, "big") + nonce


def start_ts_of(txn_id: bytes) -> int:
    """The start timestamp an id carries; 0 for an id without one (any other form)."""
    if len(txn_id) != TXN_ID_BYTES or not txn_id.startswith(TAG):
        return 0
    return int.from_bytes(txn_id[len(TAG) : len(TAG) + 8], "big")
