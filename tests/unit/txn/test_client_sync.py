"""The synchronous Client (a private event loop in a background thread) against the fake
cluster, used from plain code and from many threads at once."""

from __future__ import annotations

import asyncio
import gc
import signal
import threading
import time
import warnings
from typing import Any

import pytest
from test_client_fakekv import (
    DROP,
    LOSE,
    FakeKV,
    error_response,
    fake_in_thread,
    on_kind,
    sync_client,
)

import txn
from router import kv_pb2 as kv
from txn import (
    ClientClosed,
    CommitUnknown,
    Conflict,
    Transaction,
    TransactionState,
    TxnState,
)

A1, B1, C1 = b"apple", b"grape", b"plum"  # groups 1, 2, 3


@pytest.fixture
def fake() -> Any:
    with fake_in_thread() as fake:
        yield fake


def test_transaction_context_manager_commits_and_reads_its_writes(fake: FakeKV) -> None:
    with sync_client(fake) as client:
        with client.transaction() as tx:
            assert tx.get(A1) is None
            tx.put(A1, b"a")
            tx.put(C1, b"c")
            assert tx.get(A1) == b"a"
            assert tx.scan(b"a") == [(A1, b"a"), (C1, b"c")]
        assert tx.state is TransactionState.COMMITTED and tx.commit_ts
        assert client.get(A1) == b"a"
        assert client.scan(b"a", b"z") == [(A1, b"a"), (C1, b"c")]
        assert client.txn_status(tx.ref).state is TxnState.COMMITTED  # type: ignore[arg-type]
        assert client.txn_status(str(tx.ref)).state is TxnState.COMMITTED  # as logged


def test_exception_aborts_and_propagates(fake: FakeKV) -> None:
    with sync_client(fake) as client:
        with pytest.raises(KeyError), client.transaction() as tx:
            tx.put(A1, b"a")
            raise KeyError("boom")
        assert tx.state is TransactionState.ABORTED
        assert client.get(A1) is None
    assert fake.count("commit_one_phase") == 0


def test_an_aborted_read_for_update_releases_its_lock_groups(fake: FakeKV) -> None:
    fake.store.write(A1, b"1", 5)
    with sync_client(fake) as client:
        with pytest.raises(KeyError), client.transaction() as tx:
            assert tx.get(A1, for_update=True) == b"1"
            assert tx.get(B1, for_update=True) is None
            raise KeyError("boom")
        assert tx.state is TransactionState.ABORTED
        # The user thread's abort reached the client's loop: one Resolve(abort) per group.
        [get_a, get_b] = [r.get for _, r in fake.requests("get")]
        assert get_a.lock_txn_id == get_b.lock_txn_id == tx.txn_id and get_a.lock_priority > 0
        deadline = threading.Event()
        for _ in range(50):
            if len(fake.requests("resolve")) == 2:
                break
            deadline.wait(0.01)
        resolves = sorted((g, r.resolve.commit) for g, r in fake.requests("resolve"))
        assert resolves == [(1, False), (2, False)]


def test_a_commit_frees_the_lock_a_failed_read_for_update_may_have_taken(fake: FakeKV) -> None:
    """Found by review: a read for update that failed may have taken its lock at the leader;
    a commit that then went to other groups never freed it, and it held that key's writers
    until it expired."""
    fake.hook = on_kind("get", lambda r: error_response(r, kv.INVALID_ARGUMENT))
    with sync_client(fake) as client:
        with client.transaction() as tx:
            with pytest.raises(txn.InvalidArgument):
                tx.get(B1, for_update=True)  # group 2
            tx.put(A1, b"x")  # group 1 only
        assert tx.state is TransactionState.COMMITTED
        freed = threading.Event()
        for _ in range(100):
            if [g for g, r in fake.requests("resolve") if not r.resolve.commit] == [2]:
                freed.set()
                break
            freed.wait(0.01)
        assert freed.is_set(), fake.requests("resolve")


