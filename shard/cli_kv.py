"""`paxoskv get|ttl|put|delete|cas|add|scan|status`: the data commands, over `router.client`.

Output is plain and script-friendly: a command prints exactly its result on stdout (a
value, a version, `KEY<TAB>VALUE` lines) and nothing else. Keys and values are UTF-8 text
on the command line, or hex with `--hex` (then printed as hex too). Exit status: 0 success,
1 error (one line on stderr, `paxoskv: error: ...`), 2 a usage error: a bad option or option
value (argparse's usage and error line) or a bad argument a command finds itself (a
`UsageError`: one line, as other errors), 3 "no": a key not found by `get` or `ttl`, a
compare-and-set whose condition did not hold.

Imports of grpc and the client stay inside the handlers, so `paxoskv --help` stays fast.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
from collections.abc import Awaitable, Callable
from typing import Any

from router.env import ENV_CA, ENV_CERT, ENV_CLUSTER, ENV_KEY
from router.keys import prefix_end
from router.limits import DELETE_RANGE_KEYS, MAX_KEY_BYTES, MAX_TTL_S
from shard.cli_status import status_report, status_table

EXIT_NO = 3
"""Exit status of `get` for a missing key and of `cas` when its condition did not hold."""

EXIT_USAGE = 2
"""Exit status of a usage error, argparse's own and `UsageError` alike."""

PROGRESS_EVERY_S = 1.0
"""How often a long command notes its progress on stderr."""


class UsageError(Exception):
    """A command-line mistake the user can fix; printed as one line, exit status 2
    (`shard.cli.main`), as argparse's usage errors."""


class CommandError(Exception):
    """A failure the command words itself that is not a usage error; printed as one line,
    exit status 1."""


# ---------------------------------------------------------------------------- parser


def usage_error(parser: argparse.ArgumentParser) -> int:
    """A command that needs a subcommand and got none: its help on stderr, exit status 2 (a
    usage error, as argparse's own), so a script that forgot the command does not go on."""
    parser.print_help(sys.stderr)
    # The last line says what was wrong, as argparse's own usage errors do (found by a
    # README walk-through: the help alone read as if nothing had failed).
    print(f"{parser.prog}: error: a command is required", file=sys.stderr)
    return EXIT_USAGE


# Option values are checked by argparse `type=` functions, so every bad one exits 2 (a
# usage error) with argparse's message naming the option (found by review: some exited 2,
# others 1 from the command's own check).


