"""The `paxoskv` data commands' argument checks and messages, without a cluster: each
mistake gets one line naming the option (never an internal name such as `timeout_s`), keys
are the bytes given on the command line, printed keys are unambiguous, and a reader that
goes away (`paxoskv scan | head`) is no error."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

import txn
from router.client import RoutingClient
from router.client_errors import InvalidArgument
from router.env import ENV_CLUSTER
from router.limits import MAX_KEY_BYTES
from shard.cli import main
from shard.cli_kv import escape
from shard.cli_txn import Step, _settle_hint, parse_steps
from txn.txn_ids import new_txn_id

ROOT = Path(__file__).resolve().parents[3]
NOWHERE = "127.0.0.1:9"  # never contacted: every case fails before connecting


def test_escape_is_unambiguous_and_prints_no_control_bytes() -> None:
    assert escape(b"a\tb\nc\rd\\e") == "a\\tb\\nc\\rd\\\\e"
    # One byte that is not UTF-8 and the four bytes backslash, x, f, f differ.
    assert escape(b"\xff") == "\\xff"
    assert escape(b"\\xff") == "\\\\xff"
    # A terminal never gets raw control bytes (NUL, ESC, DEL).
    assert escape(b"\x00\x1b[31m\x7f") == "\\x00\\x1b[31m\\x7f"
    assert escape("ünï".encode()) == "ünï"


def test_keys_are_the_bytes_given_even_when_not_utf8() -> None:
    raw = os.fsdecode(b"k\xff\xfe")  # how Python hands such an argv entry over
    assert parse_steps([f"get {raw}"]) == [Step("get", b"k\xff\xfe", text=f"get {raw}")]


@pytest.mark.parametrize("timeout", ["0", "-1", "nan", "soon"])
def test_a_bad_timeout_names_the_option(timeout: str, capsys: Any) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["get", "--cluster", NOWHERE, "--timeout", timeout, "k"])
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert "argument --timeout:" in err and "timeout_s" not in err


BAD_ADDRESSES = [
    ("127.0.0.1:99999", "bad cluster address '127.0.0.1:99999': the port must be 1-65535"),
    (
        "http://127.0.0.1:7001",
        "bad cluster address 'http://127.0.0.1:7001': expected HOST:PORT, without a scheme",
    ),
    ("127.0.0.1", "bad cluster address '127.0.0.1': expected HOST:PORT"),
    (
        "127.0.0.1:23100 127.0.0.1:23101",
        "bad cluster address '127.0.0.1:23100 127.0.0.1:23101': expected HOST:PORT; separate "
        "several with commas",
    ),
    (" , ", "no cluster address given"),
]


@pytest.mark.parametrize(("address", "message"), BAD_ADDRESSES)
def test_a_bad_address_is_refused_alike_by_the_cli_and_the_clients(
    address: str, message: str, capsys: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Found by review: the clients took "127.0.0.1" (then "no node answered at 127.0.0.1:
    connection refused"), and space-separated addresses passed the CLI's check and failed
    in a gRPC name lookup. One parser (router.seeds) for both."""
    with pytest.raises(SystemExit) as exited:
        main(["get", "--cluster", address, "k"])
    assert exited.value.code == 2
    assert f"paxoskv get: error: argument --cluster: {message}" in capsys.readouterr().err
    for client in (txn.Client, txn.AsyncClient, RoutingClient):
        with pytest.raises(InvalidArgument) as refused:
            client(address)
        assert message in str(refused.value)
    monkeypatch.setenv(ENV_CLUSTER, address)
    assert main(["get", "k"]) == 2  # a usage error, as the option's
    assert f"paxoskv: error: ${ENV_CLUSTER}: {message}" in capsys.readouterr().err


def test_unquoted_txn_steps_say_to_quote_them(capsys: Any) -> None:
    assert main(["txn", "--cluster", NOWHERE, "get", "alice"]) == 2
    assert "each STEP is one argument: quote it" in capsys.readouterr().err


def test_settle_with_the_ref_of_a_commit_line_says_which_ref_it_needs(capsys: Any) -> None:
    ref = "9ca3e1000780cbe4d2609bdf348e2384:1"  # the "txn ID:GROUP" a commit line prints
    assert main(["txn-status", "--cluster", NOWHERE, ref, "--settle"]) == 2
    err = capsys.readouterr().err
    assert "--settle needs to know when the transaction began" in err
    assert "TXN_ID_HEX:GROUP:STARTED_NS" in err
    assert "settle=True" not in err and "\n" not in err.rstrip("\n")


