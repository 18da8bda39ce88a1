"""`settle_unknown=True`: `run` settles a lost commit instead of raising CommitUnknown, so a
non-idempotent body (a transfer) is applied exactly once (found by a review of the
examples: `except CommitUnknown: client.run(transfer, ...)` moves the money twice whenever
the first commit did land)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

import pytest
from test_client_fakekv import (
    DROP,
    LOSE,
    FakeKV,
    fake_in_thread,
    fast_client,
    sync_client,
    with_fake,
)

from router import kv_pb2 as kv
from router.client import CONNECT_TIMEOUT_S
from router.shard_map import NodeAddress, bootstrap
from txn import (
    AsyncTransaction,
    CommitUnknown,
    LimitExceeded,
    PaxosKVError,
    Transaction,
    TransactionState,
    TxnRef,
)
from txn.records import MAX_TXN_ITEMS
from txn.txn_ids import new_txn_id

A1 = b"apple"  # group 1 of the fake
B2 = b"kiwi"  # group 2


def lose_first_commit(outcome: str) -> Any:
    """A hook losing every copy of the first one-phase commit's answer (LOSE) or the commit
    itself (DROP); later transactions pass."""
    first: list[bytes] = []

    def hook(node: int, request: kv.Request) -> Any:
        if request.WhichOneof("op") != "commit_one_phase":
            return None
        txn_id = request.commit_one_phase.txn_id
        if not first:
            first.append(txn_id)
        return outcome if txn_id == first[0] else None

    return hook


@pytest.mark.parametrize("outcome", [LOSE, DROP])
def test_run_settles_a_lost_commit_and_applies_the_body_once(outcome: str) -> None:
    @with_fake
    async def check(fake: FakeKV) -> None:
        fake.hook = lose_first_commit(outcome)
        runs: list[AsyncTransaction] = []

        async def add_one(tx: AsyncTransaction) -> AsyncTransaction:
            runs.append(tx)
            value = await tx.get(A1)
            tx.put(A1, b"%d" % (int(value or b"0") + 1))
            return tx

        async with fast_client(
            fake, timeout_s=0.8, attempt_timeout_s=0.2, settle_unknown=True
        ) as client:
            tx = await client.run(add_one)
            assert tx.state is TransactionState.COMMITTED and tx.commit_ts
            assert await client.get(A1) == b"1"  # once, whether the lost commit landed or not
            # Lost and landed: the body ran once. Never applied: settled aborted, ran again.
            assert len(runs) == (1 if outcome == LOSE else 2)
            assert [v for v, _ in fake.store.versions[A1]] == [tx.commit_ts]

    check()


def test_without_settle_unknown_the_loss_is_raised() -> None:
    @with_fake
    async def check(fake: FakeKV) -> None:
        fake.hook = lose_first_commit(LOSE)
        async with fast_client(fake, timeout_s=0.8, attempt_timeout_s=0.2) as client:

            async def write(tx: AsyncTransaction) -> None:
                tx.put(A1, b"x")

            with pytest.raises(CommitUnknown):
                await client.run(write)

    check()


def test_the_sync_client_settles_too() -> None:
    with fake_in_thread() as fake:
        fake.hook = lose_first_commit(LOSE)
        runs: list[Transaction] = []

        def write(tx: Transaction) -> Transaction:
            runs.append(tx)
            tx.put(A1, b"x")
            return tx

        with sync_client(fake, timeout_s=0.8, attempt_timeout_s=0.2, settle_unknown=True) as c:
            tx = c.run(write)
            assert tx.state is TransactionState.COMMITTED and tx.commit_ts
            assert len(runs) == 1


def test_a_close_before_the_settle_leaves_the_commit_unknown() -> None:
    """Found by review: the sync run()'s settle, refused because another thread closed the
    client (3 of 8 tries), raised ClientClosed saying nothing was committed, for a commit
    that had landed. The loss stands: CommitUnknown, with the reference to ask about."""
    with fake_in_thread() as fake:
        fake.hook = lose_first_commit(LOSE)
        client = sync_client(fake, timeout_s=0.8, attempt_timeout_s=0.2, settle_unknown=True)
        settle = client.async_client._settle_lost_commit

        def closed_first(tx: AsyncTransaction, lost: CommitUnknown) -> Any:
            client.close()  # as another thread's close() lands just here
            return settle(tx, lost)

        client.async_client._settle_lost_commit = closed_first  # type: ignore[method-assign]

        def write(tx: Transaction) -> None:
            tx.put(A1, b"x")

        with pytest.raises(CommitUnknown) as info:
            client.run(write)
        assert info.value.ref is not None


def test_a_body_that_commits_itself_gets_its_commit_unknown_settled_or_raised() -> None:
    """Found by review: run() settled a CommitUnknown the body's own tx.commit() raised and
    returned a `result` the body never returned (a coroutine, an earlier attempt's value, or
    an UnboundLocalError). Only run()'s own commit is settled."""
    with fake_in_thread() as fake:
        fake.hook = lose_first_commit(LOSE)

        def commits_itself(tx: Transaction) -> str:
            tx.put(A1, b"x")
            tx.commit()
            return "never reached"

        client = sync_client(fake, timeout_s=0.8, attempt_timeout_s=0.2, settle_unknown=True)
        with client, pytest.raises(CommitUnknown):
            client.run(commits_itself)


