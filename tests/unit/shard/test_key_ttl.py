"""Values with a time to live: state machine rule 7 (expiry records, the Expire command) and
node rule 17 (the leader's expiry duty, `shard.expiry_duty`)."""

from __future__ import annotations

from typing import Any

import pytest

from router import kv_pb2 as kv
from router.limits import MAX_TTL_MS
from shard import expiry_duty
from shard import shard_pb2 as pb
from shard.codec import (
    Op,
    decode_command,
    encode_cas,
    encode_command,
    encode_expire,
    encode_put,
)
from shard.due_keys import DueKeys
from shard.errors import InvalidArgument, Status
from shard.expiry_duty import EXPIRE_RETRY_S, KeyExpiry
from shard.ttl import deadline_of
from tests.unit.shard.test_node_core import (
    OneNode,
    get,
    header,
    prepare_request,
    put,
    recover_until_decided,
    tid,
)
from tests.unit.shard.test_shard_state_machine import Driver
from tests.unit.shard.test_shard_txn import GROUP
from tests.unit.shard.test_shard_txn import Node as TxnNode
from txn.hlc import LOGICAL_BITS, physical_us
from txn.records import CommitOnePhase, OnePhaseResult, Prepare, ReadItem, Resolve, WriteItem

MS = 1000 << LOGICAL_BITS  # one millisecond of hybrid timestamps
T0 = 1_000_000 * MS


# ---------------------------------------------------------------------------- state machine


def test_a_value_with_a_ttl_is_due_at_its_version_plus_the_ttl() -> None:
    d = Driver()
    written = d.run1(encode_put(b"k", b"v", ts=T0 + 7, ttl_ms=500))
    assert written.ok and written.expires_at == deadline_of(T0 + 7, 500) == T0 + 500 * MS
    assert physical_us(written.expires_at) - physical_us(written.version) == 500_000
    assert d.sm.due_expiries(written.expires_at - 1, 10) == []
    assert d.sm.due_expiries(written.expires_at, 10) == [(written.expires_at, b"k", T0 + 7)]
    # Without a ttl nothing is recorded.
    assert d.run1(encode_put(b"plain", b"v", ts=T0 + 9)).expires_at == 0
    assert [key for _, key, _ in d.sm.due_expiries(T0 * 2, 10)] == [b"k"]


def test_an_expire_deletes_the_version_it_names_at_or_after_its_deadline() -> None:
    d = Driver()
    written = d.run1(encode_put(b"k", b"v", ts=T0, ttl_ms=100))
    deadline = written.expires_at
    early = d.run1(encode_expire(b"k", written.version, deadline, ts=deadline - 1))
    assert early.status is Status.INVALID_ARGUMENT and "before its deadline" in early.message
    assert d.sm.get(b"k") == (b"v", T0) and d.sm.due_expiries(deadline, 10) != []
    expired = d.run1(encode_expire(b"k", written.version, deadline, ts=deadline))
    assert expired.ok and expired.version >= deadline
    assert d.sm.get(b"k") is None and d.sm.due_expiries(deadline * 2, 10) == []
    # The same Expire again (proposed twice) changes nothing.
    again = d.run1(encode_expire(b"k", written.version, deadline, ts=deadline + MS))
    assert again.ok and again.version == 0 and d.sm.max_version == expired.version


