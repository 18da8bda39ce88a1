"""The error table (txn/errors.py): flags, codes, translation of routing errors, messages."""

from __future__ import annotations

import asyncio
import contextlib
import random
from typing import Any

import pytest

import txn
from router import client_errors as routing
from router import kv_pb2 as kv
from router.cache import Backoff
from txn.errors import ERRORS, _conflict, from_routing_error
from txn.retry import _RetryPolicy

# FoundationDB's predicates, one row per error: (retryable, maybe_committed).
EXPECTED = {
    txn.PaxosKVError: (False, False),
    txn.Conflict: (True, False),
    txn.FencingTokenRejected: (False, False),
    txn.Unavailable: (True, False),
    txn.DeadlineExceeded: (True, False),
    txn.OutcomeUnknown: (False, True),
    txn.CommitUnknown: (False, True),
    txn.LimitExceeded: (False, False),
    txn.InvalidArgument: (False, False),
    txn.WatchClosed: (False, False),
    txn.WrongCluster: (False, False),
    txn.ServerError: (False, False),
    txn.ClientClosed: (False, False),
    txn.TransactionClosed: (False, False),
    txn.TransactionTooOld: (True, False),
    txn.SnapshotTooOld: (True, False),
    txn.TooManyRetries: (False, False),
}


def test_table_flags_and_unique_codes() -> None:
    assert set(ERRORS) == set(EXPECTED)
    for cls, (retryable, maybe_committed) in EXPECTED.items():
        assert (cls.retryable, cls.maybe_committed) == (retryable, maybe_committed), cls
        assert issubclass(cls, txn.PaxosKVError)
    codes = [cls.code for cls in ERRORS]
    assert len(codes) == len(set(codes))


def test_the_module_docstrings_table_names_every_class_with_its_code_and_flags() -> None:
    """Found by a docs audit: the table lacked FencingTokenRejected while ERRORS, "in the
    order of the table", had it."""
    import txn.errors as errors_module

    doc = errors_module.__doc__ or ""
    border = next(line for line in doc.splitlines() if line.startswith("====="))
    rows = doc.split(border)[2].strip().splitlines()
    flag = {"yes": True, "no": False}
    table = [row.split()[:5] for row in rows if row and not row.startswith(" ")]
    assert [name for name, *_ in table] == [cls.__name__ for cls in ERRORS]
    for (name, code, retryable, maybe, *_), cls in zip(table, ERRORS, strict=True):
        assert code == cls.code, name
        assert flag[retryable] == cls.retryable, name
        if maybe != "per":  # "per instance": set on each error raised
            assert flag[maybe] == cls.maybe_committed, name


@pytest.mark.parametrize(
    ("source", "target"),
    [
        (routing.Unavailable, txn.Unavailable),
        (routing.DeadlineExceeded, txn.DeadlineExceeded),
        (routing.OutcomeUnknown, txn.OutcomeUnknown),
        (routing.LimitExceeded, txn.LimitExceeded),
        (routing.InvalidArgument, txn.InvalidArgument),
        (routing.SnapshotTooOld, txn.SnapshotTooOld),
        (routing.WrongCluster, txn.WrongCluster),
        (routing.ServerError, txn.ServerError),
        (routing.ClientClosed, txn.ClientClosed),
    ],
)
def test_routing_errors_translate_and_both_excepts_catch(
    source: type[routing.ClientError], target: type[txn.PaxosKVError]
) -> None:
    translated = from_routing_error(source("why"))
    assert type(translated) is target
    assert str(translated) == "why"
    assert isinstance(translated, source)  # `except router...Unavailable` still catches it
    assert translated.retryable == source.retryable
    assert translated.maybe_committed == source.maybe_committed
    assert from_routing_error(translated) is translated


def test_per_instance_maybe_committed_is_kept() -> None:
    assert from_routing_error(routing.ServerError("x", maybe_committed=True)).maybe_committed
    assert not from_routing_error(routing.ServerError("x")).maybe_committed


