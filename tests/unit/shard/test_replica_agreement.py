"""Property: replicas that collect, restore and crash differently apply every slot alike.

Three replicas of one shard apply the same slots of puts and compare-and-sets (with and
without a time to live, touches among them), deletes, the Expires a leader would propose
(from `due_expiries`, some stamped as if chosen late), Prepares and one-phase commits whose
writes carry TTLs, deletes and scanned ranges, Resolves (commit and abort, some committing
below their prepare timestamp, rule R3) and Prevents:

- `full` is the reference, never collected;
- `collected` runs collection passes (whole, or bounded steps with the horizon raised
  meanwhile), crashes (losing unsynced batches, then re-applying the log) and is restored
  from its own snapshot or the reference's;
- `restored` is restored from the reference at random points (whole, or a few records a
  step, sometimes reopened afterwards), crashes too, and keeps a recent-versions list of
  three entries, so reads of changes keep falling back to the whole-range read.

After every slot: every replica gave the same results; every record but the version
records is the same in all three (`restored` holds the reference's versions exactly);
the state derived from the records (intents, prepared, scanned ranges) is the same; every
Expire that deleted something deleted the version a write gave that deadline, at or after
it, with no write between, and every live value written with a TTL still has its expiry
(no value gains one);
reads at or above the collection horizon (at it too) match the reference, and the
reference matches a model built from its version records (scans both ways with limits,
reads of changes paged through the client's `ChangesRound`).

Built from a review's differential fuzzer (session 56), which found nothing on 300 seeds:
it keeps that coverage in the suite. A failing run prints its seed (hypothesis).
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from router.watch_lanes import Change, ChangesRound
from shard.codec import (
    CommandResult,
    Op,
    decode_command,
    encode_cas,
    encode_delete,
    encode_expire,
    encode_put,
    encode_txn,
)
from shard.engine import MemEngine
from shard.limits import MAX_TS
from shard.mvcc import KIND_TOMBSTONE, VERSION_TAG, group_prefix, record_version, unescape_key
from shard.state_machine import ShardStateMachine
from shard.ttl import LIVES_TAG, deadline_of, unpack_lives
from txn.hlc import LOGICAL_BITS
from txn.records import (
    CommitOnePhase,
    KeyRange,
    OnePhaseResult,
    Prepare,
    Prevent,
    ReadItem,
    Resolve,
    WriteItem,
)

GROUP = 3
RANGE = (b"a", b"z")
KEYS = [b"k0", b"k1", b"k1\x00", b"k1\x00\x01", b"k2", b"k3"]
MS = 1000 << LOGICAL_BITS
OTHER_GROUP = 7
STEPS = 120


class Replica:
    """One replica: its engine, its state machine and the log of slots it applied."""

    def __init__(self, recent_versions: int = 100_000) -> None:
        self.engine = MemEngine()
        self.recent_versions = recent_versions
        self.sm = self._open()
        self.log: list[list[bytes]] = []

    def _open(self) -> ShardStateMachine:
        return ShardStateMachine(GROUP, RANGE, self.engine, recent_versions=self.recent_versions)

    def apply(self, commands: list[bytes]) -> list[CommandResult]:
        self.log.append(commands)
        return self._apply_slot(len(self.log), commands)

    def _apply_slot(self, slot: int, commands: list[bytes]) -> list[CommandResult]:
        batch = self.engine.new_batch()
        results = self.sm.apply(slot, commands, batch)
        self.engine.write(batch, False)
        return results

    def crash(self) -> None:
        """Lose what was not synced, reopen, and apply the log from the applied index on."""
        self.engine.crash()
        self.sm = self._open()
        for slot in range(self.sm.applied_index + 1, len(self.log) + 1):
            self._apply_slot(slot, self.log[slot - 1])

    def restore_from(self, source: Replica, rng: random.Random) -> None:
        """Restore `source`'s snapshot, whole or a few records a step, maybe reopen."""
        blob, index = source.sm.snapshot(), source.sm.applied_index
        if rng.random() < 0.5:
            batch = self.engine.new_batch()
            self.sm.restore(index, blob, batch)
            self.engine.write(batch, False)
        else:
            restore = self.sm.begin_restore(index, blob)
            done = False
            while not done:
                batch = self.engine.new_batch()
                done = restore.step(batch, rng.randint(1, 4), 1 << 30)
                self.engine.write(batch, False)
        if rng.random() < 0.3:
            self.sm = self._open()

    def collect(self, horizon: int, rng: random.Random) -> None:
        """Start a pass up to `horizon` and run it to its end or a step or so."""
        batch = self.engine.new_batch()
        self.sm.start_gc(horizon, batch)
        if rng.random() < 0.5:
            self.sm.gc_step(batch, rng.randint(1, 3))
        else:
            while self.sm.gc_pending:
                self.sm.gc_step(batch, 2)
        self.engine.write(batch, False)

    def collect_a_step(self, rng: random.Random) -> None:
        batch = self.engine.new_batch()
        self.sm.gc_step(batch, rng.randint(1, 3))
        self.engine.write(batch, False)

    def records(self, *, versions: bool) -> dict[bytes, bytes]:
        """The group's records but its meta (and, unless `versions`, its version records)."""
        prefix = group_prefix(GROUP)
        found = {}
        for key, value in self.engine.scan(prefix, prefix + b"\xff", None):
            suffix = key[len(prefix) :]
            if suffix == b"m" or (not versions and suffix[:1] == VERSION_TAG):
                continue
            found[suffix] = value
        return found

    def derived(self) -> tuple[Any, ...]:
        """The state the state machine derives from its records (rebuilt on open/restore)."""
        sm = self.sm
        return (
            sm._intent_keys,
            sorted(sm._prepared_ids),
            sorted(sm._scanned.items()),
            sorted(sm._unfinished_ids),
            sm.max_version,
            sm.applied_index,
        )

    def history(self) -> dict[bytes, list[tuple[int, bytes | None]]]:
        """Every key's versions, oldest first, from the version records (None: deleted)."""
        prefix = group_prefix(GROUP) + VERSION_TAG
        found: dict[bytes, list[tuple[int, bytes | None]]] = {}
        for record_key, value in self.engine.scan(prefix, prefix + b"\xff", None):
            key = unescape_key(record_key[len(prefix) : -9])
            deleted = record_key[-1:] == KIND_TOMBSTONE
            found.setdefault(key, []).append(
                (record_version(record_key), None if deleted else value)
            )
        return {key: sorted(versions) for key, versions in found.items()}