def _seconds(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None


def positive_seconds(text: str) -> float:
    """argparse type of a --timeout: a number of seconds above 0."""
    seconds = _seconds(text)
    if not seconds > 0:  # also refuses nan
        raise argparse.ArgumentTypeError(f"must be > 0 seconds, got {text!r}")
    return seconds


def ttl_seconds(text: str) -> float:
    """argparse type of a --ttl: a number of seconds above 0, at most MAX_TTL_S."""
    seconds = positive_seconds(text)
    if seconds > MAX_TTL_S:
        raise argparse.ArgumentTypeError(
            f"must be at most {MAX_TTL_S} seconds (a year and a day), got {text!r}"
        )
    return seconds


def non_negative_seconds(text: str) -> float:
    """argparse type of a wait that may be 0 seconds."""
    seconds = _seconds(text)
    if not seconds >= 0:  # also refuses nan
        raise argparse.ArgumentTypeError(f"must be >= 0 seconds, got {text!r}")
    return seconds


def bounded_int(low: int, high: int | None = None, why: str = "") -> Callable[[str], int]:
    """argparse type: an integer from `low` to `high` (None: no upper bound); `why` follows
    the bounds in the message."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
        if value < low or (high is not None and value > high):
            bounds = f">= {low}" if high is None else f"{low} to {high}"
            raise argparse.ArgumentTypeError(f"must be {bounds}{why}, got {text!r}")
        return value

    return parse


def shard_count(text: str) -> int:
    """argparse type of a --shards."""
    from shard.cluster import MAX_SHARDS  # here: it imports gRPC, and --help must stay fast

    return bounded_int(1, MAX_SHARDS)(text)


def split_point(text: str) -> bytes:
    """argparse type of a --split-point: a non-empty key of printable ASCII without quotes
    or backslashes, which cluster.toml holds as a plain string (others: write the file)."""
    if not text or len(text) > MAX_KEY_BYTES:
        raise argparse.ArgumentTypeError(
            f"a split point is a key of 1 to {MAX_KEY_BYTES:,} bytes, got {len(text):,}"
        )
    if not all(" " <= c <= "~" and c not in "'\"\\" for c in text):
        raise argparse.ArgumentTypeError(
            f"{text!r}: a split point given here is printable ASCII without quotes or "
            "backslashes; write another into cluster.toml's [shards] split_points"
        )
    return text.encode()


version = bounded_int(0, 2**64 - 1, " (a version, as `put` prints one)")
"""argparse type of a version option (versions are unsigned 64-bit: past 2**64-1 protobuf
said only "Value out of range")."""


def counter_delta(text: str) -> int:
    """argparse type of the N added to an 8-byte counter: a whole number in [-2**63, 2**63)."""
    try:
        delta = int(text) if text.lstrip("+-").isascii() else None  # no "٣" or "1_0"
    except ValueError:
        delta = None
    if delta is None or "_" in text or not -(2**63) <= delta < 2**63:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a whole number in [-2**63, 2**63) (an 8-byte counter's addend)"
        )
    return delta


def cluster_addresses(text: str) -> list[str]:
    """argparse type of a --cluster: HOST:PORT[,HOST:PORT...], checked as the clients check
    it (router.seeds)."""
    from router.client_errors import InvalidArgument
    from router.seeds import parse_addresses

    try:
        return parse_addresses(text)
    except InvalidArgument as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def cluster_option(parser: Any) -> None:
    """--cluster, defaulting to $PAXOSKV_CLUSTER (read by `seeds_from`)."""
    parser.add_argument(
        "--cluster",
        metavar="HOST:PORT[,HOST:PORT...]",
        type=cluster_addresses,
        default=None,
        help=f"client addresses of some nodes (default: ${ENV_CLUSTER})",
    )


#: What --timeout does not cover (found by a new user's review: the Python client's first
#: call waits within its timeout for nodes that refuse, a command does not).
CONNECT_HELP = (
    "; a command first connects, trying each address once: when no node accepts a "
    "connection it fails at once"
)


def debug_option(parser: Any) -> None:
    """`--debug` after a subcommand too (a parser or an argument group)."""
    parser.add_argument(
        "--debug",
        action="store_true",
        default=argparse.SUPPRESS,  # leaves `paxoskv --debug COMMAND` as it is
        help="show tracebacks on errors (as `paxoskv --debug`)",
    )


def connection_options(
    timeout_help: str = "deadline per operation, retries included (default 10)",
) -> argparse.ArgumentParser:
    """The options of every command that talks to a cluster (an argparse parent); the
    --timeout help is `timeout_help` and CONNECT_HELP."""
    common = argparse.ArgumentParser(add_help=False)
    group = common.add_argument_group("connection")
    cluster_option(group)
    group.add_argument(
        "--cluster-id", default=None, help="refuse nodes of another cluster (default: learn it)"
    )
    debug_option(group)
    group.add_argument(
        "--timeout",
        type=positive_seconds,
        default=10.0,
        metavar="SECONDS",
        help=timeout_help + CONNECT_HELP,
    )
    add_tls_options(group)
    return common


def add_tls_options(group: Any) -> None:
    """--tls-ca/--tls-cert/--tls-key, each defaulting to its environment variable."""
    group.add_argument(
        "--tls-ca",
        metavar="PEM",
        default=None,
        help=f"connect over TLS trusting this CA (default: ${ENV_CA}; unset: plaintext)",
    )
    group.add_argument(
        "--tls-cert",
        metavar="PEM",
        default=None,
        help=f"client certificate to present (default: ${ENV_CERT})",
    )
    group.add_argument(
        "--tls-key", metavar="PEM", default=None, help=f"its private key (default: ${ENV_KEY})"
    )


def ttl_option(parser: Any) -> None:
    """--ttl SECONDS: how long the value written lives."""
    parser.add_argument(
        "--ttl",
        type=ttl_seconds,
        default=None,
        metavar="SECONDS",
        help="the value lives SECONDS after it is written, then its shard's leader deletes "
        "it (within about 0.1 s while the shard has a leader); renew it, keeping its version "
        "(a lease's fencing token), with `cas KEY --expect-version V --touch --ttl SECONDS`",
    )


def codec_options() -> argparse.ArgumentParser:
    """--hex (an argparse parent)."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--hex",
        action="store_true",
        help="keys and values are hex on the command line and in the output",
    )
    return common


