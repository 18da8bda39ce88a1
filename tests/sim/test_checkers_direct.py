"""GroupOracle, check_linearizable and check_read_values fed hand-made events and histories
(proposed for tests/sim/): each rule must raise on its anomaly, and accept a near-identical
valid case. Before these, only whole-group simulations exercised the checkers, which pass
whatever a weakened checker no longer reports."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
from checkers import GroupOracle, SafetyViolation, check_linearizable, check_read_values
from paxos_group import ReadOp, WriteOp

from paxos import Ballot, PersistBatch
from paxos.messages import Accepted, HeartbeatAck

B1 = Ballot(1, 1)
B2 = Ballot(2, 2)
B0 = Ballot(0, 0)


def _host(hid: int, *, index: int = 0, accepted: dict | None = None, promised: Ballot = B0) -> Any:
    paxos = SimpleNamespace(
        accepted=accepted or {}, chosen_watermark=0, log_start=1, promised=promised
    )
    return SimpleNamespace(
        id=hid,
        app=SimpleNamespace(index=index, log=[]),
        disk=SimpleNamespace(durable=SimpleNamespace(paxos=paxos)),
    )


def _oracle(*commands: bytes, status: str = "pending") -> GroupOracle:
    oracle = GroupOracle(quorum=2)
    for i, c in enumerate(commands):
        oracle.submitted[c] = WriteOp(op_id=i, command=c, host=1, invoke=0.0, status=status)
    return oracle


def _vote(oracle: GroupOracle, host: Any, slot: int, ballot: Ballot, value: tuple) -> None:
    oracle.on_persist(host, PersistBatch(accepted={slot: (ballot, value)}))


def _choose(oracle: GroupOracle, slot: int, value: tuple, hosts: list[Any]) -> None:
    for h in hosts[:2]:
        _vote(oracle, h, slot, B1, value)


def _booted(oracle: GroupOracle, *hosts: Any) -> list[Any]:
    for h in hosts:
        oracle.on_boot(h)
    return list(hosts)


# ------------------------------------------------------------------ agreement


def test_two_values_with_a_quorum_of_votes_at_one_slot_are_reported() -> None:
    oracle = _oracle(b"a", b"b")
    h1, h2, h3 = _booted(oracle, _host(1), _host(2), _host(3))
    _vote(oracle, h1, 1, B1, (b"a",))
    _vote(oracle, h2, 1, B1, (b"a",))  # chosen: a
    _vote(oracle, h2, 1, B2, (b"b",))
    with pytest.raises(SafetyViolation, match="chosen twice"):
        _vote(oracle, h3, 1, B2, (b"b",))
    # The same value re-chosen at a higher ballot (Phase 1 value choice) is fine.
    oracle = _oracle(b"a")
    h1, h2, h3 = _booted(oracle, _host(1), _host(2), _host(3))
    _vote(oracle, h1, 1, B1, (b"a",))
    _vote(oracle, h2, 1, B1, (b"a",))
    _vote(oracle, h2, 1, B2, (b"a",))
    _vote(oracle, h3, 1, B2, (b"a",))
    assert oracle.chosen == {1: (b"a",)}


def test_two_replicas_learning_different_values_of_equal_length_are_reported() -> None:
    oracle = _oracle(b"a", b"b")
    h1, h2, h3 = _booted(oracle, _host(1), _host(2), _host(3))
    _choose(oracle, 1, (b"a",), [h1, h2])
    oracle.on_apply(h1, 1, (b"a",))
    with pytest.raises(SafetyViolation, match="another replica applied"):
        oracle.on_restore(h3, 1, [(1, (b"b",))])
    oracle.on_restore(h2, 1, [(1, (b"a",))])  # the same value: fine


def test_a_value_chosen_after_another_was_applied_is_reported() -> None:
    oracle = _oracle(b"a", b"b")
    h1, h2, h3 = _booted(oracle, _host(1), _host(2), _host(3))
    oracle.on_restore(h3, 1, [(1, (b"a",))])  # learned a (from a snapshot)
    _vote(oracle, h1, 1, B1, (b"b",))
    with pytest.raises(SafetyViolation, match=r"chosen .* after .* was applied"):
        _vote(oracle, h2, 1, B1, (b"b",))


# ------------------------------------------------------------------ durability


def test_accepted_sent_with_only_a_lower_ballot_vote_durable_is_reported() -> None:
    oracle = _oracle()
    low = _host(1, accepted={1: (B1, (b"a",))})
    with pytest.raises(SafetyViolation, match="before the vote was durable"):
        oracle.on_send(low, Accepted(src=1, dst=2, ballot=B2, slots=(1,)))
    same = _host(1, accepted={1: (B2, (b"a",))})
    oracle.on_send(same, Accepted(src=1, dst=2, ballot=B2, slots=(1,)))


def test_heartbeat_ack_sent_before_its_promise_is_durable_is_reported() -> None:
    oracle = _oracle()
    with pytest.raises(SafetyViolation, match="HeartbeatAck"):
        oracle.on_send(
            _host(1, promised=B1),
            HeartbeatAck(src=1, dst=2, ballot=B2, seq=1, chosen_watermark=0),
        )
    oracle.on_send(
        _host(1, promised=B2), HeartbeatAck(src=1, dst=2, ballot=B2, seq=1, chosen_watermark=0)
    )


def test_applying_a_slot_before_a_quorum_durably_accepted_it_is_reported() -> None:
    oracle = _oracle(b"a")
    h1, h2, _h3 = _booted(oracle, _host(1), _host(2), _host(3))
    _vote(oracle, h1, 1, B1, (b"a",))  # one vote of two
    with pytest.raises(SafetyViolation, match="before a quorum"):
        oracle.on_apply(h1, 1, (b"a",))
    _vote(oracle, h2, 1, B1, (b"a",))
    oracle.on_apply(h2, 1, (b"a",))


def test_an_acknowledged_write_its_slot_does_not_hold_is_reported() -> None:
    oracle = _oracle(b"a", b"b")
    h1, h2 = _booted(oracle, _host(1), _host(2))
    _choose(oracle, 1, (b"a",), [h1, h2])
    oracle.on_apply(h1, 1, (b"a",))
    lost = oracle.submitted[b"b"]
    lost.status, lost.slot = "acked", 1
    with pytest.raises(SafetyViolation, match="acknowledged at slot 1"):
        oracle.on_write_done(lost)
    with pytest.raises(SafetyViolation, match="was lost"):
        oracle.check_acked_durable([lost])
    kept = oracle.submitted[b"a"]
    kept.status, kept.slot = "acked", 1
    oracle.on_write_done(kept)
    oracle.check_acked_durable([kept])


# ------------------------------------------------------------------ validity, integrity


def test_a_command_reported_dropped_but_chosen_is_reported() -> None:
    oracle = _oracle(b"a", status="dropped")
    h1, h2 = _booted(oracle, _host(1), _host(2))
    _choose(oracle, 1, (b"a",), [h1, h2])
    with pytest.raises(SafetyViolation, match="reported dropped"):
        oracle.on_apply(h1, 1, (b"a",))


def test_a_command_chosen_in_two_slots_is_reported_whichever_is_learned_first() -> None:
    oracle = _oracle(b"x")
    h1, h2 = _booted(oracle, _host(1), _host(2))
    _choose(oracle, 1, (b"x",), [h1, h2])
    _choose(oracle, 2, (b"x",), [h1, h2])
    oracle.on_apply(h1, 1, (b"x",))
    with pytest.raises(SafetyViolation, match="chosen at slots 1 and 2"):
        oracle.on_apply(h1, 2, (b"x",))
    # Learned out of slot order (a replica booted from a snapshot at 10 applies 11 first).
    oracle = _oracle(b"p", b"q", b"x")
    late = _host(1, index=10)  # booted from a snapshot at 10
    early = _host(2)
    _booted(oracle, late, early)
    _choose(oracle, 11, (b"x",), [late, early])
    oracle.on_apply(late, 11, (b"x",))
    with pytest.raises(SafetyViolation, match="chosen at slots 11 and 3"):
        oracle.on_restore(early, 3, [(1, (b"p",)), (2, (b"q",)), (3, (b"x",))])


def test_an_apply_that_skips_a_slot_is_reported() -> None:
    oracle = _oracle(b"a", b"b")
    h1, h2 = _booted(oracle, _host(1), _host(2))
    _choose(oracle, 1, (b"a",), [h1, h2])
    _choose(oracle, 2, (b"b",), [h1, h2])
    with pytest.raises(SafetyViolation, match="applied slot 2, expected slot 1"):
        oracle.on_apply(h1, 2, (b"b",))
    oracle.on_apply(h2, 1, (b"a",))
    oracle.on_apply(h2, 2, (b"b",))


def test_a_snapshot_whose_slots_are_not_one_to_its_index_is_reported() -> None:
    oracle = _oracle(b"a", b"b")
    (h1,) = _booted(oracle, _host(1))
    with pytest.raises(SafetyViolation, match=r"is not slots 1\.\.2"):
        oracle.on_restore(h1, 2, [(1, (b"a",)), (3, (b"b",))])


def test_two_lease_holders_at_once_are_reported() -> None:
    def holder(hid: int, valid: bool) -> Any:
        replica = SimpleNamespace(has_valid_lease=lambda now: valid)
        return SimpleNamespace(id=hid, up=True, replica=replica, local_now=lambda: 0.0)

    oracle = _oracle()
    with pytest.raises(SafetyViolation, match="leases"):
        oracle.check_leases([holder(1, True), holder(2, True), holder(3, False)])
    oracle.check_leases([holder(1, True), holder(2, False), holder(3, False)])


# ------------------------------------------------------------------ linearizability


def _w(op_id: int, command: bytes, invoke: float, resp: float) -> WriteOp:
    return WriteOp(op_id=op_id, command=command, host=1, invoke=invoke, status="acked", resp=resp)


def _r(
    op_id: int, key: bytes, index: int, invoke: float, resp: float, value: bytes | None
) -> ReadOp:
    return ReadOp(
        op_id=op_id,
        key=key,
        host=1,
        invoke=invoke,
        status="served",
        resp=resp,
        index=index,
        value=value,
    )


def test_a_write_acknowledged_before_an_earlier_slots_write_began_is_reported() -> None:
    """Slot 1's write began at 10; slot 2's was acknowledged at 1: slot order breaks real
    time, however slot 2's own invoke (0) compares."""
    log = {1: (b"k=1",), 2: (b"k=2",)}
    with pytest.raises(SafetyViolation, match="must follow"):
        check_linearizable(log, [_w(1, b"k=1", 10, 11), _w(2, b"k=2", 0, 1)], [])
    assert check_linearizable(log, [_w(1, b"k=1", 0, 1), _w(2, b"k=2", 0, 11)], []) == 2