def test_a_refused_oversized_commit_frees_its_update_locks() -> None:
    """Found by review: a commit refused by the client (MAX_TXN_ITEMS) sent nothing, and the
    update locks its reads for update took stayed until they expired (1.9 s)."""

    @with_fake
    async def check(fake: FakeKV) -> None:
        async with fast_client(fake) as client:
            tx = client.transaction()
            await tx.get(A1, for_update=True)
            for i in range(MAX_TXN_ITEMS + 1):
                tx.put(b"a%05d" % i, b"v")
            with pytest.raises(LimitExceeded):
                await tx.commit()
            await asyncio.sleep(0.2)  # the release is sent in the background
            assert any(not r.decide.commit for _, r in fake.requests("decide")) or any(
                not r.resolve.commit for _, r in fake.requests("resolve")
            )

    check()


@with_fake
async def test_txn_status_errors_are_the_clients_own(fake: FakeKV) -> None:
    """Found by review: a bare id with a group id not in the map, or a shard map change
    while asking, raised the routing layer's UnknownGroup / WrongShard, which are not
    `txn.PaxosKVError`s (a caller catching those missed them)."""
    import txn
    from router.errors import WrongShard

    async with fast_client(fake) as client:
        with pytest.raises(txn.InvalidArgument, match="group 99 is not in the shard map"):
            await client.txn_status(b"t" * 16, group_id=99)
        # Found by a new user's review: a REF with a mistyped group said "the shard map
        # changed; ask again", and group 0 (meta) waited out the deadline.
        with pytest.raises(txn.InvalidArgument, match="group 99 is not in the shard map"):
            await client.txn_status(txn.TxnRef(b"t" * 16, 99))
        with pytest.raises(txn.InvalidArgument, match="group 0 is the meta group"):
            await client.txn_status(txn.TxnRef(b"t" * 16, 0))
        # A group newer than the cached map (a split since) is looked up before refusing.
        fake.map = bootstrap(
            [
                NodeAddress(node_id=i, name=f"n{i}", client_addr=n.address, peer_addr=n.address)
                for i, n in fake.nodes.items()
            ],
            [b"g", b"p", b"t"],
            3,
            version=2,
        )
        fake.leaders[4] = fake.map.preferred_leader(4)
        status = await client.txn_status(txn.TxnRef(b"t" * 16, 4))
        assert status.state is txn.TxnState.UNKNOWN
        # That lookup is bounded as a connection, not by the (here 60 s) deadline.
        asked: list[float | None] = []
        refresh = client._routing.refresh_map

        async def recording(deadline: float | None = None) -> None:
            asked.append(deadline)
            await refresh(deadline)

        client._routing.refresh_map = recording  # type: ignore[method-assign]
        loop = asyncio.get_running_loop()
        with pytest.raises(txn.InvalidArgument, match="group 98 is not in the shard map"):
            await client.txn_status(txn.TxnRef(b"t" * 16, 98), timeout_s=60.0)
        assert asked and asked[0] is not None
        assert asked[0] <= loop.time() + CONNECT_TIMEOUT_S

        async def map_changed(*_args: Any, **_kwargs: Any) -> Any:
            raise WrongShard(b"", 2, 1)

        client._routing.send = map_changed  # type: ignore[method-assign]
        with pytest.raises(txn.Unavailable, match="shard map changed"):
            await client.txn_status(b"t" * 16, group_id=1)
        with pytest.raises(txn.Unavailable, match="shard map changed"):
            await client.snapshot().get(b"apple")