@dataclass
class Workload:
    """Draws the slots, from `rng` and what the reference holds."""

    rng: random.Random
    reference: Replica
    ts: int = 1_000_000 * MS
    txns: int = 0

    def slot(self, step: int) -> list[bytes]:
        commands = []
        for _ in range(self.rng.randint(1, 3)):
            self.ts += self.rng.choice([1, 5, 50 * MS, 200 * MS])
            stamped = self.ts - self.rng.choice([0, 0, 0, 100 * MS, 400 * MS])  # chosen late
            command = self._command(step, stamped)
            if command is not None:
                commands.append(command)
        return commands

    def _command(self, step: int, ts: int) -> bytes | None:
        rng, sm = self.rng, self.reference.sm
        key = rng.choice(KEYS)
        ttl_ms = rng.choice([0, 0, 100, 300])
        draw = rng.random()
        if draw < 0.18 or 0.85 <= draw < 0.9:
            return encode_put(key, b"v%d" % step, ts, ttl_ms)
        if draw < 0.25:
            return encode_delete(key, ts)
        if draw < 0.33:
            latest = sm.latest_record(key)
            version = latest[0] if latest and not latest[1] else 0
            if version and rng.random() < 0.6:
                return encode_cas(
                    key, ts, expected_version=version, touch=True, ttl_ms=rng.choice([100, 500])
                )
            return encode_cas(
                key, ts, expected_version=version, new_value=b"c%d" % step, ttl_ms=ttl_ms
            )
        if draw < 0.48:
            due = sm.due_expiries(ts, 10)
            if not due:
                return None
            deadline, expired, version = rng.choice(due)
            return encode_expire(expired, version, deadline, max(ts, deadline))
        if draw < 0.62:
            return self._commit(ts)
        if draw < 0.8 and sm._prepared_ids:
            txn_id = rng.choice(sorted(sm._prepared_ids))
            info = sm.prepared(txn_id)
            assert info is not None
            commit = rng.random() < 0.7
            commit_ts = info.prepare_ts + rng.choice([0, 1, 300 * MS]) if commit else 0
            resolve = Resolve(
                txn_id=txn_id, commit=commit, commit_ts=commit_ts, participants=(GROUP, OTHER_GROUP)
            )
            return encode_txn(resolve, ts)
        if draw < 0.85:
            txn_id = b"t%04d" % rng.randint(1, self.txns + 1)
            return encode_txn(
                Prevent(txn_id=txn_id, asker_ts=ts, participants=(GROUP, OTHER_GROUP)), ts
            )
        return None

    def _commit(self, ts: int) -> bytes:
        """A Prepare or a one-phase commit reading 0-2 keys (at their latest version, mostly)
        and writing 0-2 (a delete or a value, half of them with a TTL), maybe scanning k3."""
        rng, sm = self.rng, self.reference.sm
        self.txns += 1
        txn_id = b"t%04d" % self.txns
        reads = []
        for key in rng.sample(KEYS, rng.randint(0, 2)):
            latest = sm.latest_record(key)
            reads.append(
                ReadItem(key=key, version=latest[0] if latest and rng.random() < 0.8 else 0)
            )
        writes = tuple(
            WriteItem(key=key, value=None)
            if rng.random() < 0.2
            else WriteItem(key=key, value=b"w" + txn_id, ttl_ms=rng.choice([0, 200]))
            for key in rng.sample(KEYS, rng.randint(0, 2))
        )
        ranges: tuple[KeyRange, ...] = ()
        if rng.random() < 0.3:  # a scan of [k3, k4): it read k3 at its latest version
            ranges = (KeyRange(start=b"k3", end=b"k4"),)
            latest = sm.latest_record(b"k3")
            reads = [r for r in reads if r.key != b"k3"]
            reads.append(ReadItem(key=b"k3", version=latest[0] if latest else 0))
        if rng.random() < 0.3:
            one_phase = CommitOnePhase(
                txn_id=txn_id, reads=tuple(reads), writes=writes, read_ranges=ranges
            )
            return encode_txn(one_phase, ts)
        prepare = Prepare(
            txn_id=txn_id,
            coordinator_group=GROUP,
            participants=(GROUP, OTHER_GROUP),
            reads=tuple(reads),
            writes=writes,
            read_ranges=ranges,
        )
        return encode_txn(prepare, ts)