def add_range_options(parser: Any) -> None:
    """--start, --end and --prefix: a key range (read by `key_range`)."""
    parser.add_argument("--start", default="", help="first key (inclusive; default: the start)")
    parser.add_argument("--end", default=None, help="end key (exclusive; default: the end)")
    parser.add_argument("--prefix", default=None, help="only keys with this prefix")


def key_range(args: argparse.Namespace, after: bytes | None = None) -> tuple[bytes, bytes | None]:
    """[start, end) of the range options, narrowed to the keys after `after` if given;
    UsageError for an --end not after --start, or options that leave nothing."""
    start = arg_bytes(args.start, args.hex, "--start")
    end = None if args.end is None else arg_bytes(args.end, args.hex, "--end")
    if end is not None and end <= start:
        # Found by a user trial: `scan --reverse --start z --end a` listed nothing silently.
        raise UsageError(
            "--end must come after --start: the range is [--start, --end), also with "
            "--reverse, which reads it from its end down"
        )
    if after is not None:
        start = max(start, after + b"\x00")
    if args.prefix is not None:
        prefix = arg_bytes(args.prefix, args.hex, "--prefix")
        if len(prefix) > MAX_KEY_BYTES:
            # Found by a README trial: `watch --prefix` of such a prefix waited for ever.
            raise UsageError(
                f"--prefix is {len(prefix):,} bytes, longer than any key (at most "
                f"{MAX_KEY_BYTES:,} bytes, MAX_KEY_BYTES): no key has it"
            )
        start = max(start, prefix)
        past = prefix_end(prefix)
        if past is not None:
            end = past if end is None else min(end, past)
    if end is not None and end <= start:
        raise UsageError("--start, --after, --prefix and --end together leave an empty range")
    return start, end


