"""`paxoskv watch`: print every change of a key range as it commits (`txn.Client.watch`).

One line per change on stdout, in commit order: `VERSION<TAB>put<TAB>KEY<TAB>VALUE` or
`VERSION<TAB>delete<TAB>KEY` (text escaped as `scan` prints it, or hex with --hex); with
--prev-kv, each line goes on with `<TAB>PREV_VERSION<TAB>PREV_VALUE`, the value the key held
before (just `<TAB>0` when it held none). The changes of one transaction share its VERSION. A note on stderr says where the watch starts
and, when it stops on an error, Ctrl-C (exit 130), SIGTERM (143) or SIGHUP (129), the option that
resumes it without a gap. Except after SnapshotTooOld: the changes after that point are no
longer kept, so the note says to read the current state and watch from now instead. With
--resume, a shard that does not answer in time (down, leaderless, partitioned) no longer
ends the watch: it reads again from where it was, as `client.watch(resume=True)` does, and
says so on stderr.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from collections.abc import Iterator
from typing import Any

from shard.cli_kv import (
    CommandError,
    add_range_options,
    bounded_int,
    codec_options,
    connection_options,
    escape,
    key_range,
    seeds_from,
    tls_from,
    version,
)
from shard.cli_signals import Stopped, stop_signals_raise


def register_watch_command(subparsers: Any) -> None:
    """Add `watch` to the `paxoskv` parser's subcommands."""
    cmd = subparsers.add_parser(
        "watch",
        parents=[
            connection_options("deadline of each read of changes, retries included (default 10)"),
            codec_options(),
        ],
        help="print every change of a key range as it commits",
        description="Print every put and delete of keys in [--start, --end) (or --prefix) "
        "from now on, in commit order, across shards: VERSION<TAB>put<TAB>KEY<TAB>VALUE or "
        "VERSION<TAB>delete<TAB>KEY per line (with --prev-kv, then <TAB>PREV_VERSION<TAB>"
        "PREV_VALUE); a transaction's changes share its VERSION. "
        "Runs until Ctrl-C, SIGTERM, SIGHUP or --count; then, or after an error, a note on stderr "
        "names the --after-version that resumes without a gap (with --resume, an outage "
        "does not end it).",
    )
    add_range_options(cmd)
    cmd.add_argument(
        "--after-version",
        type=version,
        default=None,
        metavar="VERSION",
        help="start after this version instead of now (a version `put` printed, or a "
        "printed line's): the changes since, if younger than the MVCC retention (10 min; "
        "older fails: then scan the current state and watch from now)",
    )
    cmd.add_argument(
        "--prev-kv",
        action="store_true",
        help="also print the value each key held before the change, as etcdctl watch "
        "--prev-kv: <TAB>PREV_VERSION<TAB>PREV_VALUE at the end of each line (<TAB>0 when "
        "the key held none: never written, deleted or expired)",
    )
    cmd.add_argument(
        "--resume",
        action="store_true",
        help="go on through outages: when a shard does not answer within --timeout, read "
        "again from the last version printed (after a pause of up to 1 s) instead of "
        "exiting, with a note on stderr each time; nothing is missed or printed twice",
    )
    cmd.add_argument(
        "--count",
        type=bounded_int(1),
        default=None,
        metavar="N",
        help="stop after N changes (and the rest of the commit the Nth belongs to)",
    )
    cmd.set_defaults(handler=_cmd_watch)


def _cmd_watch(args: argparse.Namespace) -> int:
    start, end = key_range(args)
    seeds = seeds_from(args)
    with stop_signals_raise():
        return _watch(args, start, end, seeds)


