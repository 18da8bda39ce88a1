"""Real processes: routing through every node, leader crash (kill -9) and leader pause
(SIGSTOP) during writes.

DESIGN.md contract 1 (termination whenever a majority is up), 2 (an acknowledged write
survives a minority failure), 3 (linearizable single-key operations) and 5 (a deposed leader
cannot get anything chosen and serves no stale linearizable read).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from typing import Any

import grpc
import pytest

from router import kv_pb2 as kv
from shard.cluster import LocalCluster, wait_for
from tests.cluster.rejoin import restart_and_settle

pytestmark = pytest.mark.cluster

# One key prefix per data group of the default 3-shard layout (split points "j", "r").
PREFIX = {1: b"b-", 2: b"m-", 3: b"t-"}


def test_writes_in_every_shard_read_back_through_every_node(
    cluster: LocalCluster, kv_of: Any
) -> None:
    """A leader answers linearizable reads; a follower answers NOT_LEADER with the leader's
    address; a stale_ok read is served by any replica; a scan stays inside its group."""
    kv_ = kv_of(cluster)
    written: dict[int, dict[bytes, bytes]] = {}
    for group_id, prefix in PREFIX.items():
        assert kv_.group_of(prefix) == group_id
        written[group_id] = {}
        for i in range(5):
            key, value = prefix + b"%d" % i, b"v-%d-%d" % (group_id, i)
            kv_.put(key, value)
            written[group_id][key] = value
    for group_id, items in written.items():
        redirected = 0
        for name in cluster.names:
            for key, value in items.items():
                redirected += _read_following_hints(cluster, kv_, name, key, value)
        # Two of three replicas are followers: most reads were redirected at least once.
        assert redirected >= len(items), f"only {redirected} reads met a follower"
        for name in cluster.names:
            # Followers learn chosen slots from the next heartbeat: poll the stale reads.
            wait_for(
                lambda n=name, it=items: all(
                    kv_.get_at(n, k, stale_ok=True).value == v for k, v in it.items()
                ),
                10.0,
                f"stale_ok reads on {name} to show group {group_id}'s writes",
            )
            prefix = PREFIX[group_id]
            stale = kv_.scan_at(name, group_id, prefix, prefix + b"\xff", stale_ok=True)
            assert stale.error.code == kv.OK, stale.error
            assert [(i.key, i.value) for i in stale.items] == sorted(items.items())
        # A linearizable scan of the whole group's range through the leader.
        leader = cluster.wait_for_leader(group_id)
        desc = cluster.shard_map.group(group_id)
        scan = kv_.scan_at(leader, group_id, desc.start, desc.end)
        assert scan.error.code == kv.OK, scan.error
        assert [(i.key, i.value) for i in scan.items] == sorted(items.items())
        # A scan that crosses the group's end is refused: cross-shard scans are the client's.
        if desc.end is not None:
            crossing = kv_.scan_at(leader, group_id, desc.start, desc.end + b"zz")
            assert crossing.error.code == kv.WRONG_SHARD, crossing.error
    # Through the routing client: a scan across every shard boundary, and routed reads.
    everything = sorted(item for items in written.values() for item in items.items())
    assert asyncio.run(_routed_scan_and_gets(cluster, everything)) == everything


async def _routed_scan_and_gets(
    cluster: LocalCluster, expected: list[tuple[bytes, bytes]]
) -> list[tuple[bytes, bytes]]:
    from router.client import RoutingClient

    async with RoutingClient(cluster.env_value(), timeout_s=20.0) as client:
        for key, value in expected:
            found = await client.get(key)
            assert found is not None and found[0] == value, (key, found)
        return [(k, v) for k, v, _ in await client.scan(b"", None)]


def _read_following_hints(
    cluster: LocalCluster, kv_: Any, name: str, key: bytes, value: bytes
) -> bool:
    """A linearizable Get sent to `name`: a leader answers it, a follower answers NOT_LEADER
    naming the leader's id and address (leadership may move meanwhile: follow the hints).
    Returns whether `name` redirected the read."""
    seen = []
    for _ in range(5):
        got = kv_.get_at(name, key)
        seen.append((name, kv.ErrorCode.Name(got.error.code)))
        if got.error.code == kv.OK:
            assert (got.found, got.value) == (True, value), f"{name} read {key!r}: {got}"
            return len(seen) > 1
        assert got.error.code == kv.NOT_LEADER, f"{name} read {key!r}: {got.error}"
        hinted = cluster.name_of(got.error.leader_id)
        assert hinted != name, f"{name} names itself as leader in NOT_LEADER"
        assert got.error.leader_addr == cluster.addresses[hinted], got.error
        name = hinted
    raise AssertionError(f"reading {key!r} followed hints in a circle: {seen}")


def _first_ack_after(writer: Any, t_kill: float, group_id: int, kv_: Any) -> float:
    acks = [
        a for a in writer.acks if a.attempt_started >= t_kill and kv_.group_of(a.key) == group_id
    ]
    return min(a.acked for a in acks) - t_kill


def test_kill9_leader_during_writes(
    cluster: LocalCluster, report: Callable[..., None], kv_of: Any, writer_of: Any
) -> None:
    """kill -9 the leader of a shard while a client streams writes to it, three times in a
    row: a new leader is elected, writes continue, and every acknowledged write is there.
    The unavailability window (kill -> first acknowledged write to that shard) is reported,
    not asserted."""
    group_id = 2
    kv_ = kv_of(cluster)
    windows = []
    with writer_of(cluster, [PREFIX[group_id]]) as writer:
        writer.wait_acks(30)
        for round_ in range(3):
            old = cluster.wait_for_leader(group_id)
            before = len(writer.acks)
            writer.wait_acks(before + 20)
            t_kill = time.monotonic()
            cluster.kill(old)
            writer.wait_acks(len(writer.acks) + 30, deadline_s=30.0)
            new = cluster.wait_for_leader(group_id, not_on=old)
            window = _first_ack_after(writer, t_kill, group_id, kv_)
            windows.append(window)
            report(
                "kill9_leader_unavailability",
                round=round_,
                group=group_id,
                killed=old,
                new_leader=new,
                window_s=round(window, 4),
                acked_so_far=len(writer.acks),
            )
            restart_and_settle(cluster, old)
    assert writer.acks, "nothing was acknowledged"
    for ack in writer.acks:
        assert kv_.get(ack.key) == ack.value, f"acknowledged write {ack.key!r} was lost"
    report(
        "kill9_leader_summary",
        windows_s=[round(w, 4) for w in windows],
        writes_acked=len(writer.acks),
        writes_unacked=len(writer.unacked),
    )


def test_sigstop_leader_is_fenced_and_serves_no_stale_read(
    cluster: LocalCluster, kv_of: Any
) -> None:
    """SIGSTOP a shard's leader for longer than the election timeout, let the others elect a
    new leader and write a new value through it, then SIGCONT the old leader.

    The old leader must get nothing chosen: every write it acknowledges must be readable
    through the new leader (a success it reports is a chosen write). A linearizable read of
    the overwritten key through the resumed old leader must not return the old value: it
    answers NOT_LEADER/UNAVAILABLE or the new value."""
    group_id = 1
    kv_ = kv_of(cluster)
    key = PREFIX[group_id] + b"fenced"
    kv_.put(key, b"old")
    old = cluster.wait_for_leader(group_id)
    ballot_before = _ballot(cluster, old, group_id)
    stub = cluster.stub(old)
    header = kv_.header(group_id)

    def put_future(i: int) -> tuple[bytes, bytes, grpc.Future]:
        k, v = PREFIX[group_id] + b"queued-%03d" % i, b"q-%d" % i
        fut = stub.Put.future(kv.PutRequest(header=header, key=k, value=v), timeout=15.0)
        return k, v, fut

    # Writes in flight when the leader freezes, and writes that queue up while it is frozen.
    futures = [put_future(i) for i in range(20)]
    cluster.pause(old)
    futures += [put_future(i) for i in range(20, 40)]
    paused_read = stub.Get.future(kv.GetRequest(header=header, key=key), timeout=15.0)
    try:
        new = cluster.wait_for_leader(group_id, not_on=old, deadline_s=20.0)
        assert new != old
        kv_put = kv_of(cluster)
        kv_put.put(key, b"new")
        # Stay paused past several election timeouts, so the old lease surely expired.
        time.sleep(0.5)
    finally:
        cluster.resume(old)
    # Right after SIGCONT: hammer the old leader with linearizable reads.
    answers = kv_.reads_at(old, key, for_s=1.0, timeout_s=2.0)
    with contextlib.suppress(grpc.RpcError):
        answers.insert(0, paused_read.result())
    stale = [a for a in answers if a.error.code == kv.OK and a.value != b"new"]
    assert not stale, (
        f"the resumed old leader {old} served {len(stale)} stale linearizable read(s) of "
        f"{key!r}: {[a.value for a in stale[:3]]} (first answers: "
        f"{[(kv.ErrorCode.Name(a.error.code), a.value) for a in answers[:5]]})"
    )
    for a in answers:
        assert a.error.code in (kv.OK, kv.NOT_LEADER, kv.UNAVAILABLE), a.error
    # Every write the old leader acknowledged was chosen: it reads back via the new leader.
    outcomes = {"ok": 0, "error": 0, "rpc_error": 0}
    for k, v, fut in futures:
        try:
            response = fut.result()
        except grpc.RpcError:
            outcomes["rpc_error"] += 1
            continue
        if response.error.code == kv.OK:
            outcomes["ok"] += 1
            assert kv_.get(k) == v, f"{old} acknowledged {k!r} but it was not chosen"
        else:
            outcomes["error"] += 1
            assert response.error.code in (kv.NOT_LEADER, kv.UNAVAILABLE, kv.OUTCOME_UNKNOWN)
    print(f"\nold leader {old} -> new leader {new}; queued writes: {outcomes}")
    assert kv_.get(key) == b"new"
    # The old leader learned the higher ballot (it may lead again later: the nodes hand
    # leadership back to a group's preferred node, but only under a new, higher ballot).
    wait_for(
        lambda: _ballot(cluster, old, group_id) > ballot_before,
        10.0,
        f"{old} to adopt a ballot above {ballot_before} in group {group_id}",
    )


def _ballot(cluster: LocalCluster, name: str, group_id: int) -> tuple[int, int]:
    for g in cluster.status(name).groups:
        if g.group_id == group_id:
            round_, node = g.ballot.split(".")
            return int(round_), int(node)
    raise AssertionError(f"{name} does not host group {group_id}")


def test_peer_link_delivers_every_message_sent_after_the_peer_is_back() -> None:
    """Real gRPC on 127.0.0.1: a PeerLink whose peer was down for a while must deliver every
    message sent once the peer is back and the link's new stream is open (Paxos retransmits
    what a broken stream lost, but messages sent on a healthy stream must arrive)."""
    asyncio.run(_peer_link_after_restart(down_s=1.0, count=100))


async def _peer_link_after_restart(down_s: float, count: int) -> None:
    from paxos.ballot import Ballot
    from paxos.messages import Heartbeat
    from shard import peer_pb2_grpc
    from shard.cluster import free_ports
    from shard.transport import GRPC_OPTIONS, PeerLink, PeerServicer

    address = f"127.0.0.1:{free_ports(1)[0]}"
    delivered: list[int] = []
    stream_open = asyncio.Event()

    class Servicer(PeerServicer):
        async def Exchange(self, request_iterator: Any, context: Any) -> Any:
            stream_open.set()
            async for reply in super().Exchange(request_iterator, context):
                yield reply

    link = PeerLink("c", 1, 2, address)
    link.start()
    server = None
    try:
        # The peer is down: the link keeps trying to reconnect meanwhile.
        await asyncio.sleep(down_s)
        server = grpc.aio.server(options=GRPC_OPTIONS)
        servicer = Servicer("c", 2, {1}, lambda src, group, msg: delivered.append(msg.seq))
        peer_pb2_grpc.add_PeerServicer_to_server(servicer, server)
        server.add_insecure_port(address)
        await server.start()
        # The link reconnects on its own; wait until its new stream is open at the peer.
        await asyncio.wait_for(stream_open.wait(), 10.0)
        for seq in range(1, count + 1):
            link.send(
                1, [Heartbeat(src=1, dst=2, ballot=Ballot(1, 1), chosen_watermark=0, seq=seq)]
            )
            await asyncio.sleep(0.005)
        # Loopback delivery takes milliseconds; lost messages never arrive.
        end = time.monotonic() + 3.0
        while len(set(delivered)) < count and time.monotonic() < end:
            await asyncio.sleep(0.02)
        missing = sorted(set(range(1, count + 1)) - set(delivered))
        assert not missing, (
            f"{len(missing)} of {count} messages sent on the open stream were lost "
            f"(seq {missing[0]}..{missing[-1]})"
        )
    finally:
        await link.stop()
        if server is not None:
            await server.stop(0)