@pytest.mark.parametrize(
    ("txn_id", "where", "lacks"),
    [
        # An older client's (or a hand-made) id, its group given: found by review, the
        # message asked for the group.
        (
            "00112233445566778899aabbccddeeff0011223344556677",
            ["--group", "1"],
            "--settle needs to know when the transaction began, and this id does not say",
        ),
        (  # says when it began, not where
            new_txn_id(1 << 40).hex(),
            ["--key", "alice"],
            "--settle needs the transaction's group: give --group instead of --key",
        ),
    ],
    ids=["no-start", "no-group"],  # one id is random: pytest-xdist's workers must agree
)
def test_settle_with_a_bare_id_says_what_it_lacks(
    capsys: Any, txn_id: str, where: list[str], lacks: str
) -> None:
    assert main(["txn-status", "--cluster", NOWHERE, txn_id, *where, "--settle"]) == 2
    err = capsys.readouterr().err
    assert lacks in err and "\n" not in err.rstrip("\n")
    assert ("group" in err) is ("--key" in where)


def test_a_reader_that_goes_away_is_no_error() -> None:
    script = (
        "import sys, shard.cli_kv as kv, shard.cli as cli\n"
        "def flood(args):\n"
        "    for _ in range(10_000):\n"
        "        print('x' * 100)\n"
        "    return 0\n"
        "kv._cmd_status = flood\n"
        "sys.exit(cli.main(['status']))\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", script],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.read(10)
    proc.stdout.close()  # `| head -c 10`
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=30) == 141, err
    assert err == ""


