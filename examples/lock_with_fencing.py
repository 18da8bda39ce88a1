"""A lock with fencing tokens: the paused-owner scenario, refused by the store itself.

Run against a running cluster (see examples/README.md)::

    python examples/lock_with_fencing.py                  # with PAXOSKV_CLUSTER set
    python examples/lock_with_fencing.py --cluster HOST:PORT[,HOST:PORT...]

Martin Kleppmann, "How to do distributed locking" (2016): a client takes a lock with an
expiry, then pauses (GC, page faults, a slow network) past the expiry; another client takes
the lock and writes; the first one wakes up, still believing it holds the lock, and writes
too — corrupting the data. The fix is a fencing token: a number that grows each time the lock
is taken, sent with every write, so the storage refuses a write with an older token than one
it has already seen.

Here the token is the commit timestamp of the transaction that wrote the lock record, which
is exactly the version of the lock key. The lock record itself is plain data:

    lock/RUN/report  -> {"owner": "A", "expires_at": 1717171717.5}

- acquire: a transaction reads the record; if it is absent, expired, or our own, it writes
  a new record. The commit timestamp is the token. Tokens increase (every write of the lock
  key gets a higher version).
- expiry is ADVISORY: it is data that acquirers compare with their clock. The store does not
  expire anything, and a renewal writes a new version, so renewing yields a new token.
- a fenced write, `client.put_fenced(key, value, lock=LOCK, token=T)`, commits only while
  the lock key's latest version is still T: the check runs inside the replicated PREPARE of
  the write's own transaction, so there is no window between "check" and "write", and no
  caller-side check is needed. A stale token raises `FencingTokenRejected`.
- a resource outside the store (here a small in-process class) must do its own check:
  remember the highest token seen and refuse lower ones (Kleppmann's storage service).

The pause is simulated by moving a shared clock forward, so the example is quick and
deterministic; with real processes it would be a stop-the-world pause.

Exit status: 0 when every check held, 1 when one failed, 2 on a usage error.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import sys
import time
from dataclasses import dataclass

from txn import Client, FencingTokenRejected, PaxosKVError, Transaction

RUN = secrets.token_hex(3)
LOCK = f"lock/{RUN}/report".encode()  # with 3 default shards: the second shard
REPORT = f"report/{RUN}/latest".encode()  # the third shard: a cross-shard fenced write
TTL_S = 10.0


class Clock:
    """Wall-clock seconds that the example can move forward (a simulated pause)."""

    def __init__(self) -> None:
        self.offset = 0.0

    def now(self) -> float:
        return time.time() + self.offset

    def pause(self, seconds: float) -> None:
        self.offset += seconds


class LockHeld(Exception):
    """Someone else holds an unexpired lock (not retried by `client.run`)."""


@dataclass(frozen=True)
class Lease:
    owner: str
    token: int
    expires_at: float


def acquire(client: Client, owner: str, clock: Clock, ttl_s: float = TTL_S) -> Lease:
    """Take (or renew) the lock; the commit timestamp of this transaction is the token.

    Raises `LockHeld` while another owner's record is unexpired. Racing acquirers conflict
    on the lock key: `client.run` re-runs the loser from fresh reads, where it finds the
    winner's record and gets `LockHeld` (not a `Conflict`). Reading for update queues the
    acquirers at the key's leader, so one whose holder keeps making fenced writes (each
    reads the lock key) is not starved either. Give the client `settle_unknown=True` (as
    main() does): an acquire whose commit answer was lost is then settled, so the caller
    learns whether it holds the lock, with its token.
    """
    expires_at = clock.now() + ttl_s

    def take(tx: Transaction) -> Transaction:
        raw = tx.get(LOCK, for_update=True)
        if raw is not None:
            record = json.loads(raw)
            if record["owner"] != owner and record["expires_at"] > clock.now():
                left = record["expires_at"] - clock.now()
                raise LockHeld(f"{record['owner']} holds the lock for {left:.1f} s more")
        tx.put(LOCK, json.dumps({"owner": owner, "expires_at": expires_at}).encode())
        return tx  # committed by run(); its commit_ts is the token

    tx = client.run(take)
    assert tx.commit_ts is not None
    return Lease(owner, tx.commit_ts, expires_at)


def current_holder(client: Client) -> tuple[str, int] | None:
    """(owner, token) of the lock record as stored now: the token is the key's version."""
    with client.transaction() as tx:
        raw = tx.get(LOCK)
        version = tx.read_set[LOCK]
    return None if raw is None else (json.loads(raw)["owner"], version)


