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
is exactly the version of the lock key. The lock is two plain keys:

    lock/RUN/report        -> {"owner": "A"}              its version is the token
    lock/RUN/report/lease  -> {"expires_at": 1717171717.5}

- acquire: a transaction reads the record; if it is absent, or its lease has run out (or
  is missing, which release, deleting both keys at once, never leaves), it writes both keys. The commit timestamp is the token. Tokens increase (every write of the
  lock key gets a higher version). The owner's name is for people reading the record: two
  processes given the same name still get different tokens, and only the token counts.
- renew: a fenced write of the lease key alone, with the token. The lock key is not
  written, so the token stays the same and the holder's writes in flight keep landing; a
  holder that lost the lock learns it there (`FencingTokenRejected`).
- expiry is ADVISORY here: it is data that acquirers compare with their clock, so that
  the example can move that clock to simulate a pause. A holder checks its own lease
  (`Lease.valid`) before it starts work. For a lease the store ends by itself, a value
  with a time to live, see leader_lease.py.
- a fenced write, `tx.put_fenced(key, value, lock=LOCK, token=T)`, commits only while
  the lock key's latest version is still T: the check runs inside the replicated PREPARE of
  the write's own transaction, so there is no window between "check" and "write", and no
  caller-side check is needed. A stale token raises `FencingTokenRejected`.