@pytest.mark.parametrize("command", ["start", "status"])
def test_ctrl_c_in_cluster_commands_exits_without_closing_channels(
    command: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    """Found by the user review: Ctrl-C while `cluster start` waited for leaders hung the
    command for good, in grpc's Channel.close: a KeyboardInterrupt that cuts a call short
    as it starts leaves it registered, and closing its channel waits for it (1 in 40
    interruptions of `leaders()`). After Ctrl-C the command now exits without closing."""
    from shard.cluster import LocalCluster

    def interrupted(*_args: Any, **_kwargs: Any) -> None:
        raise KeyboardInterrupt

    def close(_self: Any) -> None:
        raise AssertionError("closed the channels a Ctrl-C may have left hanging")

    data_dir = tmp_path / "c"
    if command == "status":
        LocalCluster(data_dir)._write_config()  # a stopped cluster
        monkeypatch.setattr(LocalCluster, "node_states", interrupted)
    monkeypatch.setattr(LocalCluster, "start", interrupted)
    monkeypatch.setattr(LocalCluster, "close", close)
    assert main(["cluster", command, "--data-dir", str(data_dir)]) == 130
    err = capsys.readouterr().err
    assert err.endswith("paxoskv: interrupted\n"), err
    if command == "start":
        # Found by the CLI review: it said started nodes keep running when the interrupted
        # start had stopped them all; it now says what runs.
        assert "interrupted; no node of the cluster is running" in err


def test_put_without_a_value_on_a_terminal_says_it_reads_stdin(
    monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    """Found by the user review: `paxoskv put KEY` with the value forgotten sat silent,
    waiting for stdin, as if it hung."""
    import io

    class Terminal(io.TextIOWrapper):
        def isatty(self) -> bool:
            return True

    monkeypatch.setattr(sys, "stdin", Terminal(io.BytesIO(b"typed\n")))
    assert main(["put", "--cluster", NOWHERE, "--timeout", "0.5", "k"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("paxoskv put: reading the value from stdin; end it with Ctrl-D\n")


@pytest.mark.parametrize(
    ("argv", "write"),
    [
        (["put", "k", "v"], True),
        (["delete", "k"], True),
        (["cas", "k", "--expect-absent", "--new-value", "v"], True),
        (["txn", "put k v"], True),
        (["get", "k"], False),
        (["scan", "--start", "a"], False),
    ],
)
def test_ctrl_c_during_a_write_says_it_may_have_happened(
    argv: list[str],
    write: bool,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A write sent before Ctrl-C may still be chosen: "interrupted" alone let a user
    believe nothing happened (found by review)."""
    from router.client import RoutingClient
    from txn.sync_client import Client

    def interrupted(*_args: Any, **_kwargs: Any) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(RoutingClient, "connect", interrupted)
    monkeypatch.setattr(Client, "__enter__", interrupted)
    code = main([*argv, "--cluster", "127.0.0.1:1"])
    err = capsys.readouterr().err
    assert code == 130
    assert ("may or may not have happened" in err) is write, err


def test_bench_refuses_a_json_path_that_is_a_directory_before_running(
    tmp_path: Path, capsys: Any
) -> None:
    """Found by review: the whole run happened first, then "[Errno 21] Is a directory"."""
    assert main(["bench", "--cluster", NOWHERE, "--json", str(tmp_path)]) == 2
    assert f"--json {tmp_path} is a directory: give a file name" in capsys.readouterr().err


def test_bench_takes_the_connection_options_every_command_takes(capsys: Any) -> None:
    """Found by a user's walk-through: bench alone had no --cluster-id."""
    argv = ["bench", "--cluster", "127.0.0.1:1", "--cluster-id", "c1", "--timeout", "0.5"]
    assert main([*argv, "--duration", "0.1", "--warmup", "0"]) == 1
    err = capsys.readouterr().err
    assert "no node answered at 127.0.0.1:1" in err and "unrecognized" not in err


@pytest.mark.usefixtures("node_logging")
def test_a_config_path_that_is_a_directory_is_one_clear_line(tmp_path: Path, capsys: Any) -> None:
    assert main(["node", "--config", str(tmp_path), "--node-id", "n1"]) == 1
    plain = [line for line in capsys.readouterr().err.splitlines() if not line.startswith("{")]
    assert plain == [f"paxoskv: error: cannot read config file {tmp_path}: Is a directory"]


VERSION = "must be 0 to 18446744073709551615 (a version, as `put` prints one)"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        # Refused by argparse from the start (the reference):
        (["get", "--timeout", "-1", "k"], "argument --timeout: must be > 0 seconds, got '-1'"),
        (["scan", "--limit", "x"], "argument --limit: not an integer: 'x'"),
        # Found by review: each of these exited 1 after the command's own check.
        (["put", "--ttl", "1e8", "k", "v"], "argument --ttl: must be at most 31622400 seconds"),
        (["scan", "--limit", "-5"], "argument --limit: must be >= 0 (0: no limit), got '-5'"),
        (["txn", "--limit", "0", "get a"], "argument --limit: must be >= 1 (a transaction's "),
        (["txn", "--attempts", "0", "get a"], "argument --attempts: must be >= 1, got '0'"),
        (["bench", "--clients", "0"], "argument --clients: must be >= 1, got '0'"),
        (["bench", "--duration", "0"], "argument --duration: must be > 0 seconds, got '0'"),
        (["bench", "--retry-timeout", "0"], "argument --retry-timeout: must be > 0 seconds"),
        (["bench", "--keys", "0"], "argument --keys: must be >= 1, got '0'"),
        (["bench", "--value-size", "2000000"], "must be 0 to 1048576 bytes (the value limit)"),
        (["bench", "--hot-keys", "0"], "argument --hot-keys: must be >= 1, got '0'"),
        (["bench", "--node-pids", "1,x"], "argument --node-pids: not comma-separated integers"),
        (["bench", "--read-fraction", "2"], "argument --read-fraction: must be from 0 to 1"),
        (["bench", "--warmup", "-1"], "argument --warmup: must be >= 0 seconds, got '-1'"),
        (["demo", "--duration", "0"], "argument --duration: must be > 0 seconds, got '0'"),
        (["demo", "--nodes", "1"], "argument --nodes: must be >= 3 (the demo kills a leader"),
        (["demo", "--shards", "0"], "argument --shards: must be 1 to 26, got '0'"),
        (["cluster", "start", "--nodes", "0"], "argument --nodes: must be >= 1, got '0'"),
        (["cluster", "start", "--shards", "27"], "argument --shards: must be 1 to 26, got '27'"),
        (["cluster", "start", "--base-port", "0"], "argument --base-port: must be 1 to 65535"),
        (["cluster", "stop", "--grace", "-1"], "argument --grace: must be >= 0 seconds"),
        (["chaos", "--clients", "0"], "argument --clients: must be >= 1, got '0'"),
        (["chaos", "--duration", "0"], "argument --duration: must be > 0 seconds, got '0'"),
        (["chaos", "--timeout", "0"], "argument --timeout: must be > 0 seconds, got '0'"),
        # Found by an earlier review: a chaos run took MIN above MAX.
        (["chaos", "--quiet", "3", "1"], "argument --quiet: MIN must be <= MAX, not 3 1"),
        (["chaos", "--fault", "-1", "1"], "argument --fault: must be >= 0 seconds, got '-1'"),
        # Found by a new user's review: one past 2**64-1 was protobuf's "Value out of range".
        (["get", "--at-version", "-5", "k"], f"argument --at-version: {VERSION}, got '-5'"),
        (["get", "--at-version", str(2**64), "k"], f"argument --at-version: {VERSION}"),
        (["cas", "k", "--expect-version", "-1", "--delete"], f"--expect-version: {VERSION}"),
        (["txn-status", "ab", "--group", "0"], "argument --group: must be >= 1 (group 0 is the"),
    ],
)
def test_a_bad_option_value_is_a_usage_error(argv: list[str], message: str, capsys: Any) -> None:
    """Exit status 2 and argparse's line naming the option, for every option's value: some
    were exit 1 from the command's own check, so a script could not tell them apart."""
    if argv[0] == "cluster":
        argv = [*argv, "--data-dir", "/nonexistent/x"]
    elif argv[0] != "chaos":
        argv = [argv[0], "--cluster", NOWHERE, *argv[1:]]
    with pytest.raises(SystemExit) as exited:
        main(argv)
    assert exited.value.code == 2
    err = capsys.readouterr().err
    command = " ".join(argv[:2] if argv[0] == "cluster" else argv[:1])
    assert f"paxoskv {command}: error: " in err and message in err, err
    assert err.endswith("\n") and message in err.splitlines()[-1]


@pytest.mark.parametrize(
    ("argv", "cluster", "message"),
    [
        (["get", "alice"], "bogus", f"${ENV_CLUSTER}: bad cluster address 'bogus'"),
        (
            ["get", "alice"],
            "",
            f"no cluster address: pass --cluster HOST:PORT[,HOST:PORT...] or set {ENV_CLUSTER} "
            "(it is set but empty)",
        ),
        (
            ["get", "alice"],
            None,
            f"no cluster address: pass --cluster HOST:PORT[,HOST:PORT...] "
            f"or set {ENV_CLUSTER} (it is not set)",
        ),
        (["get", "--hex", "--cluster", NOWHERE, "zz"], None, "key 'zz' is not valid hex"),
        (["txn-status", "--cluster", NOWHERE, "ab:x"], None, "'ab:x' is not a transaction ref"),
        (["get", "--cluster", NOWHERE, ""], None, "empty key: keys are at least 1 byte"),
        (["put", "--cluster", NOWHERE, "", "v"], None, "empty key: keys are at least 1 byte"),
        (["delete", "--cluster", NOWHERE, ""], None, "empty key: keys are at least 1 byte"),
        (
            ["cas", "--cluster", NOWHERE, "", "--expect-absent", "--new-value", "v"],
            None,
            "empty key: keys are at least 1 byte",
        ),
        (
            ["txn-status", "--cluster", NOWHERE, "ab" * 24, "--key", ""],
            None,
            "empty key: keys are at least 1 byte",
        ),
        (
            ["backup", "/nonexistent/b", "--cluster", NOWHERE, "--start", "m", "--end", "a"],
            None,
            "--start/--end: the end b'a' must be above the start b'm'",
        ),
        (
            ["backup", "/nonexistent/b", "--cluster", NOWHERE, "--end", "k" * (MAX_KEY_BYTES + 2)],
            None,
            f"--start/--end: range end is {MAX_KEY_BYTES + 2} bytes",
        ),
        *(
            (
                [*command, "--cluster", NOWHERE, "k" * (MAX_KEY_BYTES + 1)],
                None,
                "the key is 4,097 bytes, over the limit of 4,096 bytes (MAX_KEY_BYTES): no key "
                "is that long",
            )
            for command in (["get"], ["delete"])
        ),
        (
            ["txn", "--cluster", NOWHERE, "get " + "k" * (MAX_KEY_BYTES + 1)],
            None,
            "the key is 4,097 bytes",
        ),
        *(
            (
                [command, "--cluster", NOWHERE, "--prefix", "k" * (MAX_KEY_BYTES + 1)],
                None,
                "--prefix is 4,097 bytes, longer than any key (at most 4,096 bytes, "
                "MAX_KEY_BYTES): no key has it",
            )
            for command in ("scan", "watch", "delete")
        ),
    ],
)
def test_a_bad_argument_a_command_finds_itself_is_a_usage_error_too(
    argv: list[str],
    cluster: str | None,
    message: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: Any,
) -> None:
    """Found by a new user's review: these exited 1, where a bad option (`--cluster
    nonsense`) exits 2, as the README says of a bad option or option value; one line each."""
    if cluster is None:
        monkeypatch.delenv(ENV_CLUSTER, raising=False)
    else:
        monkeypatch.setenv(ENV_CLUSTER, cluster)
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"paxoskv: error: {message}") and err.count("\n") == 1, err


def test_put_hex_of_bytes_that_are_not_text_says_they_are_not_hex(
    monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    """Found by review: `printf '\\xff' | paxoskv put --hex k` printed Python's bare
    "'utf-8' codec can't decode byte 0xff" instead of naming the bad value."""
    import io

    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b"\xff\n")))
    assert main(["put", "--hex", "--cluster", NOWHERE, "--timeout", "0.5", "6b"]) == 2
    err = capsys.readouterr().err
    assert err.strip() == "paxoskv: error: value '\\\\xff' is not valid hex", err