def test_conflict_message_names_key_other_transaction_and_phase() -> None:
    err = txn.Conflict(b"acct/1", b"\xab\xcd", "prepare", "held by an intent", txn_id=b"\x01")
    text = str(err)
    assert "b'acct/1'" in text and "abcd" in text and "prepare" in text and "01" in text
    assert "held by an intent" in text and "re-run" in text
    assert (err.key, err.other_txn, err.phase, err.reason) == (
        b"acct/1",
        b"\xab\xcd",
        "prepare",
        "held by an intent",
    )
    # A single-key write's conflict names no transaction to re-run (an application trial).
    single = str(txn.Conflict(b"lease", b"\xab", "write", "locked by a write intent"))
    assert single.endswith("nothing was written, send the write again") and "re-run" not in single


def test_commit_unknown_carries_its_ref_and_is_an_outcome_unknown() -> None:
    ref = txn.TxnRef(b"\x00\x01", 3)
    err = txn.CommitUnknown("lost", ref=ref)
    assert err.ref is ref and isinstance(err, txn.OutcomeUnknown)
    assert isinstance(err, routing.OutcomeUnknown)
    assert "0001" in repr(ref)


def test_a_ref_prints_as_the_text_it_parses_from() -> None:
    for ref in (txn.TxnRef(b"\x00\x01", 3, 1_764_412_345_678_901_234), txn.TxnRef(b"\xff", 0)):
        text = str(ref)
        parsed = txn.TxnRef.parse(text)
        assert parsed == ref and parsed.started_ns == ref.started_ns
    assert str(txn.TxnRef(b"\xab", 2)) == "ab:2"
    for bad in ("", "ab", ":1", "zz:1", "ab:x", "ab:1:y", "ab:-1", "ab:1:-5", "ab:1:2:3"):
        with pytest.raises(txn.InvalidArgument, match="not a transaction ref"):
            txn.TxnRef.parse(bad)


def test_retry_policy() -> None:
    policy = _RetryPolicy(3, None, Backoff(base_s=0.01, max_s=0.02), random.Random(1))
    conflict = txn.Conflict(b"k")
    assert 0 <= (policy.next_delay(conflict, 1, 0.0) or 0) < 0.02
    assert policy.next_delay(txn.CommitUnknown("?", ref=txn.TxnRef(b"t", 1)), 1, 0.0) is None
    assert policy.next_delay(ValueError("mine"), 1, 0.0) is None
    assert policy.next_delay(txn.LimitExceeded("big"), 1, 0.0) is None
    with pytest.raises(txn.TooManyRetries) as info:
        policy.next_delay(conflict, 3, 0.0)
    assert info.value.last_error is conflict and info.value.attempts == 3
    # A call that waited out its whole deadline is not run again (the cluster is down or
    # cut off: 20 attempts waited 208 s before TooManyRetries).
    assert policy.next_delay(txn.DeadlineExceeded("no answer in 10 s"), 1, 10.0) is None
    together = ExceptionGroup("reads", [conflict, txn.DeadlineExceeded("no answer")])
    assert policy.next_delay(together, 1, 10.0) is None  # in a TaskGroup of reads too
    timed = _RetryPolicy(100, 1.0, Backoff(base_s=0.01, max_s=0.02), random.Random(1))
    with pytest.raises(txn.TooManyRetries):
        timed.next_delay(txn.Unavailable("down"), 5, 1.0)


def test_a_call_deadline_ends_the_retries_as_a_deadline() -> None:
    """`within` (the one-transaction helpers' `timeout_s`): a pause that would pass the
    call's deadline ends in DeadlineExceeded caused by the last error, as a single write's
    deadline does; the attempt budget and a shorter retry_timeout_s stay TooManyRetries."""
    conflict = txn.Conflict(b"k")
    call = _RetryPolicy(100, None, Backoff(base_s=0.01, max_s=0.02), random.Random(1)).within(1.0)
    assert 0 <= (call.next_delay(conflict, 1, 0.5) or 0) < 0.02
    with pytest.raises(txn.DeadlineExceeded) as info:
        call.next_delay(conflict, 7, 0.999)
    assert info.value.__cause__ is conflict and not info.value.maybe_committed
    assert "timeout_s (1 s) left no time for attempt 8 after 0.999 s" in str(info.value)
    assert call.delay_within_budget(conflict, 7, 0.999) is None  # the lost commit's re-run, too
    # A retry starts with a tenth of the deadline left at least (MIN_TRY_SHARE).
    assert call.next_delay(conflict, 1, 0.85) is not None
    with pytest.raises(txn.DeadlineExceeded):
        call.next_delay(conflict, 1, 0.91)
    # ... and at least MIN_TRY_S (20 ms) of a short one, more than its tenth (5 ms).
    short = _RetryPolicy(100, None, Backoff(base_s=0.01, max_s=0.02), random.Random(1))
    with pytest.raises(txn.DeadlineExceeded):
        short.within(0.05).next_delay(conflict, 1, 0.035)
    with pytest.raises(txn.TooManyRetries):
        call.next_delay(conflict, 100, 0.0)
    shorter = _RetryPolicy(100, 0.5, Backoff(base_s=0.01, max_s=0.02), random.Random(1))
    with pytest.raises(txn.TooManyRetries):
        shorter.within(1.0).next_delay(conflict, 2, 0.5)


