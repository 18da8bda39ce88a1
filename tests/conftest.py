"""Hypothesis profiles: `dev` (default), `ci` (bounded for CI), `nightly` (thousands of runs).

Select with HYPOTHESIS_PROFILE=ci|dev|nightly. Long soaks are behind PAXOSKV_SOAK=1.
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

_COMMON = dict(
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    print_blob=True,
)
settings.register_profile("ci", max_examples=60, derandomize=True, **_COMMON)
settings.register_profile("dev", max_examples=100, **_COMMON)
settings.register_profile("nightly", max_examples=5000, **_COMMON)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "dev"))
