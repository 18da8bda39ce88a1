"""Two harnesses with one interface: the txn rules over `MemTxnStore`, and the shard state
machine applying encoded commands on a MemEngine (one slot, one batch, one write per call).

Scenario tests run on both; the property test checks that they agree command by command.
"""

from __future__ import annotations

from dataclasses import replace

from shard.codec import CommandResult, encode_delete, encode_put, encode_txn
from shard.engine import MemEngine
from shard.errors import Status
from shard.mvcc import DECISION_TAG, META_TAG, group_prefix
from shard.state_machine import ShardStateMachine
from txn import coordinator, participant
from txn.codec import decode_decision, encode_decision
from txn.records import (
    CommitOnePhase,
    Conflict,
    Decide,
    DecisionInfo,
    Finish,
    IntentInfo,
    Prepare,
    PreparedInfo,
    Prevent,
    PurgeDecisions,
    Resolve,
    TxnCommand,
    TxnResult,
)
from txn.store import MemTxnStore

GROUP = 3


def _result(txn: TxnResult | None, conflict: Conflict | None = None) -> CommandResult:
    if conflict is not None:
        return CommandResult(Status.CONFLICT, message=conflict.reason, txn=txn, conflict=conflict)
    return CommandResult(Status.OK, txn=txn)


def rewrite_as_before_g2(engine: MemEngine, group: int, txn_id: bytes) -> None:
    """Make the txn's decision record in `group` what a version before rule G2 wrote: no
    participants kept, nor `late` (an upgraded node's old records)."""
    key = group_prefix(group) + DECISION_TAG + txn_id
    data = engine.get(key)
    assert data is not None
    batch = engine.new_batch()
    batch.put(key, encode_decision(replace(decode_decision(data), participants=(), late=False)))
    engine.write(batch, False)


class MemHarness:
    """The rules over `MemTxnStore`, with single-key writes done as the shard does them."""

    name = "mem"

    def __init__(self) -> None:
        self.store = MemTxnStore()

    def txn(self, record: TxnCommand, ts: int = 0) -> CommandResult:
        store = self.store
        if isinstance(record, Prepare):
            r = participant.prepare(store, record, ts)
            return _result(r, r.conflict)
        if isinstance(record, Resolve):
            return _result(participant.resolve(store, record, ts))
        if isinstance(record, Decide):
            return _result(coordinator.decide(store, record, ts))
        if isinstance(record, Finish):
            return _result(coordinator.finish(store, record))
        if isinstance(record, PurgeDecisions):
            return _result(coordinator.purge_decisions(store, record))
        if isinstance(record, Prevent):
            return _result(participant.prevent(store, record, ts))
        assert isinstance(record, CommitOnePhase)
        o = participant.commit_one_phase(store, record, ts)
        return _result(o, o.conflict)

    def put(self, key: bytes, value: bytes | None, ts: int) -> CommandResult:
        """Put (value None: Delete), as `ShardStateMachine` applies it."""
        store = self.store
        conflict = participant.single_key_conflict(key, store.intents(key), store.scanners(key))
        if conflict is not None:
            return CommandResult(Status.CONFLICT, message=conflict.reason, conflict=conflict)
        latest, absent = store.latest_version(key)
        if value is None and absent:
            # Deleting an absent key writes nothing; the answer waits for the deletion seen.
            return CommandResult(Status.OK, 0, absent_since=latest)
        version = max(ts, store.max_ver + 1)
        store.write_version(key, value, version)
        store.max_ver = version
        return CommandResult(Status.OK, version)

    def value(self, key: bytes) -> tuple[bytes, int] | None:
        versions = self.store.versions.get(key)
        if not versions or versions[-1][1] is None:
            return None
        version, value = versions[-1]
        assert value is not None
        return value, version

    def value_at(self, key: bytes, version: int) -> bytes | None:
        for v, value in reversed(self.store.versions.get(key, [])):
            if v <= version:
                return value
        return None

    def latest(self, key: bytes) -> tuple[int, bool]:
        return self.store.latest_version(key)

    def intents(self, key: bytes) -> list[IntentInfo]:
        return self.store.intents(key)

    def all_intents(self) -> list[tuple[bytes, IntentInfo]]:
        return [(k, i) for k in sorted(self.store.intent_map) for i in self.store.intents(k)]

    def prepared(self, txn_id: bytes) -> PreparedInfo | None:
        return self.store.prepared(txn_id)

    def prepared_txns(self) -> list[PreparedInfo]:
        return [self.store.prepared_map[t] for t in sorted(self.store.prepared_map)]

    def decision(self, txn_id: bytes) -> DecisionInfo | None:
        return self.store.decision(txn_id)

    def unfinished(self) -> list[DecisionInfo]:
        m = self.store.decision_map
        return [m[t] for t in sorted(m) if not m[t].finished]

    def purge_candidates(self, before_ts: int, limit: int) -> list[DecisionInfo]:
        return self.store.purge_candidates(before_ts, limit)

    def as_written_before_g2(self, txn_id: bytes) -> None:
        """Make the txn's decision record what a version before rule G2 wrote: no
        participants kept, nor `late` (an upgraded node's old records)."""
        self.store.decision_map[txn_id] = replace(
            self.store.decision_map[txn_id], participants=(), late=False
        )

    @property
    def max_version(self) -> int:
        return self.store.max_ver


