"""The `paxoskv` command line: one entry point, one subcommand per job.

Failures print one line to stderr and exit non-zero; `--debug` shows the traceback.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

from shard import __version__

Handler = Callable[[argparse.Namespace], int]


class CliError(Exception):
    """A failure the user can act on; printed as one line without a traceback."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="paxoskv",
        description=(
            "paxoskv: a transactional, sharded key-value store. Each shard is a Multi-Paxos "
            "group; cross-shard transactions commit by 2PC over Paxos groups."
        ),
    )
    parser.add_argument("--version", action="version", version=f"paxoskv {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    parser.set_defaults(handler=None)
    parser.add_subparsers(title="commands", metavar="COMMAND")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    handler: Handler | None = args.handler
    if handler is None:
        parser.print_help()
        return 0
    try:
        return handler(args)
    except KeyboardInterrupt:
        print("paxoskv: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:
        if args.debug:
            raise
        print(f"paxoskv: error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
