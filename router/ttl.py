"""A time to live, on the client's side: the `ttl_s` a write takes, and the node's answer."""

from __future__ import annotations

import math

from router import kv_pb2 as kv
from router.client_errors import InvalidArgument, ServerError
from router.limits import MAX_TTL_S


def ttl_ms_of(ttl_s: object) -> int:
    """The `ttl_ms` a write request carries for `ttl_s` seconds, rounded up to a whole
    millisecond (None: 0, the value lives for ever).

    Raises:
        InvalidArgument: not a number of seconds above 0, or over MAX_TTL_S.
    """
    if ttl_s is None:
        return 0
    if isinstance(ttl_s, bool) or not isinstance(ttl_s, int | float):
        raise InvalidArgument(f"ttl_s is a number of seconds, got {type(ttl_s).__name__}")
    if not 0 < ttl_s < math.inf:  # also refuses nan
        raise InvalidArgument(f"ttl_s must be a number of seconds above 0, got {ttl_s!r}")
    # Compared before it is multiplied (found by review: ttl_s=1e306 overflowed to
    # infinity, an OverflowError); shown as given (a huge int has no float form).
    if ttl_s > MAX_TTL_S:
        shown = f"{ttl_s:g}" if isinstance(ttl_s, float) else str(ttl_s)
        raise InvalidArgument(
            f"ttl_s of {shown} s is over the longest time to live, {MAX_TTL_S:,} s "
            "(MAX_TTL_S: a year and a day)"
        )
    # Rounded to the microsecond first (0.57 * 1000 is 570.0000000000001, not 571 ms), and
    # at least 1 ms: 0 would mean for ever (found by review: ttl_s=1e-7 was that).
    return max(1, math.ceil(round(ttl_s * 1000, 3)))


def check_expiry(ttl_ms: int, expires_at: int, key: bytes) -> None:
    """A write with a time to live must come back with the deadline the node recorded.

    Raises:
        ServerError: it did not: the node predates values with a time to live (peer protocol
            7) and wrote the value without one.
    """
    if ttl_ms and not expires_at:
        raise ServerError(
            f"the leader of {key!r} predates values with a time to live: the value was written "
            "without one and will not expire; upgrade the nodes, then write it again"
        )


def found_expiry(got: kv.GetResponse, key: bytes) -> int:
    """The expiry deadline of the value a get found (0: it lives for ever).

    Raises:
        ServerError: the answer has none: the node predates reading it.
    """
    if not got.HasField("expires_at"):
        raise ServerError(
            f"the node that answered for {key!r} predates reading a value's time to live; "
            "upgrade the nodes"
        )
    return got.expires_at


def cas_ttl_ms(ttl_s: object, delete: bool, touch: bool) -> int:
    """`ttl_ms_of` for a compare-and-set, whose delete takes no time to live and whose
    touch needs one.

    Raises:
        InvalidArgument: as `ttl_ms_of`, a `ttl_s` with `delete`, or none with `touch`.
    """
    if delete and ttl_s is not None:
        raise InvalidArgument("a compare-and-set that deletes takes no ttl_s")
    if touch and ttl_s is None:
        raise InvalidArgument("a touch needs the ttl_s the value lives from now on")
    return ttl_ms_of(ttl_s)
