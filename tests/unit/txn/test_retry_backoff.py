"""The retry policy's pause: full jitter of a ceiling that doubles per attempt."""

from __future__ import annotations

import random

import txn
from router.cache import Backoff
from txn.retry import _RetryPolicy


class FixedRng(random.Random):
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
