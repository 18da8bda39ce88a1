"""The sync Client closed from one thread while another thread's call is in flight: the
caller gets ClientClosed, or CommitUnknown for a commit (found by review: close() cancels
the loop's tasks, and callers got concurrent.futures.CancelledError, which is no paxoskv
error and hid that a commit may have happened)."""

from __future__ import annotations

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
