"""Hypothesis profiles: `dev` (default), `ci` (bounded for CI), `nightly` (thousands of runs,
with no per-test timeout for the property tests).

Select with HYPOTHESIS_PROFILE=ci|dev|nightly. Long soaks are behind PAXOSKV_SOAK=1.

Stop signals a run inherited ignored (nohup, a background job) are given back their
defaults, so that the tests of Ctrl-C and SIGHUP, and the processes they start, get them.

The client variables of a developer's shell (PAXOSKV_CLUSTER, PAXOSKV_TLS_*) are removed
for the session: clients that take their defaults would otherwise dial that cluster or
speak TLS to the tests' plaintext clusters.
"""

from __future__ import annotations

import os
import signal

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
PROFILE = os.environ.get("HYPOTHESIS_PROFILE", "dev")
#: A nightly property test's bound: hours, not unbounded, so a hung one still ends the run.
NIGHTLY_TIMEOUT_S = 6 * 3600
settings.load_profile(PROFILE)

for _name in (ENV_CLUSTER, ENV_CA, ENV_CERT, ENV_KEY):
    os.environ.pop(_name, None)

# A run started under `nohup`, or in the background by a shell without job control,
# inherits SIGHUP or SIGINT ignored, and so do the processes its tests start; an ignored
# stop signal stays ignored by design (shard/cli_signals.py), so the tests of Ctrl-C, SIGHUP
# and their exit statuses failed (a session 64 CI run, `(nohup bash .ci/run &)`). The
# session gets the default dispositions back, and its children inherit them.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)
if signal.getsignal(signal.SIGHUP) is signal.SIG_IGN:
    signal.signal(signal.SIGHUP, signal.SIG_DFL)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every real-process test goes to one pytest-xdist worker (`--dist loadgroup`), so
    that no two clusters of node processes share the two cores at once, and a cluster
    never shares them with more than one CPU-bound simulation."""
    for item in items:
        if item.get_closest_marker("cluster") is not None:
            item.add_marker(pytest.mark.xdist_group("cluster"))
        if PROFILE == "nightly" and getattr(
            getattr(item, "obj", None), "is_hypothesis_test", False
        ):
            # 5,000 examples of a cluster property take an hour, not the 300 s per test that
            # bounds a hung test otherwise: the nightly run stopped every such test there.
            # Appended, so a test's own timeout marker, if it has one, still wins.
            item.add_marker(pytest.mark.timeout(NIGHTLY_TIMEOUT_S))