@dataclass
class Deadlines:
    """The deadline each write gave the version it wrote: what an Expire may delete."""

    given: dict[tuple[bytes, int], int] = field(default_factory=dict)

    def intents_resolved_by(self, sm: ShardStateMachine, commands: list[bytes]) -> dict[bytes, Any]:
        """Before the slot: the prepared record and write intents of each txn it resolves."""
        found = {}
        for command in commands:
            decoded = decode_command(command)
            if decoded.op is Op.TXN and isinstance(decoded.txn, Resolve):
                info = sm.prepared(decoded.txn.txn_id)
                if info is not None:
                    intents = {
                        key: next(
                            i for i in sm.intents_on(key) if i.txn_id == info.txn_id and i.is_write
                        )
                        for key in info.write_keys
                    }
                    found[info.txn_id] = (info, intents)
        return found

    def check_and_note(
        self, commands: list[bytes], results: list[CommandResult], resolved: dict[bytes, Any]
    ) -> None:
        for command, result in zip(commands, results, strict=True):
            decoded = decode_command(command)
            if decoded.op is Op.EXPIRE:
                if result.version:  # it deleted: the version a write gave that deadline
                    given = self.given.get((decoded.key, decoded.expected_version))
                    assert given == decoded.deadline <= decoded.ts, (decoded, given)
            elif decoded.op in (Op.PUT, Op.CAS):
                if result.ok and result.expires_at:
                    self.given[(decoded.key, result.version)] = result.expires_at
            elif isinstance(decoded.txn, Resolve) and decoded.txn.commit:
                if decoded.txn.txn_id in resolved:
                    info, intents = resolved[decoded.txn.txn_id]
                    if decoded.txn.commit_ts >= info.prepare_ts:
                        for key, intent in intents.items():
                            if intent.value is not None and intent.ttl_ms:
                                deadline = deadline_of(decoded.txn.commit_ts, intent.ttl_ms)
                                self.given[(key, decoded.txn.commit_ts)] = deadline
            elif isinstance(decoded.txn, CommitOnePhase) and result.ok:
                committed = result.txn
                assert isinstance(committed, OnePhaseResult)
                for write in decoded.txn.writes if committed.committed else ():
                    if write.value is not None and write.ttl_ms:
                        deadline = deadline_of(committed.commit_ts, write.ttl_ms)
                        self.given[(write.key, committed.commit_ts)] = deadline

    def check_expired_what_it_named(
        self, replica: Replica, commands: list[bytes], results: list[CommandResult]
    ) -> None:
        """An Expire that deleted ended the version it named: no write came between (an
        Expire of a value written over since must leave the newer one alone)."""
        history = replica.history()
        for command, result in zip(commands, results, strict=True):
            decoded = decode_command(command)
            if decoded.op is Op.EXPIRE and result.version:
                below = [v for v in history[decoded.key] if v[0] < result.version]
                assert below[-1][0] == decoded.expected_version, (decoded, below[-1])
                assert below[-1][1] is not None

    def check_live(self, replica: Replica) -> None:
        """Every live value with a TTL still has its expiry; none without one gained one."""
        sm = replica.sm
        due = {(key, version): d for d, key, version in sm.due_expiries(MAX_TS, 10_000)}
        for key in KEYS:
            latest = sm.latest_record(key)
            if latest is None or latest[1]:
                continue
            version = latest[0]
            packed = replica.engine.get(group_prefix(GROUP) + LIVES_TAG + key)
            lives = unpack_lives(packed) if packed else None
            given = self.given.get((key, version))
            if given is not None:
                assert due.get((key, version)) == given and lives == (version, given), key
            else:
                assert lives is None or lives[0] != version, (key, lives)


