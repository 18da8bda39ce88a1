"""`paxoskv txn` (shard/cli_txn.py) against the fake cluster, and its step parser."""

from __future__ import annotations

import json
import os
import signal
import time
from typing import Any

import pytest
from test_client_fakekv import (
    DROP,
    FakeKV,
    conflict_response,
    fake_in_thread,
    on_kind,
)

from router import kv_pb2 as kv
from shard.cli import main
from shard.cli_txn import EXIT_ABORTED, EXIT_UNDECIDED, Step, UsageError, parse_steps
from txn import TxnRef


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
    assert parse_steps(["scan-reverse a z"]) == [
        Step("scan-reverse", b"a", end=b"z", text="scan-reverse a z")
    ]
    assert parse_steps(["delete-range a c", "delete-range a c 5"]) == [
        Step("delete-range", b"a", end=b"c", text="delete-range a c"),
        Step("delete-range", b"a", end=b"c", limit=5, text="delete-range a c 5"),
    ]
    assert parse_steps(["add n 5; add n -3"]) == [
        Step("add", b"n", delta=5, text="add n 5"),
        Step("add", b"n", delta=-3, text="add n -3"),
    ]
    assert parse_steps(["expect k two words; expect-absent a", "expect-present b"]) == [
        Step("expect", b"k", b"two words", text="expect k two words"),
        Step("expect-absent", b"a", text="expect-absent a"),
        Step("expect-present", b"b", text="expect-present b"),
    ]
    assert parse_steps(["put-ttl lease 2.5 n1 at 9", "expect-version lease 0"]) == [
        Step("put-ttl", b"lease", b"n1 at 9", ttl_s=2.5, text="put-ttl lease 2.5 n1 at 9"),
        Step("expect-version", b"lease", version=0, text="expect-version lease 0"),
    ]
    assert parse_steps(["put 6b 00ff"], hex_mode=True)[0].value == b"\x00\xff"
    # delete-range needs both bounds, in order: a mistyped step must not clear to the end.
    for bad in (
        ["frob a"],
        ["get"],
        ["put k"],
        ["get a b"],
        ["scan"],
        ["scan-reverse a b c"],
        [";"],
        ["put zz 00"],
        ["delete-range a"],
        ["delete-range c a"],
        ["delete-range a a"],
        ["delete-range a c 0"],
        ["delete-range a c x"],
        ["delete-range a c 1 2"],
        ["delete-range a c \u00b2"],  # a digit to str.isdigit, not to int()
        ["expect k"],
        ["expect-absent"],
        ["expect-present a b"],
        ["put-ttl k 5"],
        ["put-ttl k v 5"],  # SECONDS before the value
        ["put-ttl k 0 v"],
        ["put-ttl k 40000000 v"],  # over MAX_TTL_S
        ["expect-version k"],
        ["expect-version k -1"],
        ["expect-version k v7"],
        ["expect-version k 18446744073709551616"],  # 2**64
        ["add n"],
        ["add n x"],
        ["add n 1 2"],
        ["add n 9223372036854775808"],  # 2**63: over what a signed 8-byte addend holds
        ["add n \u0663"],  # ARABIC-INDIC DIGIT THREE: a number to int(), not here
    ):
        with pytest.raises(UsageError):
            parse_steps(bad, hex_mode=bad == ["put zz 00"])


def test_txn_command_prints_reads_and_commit(fake: FakeKV, capsys: Any) -> None:
    assert run_cli(fake, "put apple 1; put plum 2") == 0
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 1 and out[0].startswith("committed at ts ")
    assert "0 keys read, 0 scans, 2 keys written" in out[0]
    assert fake.count("prepare") == 2  # apple and plum live in two groups

    assert run_cli(fake, "get apple", "get nope", "put kiwi a\tb", "scan a z") == 0
    out = capsys.readouterr().out.splitlines()
    assert out[:3] == ["get apple: 1", "get nope: (not found)", "scan a z: 3 items"]
    assert out[3:6] == ["  apple\t1", "  kiwi\ta\\tb", "  plum\t2"]
    assert out[6].startswith("committed at ts ")


