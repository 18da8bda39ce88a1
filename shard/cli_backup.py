"""`paxoskv backup|restore|verify-backup`: a consistent snapshot of a key range to a file,
and back (txn/backup.py does the work).

    paxoskv backup /var/backups/kv-2026-12-03.pkvb              # every key, one snapshot
    paxoskv backup part.pkvb --start user/ --end user0
    paxoskv verify-backup /var/backups/kv-2026-12-03.pkvb
    paxoskv restore /var/backups/kv-2026-12-03.pkvb             # into an empty cluster

Progress goes to stderr once a second; the last line, on stdout, says what was done.
Imports of grpc and the client stay inside the handlers, so `paxoskv --help` stays fast.
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from typing import TYPE_CHECKING, Any

from shard.cli_kv import (
    PROGRESS_EVERY_S,
    CommandError,
    UsageError,
    arg_bytes,
    bounded_int,
    connection_options,
    debug_option,
    escape,
    show_bytes,
    txn_client,
)
from shard.cli_signals import Stopped, how_stopped, run_until_stopped

if TYPE_CHECKING:
    from txn.backup_file import BackupHeader, BackupSummary


def register_backup_commands(subparsers: Any) -> None:
    """Add backup, restore and verify-backup to the `paxoskv` parser's subcommands."""
    conn = connection_options("deadline per read or batch, retries included (default 10)")
    backup = subparsers.add_parser(
        "backup",
        parents=[conn],
        help="write a consistent snapshot of the keys to a file",
        description="Write every key of [--start, --end) as of one snapshot timestamp, "
        "across all shards, to FILE (written aside as FILE.*.part, then renamed: FILE is complete or "
        "untouched). Writers go on meanwhile; nothing is locked. The backup must end within "
        "the shards' MVCC retention (10 minutes), or it fails with SnapshotTooOld.",
    )
    backup.add_argument("file", metavar="FILE")
    backup.add_argument("--start", default=None, help="first key (default: the first there is)")
    backup.add_argument("--end", default=None, help="the key to stop before (default: no end)")
    backup.add_argument("--hex", action="store_true", help="--start and --end are hex")
    backup.add_argument(
        "--page-keys",
        type=bounded_int(1, 100_000),
        default=1000,
        metavar="N",
        help="keys per snapshot scan (default 1000)",
    )
    backup.set_defaults(handler=_cmd_backup)

    restore = subparsers.add_parser(
        "restore",
        parents=[conn],
        help="write a backup file's keys into a cluster",
        description="Check all of FILE, then write its keys in transactions of at most "
        "1,000 keys and about 1 MiB. Without --overwrite a cluster holding any key in the backup's "
        "range is refused before anything is written. Each batch is atomic, the whole "
        "restore is not: restore while nobody writes the range; after a failure, run it "
        "again with --overwrite. Keys get new versions (the restore's commit timestamps).",
    )
    restore.add_argument("file", metavar="FILE")
    restore.add_argument(
        "--overwrite",
        action="store_true",
        help="write over keys the cluster already holds in the backup's range (keys the "
        "backup lacks are left as they are)",
    )
    restore.set_defaults(handler=_cmd_restore, writes=True)

    verify = subparsers.add_parser(
        "verify-backup",
        help="check a backup file and print what it holds",
        description="Read FILE through and check it all (format, key order, sizes, record "
        "count, SHA-256); print its cluster, timestamp, range, keys and digest. Needs no "
        "cluster.",
    )
    verify.add_argument("file", metavar="FILE")
    verify.add_argument(
        "--print",
        action="store_true",
        help="once FILE is checked, print its KEY<TAB>VALUE lines as `paxoskv scan` does "
        "(the summary then goes to stderr)",
    )
    verify.add_argument("--hex", action="store_true", help="with --print: keys and values in hex")
    debug_option(verify)
    verify.set_defaults(handler=_cmd_verify)


class _Progress:
    """Prints `paxoskv VERB: N keys, B bytes so far` on stderr, at most once a second."""

    def __init__(self, verb: str) -> None:
        self._verb = verb
        self._next = time.monotonic() + PROGRESS_EVERY_S
        self.keys = 0

    def __call__(self, keys: int, data_bytes: int) -> None:
        self.keys = keys
        now = time.monotonic()
        if now >= self._next:
            self._next = now + PROGRESS_EVERY_S
            print(
                f"paxoskv {self._verb}: {_keys(keys)}, {_size(data_bytes)} so far", file=sys.stderr
            )


