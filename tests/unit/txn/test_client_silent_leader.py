"""A group leader that goes silent (SIGSTOP, cut off): the client's reads fail over within an
attempt timeout, its writes are never re-sent, and the requests after them go elsewhere.

Found by review: every read and single-key write sent to a frozen leader waited out its
whole `timeout_s` and raised DeadlineExceeded, although the group had a new leader within
a fraction of a second (`run` does not retry DeadlineExceeded, so a whole transaction
failed). txn.client rule 6, txn.resend. The real-process version is
tests/cluster/test_client_failover.py.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from test_client_fakekv import LOSE, FakeKV, error_response, fast_client, with_fake

from router import kv_pb2 as kv
from router.client import RoutingClient
from txn import (
    AsyncClient,
    AsyncTransaction,
    CommitUnknown,
    DeadlineExceeded,
    OutcomeUnknown,
    TransactionState,
    TxnRef,
)
from txn.status import TxnState

A1, A2 = b"apple", b"banana"  # group 1 (the snapshot timestamp is asked of it too)
TIMEOUT_S = 5.0
ATTEMPT_S = 0.3


def freeze_leader(fake: FakeKV, group_id: int) -> int:
    """The leader of `group_id` stops answering and another replica leads each group it
    led (as an election would); the frozen node's id."""
    old = fake.leaders[group_id]
    fake.frozen.add(old)
    other = next(n for n in fake.nodes if n != old)
    for group, leader in fake.leaders.items():
        if leader == old:
            fake.leaders[group] = other
    return old


async def tx_get(client: AsyncClient, ref: TxnRef) -> Any:
    async with client.transaction() as tx:
        return await tx.get(A1)


async def tx_get_for_update(client: AsyncClient, ref: TxnRef) -> Any:
    async with client.transaction() as tx:
        return await tx.get(A1, for_update=True)


async def tx_scan(client: AsyncClient, ref: TxnRef) -> Any:
    async with client.transaction() as tx:
        return await tx.scan(b"a", b"b")


async def snapshot_get(client: AsyncClient, ref: TxnRef) -> Any:
    async with client.snapshot() as snap:
        return await snap.get(A1)


async def snapshot_scan(client: AsyncClient, ref: TxnRef) -> Any:
    async with client.snapshot() as snap:
        return await snap.scan(b"a", b"b")


async def get(client: AsyncClient, ref: TxnRef) -> Any:
    return await client.get(A1)


async def scan(client: AsyncClient, ref: TxnRef) -> Any:
    return await client.scan(b"a", b"b")


async def txn_status(client: AsyncClient, ref: TxnRef) -> Any:
    return (await client.txn_status(ref)).state


Read = Callable[[AsyncClient, TxnRef], Awaitable[Any]]
READS: dict[str, tuple[Read, Any]] = {
    "get": (get, b"a"),
    "scan": (scan, [(A1, b"a")]),
    "tx.get": (tx_get, b"a"),
    "tx.get for update": (tx_get_for_update, b"a"),
    "tx.scan": (tx_scan, [(A1, b"a")]),
    "snapshot get": (snapshot_get, b"a"),
    "snapshot scan": (snapshot_scan, [(A1, b"a")]),
    "txn_status": (txn_status, TxnState.COMMITTED),
}


@pytest.mark.parametrize("name", list(READS))
def test_a_read_at_a_silent_leader_is_resent_to_the_new_one(name: str) -> None:
    read, expected = READS[name]

    @with_fake
    async def check(fake: FakeKV) -> None:
        async with fast_client(fake, timeout_s=TIMEOUT_S, attempt_timeout_s=ATTEMPT_S) as client:
            async with client.transaction() as tx:
                tx.put(A1, b"a")
            assert tx.ref is not None
            freeze_leader(fake, 1)
            started = time.monotonic()
            assert await read(client, tx.ref) == expected
            took = time.monotonic() - started
        assert fake.unanswered, "the read never reached the frozen leader"
        # One attempt timeout (or two: a snapshot's timestamp, then its read), not the
        # whole deadline; generous, the machine may be loaded.
        assert took < TIMEOUT_S / 2, f"{name} took {took:.2f} s"

    check()


async def routing_get_value(routing: RoutingClient) -> bytes | None:
    got = await routing.get(A1)
    return None if got is None else got[0]


async def routing_scan_items(routing: RoutingClient) -> list[tuple[bytes, bytes]]:
    return [(key, value) for key, value, _ in await routing.scan(b"a", b"b")]