def test_txn_command_scans_in_reverse(fake: FakeKV, capsys: Any) -> None:
    assert run_cli(fake, "put apple 1; put kiwi 2; put plum 3") == 0
    capsys.readouterr()
    assert run_cli(fake, "--limit", "2", "--snapshot", "scan-reverse a z") == 0
    out, err = capsys.readouterr()
    assert out.splitlines()[:3] == ["scan-reverse a z: 2 items", "  plum\t3", "  kiwi\t2"]
    assert err.startswith("paxoskv: txn: scan-reverse a z stopped at --limit 2")


def test_txn_command_deletes_a_range_in_the_transaction(fake: FakeKV, capsys: Any) -> None:
    assert run_cli(fake, "put apple 1; put banana 2; put kiwi 3") == 0
    capsys.readouterr()
    assert run_cli(fake, "delete-range a c", "scan a z") == 0
    out = capsys.readouterr().out.splitlines()
    assert out[:3] == ["delete-range a c: 2 keys deleted", "scan a z: 1 item", "  kiwi\t3"]
    assert out[3].startswith("committed at ts ") and "2 keys written" in out[3]
    assert run_cli(fake, "--snapshot", "delete-range a z") == 2
    assert "read-only" in capsys.readouterr().err


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


def test_guard_steps_commit_only_when_they_hold(fake: FakeKV, capsys: Any) -> None:
    """etcd's txn compares: a uniqueness check from the shell. A failed guard commits
    nothing, prints the reads before it and one line naming it, and exits 3."""
    signup = ("expect-absent email/ann", "put email/ann u7", "put user/u7 ann")
    assert run_cli(fake, *signup) == 0
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 1 and "1 key read" in out[0] and "2 keys written" in out[0]
    commits = fake.count("prepare") + fake.count("commit_one_phase")
    assert (
        run_cli(fake, "get user/u7", "expect-absent email/ann", "put user/u8 ann") == EXIT_ABORTED
    )
    out, err = capsys.readouterr()
    assert out.splitlines() == ["get user/u7: ann"]
    assert err == (
        "paxoskv: txn: guard 'expect-absent email/ann' failed: email/ann is u7; nothing was "
        "committed\n"
    )
    assert fake.store.value(b"user/u8") is None
    assert run_cli(fake, "--limit", "1", "scan a z", "expect-absent user/u7") == EXIT_ABORTED
    out, err = capsys.readouterr()
    assert out.splitlines() == ["scan a z: 1 item", "  email/ann\tu7"]
    assert err.splitlines()[0].startswith("paxoskv: txn: scan a z stopped at --limit 1")
    assert err.splitlines()[1].startswith("paxoskv: txn: guard 'expect-absent user/u7' failed")
    assert fake.count("prepare") + fake.count("commit_one_phase") == commits  # none sent
    assert run_cli(fake, "expect email/ann u7; expect-present user/u7; delete email/ann") == 0
    capsys.readouterr()
    assert fake.store.value(b"email/ann") is None
    assert run_cli(fake, "expect user/u7 bob; put user/u7 carol") == EXIT_ABORTED
    assert "user/u7 is ann" in capsys.readouterr().err
    assert run_cli(fake, "--snapshot", "expect-present email/ann") == EXIT_ABORTED
    assert "email/ann is absent (never written, deleted, or expired)" in capsys.readouterr().err
    # A guard sees the transaction's own writes before it (an add's: the cluster test).
    assert run_cli(fake, "put k v; expect k v; expect-present k") == 0
    assert fake.store.value(b"k") == b"v"


