"""The sync Client closed from one thread while another thread's call is in flight: the
caller gets ClientClosed, or CommitUnknown for a commit (found by review: close() cancels
the loop's tasks, and callers got concurrent.futures.CancelledError, which is no paxoskv
error and hid that a commit may have happened)."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from test_client_fakekv import DROP, FakeKV, error_response, fake_in_thread, sync_client

from router import kv_pb2 as kv
from txn import Client, ClientClosed, CommitUnknown

DEADLINE_S = 10.0


@pytest.fixture
def fake() -> Iterator[FakeKV]:
    with fake_in_thread() as fake:
        yield fake


def _close_while_in_flight(fake: FakeKV, op: Callable[[Client], Any], kind: str) -> BaseException:
    client = sync_client(fake, timeout_s=30.0, attempt_timeout_s=10.0)
    client.put(b"apple", b"1")  # connected
    seen = fake.count(kind)
    got: list[BaseException] = []

    def call() -> None:
        try:
            op(client)
        except BaseException as exc:
            got.append(exc)

    caller = threading.Thread(target=call)
    caller.start()
    end = time.monotonic() + DEADLINE_S
    while fake.count(kind) == seen:  # the call reached a node and waits there
        assert time.monotonic() < end and not got, got
        time.sleep(0.01)
    client.close()
    caller.join(DEADLINE_S)
    assert not caller.is_alive(), "the caller still waits after close"
    return got[0]


def test_a_read_waiting_for_its_answer_gets_client_closed(fake: FakeKV) -> None:
    fake.hook = lambda node, req: DROP if req.WhichOneof("op") == "get" else None
    exc = _close_while_in_flight(fake, lambda c: c.get(b"apple"), "get")
    assert isinstance(exc, ClientClosed), repr(exc)


def test_a_read_backing_off_gets_client_closed(fake: FakeKV) -> None:
    fake.hook = lambda node, req: (
        error_response(req, kv.UNAVAILABLE) if req.WhichOneof("op") == "get" else None
    )
    exc = _close_while_in_flight(fake, lambda c: c.get(b"apple"), "get")
    assert isinstance(exc, ClientClosed), repr(exc)


def test_a_commit_in_flight_gets_commit_unknown_with_its_ref(fake: FakeKV) -> None:
    # Group 3's Prepare is applied but its answer lost: the outcome is unknown.
    fake.hook = lambda node, req: (
        DROP if req.WhichOneof("op") == "prepare" and req.prepare.header.group_id == 3 else None
    )

    def commit(client: Client) -> None:
        with client.transaction() as tx:
            tx.put(b"apple", b"x")
            tx.put(b"plum", b"y")

    exc = _close_while_in_flight(fake, commit, "prepare")
    assert isinstance(exc, CommitUnknown), repr(exc)
    assert exc.ref is not None


@pytest.mark.parametrize("loop_closed", [True, False])
def test_a_call_that_passed_the_closed_check_as_close_ran_gets_client_closed(
    fake: FakeKV, monkeypatch: pytest.MonkeyPatch, loop_closed: bool
) -> None:
    """A call checks `_closed`, then hands its coroutine to the loop thread; close() from
    another thread may run in between. The call then raised RuntimeError ("Event loop is
    closed"), or, when the loop had stopped but was not closed yet, waited forever for a
    coroutine that no loop would ever run (found by review)."""
    client = sync_client(fake)
    client.put(b"apple", b"1")  # connected
    submit = asyncio.run_coroutine_threadsafe

    def close_first(coro: Any, loop: asyncio.AbstractEventLoop) -> Any:
        monkeypatch.setattr(asyncio, "run_coroutine_threadsafe", submit)
        if loop_closed:
            client.close()
        else:  # close()'s steps up to the loop's stop, its thread ended, the loop not closed
            client._call(client._async.close())
            client._closed = True
            loop.call_soon_threadsafe(loop.stop)
            client._thread.join(DEADLINE_S)
        return submit(coro, loop)

    got: list[BaseException] = []

    def call() -> None:
        try:
            client.get(b"apple")
        except BaseException as exc:
            got.append(exc)

    monkeypatch.setattr(asyncio, "run_coroutine_threadsafe", close_first)
    caller = threading.Thread(target=call, daemon=True)  # it may never end
    caller.start()
    caller.join(DEADLINE_S)
    assert not caller.is_alive(), "the caller waits forever after close"
    assert len(got) == 1 and isinstance(got[0], ClientClosed), got
    client.close()
    if not client._loop.is_closed():
        # Run what was handed to the stopped loop (it meets the closed client), then close
        # the loop, or its never-started coroutine warns in a later test.
        client._loop.run_until_complete(asyncio.sleep(0.01))
        client._loop.close()


@pytest.mark.parametrize("op", ["put_fenced", "delete_fenced"])
def test_a_fenced_write_cut_off_by_close_may_have_committed(fake: FakeKV, op: str) -> None:
    """`put_fenced` / `delete_fenced` run a whole commit in one call: closing cut it off
    with a ClientClosed whose `maybe_committed` was False, though the write may have been
    applied (found by review: 42 applied writes reported as not committed)."""
    fake.hook = lambda node, req: DROP if req.WhichOneof("op") == "commit_one_phase" else None

    def write(client: Client) -> None:
        if op == "put_fenced":
            client.put_fenced(b"apple", b"x", lock=b"apple-lock", token=7)
        else:
            client.delete_fenced(b"apple", lock=b"apple-lock", token=7)

    exc = _close_while_in_flight(fake, write, "commit_one_phase")
    # ClientClosed when close() cancelled the call, CommitUnknown when the closing client
    # failed the commit's request first: either way it may have been applied.
    assert isinstance(exc, ClientClosed | CommitUnknown), repr(exc)
    assert exc.maybe_committed, "a cut-off write must say it may have been applied"
