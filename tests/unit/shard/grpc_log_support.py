"""What the tests that run a grpc.aio server under `asyncio.run` and read its log share."""

from __future__ import annotations

import logging


def is_loop_teardown(record: logging.LogRecord) -> bool:
    """grpc.aio's poller thread may hand one last wake-up to a loop `asyncio.run` has just
    closed (logged "Event loop is closed" from asyncio, about one run in a few hundred under
    load): that is a test's teardown, not the server's answer to a request."""
    told = record.getMessage()
    if record.exc_info and record.exc_info[1] is not None:
        told += str(record.exc_info[1])
    return "Event loop is closed" in told


def complaints(
    records: list[logging.LogRecord], level: int | None = None
) -> list[logging.LogRecord]:
    """The records with a traceback, or at `level` or above when given, that are not a
    loop's teardown."""
    return [
        r
        for r in records
        if (r.exc_info or (level is not None and r.levelno >= level)) and not is_loop_teardown(r)
    ]
