"""One shard's replicated state machine: MVCC single-key commands over a shared engine.

Theory of operation
-------------------
A Paxos group chooses slots; each slot holds a batch of encoded commands (`shard.codec`). The
node applies every chosen slot of every group it hosts into ONE engine batch per event-loop
cycle and writes it unsynced: the Paxos log is durable already, and a crash re-applies from
it. The state machine is pure: no clock, no randomness, no I/O but the `Engine` calls it is
handed, so every replica computes the same results and the same bytes.

Keyspace layout (one engine per node, shared by every group and by the Paxos storage)
-------------------------------------------------------------------------------------
``P = b"d" + group_id.to_bytes(4, "big")``; all of a group's keys lie in
[P, storage_prefix_end(P)), so a snapshot is one range scan and a restore is one range
delete. Paxos uses first byte b"p".

=========================================  ==========================================
key                                        value
=========================================  ==========================================
``P + b"l" + key``                         latest record: ``>Q`` newest version + kind
                                           (b"v" value / b"t" tombstone)
``P + b"m"``                               meta: ``>QQQ`` applied_index, max_version,
                                           gc_horizon
``P + b"v" + esc(key) + inv(ver) + kind``  the value at that version (b"" for a tombstone)
``P + b"i" + key``                         every intent on the key (`txn.codec`
                                           KeyIntents, ordered by txn id)
``P + b"tp" + txn_id``                     prepared record (participant)
``P + b"td" + txn_id``                     decision record (coordinator group)
``P + b"tu" + txn_id``                     b"": the decision is not finished yet
``P + b"tq" + >Q seq``                     txn id of the seq-th decision to finish
``P + b"tc"``                              ``>QQQQ`` head, tail of that queue, purge
                                           mark, unverified purge mark
``P + b"e" + >Q deadline + key``           ``>Q`` version: a value with a time to live,
                                           due at deadline (`shard.ttl`)
``P + b"x" + key``                         ``>QQ`` version, deadline: the key's own
                                           expiry record
=========================================  ==========================================

``esc`` is the order-preserving escape of `shard.mvcc` (0x00 -> 0x00 0xFF, then 0x00 0x01),
``inv(ver)`` is 8 big-endian bytes of 2**64-1-ver: a forward scan meets the newest version of
a key first, and keys come in user-key order. Intents and transaction records live under the
group prefix too, so snapshots and restores carry them with the data.

Transactions
------------
Transaction commands (`Op.TXN`, see `shard.codec.encode_txn`) run the rules of
`txn.participant` and `txn.coordinator` over `_BatchTxnStore`, this module's `TxnStore`:
point lookups through the slot's batch, like every other apply. A single-key Put, Delete or
CAS on a key holding an intent is refused with `Status.CONFLICT` (rule W1) and writes
nothing; `_intent_keys` (the number of keys holding intents, recounted from the engine at
start and on restore) lets the common case skip that lookup. Likewise the ids of the
prepared transactions and of the unfinished decisions are kept in memory (loaded at start and
on restore, updated as staged), so the leaders' periodic transaction duties look up only
those records instead of scanning prefixes that deletions fill with RocksDB tombstones.

Rules
-----
1. The applied index, the max version and the data they cover are staged in the same batch.
2. A slot <= applied_index is a no-op (re-apply after a crash); a gap raises ApplyOrderError.
3. version = max(ts, max_version + 1): versions strictly increase across the whole shard.
4. Apply never raises on a bad command: it returns an error `CommandResult`, the same on
   every replica. Deleting an absent key writes nothing and reports version 0.
5. Apply needs only point lookups (through the batch, so a later command of the same cycle
   sees an earlier one's write). Reads (`get`, `scan`, and the transaction queries
   `latest_record`, `intents_on`, `prepared`, `decision`, ...) read the written engine state.
6. A transaction command writes nothing unless every key and value in it is valid and inside
   the shard's range; a refused one (CONFLICT) writes nothing either.
7. A Put or CAS with a time to live (or a transaction's write with one, at its commit)
   stages an expiry record with the version it writes, and notes it as the key's own. An
   Expire applies only at or past its deadline (ts >= deadline, else INVALID_ARGUMENT and
   nothing written), like any single-key write only on a key without intents (else
   CONFLICT, and the record stays for a later Expire); it drops its record, and deletes
   the key only if the record is still the key's own and the key's latest version is
   still the live version the record names.
8. A CAS that touches (its condition held, on a live value) writes no version: it stages
   an expiry record for the key's latest version at max(its own deadline, ts + ttl) and
   notes that one as the key's own; a value without a time to live is left as it is, and
   a touch of an absent key fails as a CAS whose condition did not hold.
"""

from __future__ import annotations

import bisect
import struct
from collections.abc import Iterator, Sequence

from router.limits import MAX_TTL_MS
from shard.changes import ChangesCollector, ChangesPage
from shard.codec import Command, CommandResult, Expect, Op, decode_command
from shard.engine import Engine, EngineBatch
from shard.errors import (
    ApplyOrderError,
    InvalidArgument,
    InvariantViolation,
    LimitExceeded,
    MalformedCommand,
    ShardError,
    SnapshotCorrupt,
    Status,
    VersionCompacted,
    WrongShard,
)
from shard.limits import (
    MAX_COMMAND_BYTES,
    MAX_KEY_BYTES,
    MAX_TS,
    MAX_VALUE_BYTES,
    validate_command_size,
    validate_key,
    validate_range,
    validate_ts,
    validate_ttl,
    validate_value,
)
from shard.mvcc import (
    DECISION_TAG,
    INTENT_TAG,
    KEY_TERMINATOR,
    KEY_TERMINATOR_END,
    KIND_TOMBSTONE,
    KIND_TOMBSTONE_INT,
    KIND_VALUE,
    LATEST_TAG,
    MAX_U64,
    META_TAG,
    PREPARED_TAG,
    PURGE_COUNTERS_TAG,
    PURGE_QUEUE_TAG,
    TXN_TAG,
    UNFINISHED_TAG,
    VERSION_TAG,
    PurgeCounters,
    group_prefix,
    pack_counters,
    pack_latest,
    pack_meta,
    pack_seq,
    restore_prefix,
    storage_prefix_end,
    unescape_key,
    unpack_counters,
    unpack_latest,
    unpack_meta,
)
from shard.snapshots import (
    ShardRestore,
    ShardSnapshotBuild,
    check_header,
    interrupted_restore,
)
from shard.ttl import (
    EXPIRY_TAG,
    LIVES_TAG,
    deadline_of,
    expiry_suffix,
    pack_lives,
    pack_version,
    split_expiry_suffix,
    unpack_lives,
    unpack_version,
)
from txn import coordinator, participant
from txn.codec import (
    MalformedTxnRecord,
    decode_decision,
    decode_intents,
    decode_prepared,
    encode_decision,
    encode_intents,
    encode_prepared,
)
from txn.records import (
    CommitOnePhase,
    Conflict,
    Decide,
    DecisionInfo,
    Finish,
    IntentInfo,
    KeyRange,
    Prepare,
    PreparedInfo,
    Prevent,
    PurgeDecisions,
    Resolve,
    TxnResult,
)
from txn.store import StoreInvariantError

__all__ = ["CommandResult", "ShardStateMachine"]

_SCAN_PAGE = 256
#: A restore a crash interrupted is redone at open in batches of about this many bytes.
REDO_STEP_BYTES = 8 * 1024 * 1024

RECENT_VERSIONS = 100_000
"""Versions a replica lists in memory by version, newest kept (`changes`): a read of
changes above the oldest one listed visits only the keys that changed in the shard, so a
watch's round costs what changed, not what its range holds. When the list grows past this
many versions, or past RECENT_BYTES, its older half is dropped."""

RECENT_BYTES = 8 * 1024 * 1024
"""About the memory one replica's list may take: its keys and ENTRY_OVERHEAD per entry."""

