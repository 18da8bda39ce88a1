"""`paxoskv txn`: run a few reads and writes as ONE transaction, from the command line.

    paxoskv txn --cluster 127.0.0.1:7001 "get alice" "put bob 10" "delete carol"
    paxoskv txn "get a; get b; put c hello world"          # ';' separates steps too
    paxoskv txn --snapshot "get a" "scan a z"              # read-only, one timestamp
    paxoskv txn "delete-range tmp/ tmp0"                   # every key of [tmp/, tmp0)
    paxoskv txn "add views/home 1" "add views/total 1"      # atomic adds: no read, no conflict
    paxoskv txn "expect-absent email/ann@x.org" "put email/ann@x.org u7" "put user/u7 ann"
    paxoskv txn "expect-version leader 1764412345678901234" "put-ttl leader 10 n2"
    paxoskv txn --json "get leader" "put-ttl leader 10 n3"  # fields for scripts
    paxoskv txn-status 6dba2be8de444790a9f8bbda4720b0d8:3:1764412345678901234 --settle

The steps run in order inside one transaction (reads see the transaction's own writes), which
commits at the end; a conflict re-runs all steps from fresh reads (the client's retry loop),
and only the attempt that committed is printed: one line per read, then the commit line.

Imports of grpc and the client stay inside the handler, so `paxoskv --help` stays fast.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from shard.cli_kv import (
    ADD_REFUSAL,
    CommandError,
    UsageError,
    arg_bytes,
    arg_key,
    bounded_int,
    connection_options,
    counter_delta,
    escape,
    not_a_counter,
    seeds_from,
    tls_from,
    ttl_seconds,
    version,
)

if TYPE_CHECKING:
    from txn import Transaction

STEPS_HELP = """\
steps (each argument is one step, or several separated by ';'; keys and values are taken
as typed, quotes included, so a key with a space, or a value with a ';', needs --hex):
  get KEY                 print KEY's value as the transaction sees it
  put KEY VALUE...        write VALUE (the rest of the step, spaces included)
  put-ttl KEY SECONDS VALUE...
                          the same, and the value lives SECONDS after the commit (as
                          `paxoskv put --ttl`), then its shard's leader deletes it
  delete KEY              delete KEY (also: del)
  add KEY N               add the integer N to the 8-byte counter at KEY (tx.add: an
                          atomic add, applied at commit to the value then; a snapshot
                          read first refuses a value that is not 8 bytes then, with no
                          conflict); a get of KEY after it shows the new value as a number
  scan START [END]        print the keys in [START, END) (END omitted: to the end)
  scan-reverse START [END]
                          the same from the last key down (with --limit 1: the last key)
  delete-range START END [LIMIT]
                          delete every key in [START, END) (or the first LIMIT), as
                          tx.delete_range: at most 2,047 keys a shard (more is an
                          error, and nothing is deleted; give a LIMIT and run it again)
  expect KEY VALUE...     a guard (etcd's txn compare): KEY's value must be VALUE (as
                          the transaction sees it, so after its own writes; after an
                          add step, the number a get shows), else nothing is
                          committed and the command exits 3
  expect-absent KEY       a guard: KEY must not exist (a uniqueness check)
  expect-present KEY      a guard: KEY must exist
  expect-version KEY N    a guard: KEY's version must be N (as `paxoskv put` prints
                          one; 0: KEY must not exist), as `paxoskv cas --expect-version`;
                          not after a write of KEY in the same transaction
                          A guard is a read of the transaction: a write of KEY by
                          another transaction before the commit re-runs every step.