def test_a_transaction_dropped_open_releases_its_update_locks_with_a_warning(
    fake: FakeKV,
) -> None:
    """A handler that returns without commit or abort drops its transaction: its update
    locks are released (one Resolve(abort) per group) instead of holding every writer of
    those keys until they expire, and a ResourceWarning names the transaction."""
    with sync_client(fake) as client:

        def handler() -> bytes:
            tx = client.transaction()
            assert tx.get(A1, for_update=True) is None
            assert tx.get(B1, for_update=True) is None
            assert tx.get(C1) is None  # a plain read takes no lock: no Resolve to group 3
            return tx.txn_id

        with pytest.warns(ResourceWarning, match="dropped open holding update locks") as caught:
            txn_id = handler()
            gc.collect()
        assert txn_id.hex() in str(caught[0].message)
        end = time.monotonic() + 5
        while len(fake.requests("resolve")) < 2 and time.monotonic() < end:
            threading.Event().wait(0.01)
        resolves = sorted(
            (g, r.resolve.txn_id, r.resolve.commit) for g, r in fake.requests("resolve")
        )
        assert resolves == [(1, txn_id, False), (2, txn_id, False)]


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_a_transaction_dropped_open_releases_its_locks_with_warnings_as_errors(
    fake: FakeKV,
) -> None:
    """Found by review: under `-W error` the warning raised inside the finalizer before
    the release, and the locks were kept."""
    with sync_client(fake) as client, warnings.catch_warnings():
        warnings.simplefilter("error", ResourceWarning)

        def handler() -> None:
            tx = client.transaction()
            tx.get(A1, for_update=True)

        handler()
        gc.collect()
        end = time.monotonic() + 5
        while not fake.requests("resolve") and time.monotonic() < end:
            threading.Event().wait(0.01)
    assert [g for g, r in fake.requests("resolve") if not r.resolve.commit] == [1]


def test_a_transaction_ended_or_holding_no_lock_is_dropped_without_a_warning(
    fake: FakeKV,
) -> None:
    with sync_client(fake) as client, warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for end in ("commit", "abort", "none"):
            tx = client.transaction()
            tx.get(A1, for_update=end != "none")
            if end != "none":
                getattr(tx, end)()
            del tx
            gc.collect()
        with client.transaction() as tx:
            tx.get(B1, for_update=True)
            tx.put(B1, b"b")
        del tx
        gc.collect()
    assert [str(w.message) for w in caught if "dropped open" in str(w.message)] == []


def test_threads_incrementing_one_counter_lose_no_update(fake: FakeKV) -> None:
    """Retry the function, not the commit: every increment re-reads after a conflict."""
    threads, per_thread = 4, 8
    with sync_client(fake, max_attempts=200) as client:
        attempts = 0

        @client.transactional
        def increment(tx: Transaction, key: bytes) -> int:
            nonlocal attempts
            attempts += 1
            n = int(tx.get(key) or b"0") + 1
            tx.put(key, b"%d" % n)
            tx.put(C1 + b"/" + b"%d" % n, b"x")  # a second group: two-phase commits
            return n

        errors: list[BaseException] = []

        def work() -> None:
            try:
                for _ in range(per_thread):
                    increment(A1)
            except BaseException as exc:  # pragma: no cover - reported below
                errors.append(exc)

        workers = [threading.Thread(target=work) for _ in range(threads)]
        for w in workers:
            w.start()
        for w in workers:
            w.join(60)
        assert not errors, errors
        assert client.get(A1) == b"%d" % (threads * per_thread)
        assert len(client.scan(C1 + b"/", C1 + b"0")) == threads * per_thread
        assert attempts >= threads * per_thread  # more when conflicts made some re-run


def test_run_retries_and_composes(fake: FakeKV) -> None:
    with sync_client(fake) as client:
        ids: list[bytes] = []

        @txn.transactional
        def put_one(tx: Transaction, key: bytes, value: bytes) -> None:
            tx.put(key, value)

        def body(tx: Transaction) -> str:
            ids.append(tx.txn_id)
            n = tx.get(A1)
            if len(ids) == 1:
                client.put(A1, b"interfering")  # makes this attempt's read stale
            put_one(tx, A1, (n or b"") + b"+")
            put_one(tx, B1, b"b")
            return "ok"

        assert client.run(body) == "ok"
        assert len(ids) == 2 and ids[0] != ids[1]
        assert client.get(A1) == b"interfering+"
        assert put_one(client, C1, b"c") is None
        assert client.get(C1) == b"c"