def register_kv_commands(subparsers: Any) -> None:
    """Add get/put/delete/cas/scan/status to the `paxoskv` parser's subcommands."""
    conn = connection_options()
    codec = codec_options()
    parents = [conn, codec]

    get = subparsers.add_parser(
        "get",
        parents=parents,
        help="print the value of a key",
        description="Print the value of KEY (linearizable read through the shard's leader). "
        f"A missing key prints nothing on stdout (a note on stderr) and exits with status "
        f"{EXIT_NO}.",
    )
    get.add_argument("key")
    get.add_argument("-v", "--verbose", action="store_true", help="print VERSION<TAB>VALUE instead")
    get.add_argument(
        "--stale", action="store_true", help="allow a possibly stale read from any replica"
    )
    get.add_argument(
        "--at-version",
        type=version,
        default=0,
        metavar="VERSION",
        help="read the newest version <= this one (a version `put` printed)",
    )
    get.add_argument(
        "--int",
        action="store_true",
        help="print the value as the number of an 8-byte counter (`paxoskv add`, tx.add)",
    )
    get.set_defaults(handler=_cmd_get)

    ttl = subparsers.add_parser(
        "ttl",
        parents=parents,
        help="print how many seconds a key has left to live",
        description="Print the seconds KEY's value has left to live (a value written with "
        "--ttl; linearizable read through the shard's leader), by this machine's clock, or "
        "-1 when it lives for ever (as Redis's TTL). 0 means due: its leader deletes it "
        f"shortly. A missing key prints nothing on stdout (a note on stderr) and exits with "
        f"status {EXIT_NO}.",
    )
    ttl.add_argument("key")
    ttl.set_defaults(handler=_cmd_ttl)

    put = subparsers.add_parser(
        "put",
        parents=parents,
        help="write a value; print its version",
        description="Write VALUE under KEY and print the new version. Without VALUE, the "
        "value is all of stdin, as bytes: a trailing newline is kept (`echo hi | paxoskv put "
        "k` stores 'hi\\n'; `printf %s hi` does not add one), and an empty stdin stores "
        "an empty value (--hex: stdin is hex text, surrounding whitespace ignored).",
    )
    put.add_argument("key")
    put.add_argument("value", nargs="?", default=None)
    ttl_option(put)
    put.set_defaults(handler=_cmd_put, writes=True)

    delete = subparsers.add_parser(
        "delete",
        parents=parents,
        help="delete a key, or the keys of a range; print the version, or how many",
        description="Delete KEY and print the deletion's version (0 when the key was absent). "
        "With --prefix, or --start and --end (or --to-end), instead of KEY: delete every key "
        "of the range "
        "in transactions of at most --batch keys each (tx.delete_range) until none is left, "
        "and print how many were deleted. Each batch is atomic, the whole range is not: a "
        "reader may see it part-deleted, and a key written into it meanwhile may be deleted "
        "too or outlive the command. --start '' --to-end deletes every key.",
    )
    delete.add_argument("key", nargs="?", default=None)
    delete_range = delete.add_argument_group("a range instead of KEY")
    delete_range.add_argument("--prefix", default=None, help="the keys with this prefix")
    delete_range.add_argument(
        "--start", default=None, help="first key (inclusive; '' for the first of all)"
    )
    delete_range.add_argument("--end", default=None, help="end key (exclusive)")
    delete_range.add_argument(
        "--to-end",
        action="store_true",
        help="with --start instead of --end: through the last key of all (etcd's --from-key)",
    )
    delete_range.add_argument(
        "--batch",
        type=bounded_int(1, DELETE_RANGE_KEYS, " (keys a transaction may delete in a shard)"),
        default=1000,
        metavar="N",
        help="keys per transaction (default 1000)",
    )
    delete.set_defaults(handler=_cmd_delete, writes=True)

    cas = subparsers.add_parser(
        "cas",
        parents=parents,
        help="compare-and-set: write or delete only if a condition holds",
        description="If KEY matches the condition, apply the action and print the new "
        f"version (--touch: the version it kept). Otherwise exit with status {EXIT_NO}, "
        "printing the key's current "
        "VERSION<TAB>VALUE (nothing when absent) and the reason on stderr.",
    )
    cas.add_argument("key")
    expect = cas.add_mutually_exclusive_group(required=True)
    expect.add_argument("--expect-value", metavar="V", help="the key's value must be V")
    expect.add_argument(
        "--expect-version",
        metavar="N",
        type=version,
        help="the key's version must be N (0: the key must not exist, as after a delete)",
    )
    expect.add_argument("--expect-absent", action="store_true", help="the key must not exist")
    action = cas.add_mutually_exclusive_group(required=True)
    action.add_argument("--new-value", metavar="V", help="write V")
    action.add_argument("--delete", action="store_true", help="delete the key")
    action.add_argument(
        "--touch",
        action="store_true",
        help="keep the value and its version, and let it live --ttl SECONDS from now on "
        "(a lease's renewal; never shortening what it had)",
    )
    ttl_option(cas)
    cas.set_defaults(handler=_cmd_cas, writes=True)

    add = subparsers.add_parser(
        "add",
        parents=parents,
        help="add N to an 8-byte counter; print the commit's version",
        description="Add the integer N (negative to subtract) to the little-endian 8-byte "
        "counter at KEY, an absent key counting as 0, and print the version written: an "
        "atomic add (tx.add), applied to the value the key holds at commit, so concurrent "
        "adds never conflict. A value that is not 8 bytes when read first is refused (a "
        "snapshot read, which takes no conflict: one written between that read and the "
        "commit is still cut or padded, as tx.add in Python does). Read it back with "
        "`paxoskv get --int KEY`.",
    )
    add.add_argument("key")
    add.add_argument("n", metavar="N", type=counter_delta)
    add.set_defaults(handler=_cmd_add, writes=True)

    scan = subparsers.add_parser(
        "scan",
        parents=parents,
        help="list keys in a range, in key order (or reverse)",
        description="Print KEY<TAB>VALUE lines (-v: KEY<TAB>VERSION<TAB>VALUE) for keys in "
        "[--start, --end), in key order (--reverse: from the last key down), across shards. "
        "In text mode a backslash, tab, "
        "newline or carriage return inside a key or value is printed escaped (\\\\, \\t, "
        "\\n, \\r), and other control bytes and bytes that are not UTF-8 as \\xNN; use "
        "--hex for binary data.",
    )
    add_range_options(scan)
    scan.add_argument(
        "--after",
        default=None,
        metavar="KEY",
        help="only keys after KEY (exclusive; the next page of a forward listing)",
    )
    scan.add_argument(
        "--limit",
        type=bounded_int(0, why=" (0: no limit)"),
        default=1000,
        help="at most N items (default 1000; 0: no limit, as etcdctl's); a note on stderr "
        "says when more follow",
    )
    scan.add_argument(
        "--reverse",
        action="store_true",
        help="from the last key of the range down (with --limit 1: the range's last key)",
    )
    scan.add_argument("-v", "--verbose", action="store_true", help="add each item's version")
    scan.add_argument("--stale", action="store_true", help="allow possibly stale reads")
    scan.set_defaults(handler=_cmd_scan)

    status = subparsers.add_parser(
        "status",
        parents=[conn],
        help="show every group's leader, ballot and progress, and node reachability",
        description="One row per group from its leader's view (key range, replicas, leader, "
        "ballot, chosen and applied index), then one row per node (reachable or why not). "
        "Exits 1 when a node is unreachable or refused by its peers, or a group has no "
        "leader.",
    )
    status.add_argument(
        "--json",
        action="store_true",
        help="print the groups and nodes as one JSON object (for scripts: fields, not columns)",
    )
    status.set_defaults(handler=_cmd_status)