def test_a_refused_token_says_why_it_may_be_stale() -> None:
    """Found by an application trial: a lock never written was "re-acquired", and a lock
    whose time to live ran out was not mentioned."""
    never = txn.FencingTokenRejected(b"lock/a", 5, 0)
    assert "never written" in str(never) and "re-acquired" not in str(never)
    moved = txn.FencingTokenRejected(b"lock/a", 5, 9)
    assert "expired" in str(moved) and "latest version is 9" in str(moved)
    assert not moved.retryable and not moved.maybe_committed


class FixedRng(random.Random):
    """Draws `value` every time: the jitter's fraction of the ceiling, fixed."""

    def __init__(self, value: float) -> None:
        super().__init__(0)
        self.value = value

    def random(self) -> float:  # type: ignore[override]
        return self.value


def test_the_pause_is_a_jittered_fraction_of_the_ceiling() -> None:
    policy = _RetryPolicy(10, None, Backoff(base_s=0.01, max_s=1.0), FixedRng(0.25))
    conflict = txn.Conflict(b"k")
    assert policy.next_delay(conflict, 1, 0.0) == 0.25 * 0.01  # not the ceiling itself


def test_the_ceiling_doubles_with_each_attempt_up_to_max() -> None:
    policy = _RetryPolicy(100, None, Backoff(base_s=0.01, max_s=1.0), FixedRng(0.5))
    conflict = txn.Conflict(b"k")
    delays = [policy.next_delay(conflict, n, 0.0) for n in (1, 2, 3, 4)]
    assert delays == [0.005, 0.01, 0.02, 0.04]
    assert policy.next_delay(conflict, 50, 0.0) == 0.5  # capped at max_s


@pytest.mark.parametrize(
    "setting",
    [
        {"timeout_s": "5"},
        {"timeout_s": None},
        {"max_attempts": "3"},
        {"max_attempts": 2.5},
        {"retry_timeout_s": "1"},
        {"attempt_timeout_s": []},
    ],
)
def test_a_setting_of_the_wrong_type_is_invalid_argument_naming_it(
    setting: dict[str, object],
) -> None:
    """Found by review: these raised a bare TypeError from deep inside the constructor."""
    (name,) = setting
    for client_class in (txn.AsyncClient, txn.Client):
        with pytest.raises(txn.InvalidArgument, match=name):
            client_class(["127.0.0.1:1"], **setting)  # type: ignore[arg-type]


def test_bad_settings_and_arguments_are_invalid_argument() -> None:
    with pytest.raises(txn.InvalidArgument):
        txn.AsyncClient([])
    with pytest.raises(txn.InvalidArgument):
        txn.AsyncClient(["127.0.0.1:1"], max_attempts=0)
    with pytest.raises(txn.InvalidArgument):
        txn.AsyncClient(["127.0.0.1:1"], timeout_s=0)
    # Found by a client-API review: "" was taken, and meant no cluster check at all.
    with pytest.raises(txn.InvalidArgument, match="cluster_id"):
        txn.AsyncClient(["127.0.0.1:1"], cluster_id="")
    client = txn.AsyncClient("127.0.0.1:1,127.0.0.1:2")
    with pytest.raises(txn.InvalidArgument):
        client.snapshot(read_ts=0)
    tx = client.transaction()
    with pytest.raises(txn.InvalidArgument, match="encode"):
        tx.put("k", b"v")  # type: ignore[arg-type]
    with pytest.raises(txn.InvalidArgument):
        tx.put(b"k", "v")  # type: ignore[arg-type]
    with pytest.raises(txn.InvalidArgument, match="empty"):
        tx.delete(b"")
    tx.put(bytearray(b"k"), memoryview(b"v"))  # type: ignore[arg-type]
    assert tx.write_set == {b"k": b"v"}