def test_decorated_methods_take_their_instance_then_their_transaction(fake: FakeKV) -> None:
    """Found by a client-API review: a decorated method ran as `fn(tx, self, ...)`, and its
    error surfaced in the user's code ('Repo' object has no attribute 'get'). The
    transaction is the parameter named `tx` (or `tr`), as FoundationDB finds `tr`."""
    with sync_client(fake) as client:

        class Repo:
            def __init__(self) -> None:
                self.prefix = b"repo/"

            @client.transactional
            def bump(self, tx: Transaction, key: bytes) -> int:
                n = int(tx.get(self.prefix + key) or b"0") + 1
                tx.put(self.prefix + key, b"%d" % n)
                return n

            @txn.transactional
            def reset(self, tx: Transaction, key: bytes) -> None:
                tx.put(self.prefix + key, b"0")

        repo = Repo()
        assert repo.bump(A1) == 1  # its own transaction, committed
        with client.transaction() as tx:
            assert repo.bump(tx, A1) == 2  # composed into tx
            assert repo.bump(tx, A1) == 3
        assert client.get(b"repo/" + A1) == b"3"
        repo.reset(client, A1)
        assert client.get(b"repo/" + A1) == b"0"
        with client.transaction() as tx:
            repo.reset(tx, B1)
        assert client.get(b"repo/" + B1) == b"0"
        with pytest.raises(TypeError, match=r"transaction argument \(position 1\), got bytes"):
            repo.reset(A1)


def test_commit_unknown_is_raised_not_retried(fake: FakeKV) -> None:
    fake.hook = on_kind("commit_one_phase", LOSE)
    calls = 0

    def body(tx: Transaction) -> None:
        nonlocal calls
        calls += 1
        tx.put(A1, b"a")

    with sync_client(fake, timeout_s=0.8, attempt_timeout_s=0.2) as client:
        with pytest.raises(CommitUnknown) as info:
            client.run(body)
        assert calls == 1
        fake.hook = None
        assert client.txn_status(info.value.ref).committed


def test_snapshot(fake: FakeKV) -> None:
    with sync_client(fake) as client:
        client.put(A1, b"old")
        with client.snapshot() as snap:
            client.put(A1, b"new")
            assert snap.get(A1) == b"old"
            assert snap.scan(b"a") == [(A1, b"old")]
            assert snap.read_ts > 0
        assert client.snapshot(read_ts=snap.read_ts).get(A1) == b"old"
        assert client.snapshot().get(A1) == b"new"


def test_refusals(fake: FakeKV) -> None:
    client = sync_client(fake)

    async def coroutine_fn(tx: Any) -> None:
        return None

    def generator_fn(tx: Any) -> Any:
        yield None

    with pytest.raises(TypeError, match="coroutine"):
        client.run(coroutine_fn)
    with pytest.raises(TypeError, match="generator"):
        client.transactional(generator_fn)

    async def call_from_loop() -> None:
        client.get(A1)

    future = asyncio.run_coroutine_threadsafe(call_from_loop(), client._loop)
    with pytest.raises(RuntimeError, match="own event loop"):
        future.result(10)
    client.close()
    client.close()  # idempotent
    with pytest.raises(ClientClosed):
        client.get(A1)
    with pytest.raises(ClientClosed):
        client.transaction()


def test_a_body_that_returns_an_awaitable_is_refused_not_committed_empty(fake: FakeKV) -> None:
    """A coroutine function behind a plain wrapper (a lambda, a decorator without
    functools.wraps) passes the coroutine-function check; its body then never ran, and
    `run` committed the empty transaction and returned the coroutine: the writes were
    silently lost (found by review)."""

    async def body(tx: Any) -> None:
        tx.put(A1, b"lost")

    with sync_client(fake) as client:
        with pytest.raises(TypeError, match="awaitable"):
            client.run(lambda tx: body(tx))
        assert fake.count("commit_one_phase") == 0


def test_conflict_from_a_plain_transaction_names_the_key(fake: FakeKV) -> None:
    with sync_client(fake) as client:
        client.put(A1, b"0")
        t1, t2 = client.transaction(), client.transaction()
        t1.get(A1)
        t2.get(A1)
        t1.put(A1, b"1")
        t2.put(A1, b"2")
        t2.put(C1, b"2")  # two-phase: the conflict comes from a prepare
        t1.commit()
        with pytest.raises(Conflict) as info:
            t2.commit()
        assert info.value.key == A1 and info.value.phase == "prepare"
        assert "apple" in str(info.value)
        assert client.get(A1) == b"1" and client.get(C1) is None


def test_client_works_from_a_thread_without_an_event_loop(fake: FakeKV) -> None:
    results: list[Any] = []

    def script() -> None:
        with txn.Client(fake.seeds, timeout_s=5.0) as client:
            with client.transaction() as tx:
                tx.put(B1, b"from a thread")
            results.append(client.get(B1))

    thread = threading.Thread(target=script)
    thread.start()
    thread.join(30)
    assert results == [b"from a thread"]
    assert any(k == "commit_one_phase" for _, k, _ in fake.seen)
    assert all(isinstance(r, kv.Request) for _, _, r in fake.seen)


