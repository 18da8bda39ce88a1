"""`ttl_ms_of`: a write's `ttl_s` in whole milliseconds, or a typed refusal."""

from __future__ import annotations

import math

import pytest

from router.client_errors import InvalidArgument
from router.limits import MAX_TTL_MS
from router.ttl import ttl_ms_of


@pytest.mark.parametrize(
    ("ttl_s", "ttl_ms"),
    [(None, 0), (1e-7, 1), (0.57, 570), (0.5701, 571), (5, 5_000), (MAX_TTL_MS / 1000, MAX_TTL_MS)],
)
def test_a_ttl_is_rounded_up_to_a_whole_millisecond(ttl_s: float | None, ttl_ms: int) -> None:
    assert ttl_ms_of(ttl_s) == ttl_ms


@pytest.mark.parametrize(
    "ttl_s",
    [0, -1, math.nan, math.inf, True, "5", MAX_TTL_MS // 1000 + 1, 1e306, 1.7e308, 10**400],
)
def test_a_ttl_that_is_not_a_time_to_keep_is_refused_with_a_typed_error(ttl_s: object) -> None:
    """Found by review: a huge finite float (1e306) overflowed to infinity in the
    conversion and raised OverflowError."""
    with pytest.raises(InvalidArgument, match="ttl_s"):
        ttl_ms_of(ttl_s)
