"""Small promises of the client API an audit found unchecked: a scan's end is exclusive for
buffered writes too, cas on an absent key has no current value, run retries a body error
raised after what it read changed, the sync commit returns its timestamp, and the sync
client's `transactional` runs inside a given transaction."""

from __future__ import annotations

from test_client_fakekv import FakeKV, fake_in_thread, fast_client, sync_client, with_fake

from txn import AsyncTransaction, Transaction

A1, B1, C1 = b"apple", b"grape", b"plum"


@with_fake
async def test_a_scan_leaves_out_a_buffered_write_at_its_end_key(fake: FakeKV) -> None:
    async with fast_client(fake) as client, client.transaction() as tx:
        tx.put(A1, b"a")
        tx.put(B1, b"b")
        assert await tx.scan(A1, B1) == [(A1, b"a")]  # end is exclusive


@with_fake
async def test_cas_on_an_absent_key_reports_no_current_value(fake: FakeKV) -> None:
    async with fast_client(fake) as client:
        failed = await client.cas(A1, expected_value=b"x", new_value=b"y")
        assert not failed.succeeded and failed.current_value is None


@with_fake
async def test_run_retries_a_body_error_raised_after_what_it_read_changed(fake: FakeKV) -> None:
    """Two reads (one read alone is one moment's view: its error stands,
    test_a_body_error_after_one_read_is_raised_without_reading_again)."""
    calls = 0
    async with fast_client(fake) as client:

        async def body(tx: AsyncTransaction) -> bytes | None:
            nonlocal calls
            calls += 1
            await tx.get(C1)
            seen = await tx.get(A1)
            if calls == 1:
                await client.put(A1, b"changed")  # another writer, between read and error
                raise ValueError("decided on a stale view")
            return seen

        assert await client.run(body) == b"changed"
    assert calls == 2


def test_sync_commit_returns_the_commit_timestamp() -> None:
    with fake_in_thread() as fake, sync_client(fake) as client:
        tx = client.transaction()
        tx.put(A1, b"a")
        ts = tx.commit()
        assert ts is not None and ts > 0 and ts == tx.commit_ts


def test_sync_client_transactional_composes_into_a_given_transaction() -> None:
    with fake_in_thread() as fake, sync_client(fake) as client:

        @client.transactional
        def put_one(tx: Transaction, key: bytes) -> bytes:
            tx.put(key, b"1")
            return key

        with client.transaction() as tx:
            assert put_one(tx, A1) == A1
            assert put_one(tx, C1) == C1
            assert tx.write_set == {A1: b"1", C1: b"1"}  # its writes are this transaction's
        assert client.get(A1) == b"1" and client.get(C1) == b"1"


@with_fake
async def test_run_retries_a_body_error_raised_after_a_key_appeared_in_what_it_scanned(
    fake: FakeKV,
) -> None:
    """As `test_run_retries_a_body_error_raised_after_what_it_read_changed`, for a range: a
    key added to a scanned range (here past every key the scan saw, and into an empty one)
    is a change of the view (mutant: the check scanning only len(seen) keys saw neither)."""
    calls = 0
    async with fast_client(fake) as client:
        await client.put(b"a1", b"1")

        async def body(tx: AsyncTransaction) -> int:
            nonlocal calls
            calls += 1
            seen = await tx.scan(b"a", b"b")
            empty = await tx.scan(b"c", b"d")
            if calls == 1:
                await client.put(b"a2", b"2")  # another writer, after the scans
                raise LookupError("decided on a stale view")
            if calls == 2:
                await client.put(b"c1", b"3")
                raise LookupError("decided on a stale view")
            return len(seen) + len(empty)

        assert await client.run(body) == 3
    assert calls == 3


def test_public_docstrings_print_as_written() -> None:
    """No control character in a docstring of the public API (found by an application
    trial: `b"\\x00"` in a plain docstring showed as ^@ in help())."""
    import inspect

    import txn

    for name in txn.__all__:
        obj = getattr(txn, name)
        members = [obj, *(m for _, m in inspect.getmembers(obj))] if inspect.isclass(obj) else [obj]
        for member in members:
            doc = getattr(member, "__doc__", None) or ""
            bad = sorted({c for c in doc if c < " " and c != "\n"})
            assert not bad, f"txn.{name}: {getattr(member, '__qualname__', member)!r} has {bad}"
