"""Hypothesis profiles: `dev` (default), `ci` (bounded for CI), `nightly` (thousands of runs).

Select with HYPOTHESIS_PROFILE=ci|dev|nightly. Long soaks are behind PAXOSKV_SOAK=1.

The client variables of a developer's shell (PAXOSKV_CLUSTER, PAXOSKV_TLS_*) are removed
for the session: clients that take their defaults would otherwise dial that cluster or
speak TLS to the tests' plaintext clusters.
"""

from __future__ import annotations

import os
import signal
import threading
import warnings
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, settings

from router.env import ENV_CA, ENV_CERT, ENV_CLUSTER, ENV_KEY

_COMMON = dict(
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    print_blob=True,
)
settings.register_profile("ci", max_examples=60, derandomize=True, **_COMMON)
settings.register_profile("dev", max_examples=100, **_COMMON)
settings.register_profile("nightly", max_examples=5000, **_COMMON)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "dev"))

for _name in (ENV_CLUSTER, ENV_CA, ENV_CERT, ENV_KEY):
    os.environ.pop(_name, None)


@pytest.fixture(autouse=True)
def _sigint_as_python_starts_it(request: pytest.FixtureRequest) -> Iterator[None]:
    """Each test starts with SIGINT raising KeyboardInterrupt in the main thread, unblocked.

    A test that leaves another handler (an event loop's, never closed) or a blocked SIGINT
    makes a later test of Ctrl-C wait for a signal that never comes: twice in CI the
    Ctrl-C-during-commit test waited out its deadline after the whole suite, never alone.
    A change is undone and named in a warning, so the test that made it can be found.
    """
    yield
    if threading.current_thread() is not threading.main_thread():
        return
    changed = []
    if signal.getsignal(signal.SIGINT) is not signal.default_int_handler:
        changed.append(f"SIGINT handler {signal.getsignal(signal.SIGINT)!r}")
        signal.signal(signal.SIGINT, signal.default_int_handler)
    if signal.SIGINT in signal.pthread_sigmask(signal.SIG_BLOCK, []):
        changed.append("SIGINT blocked")
        signal.pthread_sigmask(signal.SIG_UNBLOCK, [signal.SIGINT])
    if changed:
        warnings.warn(f"{request.node.nodeid} left {', '.join(changed)} (undone)", stacklevel=1)
