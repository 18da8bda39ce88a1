"""The hybrid logical clock (txn/hlc.py)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

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