# ---------------------------------------------------------------------------- helpers


def seeds_from(args: argparse.Namespace) -> list[str]:
    """The seed addresses of `--cluster` (checked by argparse), else of $PAXOSKV_CLUSTER;
    UsageError if none, or a bad one in the variable."""
    from router.client_errors import InvalidArgument
    from router.seeds import parse_addresses

    if args.cluster is not None:
        seeds: list[str] = args.cluster
        return seeds
    text = os.environ.get(ENV_CLUSTER)
    if text is None or not text.strip():
        # Set but empty is said so (README trial: "or set it" read wrong when it was set).
        state = "not set" if text is None else "set but empty"
        raise UsageError(
            f"no cluster address: pass --cluster HOST:PORT[,HOST:PORT...] or set {ENV_CLUSTER} "
            f"(it is {state})"
        )
    try:
        return parse_addresses(text)
    except InvalidArgument as exc:
        raise UsageError(f"${ENV_CLUSTER}: {exc}") from None


def tls_from(args: argparse.Namespace) -> Any:
    """The client TLS files of --tls-* over $PAXOSKV_TLS_*; None for plaintext."""
    from router.tls import TlsFiles, TlsSetupError

    environ = dict(os.environ)
    for flag, name in ((args.tls_ca, ENV_CA), (args.tls_cert, ENV_CERT), (args.tls_key, ENV_KEY)):
        if flag is not None:
            environ[name] = flag
    try:
        return TlsFiles.from_env(environ)
    except TlsSetupError as exc:
        raise UsageError(str(exc)) from None


def arg_bytes(text: str, hex_mode: bool, what: str) -> bytes:
    """A key or value from the command line: hex when `hex_mode`, else the bytes as given
    (argv bytes that are not UTF-8 came in as surrogate escapes)."""
    if hex_mode:
        try:
            return bytes.fromhex(text)
        except ValueError:
            raise UsageError(f"{what} {text!r} is not valid hex") from None
    return os.fsencode(text)


def arg_key(text: str, hex_mode: bool) -> bytes:
    """A key from the command line (as `arg_bytes`); an empty one is a usage error here,
    not a node's refusal after a round trip."""
    key = arg_bytes(text, hex_mode, "key")
    if not key:
        raise UsageError("empty key: keys are at least 1 byte")
    if len(key) > MAX_KEY_BYTES:
        # A usage error before connecting, for reads too (found by a README trial: `get`
        # of such a key met the node's refusal, exit 1, with advice for writes).
        raise UsageError(
            f"the key is {len(key):,} bytes, over the limit of {MAX_KEY_BYTES:,} bytes "
            "(MAX_KEY_BYTES): no key is that long"
        )
    return key


