"""Lock waits: a request that meets another transaction's intent waits at the leader.

Theory of operation
-------------------
Validation stays where it was — deterministic, inside the replicated apply (txn.participant)
— so waiting changes WHEN a request is proposed or served, never what it decides. Without
waiting, every request that met an intent was refused and its client retried blindly; under
a hot key, two transactions that prepared on different shards refused each other, both
aborted, and throughput collapsed. Here the leader parks such a request until an intent is
released on its group (or its wait runs out) and then proceeds exactly as before.

Who may wait (rule numbers as in shard.node):
L0. No request waits for the intents of a transaction whose commit the leader holds the
    proof of (shard.node rule 14): a get reads through its write intent, and anything else
    goes to the log behind its Resolve.
L1. A request that holds nothing may wait for any intent: a linearizable read, a single-key
    write and a one-phase commit hold no intents, so no other request ever waits for them
    and no wait cycle can pass through them. A range a prepared transaction scanned (rule
    P6) counts as a read intent on every key of it; a write intent inside a range a request
    scanned counts as one on a key it read. A linearizable scan waits only for the write
    intents in the part of its range its answer covers (`scan_covers`: up to just past its
    last item when its limit cut it, or down to it for a reverse scan; the client reads on
    from there).
L2. A two-phase Prepare holds intents on its other participants while it waits, so it waits
    only for YOUNGER holders (wait-die, Rosenkrantz et al. 1978): waits point from older to
    younger, hence never form a cycle. Age is the client's `priority` (the timestamp of the
    first attempt of a retried transaction, so a loser grows older each retry). Age only
    orders waits and wounds: a transaction whose reads went stale aborts however old it is,
    so with plain (optimistic) reads a long transaction among short ones on the same keys can
    lose every retry; reads for update (U2) are what make the oldest win. A holder of
    unknown age (e.g. prepared under an earlier leader) counts as older.
L3. A request that is bound to be refused anyway (a read version already stale, a decision
    or prepare already recorded for its transaction) does not wait.
L4. Every wait is bounded by `LOCK_WAIT_MAX_S` (`LOCK_QUEUE_MAX_S` for an update lock) and
    by half the request's remaining time (the node's request timeout, or less when the
    request's header says the client gives up sooner, `Header.timeout_ms`, so the refusal
    reaches it); after that the request proceeds and the apply
    refuses it as before (CONFLICT, retryable). A replica that stops leading refuses what it
    parked (NOT_LEADER), and a Prepare whose abort already arrived (a Resolve) or was
    recorded in its group (the client's Decide at the coordinator group, a Prevent at a
    participant) is refused (shard.node).

L5. A Prepare that reads a key, or scans a range holding one, whose value the leader found
    due for expiry (node rule 17; shard.due_keys) takes no new intent on it: an Expire is
    refused under a read intent (participant rule W1), so readers that kept overlapping
    held an expired value for ever (found by review). It waits until the Expire deleted
    the key or the key is no longer due (touched, written over), and is then decided again
    (its read stale after a delete, it is refused in the log; still valid after a touch,
    it goes on). The Expire is proposed once the transactions that hold the key are gone,
    so the Prepare waits only if it is older than each of them (wait-die, as L2: a younger
    one is refused at once, CONFLICT; a holder that comes after it parked makes it decide
    again), and a wait that runs out (L4) is refused too rather than taking the intent.
    So no wait cycle passes through an Expire, and no reader keeps an expired value alive;
    the price is that readers of an expired key are refused (and retried) while a
    transaction in doubt holds it.

Update locks (`tx.get(key, for_update=True)`, SQL's SELECT FOR UPDATE): optimistic reads of
a hot key all race to prepare and all but one abort, which wastes a commit's worth of work
per loser. A read for update instead takes the key's update lock at the group leader, so
transactions that would conflict queue at the read:
U1. Locks are leader-local hints (never replicated; dropped when leadership moves, expire
    `LOCK_TTL_S` after the holder's last read, or at the end of a queue wait of the holder
    for another lock in the same group, if later): validation in the log still decides, so
    a lost lock costs at most an abort, never correctness. A queue wait lasts at most
    `LOCK_QUEUE_MAX_S`, less than `LOCK_TTL_S`, so reads for update sent together (or
    within the difference, 0.5 s) keep their locks in every group through any one of them
    queueing; a transaction whose reads for update are further apart may lose an earlier
    one's lock while a later one queues elsewhere.
U2. Wound-wait (Rosenkrantz et al. 1978; Spanner §4.2.1): an older requester takes the lock
    from a younger holder and wounds it (its next read for update, Prepare or one-phase
    commit at this leader is refused; the one-phase commit through the log, a Prevent that
    records its abort, since it is the decision itself), so it aborts and retries, keeping its
    age; a younger requester waits. A transaction whose body outlives `LOCK_TTL_S` after its
    last read for update loses its locks to the next reader and may lose every retry. Waits
    point from younger to older, so they never form a cycle with each other; a lock holder
    holds no intents (its reads come before its Prepare), so no intent wait (L2) leads back
    to it either.
U3. A lock is released when the holder's Prepare or one-phase commit is applied there (its
    intents, or its committed versions, take over), when its abort (Resolve) arrives, when
    it is wounded, or when it expires.
U4. A single-key Put, Delete or CAS of a locked key (not a touch, which keeps what the
    holder read: participant rule W1) waits for the lock's release (rule L1:
    it holds nothing, so no cycle passes through it), bounded as L4, then meets the holder's
    intents if its Prepare took over, and waits for those (L1) as well: so a plain write
    lands after the holder's commit instead of making it abort, as SQL's SELECT FOR UPDATE
    blocks writers. A freed lock goes to the oldest read for update waiting for it before
    a parked write decides again, so that write waits for the new holder too. Transactions
    that write without reading for update do not wait for
    locks: a Prepare or one-phase commit may hold locks or intents itself, and a wait for a
    lock holder could close a cycle with that holder's own wait for its locks; such a
    transaction goes ahead and validation decides, as before.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from shard.codec import EXPECT_OF_FIELD
from shard.due_keys import DueKeys
from shard.limits import MAX_SCAN_ITEMS, MAX_SCAN_RESPONSE_BYTES
from shard.proven_commits import ProvenCommits
from shard.state_machine import cas_condition_holds

# The items a scan request without a limit is answered with.
DEFAULT_SCAN_ITEMS = 1000

# Longest a request waits at the leader for intents to be released (rule L4). A holder is
# normally resolved within a round trip or two; one whose client died, after resolve_after.
LOCK_WAIT_MAX_S = 1.0

# An update lock's life after its holder's last read for update (rule U1; a holder queued
# for another lock keeps its locks through that wait, `LockTable.acquire`), short enough
# that a holder whose client died (and so never released it) stops blocking younger
# transactions soon. Older ones wound it after WOUND_GRACE_S anyway.
LOCK_TTL_S = 2.0
# How long a read for update may queue for a lock (rule L4 for locks): queueing is the point
# of the lock, and wound-wait already rules out deadlock, so this is only a safety net. Below
# LOCK_TTL_S, so the locks a transaction took in other groups (whose leaders cannot see this
# wait) just before, or together with, this read outlast it (found by review: at 3 s, an
# older transaction queued here lost its lock elsewhere to a younger one, and so its commit).
LOCK_QUEUE_MAX_S = 1.5
# An older requester waits this long for a younger holder to finish before wounding it:
# most holders commit within a few round trips, and a wound wastes all their work.
WOUND_GRACE_S = 0.05
# How long a wounded transaction is remembered, so its later requests are refused: longer
# than any request deadline.
WOUND_MEMORY_S = 30.0

#: (priority, txn_id): a transaction's wait-die / wound-wait age, smaller is older.
Age = tuple[int, bytes]
#: The age of a transaction whose Prepare this leader has seen, by txn id.
AgeOf = Callable[[bytes], Age | None]


class Grant(enum.Enum):
    GRANTED = "granted"
    WAIT = "wait"  # an older transaction holds the lock
    WOUNDED = "wounded"  # an older transaction took a lock of this one (rule U2)


class LockTable:
    """The update locks of one group, at its leader (rules U1-U3). Pure: time is an argument."""

    def __init__(self) -> None:
        self._holder: dict[bytes, Age] = {}  # key -> holder's age
        self._keys: dict[bytes, set[bytes]] = {}  # txn id -> keys it holds
        self._expires: dict[bytes, float] = {}  # txn id -> when its locks expire
        self._since: dict[bytes, float] = {}  # txn id -> when it took its first lock here
        # txn id -> (when to forget the wound, the key, the older txn that took it)
        self._wounded: dict[bytes, tuple[float, bytes, bytes]] = {}
        self._committing: set[bytes] = set()  # holders whose Prepare is on its way: unwoundable
        #: Bumped on every release, so waiters re-check only after something changed.
        self.releases = 0

    def __len__(self) -> int:
        return len(self._holder)

    def acquire(self, key: bytes, age: Age, now: float, queue_until: float = 0.0) -> Grant:
        """Give `key`'s lock to the transaction of `age`, wounding a younger holder; one
        that must wait keeps the locks it holds here until `queue_until`, when its wait
        ends, if that is later than they would expire."""
        txn_id = age[1]
        if txn_id in self._wounded:
            return Grant.WOUNDED
        holder = self._holder.get(key)
        if holder is not None and holder[1] != txn_id:
            if self.wound_at(key, age) is None or now < self._since[holder[1]] + WOUND_GRACE_S:
                if txn_id in self._expires:
                    # Its locks outlive its queue wait: a transaction queued behind an older
                    # one lost the locks it held to younger readers after LOCK_TTL_S, which
                    # is shorter than a wait may be (found by review). Not past the wait's
                    # end: every wake asks again, and a dead client's locks outlived its
                    # wait by LOCK_QUEUE_MAX_S (found by review).
                    self._expires[txn_id] = max(self._expires[txn_id], queue_until)
                return Grant.WAIT
            self._wounded[holder[1]] = (now + WOUND_MEMORY_S, key, txn_id)
            self.release(holder[1])
        self._holder[key] = age
        if txn_id not in self._keys:
            self._keys[txn_id] = set()
            self._since[txn_id] = now
        self._keys[txn_id].add(key)
        self._expires[txn_id] = now + LOCK_TTL_S
        return Grant.GRANTED

    def wound_at(self, key: bytes, age: Age) -> float | None:
        """When a requester of `age` that must WAIT for `key` may wound its holder (None:
        never, it waits for the release: the holder is older or already committing)."""
        holder = self._holder.get(key)
        if holder is None or holder < age or holder[1] in self._committing:
            return None
        return self._since[holder[1]] + WOUND_GRACE_S

    def holder(self, key: bytes) -> bytes | None:
        """The txn id holding `key`'s lock."""
        age = self._holder.get(key)
        return None if age is None else age[1]

    def wound(self, txn_id: bytes) -> tuple[bytes, bytes] | None:
        """(key, older txn id) of the wound `txn_id` received here, or None."""
        found = self._wounded.get(txn_id)
        return None if found is None else (found[1], found[2])

    def committing(self, txn_id: bytes) -> None:
        """The holder's Prepare (or one-phase commit) reached the leader: from now on its
        locks are waited for, not wounded (it may already hold intents elsewhere; its own
        intents here take over when it is applied)."""
        if txn_id in self._keys:
            self._committing.add(txn_id)

    def release(self, txn_id: bytes) -> None:
        """Release every lock of `txn_id` (no-op when it holds none)."""
        keys = self._keys.pop(txn_id, None)
        self._expires.pop(txn_id, None)
        self._since.pop(txn_id, None)
        self._committing.discard(txn_id)
        if keys:
            for key in keys:
                del self._holder[key]
            self.releases += 1

    def expire(self, now: float) -> None:
        """Release the locks past their life, except a committing holder's (its Prepare's
        answer releases them, whenever it comes), and forget old wounds."""
        # Found by review: a Prepare parked on another transaction's intents (rule L2, up
        # to LOCK_WAIT_MAX_S) lost its own transaction's locks here to a younger reader,
        # which wrote, and the older transaction's commit was then refused.
        expired = [t for t, at in self._expires.items() if at <= now and t not in self._committing]
        for txn_id in expired:
            self.release(txn_id)
        for txn_id in [t for t, (at, _, _) in self._wounded.items() if at <= now]:
            del self._wounded[txn_id]

    def clear(self) -> None:
        """Forget everything (this replica stopped leading)."""
        if self._holder:
            self.releases += 1
        self._holder.clear()
        self._keys.clear()
        self._expires.clear()
        self._since.clear()
        self._wounded.clear()
        self._committing.clear()


