"""Fixtures shared by the transaction client's tests."""

from __future__ import annotations

import signal
from collections.abc import Iterator

import pytest


@pytest.fixture
def python_sigint() -> Iterator[None]:
    """Python's own SIGINT handler, whatever the run inherited or an earlier test left: a
    test run started in the background by a shell without job control has SIGINT ignored
    (POSIX), and a test's own Ctrl-C was dropped: `paxoskv txn` committed (a session 39
    CI run, `(nohup bash .ci/run &)`), and a sync commit waited out its deadline."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