_CONTROL_ESCAPES = {
    **{code: f"\\x{code:02x}" for code in [*range(0x20), 0x7F]},
    ord("\t"): "\\t",
    ord("\n"): "\\n",
    ord("\r"): "\\r",
}


def escape(data: bytes) -> str:
    """Bytes as one printable line, unambiguously: a backslash doubled, tab, newline and
    carriage return as \\t, \\n, \\r, other control bytes and bytes that are not UTF-8 as
    \\xNN (so the key b"\\xff" and the 4-byte key b"\\\\xff" print differently)."""
    text = data.replace(b"\\", b"\\\\").decode("utf-8", errors="backslashreplace")
    return text.translate(_CONTROL_ESCAPES)


def show_bytes(args: argparse.Namespace, data: bytes) -> str:
    """`data` as the commands print it: hex with --hex, else `escape`d."""
    return data.hex() if args.hex else escape(data)


def _write_line(*parts: bytes) -> None:
    out = sys.stdout.buffer
    out.write(b"\t".join(parts) + b"\n")
    out.flush()


def _with_client(args: argparse.Namespace, body: Callable[[Any], Awaitable[int]]) -> int:
    import asyncio

    from router.client import RoutingClient

    seeds = seeds_from(args)

    async def main() -> int:
        client = RoutingClient(
            seeds, cluster_id=args.cluster_id, timeout_s=args.timeout, tls=tls_from(args)
        )
        try:
            await client.connect()
            return await body(client)
        finally:
            await client.close()

    return asyncio.run(main())


def txn_client(args: argparse.Namespace) -> Any:
    """An AsyncClient of the connection options: retries within --timeout, and a commit
    whose answer was lost is settled (committed: done; aborted: run again), so a command
    that commits in batches never applies one twice."""
    from txn import AsyncClient

    return AsyncClient(
        seeds_from(args),
        cluster_id=args.cluster_id,
        timeout_s=args.timeout,
        retry_timeout_s=args.timeout,
        tls=tls_from(args),
        settle_unknown=True,
    )


# ---------------------------------------------------------------------------- commands


def _cmd_get(args: argparse.Namespace) -> int:
    key = arg_key(args.key, args.hex)

    async def body(client: Any) -> int:
        found = await client.get(key, stale_ok=args.stale, at_version=args.at_version)
        if found is None:
            print(f"paxoskv: key '{show_bytes(args, key)}' not found", file=sys.stderr)
            return EXIT_NO
        value, version = found
        if args.int:
            shown = str(_counter_value(args, key, value)).encode()
        else:
            shown = value.hex().encode() if args.hex else value
        if args.verbose:
            _write_line(str(version).encode(), shown)
        else:
            _write_line(shown)
        return 0

    return _with_client(args, body)


def _cmd_ttl(args: argparse.Namespace) -> int:
    key = arg_key(args.key, args.hex)

    async def main() -> int:
        async with txn_client(args) as client:
            entry = await client.get_entry(key)
        if entry is None:
            print(f"paxoskv: key '{show_bytes(args, key)}' not found", file=sys.stderr)
            return EXIT_NO
        left = entry.ttl_left_s()
        print(-1 if left is None else f"{left:.3f}")
        return 0

    import asyncio

    return asyncio.run(main())


def not_a_counter(shown_key: str, value: bytes | None) -> str | None:
    """Why `value` (None: absent, a counter at 0) is no 8-byte counter, or None."""
    if value is None or len(value) == 8:
        return None
    size = f"{len(value):,} byte{'' if len(value) == 1 else 's'}"
    return f"the value of '{shown_key}' is {size}, not an 8-byte counter"


def _counter_value(args: argparse.Namespace, key: bytes, value: bytes) -> int:
    """`value` read as an 8-byte counter; CommandError for a value that cannot be one."""
    from txn import decode_int

    # A short text value would read as a number that means nothing.
    if (why := not_a_counter(show_bytes(args, key), value)) is not None:
        raise CommandError(f"--int: {why}; read it without --int")
    return decode_int(value)


