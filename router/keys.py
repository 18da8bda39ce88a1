"""The key range of a prefix, for scans: `tx.scan(prefix, prefix_end(prefix))`."""

from __future__ import annotations


def prefix_end(prefix: bytes) -> bytes | None:
    """The smallest key greater than every key that starts with `prefix`, as the `end` of a
    scan (exclusive); None, which a scan reads as "no end", when there is none (a prefix of
    only 0xff bytes, or empty). FoundationDB calls it `strinc`. The client's `txn.prefix_end`
    checks its argument first."""
    trimmed = prefix.rstrip(b"\xff")
    if not trimmed:
        return None
    return trimmed[:-1] + bytes([trimmed[-1] + 1])
