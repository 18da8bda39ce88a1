"""ShardStateMachine's transaction side: what the rules tests cannot see.

Snapshots and restarts carry intents and records, one slot's commands see each other, bad
transaction commands write nothing, the node-facing queries, the codec of `Op.TXN` commands
and of results with a txn part, and RocksDB.
"""

from __future__ import annotations

import struct
from pathlib import Path

import pytest

from shard.codec import (
    Command,
    CommandResult,
    Op,
    decode_command,
    encode_command,
    encode_put,
    encode_txn,
)
from shard.engine import Engine, MemEngine
from shard.errors import Status
from shard.limits import MAX_KEY_BYTES, MAX_TS, MAX_VALUE_BYTES
from shard.mvcc import PURGE_COUNTERS_TAG, PurgeCounters, group_prefix, unpack_counters
from shard.rocks_engine import RocksEngine
from shard.state_machine import ShardStateMachine
from txn.atomic import AtomicOp, encode_int
from txn.codec import encode_command as encode_txn_record
from txn.records import (
    CommitOnePhase,
    Decide,
    DecisionInfo,
    Finish,
    IntentInfo,
    IntentKind,
    KeyRange,
    OnePhaseResult,
    Prepare,
    PrepareResult,
    Prevent,
    PreventResult,
    PurgeDecisions,
    PurgeResult,
    ReadItem,
    Resolve,
    ResolveResult,
    TxnCommand,
    WriteItem,
)

GROUP = 5
RANGE: tuple[bytes, bytes | None] = (b"b", b"y")


class Node:
    """One replica: a state machine on an engine, one slot per `run`."""

    def __init__(self, engine: Engine | None = None, group: int = GROUP) -> None:
        self.engine = engine if engine is not None else MemEngine()
        self.sm = ShardStateMachine(group, RANGE, self.engine)

    def run(self, *commands: bytes) -> list[CommandResult]:
        batch = self.engine.new_batch()
        results = self.sm.apply(self.sm.applied_index + 1, commands, batch)
        self.engine.write(batch, False)
        return results

    def txn(self, record: TxnCommand, ts: int = 0) -> CommandResult:
        (result,) = self.run(encode_txn(record, ts))
        return result

    def put(self, key: bytes, value: bytes, ts: int) -> CommandResult:
        (result,) = self.run(encode_put(key, value, ts))
        return result

    def restore_from(self, other: Node) -> None:
        """Install `other`'s snapshot, as a replica catching up by snapshot does."""
        batch = self.engine.new_batch()
        self.sm.restore(other.sm.applied_index, other.sm.snapshot(), batch)
        self.engine.write(batch, False)


def prep(txn_id: bytes, reads: dict[bytes, int], writes: dict[bytes, bytes | None]) -> Prepare:
    return Prepare(
        txn_id=txn_id,
        coordinator_group=GROUP,
        participants=(GROUP,),
        reads=tuple(ReadItem(key=k, version=v) for k, v in reads.items()),
        writes=tuple(WriteItem(key=k, value=v) for k, v in writes.items()),
    )


def one_phase_ops(key: bytes, *ops: tuple[AtomicOp, bytes], txn_id: bytes = b"t") -> CommitOnePhase:
    return CommitOnePhase(txn_id=txn_id, writes=(WriteItem(key=key, value=None, ops=ops),))


def busy(node: Node) -> None:
    """Leave one of everything: intents, a prepared txn, an unfinished and a finished decision."""
    node.put(b"c", b"1", 10)
    assert node.txn(prep(b"t1", {b"c": 10}, {b"d": b"x"}), 20).ok
    assert node.txn(Decide(txn_id=b"t2", participants=(GROUP, 9), commit=False), 21).ok
    assert node.txn(CommitOnePhase(txn_id=b"t3", writes=(WriteItem(key=b"e", value=b"1"),)), 22)