ADD_REFUSAL = (
    "; add would cut or pad it to 8 bytes (FoundationDB's add, as tx.add does): replace it "
    "with put, or delete it, first"
)


def _cmd_put(args: argparse.Namespace) -> int:
    key = arg_key(args.key, args.hex)
    if args.value is None:
        if sys.stdin.isatty():  # a forgotten VALUE must not look like a hang
            print("paxoskv put: reading the value from stdin; end it with Ctrl-D", file=sys.stderr)
        raw = sys.stdin.buffer.read()
        text = raw.decode("ascii", errors="backslashreplace").strip()
        value = arg_bytes(text, args.hex, "value") if args.hex else raw
    else:
        value = arg_bytes(args.value, args.hex, "value")

    async def body(client: Any) -> int:
        print(await client.put(key, value, ttl_s=args.ttl))
        return 0

    return _with_client(args, body)


def _cmd_delete(args: argparse.Namespace) -> int:
    bounds = (args.prefix, args.start, args.end)
    ranged = any(b is not None for b in bounds) or args.to_end
    if args.key is not None and ranged:
        raise UsageError("give KEY or a range (--prefix, --start, --end), not both")
    if not ranged:
        if args.key is None:
            raise UsageError(
                "give the KEY to delete, or a range: --prefix P, --start A --end B (or --to-end)"
            )
        key = arg_key(args.key, args.hex)

        async def body(client: Any) -> int:
            print(await client.delete(key))
            return 0

        return _with_client(args, body)
    _check_delete_bounds(args)
    args.start = "" if args.start is None else args.start
    start, end = key_range(args)
    return _delete_range(args, start, end)


def _check_delete_bounds(args: argparse.Namespace) -> None:
    """UsageError unless the range is bounded on both sides by what was typed: found by a
    user trial, `delete --start d/` without --end deleted every key from d/ to the end."""
    if args.to_end and (args.end is not None or args.prefix is not None):
        raise UsageError("--to-end replaces --end, and a --prefix has its own end")
    if args.prefix == "":  # found by review: also what an unset "$P" gives
        raise UsageError("--prefix '' is every key: to delete them all, give --start '' --to-end")
    if args.prefix is None and (args.start is None or (args.end is None and not args.to_end)):
        raise UsageError(
            "a range to delete needs --prefix P, or --start A with --end B (--to-end: through "
            "the last key; --start '': from the first)"
        )


def _delete_range(args: argparse.Namespace, start: bytes, end: bytes | None) -> int:
    """Delete [start, end) a batch per transaction until a batch finds fewer keys than it
    may delete: as of that commit the range was empty."""
    import asyncio
    import time

    deleted = 0

    async def main() -> None:
        nonlocal deleted
        next_note = time.monotonic() + PROGRESS_EVERY_S
        async with txn_client(args) as client:
            while True:
                count: int = await client.run(lambda tx: tx.delete_range(start, end, args.batch))
                deleted += count
                if count < args.batch:
                    return
                if time.monotonic() >= next_note:
                    next_note = time.monotonic() + PROGRESS_EVERY_S
                    print(f"paxoskv delete: {deleted:,} keys so far", file=sys.stderr)

    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        print(
            f"paxoskv: interrupted after deleting {deleted:,} keys; the batch under way may or "
            "may not be deleted: run the command again to finish",
            file=sys.stderr,
        )
        return 130
    except Exception as exc:
        if deleted:  # not lost in the error: the batches before it are committed
            raise CommandError(f"{exc} (after deleting {deleted:,} keys)") from exc
        raise
    print(deleted)
    return 0


def _cmd_add(args: argparse.Namespace) -> int:
    key = arg_key(args.key, args.hex)

    async def add(tx: Any) -> Any:
        # A snapshot read: checked without a read conflict, so concurrent adds still commit
        # side by side (found by a user trial: `add` on a text value silently cut it to 8
        # bytes, which `get --int` then refused to read).
        why = not_a_counter(show_bytes(args, key), await tx.get(key, snapshot=True))
        if why is not None:
            raise CommandError(why + ADD_REFUSAL)
        tx.add(key, args.n)
        return tx

    async def main() -> int:
        async with txn_client(args) as client:
            tx = await client.run(add)
        print(tx.commit_ts)
        return 0

    import asyncio

    return asyncio.run(main())


