"""A node's hybrid clock across a restart whose wall clock stepped back (NTP step, a VM
resumed from a snapshot, a machine whose RTC lost time).

Found by review: `NodeCore` started its clock at 0, so after such a restart the node handed
out timestamps below versions it had already acknowledged and stored. A snapshot begun after
a write (or a 2PC commit reported on its votes) had returned then read below it and missed
it; with the default loopback config (max_clock_offset 0, one clock for every node) a step
back of the machine's clock between two runs was enough. The node now starts its clock above
every timestamp its stored groups show (versions, prepared transactions, decisions).
"""

from __future__ import annotations

from router import kv_pb2 as kv
from tests.unit.shard.test_node_core import OneNode, header, prepare_request, put, tid
from txn.hlc import physical_us

STEP_BACK_NS = 10 * 10**9


def restart(node: OneNode, step_back_ns: int) -> None:
    """Node 1 starts again from its disk, its wall clock `step_back_ns` behind."""
    node.core = node.boot(seed=2)
    node.wall -= step_back_ns
    node.advance(1.0)  # elections


def timestamp(node: OneNode) -> int:
    return node.call(kv.Request(timestamp=kv.TimestampRequest())).timestamp.ts


def snap_get(key: bytes, at: int) -> kv.Request:
    return kv.Request(get=kv.GetRequest(header=header(1), key=key, snapshot=True, at_version=at))


def test_a_snapshot_after_a_restart_with_the_clock_stepped_back_sees_acknowledged_writes() -> None:
    node = OneNode()
    written = node.call(put(b"apple", b"red")).put
    assert written.error.code == kv.OK
    restart(node, STEP_BACK_NS)
    at = timestamp(node)
    assert at > written.version
    # While the wall clock is that far behind, the read at `at` is refused, naming the
    # clocks (node rule 9), never answered from below the write; once it caught up, served.
    refused = node.call(snap_get(b"apple", at)).get
    assert refused.error.code == kv.INVALID_ARGUMENT
    assert "max_clock_offset_ms" in refused.error.message
    node.advance(STEP_BACK_NS / 1e9, step=0.5)
    served = node.call(snap_get(b"apple", at)).get
    assert served.error.code == kv.OK and served.value == b"red"


def test_a_timestamp_asked_before_the_restarted_node_applied_anything_is_above_its_writes() -> None:
    """Rule 10 from the start: a node restarted as a follower applies nothing while nothing
    new is written, so only its start puts its clock above what its store holds; a
    timestamp it hands a read-only transaction then must already be above the write it
    acknowledged, or the snapshot reads at it would miss that write."""
    node = OneNode()
    written = node.call(put(b"apple", b"red")).put
    node.core = node.boot(seed=2)
    node.wall -= STEP_BACK_NS
    node.now += 0.001
    node.core.tick(node.now, node.wall)  # no apply cycle yet
    asked: list[kv.Response] = []
    node.core.submit(kv.Request(timestamp=kv.TimestampRequest()), asked.append)
    assert len(asked) == 1 and asked[0].timestamp.ts > written.version


def test_a_snapshot_after_a_restart_waits_for_a_transaction_reported_on_its_votes() -> None:
    # Parallel commits: the client reports the commit at max(prepare_ts) once the votes are
    # in, before any Resolve. A snapshot begun after that must wait for the prepared
    # transaction (its timestamp is at or above prepare_ts), not read below it.
    node = OneNode()
    prepared = node.call(prepare_request(1, b"apple", ts=1)).prepare
    assert prepared.error.code == kv.OK
    restart(node, STEP_BACK_NS)
    assert timestamp(node) > prepared.prepare_ts


def test_a_txn_status_answer_waits_for_the_commit_wait_of_the_timestamps_it_shows() -> None:
    """Rules 1, 2 and 7 for `txn_status`: a client reports a transaction COMMITTED at
    max(prepare_ts) from IN_PROGRESS answers of every participant (parallel commits), so
    those answers, like the votes themselves, must leave only once every clock has passed
    the prepare_ts they show. Found by review: they left at once, so a transaction could be
    reported committed at a timestamp that another node's clock (behind by up to the offset)
    had not reached, and a snapshot started there afterwards read below the commit."""
    offset_s = 0.2
    node = OneNode(max_clock_offset_s=offset_s)
    votes: list[kv.Response] = []
    for group in (1, 2):
        key = b"apple" if group == 1 else b"zebra"
        node.core.submit(prepare_request(group, key, txn_id=tid(b"t9")), votes.append)
    node.advance(0.01, step=0.001)  # the Prepares are applied; their votes wait
    assert votes == []
    answered_at: list[int] = []
    statuses: list[kv.Response] = []

    def answer(response: kv.Response) -> None:
        answered_at.append(node.wall)
        statuses.append(response)

    for group in (1, 2):
        request = kv.Request(
            txn_status=kv.TxnStatusRequest(header=header(group), txn_id=tid(b"t9"))
        )
        node.core.submit(request, answer)
    node.advance(0.5, step=0.001)
    assert len(statuses) == 2
    shown = max(s.txn_status.prepare_ts for s in statuses)
    assert all(s.txn_status.state == kv.TxnStatusResponse.IN_PROGRESS for s in statuses)
    assert min(answered_at) // 1000 > physical_us(shown) + int(offset_s * 1e6)


def test_a_restart_with_the_clock_stepped_back_past_the_gc_horizon_starts_above_it() -> None:
    """Rule 10 covers the GC horizon too (found by review): reads below it are refused as
    garbage-collected, so a clock restarted below it handed out snapshot timestamps that
    every read refused with that misleading reason, whatever the offset, until the wall
    clock passed the horizon again."""
    node = OneNode(mvcc_retention_s=2.0, gc_interval_s=1.0)
    assert node.call(put(b"apple", b"red")).put.error.code == kv.OK
    for _ in range(5):
        # Read-only work moves the clock; a write that creates no version (a failed
        # compare-and-set) runs an apply cycle, which starts GC passes at the clock's time.
        node.advance(1.0, step=0.1)
        timestamp(node)
        failed = node.call(
            kv.Request(
                cas=kv.CasRequest(
                    header=header(1), key=b"kiwi", new_value=b"x", expected_value=b"nope"
                )
            )
        ).cas
        assert failed.error.code == kv.OK and not failed.succeeded
    shard = node.core.hosts[1].shard
    assert shard.gc_horizon > shard.max_version
    restart(node, 60 * 10**9)
    at = timestamp(node)
    assert at > node.core.hosts[1].shard.gc_horizon
    refused = node.call(snap_get(b"apple", at)).get
    assert refused.error.code == kv.INVALID_ARGUMENT
    assert "max_clock_offset_ms" in refused.error.message, refused.error.message