def test_a_scan_switch_that_is_not_a_bool_is_invalid_argument() -> None:
    """Found by a user trial: `reverse="false"` (a str, from a config or a CLI flag) was
    truthy and scanned backwards without a word. Every scan refuses it before any I/O (the
    seeds here answer nothing)."""

    async def scans() -> None:
        client = txn.AsyncClient("127.0.0.1:1", timeout_s=0.5)
        bad: Any = "false"
        calls = [
            lambda: client.scan(b"a", reverse=bad),
            lambda: client.transaction().scan(b"a", reverse=bad),
            lambda: client.snapshot().scan(b"a", reverse=bad),
            lambda: client.snapshot().iterate(b"a", reverse=bad).__anext__(),
        ]
        for call in calls:
            with pytest.raises(txn.InvalidArgument, match="reverse is a bool, got str"):
                await call()
        # Found by review: an empty range returned [] before its timeout was checked.
        for end in (b"b", b"a"):
            with pytest.raises(txn.InvalidArgument, match="timeout_s is a number"):
                await client.scan(b"a", end, timeout_s="x")  # type: ignore[arg-type]
        with pytest.raises(txn.InvalidArgument, match="for_update is a bool, got int"):
            await client.transaction().scan(b"a", for_update=1)  # type: ignore[arg-type]
        await client.close()

    asyncio.run(scans())


def test_every_error_survives_pickling_with_its_fields() -> None:
    """multiprocessing, concurrent.futures.ProcessPoolExecutor and copy.copy rebuild an
    exception from its pickle: CommitUnknown (the one error that must not be lost, it may
    have committed), TooManyRetries and FencingTokenRejected failed to unpickle with a
    TypeError (their __init__ takes other arguments than the message)."""
    import copy
    import pickle

    ref = txn.TxnRef(b"\x01\x02", 3, 1_764_412_345_678_901_234)
    conflict = txn.Conflict(b"k", b"\xee", "prepare", "held", txn_id=b"\x01")
    errors: list[txn.PaxosKVError] = [
        conflict,
        txn.CommitUnknown("lost", ref=ref),
        txn.TooManyRetries(conflict, 3),
        txn.FencingTokenRejected(b"lock", 5, 7, txn_id=b"\x02"),
        txn.ServerError("bug", maybe_committed=True),
        txn.Unavailable("down"),
    ]
    for err in errors:
        for again in (pickle.loads(pickle.dumps(err)), copy.copy(err)):
            assert type(again) is type(err)
            assert str(again) == str(err)
            assert again.maybe_committed == err.maybe_committed
            assert vars(again).keys() == vars(err).keys()
    assert pickle.loads(pickle.dumps(errors[1])).ref.started_ns == ref.started_ns
    retries = pickle.loads(pickle.dumps(errors[2]))
    assert retries.attempts == 3 and retries.last_error.key == b"k"
    fence = pickle.loads(pickle.dumps(errors[3]))
    assert (fence.lock, fence.token, fence.latest_version) == (b"lock", 5, 7)