def _cmd_cas(args: argparse.Namespace) -> int:
    key = arg_key(args.key, args.hex)
    kwargs: dict[str, Any] = {}
    if args.expect_value is not None:
        kwargs["expected_value"] = arg_bytes(args.expect_value, args.hex, "--expect-value")
    elif args.expect_version is not None:
        kwargs["expected_version"] = args.expect_version
    else:
        kwargs["expect_absent"] = True
    if args.delete:
        if args.ttl is not None:
            raise UsageError("--ttl is for --new-value: a delete leaves nothing to expire")
        kwargs["delete"] = True
    elif args.touch:
        if args.ttl is None or args.expect_absent:
            raise UsageError("--touch needs --ttl and --expect-value or --expect-version")
        kwargs["touch"] = True
        kwargs["ttl_s"] = args.ttl
    else:
        kwargs["new_value"] = arg_bytes(args.new_value, args.hex, "--new-value")
        kwargs["ttl_s"] = args.ttl

    async def body(client: Any) -> int:
        result = await client.cas(key, **kwargs)
        if result.succeeded:
            print(result.version)
            return 0
        if result.current_value is None:
            print(
                f"paxoskv: cas: condition not met: '{show_bytes(args, key)}' is absent",
                file=sys.stderr,
            )
        else:
            print(
                f"paxoskv: cas: condition not met: '{show_bytes(args, key)}' is at version "
                f"{result.current_version}",
                file=sys.stderr,
            )
            shown = result.current_value.hex().encode() if args.hex else result.current_value
            _write_line(str(result.current_version).encode(), shown)
        return EXIT_NO

    return _with_client(args, body)


def _cmd_scan(args: argparse.Namespace) -> int:
    after = None if args.after is None else arg_bytes(args.after, args.hex, "--after")
    start, end = key_range(args, after)

    async def body(client: Any) -> int:
        # One item over the limit says whether the listing was cut short.
        want = args.limit + 1 if args.limit else sys.maxsize
        items = await client.scan(start, end, want, reverse=args.reverse, stale_ok=args.stale)
        # Found by review: --limit 0 fetched everything and printed nothing.
        more = bool(args.limit) and len(items) > args.limit
        items = items[: args.limit] if args.limit else items
        lines = []
        for key, value, version in items:
            fields = [show_bytes(args, key)]
            if args.verbose:
                fields.append(str(version))
            fields.append(show_bytes(args, value))
            lines.append("\t".join(fields))
        if lines:
            sys.stdout.write("\n".join(lines) + "\n")
            sys.stdout.flush()
        if more:
            print(
                f"paxoskv: scan: stopped at --limit {args.limit}; more keys follow "
                f"(raise --limit, or read on with {_next_page(args, items[-1][0])})",
                file=sys.stderr,
            )
        return 0

    return _with_client(args, body)


def _next_page(args: argparse.Namespace, last: bytes) -> str:
    """The option that reads on from the last key printed: --after it, or --end it in
    reverse; in hex when its text form is escaped (found by a user trial: an escaped key
    pasted back is other bytes). One word `--after=KEY`, so a key that starts with "-" is
    not taken for an option (found by review)."""
    flag = "--end" if args.reverse else "--after"
    if args.hex:
        return f"{flag}={last.hex()}"
    if escape(last) == os.fsdecode(last):
        return shlex.quote(f"{flag}={os.fsdecode(last)}")
    return f"--hex (every key option in hex) and {flag}={last.hex()}"


def _cmd_status(args: argparse.Namespace) -> int:
    async def body(client: Any) -> int:
        nodes = await client.status_all(timeout_s=min(args.timeout, 2.0))
        if args.json:
            report = status_report(client.shard_map, nodes)
            sys.stdout.write(json.dumps(report, indent=2) + "\n")
            return 0 if report["healthy"] else 1
        rows, healthy = status_table(client.shard_map, nodes)
        sys.stdout.write(rows)
        return 0 if healthy else 1

    return _with_client(args, body)