def assert_alike(full: Replica, collected: Replica, restored: Replica) -> None:
    records = [r.records(versions=False) for r in (full, collected, restored)]
    assert records[0] == records[1] == records[2]
    assert full.records(versions=True) == restored.records(versions=True)
    assert full.derived() == collected.derived() == restored.derived()


def model_scan(
    history: dict[bytes, list[tuple[int, bytes | None]]], at: int
) -> list[tuple[bytes, bytes, int]]:
    scan = []
    for key in sorted(history):
        seen = [(v, value) for v, value in history[key] if v <= at]
        if seen and seen[-1][1] is not None:
            scan.append((key, seen[-1][1], seen[-1][0]))
    return scan


def model_changes(
    history: dict[bytes, list[tuple[int, bytes | None]]], after: int, at: int
) -> list[Change]:
    changes = []
    for key in sorted(history):
        before: tuple[int, bytes | None] | None = None
        for version, value in history[key]:
            if version > at:
                break
            if version > after:
                live = before if before and before[1] is not None else None
                changes.append(
                    Change(version, key, value, live[1] if live else None, live[0] if live else 0)
                )
            before = (version, value)
    return sorted(changes)


def paged_changes(replica: Replica, after: int, at: int, limit: int, records: int) -> list[Change]:
    """The changes in (after, at] read as a watch reads them: pages into a ChangesRound."""
    round_ = ChangesRound([RANGE], after, at)
    delivered: list[Change] = []
    for _ in range(1000):
        if round_.done:
            break
        for lane in round_.behind():
            page = replica.sm.changes(
                lane.start, lane.end, lane.after, at, limit, 1 << 30, records, prev_values=True
            )
            round_.take(lane, page.changes, page.covered_end, page.through)
        delivered += round_.deliver()
    assert round_.done
    return delivered + round_.deliver()