ENTRY_OVERHEAD = 100  # a tuple, an int and a bytes header, as CPython 3.11 lays them out

_OK_NO_WRITE = CommandResult(Status.OK, 0)


class ShardStateMachine:
    """The MVCC state of one shard (key range [start, end)) of Paxos group `group_id`."""

    def __init__(
        self,
        group_id: int,
        key_range: tuple[bytes, bytes | None],
        engine: Engine,
        redo_step_bytes: int = REDO_STEP_BYTES,
        recent_versions: int = RECENT_VERSIONS,
    ) -> None:
        start, end = key_range
        if end is not None and end <= start:
            raise ValueError(f"empty key range [{start!r}, {end!r})")
        self._group_id = group_id
        self._start = start
        self._end = end
        self._engine = engine
        self._prefix = group_prefix(group_id)
        self._prefix_end = storage_prefix_end(self._prefix)
        self._meta_key = self._prefix + META_TAG
        self._latest_prefix = self._prefix + LATEST_TAG
        self._version_prefix = self._prefix + VERSION_TAG
        self._version_end = storage_prefix_end(self._version_prefix)
        self._intent_prefix = self._prefix + INTENT_TAG
        self._intent_end = storage_prefix_end(self._intent_prefix)
        self._expiry_prefix = self._prefix + EXPIRY_TAG
        self._lives_prefix = self._prefix + LIVES_TAG
        self._prepared_prefix = self._prefix + PREPARED_TAG
        self._decision_prefix = self._prefix + DECISION_TAG
        self._unfinished_prefix = self._prefix + UNFINISHED_TAG
        self._queue_prefix = self._prefix + PURGE_QUEUE_TAG
        self._counters_key = self._prefix + PURGE_COUNTERS_TAG
        # Keys holding intents, as staged: a cache that lets single-key writes skip the intent
        # lookup while no transaction is prepared. Derived from the data, never stored.
        self._intent_keys = len(engine.scan(self._intent_prefix, self._intent_end, None))
        self._unfinished_ids = self._load_ids(self._unfinished_prefix)
        # The ranges each prepared transaction scanned (its range intents, rule P6): every
        # write checks them. Derived from the prepared records, never stored on its own.
        self._prepared_ids, self._scanned, prepared_ts = self._load_prepared()
        # The newest prepare, commit or decision timestamp this group ever held (node rule
        # 10: the clock starts and stays above it). Only rises; derived, never stored.
        self._newest_txn_ts = prepared_ts
        #: Bumped whenever an intent is released (or a snapshot replaces the state), so a
        #: request waiting for an intent re-checks only after something was released.
        self.intent_releases = 0
        # The versions staged since `take_written` last ran (what wakes a watch's wait),
        # once a node asked for them (`record_written`): no one else drains the list.
        self._written: list[tuple[bytes, int]] | None = None
        meta = engine.get(self._meta_key)
        if meta is None:
            self._applied_index, self._max_version, self._gc_horizon = 0, 0, 0
        else:
            self._applied_index, self._max_version, self._gc_horizon = unpack_meta(meta)
        # (version, key) of the versions staged since this state was opened or restored,
        # sorted (a commit may stage a version below the newest): every version above
        # `_recent_floor` is listed. Derived, never stored: a restart starts it empty.
        self._recent: list[tuple[int, bytes]] = []
        self._recent_bytes = 0
        self._recent_floor = self._max_version
        self._recent_max = max(2, recent_versions)
        # A collection pass in progress (start_gc / gc_step): the next version record to
        # read, and the escaped key it was reading with whether that key's newest version at
        # or below the horizon was met and, if that version is a tombstone, its record.
        self._gc_cursor: bytes | None = None
        self._gc_key: tuple[bytes, bool, bytes | None] = (b"", False, None)
        staged = interrupted_restore(engine, restore_prefix(group_id))
        #: Whether opening redid a snapshot restore a crash had interrupted (for the log).
        self.redid_restore = staged is not None
        if staged is not None:
            # A crash interrupted a restore after it began replacing this group's keys: the
            # blob it staged first is whole (shard.snapshots), so redo it from the start.
            self.begin_restore(check_header(staged)[0], staged).redo(engine, redo_step_bytes)
        # After the redo: an interrupted restore may have left a marker without its decision.
        for decision in self.unfinished_decisions():
            self._saw_timestamps(decision.commit_ts, decision.decided_ts)

    # ----------------------------------------------------------------------------------------
    # Properties

    @property
    def group_id(self) -> int:
        """The Paxos group this shard belongs to."""
        return self._group_id

    @property
    def key_range(self) -> tuple[bytes, bytes | None]:
        """The shard's key range [start, end); end None is +inf."""
        return (self._start, self._end)

    @property
    def applied_index(self) -> int:
        """The last slot applied (staged into a batch, possibly not yet written)."""
        return self._applied_index

    @property
    def has_intents(self) -> bool:
        """Whether any key of this group holds an intent, or a prepared transaction holds a
        scanned range (rule P6), with no lookup."""
        return self._intent_keys > 0 or bool(self._scanned)

    @property
    def max_version(self) -> int:
        """The newest version written in this shard (0: none yet)."""
        return self._max_version

    @property
    def newest_timestamp(self) -> int:
        """The newest timestamp this group's state holds or held: versions, prepare
        timestamps (a client may report a commit at one on the votes alone), decisions, and
        the GC horizon (reads below it are refused, so a clock below it is of no use)."""
        return max(self._max_version, self._newest_txn_ts, self._gc_horizon)

    def _staged_version(self, key: bytes, version: int) -> None:
        """List a version just staged (for `take_written` and `changes`)."""
        if self._written is not None:
            self._written.append((key, version))
        recent = self._recent
        entry = (version, key)
        if not recent or recent[-1] < entry:
            recent.append(entry)
        else:
            bisect.insort(recent, entry)
        self._recent_bytes += len(key) + ENTRY_OVERHEAD
        if len(recent) > self._recent_max or self._recent_bytes > RECENT_BYTES:
            dropped = (len(recent) + 1) // 2
            self._recent_floor = max(self._recent_floor, recent[dropped - 1][0])
            del recent[:dropped]
            self._recent_bytes = sum(len(k) + ENTRY_OVERHEAD for _, k in recent)

    def record_written(self) -> None:
        """From now on, note what `take_written` returns (a node's waits use it)."""
        if self._written is None:
            self._written = []

    def take_written(self) -> list[tuple[bytes, int]]:
        """The (key, version) of every version and tombstone staged since the last call
        (none before `record_written`)."""
        if self._written is None:
            return []
        written, self._written = self._written, []
        return written

    def _forget_recent(self, floor: int) -> None:
        """List no version: every version above `floor` staged from now on will be."""
        self._recent.clear()
        self._recent_bytes = 0
        self._recent_floor = floor

    def _saw_timestamps(self, *stamps: int) -> None:
        """A prepare, commit or decision timestamp the group holds (see newest_timestamp)."""
        self._newest_txn_ts = max(self._newest_txn_ts, *stamps)

    @property
    def gc_horizon(self) -> int:
        """Reads below this version are refused: older versions may have been collected."""
        return self._gc_horizon

    # ----------------------------------------------------------------------------------------
    # Apply

    def apply(
        self, slot: int, commands: Sequence[bytes], batch: EngineBatch
    ) -> list[CommandResult]:
        """Apply the commands of chosen `slot` into `batch`; one result per command.

        Returns [] for a slot already applied (<= applied_index).

        Raises:
            ApplyOrderError: `slot` is above applied_index + 1 (the caller skipped a slot).
        """
        if slot <= self._applied_index:
            return []
        if slot != self._applied_index + 1:
            raise ApplyOrderError(
                f"group {self._group_id}: slot {slot} applied after {self._applied_index}"
            )
        apply_one = self._apply_one
        results = [apply_one(data, batch) for data in commands]
        self._applied_index = slot
        batch.put(self._meta_key, self._pack_meta())
        return results

    def _pack_meta(self) -> bytes:
        return pack_meta(self._applied_index, self._max_version, self._gc_horizon)

    def _apply_one(self, data: bytes, batch: EngineBatch) -> CommandResult:
        """Apply one encoded command; every failure becomes an error result."""
        if len(data) > MAX_COMMAND_BYTES:
            return _oversized_command_result(data)
        try:
            cmd = decode_command(data)
        except MalformedCommand as exc:
            return CommandResult(Status.MALFORMED, message=str(exc))
        if cmd.op is Op.TXN:
            return self._apply_txn(cmd, batch)
        key = cmd.key
        value = cmd.value
        end = self._end
        if (
            not key
            or len(key) > MAX_KEY_BYTES
            or key < self._start
            or (end is not None and key >= end)
            or cmd.ts > MAX_TS
            or (value is not None and len(value) > MAX_VALUE_BYTES)
            or cmd.ttl_ms > MAX_TTL_MS
            or cmd.deadline > cmd.ts  # rule 7: an Expire never runs before its deadline
        ):
            return self._invalid_command_result(cmd)
        if self._intent_keys or self._scanned:
            held = batch.get(self._intent_prefix + key) if self._intent_keys else None
            intents = [] if held is None else self._decode_intents(held)
            scanners = self.scanners(key)
            conflict = participant.single_key_conflict(
                key, intents, scanners, touch=cmd.touch_past_read_intents
            )
            if conflict is not None and cmd.op is Op.CAS and self._cas_fails(cmd, batch):
                # It writes nothing, so it passes read intents as a read would (rule W1;
                # found by an application trial: a claim of a held lease that readers kept
                # reading met a Conflict, not the failed compare-and-set it is).
                conflict = participant.single_key_conflict(key, intents, scanners, touch=True)
            if conflict is not None:
                return CommandResult(Status.CONFLICT, message=conflict.reason, conflict=conflict)
        op = cmd.op
        if op is Op.PUT:
            assert value is not None
            return self._write_living(key, value, cmd.ts, cmd.ttl_ms, batch)
        if op is Op.EXPIRE:
            return self._expire(cmd, batch)
        if op is Op.DELETE:
            latest = batch.get(self._latest_prefix + key)
            if latest is None:
                return _OK_NO_WRITE
            deleted_at, kind = unpack_latest(latest)
            if kind != KIND_VALUE:
                return CommandResult(Status.OK, absent_since=deleted_at)
            return CommandResult(Status.OK, self._write(key, None, cmd.ts, batch))
        return self._compare_and_set(cmd, batch)

    def _latest(self, key: bytes, batch: EngineBatch) -> tuple[int, bytes | None]:
        """(version, value) of `key`'s latest record through `batch`: (0, None) when never
        written, (the deletion's version, None) when its latest record is a tombstone."""
        latest = batch.get(self._latest_prefix + key)
        if latest is None:
            return 0, None
        version, kind = unpack_latest(latest)
        if kind != KIND_VALUE:
            return version, None
        value = batch.get(self._version_key(key, version, KIND_VALUE))
        if value is None:
            raise InvariantViolation(f"latest version {version} of {key!r} is missing")
        return version, value

    def _cas_fails(self, cmd: Command, batch: EngineBatch) -> bool:
        """Whether a compare-and-set's condition fails on the key's latest value (so it
        writes nothing: a read, which read intents do not hold, participant rule W1)."""
        latest_version, cur_value = self._latest(cmd.key, batch)
        return not _cas_holds(cmd, cur_value, latest_version if cur_value is not None else 0)

    def _compare_and_set(self, cmd: Command, batch: EngineBatch) -> CommandResult:
        key = cmd.key
        latest_version, cur_value = self._latest(key, batch)
        live = cur_value is not None
        cur_version = latest_version if live else 0
        absent_since = 0 if live else latest_version  # the deletion's version, if deleted
        if not _cas_holds(cmd, cur_value, cur_version):
            return CommandResult(
                Status.CAS_FAILED, 0, cur_value, cur_version, absent_since=absent_since
            )
        if cmd.touch:
            return self._touch(key, cur_version, cmd.ts, cmd.ttl_ms, batch)
        if cmd.value is None:
            if not live:
                return CommandResult(Status.OK, absent_since=absent_since)
            return CommandResult(Status.OK, self._write(key, None, cmd.ts, batch))
        return self._write_living(key, cmd.value, cmd.ts, cmd.ttl_ms, batch)

    def _write_living(
        self, key: bytes, value: bytes, ts: int, ttl_ms: int, batch: EngineBatch
    ) -> CommandResult:
        """Write `value`, and with a time to live its expiry record (rule 7)."""
        version = self._write(key, value, ts, batch)
        if not ttl_ms:
            return CommandResult(Status.OK, version)
        deadline = deadline_of(version, ttl_ms)
        self._stage_expiry(key, version, deadline, batch)
        return CommandResult(Status.OK, version, expires_at=deadline)

    def _touch(
        self, key: bytes, version: int, ts: int, ttl_ms: int, batch: EngineBatch
    ) -> CommandResult:
        """Rule 8: the live `version` of `key` lives `ttl_ms` from `ts` on, if that is
        longer than it had (a value without a time to live keeps living for ever)."""
        lives = batch.get(self._lives_prefix + key)
        if lives is None or unpack_lives(lives)[0] != version:
            return CommandResult(Status.OK, version)
        deadline = max(unpack_lives(lives)[1], deadline_of(ts, ttl_ms))
        self._stage_expiry(key, version, deadline, batch)
        return CommandResult(Status.OK, version, expires_at=deadline)

    def _stage_expiry(self, key: bytes, version: int, deadline: int, batch: EngineBatch) -> None:
        """Stage the expiry record of `key`'s `version` at `deadline`, note it as the key's
        own, and drop the record it replaces (rule 7): a lease renewed every few seconds
        for a day left thousands of dead records behind, each a wasted Expire later."""
        lives_key = self._lives_prefix + key
        replaced = batch.get(lives_key)
        if replaced is not None:
            old_deadline = unpack_lives(replaced)[1]
            if old_deadline != deadline:
                batch.delete(self._expiry_prefix + expiry_suffix(old_deadline, key))
        batch.put(self._expiry_prefix + expiry_suffix(deadline, key), pack_version(version))
        batch.put(lives_key, pack_lives(version, deadline))

    def _expire(self, cmd: Command, batch: EngineBatch) -> CommandResult:
        """Rule 7: drop the expiry record; delete the key if its latest version is still
        the record's and the record is still the key's own (no touch moved it on)."""
        key = cmd.key
        record = self._expiry_prefix + expiry_suffix(cmd.deadline, key)
        if batch.get(record) != pack_version(cmd.expected_version):
            # Proposed twice (the first one dropped it), or the record now names a later
            # version written with the same deadline: that one is not this Expire's to drop
            # (found by review: the later value then had no record and lived for ever).
            return _OK_NO_WRITE
        batch.delete(record)
        lives_key = self._lives_prefix + key
        lives = batch.get(lives_key)
        if lives is None or unpack_lives(lives) != (cmd.expected_version, cmd.deadline):
            return _OK_NO_WRITE  # touched since: a later record of the key ends it
        batch.delete(lives_key)
        latest_version, value = self._latest(key, batch)
        if value is None or latest_version != cmd.expected_version:
            return _OK_NO_WRITE  # written again (or deleted) since: not this value's to end
        return CommandResult(Status.OK, self._write(key, None, cmd.ts, batch))

    def due_expiries(
        self, now_ts: int, limit: int, after: tuple[int, bytes] | None = None
    ) -> list[tuple[int, bytes, int]]:
        """(deadline, key, version) of the first `limit` expiry records due at `now_ts`
        (after the record (deadline, key) `after`, if given), soonest first."""
        hi = self._expiry_prefix + expiry_suffix(now_ts + 1, b"")
        lo = self._expiry_prefix
        if after is not None:
            lo += expiry_suffix(*after) + b"\x00"
        strip = len(self._expiry_prefix)
        due = []
        for record, data in self._engine.scan(lo, hi, limit):
            deadline, key = split_expiry_suffix(record[strip:])
            due.append((deadline, key, unpack_version(data)))
        return due

    def _write(self, key: bytes, value: bytes | None, ts: int, batch: EngineBatch) -> int:
        """Stage a new version of `key` (None: a tombstone) and return its version."""
        max_version = self._max_version
        version = ts if ts > max_version else max_version + 1
        self._max_version = version
        self._stage_version(key, value, version, batch)
        return version

    def _stage_version(
        self, key: bytes, value: bytes | None, version: int, batch: EngineBatch
    ) -> None:
        """Stage `key`'s version record (None: a tombstone) and its latest record."""
        self._staged_version(key, version)
        if value is None:
            batch.put(self._version_key(key, version, KIND_TOMBSTONE), b"")
            batch.put(self._latest_prefix + key, pack_latest(version, KIND_TOMBSTONE))
        else:
            batch.put(self._version_key(key, version, KIND_VALUE), value)
            batch.put(self._latest_prefix + key, pack_latest(version, KIND_VALUE))

    def _version_key(self, key: bytes, version: int, kind: bytes) -> bytes:
        return (
            self._version_prefix
            + key.replace(b"\x00", b"\x00\xff")
            + KEY_TERMINATOR
            + (MAX_U64 - version).to_bytes(8, "big")
            + kind
        )

    def _invalid_command_result(self, cmd: Command) -> CommandResult:
        """The error result of a decoded command that fails a check (the slow path)."""
        try:
            validate_key(cmd.key)
            if cmd.value is not None:
                validate_value(cmd.value)
            validate_ts(cmd.ts)
            validate_ttl(cmd.ttl_ms)
            if cmd.deadline > cmd.ts:
                raise InvalidArgument(
                    f"an Expire at ts {cmd.ts} before its deadline {cmd.deadline}"
                )
            self._check_key_in_range(cmd.key)
        except ShardError as exc:
            return CommandResult(exc.status, message=str(exc))
        raise InvariantViolation(f"command {cmd!r} failed a check but no validator rejects it")

    # ----------------------------------------------------------------------------------------
    # Transactions (apply side)

    def _apply_txn(self, cmd: Command, batch: EngineBatch) -> CommandResult:
        """Apply one transaction command (rules in `txn.participant`, `txn.coordinator`)."""
        record = cmd.txn
        ts = cmd.ts
        try:
            validate_ts(ts)
            if isinstance(record, Prepare | CommitOnePhase):
                for key_range in record.read_ranges:
                    validate_range(key_range.start, key_range.end)
                    self._check_range_in_range(key_range)
                for read in record.reads:
                    validate_key(read.key)
                    self._check_key_in_range(read.key)
                for write in record.writes:
                    validate_key(write.key)
                    self._check_key_in_range(write.key)
                    if write.value is not None:
                        validate_value(write.value)
                    for _op, operand in write.ops:
                        validate_value(operand)
            elif isinstance(record, Resolve | Decide):
                validate_ts(record.commit_ts)
        except ShardError as exc:
            return CommandResult(exc.status, message=str(exc))
        store = _BatchTxnStore(self, batch)
        result: TxnResult | None
        conflict: Conflict | None = None
        try:
            if isinstance(record, Prepare):
                prepared = participant.prepare(store, record, ts)
                result, conflict = prepared, prepared.conflict
            elif isinstance(record, Resolve):
                result = participant.resolve(store, record, ts)
            elif isinstance(record, Decide):
                result = coordinator.decide(store, record, ts)
            elif isinstance(record, Finish):
                result = coordinator.finish(store, record)
            elif isinstance(record, PurgeDecisions):
                result = coordinator.purge_decisions(store, record)
            elif isinstance(record, CommitOnePhase):
                committed = participant.commit_one_phase(store, record, ts)
                result, conflict = committed, committed.conflict
            elif isinstance(record, Prevent):
                result = participant.prevent(store, record, ts)
            else:
                raise InvariantViolation(f"decoded an unknown transaction command {record!r}")
        except StoreInvariantError as exc:
            raise InvariantViolation(str(exc)) from exc
        if conflict is not None:
            return CommandResult(
                Status.CONFLICT, message=conflict.reason, txn=result, conflict=conflict
            )
        return CommandResult(Status.OK, txn=result)

    def _decode_intents(self, data: bytes) -> list[IntentInfo]:
        try:
            return decode_intents(data)
        except MalformedTxnRecord as exc:
            raise InvariantViolation(f"group {self._group_id}: {exc}") from None

    def _decode_prepared(self, data: bytes) -> PreparedInfo:
        try:
            return decode_prepared(data)
        except MalformedTxnRecord as exc:
            raise InvariantViolation(f"group {self._group_id}: {exc}") from None

    def _decode_decision(self, data: bytes) -> DecisionInfo:
        try:
            return decode_decision(data)
        except MalformedTxnRecord as exc:
            raise InvariantViolation(f"group {self._group_id}: {exc}") from None

    # ----------------------------------------------------------------------------------------
    # Transactions (queries of the written state, for the node)

    def latest_record(self, key: bytes) -> tuple[int, bool] | None:
        """(version, is_tombstone) of `key`'s latest record, or None if never written (or GC'd).

        The version a transaction reports in its ReadItem for `key` (0 when None).
        """
        latest = self._engine.get(self._latest_prefix + key)
        if latest is None:
            return None
        version, kind = unpack_latest(latest)
        return version, kind == KIND_TOMBSTONE

    def expiry_of(self, key: bytes, version: int) -> int:
        """The deadline from which `key`'s `version` is deleted (rule 7), or 0 when it
        lives for ever or is no longer the key's live version (its deadline left with it)."""
        lives = self._engine.get(self._lives_prefix + key)
        if lives is None:
            return 0
        lives_version, deadline = unpack_lives(lives)
        # A write without a TTL leaves the record behind it (its Expire drops it).
        latest = self.latest_record(key)
        return deadline if latest is not None and lives_version == version == latest[0] else 0

    def intents_on(self, key: bytes) -> list[IntentInfo]:
        """Every intent on `key`, ordered by txn id (empty when none)."""
        data = self._engine.get(self._intent_prefix + key)
        return [] if data is None else self._decode_intents(data)

    def intents_in_range(self, start: bytes, end: bytes | None) -> list[tuple[bytes, IntentInfo]]:
        """(key, intent) for every intent on a key in [start, end) (`end` None: +inf).

        Ordered by key, then txn id.
        """
        prefix = self._intent_prefix
        hi = self._intent_end if end is None else prefix + end
        if end is not None and end <= start:
            return []
        strip = len(prefix)
        return [
            (record_key[strip:], intent)
            for record_key, data in self._engine.scan(prefix + start, hi, None)
            for intent in self._decode_intents(data)
        ]

    def prepared_txns(self) -> list[PreparedInfo]:
        """Every prepared, unresolved transaction of this group, ordered by txn id."""
        found = (self.prepared(txn_id) for txn_id in sorted(self._prepared_ids))
        return [info for info in found if info is not None]

    def scanners(self, key: bytes) -> list[bytes]:
        """Prepared transactions whose scanned ranges hold `key` (rule P6), sorted."""
        return sorted(
            txn_id for txn_id, ranges in self._scanned.items() if any(key in r for r in ranges)
        )

    def _load_prepared(self) -> tuple[set[bytes], dict[bytes, tuple[KeyRange, ...]], int]:
        """The prepared transactions' ids, the ranges they scanned and their newest
        prepare timestamp, in one scan."""
        prefix = self._prepared_prefix
        infos = [
            self._decode_prepared(data)
            for _, data in self._engine.scan(prefix, storage_prefix_end(prefix), None)
        ]
        return (
            {i.txn_id for i in infos},
            {i.txn_id: i.read_ranges for i in infos if i.read_ranges},
            max((i.prepare_ts for i in infos), default=0),
        )

    def _load_ids(self, prefix: bytes) -> set[bytes]:
        strip = len(prefix)
        return {
            key[strip:] for key, _ in self._engine.scan(prefix, storage_prefix_end(prefix), None)
        }

    def prepared(self, txn_id: bytes) -> PreparedInfo | None:
        """This group's prepared record of `txn_id`, or None."""
        data = self._engine.get(self._prepared_prefix + txn_id)
        return None if data is None else self._decode_prepared(data)

    def decision(self, txn_id: bytes) -> DecisionInfo | None:
        """This group's decision record of `txn_id` (it is the coordinator group), or None."""
        data = self._engine.get(self._decision_prefix + txn_id)
        return None if data is None else self._decode_decision(data)

    def purge_counters(self) -> PurgeCounters:
        """The purge queue's head and tail and the purge marks (coordinator rule G1)."""
        data = self._engine.get(self._counters_key)
        return PurgeCounters() if data is None else unpack_counters(data)

    def purge_candidates(self, before_ts: int, limit: int) -> list[DecisionInfo]:
        """Of the first `limit` records of the purge queue decided before `before_ts` (up to
        the first decided later), those that need verification (coordinator rule G2), in
        queue order: what the leader checks before it proposes the purge."""
        head, tail, *_ = self.purge_counters()
        found = []
        for seq in range(head, min(tail, head + limit)):
            txn_id = self._engine.get(self._queue_prefix + pack_seq(seq))
            info = None if txn_id is None else self.decision(txn_id)
            if info is None:
                continue
            if info.decided_ts >= before_ts:
                break
            if info.needs_verification():
                found.append(info)
        return found

    def unfinished_decisions(self) -> list[DecisionInfo]:
        """Every decision recorded here and not finished yet, ordered by txn id."""
        out = []
        for txn_id in sorted(self._unfinished_ids):
            info = self.decision(txn_id)
            if info is None:
                raise InvariantViolation(f"unfinished marker of {txn_id!r} has no decision")
            out.append(info)
        return out

    # ----------------------------------------------------------------------------------------
    # Reads (not through the log)

    def _check_key_in_range(self, key: bytes) -> None:
        if key < self._start or (self._end is not None and key >= self._end):
            raise WrongShard(key, self._start, self._end)

    def _check_range_in_range(self, key_range: KeyRange) -> None:
        self._check_key_in_range(key_range.start)
        if self._end is not None and (not key_range.end or key_range.end > self._end):
            raise WrongShard(key_range.end, self._start, self._end)

    def _version_records(self, start: bytes, end: bytes | None) -> tuple[bytes, bytes]:
        """The engine range of the version records of the keys [start, end) (None: no end)."""
        vp = self._version_prefix
        lo = vp + start.replace(b"\x00", b"\x00\xff") + KEY_TERMINATOR
        if end is None:
            return lo, self._version_end
        return lo, vp + end.replace(b"\x00", b"\x00\xff") + KEY_TERMINATOR

    def _check_range(self, start: bytes, end: bytes | None) -> None:
        """WrongShard unless [start, end) lies inside the shard's range."""
        if start < self._start:
            raise WrongShard(start, self._start, self._end)
        if self._end is not None and (end is None or end > self._end):
            raise WrongShard(b"" if end is None else end, self._start, self._end)

    def _check_at_version(self, at_version: int | None) -> None:
        if at_version is not None:
            if at_version < 0:
                raise InvalidArgument(f"negative read version {at_version}")
            if at_version < self._gc_horizon:
                raise VersionCompacted(at_version, self._gc_horizon)

    def get(self, key: bytes, at_version: int | None = None) -> tuple[bytes, int] | None:
        """The (value, version) of `key` as of `at_version` (None: latest), or None if absent.

        Raises:
            InvalidArgument, LimitExceeded: bad key; WrongShard: key outside the range;
            VersionCompacted: `at_version` below the GC horizon.
        """
        validate_key(key)
        self._check_key_in_range(key)
        self._check_at_version(at_version)
        engine = self._engine
        if at_version is None:
            latest = engine.get(self._latest_prefix + key)
            if latest is None:
                return None
            version, kind = unpack_latest(latest)
            if kind == KIND_TOMBSTONE:
                return None
            value = engine.get(self._version_key(key, version, KIND_VALUE))
            if value is None:
                raise InvariantViolation(f"latest version {version} of {key!r} is missing")
            return value, version
        record = self._record_at(key, at_version)
        if record is None or record[0][-1] == KIND_TOMBSTONE_INT:
            return None
        return record[1], MAX_U64 - int.from_bytes(record[0][-9:-1], "big")

    def deleted_at(self, key: bytes, at_version: int) -> int:
        """The version of the deletion that makes `key` absent as of `at_version` (0: none
        does; the key is there, or was never written up to then). Call after `get`, which
        checks the key and the version."""
        record = self._record_at(key, at_version)
        if record is None or record[0][-1] != KIND_TOMBSTONE_INT:
            return 0
        return MAX_U64 - int.from_bytes(record[0][-9:-1], "big")

    def _record_at(self, key: bytes, at_version: int) -> tuple[bytes, bytes] | None:
        """`key`'s newest version record at or below `at_version`: (record key, value)."""
        base = self._version_prefix + key.replace(b"\x00", b"\x00\xff")
        lo = base + KEY_TERMINATOR + (MAX_U64 - at_version).to_bytes(8, "big")
        found = self._engine.scan(lo, base + KEY_TERMINATOR_END, 1)
        return found[0] if found else None

    def scan(
        self,
        start: bytes,
        end: bytes | None,
        limit: int,
        at_version: int | None = None,
        max_bytes: int | None = None,
        reverse: bool = False,
    ) -> list[tuple[bytes, bytes, int]]:
        """Up to `limit` live (key, value, version) with start <= key < end, as of `at_version`,
        stopping once their keys and values reach `max_bytes` (at least one item); in key
        order, or from the last key down when `reverse`.

        `end` None is +inf and is allowed only when the shard's range is unbounded above.

        Raises:
            WrongShard: [start, end) is not inside the shard's range;
            VersionCompacted: `at_version` below the GC horizon.
        """
        return self.scan_with_deletions(start, end, limit, at_version, max_bytes, reverse)[0]

    def scan_with_deletions(
        self,
        start: bytes,
        end: bytes | None,
        limit: int,
        at_version: int | None = None,
        max_bytes: int | None = None,
        reverse: bool = False,
    ) -> tuple[list[tuple[bytes, bytes, int]], int]:
        """`scan`, and the newest version of the deletions it passed over (0: none): its
        answer shows those keys absent, which node rule 2 must not let it outrun."""
        self._check_range(start, end)
        self._check_at_version(at_version)
        if limit <= 0 or (end is not None and end <= start):
            return [], 0
        lo, hi = self._version_records(start, end)
        visible = _VisibleRecords(len(self._version_prefix), limit, at_version, max_bytes)
        # Old versions and tombstones are skipped, so read a little more than `limit`.
        page = max(16, min(_SCAN_PAGE, 2 * limit))
        engine = self._engine
        while True:
            records = engine.scan(lo, hi, page, reverse)
            if reverse:
                # A key's records come oldest first: its visible one is known only at the
                # next key (or the range's end).
                for record_key, value in records:
                    if visible.offer_ascending(record_key, value):
                        return visible.out, visible.deleted_at
            else:
                for record_key, value in records:
                    if visible.offer_newest_first(record_key, value):
                        return visible.out, visible.deleted_at
            if len(records) < page:
                visible.flush()
                return visible.out, visible.deleted_at
            if reverse:
                hi = records[-1][0]
            else:
                lo = records[-1][0] + b"\x00"
            page = _SCAN_PAGE

    def changes(
        self,
        start: bytes,
        end: bytes | None,
        after: int,
        at: int,
        limit: int,
        max_bytes: int,
        max_records: int,
        prev_values: bool = False,
    ) -> ChangesPage:
        """Every version and deletion of [start, end) with `after < version <= at`, oldest
        first, as a page of `shard.changes` (cut by `limit` changes, `max_bytes` and
        `max_records` examined); with `prev_values`, each with the value before it.

        Raises:
            WrongShard: [start, end) is not inside the shard's range;
            VersionCompacted: `after` below the GC horizon (changes just above it may have
                been collected).
        """
        self._check_range(start, end)
        self._check_at_version(after)
        collector = ChangesCollector(after, at, limit, max_bytes, max_records, prev_values)
        if (end is not None and end <= start) or after >= at:
            return collector.end()  # an empty window (a watch's start pin): nothing to read
        if after >= self._recent_floor:
            # Every version above `after` is listed: read only the keys that changed.
            spans = [
                self._version_records(k, k + b"\x00") for k in self._changed(start, end, after, at)
            ]
        else:
            spans = [self._version_records(start, end)]
        for lo, hi in spans:
            page = self._offer_changes(collector, lo, hi, after)
            if page is not None:
                return page
        return collector.end()

    def _changed(self, start: bytes, end: bytes | None, after: int, at: int) -> list[bytes]:
        """The keys of [start, end) with a listed version in (after, at], in order."""
        recent = self._recent
        lo = bisect.bisect_left(recent, (after + 1, b""))
        hi = bisect.bisect_left(recent, (at + 1, b""), lo)
        return sorted(
            {key for _, key in recent[lo:hi] if start <= key and (end is None or key < end)}
        )

    def _offer_changes(
        self, collector: ChangesCollector, lo: bytes, hi: bytes, after: int
    ) -> ChangesPage | None:
        """Offer the version records in [lo, hi) above `after` to `collector`, key by key;
        the page it returns when it must end before a key (else None)."""
        prefix_len = len(self._version_prefix)
        body = b""
        below_window = False  # the current key's records left are all at or below `after`
        while True:
            records = self._engine.scan(lo, hi, _SCAN_PAGE)
            for record_key, value in records:
                if record_key[:-9] != body:
                    body = record_key[:-9]
                    below_window = False
                    page = collector.start_key(unescape_key(body[prefix_len:]))
                    if page is not None:
                        return page
                if below_window:
                    continue
                version = MAX_U64 - int.from_bytes(record_key[-9:-1], "big")
                held = None if record_key[-1] == KIND_TOMBSTONE_INT else value
                if version <= after:
                    # A key's records come newest first: the rest are older still.
                    below_window = True
                    collector.offer_floor(version, held)
                    continue
                collector.offer(version, held)
            if len(records) < _SCAN_PAGE:
                return None
            # A page that ends inside a key's old history goes on past all of it (found by
            # review: a hot key's every retained version was read on every poll).
            lo = body[:-2] + KEY_TERMINATOR_END if below_window else records[-1][0] + b"\x00"

    # ----------------------------------------------------------------------------------------
    # Garbage collection

    def gc_below(self, horizon_version: int, batch: EngineBatch) -> int:
        """Stage removal of versions shadowed at `horizon_version`; returns records removed.

        For each key, the newest version <= horizon is kept (or removed too when it is a
        tombstone; the key's `latest` record stays) and every older one is removed; reads
        below the horizon are refused from now on. Reads the written engine state. The whole
        pass at once, over every key (a pending pass is abandoned): `start_gc` and `gc_step`
        do it in bounded steps.
        """
        if horizon_version <= self._gc_horizon:
            return 0
        self._gc_cursor = None
        self.start_gc(horizon_version, batch)
        removed = 0
        while self.gc_pending:
            removed += self.gc_step(batch, max_records=_SCAN_PAGE)
        return removed

    @property
    def gc_pending(self) -> bool:
        """A pass of `start_gc` has keys left for `gc_step`."""
        return self._gc_cursor is not None

    def start_gc(self, horizon_version: int, batch: EngineBatch) -> bool:
        """Raise the collection horizon to `horizon_version` and collect up to it; False if
        it is not above the current one.

        The horizon is raised (and staged in `batch`) at once, before any version is
        removed, so no read below it is served from a half-collected store. A pass starts
        at the first key; a pass still going on continues where it is, at the new horizon,
        so every pass ends however large the store and the keys it already went over are
        collected to the new horizon by the next one.
        """
        if horizon_version <= self._gc_horizon:
            return False
        self._gc_horizon = horizon_version
        if self._gc_cursor is None:
            self._gc_cursor, self._gc_key = self._version_prefix, (b"", False, None)
        batch.put(self._meta_key, self._pack_meta())
        return True

    def gc_step(self, batch: EngineBatch, max_records: int, max_bytes: int = MAX_U64) -> int:
        """Continue the pending pass over at most `max_records` version records, and no more
        once the records read reach `max_bytes` (it may stop inside a key's versions);
        returns records removed. Reads the written engine state (see gc_below).

        The pass reads every version record, values included (RocksDB reads a value's block
        to step over it), so with large values a step is bounded by what it reads, not only
        by how many records.

        A key's versions sort newest first, and a version written between two steps is
        newer than the horizon, so it sorts before the cursor and never changes what the
        pass decided about the older ones. The `latest` records are never removed: a
        tombstone's `latest` gives every replica, collected or not, the same version to
        validate a transaction's read of the absent key against.

        A tombstone that is a key's newest version at or below the horizon goes last, once
        the pass has moved past the key's older versions: a read between two steps, a
        snapshot built then, or a restart that drops the pass must meet the deletion before
        any older value (found by review: a step that stopped just after the tombstone showed
        the deleted value to snapshot reads and scans, and for good after a restart).
        """
        if max_records < 1 or max_bytes < 1:
            raise ValueError("max_records and max_bytes must be at least 1")
        lo = self._gc_cursor
        if lo is None:
            return 0
        horizon = self._gc_horizon
        # decided: the key's newest version <= horizon was met; tombstone: that version, if
        # it is a deletion, removed when the pass leaves the key.
        body, decided, tombstone = self._gc_key
        removed = 0
        read = 0
        read_bytes = 0
        while True:
            page = min(_SCAN_PAGE, max_records - read)
            records = self._engine.scan_bounded(lo, self._version_end, page, max_bytes - read_bytes)
            for record_key, value in records:
                read += 1
                read_bytes += len(record_key) + len(value)
                record_body = record_key[:-9]
                if record_body != body:
                    if tombstone is not None:
                        batch.delete(tombstone)
                        removed += 1
                    body, decided, tombstone = record_body, False, None
                if decided:
                    batch.delete(record_key)
                    removed += 1
                    continue
                version = MAX_U64 - int.from_bytes(record_key[-9:-1], "big")
                if version > horizon:
                    continue
                decided = True
                if record_key[-1] == KIND_TOMBSTONE_INT:
                    tombstone = record_key  # the newest is a deletion: nothing to read
            if len(records) < page and read_bytes < max_bytes:
                # The range ended before either bound.
                if tombstone is not None:
                    batch.delete(tombstone)
                    removed += 1
                self._gc_cursor = None
                return removed
            lo = records[-1][0] + b"\x00"
            if read >= max_records or read_bytes >= max_bytes:
                self._gc_cursor, self._gc_key = lo, (body, decided, tombstone)
                return removed

    # ----------------------------------------------------------------------------------------
    # Snapshots

    def snapshot_build(self) -> ShardSnapshotBuild:
        """A snapshot of this group's written data (not what an unwritten batch stages), to
        build in steps (`shard.snapshots`): a point-in-time view, so data and applied index
        agree however long the build takes."""
        records = self._engine.iterate(self._prefix, self._prefix_end)
        # No write can fall between these two reads: both run in this one call.
        return ShardSnapshotBuild(records, len(self._prefix), self._engine.get(self._meta_key))

    def snapshot(self) -> bytes:
        """All of this group's written data, applied index and max version, as one blob."""
        build = self.snapshot_build()
        while (done := build.step(1 << 62, 1 << 62)) is None:
            pass
        return done[1]

    @staticmethod
    def snapshot_index(data: bytes) -> int:
        """The applied index a snapshot blob covers (its frames are checked by the restore).

        Raises:
            SnapshotCorrupt: bad magic or checksum.
        """
        return check_header(data)[0]

    def begin_restore(self, index: int, data: bytes) -> ShardRestore:
        """A restore of snapshot `data` as applied index `index`, to run in steps.

        Raises:
            SnapshotCorrupt: bad magic or checksum, or it covers another index than `index`.
        """
        restore = ShardRestore(data, self._prefix, restore_prefix(self._group_id), self)
        if restore.index != index:
            raise SnapshotCorrupt(f"snapshot covers index {restore.index}, not {index}")
        return restore

    def restore(self, index: int, data: bytes, batch: EngineBatch) -> None:
        """Stage replacing this group's data by snapshot `data` in `batch`, all at once.

        Raises:
            SnapshotCorrupt: bad blob, or it covers another index than `index`.
        """
        self.begin_restore(index, data).run(batch)

    # RestoreSink: a restore keeps the derived state in step with the records it writes.

    def restore_started(self) -> None:
        """The group's keys are being replaced: forget what was derived from them."""
        self._forget_recent(MAX_U64)  # until restore_finished, no read relies on the list
        self._intent_keys = 0
        self._prepared_ids = set()
        self._scanned = {}
        self._unfinished_ids = set()
        self._gc_cursor = None  # a pass over the replaced state would resume at random

    #: The records `check_record` decodes (latest records, intents, transaction records)
    #: and the meta record, which belongs in a snapshot's header only.
    checked_tags = frozenset(LATEST_TAG + INTENT_TAG + TXN_TAG + META_TAG + EXPIRY_TAG + LIVES_TAG)

    def check_record(self, suffix: bytes, value: bytes) -> None:
        """A record a restore would write that this state machine decodes: refused as a
        corrupt snapshot if it does not decode (found by review: a prepared or decision
        record that passed the checksum and did not decode raised in the middle of the
        restore, after the group's data was deleted, and again at every open; a latest
        record raised in a later apply, at every start)."""
        if suffix == META_TAG:
            # The meta record comes from the blob's header, written last; one among the
            # records was written early and read at an open after a crash (found by review).
            raise SnapshotCorrupt(f"group {self._group_id}: a meta record among the records")
        try:
            if suffix[:1] == LATEST_TAG:
                unpack_latest(value)
            elif suffix[:1] == INTENT_TAG:
                decode_intents(value)
            elif suffix.startswith(PREPARED_TAG):
                decode_prepared(value)
            elif suffix.startswith(DECISION_TAG):
                decode_decision(value)
            elif suffix.startswith(PURGE_COUNTERS_TAG):
                unpack_counters(value)
            elif suffix[:1] == EXPIRY_TAG:
                split_expiry_suffix(suffix[1:])
                unpack_version(value)
            elif suffix[:1] == LIVES_TAG:
                unpack_lives(value)
        except (MalformedTxnRecord, struct.error) as exc:
            raise SnapshotCorrupt(
                f"group {self._group_id}: record {suffix[:2]!r} of the shard snapshot does not "
                f"decode ({exc})"
            ) from None

    def restore_record(self, suffix: bytes, value: bytes) -> None:
        """One record the restore writes (key without the group prefix)."""
        if suffix[:1] == INTENT_TAG:
            self._intent_keys += 1
        elif suffix.startswith(PREPARED_TAG):
            txn_id = suffix[len(PREPARED_TAG) :]
            self._prepared_ids.add(txn_id)
            info = self._decode_prepared(value)
            if info.read_ranges:
                self._scanned[txn_id] = info.read_ranges
            self._saw_timestamps(info.prepare_ts)
        elif suffix.startswith(DECISION_TAG):
            decision = self._decode_decision(value)
            self._saw_timestamps(decision.commit_ts, decision.decided_ts)
        elif suffix.startswith(UNFINISHED_TAG):
            self._unfinished_ids.add(suffix[len(UNFINISHED_TAG) :])

    def restore_finished(self, applied_index: int, max_version: int, gc_horizon: int) -> None:
        """Every record is written (the meta record in the same batch)."""
        self.intent_releases += 1
        self._applied_index = applied_index
        self._max_version = max_version
        self._gc_horizon = gc_horizon
        self._forget_recent(max_version)


