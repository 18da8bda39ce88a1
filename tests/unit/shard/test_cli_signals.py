"""shard.cli_signals: SIGTERM and SIGHUP stop a long command with Stopped, once; a signal the
process ignores (nohup) stays ignored; the handlers before are put back. And what `paxoskv
backup` and `restore` say when they stop short."""

from __future__ import annotations

import asyncio
import signal
import threading
from typing import Any

import pytest

from shard.cli_signals import Stopped, how_stopped, run_until_stopped, stop_signals_raise

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


def test_inside_the_handler_a_second_signal_acts_as_it_would_have() -> None:
    with stop_signals_raise():
        handler = signal.getsignal(signal.SIGTERM)
        assert callable(handler)
        with pytest.raises(Stopped):
            handler(signal.SIGTERM, None)
        assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
        assert signal.getsignal(signal.SIGHUP) is signal.SIG_DFL


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
    before = signal.getsignal(signal.SIGTERM)

    async def main() -> None:
        try:
            signal.raise_signal(signal.SIGTERM)
            await asyncio.sleep(30)
        finally:
            cleaned.append(True)

    with pytest.raises(Stopped) as info:
        run_until_stopped(main)
    assert info.value.signum == signal.SIGTERM and cleaned == [True]
    assert signal.getsignal(signal.SIGTERM) == before


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