@pytest.mark.parametrize(
    "argv",
    [
        ["txn-status", "--cluster", "127.0.0.1:1", "--group", "1", "00"],
        ["txn", "--cluster", "127.0.0.1:1", "get k"],
    ],
)
def test_the_txn_commands_pointed_at_no_cluster_fail_at_once(argv: list[str], capsys: Any) -> None:
    """Found by review: once a client's first call waited within its deadline for seeds
    that refuse, `txn-status` took --timeout (10 s) to say no node answered, and `txn` two
    of them (its run began a second attempt); they connect first now."""
    import time

    started = time.monotonic()
    assert main(argv) != 0
    assert "no node answered at 127.0.0.1:1" in capsys.readouterr().err
    assert time.monotonic() - started < 5.0


def test_ctrl_c_during_a_restore_says_how_far_it_got_and_how_to_finish(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Not the single write's advice: a restore is many transactions, one maybe under way."""
    from txn import backup as backup_module

    async def interrupted_restore(*_args: Any, progress: Any, **_kwargs: Any) -> None:
        progress(2000, 1 << 20)
        raise KeyboardInterrupt

    monkeypatch.setattr(backup_module, "restore", interrupted_restore)
    assert main(["restore", "kv.pkvb", "--cluster", NOWHERE]) == 130
    assert capsys.readouterr().err == (
        "paxoskv: interrupted after restoring 2,000 keys; the batch under way may or may "
        "not be written; finish with: paxoskv restore kv.pkvb --overwrite\n"
    )


def test_the_backup_commands_help_states_the_library_s_sizes() -> None:
    """The CLI does not import txn.backup for its help (it stays fast): its figures are
    copies, checked here."""
    from shard.cli import build_parser
    from txn.backup import DEFAULT_PAGE_KEYS, RESTORE_BATCH_BYTES, RESTORE_BATCH_ITEMS

    parser = build_parser()
    assert parser.parse_args(["backup", "f"]).page_keys == DEFAULT_PAGE_KEYS
    restore_help = parser._subparsers._group_actions[0].choices["restore"].description
    assert f"{RESTORE_BATCH_ITEMS:,} keys and about 1 MiB" in restore_help
    assert round(RESTORE_BATCH_BYTES / (1 << 20)) == 1


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--start", "b", "--end", "a"], "--end must come after --start"),
        (["--start", "x", "--prefix", "a"], "leave an empty range"),
        (["--count", "0"], "--count: must be >= 1"),
        (["--after-version", "-1"], "--after-version: must be 0 to"),
    ],
)
def test_a_watch_of_an_empty_range_or_bad_option_is_a_usage_error(
    args: list[str], words: str, capsys: Any
) -> None:
    """Refused before connecting (NOWHERE answers nothing): exit 2 and a line naming it."""
    try:
        code = main(["watch", "--cluster", NOWHERE, *args])
    except SystemExit as exc:  # argparse's own usage errors
        code = int(exc.code or 0)
    assert code == 2
    assert words in capsys.readouterr().err