def test_put_ttl_and_expect_version_steps(fake: FakeKV, capsys: Any) -> None:
    """A leader pointer from the shell: take it only while absent (version 0), hand it
    over only from the version read, each value with a time to live."""
    assert run_cli(fake, "expect-version leader 0", "put-ttl leader 10 n1") == 0
    taken = int(capsys.readouterr().out.split("committed at ts ")[1].split()[0])  # its version
    [item] = [w for _, r in fake.requests("commit_one_phase") for w in r.commit_one_phase.writes]
    assert (item.key, item.value, item.ttl_ms) == (b"leader", b"n1", 10_000)
    assert run_cli(fake, "expect-version leader 0", "put-ttl leader 10 n2") == EXIT_ABORTED
    assert capsys.readouterr().err == (
        f"paxoskv: txn: guard 'expect-version leader 0' failed: leader is at version {taken}; "
        "nothing was committed\n"
    )
    assert run_cli(fake, f"expect-version leader {taken}; put leader n2") == 0
    capsys.readouterr()
    assert fake.store.value(b"leader") == b"n2"
    assert run_cli(fake, f"expect-version leader {taken}; delete leader") == EXIT_ABORTED
    assert "leader is at version" in capsys.readouterr().err
    assert run_cli(fake, "expect-version nobody 1") == EXIT_ABORTED
    assert "nobody is absent (never written, deleted, or expired);" in capsys.readouterr().err
    # Its own write has no version yet, and a snapshot's reads carry none: refused.
    assert run_cli(fake, "put k v; expect-version k 0") == 2  # a usage error
    assert "put the guard before the write" in capsys.readouterr().err
    assert run_cli(fake, "--snapshot", "expect-version leader 0") == 2
    assert "drop --snapshot" in capsys.readouterr().err
    assert run_cli(fake, "--snapshot", "put-ttl k 5 v") == 2


def test_a_retried_transaction_says_why_on_stderr_and_counts_its_attempts(
    fake: FakeKV, capsys: Any
) -> None:
    """Each retry of `paxoskv txn` is one line on stderr, with its reason, and --json counts
    the attempts (stdout stays the result's alone)."""
    left = [1]

    def conflict_once(node: int, request: kv.Request) -> Any:
        if request.WhichOneof("op") == "commit_one_phase" and left[0]:
            left[0] -= 1
            return conflict_response(request, b"apple", "commit")
        return None

    fake.hook = conflict_once
    assert run_cli(fake, "--json", "get apple", "put apple 1") == 0
    out, err = capsys.readouterr()
    assert json.loads(out)["attempts"] == 2
    assert "paxoskv: txn: attempt 1 ended (conflict on key b'apple' in the commit phase" in err
    assert "running it again in" in err and err.count("\n") == 1
    assert run_cli(fake, "--json", "get apple") == 0
    out, err = capsys.readouterr()
    assert json.loads(out)["attempts"] == 1 and err == ""


def test_json_output_gives_the_reads_and_the_commit_as_fields(fake: FakeKV, capsys: Any) -> None:
    """--json, for scripts (asked by an application trial: the new version, a fencing
    token, was only inside the prose of the commit line)."""
    assert run_cli(fake, "--json", "put apple 1; put plum 2; put n 5") == 0
    first = json.loads(capsys.readouterr().out)
    assert first["steps"] == [] and first["keys_written"] == 3
    assert isinstance(first["commit_ts"], int) and first["commit_ts"] > 0
    assert TxnRef.parse(first["ref"]).txn_id.hex() in first["ref"]
    argv = ("--json", "--limit", "1", "get apple", "get nope", "get n", "scan a z")
    assert run_cli(fake, *argv, "delete-range q r") == 0
    out, err = capsys.readouterr()
    document = json.loads(out)
    assert document["steps"] == [
        {"step": "get apple", "key": "apple", "value": "1"},
        {"step": "get nope", "key": "nope", "value": None},
        {"step": "get n", "key": "n", "value": "5"},
        {"step": "scan a z", "items": [{"key": "apple", "value": "1"}], "more": True},
        {"step": "delete-range q r", "deleted": 0},
    ]
    assert document["keys_read"] == 3 and document["scans"] == 2  # the scan read apple, n
    assert "stopped at --limit 1" in err  # notes stay on stderr
    assert run_cli(fake, "--json", "get nope") == 0
    assert json.loads(capsys.readouterr().out)["commit_ts"] > 0
    assert run_cli(fake, "--json", "--snapshot", "get apple") == 0
    snap = json.loads(capsys.readouterr().out)
    assert snap["steps"][0]["value"] == "1" and snap["read_ts"] > 0
    assert run_cli(fake, "--json", "get apple", "expect-absent plum", "put x 1") == EXIT_ABORTED
    out, err = capsys.readouterr()
    assert json.loads(out) == {
        "steps": [{"step": "get apple", "key": "apple", "value": "1"}],
        "guard_failed": {"step": "expect-absent plum", "key": "plum", "found": "2"},
    }
    assert "guard 'expect-absent plum' failed" in err
    assert run_cli(fake, "--json", "expect-version plum 1") == EXIT_ABORTED
    failed = json.loads(capsys.readouterr().out)["guard_failed"]
    assert failed["found"] == "2" and failed["version"] > 1