def request_age(op: Any) -> Age:
    """The wait-die age of a Prepare request: smaller is older."""
    return (op.priority or op.ts, op.txn_id)


def blocked(shard: Any, kind: str, op: Any, age_of: AgeOf, proven: ProvenCommits) -> bool:
    """Whether the request should wait now (rules L0-L3).

    Args:
        shard: the group's `ShardStateMachine` (applied state).
        kind: the request kind (`get`, `scan`, `put`, `delete`, `cas`, `prepare`,
            `commit_one_phase`); other kinds never wait.
        op: the request body.
        age_of: ages of the prepared transactions this leader knows.
        proven: the transactions whose commit is proven at this leader (node rule 14):
            their intents hold up nothing proposed from now on, and a get reads through.
    """
    if not shard.has_intents:
        return False  # the common case: nothing to wait for, no lookups
    if kind == "get":
        if op.snapshot or op.stale_ok:
            return False
        intents = shard.intents_on(op.key)
        writes = any(i.is_write for i in intents)
        return writes and proven.read_through(shard, intents) is None
    if kind == "scan":
        if op.snapshot or op.stale_ok:
            return False
        end = op.end if op.HasField("end") else shard.key_range[1]
        held = [key for key, i in shard.intents_in_range(op.start, end) if i.is_write]
        if not held:
            return False
        covered = scan_page(shard, op, end, None)[2]
        return any(within(key, covered) for key in held)
    if kind == "cas" and (op.touch or _cas_fails(shard, op)):
        # Rule W1: a touch, or a compare-and-set bound to fail (it writes nothing), meets
        # only write intents.
        holders = [i.txn_id for i in shard.intents_on(op.key) if i.is_write]
        return any(not proven.resolves(shard, t) for t in holders)
    if kind in ("put", "delete", "cas"):
        holders = [i.txn_id for i in shard.intents_on(op.key)] + shard.scanners(op.key)
        return any(not proven.resolves(shard, t) for t in holders)
    if kind == "commit_one_phase":
        if shard.decision(op.txn_id) is not None or _stale(shard, op.reads):
            return False
        return bool(_holders(shard, op, proven))
    if kind == "prepare":
        if shard.prepared(op.txn_id) is not None or shard.decision(op.txn_id) is not None:
            return False
        if _stale(shard, op.reads):
            return False
        holders = _holders(shard, op, proven)
        return bool(holders) and _older_holder(op, holders, age_of) is None
    return False