def state(node: Node) -> tuple[object, ...]:
    sm = node.sm
    return (
        sm.intents_in_range(b"", None),
        sm.prepared_txns(),
        sm.unfinished_decisions(),
        sm.decision(b"t3"),
        sm.max_version,
        sm.applied_index,
    )


def test_snapshot_restore_carries_intents_and_records() -> None:
    a = Node()
    busy(a)
    b = Node()
    b.restore_from(a)
    assert state(b) == state(a)
    assert b.sm.prepared(b"t1") == a.sm.prepared(b"t1")
    # The restored replica enforces the restored intents, resolves and purges as `a` does.
    for node in (a, b):
        assert node.put(b"d", b"y", 30).status is Status.CONFLICT
        assert node.txn(Resolve(txn_id=b"t1", commit=True, commit_ts=40)).txn == ResolveResult(
            found=True, versions_written=1
        )
        assert node.txn(Finish(txn_id=b"t2")).ok
        # t2's decision, t3's one-phase record and t1's resolution record (rule R5).
        assert node.txn(PurgeDecisions(before_ts=100)).txn == PurgeResult(purged=3)
        assert node.put(b"d", b"z", 50).ok
    assert a.engine.scan(b"", None, None) == b.engine.scan(b"", None, None)


def test_a_restarted_state_machine_reloads_prepared_and_unfinished_transactions() -> None:
    a = Node()
    busy(a)
    assert [p.txn_id for p in a.sm.prepared_txns()] == [b"t1"]
    assert [d.txn_id for d in a.sm.unfinished_decisions()] == [b"t2"]
    restarted = Node(a.engine)
    assert state(restarted) == state(a)
    assert restarted.sm.has_intents
    assert restarted.txn(Resolve(txn_id=b"t1", commit=False)).ok
    assert not restarted.sm.has_intents
    assert restarted.txn(Finish(txn_id=b"t2")).ok
    assert restarted.sm.unfinished_decisions() == []


def test_restore_over_a_busy_group_recounts_intents() -> None:
    a = Node()
    a.put(b"c", b"1", 10)
    snap = a.sm.snapshot()  # no intents
    b = Node()
    busy(b)
    batch = b.engine.new_batch()
    b.sm.restore(a.sm.applied_index, snap, batch)
    b.engine.write(batch, False)
    assert b.sm.intents_in_range(b"", None) == [] and b.sm.prepared_txns() == []
    assert b.put(b"d", b"ok", 30).ok


def test_a_restarted_state_machine_still_enforces_intents() -> None:
    a = Node()
    busy(a)
    again = Node(a.engine)
    assert state(again) == state(a)
    r = again.put(b"d", b"y", 30)
    assert r.status is Status.CONFLICT and r.conflict is not None
    assert r.conflict.other_txn == b"t1"


def test_commands_of_one_slot_see_each_other() -> None:
    a = Node()
    results = a.run(
        encode_txn(prep(b"t1", {}, {b"c": b"1"}), 10),
        encode_put(b"c", b"p", 11),
        encode_txn(Resolve(txn_id=b"t1", commit=True, commit_ts=12), 0),
        encode_put(b"c", b"q", 11),
        encode_txn(CommitOnePhase(txn_id=b"t2", reads=(ReadItem(key=b"c", version=13),)), 1),
    )
    statuses = [r.status for r in results]
    assert statuses == [Status.OK, Status.CONFLICT, Status.OK, Status.OK, Status.OK]
    assert results[3].version == 13
    assert results[4].txn == OnePhaseResult(commit_ts=14)
    assert a.sm.get(b"c") == (b"q", 13)


