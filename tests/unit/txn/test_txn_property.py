"""Property: random interleavings of prepares, resolves, decisions, 1PC and single-key writes,
with scanned ranges (rule P6: phantoms, and range intents that hold off other writers), and
recovery's commands over purged records (Prevent, recovery and prevent-round Decides,
conditional Resolves, Prepares and one-phase commits that began below the purge mark:
rules V1, V2, D3-D5, R6, P7, O5, with both purge marks of G1).

An independent model (versions per key, open transactions, decision records), written from
the protocol's statement rather than from `txn.participant`, predicts every result. After
every step the shard state machine (MemEngine) and the rules on `MemTxnStore` must match it:
- no committed write is lost: every version the model holds is readable at its version, and
  each key's latest record is the model's;
- no intent outlives its transaction's resolve, and every intent belongs to an open one;
- the prepared and decision records are the model's.
At the end, a second replica applies the same command log cut into different batches and
must end byte-identical to the first (the whole engine, intents and records included).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from hypothesis import event, example, given
from hypothesis import strategies as st
from txn_harness import MemHarness, ShardHarness

from shard.codec import CommandResult
from shard.engine import MemEngine
from shard.errors import Status
from txn.records import (
    CommitOnePhase,
    Decide,
    DecisionResult,
    Finish,
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
    WriteItem,
)

KEYS = [b"a", b"b", b"c"]
TXNS = [b"t0", b"t1", b"t2", b"t3"]
GROUP = 3
OTHER = 4  # t1 and t3 also have a part in this group (rules R5, G2)


def participants_of(txn_id: bytes) -> tuple[int, ...]:
    return (GROUP, OTHER) if TXNS.index(txn_id) % 2 else (GROUP,)


def verified_by(before_ts: int) -> tuple[bytes, ...]:
    """The txns a purge names verified (rule G2): some, by the bits of its `before_ts`."""
    return tuple(t for i, t in enumerate(TXNS) if before_ts >> i & 1)


@dataclass
class Open:
    prepare_ts: int
    reads: set[bytes]
    writes: dict[bytes, bytes | None]
    ranges: tuple[KeyRange, ...] = ()
    participants: tuple[int, ...] = (GROUP,)


@dataclass
class Decision:
    committed: bool
    commit_ts: int
    decided_ts: int
    finished: bool = False
    participants: tuple[int, ...] = ()
    one_phase: bool = False
    late: bool = False  # a commit recorded by a Resolve with nothing prepared (R5)


@dataclass
class Model:
    versions: dict[bytes, list[tuple[int, bytes | None]]] = field(default_factory=dict)
    max_version: int = 0
    open: dict[bytes, Open] = field(default_factory=dict)
    decisions: dict[bytes, Decision] = field(default_factory=dict)
    finish_order: list[bytes] = field(default_factory=list)
    #: Rule G1: the largest horizon purged, and of a purge that deleted a commit record no
    #: check covered (neither verified nor one-phase).
    mark: int = 0
    unverified_mark: int = 0

    def latest(self, key: bytes) -> tuple[int, bool]:
        versions = self.versions.get(key)
        if not versions:
            return 0, True
        return versions[-1][0], versions[-1][1] is None

    def locked(self, key: bytes, by_others_of: bytes, writes_only: bool) -> bool:
        for txn_id, o in self.open.items():
            if txn_id == by_others_of:
                continue
            if key in o.writes:
                return True
            if not writes_only and (key in o.reads or any(key in r for r in o.ranges)):
                return True
        return False

    def valid(
        self,
        txn_id: bytes,
        reads: dict[bytes, int],
        writes: dict[bytes, object],
        ranges: tuple[KeyRange, ...] = (),
    ) -> bool:
        for key, version in reads.items():
            if self.locked(key, txn_id, writes_only=True):
                return False
            latest, tombstone = self.latest(key)
            if latest != version and not (version == 0 and tombstone):
                return False
        for key_range in ranges:  # P6, stated over the whole key space
            for key in KEYS:
                if key not in key_range:
                    continue
                if self.locked(key, txn_id, writes_only=True):
                    return False
                live = not self.latest(key)[1]
                if live and key not in reads:  # even if this transaction writes it
                    return False
        return not any(self.locked(key, txn_id, writes_only=False) for key in writes)

    def write(self, key: bytes, value: bytes | None, version: int) -> bool:
        if value is None and self.latest(key)[1]:
            return False
        self.versions.setdefault(key, []).append((version, value))
        return True

    # Each returns (status, txn result or single-key version).

    def put(self, key: bytes, value: bytes | None, ts: int) -> tuple[Status, object]:
        if self.locked(key, b"", writes_only=False):
            return Status.CONFLICT, None
        if value is None and self.latest(key)[1]:
            return Status.OK, 0
        version = max(ts, self.max_version + 1)
        self.write(key, value, version)
        self.max_version = version
        return Status.OK, version

    def prepare(self, cmd: Prepare, ts: int) -> tuple[Status, object]:
        if cmd.txn_id in self.open:
            return Status.OK, PrepareResult(prepare_ts=self.open[cmd.txn_id].prepare_ts)
        reads = {r.key: r.version for r in cmd.reads}
        writes = {w.key: w.value for w in cmd.writes}
        if cmd.txn_id in self.decisions or 0 < cmd.began_ts < self.mark:  # P2, P7
            return Status.CONFLICT, None
        if not self.valid(cmd.txn_id, reads, writes, cmd.read_ranges):
            return Status.CONFLICT, None
        prepare_ts = max(ts, self.max_version + 1)
        self.open[cmd.txn_id] = Open(
            prepare_ts, set(reads) - set(writes), writes, cmd.read_ranges, cmd.participants
        )
        return Status.OK, PrepareResult(prepare_ts=prepare_ts)

    def resolve(self, cmd: Resolve, ts: int) -> tuple[Status, object]:
        if cmd.if_prepared and cmd.txn_id not in self.open:  # rule R6
            return Status.OK, ResolveResult(found=False)
        o = self.open.pop(cmd.txn_id, None)
        if cmd.txn_id not in self.decisions:  # rule R5: the resolution record
            commit_ts = cmd.commit_ts if cmd.commit else 0
            participants = o.participants if o is not None and cmd.commit else ()
            self.decisions[cmd.txn_id] = Decision(
                cmd.commit,
                commit_ts,
                ts,
                finished=True,
                participants=participants,
                late=o is None and cmd.commit,
            )
            self.finish_order.append(cmd.txn_id)
        if o is None:
            return Status.OK, ResolveResult(found=False)
        written = 0
        if cmd.commit and cmd.commit_ts >= o.prepare_ts:
            for key, value in o.writes.items():
                written += self.write(key, value, cmd.commit_ts)
            self.max_version = max(self.max_version, cmd.commit_ts)
        return Status.OK, ResolveResult(found=True, versions_written=written)

    def decide(self, cmd: Decide, ts: int) -> tuple[Status, object]:
        if cmd.txn_id not in self.decisions:
            if cmd.recover and cmd.txn_id in self.open:  # D3
                return Status.OK, DecisionResult(committed=False, pending=True)
            if cmd.recover and 0 < cmd.asker_ts < self.mark:  # D4
                checked = self.unverified_mark <= cmd.asker_ts
                return Status.OK, DecisionResult(committed=False, pending=True, checked=checked)
            if cmd.if_prepared and cmd.txn_id not in self.open:  # D5
                return Status.OK, DecisionResult(committed=False, pending=True)
            commit_ts = cmd.commit_ts if cmd.commit else 0
            self.decisions[cmd.txn_id] = Decision(cmd.commit, commit_ts, ts)
        d = self.decisions[cmd.txn_id]
        # Rule D2: the decision resolves this group's own prepared part at once.
        self.resolve(Resolve(txn_id=cmd.txn_id, commit=d.committed, commit_ts=d.commit_ts), ts)
        return Status.OK, DecisionResult(committed=d.committed, commit_ts=d.commit_ts)

    def finish(self, cmd: Finish) -> tuple[Status, object]:
        d = self.decisions.get(cmd.txn_id)
        if d is None:
            return Status.OK, None
        if not d.finished:
            d.finished = True
            self.finish_order.append(cmd.txn_id)
        return Status.OK, DecisionResult(committed=d.committed, commit_ts=d.commit_ts)

    def prevent(self, cmd: Prevent, ts: int) -> tuple[Status, object]:
        o = self.open.get(cmd.txn_id)
        if o is not None:  # V1
            return Status.OK, PreventResult(prepared=True, prepare_ts=o.prepare_ts)
        d = self.decisions.get(cmd.txn_id)
        if d is None:
            if 0 < cmd.asker_ts < self.mark:  # V2
                checked = self.unverified_mark <= cmd.asker_ts
                return Status.OK, PreventResult(prepared=False, unknown=True, checked=checked)
            self.decisions[cmd.txn_id] = Decision(False, 0, ts, finished=True)
            self.finish_order.append(cmd.txn_id)
            return Status.OK, PreventResult(prepared=False)
        if d.committed:
            return Status.OK, PreventResult(prepared=True, prepare_ts=d.commit_ts)
        return Status.OK, PreventResult(prepared=False)

    def purge(self, cmd: PurgeDecisions) -> tuple[Status, object]:
        self.mark = max(self.mark, cmd.before_ts)
        purged = 0
        for _ in range(len(self.finish_order)):
            d = self.decisions[self.finish_order[0]]
            if d.decided_ts >= cmd.before_ts:
                break
            txn_id = self.finish_order.pop(0)
            if d.committed and len(d.participants) > 1 and txn_id not in cmd.verified:
                self.finish_order.append(txn_id)  # rule G2: not checked, kept for later
            else:
                del self.decisions[txn_id]
                purged += 1
                if d.committed and not (d.one_phase or d.late) and len(d.participants) <= 1:
                    self.unverified_mark = max(self.unverified_mark, cmd.before_ts)
        return Status.OK, PurgeResult(purged=purged)

    def one_phase(self, cmd: CommitOnePhase, ts: int) -> tuple[Status, object]:
        d = self.decisions.get(cmd.txn_id)
        if d is not None:
            if d.committed:
                return Status.OK, OnePhaseResult(commit_ts=d.commit_ts)
            return Status.CONFLICT, None
        reads = {r.key: r.version for r in cmd.reads}
        writes = {w.key: w.value for w in cmd.writes}
        if cmd.txn_id in self.open or 0 < cmd.began_ts < self.mark:  # O2, O5
            return Status.CONFLICT, None
        if not self.valid(cmd.txn_id, reads, writes, cmd.read_ranges):
            self.decisions[cmd.txn_id] = Decision(False, 0, ts, finished=True)
            self.finish_order.append(cmd.txn_id)
            return Status.CONFLICT, None
        commit_ts = max(ts, self.max_version + 1)
        for key, value in writes.items():
            self.write(key, value, commit_ts)
        self.max_version = commit_ts
        self.decisions[cmd.txn_id] = Decision(True, commit_ts, ts, finished=True, one_phase=True)
        self.finish_order.append(cmd.txn_id)
        return Status.OK, OnePhaseResult(commit_ts=commit_ts)


# --------------------------------------------------------------------------------------------
# Steps: drawn abstractly, made concrete against the model (read versions, commit_ts).

key_idx = st.integers(0, len(KEYS) - 1)
txn_idx = st.integers(0, len(TXNS) - 1)
values = st.one_of(st.none(), st.sampled_from([b"", b"x", b"y"]))
tss = st.integers(0, 40)
read_specs = st.lists(st.tuples(key_idx, st.sampled_from(["fresh", "fresh", "zero", "stale"])))
# (first key, end key index or len(KEYS) for no end, whether the scan saw every live key).
range_spec = st.tuples(key_idx, st.integers(1, len(KEYS)), st.booleans())
no_ranges: st.SearchStrategy[list[tuple[int, int, bool]]] = st.just([])
scans = st.lists(range_spec, min_size=1, max_size=2)
write_specs = st.lists(st.tuples(key_idx, values), max_size=3)
steps = st.lists(
    st.one_of(
        st.tuples(st.just("prepare"), txn_idx, read_specs, write_specs, tss, no_ranges),
        st.tuples(st.just("prepare"), txn_idx, read_specs, write_specs, tss, scans),
        # A blind Prepare or one-phase commit whose transaction began at a timestamp, maybe
        # below the purge mark.
        st.tuples(st.just("prepare_began"), txn_idx, write_specs, st.integers(0, 60), tss),
        st.tuples(st.just("one_phase_began"), txn_idx, write_specs, st.integers(0, 60), tss),
        st.tuples(st.just("resolve"), txn_idx, st.booleans(), st.integers(-1, 3)),
        st.tuples(st.just("resolve"), txn_idx, st.just(True), st.integers(0, 3)),
        st.tuples(st.just("resolve"), txn_idx, st.just(True), st.integers(0, 3)),
        st.tuples(st.just("put"), key_idx, values, tss),
        st.tuples(st.just("decide"), txn_idx, st.booleans(), tss),
        # A recovery Decide (abort) with an asker_ts, or the prevent round's (if_prepared).
        st.tuples(st.just("recover"), txn_idx, st.integers(0, 60), tss),
        st.tuples(st.just("decide_if_prepared"), txn_idx, tss),
        st.tuples(st.just("prevent"), txn_idx, st.integers(0, 60), tss),
        st.tuples(st.just("resolve_if_prepared"), txn_idx, tss),
        st.tuples(st.just("one_phase"), txn_idx, read_specs, write_specs, tss, no_ranges),
        st.tuples(st.just("one_phase"), txn_idx, read_specs, write_specs, tss, scans),
        st.tuples(st.just("finish"), txn_idx),
        st.tuples(st.just("purge"), st.integers(0, 60)),
    ),
    max_size=30,
)


def _items(
    model: Model,
    reads: list[tuple[int, str]],
    writes: list[tuple[int, bytes | None]],
    ranges: list[tuple[int, int, bool]],
) -> tuple[tuple[ReadItem, ...], tuple[WriteItem, ...], tuple[KeyRange, ...]]:
    read_map: dict[bytes, int] = {}
    for i, mode in reads:
        latest = model.latest(KEYS[i])[0]
        read_map[KEYS[i]] = {"fresh": latest, "zero": 0, "stale": max(0, latest - 1)}[mode]
    key_ranges: dict[KeyRange, None] = {}
    for start, end, complete in ranges:
        if end <= start:
            continue
        key_range = KeyRange(start=KEYS[start], end=KEYS[end] if end < len(KEYS) else b"")
        key_ranges[key_range] = None
        if complete:  # what a scan records: every live key of the range, at its version
            for key in KEYS[start:end]:
                latest, tombstone = model.latest(key)
                if not tombstone:
                    read_map.setdefault(key, latest)
    write_map = {KEYS[i]: v for i, v in writes}
    return (
        tuple(ReadItem(key=k, version=v) for k, v in read_map.items()),
        tuple(WriteItem(key=k, value=v) for k, v in write_map.items()),
        tuple(key_ranges),
    )


def _prepare(
    txn_id: bytes,
    reads: tuple[ReadItem, ...],
    writes: tuple[WriteItem, ...],
    ranges: tuple[KeyRange, ...],
    began_ts: int = 0,
) -> Prepare:
    return Prepare(
        txn_id=txn_id,
        coordinator_group=GROUP,
        participants=participants_of(txn_id),
        reads=reads,
        writes=writes,
        read_ranges=ranges,
        began_ts=began_ts,
    )


def _check_result(expected: tuple[Status, object], got: CommandResult, what: object) -> None:
    status, body = expected
    assert got.status is status, (what, got)
    if status is Status.CONFLICT:
        assert got.conflict is not None, (what, got)
        assert got.version == 0
        return
    if isinstance(body, int):
        assert got.version == body, (what, got)
    else:
        assert got.txn == body, (what, got)


def _check_state(model: Model, h: MemHarness | ShardHarness) -> None:
    assert h.max_version == model.max_version
    for key in KEYS:
        versions = model.versions.get(key, [])
        assert h.latest(key) == model.latest(key), key
        for version, value in versions:  # no committed write is lost or overwritten
            assert h.value_at(key, version) == value, (key, version)
        live = versions[-1] if versions and versions[-1][1] is not None else None
        assert h.value(key) == (None if live is None else (live[1], live[0]))
    expected_intents = sorted(
        [(k, t, IntentKind.WRITE, o.prepare_ts) for t, o in model.open.items() for k in o.writes]
        + [(k, t, IntentKind.READ, o.prepare_ts) for t, o in model.open.items() for k in o.reads]
    )
    got = sorted((k, i.txn_id, i.kind, i.prepare_ts) for k, i in h.all_intents())
    assert got == expected_intents
    for k, i in h.all_intents():
        if i.is_write:
            assert i.value == model.open[i.txn_id].writes[k]
    assert [(p.txn_id, p.read_ranges) for p in h.prepared_txns()] == [
        (t, model.open[t].ranges) for t in sorted(model.open)
    ]
    for txn_id in TXNS:
        d = h.decision(txn_id)
        m = model.decisions.get(txn_id)
        if m is None:
            assert d is None, txn_id
        else:
            assert d is not None, txn_id
            assert (d.committed, d.commit_ts, d.decided_ts, d.finished) == (
                m.committed,
                m.commit_ts,
                m.decided_ts,
                m.finished,
            )
            if m.participants:  # an R5 record of a commit (a Decide's keeps its own list)
                assert d.participants == m.participants, txn_id
    assert [d.txn_id for d in h.unfinished()] == sorted(
        t for t, d in model.decisions.items() if not d.finished
    )


@given(steps, st.lists(st.integers(1, 6), min_size=1, max_size=8), st.integers(0, 30))
# Always run: t0 scans everything (nothing is there), then t1's Prepare and one-phase commit,
# and a single-key put, write a key of that range while t0 is open: only the range intent
# refuses them.
@example(
    [
        ("prepare", 0, [], [], 10, [(0, 3, True)]),
        ("prepare", 1, [], [(1, b"x")], 20, []),
        ("one_phase", 2, [], [(2, b"y")], 21, []),
        ("put", 0, b"z", 22),
        ("resolve", 0, True, 5),
        ("prepare", 3, [], [(1, b"x")], 30, []),
    ],
    [1],
    2,
)
# Always run: t1 (a part in another group too) commits here; a purge that does not name it
# verified keeps its record (rule G2), the next one, naming it, deletes it.
@example(
    [
        ("prepare", 1, [], [(0, b"x")], 10, []),
        ("resolve", 0, True, 0),
        ("purge", 4),
        ("purge", 2),
    ],
    [1],
    2,
)
# Always run: purges pass records that leave no doubt (t0's one-phase commit, t1's commit
# recorded by a late Resolve); recovery's answers below the purge mark (V2, D4: `checked`),
# a prevent-round abort without the PREPARE (D5) and a conditional abort (R6) of a txn no
# longer prepared. (Records an older version wrote, which raise the unverified mark, are
# made by the rule tests: no command writes one.)
@example(
    [
        ("one_phase", 0, [], [(0, b"x")], 5, []),
        ("purge", 20),
        ("prevent", 1, 10, 30),
        ("recover", 2, 10, 31),
        ("decide_if_prepared", 3, 32),
        ("resolve", 1, True, 0),
        ("purge", 50),
        ("prevent", 3, 40, 51),
        ("resolve_if_prepared", 2, 52),
    ],
    [1],
    2,
)
# Always run (found by CI's random examples): deleting a key a transaction deleted writes
# nothing, and both stores say since when the key is absent (node rule 2).
@example(
    [
        ("one_phase", 0, [], [(1, b"")], 0, []),
        ("one_phase", 1, [], [(1, None)], 0, []),
        ("put", 1, None, 0),
    ],
    [1],
    0,
)
def test_random_interleavings_keep_every_committed_write(
    program: list[tuple[object, ...]], cuts: list[int], restore_at: int
) -> None:
    model = Model()
    shard = ShardHarness()
    mem = MemHarness()
    results: list[CommandResult] = []
    for step in program:
        kind = step[0]
        if kind == "put":
            _, k, value, ts = step
            key = KEYS[k]
            expected = model.put(key, value, ts)
            got = [shard.put(key, value, ts), mem.put(key, value, ts)]
        else:
            if kind in ("prepare", "one_phase"):
                _, t, reads, writes, ts, ranges = step
                r, w, kr = _items(model, reads, writes, ranges)
                if kind == "prepare":
                    record: object = _prepare(TXNS[t], r, w, kr)
                    expected = model.prepare(record, ts)
                else:
                    record = CommitOnePhase(txn_id=TXNS[t], reads=r, writes=w, read_ranges=kr)
                    expected = model.one_phase(record, ts)
            elif kind in ("prepare_began", "one_phase_began"):
                _, t, writes, began_ts, ts = step
                _, w, _ = _items(model, [], writes, [])
                if kind == "prepare_began":
                    record = _prepare(TXNS[t], (), w, (), began_ts)
                    expected = model.prepare(record, ts)
                else:
                    record = CommitOnePhase(txn_id=TXNS[t], writes=w, began_ts=began_ts)
                    expected = model.one_phase(record, ts)
            elif kind == "resolve":
                _, t, commit, delta = step
                # Mostly resolve an open transaction: that is where the writes happen.
                candidates = sorted(model.open) or TXNS
                txn_id = candidates[t % len(candidates)]
                o = model.open.get(txn_id)
                base = o.prepare_ts if o is not None else model.max_version
                record = Resolve(txn_id=txn_id, commit=commit, commit_ts=max(0, base + delta))
                ts = 0
                expected = model.resolve(record, ts)
            elif kind == "decide":
                _, t, commit, ts = step
                record = Decide(
                    txn_id=TXNS[t],
                    participants=(GROUP,),
                    commit=commit,
                    commit_ts=model.max_version + 1 if commit else 0,
                )
                expected = model.decide(record, ts)
            elif kind in ("recover", "decide_if_prepared"):
                t, ts = step[1], step[-1]
                record = Decide(
                    txn_id=TXNS[t],
                    participants=participants_of(TXNS[t]),
                    commit=False,
                    recover=kind == "recover",
                    asker_ts=step[2] if kind == "recover" else 0,
                    if_prepared=kind == "decide_if_prepared",
                )
                expected = model.decide(record, ts)
            elif kind == "prevent":
                _, t, asker_ts, ts = step
                record = Prevent(txn_id=TXNS[t], asker_ts=asker_ts)
                expected = model.prevent(record, ts)
            elif kind == "resolve_if_prepared":
                _, t, ts = step
                record = Resolve(txn_id=TXNS[t], commit=False, if_prepared=True)
                expected = model.resolve(record, ts)
            elif kind == "finish":
                candidates = sorted(model.decisions) or TXNS
                record = Finish(txn_id=candidates[step[1] % len(candidates)])
                ts = 0
                expected = model.finish(record)
            else:
                record = PurgeDecisions(before_ts=step[1], verified=verified_by(step[1]))
                ts = 0
                expected = model.purge(record)
            got = [shard.txn(record, ts), mem.txn(record, ts)]
        for result in got:
            _check_result(expected, result, step)
        assert got[0] == got[1], step  # the shard's store behaves as MemTxnStore
        results.append(got[0])
        event(f"{kind} {got[0].status.name} {type(got[0].txn).__name__}")
        _check_state(model, shard)
        _check_state(model, mem)

    # A second replica: the same log, cut into other batches (several slots per batch); a
    # third one installs the second's snapshot at a batch boundary and applies the rest.
    replica = ShardHarness(MemEngine())
    late: ShardHarness | None = None
    log = shard.log
    replayed: list[CommandResult] = []
    pos = 0
    i = 0
    while pos < len(log):
        if late is None and pos >= restore_at:
            late = ShardHarness(MemEngine())
            batch = late.engine.new_batch()
            late.sm.restore(replica.sm.applied_index, replica.sm.snapshot(), batch)
            late.engine.write(batch, False)
        batch = replica.engine.new_batch()
        start = pos
        for _ in range(cuts[i % len(cuts)]):
            if pos == len(log):
                break
            replayed += replica.sm.apply(replica.sm.applied_index + 1, [log[pos]], batch)
            pos += 1
        replica.engine.write(batch, False)
        if late is not None:
            assert [late.run(c)[0] for c in log[start:pos]] == results[start:pos]
        i += 1
    assert replayed == results
    assert replica.contents() == shard.contents()
    if late is not None:
        assert late.contents() == shard.contents()