def test_a_value_written_again_outlives_the_old_record() -> None:
    d = Driver()
    first = d.run1(encode_put(b"k", b"old", ts=T0, ttl_ms=100))
    kept = d.run1(encode_put(b"k", b"kept", ts=T0 + 50 * MS))  # no ttl: lives for ever
    dropped = d.run1(encode_expire(b"k", first.version, first.expires_at, ts=first.expires_at))
    assert dropped.ok and dropped.version == 0
    assert d.sm.get(b"k") == (b"kept", kept.version)
    assert d.sm.due_expiries(T0 * 2, 10) == []
    # Renewed with a ttl: the newer record ends it, at its own deadline.
    renewed = d.run1(encode_put(b"r", b"1", ts=T0, ttl_ms=100))
    later = d.run1(encode_put(b"r", b"2", ts=T0 + 80 * MS, ttl_ms=100))
    # The renewal replaced the first record: nothing is left of it to come due.
    assert [v for _, _, v in d.sm.due_expiries(T0 * 2, 10)] == [later.version]
    stale = d.run1(encode_expire(b"r", renewed.version, renewed.expires_at, renewed.expires_at))
    assert stale.ok and stale.version == 0 and d.sm.get(b"r") == (b"2", later.version)
    gone = d.run1(encode_expire(b"r", later.version, later.expires_at, ts=later.expires_at))
    assert gone.version > 0 and d.sm.get(b"r") is None


def test_a_stale_expire_leaves_a_record_that_now_names_a_later_version() -> None:
    """Found by review: v2 written with the very deadline of v1's record took that record
    over; the Expire of v1, proposed before, dropped it, and v2 lived for ever."""
    d = Driver()
    first = d.run1(encode_put(b"k", b"1", ts=T0, ttl_ms=100))
    second = d.run1(encode_put(b"k", b"2", ts=T0 + 5 * MS, ttl_ms=95))
    assert first.expires_at == second.expires_at  # the same record key
    stale = d.run1(encode_expire(b"k", first.version, first.expires_at, ts=first.expires_at))
    assert stale.ok and stale.version == 0 and d.sm.get(b"k") == (b"2", second.version)
    assert d.sm.due_expiries(T0 * 2, 10) == [(second.expires_at, b"k", second.version)]
    gone = d.run1(encode_expire(b"k", second.version, second.expires_at, ts=second.expires_at))
    assert gone.version > 0 and d.sm.get(b"k") is None


def test_a_compare_and_set_takes_a_ttl_for_the_value_it_writes() -> None:
    d = Driver()
    created = d.run1(encode_cas(b"leader", T0, expect_absent=True, new_value=b"n1", ttl_ms=300))
    assert created.ok and created.expires_at == deadline_of(created.version, 300)
    refused = d.run1(encode_cas(b"leader", T0, expect_absent=True, new_value=b"n2", ttl_ms=300))
    assert refused.status is Status.CAS_FAILED and refused.expires_at == 0
    assert len(d.sm.due_expiries(T0 * 2, 10)) == 1
    with pytest.raises(InvalidArgument, match="deletes takes no ttl"):
        encode_cas(b"leader", T0, expect_absent=True, delete=True, ttl_ms=300)


def test_a_touch_moves_the_deadline_on_and_keeps_the_version() -> None:
    d = Driver()
    written = d.run1(encode_put(b"k", b"v", ts=T0, ttl_ms=100))
    touched = d.run1(
        encode_cas(b"k", T0 + 50 * MS, expected_version=written.version, touch=True, ttl_ms=100)
    )
    assert touched.ok and touched.version == written.version  # no new version: same token
    assert touched.expires_at == deadline_of(T0 + 50 * MS, 100) == T0 + 150 * MS
    assert d.sm.max_version == written.version
    # An Expire of the first record, proposed before the touch, deletes nothing.
    old = d.run1(encode_expire(b"k", written.version, written.expires_at, written.expires_at))
    assert old.ok and old.version == 0 and d.sm.get(b"k") == (b"v", written.version)
    # A shorter touch never shortens it.
    short = d.run1(encode_cas(b"k", T0 + 60 * MS, expected_value=b"v", touch=True, ttl_ms=1))
    assert short.ok and short.expires_at == touched.expires_at
    # One record is left, the touch's: the first one was dropped when it was replaced.
    assert [r[0] for r in d.sm.due_expiries(T0 * 2, 10)] == [touched.expires_at]
    gone = d.run1(encode_expire(b"k", written.version, touched.expires_at, touched.expires_at))
    assert gone.version >= touched.expires_at and d.sm.get(b"k") is None


