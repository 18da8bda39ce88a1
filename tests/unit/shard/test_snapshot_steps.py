"""Snapshots built and restored in bounded steps (shard.snapshots).

Before, a node built a lagging follower's snapshot and restored one in a single loop turn:
2.0 s and 3.2 s for a shard of 300,000 small keys on the reference machine, far past the
election timeout, so the groups the node led elected new leaders (and the next leader stalled
the same way for the same follower). These tests hold the pieces to their bounds: a build is
one point-in-time state however many steps it takes, a restore in steps leaves the same
state as one at once, a crash at any point of it leaves either the old state or the new one
whole once the node starts again, and a bad frame abandons it before the data changes.
"""

from __future__ import annotations

import itertools
import struct
import zlib
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from paxos.messages import InstallSnapshot
from router import kv_pb2 as kv
from shard.codec import encode_delete
from shard.config import PaxosSettings
from shard.engine import Engine, EngineBatch, MemBatch, MemEngine
from shard.errors import SnapshotCorrupt, Status, VersionCompacted
from shard.execute import background_cycle
from shard.mvcc import group_prefix, restore_prefix, storage_prefix_end
from shard.node import TxnSettings
from shard.rocks_engine import RocksEngine
from shard.snapshots import MAGIC, ShardRestore
from shard.state_machine import ShardStateMachine
from tests.unit.shard.test_node_core import ThreeNodes, get, put
from tests.unit.shard.test_shard_txn import GROUP, RANGE, Node, busy, state
from txn.records import (
    CommitOnePhase,
    Decide,
    Finish,
    KeyRange,
    Prepare,
    Prevent,
    PurgeDecisions,
    ReadItem,
    Resolve,
    ResolveResult,
    WriteItem,
)

STEP_RECORDS = 3


def engines(tmp_path: Path) -> list[Engine]:
    return [MemEngine(), RocksEngine(str(tmp_path / "db"))]


def filled(engine: Engine, keys: int = 20) -> Node:
    node = Node(engine)
    busy(node)
    for i in range(keys):
        node.put(b"k%03d" % i, b"v%d" % i, 100 + i)
    return node


def build_in_steps(sm: ShardStateMachine, max_records: int) -> tuple[int, bytes, int]:
    """(index, blob, steps) of a build run to its end."""
    build = sm.snapshot_build()
    steps = 1
    while (done := build.step(max_records, 1 << 30)) is None:
        steps += 1
    return done[0], done[1], steps


def group_keys(engine: Engine, group: int = GROUP) -> list[tuple[bytes, bytes]]:
    prefix = group_prefix(group)
    return engine.scan(prefix, storage_prefix_end(prefix), None)


@pytest.mark.parametrize("which", [0, 1])
def test_a_build_in_steps_is_the_state_when_it_began(tmp_path: Path, which: int) -> None:
    engine = engines(tmp_path)[which]
    node = filled(engine)
    whole = node.sm.snapshot()
    build = node.sm.snapshot_build()
    assert build.step(STEP_RECORDS, 1 << 30) is None
    assert build.records <= STEP_RECORDS
    # Writes after the build began are not in it, however many steps remain.
    for i in range(5):
        node.put(b"k%03d" % i, b"changed", 200 + i)
    steps = 1
    while (done := build.step(STEP_RECORDS, 1 << 30)) is None:
        steps += 1
    assert done == (ShardStateMachine.snapshot_index(whole), whole)
    assert steps > 10
    assert node.sm.snapshot() != whole


def test_a_build_step_stops_at_its_byte_budget() -> None:
    node = Node()
    for i in range(4):
        node.put(b"k%d" % i, bytes(1000), 10 + i)
    build = node.sm.snapshot_build()
    assert build.step(1000, 1500) is None
    # Four small latest records come first (key order), then the versions: the second one
    # reaches the budget and is the step's last.
    assert build.records == 4 + 2


def restore_in_steps(target: Node, index: int, blob: bytes) -> list[int]:
    """Run a restore one step per written batch; the number of group keys after each."""
    restore = target.sm.begin_restore(index, blob)
    sizes = []
    done = False
    while not done:
        batch = target.engine.new_batch()
        done = restore.step(batch, STEP_RECORDS, 1 << 30)
        target.engine.write(batch, False)
        sizes.append(len(group_keys(target.engine)))
    return sizes