def _size(count: int) -> str:
    if count < 1024:
        return f"{count:,} bytes"
    if count < 1024 * 1024:
        return f"{count / 1024:,.1f} KiB"
    return f"{count / (1024 * 1024):,.1f} MiB"


def _range(header: BackupHeader) -> str:
    """The backup's key range as `paxoskv scan` prints keys: ['a', 'b'), ['', +inf)."""
    end = "+inf" if header.end is None else f"'{escape(header.end)}'"
    return f"['{escape(header.start)}', {end})"


def _keys(count: int) -> str:
    return f"{count:,} key" if count == 1 else f"{count:,} keys"


def _cmd_backup(args: argparse.Namespace) -> int:
    from txn.backup import backup, backup_range
    from txn.errors import InvalidArgument, SnapshotTooOld

    start = b"" if args.start is None else arg_bytes(args.start, args.hex, "--start")
    end = None if args.end is None else arg_bytes(args.end, args.hex, "--end")
    try:  # here too, so a bad range is a usage error (exit 2), not a failed backup
        start, end = backup_range(start, end)
    except InvalidArgument as exc:
        raise UsageError(f"--start/--end: {exc}") from None

    written: list[BackupSummary] = []

    async def main() -> int:
        async with txn_client(args) as client:
            try:
                written.append(
                    await backup(
                        client,
                        args.file,
                        start=start,
                        end=end,
                        page_keys=args.page_keys,
                        progress=_Progress("backup"),
                    )
                )
            except SnapshotTooOld as exc:
                raise CommandError(
                    f"{exc}: the backup took longer than the shards keep old versions (10 "
                    "minutes); no file was written. Run it again, with fewer keys at a time "
                    "(--start/--end) if it keeps taking that long"
                ) from None
        return 0

    try:
        run_until_stopped(main)
    except (KeyboardInterrupt, Stopped) as stop:
        if not written:
            # A backup cut short leaves FILE as it was (its FILE.*.part is dropped on the way).
            word, status = how_stopped(stop)
            print(f"paxoskv: backup: {word}; {args.file} was not written", file=sys.stderr)
            return status
        # Stopped while it closed its connections (found by review): FILE is in place.
    summary = written[0]
    print(
        f"backed up {_keys(summary.keys)} ({_size(summary.data_bytes)}) of "
        f"{_range(summary.header)} at ts {summary.header.read_ts} to {summary.path} "
        f"(sha256 {summary.sha256})"
    )
    return 0


def _cmd_restore(args: argparse.Namespace) -> int:
    from txn.backup import restore

    progress = _Progress("restore")

    async def main() -> int:
        async with txn_client(args) as client:
            summary = await restore(client, args.file, overwrite=args.overwrite, progress=progress)
        committed = (
            f" in {summary.transactions:,} transaction{'' if summary.transactions == 1 else 's'}, "
            "committed at ts "
            f"{summary.first_commit_ts}..{summary.last_commit_ts}"
            if summary.transactions
            else ""
        )
        print(
            f"restored {_keys(summary.keys)} ({_size(summary.data_bytes)}) of "
            f"{_range(summary.header)} from ts {summary.header.read_ts}{committed}"
        )
        return 0

    try:
        return run_until_stopped(main)
    except (KeyboardInterrupt, Stopped) as stop:
        # Not the single write's advice: batches are written, one may be under way.
        word, status = how_stopped(stop)
        print(
            f"paxoskv: {word} after restoring {_keys(progress.keys)}; the batch under way "
            "may or may not be written; finish with: paxoskv restore "
            f"{shlex.quote(args.file)} --overwrite",
            file=sys.stderr,
        )
        return status


def _cmd_verify(args: argparse.Namespace) -> int:
    from txn.backup_file import BackupReader

    if args.hex and not args.print:
        raise UsageError("--hex says how --print shows keys and values: give --print too")
    with BackupReader(args.file) as reader:
        summary = reader.verify()
        if args.print:  # after the check: nothing is printed of a file not intact
            for key, value in reader.records():  # from the first record again
                print(f"{show_bytes(args, key)}\t{show_bytes(args, value)}")
    header = summary.header
    print(
        f"intact: {_keys(summary.keys)} ({_size(summary.data_bytes)}) of {_range(header)} "
        f"from cluster {header.cluster_id!r} at ts {header.read_ts}, sha256 {summary.sha256}",
        file=sys.stderr if args.print else sys.stdout,
    )
    return 0