class _WatchRefusedAfterItsStart:
    """A watch whose start the nodes took (its `through` is 42) and whose next round they
    refuse: a round's timestamp ahead of a lagging leader's clock."""

    through = 42

    def __enter__(self) -> _WatchRefusedAfterItsStart:
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    resumed = 0

    def next_batch(self, timeout_s: float | None = None) -> list[txn.Change]:
        raise txn.InvalidArgument("the snapshot timestamp 43 is 0.995 s ahead of node 1's clock")


class _QuietWatch(_WatchRefusedAfterItsStart):
    """A watch of a quiet range: its rounds move `through` with no change (50, then 60);
    then an interrupt ends the wait for the next batch just after the watch took it
    (`through` 70, its change never returned)."""

    def __init__(self) -> None:
        self.rounds = iter([50, 60])

    def next_batch(self, timeout_s: float | None = None) -> list[txn.Change]:
        through = next(self.rounds, None)
        if through is None:
            self.through = 70
            raise KeyboardInterrupt
        self.through = through
        return []


class StubClient:
    """A `txn.Client` stand-in for the CLI's commands: made with any arguments, used as a
    context manager, connected at once; subclasses add what a command calls."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        pass

    def __enter__(self) -> StubClient:
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def connect(self) -> None:
        pass


class _ClientOfARefusedWatch(StubClient):
    made: type[_WatchRefusedAfterItsStart] = _WatchRefusedAfterItsStart

    def watch(self, *args: object, **kwargs: object) -> _WatchRefusedAfterItsStart:
        return self.made()


class _ClientOfAQuietWatch(_ClientOfARefusedWatch):
    made = _QuietWatch


def test_a_watch_refused_after_its_start_names_where_to_resume(
    monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    """Found by review: only a refused start (a far-future --after-version, which the
    cluster tests cover) has no resume point; a refusal after it resumes without a gap."""
    monkeypatch.setattr(txn, "Client", _ClientOfARefusedWatch)
    assert main(["watch", "--cluster", NOWHERE, "--prefix", "p/"]) == 1
    err = capsys.readouterr().err
    assert err.strip().endswith("ahead of node 1's clock; resume with --after-version 42"), err


def test_a_quiet_watch_interrupted_names_where_its_rounds_got_to(
    monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    """Found by an application trial: the resume point moved only with a printed change, so
    a quiet range's stayed at the start, and was garbage-collected 10 minutes on. It moves
    with the watch's rounds now, but not past a batch taken and never printed."""
    monkeypatch.setattr(txn, "Client", _ClientOfAQuietWatch)
    assert main(["watch", "--cluster", NOWHERE, "--prefix", "p/"]) == 130
    err = capsys.readouterr().err
    assert err.strip().endswith("interrupted; resume with --after-version 60"), err