def test_a_value_s_deadline_is_read_while_it_is_the_live_version() -> None:
    d = Driver()
    written = d.run1(encode_put(b"k", b"v", ts=T0, ttl_ms=100))
    assert d.sm.expiry_of(b"k", written.version) == written.expires_at
    touched = d.run1(encode_cas(b"k", T0 + 50 * MS, expected_value=b"v", touch=True, ttl_ms=100))
    assert d.sm.expiry_of(b"k", written.version) == touched.expires_at > written.expires_at
    plain = d.run1(encode_put(b"k", b"w", ts=T0 + 60 * MS))  # lives for ever
    assert d.sm.expiry_of(b"k", plain.version) == 0
    assert d.sm.expiry_of(b"k", written.version) == 0  # replaced: its deadline left with it
    assert d.sm.expiry_of(b"never", 1) == 0


def test_a_touch_needs_the_live_value_it_expects() -> None:
    d = Driver()
    plain = d.run1(encode_put(b"plain", b"v", ts=T0))
    kept = d.run1(
        encode_cas(b"plain", T0 + MS, expected_version=plain.version, touch=True, ttl_ms=9)
    )
    assert kept.ok and kept.expires_at == 0  # no time to live: it keeps living for ever
    assert d.sm.due_expiries(T0 * 2, 10) == []
    absent = d.run1(encode_cas(b"never", T0 + MS, expected_version=0, touch=True, ttl_ms=9))
    assert absent.status is Status.CAS_FAILED
    leased = d.run1(encode_put(b"k", b"v2", ts=T0 + 2 * MS, ttl_ms=50))
    stale = d.run1(encode_cas(b"k", T0 + 3 * MS, expected_version=1, touch=True, ttl_ms=50))
    assert stale.status is Status.CAS_FAILED and stale.current_version == leased.version
    with pytest.raises(InvalidArgument, match="a touch needs"):
        encode_cas(b"k", T0, expected_version=3, touch=True)
    with pytest.raises(InvalidArgument, match="a touch needs"):
        encode_cas(b"k", T0, expect_absent=True, touch=True, ttl_ms=5)


def test_ttl_commands_round_trip_and_bad_ones_are_refused() -> None:
    for command in (
        encode_put(b"k", b"v", T0, ttl_ms=5),
        encode_cas(b"k", T0, expected_version=3, new_value=b"v", ttl_ms=5),
        encode_cas(b"k", T0, expected_value=b"v", touch=True, ttl_ms=5),
        # A touch an older node logged, which meets read intents, stays one (found by review).
        encode_cas(
            b"k", T0, expected_value=b"v", touch=True, ttl_ms=5, touch_past_read_intents=False
        ),
        encode_expire(b"k", 3, T0, T0 + 1),
    ):
        assert encode_command(decode_command(command)) == command
    assert decode_command(encode_expire(b"k", 3, T0, T0 + 1)).op is Op.EXPIRE
    d = Driver()
    too_long = d.run1(encode_put(b"k", b"v", T0, ttl_ms=MAX_TTL_MS + 1))
    assert too_long.status is Status.INVALID_ARGUMENT and "MAX_TTL_MS" in too_long.message
    for cas in (
        pb.CompareAndSet(key=b"k", expect_absent=True, delete=True, ttl_ms=5),
        pb.CompareAndSet(key=b"k", expected_version=3, touch=True),
        pb.CompareAndSet(key=b"k", expect_absent=True, touch=True, ttl_ms=5),
    ):
        forged = d.run1(pb.Command(ts=T0, cas=cas).SerializeToString())
        assert forged.status is Status.MALFORMED
    assert d.sm.get(b"k") is None and d.sm.max_version == 0


def test_expiry_records_survive_a_restart_of_the_state_machine() -> None:
    d = Driver()
    written = d.run1(encode_put(b"k", b"v", ts=T0, ttl_ms=100))
    restarted = Driver(d.engine)
    assert restarted.sm.due_expiries(written.expires_at, 10) == [
        (written.expires_at, b"k", written.version)
    ]


