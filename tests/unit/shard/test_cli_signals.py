"""shard.cli_signals: SIGTERM and SIGHUP stop a long command with Stopped, once; a signal the
process ignores (nohup) stays ignored; the handlers before are put back. And what `paxoskv
backup` and `restore` say when they stop short."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import threading
from pathlib import Path
from typing import Any

import pytest

from shard.cli_signals import Stopped, how_stopped, run_until_stopped, stop_signals_raise
from tests.unit.shard.test_cli_messages import StubClient

pytestmark = pytest.mark.skipif(
    threading.current_thread() is not threading.main_thread(),
    reason="signal handlers are set in the main thread only",
)


@pytest.mark.parametrize(
    ("signum", "word", "status"),
    [(signal.SIGTERM, "terminated", 143), (signal.SIGHUP, "hung up", 129)],
)
def test_a_stop_signal_raises_stopped_once(signum: int, word: str, status: int) -> None:
    before = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGHUP)}
    with pytest.raises(Stopped) as info, stop_signals_raise():
        signal.raise_signal(signum)
    assert how_stopped(info.value) == (word, status)
    assert {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGHUP)} == before


def test_inside_the_handler_a_second_signal_meets_the_handler_from_before() -> None:
    def mine(signum: int, frame: object) -> None:
        raise AssertionError("never called here")

    previous = signal.signal(signal.SIGTERM, mine)
    try:
        with stop_signals_raise():
            handler = signal.getsignal(signal.SIGTERM)
            assert callable(handler) and handler is not mine
            with pytest.raises(Stopped):
                handler(signal.SIGTERM, None)
            assert signal.getsignal(signal.SIGTERM) is mine
        assert signal.getsignal(signal.SIGTERM) is mine
    finally:
        signal.signal(signal.SIGTERM, previous)


def test_an_ignored_signal_stays_ignored() -> None:
    """`nohup paxoskv backup ...`: the hang-up of the terminal must not stop it."""
    previous = signal.signal(signal.SIGHUP, signal.SIG_IGN)
    try:
        with stop_signals_raise():
            assert signal.getsignal(signal.SIGHUP) is signal.SIG_IGN
            assert signal.getsignal(signal.SIGTERM) is not signal.SIG_IGN
        assert signal.getsignal(signal.SIGHUP) is signal.SIG_IGN
    finally:
        signal.signal(signal.SIGHUP, previous)


def test_ctrl_c_reads_as_interrupted() -> None:
    assert how_stopped(KeyboardInterrupt()) == ("interrupted", 130)


@pytest.mark.parametrize(
    ("stop", "status", "word"),
    [(Stopped(signal.SIGTERM), 143, "terminated"), (KeyboardInterrupt(), 130, "interrupted")],
)
def test_a_restore_stopped_says_how_to_finish_it(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    stop: Any,
    status: int,
    word: str,
) -> None:
    from shard import cli, cli_backup

    def stopped(main: Any) -> Any:
        main().close()  # never run: stopped before its first step
        raise stop

    monkeypatch.setattr(cli_backup, "run_until_stopped", stopped)
    assert cli.main(["restore", "/tmp/kv night.pkvb", "--cluster", "127.0.0.1:1"]) == status
    assert capsys.readouterr().err == (
        f"paxoskv: {word} after restoring 0 keys; the batch under way may or may not be "
        "written; finish with: paxoskv restore '/tmp/kv night.pkvb' --overwrite\n"
    )


def test_the_asyncio_form_cancels_the_command_and_raises_stopped() -> None:
    """As `asyncio.run` does on Ctrl-C: the signal cancels the main task, whose clean-up
    runs (a backup drops its .part there), then Stopped is raised."""
    cleaned: list[bool] = []

    def mine(signum: int, frame: object) -> None:
        raise AssertionError("never called here")

    before = signal.signal(signal.SIGTERM, mine)

    async def main() -> None:
        try:
            signal.raise_signal(signal.SIGTERM)
            await asyncio.sleep(30)
        finally:
            cleaned.append(True)

    try:
        with pytest.raises(Stopped) as info:
            run_until_stopped(main)
        # An embedding program's handler is put back (found by review: the loop's removal
        # left the default).
        assert signal.getsignal(signal.SIGTERM) is mine
    finally:
        signal.signal(signal.SIGTERM, before)
    assert info.value.signum == signal.SIGTERM and cleaned == [True]


def test_a_backup_that_outlived_the_retention_says_what_to_do(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Found by an operator trial: SnapshotTooOld said only that versions were collected."""
    import txn.backup
    from shard import cli
    from txn import SnapshotTooOld

    async def too_old(*args: Any, **kwargs: Any) -> Any:
        raise SnapshotTooOld("cannot read at version 5: versions below 9 were garbage-collected")

    monkeypatch.setattr(txn.backup, "backup", too_old)
    assert cli.main(["backup", "/tmp/kv.pkvb", "--cluster", "127.0.0.1:1"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "took longer than the shards keep old versions" in err
    assert "no file was written. Run it again" in err


def test_a_sigterm_while_the_watch_connects_exits_143_without_a_traceback(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Found by review: the watch catches Stopped inside its loop only; one during the
    connect (up to --timeout at an unreachable cluster) escaped cli.main as a traceback."""
    import txn
    from shard import cli

    class Connecting(StubClient):
        def connect(self) -> None:
            signal.raise_signal(signal.SIGTERM)

    monkeypatch.setattr(txn, "Client", Connecting)
    assert cli.main(["watch", "--cluster", "127.0.0.1:1"]) == 143
    assert capsys.readouterr().err == "paxoskv: terminated\n"


def test_a_backup_stopped_once_its_file_is_in_place_says_it_was_written(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """Found by review: a SIGTERM while the client closed, after FILE was renamed into
    place, said 'FILE was not written' (exit 143) of the new backup."""
    import txn.backup
    from shard import cli, cli_backup
    from txn.backup_file import BackupHeader, BackupSummary

    target = tmp_path / "kv.pkvb"
    header = BackupHeader(cluster_id="c", read_ts=5, start=b"", end=None, created_unix_s=0.0)

    async def backup(client: Any, path: Any, **kwargs: Any) -> BackupSummary:
        Path(path).write_bytes(b"the new backup")
        return BackupSummary(Path(path), header, 1, 2, 14, "ab" * 32)

    class SlowClose:
        async def __aenter__(self) -> SlowClose:
            return self

        async def __aexit__(self, *exc: object) -> None:
            signal.raise_signal(signal.SIGTERM)
            await asyncio.sleep(30)  # the close, cancelled by the signal

    monkeypatch.setattr(txn.backup, "backup", backup)
    monkeypatch.setattr(cli_backup, "txn_client", lambda args: SlowClose())
    assert cli.main(["backup", str(target), "--cluster", "127.0.0.1:1"]) == 0
    captured = capsys.readouterr()
    assert captured.out.startswith(f"backed up 1 key (2 bytes) of ['', +inf) at ts 5 to {target}")
    assert captured.err == ""


def test_a_command_that_swallows_its_cancellation_is_cancelled_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Python 3.11's asyncio.wait_for can swallow a cancellation (gh-86296): a backup
    stopped by SIGHUP under load read on to its end. The cancel is repeated."""
    from shard import cli_signals

    monkeypatch.setattr(cli_signals, "RECANCEL_S", 0.05)

    async def main() -> None:
        signal.raise_signal(signal.SIGHUP)
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.sleep(30)  # the first cancellation, swallowed
        await asyncio.sleep(30)

    with pytest.raises(Stopped) as info:
        run_until_stopped(main)
    assert info.value.signum == signal.SIGHUP