def test_close_leaves_no_task_pending_on_the_clients_loop(fake: FakeKV) -> None:
    """A pending task collected after its loop stopped prints "Task was destroyed but it is
    pending!" on stderr (seen after successful `paxoskv txn` runs, from gRPC's own tasks)."""
    client = sync_client(fake)
    client.put(b"a", b"1")
    with client.snapshot() as snap:
        assert snap.get(b"a") == b"1"
    loop = client._loop
    stray = asyncio.run_coroutine_threadsafe(asyncio.sleep(3600), loop)  # still pending
    client.close()
    assert stray.cancelled()
    assert not asyncio.all_tasks(loop)


@pytest.mark.usefixtures("python_sigint")
def test_ctrl_c_during_a_commit_leaves_a_truthful_state(fake: FakeKV) -> None:
    """Found by review: after KeyboardInterrupt in tx.commit() the user's handler looks at
    tx.state at once. It said COMMITTING until the loop thread got round to the cancellation;
    the call now waits (up to 1 s) for that, so the state says UNKNOWN (the commit landed)."""
    gate = threading.Event()

    def hook(node: int, request: kv.Request) -> Any:
        if request.WhichOneof("op") == "commit_one_phase":
            gate.set()
            return LOSE  # applied, answer lost
        return None

    def interrupt_main_thread() -> None:
        gate.wait(5)
        time.sleep(0.05)  # the main thread is back waiting in commit()
        signal.pthread_kill(threading.main_thread().ident or 0, signal.SIGINT)

    # A deadline far past the interrupt: the commit must still be waiting when it comes.
    with sync_client(fake, timeout_s=60.0, attempt_timeout_s=1.0) as client:
        client.put(A1, b"0")
        fake.hook = hook
        tx = client.transaction()
        tx.put(A1, b"1")
        killer = threading.Thread(target=interrupt_main_thread)
        killer.start()
        with pytest.raises(KeyboardInterrupt):
            tx.commit()
        state = tx.state
        killer.join()
        fake.hook = None
        assert client.get(A1) == b"1"  # it did commit
        assert state is TransactionState.UNKNOWN, state


def test_the_clock_moves_only_on_the_clients_loop_thread(fake: FakeKV) -> None:
    """Found by review: run() took each attempt's age from the shared clock in the
    caller's thread while the loop thread absorbed timestamps into it (no lock)."""
    with sync_client(fake) as client:
        clock = client._async._clock
        threads: set[int] = set()
        now, observe = clock.now, clock.observe

        class Watched:
            def __getattr__(self, name: str) -> Any:
                return getattr(clock, name)

            def now(self, wall_ns: int) -> int:
                threads.add(threading.get_ident())
                return now(wall_ns)

            def observe(self, ts: int) -> None:
                threads.add(threading.get_ident())
                observe(ts)

        client._async._clock = Watched()  # type: ignore[assignment]

        def add(tx: Transaction) -> None:
            tx.put(A1, b"%d" % (int(tx.get(A1, for_update=True) or b"0") + 1))

        for _ in range(3):
            client.run(add)
        assert threads and threading.get_ident() not in threads, "moved from the caller's thread"


def test_group_of_from_the_sync_client(fake: FakeKV) -> None:
    with sync_client(fake) as client:
        assert [client.connect().group_of(k) for k in (A1, B1, C1)] == [1, 2, 3]


def test_run_runs_a_transaction_that_wrote_nothing_again_when_its_commit_is_lost() -> None:
    """As `AsyncClient.run` (test_client_async.py): nothing written, nothing to apply twice."""
    attempts: list[bytes] = []

    def lose_the_first_attempts(node: int, request: kv.Request) -> Any:
        first = request.WhichOneof("op") == "commit_one_phase" and len(attempts) == 1
        return DROP if first else None

    def look(tx: Transaction) -> bytes | None:
        attempts.append(tx.txn_id)
        return tx.get(A1)

    with fake_in_thread() as fake, sync_client(fake, timeout_s=0.8, attempt_timeout_s=0.2) as c:
        fake.hook = lose_the_first_attempts
        assert c.run(look) is None
    assert len(attempts) == 2 and fake.count("commit_one_phase") > 2