@pytest.mark.parametrize("which", [0, 1])
def test_a_restore_in_steps_leaves_what_a_restore_at_once_leaves(
    tmp_path: Path, which: int
) -> None:
    source = filled(MemEngine())
    index, blob = source.sm.applied_index, source.sm.snapshot()
    target = Node(engines(tmp_path)[which])
    target.put(b"old", b"gone", 5)
    sizes = restore_in_steps(target, index, blob)
    assert len(sizes) > 10
    assert max(b - a for a, b in itertools.pairwise(sizes)) <= STEP_RECORDS + 1
    assert group_keys(target.engine) == group_keys(source.engine)
    assert target.engine.scan(b"r", b"s", None) == []  # the staging is gone
    assert state(target) == state(source)
    # The derived state came along: the restored intents, resolutions and ids work.
    for node in (source, target):
        assert node.put(b"d", b"y", 300).status is Status.CONFLICT
        assert node.txn(Resolve(txn_id=b"t1", commit=True, commit_ts=310)).txn == ResolveResult(
            found=True, versions_written=1
        )


def test_a_crash_at_any_step_leaves_the_old_state_or_the_new_one_whole(tmp_path: Path) -> None:
    """Every prefix of the restore's writes, as a crash would leave it (the engine's log is
    ordered), then the node starts again on it: the group holds the old state or the new one,
    whole, never a mix, and no staging is left behind."""
    source = filled(MemEngine())
    index, blob = source.sm.applied_index, source.sm.snapshot()
    old = Node()
    old.put(b"old", b"kept", 5)
    old_keys = group_keys(old.engine)
    restore = Node(MemEngine()).sm.begin_restore(index, blob)
    batches: list[list[tuple[str, bytes, bytes | None]]] = []
    done = False
    while not done:
        recorder = _RecordingBatch()
        done = restore.step(recorder, STEP_RECORDS, 1 << 30)  # type: ignore[arg-type]
        batches.append(recorder.ops)
    outcomes = set()
    for cut in range(len(batches) + 1):
        engine = MemEngine()
        node = Node(engine)
        node.put(b"old", b"kept", 5)
        for ops in batches[:cut]:
            batch = engine.new_batch()
            for op, key, value in ops:
                if op == "put":
                    assert value is not None
                    batch.put(key, value)
                else:
                    assert value is not None
                    batch.delete_range(key, value)
            engine.write(batch, False)
        reopened = ShardStateMachine(GROUP, RANGE, engine)
        keys = group_keys(engine)
        assert keys in (old_keys, group_keys(source.engine)), cut
        assert engine.scan(b"r", b"s", None) == []
        assert reopened.applied_index == (index if keys != old_keys else old.sm.applied_index)
        outcomes.add(keys == old_keys)
    assert outcomes == {True, False}


class _PowerLoss(Exception):
    pass


class _FailingEngine(MemEngine):
    """Keeps `keep` more batches, then fails the next write, as a power loss that keeps a
    prefix of the engine's ordered log would; records the size of each batch it kept."""

    def __init__(self) -> None:
        super().__init__()
        self.keep: int | None = None
        self.batch_sizes: list[int] = []

    def write(self, batch: EngineBatch, sync: bool) -> None:
        if self.keep is not None:
            if self.keep == 0:
                raise _PowerLoss
            self.keep -= 1
        assert isinstance(batch, MemBatch)
        self.batch_sizes.append(sum(len(b"".join(x for x in op if x)) for op in batch._ops))
        super().write(batch, sync)


def test_an_interrupted_restore_is_redone_in_bounded_batches_even_across_crashes() -> None:
    """A restore cut after its marker is redone at open in batches of about the redo's byte
    budget (it had been one batch as large as the shard); a crash after any of them leaves
    the redo to do again, and the group ends as the snapshot, whole."""
    source = filled(MemEngine(), keys=60)
    index, blob = source.sm.applied_index, source.sm.snapshot()
    engine = _FailingEngine()
    target = Node(engine)
    target.put(b"old", b"gone", 5)
    restore = target.sm.begin_restore(index, blob)
    marker = restore_prefix(GROUP) + b"!"
    written_after_marker = 0
    while written_after_marker < 2:  # the group holds part of the snapshot, cut there
        batch = engine.new_batch()
        assert not restore.step(batch, STEP_RECORDS, 1 << 30)
        engine.write(batch, False)
        written_after_marker += engine.get(marker) is not None
    budget = 300
    for keep in itertools.count():
        engine.keep, engine.batch_sizes = keep, []
        try:
            reopened = Node.__new__(Node)
            reopened.engine = engine
            reopened.sm = ShardStateMachine(GROUP, RANGE, engine, redo_step_bytes=budget)
        except _PowerLoss:
            assert engine.get(marker) is not None  # the next open redoes it
            continue
        break
    assert reopened.sm.redid_restore
    assert keep > 5  # that many crashes, one batch later each time
    assert len(engine.batch_sizes) == keep
    assert max(engine.batch_sizes) < 2 * budget
    assert sum(engine.batch_sizes) > 5 * budget
    assert engine.scan(b"r", b"s", None) == []
    assert group_keys(engine) == group_keys(source.engine)
    assert state(reopened) == state(source)
    # The derived state is the snapshot's: its intents and resolutions work.
    engine.keep = None
    for node in (source, reopened):
        assert node.put(b"d", b"y", 300).status is Status.CONFLICT