class ExternalStorage:
    """A resource outside paxoskv that checks tokens itself: it remembers the highest token
    it has seen and refuses any write with a lower one. A real one must keep `highest`
    durably and check and raise it atomically with the write it guards (one transaction of
    its own store, or a conditional write), or two writers can both pass the check."""

    def __init__(self) -> None:
        self.highest = 0
        self.data: list[tuple[int, str]] = []

    def write(self, token: int, data: str) -> None:
        if token < self.highest:
            raise PermissionError(f"token {token} is older than {self.highest}: refused")
        self.highest = token
        self.data.append((token, data))


def expect(condition: bool, what: str) -> None:
    if not condition:
        raise AssertionError(what)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--cluster",
        default=os.environ.get("PAXOSKV_CLUSTER"),
        metavar="HOST:PORT[,HOST:PORT...]",
        help="node addresses (default: $PAXOSKV_CLUSTER)",
    )
    args = parser.parse_args(argv)
    if not args.cluster:
        parser.error("no cluster: pass --cluster HOST:PORT[,...] or set PAXOSKV_CLUSTER")

    clock = Clock()
    storage = ExternalStorage()
    # Two clients, A and B; settle_unknown: see acquire().
    with (
        Client(args.cluster, settle_unknown=True) as a,
        Client(args.cluster, settle_unknown=True) as b,
    ):
        a.connect()  # a wrong address fails here at once, not after run()'s retries
        b.connect()
        # 1. A acquires the lock and writes with its token.
        lease_a = acquire(a, "A", clock)
        print(f"A acquired the lock: token {lease_a.token}")
        expect(current_holder(b) == ("A", lease_a.token), "the token is the lock's version")
        a.put_fenced(REPORT, b"draft by A", lock=LOCK, token=lease_a.token)
        storage.write(lease_a.token, "draft by A")
        try:
            acquire(b, "B", clock)
            raise AssertionError("B took an unexpired lock")
        except LockHeld as exc:
            print(f"B must wait: {exc}")

        # 2. A pauses past the expiry; B sees the lock expired, acquires, and writes.
        clock.pause(TTL_S + 5)
        print(f"A pauses for {TTL_S + 5:.0f} s (simulated); its lease has expired")
        lease_b = acquire(b, "B", clock)
        expect(lease_b.token > lease_a.token, "tokens must increase")
        print(f"B acquired the lock: token {lease_b.token} (> {lease_a.token})")
        b.put_fenced(REPORT, b"final by B", lock=LOCK, token=lease_b.token)
        storage.write(lease_b.token, "final by B")
        print("B wrote the report (store and external storage)")

        # 3. A wakes up and writes with its old token: the store refuses it...
        try:
            a.put_fenced(REPORT, b"late write by A", lock=LOCK, token=lease_a.token)
            raise AssertionError("the store accepted A's stale token")
        except FencingTokenRejected as exc:
            print(f"store refused A: {exc}")
            expect(not exc.retryable, "a stale token must not be retried")
        # ... and so does the external storage, by its own check.
        try:
            storage.write(lease_a.token, "late write by A")
            raise AssertionError("the external storage accepted A's stale token")
        except PermissionError as exc:
            print(f"external storage refused A: {exc}")
        expect(b.get(REPORT) == b"final by B", "the report must be B's")
        expect(storage.data[-1] == (lease_b.token, "final by B"), "external data must be B's")

        # 4. Renewal writes a new version: a new token, and the old one stops working.
        renewed = acquire(b, "B", clock)
        expect(renewed.token > lease_b.token, "a renewal is a new token")
        try:
            b.put_fenced(REPORT, b"with the pre-renewal token", lock=LOCK, token=lease_b.token)
            raise AssertionError("a pre-renewal token was accepted")
        except FencingTokenRejected:
            print(f"after B renewed (token {renewed.token}) its old token is refused too")
        # Several fenced writes in one transaction, with the current token: accepted.
        with b.transaction() as tx:
            tx.put_fenced(REPORT, b"final by B, v2", lock=LOCK, token=renewed.token)
            tx.put_fenced(REPORT + b"/audit", b"B", lock=LOCK, token=renewed.token)
        expect(b.get(REPORT) == b"final by B, v2", "B's renewed write must land")

        # 5. Release: a fenced delete of the lock record; afterwards no token is current.
        b.delete_fenced(LOCK, lock=LOCK, token=renewed.token)
        expect(current_holder(a) is None, "the lock must be free")
        try:
            b.put_fenced(REPORT, b"after release", lock=LOCK, token=renewed.token)
            raise AssertionError("a released lock's token was accepted")
        except FencingTokenRejected:
            print("after release, B's token is refused as well")
        expect(b.get(REPORT) == b"final by B, v2", "refused writes left no trace")
    print("OK")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except AssertionError as exc:
        print(f"FAILED: {exc}", file=sys.stderr)
        sys.exit(1)
    except PaxosKVError as exc:
        print(f"FAILED: {type(exc).__name__}: {exc}", file=sys.stderr)
        sys.exit(1)
