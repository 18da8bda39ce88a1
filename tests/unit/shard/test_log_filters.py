"""A peer that went away mid-write is no error of the node's (shard.runtime.PeerGoneFilter)."""

from __future__ import annotations

import json
import logging
import sys

import pytest

from shard.runtime import PeerGoneFilter, setup_logging

GONE = "ExecuteBatchError raised in core by servicer method [/paxoskv.kv.KV/Batch]"


def _logged(level: str, capsys: pytest.CaptureFixture[str]) -> list[dict[str, object]]:
    root = logging.getLogger()
    saved_handlers, saved_level = root.handlers[:], root.level
    grpc_logger = logging.getLogger("grpc._cython.cygrpc")
    saved_filters = grpc_logger.filters[:]
    try:
        setup_logging(level)
        try:
            raise RuntimeError("Failed execute_batch")
        except RuntimeError:
            grpc_logger.error(GONE, exc_info=sys.exc_info())
        grpc_logger.error("something else went wrong")
    finally:
        root.handlers[:], root.level = saved_handlers, saved_level
        grpc_logger.filters[:] = saved_filters
    return [json.loads(line) for line in capsys.readouterr().err.splitlines()]


def test_a_peer_gone_mid_write_logs_no_error_traceback(capsys: pytest.CaptureFixture[str]) -> None:
    # Before: an error record with the whole Cython traceback, once per cancelled stream.
    records = _logged("info", capsys)
    assert [r["msg"] for r in records] == ["something else went wrong"]
    assert records[0]["level"] == "error"


def test_at_debug_it_stays_as_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    records = _logged("debug", capsys)
    gone = [r for r in records if r["msg"] == GONE]
    assert len(gone) == 1 and gone[0]["level"] == "debug" and "exc" not in gone[0]


def test_setup_logging_installs_the_filter_once() -> None:
    grpc_logger = logging.getLogger("grpc._cython.cygrpc")
    root = logging.getLogger()
    saved = root.handlers[:], root.level, grpc_logger.filters[:]
    try:
        setup_logging("info")
        setup_logging("info")
        assert sum(isinstance(f, PeerGoneFilter) for f in grpc_logger.filters) == 1
    finally:
        root.handlers[:], root.level = saved[0], saved[1]
        grpc_logger.filters[:] = saved[2]
