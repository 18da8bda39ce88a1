"""The single-key commands' exit statuses and error lines (shard/cli.py, shard/cli_kv.py),
against the fake cluster: before, only the real-process tests saw them."""

from __future__ import annotations

from typing import Any

import pytest
from test_client_fakekv import FakeKV, error_response, fake_in_thread, on_kind

from router import kv_pb2 as kv
from router.client_errors import InvalidArgument
from shard.cli import main
from shard.cli_kv import EXIT_NO


@pytest.fixture
def fake() -> Any:
    with fake_in_thread() as fake:
        yield fake


def cli(fake: FakeKV, *argv: str) -> int:
    command, *rest = argv
    return main([command, "--cluster", fake.seeds[0], "--timeout", "5", *rest])


def test_get_prints_the_value_and_exits_0(fake: FakeKV, capsys: Any) -> None:
    assert cli(fake, "put", "apple", "red") == 0
    capsys.readouterr()
    assert cli(fake, "get", "apple") == 0
    assert capsys.readouterr().out == "red\n"


def test_get_of_an_absent_key_exits_3_and_says_so(fake: FakeKV, capsys: Any) -> None:
    assert cli(fake, "get", "nope") == EXIT_NO == 3
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err == "paxoskv: key 'nope' not found\n"


def test_a_failure_is_one_line_and_exit_1(fake: FakeKV, capsys: Any) -> None:
    fake.hook = on_kind("get", lambda r: error_response(r, kv.INVALID_ARGUMENT))
    assert cli(fake, "get", "apple") == 1
    err = capsys.readouterr().err
    assert err.startswith("paxoskv: error: ") and err.count("\n") == 1, err
    assert "Traceback" not in err


@pytest.mark.parametrize("where", ["before", "after"])
def test_debug_shows_the_traceback(fake: FakeKV, where: str) -> None:
    """`--debug` before the command or after it: the exception propagates (Python prints
    its traceback) instead of the one line."""
    fake.hook = on_kind("get", lambda r: error_response(r, kv.INVALID_ARGUMENT))
    argv = ["get", "--cluster", fake.seeds[0], "--timeout", "5", "apple"]
    argv = ["--debug", *argv] if where == "before" else [*argv, "--debug"]
    with pytest.raises(InvalidArgument):
        main(argv)


def test_status_exits_0_when_every_group_has_a_leader(fake: FakeKV, capsys: Any) -> None:
    assert cli(fake, "status") == 0
    out = capsys.readouterr().out
    assert "none" not in out and "unknown" not in out, out


def test_status_exits_1_when_a_group_has_no_leader(fake: FakeKV, capsys: Any) -> None:
    del fake.leaders[2]
    assert cli(fake, "status") == 1
    row = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("2 "))
    assert " none " in row, row