def test_a_guard_that_held_until_another_write_runs_again(fake: FakeKV, capsys: Any) -> None:
    """A guard is a read: a write of its key before the commit makes the commit conflict,
    and the re-run's guard sees the new value (so a failed guard is a consistent view)."""
    raced = []

    def hook(node: int, request: kv.Request) -> Any:
        if request.WhichOneof("op") == "prepare" and not raced:
            raced.append(request)
            fake.store.write(b"email/bo", b"u1", fake.store.tick())  # another signup won
            return conflict_response(request, b"email/bo", "prepare")
        return None

    fake.hook = hook
    assert run_cli(fake, "expect-absent email/bo", "put email/bo u2", "put user/u2 bo") == 3
    assert "email/bo is u1" in capsys.readouterr().err
    assert raced and fake.store.value(b"user/u2") is None


def test_txn_command_snapshot_and_errors(fake: FakeKV, capsys: Any) -> None:
    assert run_cli(fake, "put apple 1") == 0
    capsys.readouterr()
    assert run_cli(fake, "--snapshot", "get apple") == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "get apple: 1" and out[1].startswith("snapshot at ts ")
    assert run_cli(fake, "--snapshot", "put apple 2") == 2  # a usage error
    assert "read-only" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exited:
        main(["txn", "--cluster", "", "get a"])
    assert exited.value.code == 2 and "no cluster address" in capsys.readouterr().err


def test_txn_command_gives_up_at_its_timeout_when_no_leader_answers(
    fake: FakeKV, capsys: Any
) -> None:
    """Found by the user review: `--timeout` bounded each read, but `client.run` re-ran the
    whole transaction on the retryable DeadlineExceeded, --attempts (10) times, so against a
    cluster without a majority `paxoskv txn` sat silent for 10 x --timeout (100 s by default)
    where `get` gives up after --timeout."""
    fake.hook = on_kind("get", DROP)
    started = time.monotonic()
    assert main(["txn", "--cluster", fake.seeds[0], "--timeout", "0.5", "get apple"]) == 1
    elapsed = time.monotonic() - started
    err = capsys.readouterr().err
    assert err.startswith("paxoskv: error: ") and err.count("\n") == 1
    assert elapsed < 2.0, f"gave up after {elapsed:.1f} s with --timeout 0.5"