def scan_page(
    shard: Any, op: Any, end: bytes | None, at: int | None
) -> tuple[list[tuple[bytes, bytes, int]], int, tuple[bytes, bytes | None], int]:
    """The page a scan request `op` of [op.start, end) gets at version `at` (None: the
    latest): its items, the item limit in force, the part of the range it covers
    (`scan_covers`), and the newest deletion it shows (`scan_with_deletions`)."""
    limit = min(op.limit or DEFAULT_SCAN_ITEMS, MAX_SCAN_ITEMS)
    items, deleted_at = shard.scan_with_deletions(
        op.start, end, limit, at, MAX_SCAN_RESPONSE_BYTES, op.reverse
    )
    return items, limit, scan_covers(op.start, end, items, limit, op.reverse), deleted_at


def scan_covers(
    start: bytes,
    end: bytes | None,
    items: list[tuple[bytes, bytes, int]],
    limit: int,
    reverse: bool = False,
) -> tuple[bytes, bytes | None]:
    """The part [lo, hi) of a scan's range [start, end) its answer `items` covers (hi None:
    no end): when its item `limit` or the byte budget cut the answer, up to just past its
    last item (reverse: down to its last item, the lowest key), since the client reads on
    from there (and a transaction records its range only that far, txn.participant rule
    P6); else the whole range. A write intent outside it is nothing the answer shows, so
    the scan neither waits for it nor is refused for it (rule L1)."""
    size = sum(len(k) + len(v) for k, v, _ in items)
    if not items or (len(items) < limit and size < MAX_SCAN_RESPONSE_BYTES):
        return start, end
    if reverse:
        return items[-1][0], end
    return start, items[-1][0] + b"\x00"


