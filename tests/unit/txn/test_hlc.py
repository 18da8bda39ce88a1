"""The hybrid logical clock (txn/hlc.py)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

import txn
from txn.hlc import LOGICAL_BITS, HybridClock, physical_us

WALL_NS = st.integers(min_value=0, max_value=2**50)


@given(st.lists(st.tuples(st.booleans(), WALL_NS), max_size=30))
def test_now_is_above_everything_issued_or_observed_and_at_least_the_wall(
    steps: list[tuple[bool, int]],
) -> None:
    clock, seen = HybridClock(), 0
    for is_observe, value in steps:
        if is_observe:
            clock.observe(value)
            seen = max(seen, value)
            continue
        peeked = clock.peek(value)
        assert clock.last == seen, "peek moved the clock"
        ts = clock.now(value)
        assert ts == peeked and ts > seen and physical_us(ts) >= value // 1000
        seen = ts


def test_a_stalled_wall_clock_advances_the_logical_part() -> None:
    clock = HybridClock()
    first = clock.now(5_000)
    assert clock.now(5_000) == first + 1 and first == 5 << LOGICAL_BITS


@given(
    st.integers(min_value=1_000, max_value=2**50),
    st.integers(min_value=0, max_value=(1 << LOGICAL_BITS) - 1),
)
def test_wall_time_and_timestamps_convert_both_ways(wall_ns: int, logical: int) -> None:
    """The public helpers (txn.ts_at_wall_ns, txn.wall_ns_of): a timestamp stands for its
    wall time to the microsecond, and the first one at a wall time is what a clock at that
    time hands out first."""
    ts = txn.ts_at_wall_ns(wall_ns)
    assert physical_us(ts) == wall_ns // 1000 and ts & ((1 << LOGICAL_BITS) - 1) == 0
    assert ts == HybridClock().now(wall_ns)
    assert txn.ts_at_wall_ns(wall_ns + 1000) > ts | logical
    assert txn.wall_ns_of(ts | logical) == wall_ns // 1000 * 1000