def _watch(args: argparse.Namespace, start: bytes, end: bytes | None, seeds: list[str]) -> int:
    from txn import Client, InvalidArgument, PaxosKVError, SnapshotTooOld

    def show(data: bytes) -> bytes:
        return (data.hex() if args.hex else escape(data)).encode()

    with Client(
        seeds, cluster_id=args.cluster_id, timeout_s=args.timeout, tls=tls_from(args)
    ) as client:
        client.connect()  # a wrong address fails here at once, not at --timeout
        watch = client.watch(
            start, end, after=args.after_version, prev_values=args.prev_kv, resume=args.resume
        )
        printed = 0
        # Every change up to this version is printed: where a resumed watch starts. After
        # each batch, empty ones included, the watch's own `through`, read as its batch
        # came (found by an application trial: on a quiet range the resume point stayed at
        # the start, and was garbage-collected after 10 minutes).
        done = args.after_version
        started = False  # the nodes took the start: a refusal after it is not of the start
        try:
            with watch:
                done = watch.through
                started = True
                shown_end = "+inf" if end is None else show(end).decode()
                print(
                    f"paxoskv: watching [{show(start).decode()}, {shown_end}) after version "
                    f"{done}; Ctrl-C to stop",
                    file=sys.stderr,
                )
                for batch, through in _batches(watch, args.resume):
                    for i, change in enumerate(batch):
                        _print_change(change, show, args.prev_kv)
                        printed += 1
                        if i + 1 == len(batch) or batch[i + 1].version != change.version:
                            done = change.version  # the commit's changes are all printed
                            if args.count is not None and printed >= args.count:
                                return 0
                    done = through
        except KeyboardInterrupt:
            print(f"paxoskv: watch: interrupted{_resume(done)}", file=sys.stderr)
            return 130
        except Stopped as stop:
            # A service manager stops a watch with SIGTERM: without the resume point Ctrl-C
            # prints, the watch started again after it would have nowhere to go on from.
            print(f"paxoskv: watch: {stop.word}{_resume(done)}", file=sys.stderr)
            return stop.exit_status
        except SnapshotTooOld as exc:
            # Resuming from the too-old version could only fail again: say what works.
            raise CommandError(f"{exc}{_start_over(args, done)}") from None
        except InvalidArgument as exc:
            # A start refused (an --after-version far ahead of the nodes' clocks) would be
            # refused again from the same version: no resume point then (found by review).
            # Later, a round's timestamp refused (clocks apart) resumes from `done`.
            raise CommandError(f"{exc}{_resume(done) if started else ''}") from None
        except PaxosKVError as exc:
            raise CommandError(f"{exc}{_resume(done)}") from None
    return 0


#: How often the watch looks whether it read again (to say so, with --resume) and moves its
#: resume point while nothing changes (it waits for a batch meanwhile, so a change is
#: printed as soon as it comes).
POLL_S = 0.5


def _batches(watch: Any, note_resumes: bool) -> Iterator[tuple[list[Any], int]]:
    """The watch's batches, empty ones included, each with the watch's `through` as it
    came (read here, between batches: a batch taken while an interrupt ended the wait for
    it moved `through` past changes never printed); with `note_resumes`, a note on stderr
    whenever it read again."""
    noted = 0
    while True:
        batch = watch.next_batch(timeout_s=POLL_S)
        through = watch.through
        if note_resumes and watch.resumed > noted:
            noted = watch.resumed
            print(
                f"paxoskv: watch: a shard did not answer within --timeout; reading again "
                f"after version {through} ({noted} so far)",
                file=sys.stderr,
            )
        yield batch, through


def _print_change(change: Any, show: Any, previous: bool) -> None:
    fields = [str(change.version).encode()]
    if change.value is None:
        fields += [b"delete", show(change.key)]
    else:
        fields += [b"put", show(change.key), show(change.value)]
    if previous:
        fields.append(str(change.prev_version).encode())
        if change.prev_value is not None:
            fields.append(show(change.prev_value))
    out = sys.stdout.buffer
    out.write(b"\t".join(fields) + b"\n")
    out.flush()


def _resume(done: int | None) -> str:
    """How to go on without a gap (nothing, when it stopped before its start was fixed)."""
    return "" if done is None else f"; resume with --after-version {done}"


def _start_over(args: argparse.Namespace, done: int | None) -> str:
    """What works after SnapshotTooOld: the changes after `done` are gone, so read the
    current state and watch from now. Watch first, then scan: a change made in between
    shows in both (replayed over the scanned state, it leaves the same state); scanning
    first would miss it."""
    after = "" if done is None else f" after version {done}"
    return (
        f"; the changes{after} are no longer kept (they are older than the shards' MVCC "
        f"retention, 10 minutes): watch from now (without --after-version), then read the "
        f"current state with: {_scan_command(args)}"
    )


def _scan_command(args: argparse.Namespace) -> str:
    """`paxoskv scan` of the whole range the watch's own options name, as they were given."""
    words = ["paxoskv", "scan"]
    if args.prefix is not None:
        words += ["--prefix", args.prefix]
    if args.start:
        words += ["--start", args.start]
    if args.end is not None:
        words += ["--end", args.end]
    if args.hex:
        words.append("--hex")
    return shlex.join([*words, "--limit", "0"])  # 0: every key, not the first 1000
