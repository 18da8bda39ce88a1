"""Fenced writes (txn/client.py, "Fenced writes") against the fake cluster.

A lock's fencing token is the commit timestamp of the transaction that wrote the lock record.
`put_fenced` / `delete_fenced` put `(lock, version=token)` into the read set, so the store
refuses the write once the lock key has a newer version; the client reports that as
`FencingTokenRejected`, does not retry it, and nothing of the transaction is left behind.
"""

from __future__ import annotations

from typing import Any

import pytest
from test_client_fakekv import (
    FakeKV,
    conflict_response,
    decided,
    fake_in_thread,
    fast_client,
    sync_client,
    with_fake,
)

from router import kv_pb2 as kv
from txn import (
    AsyncClient,
    AsyncTransaction,
    Conflict,
    InvalidArgument,
    TransactionState,
)
from txn.errors import FencingTokenRejected

# Keys by group under the fake map (split points g, p).
DATA = b"apple"  # group 1
OTHER = b"banana"  # group 1
LOCK = b"lock/printer"  # group 2
C1 = b"plum"  # group 3


async def acquire(client: AsyncClient, owner: bytes) -> int:
    """Write the lock record; the commit timestamp is the fencing token."""
    async with client.transaction() as tx:
        await tx.get(LOCK)
        tx.put(LOCK, owner)
    assert tx.commit_ts is not None
    return tx.commit_ts


def no_trace(fake: FakeKV) -> None:
    assert not fake.store.intents
    assert not fake.store.prepared


# ---------------------------------------------------------------------------- the contract


@with_fake
async def test_current_token_is_accepted_across_groups_and_in_one_group(fake: FakeKV) -> None:
    async with fast_client(fake) as client:
        token = await acquire(client, b"A")
        assert fake.store.latest(LOCK)[0] == token  # the token IS the lock key's version
        ts = await client.put_fenced(DATA, b"v1", lock=LOCK, token=token)  # 2PC: groups 1, 2
        await decided(fake)
        assert fake.store.latest(DATA) == (ts, b"v1")
        [(_, prepare)] = [(g, r) for g, r in fake.requests("prepare") if g == 2]
        assert [(r.key, r.version) for r in prepare.prepare.reads] == [(LOCK, token)]
        assert not prepare.prepare.writes  # the lock is only read, never written
        async with client.transaction() as tx:  # the lock's own group: one-phase commit
            tx.put_fenced(b"lock/printer/jobs", b"1", lock=LOCK, token=token)
        assert tx.state is TransactionState.COMMITTED
        assert fake.count("commit_one_phase") == 2  # acquire + this one
    no_trace(fake)


@with_fake
async def test_stale_token_is_refused_by_the_store_and_not_retried(fake: FakeKV) -> None:
    async with fast_client(fake) as client:
        old = await acquire(client, b"A")
        await client.put_fenced(DATA, b"by A", lock=LOCK, token=old)
        await decided(fake)
        new = await acquire(client, b"B")  # B re-acquires: a newer version of the lock key
        assert new > old  # tokens increase
        before = list(fake.store.versions[DATA])
        prepares = fake.count("prepare")
        with pytest.raises(FencingTokenRejected) as info:
            await client.put_fenced(DATA, b"by A, late", lock=LOCK, token=old)
        err = info.value
        assert isinstance(err, Conflict) and not err.retryable and not err.maybe_committed
        assert err.code == "FENCING_TOKEN_REJECTED"
        assert (err.lock, err.token, err.latest_version) == (LOCK, old, new)
        assert str(old) in str(err) and "nothing was written" in str(err)
        # The participants themselves refused (no caller-side check), exactly once.
        refused = [r for g, r in fake.requests("prepare")[prepares:] if g == 2]
        assert len(refused) == 1 and refused[0].prepare.reads[0].version == old
        # The refused write left no trace: same versions, no intents, no prepared records.
        assert fake.store.versions[DATA] == before
        no_trace(fake)
        await client.put_fenced(DATA, b"by B", lock=LOCK, token=new)  # current token works
        await decided(fake)
        assert fake.store.value(DATA) == b"by B"


