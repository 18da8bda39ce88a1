"""A wake serves at most READ_BYTES_PER_WAKE of read answers; the rest wait, in order, for
the next wake, which comes at once (found by review: 256 scans of 4 MiB answers in one Batch
message were served in one wake, which held the node's loop 15 s and took 800 MB)."""

from __future__ import annotations

from router import kv_pb2 as kv
from shard.execute import execute_cycle
from shard.node import READ_BYTES_PER_WAKE
from tests.unit.shard.test_node_core import OneNode, get, header, put

MIB = b"x" * (1 << 20)


def scan(request_id: int, **kw: object) -> kv.Request:
    return kv.Request(
        id=request_id,
        scan=kv.ScanRequest(header=header(1), start=b"k", end=b"m", limit=100, **kw),  # type: ignore[arg-type]
    )


def cycles(node: OneNode) -> None:
    while execute_cycle(node.core, node.disk, lambda g, m: None):
        pass


def wake(node: OneNode) -> None:
    """What the shell does at its next wake, with no time passing: tick, then cycles."""
    node.core.tick(node.now, node.wall)
    cycles(node)


def test_big_scans_are_served_one_wake_at_a_time_in_order() -> None:
    node = OneNode()
    for i in range(6):
        assert node.call(put(b"k%d" % i, MIB)).put.error.code == kv.OK
    answers: list[kv.Response] = []
    for request_id in range(1, 5):
        node.core.submit(scan(request_id), answers.append)
    cycles(node)
    assert [a.id for a in answers] == [1]  # one 4 MiB answer spends the budget
    assert node.core.next_deadline() == node.now  # the rest: at the next wake, at once
    assert node.core.has_client_requests()
    for served in (2, 3, 4):
        wake(node)
        assert [a.id for a in answers] == list(range(1, served + 1))
    assert all(len(a.scan.items) == 4 and a.scan.more for a in answers)
    assert sum(a.ByteSize() for a in answers[:1]) >= READ_BYTES_PER_WAKE
    assert not node.core.has_client_requests()


def test_small_reads_are_not_held_back() -> None:
    node = OneNode()
    assert node.call(put(b"a", b"1")).put.error.code == kv.OK
    answers: list[kv.Response] = []
    for request_id in range(1, 201):
        request = get(b"a")
        request.id = request_id
        node.core.submit(request, answers.append)
    cycles(node)
    assert len(answers) == 200


def test_a_stale_read_is_answered_at_the_next_wake_without_a_paxos_cycle() -> None:
    node = OneNode()
    assert node.call(put(b"a", b"1")).put.error.code == kv.OK
    node.advance(0.5)
    answers: list[kv.Response] = []
    node.core.submit(get(b"a", stale_ok=True), answers.append)
    node.core.tick(node.now, node.wall)  # no cycle: no group needs one
    assert len(answers) == 1 and answers[0].get.value == b"1"