def test_a_read_served_at_an_index_written_after_it_ended_is_reported() -> None:
    log = {1: (b"k=1",)}
    with pytest.raises(SafetyViolation, match="read of b'k'"):
        check_linearizable(log, [_w(1, b"k=1", 10, 11)], [_r(2, b"k", 1, 0, 1, b"1")])
    assert check_linearizable(log, [_w(1, b"k=1", 0, 11)], [_r(2, b"k", 1, 0, 1, b"1")]) == 2


def test_a_read_that_missed_a_write_acknowledged_before_it_began_is_reported() -> None:
    """The read (at index 0) began at 10; slot 1's write was acknowledged at 1."""
    log = {1: (b"k=1",)}
    with pytest.raises(SafetyViolation, match="must follow"):
        check_linearizable(log, [_w(1, b"k=1", 0, 1)], [_r(2, b"k", 0, 10, 11, None)])
    assert check_linearizable(log, [_w(1, b"k=1", 0, 20)], [_r(2, b"k", 0, 10, 11, None)]) == 2


def test_a_read_at_an_index_the_log_does_not_hold_is_reported() -> None:
    with pytest.raises(SafetyViolation, match="saw slot 2 unknown"):
        check_linearizable({1: (b"k=1",)}, [], [_r(1, b"k", 2, 0, 1, b"1")])


def test_a_read_value_the_log_does_not_define_at_its_index_is_reported() -> None:
    log = {1: (b"k=1",), 2: (b"k=2",)}
    with pytest.raises(SafetyViolation, match="the log says b'1'"):
        check_read_values(log, [_r(1, b"k", 1, 0, 1, None)])
    with pytest.raises(SafetyViolation, match="the log says None"):
        check_read_values(log, [_r(1, b"j", 2, 0, 1, b"2")])  # j was never written
    check_read_values(log, [_r(1, b"k", 1, 0, 1, b"1"), _r(2, b"k", 2, 0, 1, b"2")])
