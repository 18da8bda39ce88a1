"""The node fault hooks (shard/faults.py) on fakes: off unless the environment says so,
no-ops until armed, and each control does what the harness relies on."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

import pytest

from paxos import Ballot, PersistBatch
from router import kv_pb2 as kv
from shard import faults as faults_mod
from shard.codec import encode_put, encode_txn
from shard.faults import Faults, maybe_install_faults
from txn.records import Decide, Prepare, Resolve


@dataclass
class Msg:
    dst: int
    n: int = 0


def test_not_installed_without_the_environment_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PAXOSKV_FAULTS", raising=False)
    assert maybe_install_faults(object()) is None  # type: ignore[arg-type]
    monkeypatch.setenv("PAXOSKV_FAULTS", "yes")
    assert maybe_install_faults(object()) is None  # type: ignore[arg-type]


def test_send_and_deliver_pass_through_until_armed() -> None:
    f = Faults(1)
    sent: list[tuple[int, list[Msg]]] = []
    send = f.wrap_send(lambda g, msgs: sent.append((g, list(msgs))))
    msgs = [Msg(2), Msg(3)]
    send(7, msgs)
    assert sent == [(7, msgs)]
    got: list[Any] = []
    deliver = f.wrap_deliver(lambda src, g, m: got.append((src, g, m)))
    deliver(2, 7, "m")
    assert got == [(2, 7, "m")]


def test_partition_drops_both_directions_and_heal_restores() -> None:
    f = Faults(1)
    sent: list[Any] = []
    got: list[Any] = []
    send = f.wrap_send(lambda g, msgs: sent.extend(msgs))
    deliver = f.wrap_deliver(lambda src, g, m: got.append(src))
    f.control({"op": "partition", "peers": [2]})
    send(1, [Msg(2), Msg(3)])
    deliver(2, 1, "x")
    deliver(3, 1, "y")
    assert [m.dst for m in sent] == [3]
    assert got == [3]
    state = f.control({"op": "heal"})
    assert state["cut"] == [] and state["counters"]["dropped_out"] == 1
    send(1, [Msg(2)])
    assert [m.dst for m in sent] == [3, 2]


def test_duplicate_and_delay() -> None:
    f = Faults(1)
    sent: list[Any] = []
    send = f.wrap_send(lambda g, msgs: sent.extend(msgs))
    f.control({"op": "net", "duplicate": 1.0, "delay": 0.0})
    send(1, [Msg(2)])
    assert len(sent) == 2

    async def delayed() -> None:
        sent.clear()
        f.control({"op": "net", "duplicate": 0.0, "delay": 1.0, "delay_ms": [1, 2]})
        send(1, [Msg(2)])
        assert sent == []
        await asyncio.sleep(0.05)
        assert len(sent) == 1

    asyncio.run(delayed())
    f.control({"op": "net"})
    assert f.state()["delay"] == 0.0


def _put_response(code: int = kv.OK) -> kv.Response:
    response = kv.Response()
    response.put.error.code = code
    response.put.version = 3
    return response


def test_drop_replies_only_after_success_and_only_count_times() -> None:
    f = Faults(1)
    replies: list[kv.Response] = []

    def submit(request: kv.Request, reply: Any) -> None:
        reply(_put_response())

    wrapped = f.wrap_submit(submit)
    request = kv.Request(put=kv.PutRequest(key=b"k", value=b"v"))
    wrapped(request, replies.append)
    assert len(replies) == 1  # not armed
    f.control({"op": "drop-replies", "probability": 1.0, "count": 2})
    wrapped(kv.Request(get=kv.GetRequest(key=b"k")), replies.append)  # reads are never dropped
    assert len(replies) == 2
    wrapped(request, replies.append)
    wrapped(request, replies.append)
    wrapped(request, replies.append)
    assert len(replies) == 3
    assert f.state()["counters"]["replies_dropped"] == 2

    f.control({"op": "drop-replies", "probability": 1.0, "count": 5})
    failing = f.wrap_submit(lambda req, reply: reply(_put_response(kv.UNAVAILABLE)))
    failing(request, replies.append)  # a refusal had no effect: delivered
    assert len(replies) == 4


@dataclass
class Entry:
    slot: int
    value: list[bytes]


@dataclass
class Ready:
    committed: list[Entry] = field(default_factory=list)


@dataclass
class Host:
    group_id: int


class Crashed(Exception):
    pass


@pytest.mark.parametrize(
    ("point", "record"),
    [
        ("prepare-chosen", Prepare(txn_id=b"t", coordinator_group=1, participants=(1, 2))),
        ("decision-chosen", Decide(txn_id=b"t", participants=(1, 2), commit=True, commit_ts=5)),
        ("resolve-apply", Resolve(txn_id=b"t", commit=True, commit_ts=5)),
    ],
)
def test_crash_points_exit_before_applying(
    monkeypatch: pytest.MonkeyPatch, point: str, record: Any
) -> None:
    def fake_exit(code: int) -> None:
        raise Crashed(code)

    monkeypatch.setattr(faults_mod.os, "_exit", fake_exit)
    monkeypatch.setattr(faults_mod.logging, "shutdown", lambda: None)
    applied: list[Any] = []
    f = Faults(1)
    apply = f.wrap_apply(lambda readies, batch: applied.append(readies))
    txn_slot = Entry(9, [encode_put(b"k", b"v", 1), encode_txn(record, 7)])
    apply([(Host(2), Ready([txn_slot]))], None)  # not armed
    f.control({"op": "arm", "point": point, "groups": [2]})
    apply([(Host(3), Ready([txn_slot]))], None)  # another group
    apply([(Host(2), Ready([Entry(10, [encode_put(b"k", b"v", 1)])]))], None)  # no record
    apply([(Host(0), Ready([txn_slot]))], None)  # the meta group is never armed
    assert len(applied) == 4
    with pytest.raises(Crashed):
        apply([(Host(2), Ready([txn_slot]))], None)
    assert len(applied) == 4  # exited before applying
    f.control({"op": "disarm"})
    apply([(Host(2), Ready([txn_slot]))], None)
    assert len(applied) == 5


def test_other_crash_points_do_not_fire() -> None:
    f = Faults(1)
    f.control({"op": "arm", "point": "resolve-apply"})
    applied: list[Any] = []
    apply = f.wrap_apply(lambda readies, batch: applied.append(readies))
    prepare = Prepare(txn_id=b"t", coordinator_group=1, participants=(1,))
    apply([(Host(1), Ready([Entry(1, [encode_txn(prepare, 3)])]))], None)
    assert len(applied) == 1


def test_bad_controls_are_refused() -> None:
    f = Faults(1)
    with pytest.raises(ValueError):
        f.control({"op": "arm", "point": "nowhere"})
    with pytest.raises(ValueError):
        f.control({"op": "explode"})
    f.control({"op": "partition", "peers": [2]})
    assert f.control({"op": "clear"})["cut"] == []


class _Disk:
    """A disk that owes the fsync of writes of 100 bytes or more (`defer` is ignored)."""

    def __init__(self) -> None:
        self.synced = 0

    def persist_owing_sync(self, batches: Any, defer_from_bytes: int | None) -> bool:
        return faults_mod._accepted_bytes(batches) >= 100

    def sync(self) -> None:
        self.synced += 1


def test_disk_stall_slows_the_synced_writes_of_its_size_where_they_sync(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Owed fsyncs sleep in `sync` (the worker thread), other synced writes in the persist
    itself (the loop's thread); smaller writes and bare watermarks never; `ms: 0` is off."""
    slept: list[float] = []
    monkeypatch.setattr(faults_mod.time, "sleep", slept.append)
    f = Faults(1)
    disk = _Disk()
    f.wrap_disk(disk)
    large = [(1, PersistBatch(accepted={1: (Ballot(1, 1), (bytes(150),))}))]
    small = [(1, PersistBatch(accepted={2: (Ballot(1, 1), (bytes(60),))}))]
    watermark = [(1, PersistBatch(chosen_watermark=2))]
    assert disk.persist_owing_sync(large, None) is True and slept == []
    disk.sync()
    assert slept == [] and disk.synced == 1  # not armed
    f.control({"op": "disk-stall", "ms": 200, "min_bytes": 50})
    assert disk.persist_owing_sync(large, None) is True and slept == []
    disk.sync()
    assert slept == [0.2] and disk.synced == 2
    assert disk.persist_owing_sync(small, None) is False and slept == [0.2, 0.2]
    assert disk.persist_owing_sync(watermark, None) is False and len(slept) == 2
    f.control({"op": "disk-stall", "ms": 200, "min_bytes": 100})
    disk.persist_owing_sync(small, None)
    assert len(slept) == 2
    f.control({"op": "disk-stall", "ms": 0})
    disk.persist_owing_sync(large, defer_from_bytes=None)  # as RocksNodeDisk.persist calls it
    disk.sync()
    assert len(slept) == 2 and f.state()["counters"]["disk_stalls"] == 2