- release: fenced deletes of both keys; the token is stale from then on.
- a resource outside the store (here a small in-process class) must do its own check:
  remember the highest token seen and refuse lower ones (Kleppmann's storage service).

The pause is simulated by moving a shared clock forward, so the example is quick and
deterministic; with real processes it would be a stop-the-world pause.

Exit status: 0 when every check held, 1 when one failed, 2 on a usage error.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import secrets
import sys
import time
from dataclasses import dataclass
from typing import Any

from txn import Client, FencingTokenRejected, PaxosKVError, Transaction

RUN = secrets.token_hex(3)
LOCK = f"lock/{RUN}/report".encode()  # with 3 default shards: the second shard
REPORT = f"report/{RUN}/latest".encode()  # the third shard: a cross-shard fenced write
TTL_S = 10.0


# ---------------------------------------------------------------------------- the lock (copy this)


class Clock:
    """Wall-clock seconds that the example can move forward (a simulated pause)."""

    def __init__(self) -> None:
        self.offset = 0.0

    def now(self) -> float:
        return time.time() + self.offset

    def pause(self, seconds: float) -> None:
        self.offset += seconds


class LockHeld(Exception):
    """Someone holds an unexpired lease (not retried by `client.run`)."""


def lease_key(lock: bytes) -> bytes:
    """Where the lease of `lock` says when it runs out: renewals write this key only."""
    return lock + b"/lease"


@dataclass(frozen=True)
class Lease:
    lock: bytes
    owner: str
    token: int
    expires_at: float

    def valid(self, clock: Clock) -> bool:
        """Whether the lease has not run out: check before starting work it guards (the
        store refuses stale writes either way; this saves doing work that will be lost)."""
        return clock.now() < self.expires_at


def acquire(client: Client, lock: bytes, owner: str, clock: Clock, ttl_s: float = TTL_S) -> Lease:
    """Take `lock` if it is free or its lease has run out: a new token, this transaction's
    commit timestamp.

    Raises `LockHeld` while a lease is unexpired, the caller's own included (a holder
    extends its lease with `renew`, keeping its token). Racing acquirers conflict on the
    lock key: `client.run` re-runs the loser from fresh reads, where it finds the winner's
    lease and gets `LockHeld` (not a `Conflict`). Reading for update queues the acquirers at
    the key's leader, so one whose holder keeps making fenced writes (each reads the lock
    key) is not starved either. Give the client `settle_unknown=True` (as main() does): an
    acquire whose commit answer was lost is then settled, so the caller learns whether it
    holds the lock, with its token.
    """

    def take(tx: Transaction) -> tuple[Transaction, float]:
        held = tx.get(lock, for_update=True)
        lease = tx.get(lease_key(lock))
        now = clock.now()  # in the body: a re-run after a conflict reads the clock again
        if held is not None and lease is not None:
            left = json.loads(lease)["expires_at"] - now
            if left > 0:
                raise LockHeld(f"{json.loads(held)['owner']} holds the lock for {left:.1f} s more")
        tx.put(lock, json.dumps({"owner": owner}).encode())
        tx.put(lease_key(lock), json.dumps({"expires_at": now + ttl_s}).encode())
        return tx, now + ttl_s  # committed by run(); its commit_ts is the token

    tx, expires_at = client.run(take)
    assert tx.commit_ts is not None
    return Lease(lock, owner, tx.commit_ts, expires_at)


def renew(client: Client, lease: Lease, clock: Clock, ttl_s: float = TTL_S) -> Lease:
    """Extend `lease`, keeping its token. Raises `FencingTokenRejected` when someone else
    has taken the lock since (or it was released): the caller no longer holds it."""

    expires_at = clock.now() + ttl_s
    record = json.dumps({"expires_at": expires_at}).encode()
    client.put_fenced(lease_key(lease.lock), record, **fence(lease))
    return dataclasses.replace(lease, expires_at=expires_at)


def release(client: Client, lease: Lease) -> None:
    """Free the lock: every token so far is stale from here on. Raises
    `FencingTokenRejected` when the caller did not hold it any more."""

    def free(tx: Transaction) -> None:
        tx.delete_fenced(lease_key(lease.lock), **fence(lease))
        tx.delete_fenced(lease.lock, **fence(lease))

    client.run(free)


def fence(lease: Lease) -> dict[str, Any]:
    """The keyword arguments that fence a write with `lease`: `tx.put_fenced(k, v, **fence(l))`."""
    return {"lock": lease.lock, "token": lease.token}


def current_holder(client: Client, lock: bytes) -> tuple[str, int] | None:
    """(owner, token) of `lock`'s record as stored now (the token is the key's version),
    whether or not its lease has run out; None when the lock is free."""

    def read(tx: Transaction) -> tuple[str, int] | None:
        raw = tx.get(lock)
        return None if raw is None else (json.loads(raw)["owner"], tx.read_set[lock])

    return client.run(read)  # run(): a read that meets a concurrent renewal is re-run


# ---------------------------------------------------------------------------- the demo


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
        lease_a = acquire(a, LOCK, "A", clock)
        print(f"A acquired the lock: token {lease_a.token}")
        expect(current_holder(b, LOCK) == ("A", lease_a.token), "the token is the lock's version")
        a.put_fenced(REPORT, b"draft by A", **fence(lease_a))
        storage.write(lease_a.token, "draft by A")
        # The name is no identity: a second process calling itself A gets no token either.
        for who, name in (("B", "B"), ("a second process named A", "A")):
            try:
                acquire(b, LOCK, name, clock)
                raise AssertionError(f"{who} took an unexpired lock")
            except LockHeld as exc:
                print(f"{who} must wait: {exc}")

        # 2. A pauses past the expiry; B sees the lock expired, acquires, and writes.
        clock.pause(TTL_S + 5)
        print(f"A pauses for {TTL_S + 5:.0f} s (simulated); its lease has expired")
        expect(not lease_a.valid(clock), "A can tell its lease ran out")
        lease_b = acquire(b, LOCK, "B", clock)
        expect(lease_b.token > lease_a.token, "tokens must increase")
        print(f"B acquired the lock: token {lease_b.token} (> {lease_a.token})")
        b.put_fenced(REPORT, b"final by B", **fence(lease_b))
        storage.write(lease_b.token, "final by B")
        print("B wrote the report (store and external storage)")

        # 3. A wakes up and writes with its old token: the store refuses it...
        try:
            a.put_fenced(REPORT, b"late write by A", **fence(lease_a))
            raise AssertionError("the store accepted A's stale token")
        except FencingTokenRejected as exc:
            print(f"store refused A: {exc}")
            expect(not exc.retryable, "a stale token must not be retried")
        # ... and so does the external storage, by its own check...
        try:
            storage.write(lease_a.token, "late write by A")
            raise AssertionError("the external storage accepted A's stale token")
        except PermissionError as exc:
            print(f"external storage refused A: {exc}")
        # ... and A's renewal tells A it lost the lock.
        try:
            renew(a, lease_a, clock)
            raise AssertionError("A renewed a lock B holds")
        except FencingTokenRejected:
            print("A's renewal is refused: A knows it lost the lock")
        expect(b.get(REPORT) == b"final by B", "the report must be B's")
        expect(storage.data[-1] == (lease_b.token, "final by B"), "external data must be B's")

        # 4. B renews: the same token, so its writes go on landing.
        renewed = renew(b, lease_b, clock)
        expect(renewed.token == lease_b.token, "a renewal keeps the token")
        expect(renewed.expires_at > lease_b.expires_at, "a renewal extends the lease")
        expect(current_holder(a, LOCK) == ("B", lease_b.token), "the lock record is unchanged")
        print(f"B renewed its lease; its token {renewed.token} still works")

        # Several fenced writes in one transaction: all or none.
        def publish(tx: Transaction) -> None:
            tx.put_fenced(REPORT, b"final by B, v2", **fence(renewed))
            tx.put_fenced(REPORT + b"/audit", b"B", **fence(renewed))

        b.run(publish)
        expect(b.get(REPORT) == b"final by B, v2", "B's write after renewing must land")

        # 5. Release: fenced deletes of the record; afterwards no token is current.
        release(b, renewed)
        expect(current_holder(a, LOCK) is None, "the lock must be free")
        try:
            b.put_fenced(REPORT, b"after release", **fence(renewed))
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