def test_atomic_writes_apply_to_the_latest_value_also_one_written_earlier_in_the_slot() -> None:
    """txn.participant rules P5 and O4 over the state machine's own store (its latest
    record and version record, read through the slot's batch)."""
    a = Node()
    add = (AtomicOp.ADD, encode_int(5))
    results = a.run(
        encode_put(b"c", encode_int(10), 10),
        encode_txn(one_phase_ops(b"c", add, txn_id=b"t1"), 11),
        encode_txn(one_phase_ops(b"d", add, add, txn_id=b"t2"), 12),
    )
    assert [r.status for r in results] == [Status.OK] * 3
    assert a.sm.get(b"c") == (encode_int(15), 11)
    assert a.sm.get(b"d") == (encode_int(10), 12)
    # Two-phase: the intent carries the value; the commit writes it at commit_ts.
    prepared = Prepare(
        txn_id=b"t3",
        coordinator_group=GROUP,
        participants=(GROUP,),
        writes=(WriteItem(key=b"c", value=None, ops=((AtomicOp.BYTE_MIN, b"\x00"),)),),
    )
    assert a.txn(prepared, 20).ok
    assert a.put(b"c", b"in between", 21).status is Status.CONFLICT
    assert a.txn(Resolve(txn_id=b"t3", commit=True, commit_ts=30)).ok
    assert a.sm.get(b"c") == (b"\x00", 30)
    # A replica restored from a snapshot holds the same values.
    b = Node()
    b.restore_from(a)
    assert b.sm.get(b"c") == a.sm.get(b"c") and b.sm.get(b"d") == a.sm.get(b"d")


@pytest.mark.parametrize(
    ("record", "ts", "status"),
    [
        (prep(b"t", {}, {b"a": b"1"}), 1, Status.WRONG_SHARD),  # below the range
        (prep(b"t", {b"y": 0}, {b"c": b"1"}), 1, Status.WRONG_SHARD),  # read at the end
        (prep(b"t", {b"": 0}, {}), 1, Status.INVALID_ARGUMENT),
        (prep(b"t", {}, {b"c" * (MAX_KEY_BYTES + 1): b"1"}), 1, Status.LIMIT_EXCEEDED),
        (prep(b"t", {}, {b"c": b"v" * (MAX_VALUE_BYTES + 1)}), 1, Status.LIMIT_EXCEEDED),
        (
            one_phase_ops(b"c", (AtomicOp.ADD, b"v" * (MAX_VALUE_BYTES + 1))),
            1,
            Status.LIMIT_EXCEEDED,
        ),
        (prep(b"t", {}, {b"c": b"1"}), MAX_TS + 1, Status.INVALID_ARGUMENT),
        (CommitOnePhase(txn_id=b"t", writes=(WriteItem(key=b"z", value=b"1"),)), 1, None),
        (Resolve(txn_id=b"t", commit=True, commit_ts=MAX_TS + 1), 1, Status.INVALID_ARGUMENT),
        (Decide(txn_id=b"t", participants=(), commit=True, commit_ts=MAX_TS + 1), 1, None),
    ],
)
def test_bad_transaction_commands_write_nothing(
    record: TxnCommand, ts: int, status: Status | None
) -> None:
    a = Node()
    a.put(b"c", b"0", 5)
    before = [kv for kv in a.engine.scan(b"", None, None) if not kv[0].endswith(b"m")]
    (result,) = a.run(encode_txn(record, ts))
    if status is None:
        status = (
            Status.WRONG_SHARD if isinstance(record, CommitOnePhase) else Status.INVALID_ARGUMENT
        )
    assert result.status is status and result.message
    after = [kv for kv in a.engine.scan(b"", None, None) if not kv[0].endswith(b"m")]
    assert after == before and a.sm.max_version == 5


def test_malformed_transaction_command_is_a_malformed_result() -> None:
    a = Node()
    bad_prepare = b"\x2a\x02\x0a\x00"  # Command.txn = TxnCommand{prepare{txn_id=""}}
    (result,) = a.run(bad_prepare)
    assert result.status is Status.MALFORMED