def within(key: bytes, key_range: tuple[bytes, bytes | None]) -> bool:
    """`key` lies in [lo, hi) (hi None: no end)."""
    lo, hi = key_range
    return lo <= key and (hi is None or key < hi)


def _cas_fails(shard: Any, op: Any) -> bool:
    """Whether a compare-and-set request's condition fails on the key's latest committed
    value (the apply decides again: this only spares it a wait)."""
    value, version = shard.get(op.key) or (None, 0)
    expect = EXPECT_OF_FIELD[op.WhichOneof("expect")]
    return not cas_condition_holds(expect, op.expected_value, op.expected_version, value, version)


def _stale(shard: Any, reads: Iterable[Any]) -> bool:
    """A read version the apply would refuse (txn.participant rule P3's version test)."""
    for read in reads:
        latest = shard.latest_record(read.key)
        version, tombstone = (0, True) if latest is None else latest
        if version != read.version and not (read.version == 0 and tombstone):
            return True
    return False


@dataclass(frozen=True, slots=True)
class DueKeyRead:
    """Rule L5: a Prepare reads `key`, whose value is due for expiry, or scans a range
    holding it. `older_holder` is a transaction holding the key (an intent, a prepared
    scan) that is not younger than the Prepare, which therefore must not wait (wait-die):
    it is refused at once instead."""

    key: bytes
    older_holder: bytes | None