def test_a_body_error_is_not_held_back_by_an_unanswered_view_check(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Found by review: with the cluster unreachable, the check of whether the body's reads
    changed (before its own error is raised) waited a whole timeout_s, 10 s by default."""
    import asyncio
    from types import SimpleNamespace

    from txn import retry
    from txn.status import TransactionState

    monkeypatch.setattr(retry, "VIEW_CHECK_S", 0.05)

    async def never_answered() -> None:
        await asyncio.Event().wait()

    tx = SimpleNamespace(state=TransactionState.OPEN, _view_changed=never_answered)
    mine = ValueError("insufficient funds")

    async def check() -> Exception:
        return await asyncio.wait_for(retry.checked_body_error(tx, mine), 2.0)  # type: ignore[arg-type]

    assert asyncio.run(check()) is mine


def test_a_commits_unknown_outcome_names_its_cause_without_the_single_write_advice() -> None:
    """Found by review: a CommitUnknown embedded its cause's whole message, whose advice for
    a single write (re-send only a compare-and-set) contradicted the commit's own
    (txn_status); the cause is now quoted without it."""
    from router.client_errors import OUTCOME_ADVICE
    from txn.commit import _cause

    for text in (
        f"no answer from n1 before the deadline; the write may or may not have been applied, "
        f"and {OUTCOME_ADVICE}",
        f"the leader changed; {OUTCOME_ADVICE}",
    ):
        cause = _cause(txn.OutcomeUnknown(text))
        assert "compare-and-set" not in cause and cause and text.startswith(cause)
    assert _cause(txn.Unavailable("no leader")) == "no leader"


def test_txn_status_of_no_ref_says_there_is_none() -> None:
    """`tx.ref` is None before a commit starts and for an empty transaction (found by
    review: "a transaction id is bytes, got NoneType")."""
    import asyncio

    async def ask() -> None:
        client = txn.AsyncClient(["127.0.0.1:1"])
        try:
            with pytest.raises(txn.InvalidArgument, match="no transaction ref"):
                await client.txn_status(None)  # type: ignore[arg-type]
        finally:
            await client.close()

    asyncio.run(ask())
    with txn.Client(["127.0.0.1:1"]) as client:
        with pytest.raises(txn.InvalidArgument, match="no transaction ref"):
            client.txn_status(None)  # type: ignore[arg-type]
        # Found by review: "group 1 is not in the shard map" for a group id given as text.
        with pytest.raises(txn.InvalidArgument, match="group_id is an int, got str"):
            client.txn_status(b"t" * 24, group_id="1")  # type: ignore[arg-type]


def test_a_buffered_write_over_a_size_limit_is_refused_at_once() -> None:
    """As FoundationDB's set(): not only at commit, far from the line that wrote it (found
    by review)."""
    from router.limits import MAX_KEY_BYTES, MAX_VALUE_BYTES

    with txn.Client(["127.0.0.1:1"]) as client:
        tx = client.transaction()
        with pytest.raises(txn.LimitExceeded, match="MAX_VALUE_BYTES"):
            tx.put(b"k", b"v" * (MAX_VALUE_BYTES + 1))
        with pytest.raises(txn.LimitExceeded, match="MAX_KEY_BYTES"):
            tx.put(b"k" * (MAX_KEY_BYTES + 1), b"v")
        with pytest.raises(txn.LimitExceeded, match="MAX_KEY_BYTES"):
            tx.delete(b"k" * (MAX_KEY_BYTES + 1))
        tx.put(b"k", b"v" * MAX_VALUE_BYTES)  # at the limit: fine
        tx.abort()


def test_a_client_used_in_a_forked_child_says_to_make_one_per_process() -> None:
    """Found by review: the child waited, then was told only "the client is closed"."""
    import multiprocessing

    context = multiprocessing.get_context("fork")
    messages = context.Queue()
    with txn.Client(["127.0.0.1:1"]) as client:
        child = context.Process(target=_call_in_a_child, args=(client, messages))
        child.start()  # forked: the child has the client object, not its loop thread
        child.join(10)
    assert "does not survive a fork" in messages.get(timeout=10)


def test_a_client_made_in_a_child_forked_after_grpc_was_used_is_refused() -> None:
    """Found by review: a child forked from a process whose client had used gRPC crashed
    (SIGSEGV) or hung until its deadline when it made a client of its own, as the message
    above used to advise; now it is refused at once, saying to spawn."""
    import multiprocessing

    with txn.Client(["127.0.0.1:1"], timeout_s=0.2) as client, contextlib.suppress(txn.Unavailable):
        client.get(b"k")  # a channel was opened: gRPC is in use in this process
    context = multiprocessing.get_context("fork")
    messages = context.Queue()
    child = context.Process(target=_make_a_client_in_a_child, args=(messages,))
    child.start()
    child.join(10)
    assert child.exitcode == 0
    message = messages.get(timeout=10)
    assert message.startswith("InvalidArgument") and "get_context('spawn')" in message


def _make_a_client_in_a_child(messages: Any) -> None:
    try:
        txn.Client(["127.0.0.1:1"]).close()
        messages.put("no error")
    except txn.PaxosKVError as exc:
        messages.put(f"{type(exc).__name__}: {exc}")


def _call_in_a_child(client: txn.Client, messages: Any) -> None:
    try:
        client.get(b"k")
        messages.put("no error")
    except txn.ClientClosed as exc:
        messages.put(str(exc))


@pytest.mark.parametrize("lock", ["free", "held by a thread of the parent"])
def test_a_client_closed_in_a_forked_child_ends_quietly(lock: str) -> None:
    """Found by review: a child forked inside `with Client(...)` that left the block raised
    RuntimeError ("Cannot close a running event loop", its copy of the loop) instead of
    its own exit, and hung for ever when it was forked while another thread held the
    client's close lock (any thread handing a call over, or close() itself)."""
    import multiprocessing
    import threading

    context = multiprocessing.get_context("fork")
    messages = context.Queue()
    client = txn.Client(["127.0.0.1:1"])
    holding, release = threading.Event(), threading.Event()

    def hold() -> None:
        with client._close_lock:
            holding.set()
            release.wait(10)

    holder = threading.Thread(target=hold)
    if lock != "free":
        holder.start()
        assert holding.wait(10)
    try:
        child = context.Process(target=_close_in_a_child, args=(client, messages))
        child.start()
        child.join(10)
        if child.is_alive():
            child.kill()
            child.join()
    finally:
        release.set()
        if holder.is_alive():
            holder.join(10)
        client.close()
    assert child.exitcode == 0, f"the child's close hung or failed (exit {child.exitcode})"
    assert messages.get(timeout=10) == "closed"


