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
    assert err.rstrip().endswith("read on with --after=kiwi)")
    assert scan(fake, "--limit", "2", "--after", "kiwi") == 0  # the next page, as told
    assert capsys.readouterr() == ("plum\tPLUM\n", "")

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
    assert err.rstrip().endswith("read on with --end=kiwi)")
    assert scan(fake, "--reverse", "--end", "kiwi", "--limit", "1") == 0
    assert capsys.readouterr() == ("apple\tAPPLE\n", "")


def test_the_next_page_of_keys_printed_escaped_is_told_in_hex(fake: FakeKV, capsys: Any) -> None:
    """Found by a user trial: the note said to scan on "with it as --end", and a key printed
    escaped (a tab, bytes that are not UTF-8) pasted back is other bytes. The note gives the
    option itself, in hex when the text form is escaped, and following it reads on."""
    keys = [b"a\tb", b"a\xffc", b"a z"]
    for key in keys:
        assert main(["put", "--cluster", fake.seeds[0], "--hex", key.hex(), "00"]) == 0
    capsys.readouterr()
    assert scan(fake, "--limit", "1") == 0
    out, err = capsys.readouterr()
    assert out == "a\\tb\t\\x00\n"
    assert err.rstrip().endswith(f"--hex (every key option in hex) and --after={keys[0].hex()})")
    assert scan(fake, "--limit", "1", "--hex", "--after", keys[0].hex()) == 0
    out, err = capsys.readouterr()
    assert out == f"{b'a z'.hex()}\t00\n"
    assert err.rstrip().endswith(f"--after={b'a z'.hex()})")
    assert scan(fake, "--limit", "1", "--after", "a z") == 0  # plain text: quoted for a shell
    out, err = capsys.readouterr()
    assert out == "a\\xffc\t\\x00\n" and err == ""
    assert scan(fake, "--reverse", "--limit", "2") == 0
    assert capsys.readouterr()[1].rstrip().endswith("read on with '--end=a z')")


def test_an_end_before_the_start_is_a_usage_error(fake: FakeKV, capsys: Any) -> None:
    """Found by a user trial: `--reverse --start z --end a` (the bounds swapped, as if
    --reverse swapped them) listed nothing without a word."""
    assert scan(fake, "--reverse", "--start", "z", "--end", "a") == 2
    out, err = capsys.readouterr()
    assert out == "" and "--end must come after --start" in err and err.count("\n") == 1
    # Found by review: --after or --prefix moved the start past --end, and nothing was said.
    for argv in (["--after", "z", "--end", "m", "--reverse"], ["--prefix", "q", "--end", "k"]):
        assert scan(fake, *argv) == 2
        out, err = capsys.readouterr()
        assert out == "" and "leave an empty range" in err


def test_the_next_page_of_a_key_that_looks_like_an_option(fake: FakeKV, capsys: Any) -> None:
    """Found by review: the note said `--after -foo`, which argparse reads as an option
    without its argument; one word `--after=-foo` is taken as told, in both directions."""
    for key in ("-foo", "-goo", "a"):
        assert main(["put", "--cluster", fake.seeds[0], "--", key, "v"]) == 0
    capsys.readouterr()
    assert scan(fake, "--limit", "1") == 0
    out, err = capsys.readouterr()
    assert out == "-foo\tv\n" and err.rstrip().endswith("read on with --after=-foo)")
    assert scan(fake, "--limit", "1", "--after=-foo") == 0
    out, err = capsys.readouterr()
    assert out == "-goo\tv\n" and err.rstrip().endswith("read on with --after=-goo)")
    assert scan(fake, "--reverse", "--limit", "2") == 0
    out, err = capsys.readouterr()
    assert out == "a\tv\n-goo\tv\n" and err.rstrip().endswith("read on with --end=-goo)")
    assert scan(fake, "--reverse", "--limit", "2", "--end=-goo") == 0
    assert capsys.readouterr() == ("-foo\tv\n", "")