output: one line per read ("get KEY: VALUE" or "get KEY: (not found)"; "scan START END: N
items" then "  KEY<TAB>VALUE" lines) and per delete-range ("delete-range START END: N keys
deleted"), then "committed at ts T (txn ID:GROUP, R keys read,
S scans, W keys written)" (R counts the keys scans returned too), or "nothing to commit
(...)" when the steps read, scanned and wrote nothing. With
--snapshot: "snapshot at ts T" instead. With --json, one JSON object instead: {"steps":
[...], "commit_ts", "ref" (both null when there was nothing to commit), "keys_read",
"scans", "keys_written"}, or {"steps", "read_ts"} with --snapshot, or {"steps",
"guard_failed": {"step", "key", "found"}} after a failed guard; a step is {"step", "key",
"value"} for a get (value null: not found), {"step", "items", "more"} for a scan and
{"step", "deleted"} for a delete-range. Tabs, newlines, backslashes, other control bytes and bytes that
are not UTF-8 in keys and values are printed escaped (as `paxoskv scan` does); use --hex for
binary data. Exit status: 0 committed (or nothing to commit), 1 error (one line on stderr; a
commit whose outcome is unknown says so and prints the command that settles it, `paxoskv
txn-status REF --settle`), 2 a bad option or option value, 3 a guard failed (the reads
before it printed, then one line on stderr naming the guard and what it found; nothing
was written).
"""

STATUS_HELP = """\
REF is what a commit whose outcome is unknown prints (TXN_ID_HEX:GROUP:STARTED_NS, from
`str(CommitUnknown.ref)` in Python), the "txn ID:GROUP" of a commit line (its id says when it
began), or a bare transaction id with --group or --key (a key of its decision group: the
first key it wrote).

output: one line, its first word the state:
  committed at ts T       the transaction committed (every participant prepared)
  aborted                 it did not commit, and never will
  in-progress ...         prepared at its decision group, not everywhere yet: not final
  unknown ...             no record: never prepared there, or purged after the retention
                          window (txn.decision_retention_s); not final

--settle makes the answer final, as `client.txn_status(ref, settle=True)`: with no decision
yet it records one (ABORT, or COMMIT when every participant turns out prepared), and a late
copy of the commit is then refused. It needs the decision group (a REF, the ID:GROUP of a
commit line, or an id with --group) and an id that says when it began (every id this
client makes does); it records an outcome only for a transaction begun at most 60 s ago
(an outcome already final is printed however old).
Settle before re-running the work of a commit whose outcome is unknown.

exit status: 0 committed, 3 aborted, 4 not final (in-progress, unknown), 1 error, 2 a bad
option, option value or REF.
"""


def _counts(tx: Transaction) -> dict[str, int]:
    """What a transaction's commit covered. Keys, not steps: a scan's keys are read too, and
    the commit checks each (found by a user's walk-through: "3 reads" after one scan step
    read as a miscount)."""
    return {
        "keys_read": len(tx.read_set),
        "scans": len(tx.scanned_ranges),
        "keys_written": len(tx.write_set) + len(tx.atomic_ops),
    }


def _commit_line(tx: Transaction) -> str:
    """The last line of `paxoskv txn`: the commit, or that there was nothing to commit."""
    n = _counts(tx)
    counts = ", ".join(
        one if n[what] == 1 else f"{n[what]} {many}"
        for what, one, many in (
            ("keys_read", "1 key read", "keys read"),
            ("scans", "1 scan", "scans"),
            ("keys_written", "1 key written", "keys written"),
        )
    )
    if tx.ref is None:
        # Nothing read, scanned or written: no decision group recorded anything, so there is no
        # timestamp and no REF for txn-status (found by review: it printed "committed at ts 0").
        return f"nothing to commit ({counts}): no transaction was recorded"
    return f"committed at ts {tx.commit_ts} (txn {tx.txn_id.hex()}:{tx.ref.group_id}, {counts})"


#: `paxoskv txn-status` exit codes past 0 (committed) and 1 (error); `paxoskv txn` exits
#: EXIT_ABORTED when a guard failed.
EXIT_ABORTED = 3
EXIT_UNDECIDED = 4

#: The guard steps: what each expects of its key's value (None: absent) or version.
GUARDS = ("expect", "expect-absent", "expect-present", "expect-version")

#: The steps that write, which a read-only --snapshot refuses.
WRITES = ("put", "put-ttl", "delete", "add", "delete-range")


@dataclass
class StepOutput:
    """What the steps print: `lines` for stdout, `notes` for stderr (once, after the run),
    and the same reads as `records` for --json."""

    lines: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    records: list[dict[str, Any]] = field(default_factory=list)


class GuardFailed(Exception):
    """A guard step found its key otherwise: `output` is the output of the steps before it,
    `found` the guard's record for --json."""

    def __init__(self, message: str, output: StepOutput, found: dict[str, Any]) -> None:
        super().__init__(message)
        self.output = output
        self.found = found


@dataclass(frozen=True, slots=True)
class Step:
    """One parsed step: `op` is get/put/put-ttl/delete/add/scan/scan-reverse/delete-range or
    a guard (GUARDS); `value` is set for a put and an expect, `ttl_s` for a put-ttl, `end`
    for a bounded scan and for a delete-range, `limit` for a delete-range given one, `delta`
    for an add, `version` for an expect-version."""

    op: str
    key: bytes
    value: bytes = b""
    ttl_s: float | None = None
    end: bytes | None = None
    limit: int | None = None
    delta: int = 0
    version: int = 0
    text: str = ""


def register_txn_command(subparsers: Any) -> None:
    """Add `txn` to the `paxoskv` parser's subcommands."""
    cmd = subparsers.add_parser(
        "txn",
        help="run reads and writes as one transaction",
        description="Run the STEPs in order as one transaction and commit it; conflicts re-run\n"
        "every step from fresh reads. Keys in several shards commit atomically (two-phase\n"
        "commit).",
        parents=[
            connection_options(
                "deadline of the whole transaction, every read, commit and retry of it "
                "(with --snapshot: of each read) (default 10)"
            )
        ],
        epilog=STEPS_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    cmd.add_argument("steps", nargs="+", metavar="STEP", help="a step (see below)")
    cmd.add_argument(
        "--attempts",
        type=bounded_int(1),
        default=10,
        metavar="N",
        help="run the transaction at most N times on conflicts and other retryable errors, "
        "within --timeout (default 10)",
    )
    cmd.add_argument(
        "--snapshot",
        action="store_true",
        help="read-only: every read at one timestamp, lock-free (no put/delete/delete-range)",
    )
    cmd.add_argument(
        "--hex", action="store_true", help="keys and values are hex, in the steps and output"
    )
    cmd.add_argument(
        "--json",
        action="store_true",
        help="print the reads and the commit (timestamp, REF, counts) as one JSON object, "
        "for scripts; notes and errors still go to stderr",
    )
    cmd.add_argument(
        "--limit",
        # `paxoskv scan --limit 0` means no limit; a transaction cannot read without one.
        type=bounded_int(1, why=" (a transaction's scan needs a limit)"),
        default=1000,
        help="at most N items per scan, at least 1 (default 1000); a scan reads one key more "
        "to tell whether more follow (a note on stderr says so), and a transaction's reads, "
        "scanned ranges and writes count against 4096 per group",
    )
    cmd.set_defaults(handler=_cmd_txn, writes=True)

    status = subparsers.add_parser(
        "txn-status",
        help="show (or settle) a transaction's outcome",
        description="Ask a transaction's decision group whether it committed: the\n"
        "commit-outcome API (client.txn_status) from the command line.",
        parents=[connection_options()],
        epilog=STATUS_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    status.add_argument("ref", metavar="REF", help="the transaction (see below)")
    where = status.add_mutually_exclusive_group()
    where.add_argument(
        "--group",
        type=bounded_int(1, why=" (group 0 is the meta group, which decides no transaction)"),
        help="with a bare id: its decision group",
    )
    where.add_argument("--key", help="with a bare id: a key of its decision group")
    status.add_argument(
        "--settle",
        action="store_true",
        help="record an outcome if there is none yet (the answer is then final)",
    )
    status.set_defaults(handler=_cmd_txn_status)


# ---------------------------------------------------------------------------- parsing


def _value_step(
    op: str, key: str, value: str, text: str, hex_mode: bool, ttl_s: float | None = None
) -> Step:
    """A step that carries a value (put, put-ttl, expect)."""
    return Step(
        op,
        arg_key(key, hex_mode),
        arg_bytes(value.strip() if hex_mode else value, hex_mode, "value"),
        ttl_s=ttl_s,
        text=text,
    )


def parse_steps(args: list[str], *, hex_mode: bool = False) -> list[Step]:
    """Parse step arguments ("get K", "put K V...", "put-ttl K S V...", "delete K", "add K N",
    "scan A [B]", "scan-reverse A [B]", "delete-range A B", "expect K V...", "expect-absent
    K", "expect-present K", "expect-version K N"; ';' splits).

    Raises:
        UsageError: an unknown operation or a missing key/value.
    """
    steps: list[Step] = []
    for arg in args:
        for text in arg.split(";"):
            text = text.strip()
            if not text:
                continue
            op, _, rest = text.partition(" ")
            op = {"del": "delete"}.get(op.lower(), op.lower())
            rest = rest.strip()
            # `paxoskv txn get alice` (unquoted) makes "get" a step of its own.
            unquoted = (
                ' (each STEP is one argument: quote it, as in paxoskv txn "get alice" "put bob 50")'
                if not rest and len(args) > 1
                else ""
            )
            if op in ("get", "delete", "expect-absent", "expect-present"):
                if not rest or len(rest.split()) != 1:
                    raise UsageError(f"{text!r}: expected '{op} KEY'{unquoted}")
                steps.append(Step(op, arg_key(rest, hex_mode), text=text))
            elif op in ("put", "expect"):
                key, _, value = rest.partition(" ")
                if not key or not value:
                    raise UsageError(f"{text!r}: expected '{op} KEY VALUE'{unquoted}")
                steps.append(_value_step(op, key, value, text, hex_mode))
            elif op == "put-ttl":
                key, _, more = rest.partition(" ")
                seconds, _, value = more.strip().partition(" ")
                if not key or not seconds or not value:
                    raise UsageError(f"{text!r}: expected 'put-ttl KEY SECONDS VALUE'{unquoted}")
                steps.append(_value_step(op, key, value, text, hex_mode, _step_ttl(text, seconds)))
            elif op == "expect-version":
                parts = rest.split()
                if len(parts) != 2:
                    raise UsageError(f"{text!r}: expected 'expect-version KEY N'{unquoted}")
                expected = _step_version(text, parts[1])
                steps.append(Step(op, arg_key(parts[0], hex_mode), version=expected, text=text))
            elif op == "add":
                parts = rest.split()
                if len(parts) != 2:
                    raise UsageError(f"{text!r}: expected 'add KEY N'{unquoted}")
                delta = _counter_delta(text, parts[1])
                steps.append(Step(op, arg_key(parts[0], hex_mode), delta=delta, text=text))
            elif op in ("scan", "scan-reverse"):
                bounds = rest.split()
                if len(bounds) not in (1, 2):
                    raise UsageError(f"{text!r}: expected '{op} START [END]'{unquoted}")
                start = arg_bytes(bounds[0], hex_mode, "scan start")
                end = arg_bytes(bounds[1], hex_mode, "scan end") if len(bounds) == 2 else None
                steps.append(Step(op, start, end=end, text=text))
            elif op == "delete-range":
                # Both bounds: a mistyped step must not delete to the end of the key space.
                bounds = rest.split()
                if len(bounds) not in (2, 3):
                    raise UsageError(
                        f"{text!r}: expected 'delete-range START END [LIMIT]'{unquoted}"
                    )
                start, end = (arg_bytes(b, hex_mode, "delete-range bound") for b in bounds[:2])
                if end <= start:
                    raise UsageError(f"{text!r}: END must come after START")
                limit = None
                if len(bounds) == 3:
                    # isascii: str.isdigit() takes "²", which int() refuses.
                    if not (bounds[2].isascii() and bounds[2].isdigit()) or int(bounds[2]) < 1:
                        raise UsageError(f"{text!r}: LIMIT is a whole number of at least 1")
                    limit = int(bounds[2])
                steps.append(Step(op, start, end=end, limit=limit, text=text))
            else:
                raise UsageError(
                    f"{text!r}: unknown step {op!r} (expected get, put, put-ttl, delete, add, "
                    "scan, scan-reverse, delete-range, expect, expect-absent, expect-present "
                    "or expect-version)"
                )
    if not steps:
        raise UsageError("no steps given")
    return steps


def _step_ttl(text: str, word: str) -> float:
    """The SECONDS of a "put-ttl KEY SECONDS VALUE" step, as `paxoskv put --ttl` takes it."""
    try:
        return ttl_seconds(word)
    except argparse.ArgumentTypeError as exc:
        raise UsageError(f"{text!r}: SECONDS {exc}") from None


def _step_version(text: str, word: str) -> int:
    """The N of an "expect-version KEY N" step: a version (unsigned 64-bit), 0 for absent."""
    try:
        return version(word)
    except argparse.ArgumentTypeError as exc:
        raise UsageError(f"{text!r}: N {exc}") from None


def _counter_delta(text: str, word: str) -> int:
    """The N of an "add KEY N" step: an integer an 8-byte counter's addend can be."""
    try:
        return counter_delta(word)
    except argparse.ArgumentTypeError as exc:
        raise UsageError(f"{text!r}: N {exc}") from None


# ---------------------------------------------------------------------------- running


def run_steps(reader: Any, steps: list[Step], show: Any, limit: int) -> StepOutput:
    """Run `steps` on a transaction or snapshot; returns what they print (a retried run
    repeats the steps, so only the last attempt's output is printed)."""
    from txn import decode_int

    out = StepOutput()
    counters: set[bytes] = set()  # keys an add step made counters: their gets show numbers

    def shown(value: bytes | None, key: bytes) -> str | None:
        if value is None:
            return None
        return str(decode_int(value)) if key in counters else show(value)

    def guard_failed(step: Step, found: str | None, detail: str, **more: Any) -> GuardFailed:
        return GuardFailed(
            f"guard {step.text!r} failed: {show(step.key)} is {detail}; nothing was committed",
            out,
            {"step": step.text, "key": show(step.key), "found": found, **more},
        )

    for step in steps:
        if step.op == "get":
            value = shown(reader.get(step.key), step.key)
            out.lines.append(f"get {show(step.key)}: {_or(value, '(not found)')}")
            out.records.append({"step": step.text, "key": show(step.key), "value": value})
        elif step.op in ("scan", "scan-reverse"):
            # One item over the limit says whether the scan was cut short (as `paxoskv scan`);
            # the transaction's read set then covers that one key more.
            reverse = step.op == "scan-reverse"
            items = reader.scan(step.key, step.end, limit + 1, reverse=reverse)
            where = show(step.key) + (f" {show(step.end)}" if step.end is not None else "")
            more = len(items) > limit
            if more:
                items = items[:limit]
                out.notes.append(
                    f"paxoskv: txn: {step.op} {where} stopped at --limit {limit}; more keys "
                    "follow the last one printed (raise --limit)"
                )
            plural = "s" if len(items) != 1 else ""
            out.lines.append(f"{step.op} {where}: {len(items)} item{plural}")
            out.lines.extend(f"  {show(k)}\t{show(v)}" for k, v in items)
            pairs = [{"key": show(k), "value": show(v)} for k, v in items]
            out.records.append({"step": step.text, "items": pairs, "more": more})
        elif step.op == "delete-range":
            deleted = reader.delete_range(step.key, step.end, step.limit)
            out.lines.append(
                f"delete-range {show(step.key)} {show(step.end)}: {deleted} "
                f"key{'s' if deleted != 1 else ''} deleted"
            )
            out.records.append({"step": step.text, "deleted": deleted})
        elif step.op == "expect-version":
            if step.key in reader.write_set or step.key in reader.atomic_ops:
                raise UsageError(
                    f"{step.text!r}: an earlier step of this transaction wrote "
                    f"{show(step.key)}, which has no version until the commit: put the "
                    "guard before the write"
                )
            found = reader.get(step.key)
            at = reader.read_set[step.key] if found is not None else 0
            if at != step.version:
                detail = f"at version {at}" if found is not None else _ABSENT
                raise guard_failed(step, shown(found, step.key), detail, version=at)
        elif step.op in GUARDS:
            found = reader.get(step.key)
            if not _guard_holds(step, found, step.key in counters):
                value = shown(found, step.key)
                raise guard_failed(step, value, _or(value, _ABSENT))
        elif step.op in ("put", "put-ttl"):
            counters.discard(step.key)
            reader.put(step.key, step.value, ttl_s=step.ttl_s)
        elif step.op == "add":
            why = not_a_counter(show(step.key), reader.get(step.key, snapshot=True))
            if why is not None:
                raise CommandError(f"{step.text!r}: {why}{ADD_REFUSAL}")
            counters.add(step.key)
            reader.add(step.key, step.delta)
        else:
            counters.discard(step.key)
            reader.delete(step.key)
    return out


#: What a failed guard says of a key it found absent (found by a README trial: "leader is
#: (not found)" after the tour's 30 s lease ran out).
_ABSENT = "absent (never written, deleted, or expired)"


def _or(value: str | None, absent: str) -> str:
    """`value` as shown, or `absent`'s words for a key found absent."""
    return absent if value is None else value


def _guard_holds(step: Step, found: bytes | None, counter: bool) -> bool:
    """Whether a guard step's key, found `found` (None: absent), is as the step expects;
    `counter`: an add step made it one, so an expect compares the number a get shows."""
    from txn import decode_int

    if step.op == "expect-absent":
        return found is None
    if step.op == "expect-present":
        return found is not None
    if counter and found is not None:
        return str(decode_int(found)).encode() == step.value
    return found == step.value


def _cmd_txn(args: argparse.Namespace) -> int:
    steps = parse_steps(args.steps, hex_mode=args.hex)
    if args.snapshot and any(s.op in WRITES for s in steps):
        raise UsageError(
            "--snapshot is read-only: put, put-ttl, delete, add and delete-range are not allowed"
        )
    if args.snapshot and any(s.op == "expect-version" for s in steps):
        raise UsageError(
            "expect-version needs a read-write transaction (a snapshot's reads carry no "
            "versions): drop --snapshot"
        )
    seeds = seeds_from(args)

    from txn import Client, CommitUnknown, RetryEvent, TransactionState

    def show(data: bytes) -> str:
        return data.hex() if args.hex else escape(data)

    retries: list[RetryEvent] = []

    def note_retry(event: RetryEvent) -> None:
        # A transaction that retries for seconds says why as it goes (stdout stays the
        # result's alone).
        retries.append(event)
        print(
            f"paxoskv: txn: attempt {event.attempt} ended ({event.error}); "
            f"running it again in {event.pause_s:.2f} s",
            file=sys.stderr,
        )

    with Client(
        seeds,
        cluster_id=args.cluster_id,
        timeout_s=args.timeout,
        max_attempts=args.attempts,
        tls=tls_from(args),
        on_retry=note_retry,
    ) as client:
        client.connect()  # a wrong address fails here at once, not at --timeout
        if args.snapshot:
            try:
                with client.snapshot() as snap:
                    out = run_steps(snap, steps, show, args.limit)
                    out.lines.append(f"snapshot at ts {snap.read_ts}")
                    summary: dict[str, Any] = {"read_ts": snap.read_ts}
            except GuardFailed as failed:
                return _report_guard(failed, args.json)
        else:
            result: dict[str, Any] = {}

            def body(tx: Any) -> StepOutput:
                out = run_steps(tx, steps, show, args.limit)
                result["tx"] = tx
                return out

            try:
                # One deadline for all of it: a leaderless group's DeadlineExceeded
                # (retryable) once re-ran the whole transaction --attempts times.
                out = client.run_within(args.timeout, body)
            except GuardFailed as failed:
                return _report_guard(failed, args.json)
            except CommitUnknown as exc:
                # Its reason only: its message ends with the Python advice (found by review).
                # Not a UsageError, whose exit status is 2.
                raise CommandError(
                    f"the commit's outcome is unknown; settle it before re-running: "
                    f"paxoskv txn-status {exc.ref} --settle ({exc.reason})"
                ) from exc
            except KeyboardInterrupt:
                sent = result.get("tx")
                if sent is None or sent.ref is None or sent.state is TransactionState.ABORTED:
                    print("paxoskv: interrupted; nothing was committed", file=sys.stderr)
                    return 130
                # Found by review: the single-key write's advice, and no REF to settle with.
                print(
                    "paxoskv: interrupted while committing; its outcome is unknown: settle it "
                    f"before re-running: paxoskv txn-status {sent.ref} --settle",
                    file=sys.stderr,
                )
                return 130
            tx = result["tx"]
            out.lines.append(_commit_line(tx))
            summary = {
                # None: nothing was read, scanned or written, so nothing was recorded.
                "commit_ts": None if tx.ref is None else tx.commit_ts,
                "ref": None if tx.ref is None else str(tx.ref),
                "attempts": len(retries) + 1,
                **_counts(tx),
            }
    _print_output(out, {"steps": out.records, **summary} if args.json else None)
    return 0


def _print_output(out: StepOutput, document: dict[str, Any] | None) -> None:
    """The steps' lines (or, with --json, `document`) on stdout, then the notes on stderr."""
    text = "\n".join(out.lines) if document is None else json.dumps(document)
    sys.stdout.write(text + "\n" if text else "")
    sys.stdout.flush()
    for note in out.notes:
        print(note, file=sys.stderr)


def _report_guard(failed: GuardFailed, as_json: bool) -> int:
    """Print the reads before a failed guard and the failure; the exit status."""
    document = {"steps": failed.output.records, "guard_failed": failed.found}
    _print_output(failed.output, document if as_json else None)
    print(f"paxoskv: txn: {failed}", file=sys.stderr)
    return EXIT_ABORTED


def _status_ref(args: argparse.Namespace) -> tuple[Any, dict[str, Any]]:
    """The `ref` and keyword arguments of `client.txn_status` for REF, --group, --key."""
    from txn import InvalidArgument, TxnRef
    from txn.txn_ids import start_ts_of

    if ":" in args.ref:
        if args.group is not None or args.key is not None:
            raise UsageError("REF already names its group: drop --group/--key")
        try:
            ref = TxnRef.parse(args.ref)
        except InvalidArgument as exc:
            raise UsageError(str(exc)) from None  # as a REF that is not hex at all
        if args.settle and not ref.started_ns:
            raise _no_start_time()
        return ref, {}
    try:
        txn_id = bytes.fromhex(args.ref)
    except ValueError:
        raise UsageError(
            f"{args.ref!r} is neither TXN_ID_HEX:GROUP[:STARTED_NS] nor a hex transaction id"
        ) from None
    if args.group is None and args.key is None:
        raise UsageError("with a bare transaction id give --group or --key")
    if args.settle:
        # Each says what is missing (found by review: with --group given, the message
        # asked for the group, when the hand-made id's start time was what was missing).
        if not start_ts_of(txn_id):
            raise _no_start_time()
        if args.group is None:
            raise UsageError(
                "--settle needs the transaction's group: give --group instead of --key (or "
                "the REF, TXN_ID_HEX:GROUP[:STARTED_NS])"
            )
        return TxnRef(txn_id, args.group), {}
    if args.key is not None:
        return txn_id, {"key": arg_key(args.key, False)}
    return txn_id, {"group_id": args.group}


def _no_start_time() -> UsageError:
    return UsageError(
        "--settle needs to know when the transaction began, and this id does not say (an id "
        "made by hand or by an older client): give the full REF, TXN_ID_HEX:GROUP:STARTED_NS, "
        "that a commit whose outcome is unknown prints"
    )


def _cmd_txn_status(args: argparse.Namespace) -> int:
    ref, where = _status_ref(args)
    seeds = seeds_from(args)

    from txn import Client, TxnState

    with Client(
        seeds, cluster_id=args.cluster_id, timeout_s=args.timeout, tls=tls_from(args)
    ) as client:
        client.connect()  # a wrong address fails here at once, not at --timeout
        status = client.txn_status(ref, settle=args.settle, **where)
    if status.state is TxnState.COMMITTED:
        print(f"committed at ts {status.commit_ts}")
        return 0
    if status.state is TxnState.ABORTED:
        print("aborted")
        return EXIT_ABORTED
    if status.state is TxnState.IN_PROGRESS:
        print("in-progress: prepared at its decision group, not at every participant yet")
    else:
        hint = "" if args.settle else _settle_hint(ref)
        print(
            "unknown: no record at its decision group (never prepared there, or purged after "
            f"the retention window){hint}"
        )
    return EXIT_UNDECIDED


def _settle_hint(ref: Any) -> str:
    """What to do about an unknown outcome: settle it while its ref may still be settled
    (found by a fault trial: a user a minute after a CommitUnknown did not learn that
    --settle was the next step; found by an application trial: the hint was also given for
    a 25-minute-old ref, which --settle then refused)."""
    import time

    from txn import TxnRef
    from txn.client import SETTLE_WINDOW_S

    if not isinstance(ref, TxnRef) or not ref.started_ns:
        return (
            "; --settle needs the full REF (TXN_ID_HEX:GROUP:STARTED_NS), which says when the "
            "transaction began"
        )
    age_s = (time.time_ns() - ref.started_ns) / 1e9
    if age_s > SETTLE_WINDOW_S:
        return (
            f"; it began {age_s:.0f} s ago, too long ago to settle (--settle works for "
            f"{SETTLE_WINDOW_S:.0f} s after the start): it stays unknown"
        )
    return (
        "; to decide it now, run this again with --settle (an undecided transaction begun "
        f"in the last {SETTLE_WINDOW_S:.0f} s is then recorded aborted)"
    )
