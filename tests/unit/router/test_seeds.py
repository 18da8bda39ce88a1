"""`router.seeds`: the seed addresses a user gives (`--cluster`, PAXOSKV_CLUSTER) are checked
before any connection, each refusal saying what is wrong."""

from __future__ import annotations

import pytest

from router.client_errors import InvalidArgument
from router.seeds import check_address, parse_addresses


@pytest.mark.parametrize("address", ["h:1", "127.0.0.1:65535", "[::1]:7000"])
def test_host_and_port_in_range_are_accepted(address: str) -> None:
    assert check_address(address) == address


@pytest.mark.parametrize(
    ("address", "match"),
    [
        ("h:65536", "1-65535"),
        ("h:0", "1-65535"),
        (":7000", "expected HOST:PORT"),
        ("h:", "expected HOST:PORT"),
        ("http://h:1", "without a scheme"),
        ("a:1 b:2", "separate several with commas"),
    ],
)
def test_bad_addresses_are_refused_saying_why(address: str, match: str) -> None:
    with pytest.raises(InvalidArgument, match=match):
        check_address(address)


def test_blank_entries_between_commas_are_ignored() -> None:
    assert parse_addresses(" a:1, ,b:2,") == ["a:1", "b:2"]