def frame_offset(blob: bytes, n: int) -> int:
    """Where the n-th record frame of a snapshot blob starts."""
    pos = len(MAGIC) + 24
    for _ in range(n):
        key_len, value_len = struct.unpack_from(">II", blob, pos)
        pos += 8 + key_len + value_len
    return pos


class _RecordingBatch:
    """Records a step's writes, to replay any prefix of them as a crash would leave it."""

    def __init__(self) -> None:
        self.ops: list[tuple[str, bytes, bytes | None]] = []

    def put(self, key: bytes, value: bytes) -> None:
        self.ops.append(("put", key, value))

    def delete_range(self, lo: bytes, hi: bytes) -> None:
        self.ops.append(("delete_range", lo, hi))


def test_a_bad_frame_abandons_the_restore_before_the_data_changes() -> None:
    """A blob whose checksum is right but whose frames are not (a sender's bug) passes the
    check on arrival; the restore meets it while walking the frames, before it touches the
    group's keys."""
    source = filled(MemEngine())
    blob = source.sm.snapshot()
    body = bytearray(blob[:-4])
    head = len(MAGIC) + 24
    struct.pack_into(">II", body, head, 0, 1)  # a record with an empty key
    bad = bytes(body) + struct.pack(">I", zlib.crc32(body))
    target = Node()
    target.put(b"old", b"kept", 5)
    before = group_keys(target.engine)
    restore = target.sm.begin_restore(source.sm.applied_index, bad)
    with pytest.raises(SnapshotCorrupt, match="bad record frame"):
        restore.step(target.engine.new_batch(), STEP_RECORDS, 1 << 30)
    assert group_keys(target.engine) == before


def with_record(blob: bytes, suffix: bytes, value: bytes) -> bytes:
    """`blob` with one more record, its checksum made right again."""
    body = blob[:-4] + struct.pack(">II", len(suffix), len(value)) + suffix + value
    return body + struct.pack(">I", zlib.crc32(body))


@pytest.mark.parametrize(
    "suffix", [b"tp" + b"t1", b"td" + b"t1", b"i" + b"k001", b"tc", b"l" + b"k001", b"m"]
)
@pytest.mark.parametrize("at_once", [False, True])
def test_a_record_that_does_not_decode_abandons_the_restore_before_the_data_changes(
    suffix: bytes, at_once: bool
) -> None:
    """Found by review: a prepared or decision record that passed the checksum and did not
    decode raised InvariantViolation in the middle of a restore in steps, after the group's
    keys were deleted and the staging marker written, so the node stopped, and the restore
    redone at every open raised again. Every record the state machine decodes (intents,
    prepared and decision records, the purge counters) is checked while the frames are
    walked, and a bad one is a corrupt snapshot, dropped as a bad frame is. So are a
    latest record, decoded by a later apply (a chosen CAS raised at every start), and a
    meta record among the records (written early, read at an open after a crash)."""
    source = filled(MemEngine())
    bad = with_record(source.sm.snapshot(), suffix, b"\xff\xff\xff")
    target = Node()
    target.put(b"old", b"kept", 5)
    before = group_keys(target.engine)
    with pytest.raises(SnapshotCorrupt, match=r"does not decode|a meta record among"):
        if at_once:
            target.sm.restore(source.sm.applied_index, bad, target.engine.new_batch())
        else:
            restore = target.sm.begin_restore(source.sm.applied_index, bad)
            while True:
                batch = target.engine.new_batch()
                done = restore.step(batch, STEP_RECORDS, 1 << 30)
                target.engine.write(batch, False)
                assert not done, "the bad record was restored"
    assert group_keys(target.engine) == before
    ShardStateMachine(GROUP, RANGE, target.engine)  # opens: nothing was staged to redo


