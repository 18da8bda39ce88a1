"""`paxoskv watch`: print every change of a key range as it commits (`txn.Client.watch`).

One line per change on stdout, in commit order: `VERSION<TAB>put<TAB>KEY<TAB>VALUE` or
`VERSION<TAB>delete<TAB>KEY` (text escaped as `scan` prints it, or hex with --hex). The
changes of one transaction share its VERSION. A note on stderr says where the watch starts
and, when it stops on an error or Ctrl-C, the option that resumes it without a gap.
"""

from __future__ import annotations

import argparse
import sys
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
        "VERSION<TAB>delete<TAB>KEY per line; a transaction's changes share its VERSION. "
        "Runs until Ctrl-C or --count.",
    )
    add_range_options(cmd)
    cmd.add_argument(
        "--after-version",
        type=version,
        default=None,
        metavar="VERSION",
        help="start after this version instead of now (a version `put` printed, or a "
        "printed line's): the changes since, if younger than the MVCC retention (10 min)",
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

    from txn import Client, PaxosKVError

    def show(data: bytes) -> bytes:
        return (data.hex() if args.hex else escape(data)).encode()

    with Client(
        seeds, cluster_id=args.cluster_id, timeout_s=args.timeout, tls=tls_from(args)
    ) as client:
        client.connect()  # a wrong address fails here at once, not at --timeout
        watch = client.watch(start, end, after=args.after_version)
        printed = 0
        # Every change up to this version is printed: where a resumed watch starts.
        done = args.after_version
        try:
            with watch:
                done = watch.through
                shown_end = "+inf" if end is None else show(end).decode()
                print(
                    f"paxoskv: watching [{show(start).decode()}, {shown_end}) after version "
                    f"{done}; Ctrl-C to stop",
                    file=sys.stderr,
                )
                for batch in watch:
                    for i, change in enumerate(batch):
                        _print_change(change, show)
                        printed += 1
                        if i + 1 == len(batch) or batch[i + 1].version != change.version:
                            done = change.version  # the commit's changes are all printed
                            if args.count is not None and printed >= args.count:
                                return 0
                    done = watch.through
        except KeyboardInterrupt:
            print(f"paxoskv: watch: interrupted{_resume(done)}", file=sys.stderr)
            return 130
        except PaxosKVError as exc:
            raise CommandError(f"{exc}{_resume(done)}") from None
    return 0


def _print_change(change: Any, show: Any) -> None:
    fields = [str(change.version).encode()]
    if change.value is None:
        fields += [b"delete", show(change.key)]
    else:
        fields += [b"put", show(change.key), show(change.value)]
    out = sys.stdout.buffer
    out.write(b"\t".join(fields) + b"\n")
    out.flush()


def _resume(done: int | None) -> str:
    """How to go on without a gap (nothing, when it stopped before its start was fixed)."""
    return "" if done is None else f"; resume with --after-version {done}"