ROUTING_READS: dict[str, tuple[Callable[[RoutingClient], Awaitable[Any]], Any]] = {
    "get": (routing_get_value, b"a"),
    "scan": (routing_scan_items, [(A1, b"a")]),
}


@pytest.mark.parametrize("name", list(ROUTING_READS))
def test_the_routing_clients_reads_at_a_silent_leader_go_to_the_new_one(name: str) -> None:
    """What `paxoskv get` and `paxoskv scan` use (found by review: they waited out their
    whole --timeout at a frozen leader while another replica led)."""
    read, expected = ROUTING_READS[name]

    @with_fake
    async def check(fake: FakeKV) -> None:
        async with fast_client(fake) as client:
            await client.put(A1, b"a")
        async with RoutingClient(
            fake.seeds, timeout_s=TIMEOUT_S, attempt_timeout_s=ATTEMPT_S
        ) as routing:
            await routing.get(A2)  # connected, the map known
            freeze_leader(fake, 1)
            started = time.monotonic()
            got = await read(routing)
            took = time.monotonic() - started
        assert got == expected
        assert fake.unanswered, "the read never reached the frozen leader"
        assert took < TIMEOUT_S / 2, f"{name} took {took:.2f} s"

    check()


@with_fake
async def test_a_write_at_a_silent_leader_is_not_resent_but_the_next_one_goes_elsewhere(
    fake: FakeKV,
) -> None:
    """A put is not idempotent: the one sent to the frozen leader ends as OutcomeUnknown
    at its deadline and reached only that node; a put issued after the attempt timeout
    goes to the new leader at once."""
    loop = asyncio.get_running_loop()
    async with fast_client(fake, timeout_s=TIMEOUT_S, attempt_timeout_s=ATTEMPT_S) as client:
        await client.put(A1, b"0")
        old = freeze_leader(fake, 1)
        first = asyncio.ensure_future(client.put(A1, b"1", timeout_s=2.0))
        sent = loop.time()
        while client.routing.routing.leader_for(1) == old:
            assert loop.time() - sent < 1.5, "the silent leader kept the guess"
            await asyncio.sleep(0.01)
        started = time.monotonic()
        assert await client.put(A2, b"2") > 0
        assert time.monotonic() - started < 1.0
        with pytest.raises(OutcomeUnknown):
            await first
    assert [kind for _, kind in fake.unanswered].count("put") == 1
    assert fake.store.value(A1) == b"0"


@with_fake
async def test_a_read_no_replica_answers_is_deadline_exceeded_after_trying_them(
    fake: FakeKV,
) -> None:
    async with fast_client(fake, timeout_s=1.2, attempt_timeout_s=ATTEMPT_S) as client:
        await client.put(A1, b"0")
        fake.frozen.update(fake.nodes)
        started = time.monotonic()
        with pytest.raises(DeadlineExceeded):
            await client.get(A1)
        assert time.monotonic() - started >= 1.1
    assert {node for node, kind in fake.unanswered if kind == "get"} == set(fake.nodes)


@with_fake
async def test_a_slow_but_live_leader_answers_its_reads_and_keeps_the_guess(
    fake: FakeKV,
) -> None:
    """Found by review: a first form gave each try one attempt timeout and dropped it then,
    so a live leader slower than that never got a read answered (DeadlineExceeded after 9
    copies of one get), and took every such try for silence. Now each copy waits for its
    answer while the next goes out, the node answers the probe that tells it from a silent
    one, and it keeps the leader guess."""
    fake.answer_delay_s["get"] = 2.5 * ATTEMPT_S
    async with fast_client(fake, timeout_s=TIMEOUT_S, attempt_timeout_s=ATTEMPT_S) as client:
        await client.put(A1, b"v")
        leader = client.routing.routing.leader_for(1)
        started = time.monotonic()
        assert await client.get(A1) == b"v"
        took = time.monotonic() - started
        assert client.routing.routing.leader_for(1) == leader
    # The first copy's answer, not the deadline (generous: the machine may be loaded).
    assert took < TIMEOUT_S / 2, f"the get took {took:.2f} s"


@with_fake
async def test_a_write_waiting_at_a_live_leader_keeps_the_guess(fake: FakeKV) -> None:
    """A put the leader answers late (parked behind a lock, say) on a connection carrying
    nothing else: the node answers the probe, so it keeps the guess, and the put is sent
    once (found by review: the guess moved off a healthy leader, costing the next requests
    a redirect)."""
    fake.answer_delay_s["put"] = 3 * ATTEMPT_S
    async with fast_client(fake, timeout_s=TIMEOUT_S, attempt_timeout_s=ATTEMPT_S) as client:
        await client.get(A1)  # connected
        leader = client.routing.routing.leader_for(1)
        assert await client.put(A1, b"1") > 0
        assert client.routing.routing.leader_for(1) == leader
    assert len(fake.requests("put")) == 1


