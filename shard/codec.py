"""Commands and results of the shard state machine, and the commands' protobuf encoding.

The only importer of `shard_pb2`. The state machine sees `Command` (decoded once per command)
and returns `CommandResult`, which the node turns into its answers (`shard.answers`).

Transaction records (`txn.records`: Prepare, Resolve, Decide, Finish, PurgeDecisions,
CommitOnePhase) ride in the same `Command` (field `txn`, `Op.TXN`): encode them with
`encode_txn(record, ts)`. Their results come back in `CommandResult.txn`; a refusal has
status CONFLICT and `CommandResult.conflict` (also for a single-key write that met an intent).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from shard import shard_pb2 as pb
from shard.errors import InvalidArgument, MalformedCommand, Status
from txn import codec as txn_codec
from txn.records import Conflict, TxnCommand, TxnResult


class Op(enum.IntEnum):
    """What a command does."""

    PUT = 1
    DELETE = 2
    CAS = 3
    TXN = 4  # a transaction record: `Command.txn`, key empty
    EXPIRE = 5  # a leader's deletion of a value whose time to live ran out


class Expect(enum.IntEnum):
    """The condition of a compare-and-set."""

    VALUE = 1  # the key holds exactly `expected_value`
    VERSION = 2  # the key's current version is `expected_version` (0: absent)
    ABSENT = 3  # the key is absent (never written, or deleted)


@dataclass(frozen=True, slots=True)
class Command:
    """One decoded command: `value` is the Put value or the CAS new value (None: CAS deletes).

    For `Op.TXN`, `txn` is the transaction record and `key` is empty. `ttl_ms` (Put, CAS)
    is how long the value written lives after its version (0: for ever); a CAS that
    `touch`es writes nothing but lets the key's value live `ttl_ms` from `ts`. For
    `Op.EXPIRE`, `expected_version` is the version that must still be the key's latest,
    `deadline` the expiry record's.
    """

    op: Op
    key: bytes
    ts: int
    value: bytes | None = None
    expect: Expect | None = None
    expected_value: bytes | None = None
    expected_version: int = 0
    txn: TxnCommand | None = None
    ttl_ms: int = 0
    deadline: int = 0
    touch: bool = False
    # A touch that meets only write intents (participant rule W1): one proposed since peer
    # protocol 8, whose proto field says so (shard.proto, CompareAndSet).
    touch_past_read_intents: bool = False


@dataclass(frozen=True, slots=True)
class CommandResult:
    """The outcome of one applied command.

    `version` is the version the command created (0 when it wrote nothing, e.g. deleting an
    absent key or a failed CAS). On `CAS_FAILED`, `current_value`/`current_version` describe
    the key as found (None/0 when absent). Error statuses carry a `message`. A delete or
    compare-and-set that found the key deleted shows it absent since `absent_since`, the
    deletion's version, which the answer must not outrun (node rule 2).

    A transaction command's outcome is in `txn` (PrepareResult, ResolveResult,
    DecisionResult, OnePhaseResult or PurgeResult; None for a Finish without a record and
    for error statuses). On `CONFLICT`, `conflict` says which key and transaction refused
    it (for Prepare and CommitOnePhase it is also in the txn result).
    """

    status: Status
    version: int = 0
    current_value: bytes | None = None
    current_version: int = 0
    message: str = ""
    txn: TxnResult | None = None
    conflict: Conflict | None = None
    absent_since: int = 0
    expires_at: int = 0  # a write with a time to live: the deadline of what it wrote

    @property
    def ok(self) -> bool:
        """True when the command took effect."""
        return self.status is Status.OK


# --------------------------------------------------------------------------------------------
# Commands


def encode_put(key: bytes, value: bytes, ts: int, ttl_ms: int = 0) -> bytes:
    """Encode a Put (`ttl_ms` > 0: the value lives that long after its version)."""
    put = pb.Put(key=key, value=value, ttl_ms=ttl_ms)
    data: bytes = pb.Command(ts=ts, put=put).SerializeToString()
    return data


def encode_delete(key: bytes, ts: int) -> bytes:
    """Encode a Delete."""
    data: bytes = pb.Command(ts=ts, delete=pb.Delete(key=key)).SerializeToString()
    return data


def encode_cas(
    key: bytes,
    ts: int,
    *,
    expected_value: bytes | None = None,
    expected_version: int | None = None,
    expect_absent: bool = False,
    new_value: bytes | None = None,
    delete: bool = False,
    ttl_ms: int = 0,
    touch: bool = False,
    touch_past_read_intents: bool = True,
) -> bytes:
    """Encode a CompareAndSet: exactly one condition, and exactly one of new_value / delete
    / touch (`ttl_ms` > 0: the new value lives that long after its version; a touch's
    value lives that long from the command's timestamp on). A touch passes read intents
    (participant rule W1) unless `touch_past_read_intents` is False, as a touch an older
    node logged says.

    Raises:
        InvalidArgument: not exactly one condition or not exactly one action, a ttl_ms
            with delete, a touch without one or expecting the key absent.
    """
    conditions = (expected_value is not None) + (expected_version is not None) + expect_absent
    if conditions != 1:
        raise InvalidArgument(
            "compare-and-set needs exactly one of expected_value, expected_version, expect_absent"
        )
    if (new_value is not None) + delete + touch != 1:
        raise InvalidArgument("compare-and-set needs exactly one of new_value, delete, touch")
    if delete and ttl_ms:
        raise InvalidArgument("a compare-and-set that deletes takes no ttl")
    if touch and (not ttl_ms or expect_absent):
        raise InvalidArgument("a touch needs a ttl and a value or version to expect")
    cas = pb.CompareAndSet(key=key, ttl_ms=ttl_ms)
    if expected_value is not None:
        cas.expected_value = expected_value
    elif expected_version is not None:
        cas.expected_version = expected_version
    else:
        cas.expect_absent = True
    if new_value is not None:
        cas.new_value = new_value
    elif touch:
        cas.touch = True
        cas.touch_past_read_intents = touch_past_read_intents
    else:
        cas.delete = True
    data: bytes = pb.Command(ts=ts, cas=cas).SerializeToString()
    return data


def encode_expire(key: bytes, version: int, deadline: int, ts: int) -> bytes:
    """Encode an Expire of `key`'s `version` whose expiry record has `deadline`."""
    expire = pb.Expire(key=key, version=version, deadline=deadline)
    data: bytes = pb.Command(ts=ts, expire=expire).SerializeToString()
    return data


def encode_txn(record: TxnCommand, ts: int) -> bytes:
    """Encode a transaction command (a `txn.records` command) with hybrid timestamp `ts`.

    `ts` bounds what the record creates: Prepare's prepare_ts and CommitOnePhase's commit_ts
    are max(ts, max_version + 1); a Decide, and a Resolve or Prevent that records an
    outcome, records `ts` as its decided_ts (the retention clock of PurgeDecisions). Finish
    and PurgeDecisions ignore it.
    """
    data: bytes = pb.Command(ts=ts, txn=txn_codec.command_message(record)).SerializeToString()
    return data


def encode_command(command: Command) -> bytes:
    """Encode a decoded `Command` back to bytes."""
    if command.op is Op.TXN:
        assert command.txn is not None
        return encode_txn(command.txn, command.ts)
    if command.op is Op.PUT:
        return encode_put(command.key, command.value or b"", command.ts, command.ttl_ms)
    if command.op is Op.DELETE:
        return encode_delete(command.key, command.ts)
    if command.op is Op.EXPIRE:
        return encode_expire(command.key, command.expected_version, command.deadline, command.ts)
    return encode_cas(
        command.key,
        command.ts,
        expected_value=command.expected_value if command.expect is Expect.VALUE else None,
        expected_version=command.expected_version if command.expect is Expect.VERSION else None,
        expect_absent=command.expect is Expect.ABSENT,
        new_value=command.value,
        delete=command.value is None and not command.touch,
        ttl_ms=command.ttl_ms,
        touch=command.touch,
        touch_past_read_intents=command.touch_past_read_intents,
    )


#: The condition a compare-and-set's `expect` oneof field names.
EXPECT_OF_FIELD = {
    "expected_value": Expect.VALUE,
    "expected_version": Expect.VERSION,
    "expect_absent": Expect.ABSENT,
}


def decode_command(data: bytes) -> Command:
    """Decode one command; key and value sizes are not checked here (see `shard.limits`).

    Raises:
        MalformedCommand: the bytes are not a well-formed Command.
    """
    try:
        msg = pb.Command.FromString(data)
    except Exception as exc:  # untrusted bytes: any decoder failure is "malformed"
        raise MalformedCommand(f"undecodable command ({type(exc).__name__})") from None
    which = msg.WhichOneof("op")
    if which == "put":
        put = msg.put
        return Command(Op.PUT, put.key, msg.ts, put.value, ttl_ms=put.ttl_ms)
    if which == "delete":
        return Command(Op.DELETE, msg.delete.key, msg.ts)
    if which == "cas":
        cas = msg.cas
        cond = cas.WhichOneof("expect")
        if cond is None:
            raise MalformedCommand("compare-and-set without a condition")
        action = cas.WhichOneof("action")
        if action is None:
            raise MalformedCommand("compare-and-set without an action")
        if (
            (cond == "expect_absent" and not cas.expect_absent)
            or (action == "delete" and not cas.delete)
            or (action == "touch" and not cas.touch)
        ):
            raise MalformedCommand("compare-and-set flag set to false")
        if action == "delete" and cas.ttl_ms:
            raise MalformedCommand("compare-and-set that deletes with a ttl")
        if action == "touch" and (not cas.ttl_ms or cond == "expect_absent"):
            raise MalformedCommand("compare-and-set touch without a ttl or on an absent key")
        if cas.touch_past_read_intents and action != "touch":
            raise MalformedCommand("touch_past_read_intents on a compare-and-set that writes")
        return Command(
            Op.CAS,
            cas.key,
            msg.ts,
            cas.new_value if action == "new_value" else None,
            EXPECT_OF_FIELD[cond],
            cas.expected_value if cond == "expected_value" else None,
            cas.expected_version,
            ttl_ms=cas.ttl_ms,
            touch=action == "touch",
            touch_past_read_intents=cas.touch_past_read_intents,
        )
    if which == "txn":
        try:
            record = txn_codec.decode_command_message(msg.txn)
        except txn_codec.MalformedTxnRecord as exc:
            raise MalformedCommand(str(exc)) from None
        return Command(Op.TXN, b"", msg.ts, txn=record)
    if which == "expire":
        expire = msg.expire
        return Command(
            Op.EXPIRE,
            expire.key,
            msg.ts,
            expected_version=expire.version,
            deadline=expire.deadline,
        )
    raise MalformedCommand("command without an operation")