def test_a_transaction_s_value_lives_its_ttl_after_the_commit() -> None:
    node = TxnNode()
    prepared = node.txn(
        Prepare(
            txn_id=b"t1",
            coordinator_group=GROUP,
            participants=(GROUP,),
            writes=(
                WriteItem(key=b"lock", value=b"me", ttl_ms=100),
                WriteItem(key=b"data", value=b"d"),
            ),
        ),
        T0,
    )
    assert prepared.ok and node.sm.due_expiries(T0 * 2, 10) == []  # nothing before the commit
    commit_ts = T0 + 5 * MS
    assert node.txn(Resolve(txn_id=b"t1", commit=True, commit_ts=commit_ts)).ok
    assert node.sm.due_expiries(T0 * 2, 10) == [(deadline_of(commit_ts, 100), b"lock", commit_ts)]
    one_phase = node.txn(
        CommitOnePhase(txn_id=b"t2", writes=(WriteItem(key=b"lease", value=b"x", ttl_ms=50),)),
        T0 + 9 * MS,
    )
    assert isinstance(one_phase.txn, OnePhaseResult) and one_phase.txn.commit_ts
    lease = (deadline_of(one_phase.txn.commit_ts, 50), b"lease", one_phase.txn.commit_ts)
    assert lease in node.sm.due_expiries(T0 * 2, 10)
    # A replica that catches up by snapshot holds the same records.
    replica = TxnNode()
    replica.restore_from(node)
    assert replica.sm.due_expiries(T0 * 2, 10) == node.sm.due_expiries(T0 * 2, 10)


def test_a_touch_passes_a_read_intent_only_when_proposed_so() -> None:
    """Participant rule W1 for a touch, on the state machine: one proposed since peer
    protocol 8 (the flag `encode_cas` sets) passes a prepared transaction's read intent on
    the key and keeps the version it read; one an older node proposed meets it, applied
    again from a log after an upgrade as it was before (found by review: replicas that
    applied it on each side of the upgrade would hold different expiry records)."""
    node = TxnNode()
    (written,) = node.run(encode_put(b"lease", b"me", ts=T0, ttl_ms=100))
    read = Prepare(
        txn_id=b"t1",
        coordinator_group=GROUP,
        participants=(GROUP, GROUP + 1),
        reads=(ReadItem(key=b"lease", version=written.version),),
        writes=(WriteItem(key=b"data", value=b"d"),),
    )
    assert node.txn(read, T0 + MS).ok
    touch = encode_cas(
        b"lease", T0 + 50 * MS, expected_version=written.version, touch=True, ttl_ms=100
    )
    older = pb.Command.FromString(touch)
    older.cas.touch_past_read_intents = False
    (refused,) = node.run(older.SerializeToString())
    assert refused.status is Status.CONFLICT and "read intent" in refused.message
    (touched,) = node.run(touch)
    assert touched.ok and touched.version == written.version
    assert touched.expires_at == deadline_of(T0 + 50 * MS, 100)
    # The read stays valid: the transaction commits over the touch.
    assert node.txn(Resolve(txn_id=b"t1", commit=True, commit_ts=T0 + 60 * MS)).ok
    assert node.sm.get(b"data") == (b"d", T0 + 60 * MS)
    # Only a touch carries the flag.
    plain = pb.Command.FromString(
        encode_cas(b"lease", T0, expected_version=written.version, new_value=b"x")
    )
    plain.cas.touch_past_read_intents = True
    (malformed,) = node.run(plain.SerializeToString())
    assert malformed.status is Status.MALFORMED


def test_a_delete_in_a_transaction_takes_no_ttl() -> None:
    with pytest.raises(ValueError, match="a delete takes no time to live"):
        WriteItem(key=b"k", value=None, ttl_ms=5)


# ---------------------------------------------------------------------------- the duty


