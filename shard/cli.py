"""The `paxoskv` command line: one entry point, one subcommand per job.

Failures print one line to stderr and exit non-zero; `--debug` shows the traceback.
"""

from __future__ import annotations

import argparse
import logging
import os
import select
import sys
from collections.abc import Callable, Sequence

from shard import __version__  # first: it sets gRPC's process-wide options
from shard.bench_cmd import register_bench_command
from shard.cli_backup import register_backup_commands
from shard.cli_kv import (
    EXIT_USAGE,
    UsageError,
    debug_option,
    register_kv_commands,
    usage_error,
)
from shard.cli_signals import Stopped, how_stopped
from shard.cli_txn import register_txn_command
from shard.cli_watch import register_watch_command
from shard.cluster_cli import register_cluster_commands

Handler = Callable[[argparse.Namespace], int]


class _Parser(argparse.ArgumentParser):
    """A command's parser reports an argument it does not know itself, with its own usage
    (argparse left it to the top-level parser, which printed `paxoskv [-h] ... COMMAND`)."""

    def parse_known_args(  # type: ignore[override]
        self, args: Sequence[str] | None = None, namespace: argparse.Namespace | None = None
    ) -> tuple[argparse.Namespace, list[str]]:
        parsed, extras = super().parse_known_args(args, namespace)
        if extras and self.prog != "paxoskv":
            self.error(f"unrecognized arguments: {' '.join(extras)}")
        return parsed, extras


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="paxoskv",
        description=(
            "paxoskv: a transactional, sharded key-value store. Each shard is a Multi-Paxos "
            "group; cross-shard transactions commit by 2PC over Paxos groups."
        ),
    )
    parser.add_argument("--version", action="version", version=f"paxoskv {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    parser.set_defaults(handler=None)
    commands = parser.add_subparsers(title="commands", metavar="COMMAND")
    node = commands.add_parser(
        "node",
        help="run one node in the foreground",
        description="Run one node in the "
        "foreground until SIGTERM/SIGINT; logs are JSON lines on stderr.",
    )
    node.add_argument("--config", required=True, help="cluster TOML file")
    node.add_argument("--node-id", required=True, help="node id or name from the config")
    node.add_argument(
        "--log-level",
        default="info",
        choices=["debug", "info", "warning", "error"],
        help="the least severe log lines written (default info)",
    )
    first = node.add_mutually_exclusive_group()
    first.add_argument(
        "--bootstrap",
        action="store_true",
        help="the cluster's first start: create this node's data if its directory has none "
        "(without it an empty data directory is refused: a node that lost its data must "
        "not vote again as if it had not). Not for restarts, nor in a service unit",
    )
    first.add_argument(
        "--rebuild",
        action="store_true",
        help="this node's data was lost (a replaced disk): start on its empty directory, "
        "catch up from the other nodes and vote again once that is safe (one node at a "
        "time; every other replica of its groups must be up). On a directory that holds "
        "its data already it changes nothing",
    )
    debug_option(node)
    node.set_defaults(handler=_run_node)
    register_cluster_commands(commands)
    register_kv_commands(commands)
    register_txn_command(commands)
    register_watch_command(commands)
    register_backup_commands(commands)
    register_bench_command(commands)
    from shard.chaos.cli import register_chaos_command  # one contiguous edit (chaos harness)

    register_chaos_command(commands)
    from shard.demo_view import register_demo_command  # here: one contiguous edit of this file

    register_demo_command(commands)
    return parser


def _run_node(args: argparse.Namespace) -> int:
    import asyncio

    from shard.config import check_not_left_behind, load_config
    from shard.proc_name import set_process_name
    from shard.runtime import serve, setup_logging

    setup_logging(args.log_level)  # starts no thread
    try:
        config = load_config(args.config)
        node = config.node(args.node_id)
        check_not_left_behind(args.config, config, node)
        set_process_name(f"paxoskv-{node.name}")  # before any thread starts: they inherit it
        asyncio.run(serve(config, node, first_start=args.bootstrap, rebuild=args.rebuild))
    except Exception as exc:
        # Found by an operator trial: a log shipper keeping the JSON lines, as the README
        # says, lost the one plain line saying why a node did not start or stopped.
        logging.getLogger("paxoskv.node").error(
            "node stopped on an error", extra={"error": str(exc), "node_id": args.node_id}
        )
        raise
    return 0


#: What may stand before the command; every other option is a command's own.
_TOP_LEVEL_OPTIONS = frozenset({"--debug", "--version", "-h", "--help"})


def _misplaced_option(argv: Sequence[str]) -> str | None:
    """An option given before the command that only commands take (`paxoskv --cluster A
    get k`), which argparse reported as an invalid command (found by a README walk-through)."""
    for arg in argv:
        if not arg.startswith("-"):
            return None
        option = arg.split("=", 1)[0]
        if option not in _TOP_LEVEL_OPTIONS:
            return option
    return None


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    misplaced = _misplaced_option(sys.argv[1:] if argv is None else argv)
    if misplaced:
        parser.error(
            f"{misplaced} goes after the command (paxoskv COMMAND {misplaced} ...); "
            f"before it only --debug and --version"
        )
    args = parser.parse_args(argv)
    handler: Handler | None = args.handler
    if handler is None:
        return usage_error(parser)
    try:
        return handler(args)
    except (KeyboardInterrupt, Stopped) as stop:
        # Stopped: a command's stop signals met outside its own handling (found by review:
        # a SIGTERM while `paxoskv watch` connected printed a traceback).
        word, status = how_stopped(stop)
        if getattr(args, "writes", False):
            # A write sent before the interrupt may still be chosen and applied.
            from router.client_errors import OUTCOME_ADVICE  # after shard's gRPC options

            print(
                f"paxoskv: {word}; the write may or may not have happened, and {OUTCOME_ADVICE}",
                file=sys.stderr,
            )
        else:
            print(f"paxoskv: {word}", file=sys.stderr)
        return status
    except Exception as exc:
        if isinstance(exc, BrokenPipeError) and _stdout_is_closed():
            # The reader went away (`paxoskv scan | head -3`): nothing to report.
            return 141  # 128 + SIGPIPE, what a C tool killed by the signal reports
        if args.debug:
            raise
        print(f"paxoskv: error: {exc}", file=sys.stderr)
        # Found by a new user's review: a bad $PAXOSKV_CLUSTER, no address at all or a bad
        # --hex argument exited 1 where a bad option exits 2, so a script could not tell
        # a usage error from a failure.
        return EXIT_USAGE if isinstance(exc, UsageError) else 1


def _stdout_is_closed() -> bool:
    """Whether stdout is a pipe whose reader has gone (poll reports POLLERR on its write
    end); if so, stdout now points at /dev/null, so the interpreter's last flush does not
    complain either. A broken pipe of anything else is an error like any other."""
    try:
        fd = sys.stdout.fileno()
        poller = select.poll()
        poller.register(fd, select.POLLOUT)
        closed = any(events & select.POLLERR for _, events in poller.poll(0))
        if closed:
            os.dup2(os.open(os.devnull, os.O_WRONLY), fd)
    except (OSError, ValueError, AttributeError):
        return False
    return closed


if __name__ == "__main__":
    sys.exit(main())