def _close_in_a_child(client: txn.Client, messages: Any) -> None:
    try:
        client.close()
        client.close()
        messages.put("closed")
    except BaseException as exc:
        messages.put(f"{type(exc).__name__}: {exc}")


def test_run_against_seeds_that_refuse_gives_up_at_its_deadline_once() -> None:
    """Found by review: a first call waits within its deadline for seeds that refuse; it
    then said Unavailable, which run retried with a second attempt of a whole deadline."""
    import time

    started = time.monotonic()
    with (
        pytest.raises(txn.DeadlineExceeded, match="no node answered"),
        txn.Client(["127.0.0.1:1"], timeout_s=1.0) as client,
    ):
        client.run(lambda tx: tx.get(b"k"))
    assert time.monotonic() - started < 1.8


def test_run_does_not_sleep_past_its_retry_timeout() -> None:
    """retry_timeout_s bounds the pause too: a pause that would end past it is not taken
    (mutant: checking the elapsed time alone slept 0.5 s past a 1 s budget)."""
    policy = _RetryPolicy(100, 1.0, Backoff(base_s=1.0, max_s=1.0), FixedRng(0.5))
    conflict = txn.Conflict(b"k")
    assert policy.next_delay(conflict, 1, 0.4) == 0.5
    with pytest.raises(txn.TooManyRetries):
        policy.next_delay(conflict, 1, 0.6)


def test_a_retryable_error_that_may_have_committed_is_not_retried() -> None:
    """`maybe_committed` wins over `retryable` (a per-instance flag; mutant: dropping the
    check survived, the transaction-state guard of run() hiding it today)."""
    policy = _RetryPolicy(3, None, Backoff(base_s=0.01, max_s=0.02), random.Random(1))
    assert policy.next_delay(txn.Unavailable("cut off", maybe_committed=True), 1, 0.0) is None


def test_a_conflict_keeps_the_phase_the_node_named() -> None:
    """A node's Conflict says where it met the conflict (a prepare may meet a read-phase
    conflict); the client's phase is only the default (mutant: always the client's)."""
    error = kv.Error(
        code=kv.CONFLICT, message="m", conflict=kv.Conflict(key=b"k", phase="read", reason="r")
    )
    assert _conflict(error, "prepare", b"t").phase == "read"
    assert _conflict(kv.Error(code=kv.CONFLICT, message="m"), "prepare", b"t").phase == "prepare"