class _Host:
    def __init__(self, group_id: int, driver: Driver | TxnNode) -> None:
        self.group_id = group_id
        self.shard = driver.sm
        self.due = DueKeys()


def test_due_keys_hold_only_while_their_record_names_the_live_value() -> None:
    """shard.due_keys: a key noted due holds a read or a range holding it until its value
    is deleted, written over or touched; each key that leaves counts a change (waiters
    decide again), and a step-down forgets them all."""
    d = Driver()
    a = d.run1(encode_put(b"a", b"v", ts=T0, ttl_ms=100))
    c = d.run1(encode_put(b"c", b"v", ts=T0 + 1, ttl_ms=100))
    due = DueKeys()
    due.add(d.sm, b"a", a.expires_at, a.version)
    due.add(d.sm, b"c", c.expires_at, c.version)
    assert due.holds(d.sm, b"a") and not due.holds(d.sm, b"b")
    assert due.first_in(d.sm, b"b", b"d") == b"c" and due.first_in(d.sm, b"", None) == b"a"
    assert due.first_in(d.sm, b"b", b"c") is None and due.first_in(d.sm, b"d", None) is None
    assert d.run1(encode_put(b"c", b"w", ts=T0 + 2)).ok  # written over: no longer due
    assert due.first_in(d.sm, b"b", b"d") is None and due.changes == 0
    due.prune(d.sm, 1)  # a page of one: "a", still due, goes to the back
    assert len(due) == 2 and due.changes == 0
    due.prune(d.sm, 1)
    assert len(due) == 1 and due.changes == 1
    due.settle(d.sm, b"a")  # still the live value it names
    assert due.holds(d.sm, b"a") and due.changes == 1
    assert d.run1(encode_expire(b"a", a.version, a.expires_at, a.expires_at + 1)).ok
    due.settle(d.sm, b"a")
    assert len(due) == 0 and due.changes == 2
    due.add(d.sm, b"c", c.expires_at, c.version)  # a record its key's rewrite left behind
    assert len(due) == 0
    e = d.run1(encode_put(b"e", b"v", ts=T0 + 3, ttl_ms=100))
    due.add(d.sm, b"e", e.expires_at, e.version)
    due.recheck()  # found held: waiters decide again
    assert len(due) == 1 and due.changes == 3
    due.clear()
    assert len(due) == 0 and due.changes == 4


def test_the_duty_proposes_each_due_record_once_until_its_retry() -> None:
    d = Driver()
    written = d.run1(encode_put(b"k", b"v", ts=T0, ttl_ms=100))
    proposed: list[bytes] = []
    duty = KeyExpiry(lambda host, encode, on_result: proposed.append(encode(written.expires_at)))
    hosts: list[Any] = [_Host(1, d)]
    duty.check(hosts, now=0.0, due_ts=written.expires_at - 1)
    assert proposed == [] and duty.in_flight == 0
    duty.check(hosts, now=0.1, due_ts=written.expires_at)
    (command,) = proposed
    assert decode_command(command).expected_version == written.version
    duty.check(hosts, now=0.2, due_ts=written.expires_at + MS)  # under way: not again
    assert len(proposed) == 1 and duty.in_flight == 1
    duty.check(hosts, now=0.1 + EXPIRE_RETRY_S, due_ts=written.expires_at + MS)  # no result
    assert len(proposed) == 2
    assert d.run1(proposed[-1]).ok and d.sm.get(b"k") is None
    duty.check(hosts, now=5.0, due_ts=written.expires_at + 9 * MS)
    assert len(proposed) == 2 and duty.in_flight == 0