class _BatchTxnStore:
    """The `txn.store.TxnStore` of one group while applying one slot.

    Point operations through the slot's batch (so commands of one slot see each other) on the
    keyspace documented at the top of this module. Version writes mirror
    `ShardStateMachine._write`, at an exact version.
    """

    __slots__ = ("_batch", "_sm")

    def __init__(self, sm: ShardStateMachine, batch: EngineBatch) -> None:
        self._sm = sm
        self._batch = batch

    def latest_version(self, key: bytes) -> tuple[int, bool]:
        latest = self._batch.get(self._sm._latest_prefix + key)
        if latest is None:
            return 0, True
        version, kind = unpack_latest(latest)
        return version, kind == KIND_TOMBSTONE

    def latest_value(self, key: bytes) -> bytes | None:
        return self._sm._latest(key, self._batch)[1]

    def intents(self, key: bytes) -> list[IntentInfo]:
        data = self._batch.get(self._sm._intent_prefix + key)
        return [] if data is None else self._sm._decode_intents(data)

    def live_keys(self, key_range: KeyRange) -> Iterator[tuple[bytes, int]]:
        sm = self._sm
        prefix = sm._latest_prefix
        hi = prefix + key_range.end if key_range.end else storage_prefix_end(prefix)
        for record_key, latest in self._batch.iterate(prefix + key_range.start, hi):
            version, kind = unpack_latest(latest)
            if kind == KIND_VALUE:
                yield record_key[len(prefix) :], version

    def intents_in(self, key_range: KeyRange) -> Iterator[tuple[bytes, IntentInfo]]:
        sm = self._sm
        prefix = sm._intent_prefix
        hi = prefix + key_range.end if key_range.end else sm._intent_end
        for record_key, data in self._batch.iterate(prefix + key_range.start, hi):
            for intent in sm._decode_intents(data):
                yield record_key[len(prefix) :], intent

    def scanners(self, key: bytes) -> list[bytes]:
        return self._sm.scanners(key)

    def put_intent(self, key: bytes, intent: IntentInfo) -> None:
        record_key = self._sm._intent_prefix + key
        data = self._batch.get(record_key)
        if data is None:
            intents = [intent]
            self._sm._intent_keys += 1
        else:
            intents = [i for i in self._sm._decode_intents(data) if i.txn_id != intent.txn_id]
            intents.append(intent)
            intents.sort(key=lambda i: i.txn_id)
        self._batch.put(record_key, encode_intents(intents))

    def delete_intent(self, key: bytes, txn_id: bytes) -> None:
        record_key = self._sm._intent_prefix + key
        data = self._batch.get(record_key)
        if data is None:
            return
        intents = self._sm._decode_intents(data)
        kept = [i for i in intents if i.txn_id != txn_id]
        if len(kept) != len(intents):
            self._sm.intent_releases += 1
        if not kept:
            self._batch.delete(record_key)
            self._sm._intent_keys -= 1
        elif len(kept) != len(intents):
            self._batch.put(record_key, encode_intents(kept))

    def write_version(self, key: bytes, value: bytes | None, version: int, ttl_ms: int = 0) -> None:
        self._sm._stage_version(key, value, version, self._batch)
        if ttl_ms and value is not None:
            self._sm._stage_expiry(key, version, deadline_of(version, ttl_ms), self._batch)

    def max_version(self) -> int:
        return self._sm._max_version

    def set_max_version(self, version: int) -> None:
        self._sm._max_version = version

    def prepared(self, txn_id: bytes) -> PreparedInfo | None:
        data = self._batch.get(self._sm._prepared_prefix + txn_id)
        return None if data is None else self._sm._decode_prepared(data)

    def put_prepared(self, info: PreparedInfo) -> None:
        sm = self._sm
        self._batch.put(sm._prepared_prefix + info.txn_id, encode_prepared(info))
        sm._prepared_ids.add(info.txn_id)
        if info.read_ranges:
            sm._scanned[info.txn_id] = info.read_ranges
        sm._saw_timestamps(info.prepare_ts)

    def delete_prepared(self, txn_id: bytes) -> None:
        self._batch.delete(self._sm._prepared_prefix + txn_id)
        self._sm._prepared_ids.discard(txn_id)
        if self._sm._scanned.pop(txn_id, None) is not None:
            self._sm.intent_releases += 1  # a range intent is gone: waiting writes retry

    def decision(self, txn_id: bytes) -> DecisionInfo | None:
        data = self._batch.get(self._sm._decision_prefix + txn_id)
        return None if data is None else self._sm._decode_decision(data)

    def put_decision(self, info: DecisionInfo) -> None:
        sm = self._sm
        batch = self._batch
        old = self.decision(info.txn_id)
        batch.put(sm._decision_prefix + info.txn_id, encode_decision(info))
        sm._saw_timestamps(info.commit_ts, info.decided_ts)
        if not info.finished:
            batch.put(sm._unfinished_prefix + info.txn_id, b"")
            sm._unfinished_ids.add(info.txn_id)
        elif old is None or not old.finished:
            batch.delete(sm._unfinished_prefix + info.txn_id)
            sm._unfinished_ids.discard(info.txn_id)
            counters = self._counters()
            batch.put(sm._queue_prefix + pack_seq(counters.tail), info.txn_id)
            batch.put(sm._counters_key, pack_counters(counters._replace(tail=counters.tail + 1)))

    def _counters(self) -> PurgeCounters:
        data = self._batch.get(self._sm._counters_key)
        return PurgeCounters() if data is None else unpack_counters(data)

    def purge_mark(self) -> int:
        return self._counters().mark

    def unverified_purge_mark(self) -> int:
        return self._counters().unverified_mark

    def purge_decisions(
        self, before_ts: int, limit: int, verified: frozenset[bytes]
    ) -> tuple[int, bool]:
        sm = self._sm
        batch = self._batch
        start = self._counters()
        head, tail = start.head, start.tail
        unverified_mark = start.unverified_mark
        deleted = handled = 0
        more = False
        while head < start.tail:  # the records moved to the back are not met again
            if handled >= limit:
                more = True
                break
            entry_key = sm._queue_prefix + pack_seq(head)
            txn_id = batch.get(entry_key)
            if txn_id is None:
                raise InvariantViolation(f"purge queue entry {head} (tail {tail}) is missing")
            info = self.decision(txn_id)
            if info is not None and info.decided_ts >= before_ts:
                break
            batch.delete(entry_key)
            head += 1
            handled += 1
            if info is None:
                continue
            if info.needs_verification() and txn_id not in verified:
                batch.put(sm._queue_prefix + pack_seq(tail), txn_id)  # rule G2
                tail += 1
            else:
                batch.delete(sm._decision_prefix + txn_id)
                deleted += 1
                if info.purge_leaves_doubt():
                    unverified_mark = max(unverified_mark, before_ts)
        end = PurgeCounters(head, tail, max(start.mark, before_ts), unverified_mark)
        if end != start:
            batch.put(sm._counters_key, pack_counters(end))
        return deleted, more