class ShardHarness:
    """`ShardStateMachine` on a MemEngine: every call is one slot in its own batch."""

    name = "shard"

    def __init__(self, engine: MemEngine | None = None) -> None:
        self.engine = engine if engine is not None else MemEngine()
        self.sm = ShardStateMachine(GROUP, (b"", None), self.engine)
        self.log: list[bytes] = []

    def run(self, *commands: bytes) -> list[CommandResult]:
        self.log.extend(commands)
        batch = self.engine.new_batch()
        results = self.sm.apply(self.sm.applied_index + 1, commands, batch)
        self.engine.write(batch, False)
        return results

    def txn(self, record: TxnCommand, ts: int = 0) -> CommandResult:
        (result,) = self.run(encode_txn(record, ts))
        return result

    def put(self, key: bytes, value: bytes | None, ts: int) -> CommandResult:
        command = encode_delete(key, ts) if value is None else encode_put(key, value, ts)
        (result,) = self.run(command)
        return result

    def value(self, key: bytes) -> tuple[bytes, int] | None:
        return self.sm.get(key)

    def value_at(self, key: bytes, version: int) -> bytes | None:
        found = self.sm.get(key, version)
        return None if found is None else found[0]

    def latest(self, key: bytes) -> tuple[int, bool]:
        return self.sm.latest_record(key) or (0, True)

    def intents(self, key: bytes) -> list[IntentInfo]:
        return self.sm.intents_on(key)

    def all_intents(self) -> list[tuple[bytes, IntentInfo]]:
        return self.sm.intents_in_range(b"", None)

    def prepared(self, txn_id: bytes) -> PreparedInfo | None:
        return self.sm.prepared(txn_id)

    def prepared_txns(self) -> list[PreparedInfo]:
        return self.sm.prepared_txns()

    def decision(self, txn_id: bytes) -> DecisionInfo | None:
        return self.sm.decision(txn_id)

    def unfinished(self) -> list[DecisionInfo]:
        return self.sm.unfinished_decisions()

    def purge_candidates(self, before_ts: int, limit: int) -> list[DecisionInfo]:
        return self.sm.purge_candidates(before_ts, limit)

    def as_written_before_g2(self, txn_id: bytes) -> None:
        """As `MemHarness.as_written_before_g2`, in the engine."""
        rewrite_as_before_g2(self.engine, GROUP, txn_id)

    @property
    def max_version(self) -> int:
        return self.sm.max_version

    def contents(self) -> list[tuple[bytes, bytes]]:
        """Every engine record (the whole engine: data, meta, intents, txn records)."""
        return self.engine.scan(b"", None, None)

    def data_contents(self) -> list[tuple[bytes, bytes]]:
        """Every engine record but the meta record (whose applied index every slot moves)."""
        meta_key = group_prefix(GROUP) + META_TAG
        return [kv for kv in self.contents() if kv[0] != meta_key]

    def data_without_txn_records(self) -> list[tuple[bytes, bytes]]:
        """`data_contents` without the transaction bookkeeping (intents, records, counters)."""
        txn_prefix = group_prefix(GROUP) + b"t"
        return [kv for kv in self.data_contents() if not kv[0].startswith(txn_prefix)]


Harness = MemHarness | ShardHarness