def test_queries_read_the_written_state() -> None:
    a = Node()
    a.put(b"c", b"1", 10)
    a.put(b"f", b"1", 11)
    a.run(encode_put(b"f", b"", 12))  # an empty value is a value
    assert a.sm.latest_record(b"c") == (10, False)
    assert a.sm.latest_record(b"n") is None
    a.txn(prep(b"t2", {b"c": 10, b"f": 12}, {b"x": None}), 20)
    a.txn(prep(b"t1", {b"c": 10}, {b"d": b"v"}), 21)
    assert a.sm.intents_on(b"c") == [
        IntentInfo(txn_id=b"t1", kind=IntentKind.READ, prepare_ts=21),
        IntentInfo(txn_id=b"t2", kind=IntentKind.READ, prepare_ts=20),
    ]
    assert [k for k, _ in a.sm.intents_in_range(b"c", b"f")] == [b"c", b"c", b"d"]
    assert [k for k, _ in a.sm.intents_in_range(b"d", None)] == [b"d", b"f", b"x"]
    assert a.sm.intents_in_range(b"f", b"c") == []
    (x,) = a.sm.intents_on(b"x")
    assert x.is_write and x.value is None
    assert [p.txn_id for p in a.sm.prepared_txns()] == [b"t1", b"t2"]
    a.txn(Resolve(txn_id=b"t2", commit=True, commit_ts=30))
    assert a.sm.latest_record(b"x") is None  # deleting an absent key writes nothing
    assert a.sm.prepared(b"t2") is None
    # Rule R5: the resolution is remembered (finished, purgeable), so late Prepares fail; a
    # commit keeps the prepared record's participants (rule G2 checks the others first).
    assert a.sm.decision(b"t2") == DecisionInfo(
        txn_id=b"t2", committed=True, commit_ts=30, participants=(5,), decided_ts=0, finished=True
    )


def test_groups_sharing_an_engine_do_not_see_each_others_transactions() -> None:
    engine = MemEngine()
    g1, g2 = Node(engine, group=1), Node(engine, group=2)
    g1.txn(prep(b"t", {}, {b"c": b"1"}), 10)
    g1.txn(Decide(txn_id=b"t", participants=(1,), commit=True, commit_ts=10), 10)
    assert g2.sm.intents_in_range(b"", None) == [] and g2.sm.unfinished_decisions() == []
    assert g2.put(b"c", b"free", 11).ok
    assert g2.txn(prep(b"t", {}, {b"c": b"2"}), 12).txn == PrepareResult(prepare_ts=12)


def test_rocks_engine_transaction_round_trip(tmp_path: Path) -> None:
    a = Node(RocksEngine(str(tmp_path / "db")))
    busy(a)
    expected = state(a)
    engine = a.engine
    assert isinstance(engine, RocksEngine)
    engine.db.close()
    b = Node(RocksEngine(str(tmp_path / "db")))
    assert state(b) == expected
    assert b.put(b"d", b"no", 30).status is Status.CONFLICT
    b.txn(Resolve(txn_id=b"t1", commit=True, commit_ts=40))
    assert b.sm.get(b"d") == (b"x", 40)
    b.engine.db.close()  # type: ignore[attr-defined]


# --------------------------------------------------------------------------------------------
# Codec


def test_encode_txn_decodes_to_a_txn_command() -> None:
    record = prep(b"t", {b"c": 1}, {b"d": None})
    data = encode_txn(record, 77)
    cmd = decode_command(data)
    assert cmd == Command(Op.TXN, b"", 77, txn=record)
    assert encode_command(cmd) == data
    # The shard Command embeds the txn bytes unchanged.
    assert encode_txn_record(record) in data