def test_the_duty_passes_over_keys_under_intents_and_pages_on(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Found by review: the first EXPIRES_PER_CHECK records, all under one prepared
    transaction's intents, held every record behind them for as long as it was in doubt."""
    monkeypatch.setattr(expiry_duty, "EXPIRES_PER_CHECK", 2)
    node = TxnNode()
    for key in (b"c1", b"c2", b"c3"):
        assert node.run(encode_put(key, b"v", T0, ttl_ms=1))[0].ok
    blocked = Prepare(
        txn_id=b"t1",
        coordinator_group=GROUP,
        participants=(GROUP,),
        writes=(WriteItem(key=b"c1", value=b"x"), WriteItem(key=b"c2", value=b"y")),
    )
    assert node.txn(blocked, T0 + MS).ok
    proposed: list[bytes] = []
    duty = KeyExpiry(lambda host, encode, on_result: proposed.append(encode(T0 * 2)))
    hosts: list[Any] = [_Host(GROUP, node)]
    duty.check(hosts, now=0.0, due_ts=T0 * 2)  # a full page, both keys held: nothing
    assert proposed == []
    duty.check(hosts, now=0.1, due_ts=T0 * 2)  # the next page
    assert [decode_command(c).key for c in proposed] == [b"c3"]
    duty.check(hosts, now=0.2, due_ts=T0 * 2)  # from the start again: c1, c2 still held
    assert len(proposed) == 1


def test_a_leader_back_from_a_lost_leadership_reaches_the_records_behind_its_page(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A leader keeps its paging point while another node leads the group; back in the lead
    it goes on from there, but once a page is not full it starts again from the first record:
    the records behind the point (its own Expires lost with the leadership, a transaction's
    value committed meanwhile with an earlier deadline) are proposed a sweep later, never
    passed over for good (review of node rule 17)."""
    monkeypatch.setattr(expiry_duty, "EXPIRES_PER_CHECK", 2)
    node = TxnNode()
    for i, key in enumerate((b"k1", b"k2", b"k3", b"k4")):
        assert node.run(encode_put(key, b"v", T0 + i, ttl_ms=1000))[0].ok
    in_doubt = Prepare(
        txn_id=b"t1",
        coordinator_group=GROUP,
        participants=(GROUP,),
        writes=(WriteItem(key=b"late", value=b"x", ttl_ms=100),),
    )
    assert node.txn(in_doubt, T0).ok
    proposed: list[bytes] = []
    duty = KeyExpiry(lambda host, encode, on_result: proposed.append(encode(T0 * 2)))
    hosts: list[Any] = [_Host(GROUP, node)]

    def check(now: float, leading: bool = True) -> list[bytes]:
        proposed.clear()
        duty.check(hosts if leading else [], now=now, due_ts=T0 * 2)
        return [decode_command(c).key for c in proposed]

    assert check(0.0) == [b"k1", b"k2"]  # a full page: it stops at k2; both Expires get lost
    for tick in range(1, 20):  # another node leads: this one proposes nothing
        assert check(0.1 * tick, leading=False) == []
    # Meanwhile the transaction commits: its value's deadline is below the paging point.
    assert node.txn(Resolve(txn_id=b"t1", commit=True, commit_ts=T0 + 5 * MS)).ok
    assert node.sm.due_expiries(T0 * 2, 1)[0][1] == b"late"
    # Back in the lead: on from k2, then from the start, the lost Expires proposed again.
    assert check(2.0) == [b"k3", b"k4"]
    assert check(2.1) == []  # nothing after k4: not a full page, so from the start next
    assert check(2.2) == [b"late", b"k1"]
    assert check(2.3) == [b"k2"]  # k3 is under way (proposed at 2.0)
    for key in (b"late", b"k1", b"k2", b"k3", b"k4"):
        assert node.sm.get(key) is not None  # no Expire applied: all still due


# ---------------------------------------------------------------------------- a node


def ttl_put(key: bytes, value: bytes, ttl_ms: int) -> kv.Request:
    return kv.Request(put=kv.PutRequest(header=header(), key=key, value=value, ttl_ms=ttl_ms))


def test_a_node_deletes_a_value_once_its_ttl_ran_out() -> None:
    node = OneNode()
    written = node.call(ttl_put(b"apple", b"red", 500)).put
    assert written.error.code == kv.OK and written.expires_at == deadline_of(written.version, 500)
    node.advance(0.3)
    assert node.call(get(b"apple")).get.value == b"red"
    node.advance(0.4)
    assert not node.call(get(b"apple")).get.found
    deleted = node.core.hosts[1].shard.latest_record(b"apple")
    assert deleted is not None and deleted[1]  # a tombstone, written at or past the deadline
    assert deleted[0] >= written.expires_at


def test_a_get_answers_with_the_value_s_deadline() -> None:
    node = OneNode()
    written = node.call(ttl_put(b"apple", b"red", 500)).put
    for request in (get(b"apple"), get(b"apple", stale_ok=True)):
        got = node.call(request).get
        assert got.HasField("expires_at") and got.expires_at == written.expires_at, got
    node.call(put(b"apple", b"green"))
    got = node.call(get(b"apple")).get
    assert got.value == b"green" and got.HasField("expires_at") and got.expires_at == 0
    older = node.call(get(b"apple", at_version=written.version)).get
    assert older.value == b"red" and older.expires_at == 0  # no longer the live version


def test_an_intent_holds_off_the_expiry_until_it_is_resolved() -> None:
    node = OneNode(resolve_after_s=1.0)
    written = node.call(ttl_put(b"apple", b"red", 200)).put
    assert node.call(prepare_request(1, b"apple")).prepare.error.code == kv.OK
    node.advance(0.5)  # past the deadline: the Expire meets the intent
    shard = node.core.hosts[1].shard
    assert shard.get(b"apple") == (b"red", written.version) and shard.intents_on(b"apple")
    recover_until_decided(node, tid(b"t1"))  # no client: recovery aborts the transaction
    assert not shard.intents_on(b"apple")
    node.advance(EXPIRE_RETRY_S + 0.2)
    assert shard.get(b"apple") is None


def test_a_clock_pushed_ahead_expires_nothing_early() -> None:
    """Found by review: due was judged by the hybrid clock, which a request's timestamp may
    push ahead of the wall clock (rule 9 takes one up to 4 offsets + 0.5 s ahead): a 1 s
    lease went after 0.72 s. Due is the wall clock's, less twice the offset."""
    node = OneNode(max_clock_offset_s=0.05)
    written = node.call(ttl_put(b"apple", b"red", 500)).put
    written_at = node.wall
    ahead = prepare_request(2, b"zebra", ts=written.version + 600 * MS)  # 0.6 s ahead
    node.core.submit(ahead, lambda _answer: None)  # its answer waits out its commit wait
    node.advance(0.4)  # the HLC is past the deadline; the wall clock is not
    assert node.core.hosts[1].shard.get(b"apple") == (b"red", written.version)
    assert (node.wall - written_at) / 1e9 < 0.5
    node.advance(0.3)  # the wall clock is past the deadline and twice the offset
    assert node.core.hosts[1].shard.get(b"apple") is None


def test_a_node_refuses_a_ttl_it_cannot_keep() -> None:
    node = OneNode()
    too_long = node.call(ttl_put(b"apple", b"red", MAX_TTL_MS + 1)).put
    assert too_long.error.code == kv.INVALID_ARGUMENT and "MAX_TTL_MS" in too_long.error.message
    cas = kv.CasRequest(header=header(), key=b"apple", expect_absent=True, delete=True, ttl_ms=5)
    refused = node.call(kv.Request(cas=cas)).cas
    assert refused.error.code == kv.INVALID_ARGUMENT and "takes no ttl" in refused.error.message
    touch = kv.CasRequest(header=header(), key=b"apple", expected_version=1, touch=True)
    refused = node.call(kv.Request(cas=touch)).cas
    assert refused.error.code == kv.INVALID_ARGUMENT and "a touch needs" in refused.error.message
    assert node.core.hosts[1].shard.get(b"apple") is None
    plain = node.call(put(b"apple", b"red")).put
    assert plain.error.code == kv.OK and plain.expires_at == 0
