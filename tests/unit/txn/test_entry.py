"""`client.get_entry`'s answer: `txn.Entry` and the node's deadline it is built from."""

from __future__ import annotations

import pytest

from router import kv_pb2 as kv
from router.client_errors import ServerError
from router.ttl import found_expiry
from txn import Entry, ts_at_wall_ns

NOW_NS = 1_800_000_000_000_000_000


def test_the_seconds_left_run_from_the_wall_clock_time_of_the_deadline() -> None:
    entry = Entry(b"v", 5, ts_at_wall_ns(NOW_NS + 2_500_000_000))
    assert entry.ttl_left_s(NOW_NS) == pytest.approx(2.5)
    assert entry.ttl_left_s(NOW_NS + 3_000_000_000) == 0.0  # due, not negative


def test_a_value_that_lives_for_ever_has_no_seconds_left() -> None:
    assert Entry(b"v", 5).ttl_left_s(NOW_NS) is None
    assert Entry(b"v", 5, 0).ttl_left_s() is None


def test_an_answer_without_a_deadline_is_from_a_node_too_old_for_it() -> None:
    assert found_expiry(kv.GetResponse(found=True, value=b"v", version=3, expires_at=0), b"k") == 0
    assert found_expiry(kv.GetResponse(found=True, value=b"v", version=3, expires_at=9), b"k") == 9
    with pytest.raises(ServerError, match="predates reading a value's time to live; upgrade"):
        found_expiry(kv.GetResponse(found=True, value=b"v", version=3), b"k")