def test_scanned_ranges_survive_a_restart_and_a_snapshot() -> None:
    """Rule P6's range intents live in the prepared records: a restarted or restored replica
    rebuilds them and refuses writes into the range as the original does."""
    a = Node()
    scan = Prepare(
        txn_id=b"t9",
        coordinator_group=1,
        participants=(1, 2),
        read_ranges=(KeyRange(start=b"d", end=b"e"),),
    )
    assert a.txn(scan, 10).ok
    restored = Node()
    restored.restore_from(a)
    r = a.put(b"d1", b"x", 15)
    assert r.status is Status.CONFLICT
    restarted = Node(a.engine)  # a reopened from its engine (a itself is not used again)
    for node in (restarted, restored):
        r = node.put(b"d1", b"x", 20)
        assert r.status is Status.CONFLICT and r.conflict is not None
        assert r.conflict.other_txn == b"t9"
        assert node.put(b"e1", b"x", 21).ok
        assert node.txn(Resolve(txn_id=b"t9", commit=False)).ok
        assert node.put(b"d1", b"x", 22).ok


@pytest.mark.parametrize(
    ("key_range", "status"),
    [
        (KeyRange(start=b"a", end=b"d"), Status.WRONG_SHARD),  # starts below the shard
        (KeyRange(start=b"c", end=b"z"), Status.WRONG_SHARD),  # ends beyond it
        (KeyRange(start=b"c", end=b""), Status.WRONG_SHARD),  # no end, but the shard has one
        (KeyRange(start=b"c" * (MAX_KEY_BYTES + 2), end=b"d"), Status.LIMIT_EXCEEDED),
        (KeyRange(start=b"c", end=b"c" * (MAX_KEY_BYTES + 2)), Status.LIMIT_EXCEEDED),
    ],
)
def test_a_scanned_range_outside_the_shard_is_refused(key_range: KeyRange, status: Status) -> None:
    a = Node()
    record = Prepare(txn_id=b"t", coordinator_group=1, participants=(1,), read_ranges=(key_range,))
    r = a.txn(record, 10)
    assert r.status is status, r
    assert a.sm.prepared(b"t") is None


def test_a_scan_from_the_first_key_is_a_valid_range() -> None:
    # An empty start is the first key of the key space (a scan of everything): a shard whose
    # range starts there accepts it; elsewhere it is outside the shard.
    first = Node()
    first.sm = ShardStateMachine(GROUP, (b"", b"m"), first.engine)
    record = Prepare(
        txn_id=b"t",
        coordinator_group=1,
        participants=(1,),
        read_ranges=(KeyRange(start=b"", end=b"m"),),
    )
    assert first.txn(record, 10).ok
    assert Node().txn(record, 10).status is Status.WRONG_SHARD


def test_a_range_cut_after_a_key_of_the_maximum_length_is_valid() -> None:
    longest = b"c" * MAX_KEY_BYTES
    record = Prepare(
        txn_id=b"t",
        coordinator_group=1,
        participants=(1,),
        read_ranges=(KeyRange(start=b"c", end=longest + b"\x00"),),
    )
    assert Node().txn(record, 10).ok


def test_a_read_of_a_collected_deletion_validates_alike_on_every_replica() -> None:
    # Replicas collect old versions each on their own clock. A transaction read "c" absent
    # at the deletion's version 20; its Prepare must get the same answer on a replica that
    # already collected the deletion as on one that did not (it used to be a Conflict on the
    # first and a yes on the second: replicas disagreeing on one log entry).
    collected, pending = Node(), Node()
    for node in (collected, pending):
        node.put(b"c", b"1", 10)
        (deleted,) = node.run(encode_command(Command(op=Op.DELETE, key=b"c", ts=20)))
        assert deleted.ok
    batch = collected.engine.new_batch()
    assert collected.sm.gc_below(30, batch) == 2  # c@10 and the tombstone c@20
    collected.engine.write(batch, False)
    assert collected.sm.get(b"c") is None and pending.sm.get(b"c") is None
    record = prep(b"t9", {b"c": 20}, {b"d": b"x"})
    results = [node.txn(record, 40) for node in (collected, pending)]
    assert [r.status for r in results] == [Status.OK, Status.OK]
    assert results[0] == results[1]