def test_a_lost_commit_prints_the_command_that_settles_it(fake: FakeKV, capsys: Any) -> None:
    fake.hook = on_kind("commit_one_phase", DROP)
    assert main(["txn", "--cluster", fake.seeds[0], "--timeout", "1", "put apple 1"]) == 1
    err = capsys.readouterr().err
    assert "outcome is unknown" in err and err.count("\n") == 1
    assert "client.txn_status" not in err, err  # CLI advice only
    command = err.split("settle it before re-running: ")[1].split(" (")[0].split()
    assert command[:2] == ["paxoskv", "txn-status"] and command[-1] == "--settle"
    ref = TxnRef.parse(command[2])
    assert ref.group_id == 1 and ref.started_ns > 0
    fake.hook = None
    status = ["txn-status", "--cluster", fake.seeds[0], "--timeout", "5", command[2]]
    assert main(status) == EXIT_UNDECIDED
    out = capsys.readouterr().out
    assert out.startswith("unknown: no record") and "run this again with --settle" in out
    # Settling records the abort for good: the dropped commit can never apply now.
    assert main([*status, "--settle"]) == EXIT_ABORTED
    assert main(status) == EXIT_ABORTED
    assert capsys.readouterr().out.splitlines() == ["aborted", "aborted"]
    assert fake.store.versions.get(b"apple") is None


def test_a_commit_that_cannot_record_its_abort_ends_at_the_timeout(
    fake: FakeKV, capsys: Any
) -> None:
    """Found by review: --timeout 1 took 3.3 s when a group had no majority: the abort after
    the failed prepare had 2 s of its own past the deadline."""
    fake.hook = lambda node, r: (
        DROP
        if r.WhichOneof("op") == "decide"
        or (r.WhichOneof("op") == "prepare" and r.prepare.header.group_id == 3)
        else None
    )
    started = time.monotonic()
    assert run_cli(fake, "--timeout", "1", "put apple 1; put plum 2") == 1
    elapsed = time.monotonic() - started
    err = capsys.readouterr().err
    assert "could not record the abort" in err
    assert elapsed < 1.4, f"took {elapsed:.1f} s with --timeout 1"
    # Found by review: the line ended with the Python client's advice, 900 characters long.
    assert err.startswith("paxoskv: error: the commit's outcome is unknown; settle it before ")
    assert "client.txn_status" not in err and "the prepare:" not in err
    assert err.count("\n") == 1 and len(err) < 600, err


@pytest.mark.usefixtures("python_sigint")
@pytest.mark.parametrize("during", ["get", "commit_one_phase"])
def test_ctrl_c_says_what_happened_to_the_transaction(
    fake: FakeKV, capsys: Any, during: str
) -> None:
    """Found by review: Ctrl-C during the commit printed a single-key write's advice and no
    REF, so the commit could not be settled. Before the commit, nothing was written."""

    def hook(node: int, request: kv.Request) -> Any:
        if request.WhichOneof("op") != during:
            return None
        fake.hook = None
        os.kill(os.getpid(), signal.SIGINT)  # the user's Ctrl-C, while the request is out
        return DROP

    fake.hook = hook
    assert run_cli(fake, "get apple; put apple 1") == 130
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    if during == "get":
        assert err == "paxoskv: interrupted; nothing was committed\n"
        return
    assert "outcome is unknown" in err
    command = err.split("settle it before re-running: ")[1].split()
    assert command[:2] == ["paxoskv", "txn-status"] and command[-1] == "--settle"
    status = ["txn-status", "--cluster", fake.seeds[0], "--timeout", "5", command[2], "--settle"]
    assert main(status) == EXIT_ABORTED  # the dropped commit can never apply now


def test_txn_status_of_a_committed_transaction(fake: FakeKV, capsys: Any) -> None:
    assert run_cli(fake, "put apple 1; put plum 2") == 0
    line = capsys.readouterr().out.strip()
    commit_ts = line.split()[3]
    txn_ref = line.split("(txn ")[1].split(",")[0]
    txn_id, group = txn_ref.split(":")
    seeds = ["--cluster", fake.seeds[0], "--timeout", "5"]
    for where in (
        [txn_ref],
        [txn_id, "--group", group],
        [txn_id, "--key", "apple"],
        [txn_ref, "--settle"],  # the id says when the transaction began
        [txn_id, "--group", group, "--settle"],
    ):
        assert main(["txn-status", *seeds, *where]) == 0
        assert capsys.readouterr().out == f"committed at ts {commit_ts}\n"
    for bad, says in (
        ([txn_id], "give --group or --key"),
        ([txn_id, "--key", "apple", "--settle"], "needs the transaction's group"),
        ([txn_ref, "--key", "apple"], "already names its group"),
        (["zz"], "neither"),
        (["ab:x"], "not a transaction ref"),
    ):
        assert main(["txn-status", *seeds, *bad]) == 2  # usage errors
        assert says in capsys.readouterr().err