def test_a_settle_at_a_coordinator_without_a_record_aborts_every_participant() -> None:
    """Found by review: the coordinator group never got the Prepare, so its status answer
    (UNKNOWN) names no participants, and the settle recorded the abort for nobody: group
    2's intent stayed until its own recovery asked (a second here), and the body's next
    run met it. The settle now names the participants the commit went to."""

    @with_fake
    async def check(fake: FakeKV) -> None:
        fake.store.deliver = True
        blocked: list[bytes] = []

        def hook(node: int, request: kv.Request) -> Any:
            kind = request.WhichOneof("op")
            op = getattr(request, kind)
            if kind == "prepare" and not blocked:
                blocked.append(op.txn_id)
            if not blocked or getattr(op, "txn_id", b"") != blocked[0]:
                return None
            if kind == "txn_status":
                fake.hook = None  # the settle began: group 1 is back
                return None
            return DROP if op.header.group_id == 1 else None

        fake.hook = hook
        runs: list[AsyncTransaction] = []

        async def write_both(tx: AsyncTransaction) -> None:
            runs.append(tx)
            await tx.get(B2)
            tx.put(A1, b"a")
            tx.put(B2, b"b")

        async with fast_client(
            fake, timeout_s=2.0, attempt_timeout_s=0.2, settle_unknown=True
        ) as client:
            await client.run(write_both)
            assert len(runs) == 2 and runs[1].state is TransactionState.COMMITTED
            assert not any(txn == blocked[0] for txn, _ in fake.store.prepared)
            assert set(fake.store.decided(blocked[0]).values()) == {False}
            assert [g for g, r in fake.requests("decide") if not r.decide.participants] == []

    check()


def test_txn_status_keeps_to_its_timeout_across_its_steps() -> None:
    """Found by review: the coordinator's status, the other participants' and the settle
    each took a fresh `timeout_s`, so a call could last three times what the caller gave."""
    with fake_in_thread() as fake:
        txn_id = new_txn_id(fake.store.tick())
        prepare = kv.PrepareRequest(
            txn_id=txn_id,
            coordinator_group=1,
            participants=[1, 2],
            ts=fake.store.tick(),
            writes=[kv.WriteItem(key=A1, value=b"x")],
        )
        fake.store.apply(1, "prepare", prepare, kv.Response())  # group 2 never prepared

        def slow(node: int, request: kv.Request) -> None:
            if request.WhichOneof("op") in ("txn_status", "decide"):
                time.sleep(0.45)  # each answer within the timeout, all of them not

        fake.hook = slow
        with sync_client(fake, timeout_s=1.0, attempt_timeout_s=1.0) as client:
            client.connect()
            started = time.monotonic()
            with contextlib.suppress(PaxosKVError):
                client.txn_status(TxnRef(txn_id, 1, time.time_ns()), timeout_s=1.0, settle=True)
            assert time.monotonic() - started < 1.4


@pytest.mark.parametrize("unanswered", ["txn_status", "decide"])
def test_a_settle_that_cannot_finish_in_time_raises_the_commit_unknown(unanswered: str) -> None:
    """settle_unknown: when the settle itself gets no answer before its deadline, the loss
    stands: CommitUnknown with its ref, not the settle's DeadlineExceeded, which says
    nothing was committed (mutant: letting the settle's error through survived)."""

    @with_fake
    async def check(fake: FakeKV) -> None:
        commit = lose_first_commit(DROP)

        def hook(node: int, request: kv.Request) -> Any:
            if request.WhichOneof("op") == unanswered:
                return DROP
            return commit(node, request)

        fake.hook = hook
        runs = 0

        async def write(tx: AsyncTransaction) -> None:
            nonlocal runs
            runs += 1
            tx.put(A1, b"x")

        async with fast_client(
            fake, timeout_s=0.5, attempt_timeout_s=0.2, settle_unknown=True
        ) as client:
            with pytest.raises(CommitUnknown) as info:
                await client.run(write)
        assert info.value.ref is not None and runs == 1

    check()