def test_purge_counters_of_an_older_version_read_every_purge_as_unverified() -> None:
    """An upgraded node's counters lack the unverified purge mark (coordinator rule G1):
    every purge of the older version may have deleted a commit record no check covered, so
    recovery below its purge mark stays cautious (rule V2), and the counters are rewritten
    in the new layout at the next purge."""
    node = Node()
    key = group_prefix(GROUP) + PURGE_COUNTERS_TAG
    batch = node.engine.new_batch()
    batch.put(key, struct.pack(">QQQ", 0, 0, 1_000))  # head, tail, mark: the old layout
    node.engine.write(batch, False)
    assert unpack_counters(struct.pack(">QQQ", 4, 7, 1_000)) == PurgeCounters(4, 7, 1_000, 1_000)
    assert node.txn(Prevent(txn_id=b"t1", asker_ts=999), 2_000).txn == PreventResult(
        prepared=False, unknown=True
    )
    assert node.txn(Prevent(txn_id=b"t2", asker_ts=1_000), 2_001).txn == PreventResult(
        prepared=False
    )
    node.txn(PurgeDecisions(before_ts=1_500), 2_002)
    data = node.engine.get(key)
    assert data is not None and unpack_counters(data) == PurgeCounters(0, 1, 1_500, 1_000)


def _prepare(txn_id: bytes, **kw: object) -> Prepare:
    return Prepare(txn_id=txn_id, coordinator_group=GROUP, participants=(GROUP, 9), **kw)


def test_a_reopened_state_machine_remembers_the_newest_of_several_prepare_timestamps() -> None:
    """Prepare timestamps sit above max_version (nothing is written until the Resolve): after
    a restart only the prepared records hold them, and the clock must start above the
    NEWEST one, not the oldest (a client may report a commit at max(prepare_ts))."""
    a = Node()
    assert a.txn(_prepare(b"t1", writes=(WriteItem(key=b"c", value=b"1"),)), 100).ok
    assert a.txn(_prepare(b"t2", writes=(WriteItem(key=b"d", value=b"2"),)), 200).ok
    assert a.txn(_prepare(b"t3", writes=(WriteItem(key=b"e", value=b"3"),)), 150).ok
    assert a.sm.max_version == 0 and a.sm.newest_timestamp == 200
    again = Node(a.engine)
    assert again.sm.newest_timestamp == 200


def test_a_restore_forgets_the_scanned_ranges_of_the_state_it_replaces() -> None:
    """A replica holding a scanned range (P6) restores a snapshot taken where that
    transaction never prepared: the range intent goes with the records it came from, or
    this replica alone keeps refusing writes into the range, and diverges."""
    source = Node()
    assert source.put(b"c", b"1", 10).ok
    busy = Node()
    scan = _prepare(b"t9", read_ranges=(KeyRange(start=b"d", end=b"e"),))
    assert busy.txn(scan, 10).ok
    assert busy.sm.has_intents and busy.put(b"d1", b"x", 11).status is Status.CONFLICT
    busy.restore_from(source)
    assert busy.sm.prepared_txns() == [] and busy.sm.scanners(b"d1") == []
    assert not busy.sm.has_intents
    assert busy.put(b"d1", b"x", 20).ok


def test_a_restore_counts_as_a_release_for_requests_waiting_on_intents() -> None:
    """Requests parked on an intent (shard/lock_wait.py) re-check only when
    `intent_releases` moves. A restore replaces the intents wholesale (here: the snapshot
    has none), so it must move it, or the parked requests sleep until their deadline."""
    source = Node()
    assert source.put(b"c", b"1", 10).ok
    busy = Node()
    held = _prepare(b"t1", writes=(WriteItem(key=b"d", value=b"x"),))
    assert busy.txn(held, 10).ok
    before = busy.sm.intent_releases
    busy.restore_from(source)
    assert busy.sm.intents_on(b"d") == []
    assert busy.sm.intent_releases > before