def test_an_empty_transaction_says_there_was_nothing_to_commit(fake: FakeKV, capsys: Any) -> None:
    """Found by review: a transaction that read nothing has no decision group, and the
    commit line's "txn ID:GROUP" crashed on it; then it printed "committed at ts 0" and an
    id that txn-status could not use (found by a README walk-through)."""
    assert run_cli(fake, "scan z a") == 0
    assert capsys.readouterr().out.splitlines() == [
        "scan z a: 0 items",
        "nothing to commit (0 keys read, 0 scans, 0 keys written): no transaction was recorded",
    ]
    # Found by a README walk-through: a scan alone commits (its range is validated), and
    # the commit line said "0 reads, 0 writes" as the empty transaction's did.
    assert run_cli(fake, "scan a z") == 0
    assert "(txn " in capsys.readouterr().out.splitlines()[-1]
    assert run_cli(fake, "scan a z") == 0
    assert (
        capsys.readouterr().out.splitlines()[-1].endswith(", 0 keys read, 1 scan, 0 keys written)")
    )


def test_a_bench_in_which_nothing_completes_says_so(fake: FakeKV, capsys: Any) -> None:
    """Found by review: with no quorum, `paxoskv bench` exited 1 with errors=0 and nothing
    on stderr."""
    fake.hook = on_kind("put", DROP)
    argv = ["bench", "--cluster", fake.seeds[0], "--duration", "0.5", "--warmup", "0"]
    assert main([*argv, "--clients", "1", "--timeout", "1"]) == 1
    err = capsys.readouterr().err
    assert "no operation completed in the run" in err and "paxoskv status" in err


def test_a_bench_longer_than_three_seconds_shows_its_progress(fake: FakeKV, capsys: Any) -> None:
    def progress_lines(duration: str) -> list[str]:
        argv = ["bench", "--cluster", fake.seeds[0], "--duration", duration, "--warmup", "0"]
        assert main([*argv, "--keys", "20", "--clients", "2"]) == 0
        err = capsys.readouterr().err
        return [line for line in err.splitlines() if "ops/s" in line and "errors=" in line]

    assert progress_lines("0.5") == []
    assert len(progress_lines("3.2")) >= 2


def test_txn_command_makes_at_most_its_attempts(fake: FakeKV, capsys: Any) -> None:
    fake.hook = lambda node, r: (
        conflict_response(r, b"apple", "commit")
        if r.WhichOneof("op") == "commit_one_phase"
        else None
    )
    assert run_cli(fake, "--attempts", "2", "put apple 1") == 1
    assert fake.count("commit_one_phase") == 2


def test_a_guard_is_validated_by_the_commit(fake: FakeKV, capsys: Any) -> None:
    """As above, but the store's own validation refuses the commit: the guard's read is in
    the read set (mutant: a snapshot read for the guard committed the second signup)."""
    raced: list[int] = []

    def hook(node: int, request: kv.Request) -> Any:
        if request.WhichOneof("op") == "prepare" and not raced:
            raced.append(node)
            fake.store.write(b"email/cy", b"u1", fake.store.tick())  # another signup won
        return None

    fake.hook = hook
    assert run_cli(fake, "expect-absent email/cy", "put email/cy u2", "put user/u2 cy") == 3
    assert "email/cy is u1" in capsys.readouterr().err
    assert raced and fake.store.value(b"email/cy") == b"u1"
    assert fake.store.value(b"user/u2") is None