def assert_reads(replicas: tuple[Replica, Replica, Replica], now: int, rng: random.Random) -> None:
    full, collected = replicas[0], replicas[1]
    horizon = collected.sm.gc_horizon
    history = full.history()
    for _ in range(3):
        at = now - rng.randint(0, 3000) * MS
        if horizon:
            at = horizon if rng.random() < 0.3 else max(horizon, at)
        for key in KEYS:
            assert collected.sm.get(key, at) == full.sm.get(key, at), (key, at, horizon)
        expected = model_scan(history, at)
        for reverse in (False, True):
            want = expected[::-1] if reverse else expected
            assert full.sm.scan(*RANGE, 100, at, reverse=reverse) == want
            assert collected.sm.scan(*RANGE, 100, at, reverse=reverse) == want
            for limit in (1, 2, 3):
                assert full.sm.scan(*RANGE, limit, at, reverse=reverse) == want[:limit]
        if at >= now:
            continue
        changes = model_changes(history, at, now)
        pages = [
            r.sm.changes(*RANGE, at, now, 1000, 1 << 30, 1 << 30, prev_values=True)
            for r in replicas
        ]
        assert pages[0].changes == changes and pages[0].covered_end is None
        assert pages[0] == pages[1] == pages[2]
        for replica in replicas:
            for limit, records in ((1, 1 << 30), (2, 3), (1000, 2)):
                assert paged_changes(replica, at, now, limit, records) == changes


def run(seed: int, steps: int = STEPS) -> None:
    rng = random.Random(seed)
    full, collected, restored = Replica(), Replica(), Replica(recent_versions=3)
    replicas = (full, collected, restored)
    workload = Workload(rng, full)
    deadlines = Deadlines()
    for step in range(steps):
        commands = workload.slot(step)
        if not commands:
            continue
        resolved = deadlines.intents_resolved_by(full.sm, commands)
        results = [replica.apply(commands) for replica in replicas]
        assert results[0] == results[1] == results[2], step
        deadlines.check_and_note(commands, results[0], resolved)
        deadlines.check_expired_what_it_named(full, commands, results[0])
        deadlines.check_live(full)
        if rng.random() < 0.2:
            collected.collect(workload.ts - rng.choice([0, 100, 500, 2000]) * MS, rng)
        elif collected.sm.gc_pending and rng.random() < 0.5:
            collected.collect_a_step(rng)
        for replica in (collected, restored):
            if rng.random() < 0.05:
                replica.crash()
            if rng.random() < 0.1:
                replica.engine.sync()
        if rng.random() < 0.08:
            restored.restore_from(full, rng)
        if rng.random() < 0.05:
            collected.restore_from(rng.choice([collected, full]), rng)
        assert_alike(*replicas)
        assert_reads(replicas, workload.ts, rng)


@settings(max_examples=8)
@given(seed=st.integers(0, 2**32 - 1))
def test_replicas_apply_alike_whatever_they_collect_restore_or_lose(seed: int) -> None:
    run(seed)