@with_fake
async def test_a_leader_whose_stream_reader_is_held_is_no_silent_one(fake: FakeKV) -> None:
    """Found by review: the probe went on the Batch stream, whose reader a node holds while
    the stream is at its limits (128 gets parked for locks, its memory budget), so a live
    leader was taken for silent and every copy waiting there given up. The probe is a unary
    call: the leader keeps the guess, and the read is answered once the reader goes on."""
    loop = asyncio.get_running_loop()
    async with fast_client(fake, timeout_s=TIMEOUT_S, attempt_timeout_s=ATTEMPT_S) as client:
        await client.put(A1, b"v")
        leader = client.routing.routing.leader_for(1)
        fake.reading.clear()
        read = asyncio.ensure_future(client.get(A1))
        held_until = loop.time() + 4 * ATTEMPT_S
        while loop.time() < held_until:
            assert client.routing.routing.leader_for(1) == leader, "a live leader lost the guess"
            await asyncio.sleep(0.02)
        fake.reading.set()
        assert await read == b"v"


def applied_at_a_silent_leader(fake: FakeKV, refuse: Any) -> Any:
    """A hook: group 1's leader applies the first CommitOnePhase and goes silent before
    answering (another replica leads); every later copy gets `refuse(request)`, and the old
    leader, given up, comes back as a follower (it answers NOT_LEADER from then on)."""
    frozen: list[int] = []

    def hook(node: int, request: kv.Request) -> Any:
        if request.WhichOneof("op") != "commit_one_phase":
            return None
        if not frozen:
            frozen.append(freeze_leader(fake, 1))
            return LOSE
        fake.frozen.discard(frozen[0])
        return refuse(request)

    return hook


def _map_changed(fake: FakeKV) -> Any:
    def refuse(request: kv.Request) -> kv.Response:
        if fake.map.version == 1:
            fake.map = fake.map.split(1, b"c", 4, (1, 2, 3), preferred_leader=2)
            fake.leaders[4] = 2
        return error_response(request, kv.WRONG_SHARD, map_version=fake.map.version)

    return refuse


@pytest.mark.parametrize(
    "refusal",
    ["invalid-argument", "wrong-shard"],
)
def test_a_commit_applied_at_a_leader_that_went_silent_is_unknown_whatever_the_new_one_says(
    refusal: str,
) -> None:
    """The first copy is applied at the old leader, which then says nothing; the re-send
    to the new leader is refused (a lagging clock, node rule 9; or the shard map changed).
    That refusal says nothing of the first copy: CommitUnknown, and `run` must not apply
    the increment again."""

    @with_fake
    async def check(fake: FakeKV) -> None:
        refuse = (
            (lambda r: error_response(r, kv.INVALID_ARGUMENT))
            if refusal == "invalid-argument"
            else _map_changed(fake)
        )
        runs = 0

        async def increment(tx: AsyncTransaction) -> AsyncTransaction:
            nonlocal runs
            runs += 1
            tx.put(A1, b"%d" % (int(await tx.get(A1) or b"0") + 1))
            return tx

        async with fast_client(fake, timeout_s=TIMEOUT_S, attempt_timeout_s=ATTEMPT_S) as client:
            await client.put(A1, b"0")
            fake.hook = applied_at_a_silent_leader(fake, refuse)
            with pytest.raises(CommitUnknown):
                await client.run(increment)
        assert runs == 1
        assert fake.store.value(A1) == b"1"  # the first copy did commit
        assert fake.count("commit_one_phase") >= 2  # re-sent to the new leader

    check()


@with_fake
async def test_a_commit_applied_at_a_silent_leader_leaves_the_transaction_unknown(
    fake: FakeKV,
) -> None:
    """As above, the new leader answering UNAVAILABLE to every copy until the deadline: the
    transaction's state is UNKNOWN, not ABORTED."""
    fake.hook = applied_at_a_silent_leader(fake, lambda r: error_response(r, kv.UNAVAILABLE))
    async with fast_client(fake, timeout_s=2.0, attempt_timeout_s=ATTEMPT_S) as client:
        await client.get(A1)  # connected
        tx = client.transaction()
        tx.put(A1, b"x")
        with pytest.raises(CommitUnknown):
            await tx.commit()
        assert tx.state is TransactionState.UNKNOWN
    assert fake.store.value(A1) == b"x"