def test_staging_left_by_a_restore_that_had_not_begun_is_dropped() -> None:
    engine = MemEngine()
    node = Node(engine)
    node.put(b"old", b"kept", 5)
    before = group_keys(engine)
    restore = ShardRestore(
        filled(MemEngine()).sm.snapshot(), group_prefix(GROUP), restore_prefix(GROUP), node.sm
    )
    batch = engine.new_batch()
    assert not restore.step(batch, STEP_RECORDS, 1 << 30)  # staged a part, no marker yet
    engine.write(batch, False)
    assert engine.scan(b"r", b"s", None) != []
    ShardStateMachine(GROUP, RANGE, engine)
    assert engine.scan(b"r", b"s", None) == []
    assert group_keys(engine) == before


def test_a_lagging_follower_catches_up_by_a_snapshot_built_and_restored_in_steps() -> None:
    """Node level: the leader builds over many paced steps while it keeps serving, the
    follower restores over many (refusing stale reads of the half-written state meanwhile),
    and then the follower holds what the leader holds and follows again."""
    nodes = ThreeNodes(
        PaxosSettings(compact_threshold=20, compact_keep=2),
        TxnSettings(snapshot_step_records=5, snapshot_whole_bytes=0),
    )
    leader = nodes.leader(1)
    lagging = next(i for i in nodes.cores if i != leader)
    for i in range(10):
        assert nodes.call(leader, put(b"a%02d" % i, b"1")).put.error.code == kv.OK
    nodes.cut = lagging
    for i in range(60):
        assert nodes.call(leader, put(b"b%02d" % i, b"2")).put.error.code == kv.OK
    nodes.cut = None
    building = restoring = 0
    refused: list[kv.Response] = []
    follower = nodes.cores[lagging].hosts[1]
    for _ in range(2000):
        nodes.advance(0.005, step=0.005)
        building += any(core.hosts[1].builds for core in nodes.cores.values())
        if follower.restore is not None:
            restoring += 1
            if not refused:
                status = nodes.cores[lagging].status()
                assert next(g for g in status.groups if g.group_id == 1).role == "restoring"
                nodes.cores[lagging].submit(get(b"a00", stale_ok=True), refused.append)
                # Meanwhile the group serves writes.
                assert nodes.call(nodes.leader(1), put(b"c", b"3")).put.error.code == kv.OK
        elif restoring and follower.replica.applied_index >= (
            nodes.cores[nodes.leader(1)].hosts[1].replica.applied_index
        ):
            break
    assert building > 3 and restoring > 3, (building, restoring)
    assert refused and refused[0].get.error.code == kv.UNAVAILABLE
    assert "restoring a snapshot" in refused[0].get.error.message
    assert group_keys(nodes.disks[lagging].engine, 1) == group_keys(
        nodes.disks[nodes.leader(1)].engine, 1
    )
    assert nodes.call(lagging, get(b"c", stale_ok=True)).get.value == b"3"
    assert nodes.call(nodes.leader(1), put(b"d", b"4")).put.error.code == kv.OK
    nodes.advance(0.2)
    assert nodes.call(lagging, get(b"d", stale_ok=True)).get.value == b"4"


@pytest.mark.parametrize("whole_bytes", [0, 64 * 1024])
def test_a_follower_that_meets_a_bad_frame_drops_the_restore_and_follows_on(
    whole_bytes: int,
) -> None:
    """The restore's frame walk finds what the check on arrival cannot (a checksum over bad
    frames): the node drops the staging, takes the group's replica back to its durable
    state as a restart would, and the group goes on; nothing of the bad blob is applied.
    Both for a restore in steps and for a small one restored at once (found by review: that
    one raised out of the apply and stopped the node's loop)."""
    settings = TxnSettings(snapshot_step_records=1, snapshot_whole_bytes=whole_bytes)
    nodes = ThreeNodes(txn_settings=settings)
    leader = nodes.leader(1)
    follower = next(i for i in nodes.cores if i != leader)
    assert nodes.call(leader, put(b"a", b"1")).put.error.code == kv.OK
    nodes.advance(0.1)
    core = nodes.cores[follower]
    before = group_keys(nodes.disks[follower].engine, 1)
    source = filled(MemEngine())
    body = bytearray(source.sm.snapshot()[:-4])
    struct.pack_into(">QQQ", body, len(MAGIC), core.hosts[1].replica.applied_index + 50, 0, 0)
    struct.pack_into(">II", body, frame_offset(bytes(body), 30), 0, 1)  # a frame deep in
    bad = bytes(body) + struct.pack(">I", zlib.crc32(body))
    ballot = nodes.cores[leader].hosts[1].replica.status().promised
    index = core.hosts[1].replica.applied_index + 50
    msg = InstallSnapshot(src=leader, dst=follower, ballot=ballot, index=index, data=bad)
    assert core.step(1, msg)
    if not whole_bytes:
        nodes.advance(0.002)
        assert core.hosts[1].restore is not None and core.snapshots_refused == 0
    nodes.advance(0.2)
    assert core.snapshots_refused == 1
    assert core.hosts[1].restore is None
    assert group_keys(nodes.disks[follower].engine, 1) == before
    assert nodes.disks[follower].engine.scan(b"r", b"s", None) == []
    assert nodes.call(nodes.leader(1), put(b"b", b"2")).put.error.code == kv.OK
    nodes.advance(0.5)
    assert nodes.call(follower, get(b"b", stale_ok=True)).get.value == b"2"