def test_txn_status_suggests_settle_only_while_the_ref_may_be_settled() -> None:
    """Found by an application trial: the hint to run again with --settle was given for a
    25-minute-old ref, which --settle then refused as too old."""
    now = time.time_ns()
    fresh = _settle_hint(txn.TxnRef(b"t" * 24, 1, now - 10 * 10**9))
    assert "run this again with --settle" in fresh
    old = _settle_hint(txn.TxnRef(b"t" * 24, 1, now - 1500 * 10**9))
    assert "it began 1500 s ago, too long ago to settle" in old and "again" not in old
    assert "--settle needs the full REF" in _settle_hint(txn.TxnRef(b"t" * 24, 1))


def test_verify_backup_hex_without_print_is_a_usage_error(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["verify-backup", "/nonexistent.pkvb", "--hex"]) == 2
    assert "give --print too" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("points", "message"),
    [
        (["x", "x"], "--split-point 'x' is given twice"),
        (["a'b"], "a split point given here is printable ASCII without quotes or backslashes"),
        ([""], "a split point is a key of 1 to 4,096 bytes, got 0"),
    ],
)
def test_bad_split_points_are_usage_errors(
    points: list[str], message: str, tmp_path: Any, capsys: Any
) -> None:
    argv = ["cluster", "start", "--data-dir", str(tmp_path / "c")]
    for point in points:
        argv += ["--split-point", point]
    try:
        status = main(argv)
    except SystemExit as exited:  # argparse's own usage errors
        status = exited.code
    assert status == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "c").exists()  # nothing was created
