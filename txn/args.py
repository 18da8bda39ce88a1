"""The client API's arguments: their checks (a bad one is an InvalidArgument, never a bare
ValueError or TypeError from deeper down), and the default scan limit."""

from __future__ import annotations

from router import keys
from txn.errors import InvalidArgument

#: What a scan without a limit asks for: every key of its range (fetched page by page).
NO_LIMIT = 2**62


def _as_key(key: object, what: str = "key") -> bytes:
    if isinstance(key, bytes):
        data = key
    elif isinstance(key, bytearray | memoryview):
        data = bytes(key)
    else:
        example = "'100'" if what == "value" else "'user/1'"
        hint = (
            f" (encode a str {what} first, e.g. {example}.encode())" if isinstance(key, str) else ""
        )
        raise InvalidArgument(f"a {what} is bytes, got {type(key).__name__}{hint}")
    if what == "key" and not data:
        raise InvalidArgument("empty key: keys must be at least 1 byte")
    return data


def _as_value(value: object) -> bytes:
    return _as_key(value, "value")


def prefix_end(prefix: bytes) -> bytes | None:
    """The end of a scan of every key that starts with `prefix`: `tx.scan(p, prefix_end(p))`.
    None ("no end" to a scan) for a prefix of only 0xff bytes, or an empty one.

    Raises:
        InvalidArgument: `prefix` is not bytes.
    """
    return keys.prefix_end(_as_key(prefix, "prefix"))


_U64_END = 1 << 64


def _as_u64(value: object, what: str) -> int:
    """A version, timestamp or token: an int in [0, 2**64)."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidArgument(f"{what} is an int, got {type(value).__name__}")
    if not 0 <= value < _U64_END:
        raise InvalidArgument(f"{what} must be in [0, 2**64), got {value}")
    return value


def _as_flag(value: object, what: str) -> bool:
    """A keyword switch such as `reverse`: a bool, so that a str "false" is not read as true."""
    if not isinstance(value, bool):
        raise InvalidArgument(f"{what} is a bool, got {type(value).__name__}")
    return value


def _as_limit(limit: object) -> int:
    """A scan limit: a positive int, or None for every key of the range (NO_LIMIT).

    Found by a client-API review: a default of 1,000 cut longer ranges without a word, and
    0 or a negative limit returned nothing where FoundationDB reads 0 as no limit."""
    if limit is None:
        return NO_LIMIT
    if isinstance(limit, bool) or not isinstance(limit, int):
        raise InvalidArgument(f"a scan limit is an int or None, got {type(limit).__name__}")
    if limit < 1:
        raise InvalidArgument(
            f"a scan limit is at least 1 (None: every key of the range), got {limit}"
        )
    return limit


def _as_timeout(timeout_s: object, what: str = "timeout_s") -> float | None:
    """A timeout in seconds (> 0), or None (a call's: the client's default)."""
    if timeout_s is None:
        return None
    if isinstance(timeout_s, bool) or not isinstance(timeout_s, int | float):
        raise InvalidArgument(f"{what} is a number of seconds, got {type(timeout_s).__name__}")
    if not timeout_s > 0:
        raise InvalidArgument(f"{what} must be > 0, got {timeout_s}")
    return float(timeout_s)


def _as_run_timeout(timeout_s: object) -> float:
    """`run_within`'s timeout in seconds (> 0): unlike a call's, it has no default."""
    bound = _as_timeout(timeout_s)
    if bound is None:
        raise InvalidArgument("run_within needs a timeout_s in seconds, got None: use run")
    return bound