@with_fake
async def test_renewal_and_release_make_the_old_token_stale(fake: FakeKV) -> None:
    async with fast_client(fake) as client:
        token = await acquire(client, b"A")
        async with client.transaction() as tx:  # renew: A rewrites its own record
            tx.put_fenced(LOCK, b"A renewed", lock=LOCK, token=token)
        renewed = tx.commit_ts
        assert renewed is not None and renewed > token
        with pytest.raises(FencingTokenRejected):
            await client.put_fenced(DATA, b"x", lock=LOCK, token=token)
        await client.delete_fenced(LOCK, lock=LOCK, token=renewed)  # release
        with pytest.raises(FencingTokenRejected):
            await client.delete_fenced(DATA, lock=LOCK, token=renewed)
        assert fake.store.value(DATA) is None
    no_trace(fake)


@with_fake
async def test_a_lock_read_at_another_version_refuses_before_commit(fake: FakeKV) -> None:
    async with fast_client(fake) as client:
        old = await acquire(client, b"A")
        new = await acquire(client, b"B")
        tx = client.transaction()
        assert await tx.get(LOCK) == b"B"
        with pytest.raises(FencingTokenRejected):
            tx.put_fenced(DATA, b"x", lock=LOCK, token=old)
        tx.abort()
        tx = client.transaction()
        tx.put_fenced(DATA, b"x", lock=LOCK, token=old)
        with pytest.raises(FencingTokenRejected) as info:
            await tx.get(LOCK)  # the read itself shows the token is stale
        assert info.value.latest_version == new
        tx.abort()
    assert fake.count("commit_one_phase") + fake.count("prepare") == 2  # the two acquires


@with_fake
async def test_other_conflicts_stay_retryable(fake: FakeKV) -> None:
    """A refusal that is not about the token (an intent on the data key) is an ordinary
    Conflict, and `run` retries the whole function."""
    async with fast_client(fake) as client:
        token = await acquire(client, b"A")
        injected = []

        def hook(node_id: int, request: kv.Request) -> Any:
            if request.WhichOneof("op") == "prepare" and not injected:
                injected.append(request)
                return conflict_response(request, DATA, "prepare")
            return None

        fake.hook = hook
        attempts = []

        def body(tx: AsyncTransaction) -> None:
            attempts.append(tx.txn_id)
            tx.put_fenced(DATA, b"v", lock=LOCK, token=token)

        await client.run(body)
        assert len(injected) == 1 and len(attempts) == 2
        await decided(fake)
        assert fake.store.value(DATA) == b"v"

        tx = client.transaction()
        tx.put_fenced(DATA, b"w", lock=LOCK, token=token)
        injected.clear()
        with pytest.raises(Conflict) as info:
            await tx.commit()
        assert type(info.value) is Conflict and info.value.retryable


@with_fake
async def test_bad_tokens_are_refused_locally(fake: FakeKV) -> None:
    async with fast_client(fake) as client:
        tx = client.transaction()
        for bad in (0, -1, True, "33", None):
            with pytest.raises(InvalidArgument):
                tx.put_fenced(DATA, b"v", lock=LOCK, token=bad)  # type: ignore[arg-type]
        tx.put_fenced(DATA, b"v", lock=LOCK, token=7)
        with pytest.raises(InvalidArgument, match="two fencing tokens"):
            tx.put_fenced(OTHER, b"v", lock=LOCK, token=8)
        tx.abort()
    assert not fake.seen


def test_sync_client_fenced_write_and_delete() -> None:
    with fake_in_thread() as fake, sync_client(fake) as client:
        with client.transaction() as tx:
            tx.put(LOCK, b"A")
        token = tx.commit_ts
        assert token
        with client.transaction() as tx:
            tx.put_fenced(C1, b"c", lock=LOCK, token=token)
            tx.put_fenced(DATA, b"a", lock=LOCK, token=token)
        assert client.get(C1) == b"c" and client.get(DATA) == b"a"
        client.delete_fenced(C1, lock=LOCK, token=token)
        assert client.get(C1) is None
        client.put(LOCK, b"B")  # a plain write of the lock key also supersedes the token
        with pytest.raises(FencingTokenRejected):
            client.put_fenced(DATA, b"late", lock=LOCK, token=token)
        assert client.get(DATA) == b"a"
