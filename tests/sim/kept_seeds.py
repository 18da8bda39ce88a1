"""Kept seeds: a test that a checker catches a rare mutant runs it on seeds that reach it."""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import pytest

Seed = TypeVar("Seed")


def caught_in_one_of(
    seeds: Sequence[Seed],
    run: Callable[[Seed], Any],
    match: str,
    violation: type[AssertionError],
) -> None:
    """A mutant's `violation` matching `match` shows in one of `seeds` (each what `run`
    takes: a seed, or a whole run's description). Several seeds are kept: any change of
    message timing moves which runs reach a rare mutant, and a list that fails only when
    all of them stop needs re-picking less often."""
    for seed in seeds:
        try:
            run(seed)
        except violation as exc:
            assert re.search(match, str(exc)), exc
            return
    pytest.fail(f"none of seeds {seeds} showed {match!r}: re-pick them")
