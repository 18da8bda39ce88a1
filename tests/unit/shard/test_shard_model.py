"""Property: the state machine agrees with a dict-of-version-lists model.

Random slots of commands (including malformed and out-of-range ones), crashes of the MemEngine
followed by re-apply from the "Paxos log", garbage collection (whole passes, and bounded steps
of a pass with reads between them), snapshot/restore into a fresh engine and RocksDB reopen;
after each step every key's latest value, and at the end (and between GC steps) every
version's full scan, must match the model.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from router.watch_lanes import Change, ChangesRound
from shard.codec import CommandResult, encode_cas, encode_delete, encode_put
from shard.engine import Engine, MemEngine
from shard.errors import Status, VersionCompacted
from shard.rocks_engine import RocksEngine
from shard.state_machine import RECENT_VERSIONS, ShardStateMachine

KEYS = [b"a", b"a\x00", b"b", b"c", b"c\x00\xff", b"x", b"z"]
RANGE: tuple[bytes, bytes | None] = (b"a", b"z")  # b"z" is outside: WRONG_SHARD
GROUP = 7

keys = st.sampled_from(KEYS)
values = st.binary(max_size=3)
tss = st.integers(0, 60)
commands = st.one_of(
    st.builds(encode_put, keys, values, tss),
    st.builds(encode_delete, keys, tss),
    st.builds(
        lambda k, ts, v, cond, act: encode_cas(k, ts, **cond, **act),
        keys,
        tss,
        values,
        st.one_of(
            st.builds(lambda v: {"expected_value": v}, values),
            st.builds(lambda n: {"expected_version": n}, st.integers(0, 70)),
            st.just({"expect_absent": True}),
        ),
        st.one_of(st.builds(lambda v: {"new_value": v}, values), st.just({"delete": True})),
    ),
    st.sampled_from([b"\xff\xff", b"", b"\x22\x00"]),  # malformed
)
slot_step = st.tuples(st.just("slot"), st.lists(commands, max_size=6), st.booleans())
# One bounded step of a stepped pass (as the node runs them), then reads between steps.
gc_step = st.tuples(st.just("gcstep"), st.integers(0, 200), st.integers(1, 3))
mem_steps = st.lists(
    st.one_of(
        slot_step,
        slot_step,
        slot_step,
        st.tuples(st.just("crash")),
        st.tuples(st.just("gc"), st.integers(0, 200)),
        gc_step,
        gc_step,
        st.tuples(st.just("restore")),
    ),
    max_size=25,
)
rocks_steps = st.lists(
    st.one_of(
        slot_step, slot_step, st.tuples(st.just("reopen")), st.tuples(st.just("gc"), tss), gc_step
    ),
    max_size=10,
)


@dataclass
class Model:
    """Per key: versions ascending, each (version, value or None for a tombstone)."""

    versions: dict[bytes, list[tuple[int, bytes | None]]] = field(default_factory=dict)
    max_version: int = 0
    horizon: int = 0

    def latest(self, key: bytes) -> tuple[bytes, int] | None:
        history = self.versions.get(key)
        if not history or history[-1][1] is None:
            return None
        version, value = history[-1]
        assert value is not None
        return value, version

    def at(self, key: bytes, at_version: int) -> tuple[bytes, int] | None:
        for version, value in reversed(self.versions.get(key, [])):
            if version <= at_version:
                return None if value is None else (value, version)
        return None

    def write(self, key: bytes, value: bytes | None, ts: int) -> int:
        self.max_version = max(ts, self.max_version + 1)
        self.versions.setdefault(key, []).append((self.max_version, value))
        return self.max_version

    def apply(self, cmd: bytes) -> CommandResult:
        """The expected result of one command (decoded independently of the codec)."""
        from shard.codec import Expect, Op, decode_command
        from shard.errors import MalformedCommand

        try:
            c = decode_command(cmd)
        except MalformedCommand:
            return CommandResult(Status.MALFORMED)
        if not RANGE[0] <= c.key < (RANGE[1] or b"\xff" * 9):
            return CommandResult(Status.WRONG_SHARD)
        current = self.latest(c.key)
        if c.op is Op.PUT:
            assert c.value is not None
            return CommandResult(Status.OK, self.write(c.key, c.value, c.ts))
        if c.op is Op.DELETE:
            if current is None:
                return CommandResult(Status.OK, 0)
            return CommandResult(Status.OK, self.write(c.key, None, c.ts))
        cur_value, cur_version = current if current is not None else (None, 0)
        if c.expect is Expect.VALUE:
            holds = cur_value is not None and cur_value == c.expected_value
        elif c.expect is Expect.VERSION:
            holds = cur_version == c.expected_version
        else:
            holds = current is None
        if not holds:
            return CommandResult(Status.CAS_FAILED, 0, cur_value, cur_version)
        if c.value is None and current is None:
            return CommandResult(Status.OK, 0)
        return CommandResult(Status.OK, self.write(c.key, c.value, c.ts))


def _same(got: CommandResult, want: CommandResult) -> bool:
    """Compare results, ignoring error messages (the model does not compute them)."""
    return (got.status, got.version, got.current_value, got.current_version) == (
        want.status,
        want.version,
        want.current_value,
        want.current_version,
    )


class Harness:
    """The node's loop in miniature: a durable Paxos log, one batch per slot."""

    def __init__(self, engine: Engine, recent_versions: int = RECENT_VERSIONS) -> None:
        self.engine = engine
        self.recent_versions = recent_versions
        self.sm = self.open(engine)
        self.log: list[list[bytes]] = []  # slot i+1 -> commands
        self.results: list[list[CommandResult]] = []
        self.model = Model()

    def open(self, engine: Engine) -> ShardStateMachine:
        return ShardStateMachine(GROUP, RANGE, engine, recent_versions=self.recent_versions)

    def slot(self, cmds: list[bytes], sync: bool) -> None:
        self.log.append(cmds)
        batch = self.engine.new_batch()
        results = self.sm.apply(len(self.log), cmds, batch)
        self.engine.write(batch, sync)
        expected = [self.model.apply(c) for c in cmds]
        assert all(_same(g, w) for g, w in zip(results, expected, strict=True)), (
            results,
            expected,
        )
        self.results.append(results)

    def recover(self) -> None:
        """Rebuild from the engine and re-apply the log above the applied index."""
        self.sm = self.open(self.engine)
        assert self.sm.applied_index <= len(self.log)
        for slot in range(self.sm.applied_index + 1, len(self.log) + 1):
            batch = self.engine.new_batch()
            again = self.sm.apply(slot, self.log[slot - 1], batch)
            self.engine.write(batch, sync=False)
            assert again == self.results[slot - 1]  # deterministic, messages included
        assert self.sm.max_version == self.model.max_version
        # An unsynced GC may be lost with its horizon (it is not in the log): both or neither.
        assert self.sm.gc_horizon <= self.model.horizon
        self.model.horizon = self.sm.gc_horizon

    def gc(self, horizon: int) -> None:
        horizon = min(horizon, self.model.max_version)
        batch = self.engine.new_batch()
        self.sm.gc_below(horizon, batch)
        self.engine.write(batch, sync=False)
        self.model.horizon = max(self.model.horizon, horizon)

    def gc_step(self, horizon: int, max_records: int) -> None:
        """Start a stepped pass at `horizon` (or raise a pending one's), run one step."""
        horizon = min(horizon, self.model.max_version)
        batch = self.engine.new_batch()
        self.sm.start_gc(horizon, batch)
        self.sm.gc_step(batch, max_records)
        self.engine.write(batch, sync=False)
        self.model.horizon = max(self.model.horizon, horizon)

    def restore_into_fresh(self) -> None:
        data = self.sm.snapshot()
        fresh = MemEngine()
        target = self.open(fresh)
        batch = fresh.new_batch()
        target.restore(self.sm.applied_index, data, batch)
        fresh.write(batch, sync=True)
        self.engine, self.sm = fresh, self.open(fresh)

    def check_latest(self) -> None:
        for key in KEYS[:-1]:
            assert self.sm.get(key) == self.model.latest(key), key
        live = [(k, *found) for k in sorted(KEYS[:-1]) if (found := self.model.latest(k))]
        assert self.sm.scan(*RANGE, 100, reverse=True) == live[::-1]

    def check_changes(self, after: int) -> None:
        """Every change in (after, max_version + 1], read in pages of every budget shape
        (a change, a key's worth, a byte, a record examined), delivered in version order."""
        at = self.model.max_version + 1
        want = sorted(
            Change(version, key, value)
            for key, history in self.model.versions.items()
            for version, value in history
            if after < version <= at
        )
        for limit, max_bytes, max_records in (
            (100, 1 << 20, 1000),
            (1, 1 << 20, 1000),
            (2, 1, 1000),
            (3, 1 << 20, 1),
            (2, 4, 2),
        ):
            changes_round = ChangesRound([RANGE], after, at)
            got: list[Change] = []
            while behind := changes_round.behind():
                lane = behind[-1]  # any order: the round delivers in version order
                page = self.sm.changes(
                    lane.start, lane.end, lane.after, at, limit, max_bytes, max_records
                )
                assert page.changes == sorted(page.changes)
                changes_round.take(lane, page.changes, page.covered_end, page.through)
                got += changes_round.deliver()
            got += changes_round.deliver()
            assert got == want, (after, limit, max_bytes, max_records)

    def check_history(self) -> None:
        model = self.model
        for at in range(model.horizon, model.max_version + 2):
            want = [
                (k, *found) for k in sorted(KEYS[:-1]) if (found := model.at(k, at)) is not None
            ]
            assert self.sm.scan(RANGE[0], RANGE[1], 100, at_version=at) == want, at
            assert self.sm.scan(RANGE[0], RANGE[1], 2, at_version=at) == want[:2], at
            backwards = want[::-1]
            assert self.sm.scan(*RANGE, 100, at_version=at, reverse=True) == backwards, at
            assert self.sm.scan(*RANGE, 2, at_version=at, reverse=True) == backwards[:2], at
            inner = [item for item in backwards if b"a\x00" <= item[0] < b"c\x00\xff"]
            assert self.sm.scan(b"a\x00", b"c\x00\xff", 100, at, reverse=True) == inner, at
            for k in KEYS[:-1]:
                assert self.sm.get(k, at_version=at) == model.at(k, at)
            self.check_changes(at)
        if model.horizon > 0:
            try:
                self.sm.changes(*RANGE, model.horizon - 1, model.max_version, 10, 100, 100)
            except VersionCompacted:
                pass
            else:
                raise AssertionError("changes from below the GC horizon were served")
            try:
                self.sm.get(b"a", at_version=model.horizon - 1)
            except VersionCompacted:
                pass
            else:
                raise AssertionError("read below the GC horizon was served")