def test_restore_steps_stop_at_their_byte_budget() -> None:
    source = Node()
    for i in range(6):
        source.put(b"k%d" % i, bytes(1000), 10 + i)
    restore = Node().sm.begin_restore(source.sm.applied_index, source.sm.snapshot())
    written = []
    done = False
    while not done:
        recorder = _RecordingBatch()
        done = restore.step(recorder, 1000, 1500)  # type: ignore[arg-type]
        written.append(sum(len(v or b"") for op, _, v in recorder.ops if op == "put"))
    # Staging the blob and writing its 6 kB of versions both took steps of about 2 kB.
    assert len(written) >= 6 and max(written) < 2 * 1500 + 200, written


class _CountingJob:
    """A restore that never ends, counting its steps."""

    def __init__(self) -> None:
        self.steps = 0

    def step(self, batch: object, max_records: int, max_bytes: int) -> bool:
        self.steps += 1
        return False

    def run(self, batch: object) -> None:
        raise AssertionError("not restored at once")

    def abandon(self, batch: object) -> None:
        raise AssertionError("not abandoned")


def test_one_background_call_steps_one_job_in_turn() -> None:
    """Found by review: every restoring group and every build took a step in the same call,
    so a node restoring 16 groups held its loop 16 steps long."""
    nodes = ThreeNodes()
    core = nodes.cores[1]
    jobs = {g: _CountingJob() for g in (1, 2)}
    for g, job in jobs.items():
        core.hosts[g].restore = job  # type: ignore[assignment]
    for call in range(1, 7):
        nodes.now += 0.02
        core.tick(nodes.now, nodes.wall)
        assert background_cycle(core, nodes.disks[1])
        assert sorted(j.steps for j in jobs.values()) == [call // 2, (call + 1) // 2]


# A random history of every kind of command (writes, deletions, transactions in each state,
# decisions, purges, collection passes left half done), for the property below.
OP_KEYS = [b"c", b"c\x00", b"d", b"e", b"f"]
_TXNS = [b"t1", b"t2", b"t3"]
_key = st.sampled_from(OP_KEYS)
_txn = st.sampled_from(_TXNS)
_ts = st.integers(0, 400)
_keys = st.lists(_key, max_size=2, unique=True)
any_op = st.one_of(
    st.tuples(st.just("put"), _key, st.binary(max_size=3), _ts),
    st.tuples(st.just("delete"), _key, _ts),
    st.tuples(st.just("prepare"), _txn, _keys, _keys, st.booleans(), _ts),
    st.tuples(st.just("resolve"), _txn, st.booleans(), _ts),
    st.tuples(st.just("decide"), _txn, st.booleans(), _ts),
    st.tuples(st.just("finish"), _txn),
    st.tuples(st.just("purge"), _ts),
    st.tuples(st.just("one_phase"), _txn, _keys, _ts),
    st.tuples(st.just("prevent"), _txn, _ts),
    st.tuples(st.just("gc"), _ts, st.integers(1, 3)),
    st.tuples(st.just("gc"), st.just(0), st.integers(1, 3)),  # a pass going on
)


def apply_op(node: Node, op: tuple[Any, ...]) -> None:
    """Apply one drawn operation to `node` (a refused command is fine: it writes nothing)."""
    kind, sm = op[0], node.sm
    if kind == "put":
        node.put(op[1], op[2], op[3])
    elif kind == "delete":
        node.run(encode_delete(op[1], op[2]))
    elif kind == "prepare":
        _, txn_id, reads, writes, ranged, ts = op
        if reads or writes or ranged:
            record = Prepare(
                txn_id=txn_id,
                coordinator_group=GROUP,
                participants=(GROUP,),
                reads=tuple(
                    ReadItem(key=k, version=(sm.latest_record(k) or (0,))[0]) for k in reads
                ),
                writes=tuple(
                    WriteItem(key=k, value=None if n % 2 else b"w" + k)
                    for n, k in enumerate(writes)
                ),
                read_ranges=(KeyRange(start=b"c", end=b"e"),) if ranged else (),
            )
            node.txn(record, ts)
    elif kind == "resolve":
        prepared = sm.prepared(op[1])
        commit_ts = op[3] + (prepared.prepare_ts if prepared else 0)
        node.txn(Resolve(txn_id=op[1], commit=op[2], commit_ts=commit_ts), op[3])
    elif kind == "decide":
        commit_ts = op[3] + sm.max_version
        node.txn(Decide(txn_id=op[1], participants=(GROUP,), commit=op[2], commit_ts=commit_ts))
    elif kind == "finish":
        node.txn(Finish(txn_id=op[1]))
    elif kind == "purge":
        node.txn(PurgeDecisions(before_ts=op[1]), op[1])
    elif kind == "one_phase":
        if op[2]:
            writes = tuple(WriteItem(key=k, value=b"o") for k in op[2])
            node.txn(CommitOnePhase(txn_id=op[1], writes=writes), op[3])
    elif kind == "prevent":
        node.txn(Prevent(txn_id=op[1], asker_ts=op[2]), op[2])
    else:
        batch = node.engine.new_batch()
        sm.start_gc(op[1], batch)
        sm.gc_step(batch, op[2])
        node.engine.write(batch, False)


def _whole_state(node: Node) -> tuple[object, ...]:
    """Every record but the meta, what is derived from them, and every read."""
    sm = node.sm
    prefix = group_prefix(GROUP)
    reads: list[tuple[int | None, object]] = []
    for at in [None, *range(0, 900, 23)]:
        try:
            got = ([sm.get(k, at) for k in OP_KEYS], sm.scan(b"c", b"x", 100, at))
            reads.append((at, got))
        except VersionCompacted:
            reads.append((at, "compacted"))
    return (
        [kv for kv in group_keys(node.engine) if kv[0] != prefix + b"m"],
        (sm.applied_index, sm.max_version, sm.gc_horizon, sm.has_intents),
        (state(node), sm.scanners(b"c"), sm.scanners(b"d"), sm.scanners(b"e")),
        [(t, sm.decision(t), sm.prepared(t)) for t in _TXNS],
        reads,
    )


@settings(max_examples=60, deadline=None)
@given(
    history=st.lists(any_op, max_size=25),
    target_history=st.lists(any_op, max_size=8),
    after=st.lists(any_op, max_size=6),
    step_records=st.integers(1, 4),
    crash_at=st.integers(0, 60),
)
def test_any_state_restored_in_steps_even_across_a_crash_is_the_state_snapshotted(
    history: list[tuple[Any, ...]],
    target_history: list[tuple[Any, ...]],
    after: list[tuple[Any, ...]],
    step_records: int,
    crash_at: int,
) -> None:
    """Intents, prepared records with scanned ranges, decisions finished or not, the purge
    queue and its mark, tombstones, a collection pass half done and its horizon: a restore
    in steps (with a restart after any of them) leaves the state snapshotted or, before its
    marker, the old one whole; and both replicas then apply the same commands alike."""
    source = Node()
    for op in history:
        apply_op(source, op)
    expected = _whole_state(source)
    index, blob, _ = build_in_steps(source.sm, step_records)
    target = Node()
    for op in target_history:
        apply_op(target, op)
    old = _whole_state(target)
    restore = target.sm.begin_restore(index, blob)
    for step in itertools.count(1):
        batch = target.engine.new_batch()
        done = restore.step(batch, step_records, 1 << 30)
        target.engine.write(batch, False)
        if done:
            break
        if step == crash_at:
            target = Node(target.engine)
            if _whole_state(target) == old:
                return
            break
    assert target.engine.scan(b"r", b"s", None) == []
    assert _whole_state(target) == expected
    for op in after:
        if op[0] != "gc":  # the source's pass goes on, the restored replica's ended
            apply_op(source, op)
            apply_op(target, op)
    assert _whole_state(target) == _whole_state(source)