def due_key_read(
    shard: Any, op: Any, due: DueKeys, age_of: AgeOf, proven: ProvenCommits
) -> DueKeyRead | None:
    """Rule L5 for a Prepare `op`: the first key due for expiry it reads or scans, or None
    (none, or it is bound to go to the log anyway: L3)."""
    if not due:
        return None
    key = next((r.key for r in op.reads if due.holds(shard, r.key)), None)
    for key_range in op.read_ranges:
        if key is not None:
            break
        key = due.first_in(shard, key_range.start, key_range.end or shard.key_range[1])
    if key is None:
        return None
    if shard.prepared(op.txn_id) is not None or shard.decision(op.txn_id) is not None:
        return None
    if _stale(shard, op.reads):
        return None
    holders = [
        t
        for t in [i.txn_id for i in shard.intents_on(key)] + shard.scanners(key)
        if t != op.txn_id and not proven.resolves(shard, t)
    ]
    return DueKeyRead(key, _older_holder(op, holders, age_of))


def _older_holder(op: Any, holders: Iterable[bytes], age_of: AgeOf) -> bytes | None:
    """Wait-die (L2, L5): the first of `holders` a Prepare `op` must not wait for, one not
    younger than it (a holder of unknown age counts as older), or None."""
    mine = request_age(op)
    for holder in holders:
        age = age_of(holder)
        if age is None or age < mine:
            return holder
    return None


def _holders(shard: Any, op: Any, proven: ProvenCommits) -> list[bytes]:
    """Other transactions holding intents or scanned ranges that conflict with `op` (rules
    P3, P4 and P6), but for those whose proven commit resolves them first (node rule 14)."""
    found: list[bytes] = []
    for read in op.reads:
        found += [i.txn_id for i in shard.intents_on(read.key) if i.is_write]
    for write in op.writes:
        found += [i.txn_id for i in shard.intents_on(write.key)]
        found += shard.scanners(write.key)
    for key_range in op.read_ranges:
        end = key_range.end or shard.key_range[1]
        found += [i.txn_id for _, i in shard.intents_in_range(key_range.start, end) if i.is_write]
    return [t for t in found if t != op.txn_id and not proven.resolves(shard, t)]