def _oversized_command_result(data: bytes) -> CommandResult:
    """The LIMIT_EXCEEDED result of an encoded command over MAX_COMMAND_BYTES."""
    try:
        validate_command_size(data)
    except LimitExceeded as exc:
        return CommandResult(exc.status, message=str(exc))
    raise InvariantViolation("command size check disagrees with its validator")


class _VisibleRecords:
    """What a scan shows of the version records it passes, key by key: the newest record
    at or below the read's version of each key, when it is no deletion (`out`), up to the
    scan's item limit and byte budget; and the newest deletion it passed (`deleted_at`)."""

    def __init__(
        self, prefix_len: int, limit: int, at_version: int | None, max_bytes: int | None
    ) -> None:
        self._prefix_len = prefix_len
        self._limit = limit
        self._at_version = at_version
        self._budget = max_bytes if max_bytes is not None else -1
        self._done_body = b""  # the encoded key whose visible version was already decided
        self._held: tuple[bytes, bytes] | None = None  # reverse: the newest record so far
        self.out: list[tuple[bytes, bytes, int]] = []
        self.deleted_at = 0

    def offer_newest_first(self, record_key: bytes, value: bytes) -> bool:
        """Take the next record of a forward scan (a key's records newest first); True
        once the answer is full."""
        body = record_key[:-9]
        if body == self._done_body or not self._readable(record_key):
            return False
        self._done_body = body
        return self._show(record_key, value)

    def offer_ascending(self, record_key: bytes, value: bytes) -> bool:
        """Take the next record of a reverse scan (a key's records oldest first); True
        once the answer is full."""
        held = self._held
        if held is not None and held[0][:-9] != record_key[:-9]:
            self._held = None
            if self._show(*held):
                return True
        if self._readable(record_key):
            self._held = (record_key, value)
        return False

    def flush(self) -> None:
        """The scan passed its last record: decide the key a reverse scan still holds."""
        if self._held is not None:
            held, self._held = self._held, None
            self._show(*held)

    def _readable(self, record_key: bytes) -> bool:
        at = self._at_version
        return at is None or MAX_U64 - int.from_bytes(record_key[-9:-1], "big") <= at

    def _show(self, record_key: bytes, value: bytes) -> bool:
        version = MAX_U64 - int.from_bytes(record_key[-9:-1], "big")
        if record_key[-1] == KIND_TOMBSTONE_INT:
            self.deleted_at = max(self.deleted_at, version)
            return False
        key = unescape_key(record_key[self._prefix_len : -9])
        self.out.append((key, value, version))
        if len(self.out) >= self._limit:
            return True
        if self._budget >= 0:
            self._budget -= len(key) + len(value)
            return self._budget <= 0
        return False


def cas_condition_holds(
    expect: Expect | None,
    expected_value: bytes | None,
    expected_version: int,
    cur_value: bytes | None,
    cur_version: int,
) -> bool:
    """A compare-and-set's condition on the key's live value and version (None, 0: absent);
    `expect` ABSENT (or None) wants the key absent."""
    if expect is Expect.VALUE:
        return cur_value is not None and cur_value == expected_value
    if expect is Expect.VERSION:
        return cur_version == expected_version
    return cur_value is None


def _cas_holds(cmd: Command, cur_value: bytes | None, cur_version: int) -> bool:
    """`cas_condition_holds` for a decoded command; a touch also needs a value to keep."""
    holds = cas_condition_holds(
        cmd.expect, cmd.expected_value, cmd.expected_version, cur_value, cur_version
    )
    return holds and not (cmd.touch and cur_value is None)
