"""The client API's key and value arguments: their checks, and the default scan limit."""

from __future__ import annotations

from txn.errors import InvalidArgument

__all__ = ["DEFAULT_SCAN_LIMIT"]

DEFAULT_SCAN_LIMIT = 1000


def _as_key(key: object, what: str = "key") -> bytes:
    if isinstance(key, bytes):
        data = key
    elif isinstance(key, bytearray | memoryview):
        data = bytes(key)
    else:
        hint = " (encode str keys, e.g. 'user/1'.encode())" if isinstance(key, str) else ""
        raise InvalidArgument(f"a {what} is bytes, got {type(key).__name__}{hint}")
    if what == "key" and not data:
        raise InvalidArgument("empty key: keys must be at least 1 byte")
    return data


def _as_value(value: object) -> bytes:
    return _as_key(value, "value")
