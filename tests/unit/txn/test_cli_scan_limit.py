"""`paxoskv scan --limit N` against the fake cluster: when more keys follow, a note on stderr
says so (the default limit of 1,000 used to cut a listing short without a word); stdout
keeps exactly the N lines."""

from __future__ import annotations

from typing import Any

import pytest
from test_client_fakekv import FakeKV, fake_in_thread

from shard.cli import main


@pytest.fixture
def fake() -> Any:
    with fake_in_thread() as fake:
        yield fake


def scan(fake: FakeKV, *argv: str) -> int:
    return main(["scan", "--cluster", fake.seeds[0], "--timeout", "5", *argv])


def test_a_cut_short_listing_says_so(fake: FakeKV, capsys: Any) -> None:
    for key in ("apple", "kiwi", "plum"):  # three groups
        assert main(["put", "--cluster", fake.seeds[0], key, key.upper()]) == 0
    capsys.readouterr()
    assert scan(fake, "--limit", "2") == 0
    out, err = capsys.readouterr()
    assert out == "apple\tAPPLE\nkiwi\tKIWI\n"
    assert err.startswith("paxoskv: scan: stopped at --limit 2; more keys follow")

    for limit in ("3", "1000"):  # everything fits: no note
        assert scan(fake, "--limit", limit) == 0
        out, err = capsys.readouterr()
        assert out.count("\n") == 3 and err == ""


def test_a_reverse_listing_runs_from_the_last_key_down(fake: FakeKV, capsys: Any) -> None:
    for key in ("apple", "kiwi", "plum"):  # three groups
        assert main(["put", "--cluster", fake.seeds[0], key, key.upper()]) == 0
    capsys.readouterr()
    assert scan(fake, "--reverse") == 0
    assert capsys.readouterr() == ("plum\tPLUM\nkiwi\tKIWI\napple\tAPPLE\n", "")
    assert scan(fake, "--reverse", "--end", "plum", "--limit", "1") == 0
    out, err = capsys.readouterr()
    assert out == "kiwi\tKIWI\n"
    assert err.startswith("paxoskv: scan: stopped at --limit 1; more keys follow")
    assert err.rstrip().endswith("with it as --end)")
