"""Fixtures shared by the shard unit tests."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest


@pytest.fixture
def node_logging() -> Iterator[None]:
    """`paxoskv node` sets up the root logger (JSON lines on stderr): put it back after."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