# A read of changes visits only the keys listed as changed when its window is above the
# oldest version listed, every key of its range below it: a list of three versions takes
# the second way for most windows, the default the first way until a crash or restore.
@pytest.mark.parametrize("recent_versions", [RECENT_VERSIONS, 3])
@given(steps=mem_steps)
def test_state_machine_matches_model_on_mem_engine(
    recent_versions: int, steps: list[tuple[object, ...]]
) -> None:
    h = Harness(MemEngine(), recent_versions)
    for step in steps:
        if step[0] == "slot":
            h.slot(step[1], step[2])  # type: ignore[arg-type]
        elif step[0] == "crash":
            h.engine.crash()  # type: ignore[attr-defined]
            h.recover()
        elif step[0] == "gc":
            h.gc(step[1])  # type: ignore[arg-type]
        elif step[0] == "gcstep":
            h.gc_step(step[1], step[2])  # type: ignore[arg-type]
            h.check_history()  # between two steps of a pass
        else:
            h.restore_into_fresh()
        h.check_latest()
    h.check_history()


@settings(max_examples=15)
@given(rocks_steps)
def test_state_machine_matches_model_on_rocks_engine(steps: list[tuple[object, ...]]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = str(Path(tmp) / "db")
        h = Harness(RocksEngine(path))
        try:
            for step in steps:
                if step[0] == "slot":
                    h.slot(step[1], step[2])  # type: ignore[arg-type]
                elif step[0] == "reopen":
                    h.engine.close()  # type: ignore[attr-defined]
                    h.engine = RocksEngine(path)
                    h.recover()
                elif step[0] == "gcstep":
                    h.gc_step(step[1], step[2])  # type: ignore[arg-type]
                    h.check_history()
                else:
                    h.gc(step[1])  # type: ignore[arg-type]
                h.check_latest()
            h.check_history()
        finally:
            h.engine.close()  # type: ignore[attr-defined]
