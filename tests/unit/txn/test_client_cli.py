"""`paxoskv txn` (shard/cli_txn.py) against the fake cluster, and its step parser."""

from __future__ import annotations

from typing import Any

import pytest
from test_client_fakekv import FakeKV, conflict_response, fake_in_thread

from router import kv_pb2 as kv
from shard.cli import main
from shard.cli_txn import Step, UsageError, parse_steps


@pytest.fixture
def fake() -> Any:
    with fake_in_thread() as fake:
        yield fake


def run_cli(fake: FakeKV, *argv: str) -> int:
    return main(["txn", "--cluster", fake.seeds[0], "--timeout", "5", *argv])


def test_parse_steps() -> None:
    assert parse_steps(["get a", "put b two words; del c", "scan a z", "scan q"]) == [
        Step("get", b"a", text="get a"),
        Step("put", b"b", b"two words", text="put b two words"),
        Step("delete", b"c", text="del c"),
        Step("scan", b"a", end=b"z", text="scan a z"),
        Step("scan", b"q", text="scan q"),
    ]
    assert parse_steps(["put 6b 00ff"], hex_mode=True)[0].value == b"\x00\xff"
    for bad in (["frob a"], ["get"], ["put k"], ["get a b"], ["scan"], [";"], ["put zz 00"]):
        with pytest.raises(UsageError):
            parse_steps(bad, hex_mode=bad == ["put zz 00"])


def test_txn_command_prints_reads_and_commit(fake: FakeKV, capsys: Any) -> None:
    assert run_cli(fake, "put apple 1; put plum 2") == 0
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 1 and out[0].startswith("committed at ts ")
    assert "0 reads, 2 writes" in out[0]
    assert fake.count("prepare") == 2  # apple and plum live in two groups

    assert run_cli(fake, "get apple", "get nope", "put kiwi a\tb", "scan a z") == 0
    out = capsys.readouterr().out.splitlines()
    assert out[:3] == ["get apple: 1", "get nope: (not found)", "scan a z: 3 items"]
    assert out[3:6] == ["  apple\t1", "  kiwi\ta\\tb", "  plum\t2"]
    assert out[6].startswith("committed at ts ")


def test_txn_command_retries_conflicts_and_prints_the_last_attempt(
    fake: FakeKV, capsys: Any
) -> None:
    refusals = 1

    def hook(node: int, request: kv.Request) -> Any:
        nonlocal refusals
        if request.WhichOneof("op") == "commit_one_phase" and refusals:
            refusals -= 1
            fake.store.write(b"apple", b"changed", fake.store.tick())
            return conflict_response(request, b"apple", "commit")
        return None

    fake.hook = hook
    assert run_cli(fake, "get apple", "put banana x") == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "get apple: changed"
    assert fake.count("commit_one_phase") == 2


def test_txn_command_snapshot_and_errors(fake: FakeKV, capsys: Any) -> None:
    assert run_cli(fake, "put apple 1") == 0
    capsys.readouterr()
    assert run_cli(fake, "--snapshot", "get apple") == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "get apple: 1" and out[1].startswith("snapshot at ts ")
    assert run_cli(fake, "--snapshot", "put apple 2") == 1
    assert "read-only" in capsys.readouterr().err
    assert main(["txn", "--cluster", "", "get a"]) == 1
    assert "no cluster address" in capsys.readouterr().err
