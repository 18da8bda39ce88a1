"""The unary client service's backstop: a request the core never answers gets a typed
error, and a write's error does not claim that nothing happened."""

from __future__ import annotations

import asyncio
from typing import Any

from router import kv_pb2 as kv
from shard.server import KVServicer


def silent_servicer() -> KVServicer:
    """A service whose core takes every request and never answers (a stuck node)."""
    return KVServicer(core=None, submit=lambda request, reply: None, node_name="n1", timeout_s=0.01)  # type: ignore[arg-type]


def call(method: str, request: Any) -> Any:
    return asyncio.run(getattr(silent_servicer(), method)(request, None))


def test_an_unanswered_write_is_outcome_unknown() -> None:
    for method, request in (
        ("Put", kv.PutRequest(key=b"k", value=b"v")),
        ("Delete", kv.DeleteRequest(key=b"k")),
        ("CompareAndSet", kv.CasRequest(key=b"k", new_value=b"v")),
    ):
        error = call(method, request).error
        assert error.code == kv.OUTCOME_UNKNOWN, (method, error)
        assert "may or may not" in error.message


def test_an_unanswered_read_is_unavailable() -> None:
    for method, request in (("Get", kv.GetRequest(key=b"k")), ("Scan", kv.ScanRequest())):
        assert call(method, request).error.code == kv.UNAVAILABLE
