"""A deterministic simulated transaction client: the reference model of `txn/client.py`
(`AsyncClient`) and `txn/commit.py` (its commit protocol).

Theory of operation
-------------------
The real client is asyncio over gRPC; this one is the same protocol written as plain
callbacks over a `Transport` (the simulator's routed, retrying RPC layer), so that it runs
inside the simulated world, in virtual time, and replays bit for bit. It is kept small on
purpose: each step below is one method, in protocol order, and each says what it may
conclude.

A read-write transaction (`SimTxnClient.transaction(keys, body, done, scans)`):

0. `_scan_next`: scan every range of `scans`, shard by shard, with a linearizable `Scan` at
   each group's leader (retried on CONFLICT as reads are); every key returned is read (its
   value and version recorded, as below), and each shard's part of the range is sent with
   the commit (`read_ranges`, rule P6: a key added to it since makes the commit a conflict).
1. `_read_next`: read every key, one after the other, with a linearizable `Get` at the key's
   group leader; remember the value and the version (an absent key reports its tombstone
   version, or 0). A CONFLICT answer (a prepared transaction's write intent) is retried after
   a short backoff until the read deadline; nothing is recorded from a refused read.
2. `body(values)` computes the writes (the workload's read-modify-write).
3. `_commit`: the participants are the groups of every key read or written; the coordinator
   is the group of the first written key (of the first read key when nothing is written).
   The transaction id was fixed when the transaction began, so every commit request is
   idempotent and is re-sent as is.
   - one group: `CommitOnePhase`;
   - several: `Prepare` to every participant in parallel (`_prepare_all`). All yes votes
     ARE the commit (parallel commits): the client reports ``ok`` at
     `commit_ts = max(prepare_ts)` at once, then sends `Resolve(commit)` to every
     participant, the coordinator group included, fire and forget (`_resolve_all`).
     A `no` vote or a participant that gives no answer leads to a recovery `Decide(abort)`
     (`recover`, rule D3: a lost answer may have been the last yes vote), re-sent while it
     answers `pending` (the coordinator's prevent round is finding out); its answer (the
     RECORDED decision: every PREPARE may have been logged) is the outcome (`_abort`).
4. The outcome (`TxnResult.status`), Jepsen's rule "only fail what surely did not happen":
   - ``ok``: CommitOnePhase answered, every vote yes, or Decide(abort) answered committed;
   - ``fail``: a read gave up, the recorded decision is an abort, a CONFLICT of a one-phase
     commit, or a one-phase commit every attempt of which was refused before being proposed;
   - ``info``: a commit request that may have been proposed got no answer before the
     deadline, an abort that could not be recorded (the real client's `CommitUnknown`), or
     the client process died (`abandon`) before it knew.

A read-only snapshot (`SimTxnClient.snapshot(keys, done)`): a `TimestampRequest` to any node
gives T (never below what this client has seen), then every key is read with
`Get(snapshot=True, at_version=T)` at its leader. It writes nothing, so it is ``ok`` or
``fail``.

Single-key writes (`put`, `delete`, `cas`: the node's non-transactional writes) and scans
outside transactions (`scan`: a snapshot scan at one timestamp T from a `TimestampRequest`,
every shard's part with `Scan(snapshot=True, at_version=T)`; or each part with a
linearizable `Scan`). A single-key write is not idempotent: it is never re-sent once an
attempt may have been proposed (silence, OUTCOME_UNKNOWN: ``info``, the real client's
OutcomeUnknown); a CONFLICT (a prepared intent on the key, participant rule W1: nothing was
applied) is retried until the commit deadline, then ``fail``; a compare-and-set whose
comparison fails is ``fail`` with the state it reported in `reads`.

The client's hybrid clock absorbs every version, prepare, commit and snapshot timestamp it
sees and proposes `ts = max(seen + 1, wall clock)`, as the real client does.

Fault injection: `abandon(point)` is asked at each point where a real client process could
die: ``before_commit``; ``mid_prepare`` (the prepares are in flight: the votes decide, and
nobody will hear them); ``before_resolve`` (every vote was yes and the user was told so: the
report is ``ok`` and recovery must record the commit); ``before_abort`` (a vote failed, no
abort is recorded). When it answers True the client stops there and sends nothing more.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from router import kv_pb2 as kv
from router.shard_map import META_GROUP_ID, ShardMap
from txn.atomic import AtomicOp, apply_ops
from txn.codec import write_item_fields
from txn.hlc import HybridClock
from txn.proofs import MAC_BYTES
from txn.records import WriteItem
from txn.txn_ids import RANDOM_BYTES, start_ts_of, txn_id_with_start

__all__ = [
    "ABANDON_POINTS",
    "MUTATIONS",
    "Atomic",
    "Leased",
    "SimTxnClient",
    "Transport",
    "TxnResult",
    "error_of",
    "written_value",
]

OnAnswer = Callable[[kv.Response | None, bool], None]


@dataclass(frozen=True)
class Atomic:
    """A body's atomic write of a key: these operations, applied at commit to its value."""

    ops: tuple[tuple[AtomicOp, bytes], ...]


@dataclass(frozen=True)
class Leased:
    """A body's write of a value that lives `ttl_ms` after the commit (`tx.put(ttl_s=)`)."""

    value: bytes
    ttl_ms: int


#: A transaction's write of one key: a value, None (delete), atomic operations or a value
#: with a time to live.
Write = bytes | None | Atomic | Leased


def written_value(write: Write, below: bytes | None) -> bytes | None:
    """The value `write` leaves over `below`, the key's value just under it."""
    if isinstance(write, Atomic):
        return apply_ops(below, write.ops)
    if isinstance(write, Leased):
        return write.value
    return write


#: The writes of a transaction from what it read.
Body = Callable[[dict[bytes, bytes | None]], dict[bytes, Write]]

#: Deliberate client bugs the property tests must catch (never set outside those proofs):
#: commit without the read set (no validation: lost updates), read the latest versions in a
#: snapshot instead of the versions at T, report an unanswered commit (CommitUnknown) as a
#: failure, commit without the scanned ranges (phantoms).
MUTATIONS = (
    "no_read_validation",
    "snapshot_reads_latest",
    "unknown_as_fail",
    "no_read_ranges",
    "abort_without_recovery",
)

ABANDON_POINTS = ("before_commit", "mid_prepare", "before_resolve", "before_abort")

SCAN_LIMIT = 100  # keys per simulated scan; the workloads' ranges hold far fewer
SETTLE_S = 2.0  # how long a settle may ask, past the commit's deadline


class Transport(Protocol):
    """What the client needs from its environment (the simulator implements it)."""

    cluster_id: str
    shard_map: ShardMap
    rng: random.Random

    def now(self) -> float:
        """World time (for deadlines and the history)."""
        ...

    def wall_ns(self) -> int:
        """The client machine's wall clock."""
        ...

    def later(self, delay_s: float, fn: Callable[[], None]) -> None:
        """Call `fn()` after `delay_s` seconds of virtual time."""
        ...

    def count(self, name: str) -> None:
        """Add one to the run's statistic `name`."""
        ...

    def call(
        self,
        group_id: int | None,
        request: kv.Request,
        timeout_s: float,
        on_done: OnAnswer,
        resend: bool = True,
    ) -> None:
        """Send `request` to the leader of `group_id` (any node when None), following
        NOT_LEADER redirects and re-sending on silence until `timeout_s`; then call
        `on_done(response, ambiguous)`: the first answer that is not a redirect or
        'unavailable', or None at the deadline, `ambiguous` telling whether some attempt may
        have been proposed (a timeout or OUTCOME_UNKNOWN). With `resend` False (a write that
        is not idempotent: Put, Delete, CAS), an attempt that may have been proposed is the
        last: silence or OUTCOME_UNKNOWN ends the call at once, `on_done(None, True)`, as the
        real client raises OutcomeUnknown."""
        ...


@dataclass(slots=True, kw_only=True)
class TxnResult:
    """What the client concluded about one transaction."""

    txn_id: bytes
    status: str = "pending"  # ok | fail | info
    #: key -> (value or None, version) as read (for a snapshot: at `snapshot_ts`).
    reads: dict[bytes, tuple[bytes | None, int]] = field(default_factory=dict)
    #: key -> value written (None: a deletion). For a single-key write (`SimTxnClient.put`,
    #: `delete`, `cas`): what it wrote when ok (nothing for a delete of an absent key or a
    #: compare-and-set that failed), what it meant to write when info.
    writes: dict[bytes, Write] = field(default_factory=dict)
    commit_ts: int = 0
    coordinator: int = 0
    participants: tuple[int, ...] = ()
    one_phase: bool = False
    snapshot_ts: int = 0
    #: The parts [start, end) of a scan (`SimTxnClient.scan`), each answered by one group.
    scanned: tuple[tuple[bytes, bytes | None], ...] = ()
    why: str = ""
    #: A touch's answer (`SimTxnClient.touch`): the deadline the value lives to now.
    expires_at: int = 0


ScanPart = tuple[int, bytes, bytes | None]


def scan_parts(client: SimTxnClient, ranges: list[tuple[bytes, bytes]]) -> list[ScanPart]:
    """(group, start, end) of every shard's part of every range, in order."""
    return [
        (desc.group_id, lo, hi)
        for start, end in ranges
        for desc, lo, hi in client.t.shard_map.split_range(start, end)
    ]


def scan_answer(
    owner: _Txn | _Operation,
    part: ScanPart,
    response: kv.Response | None,
    again: Callable[[], None],
) -> bool:
    """Record a scan part's items in `owner`'s result: True; or finish `owner` failed, or
    send the part `again` after a pause when an intent refused it: False."""
    _group, start, end = part
    if response is None:
        owner.finish("fail", f"scan of [{start!r}, {end!r}) got no answer")
        return False
    error = error_of(response)
    if error.code == kv.CONFLICT:
        owner.c.t.later(owner.c.t.rng.uniform(0.005, 0.03), again)
        return False
    if error.code != kv.OK:
        owner.finish("fail", f"scan of [{start!r}, {end!r}): {kv.ErrorCode.Name(error.code)}")
        return False
    items = response.scan.items
    if len(items) >= SCAN_LIMIT or response.scan.more:
        raise AssertionError("a simulated scan range holds more keys than SCAN_LIMIT")
    for item in items:
        owner.c.clock.observe(item.version)
        owner.result.reads[item.key] = (item.value, item.version)
    return True


def error_of(response: kv.Response) -> kv.Error:
    """The error of any response (code OK when none).

    A response whose body has only default fields (an OK ResolveResponse) arrives with no
    `result` set at all: that is a success, as the real clients read it.
    """
    kind = response.WhichOneof("result")
    if kind is None:
        return kv.Error()
    body = getattr(response, kind)
    error: kv.Error = body if kind == "error" else body.error
    return error


class SimTxnClient:
    """One client process; runs one transaction or snapshot at a time."""

    def __init__(
        self,
        transport: Transport,
        *,
        read_timeout_s: float = 1.5,
        commit_timeout_s: float = 2.0,
        abandon: Callable[[str], bool] | None = None,
        mutations: frozenset[str] = frozenset(),
        settle_unknown: bool = False,
        forged_resolves: float = 0.0,
    ) -> None:
        self.t = transport
        #: Probability of each forgery of a buggy client (`_Txn._forge_*`; node rule 12).
        self.forged_resolves = forged_resolves
        #: Settle a commit whose outcome is unknown, as `txn.Client(settle_unknown=True)`
        #: does (`txn_status(ref, settle=True)`): a recovery Decide(abort) at the decision
        #: group, re-sent while pending for SETTLE_S more, whose answer is the outcome.
        self.settle_unknown = settle_unknown
        #: Deliberate bugs, for the proof that the checkers catch them (see MUTATIONS).
        self.mutations = mutations
        self.read_timeout_s = read_timeout_s
        self.commit_timeout_s = commit_timeout_s
        self.abandon = abandon or (lambda _point: False)
        self.clock = HybridClock()

    # ------------------------------------------------------------------ helpers

    def _header(self, header: kv.Header, group_id: int) -> None:
        header.cluster_id = self.t.cluster_id
        header.group_id = group_id

    def _group(self, key: bytes) -> int:
        return self.t.shard_map.locate(key).group_id

    def new_txn_id(self) -> bytes:
        """An id carrying its start, as the real client makes (shard/node.py rule 13)."""
        # 128 bits drawn as before ids carried a start, so every seed replays as it did.
        nonce = self.t.rng.getrandbits(128).to_bytes(16, "big")[:RANDOM_BYTES]
        return txn_id_with_start(self.clock.peek(self.t.wall_ns()), nonce)

    # ------------------------------------------------------------------ read-write

    def transaction(
        self,
        keys: list[bytes],
        body: Body,
        done: Callable[[TxnResult], None],
        scans: Sequence[tuple[bytes, bytes]] = (),
    ) -> None:
        """Scan `scans`, read `keys`, compute writes with `body`, commit; `done(result)` once."""
        _Txn(self, keys, body, done, list(scans)).start()

    # ------------------------------------------------------------------ read-only

    def snapshot(self, keys: list[bytes], done: Callable[[TxnResult], None]) -> None:
        """Read `keys` at one timestamp; `done(result)` once (ok or fail)."""
        _Snapshot(self, keys, done).start()

    def get(self, key: bytes, done: Callable[[TxnResult], None]) -> None:
        """A plain linearizable read of `key`, outside any transaction (`client.get`);
        `done(result)` once (ok or fail)."""
        _Snapshot(self, [key], done, plain=True).start()

    # ------------------------------------------------------------------ single-key writes

    def put(
        self, key: bytes, value: bytes, done: Callable[[TxnResult], None], ttl_ms: int = 0
    ) -> None:
        """A single-key Put outside any transaction (`client.put`); `done(result)` once."""
        request = kv.Request(put=kv.PutRequest(key=key, value=value, ttl_ms=ttl_ms))
        _Single(self, key, request, value, done).start()

    def delete(self, key: bytes, done: Callable[[TxnResult], None]) -> None:
        """A single-key Delete (`client.delete`); `done(result)` once."""
        _Single(self, key, kv.Request(delete=kv.DeleteRequest(key=key)), None, done).start()

    def cas(
        self,
        key: bytes,
        done: Callable[[TxnResult], None],
        *,
        expected_value: bytes | None = None,
        expected_version: int = 0,
        new_value: bytes | None = None,
        ttl_ms: int = 0,
    ) -> None:
        """A compare-and-set (`client.cas`): expect `expected_value`, else `expected_version`
        when not 0, else the key absent; write `new_value` (living `ttl_ms`, if any), or
        delete when None. A failed comparison is ``fail``, with the key's state it reported
        in `reads`."""
        op = kv.CasRequest(key=key, ttl_ms=ttl_ms)
        if expected_value is not None:
            op.expected_value = expected_value
        elif expected_version:
            op.expected_version = expected_version
        else:
            op.expect_absent = True
        if new_value is None:
            op.delete = True
        else:
            op.new_value = new_value
        _Single(self, key, kv.Request(cas=op), new_value, done).start()

    # ------------------------------------------------------------------ scans

    def touch(
        self, key: bytes, version: int, ttl_ms: int, done: Callable[[TxnResult], None]
    ) -> None:
        """A lease's renewal (`client.cas(expected_version=, touch=True, ttl_s=)`): the live
        `version` of `key` lives `ttl_ms` from now on; ``ok`` with `expires_at`, or ``fail``
        with the key's state when it no longer holds that version. Writes nothing."""
        op = kv.CasRequest(key=key, expected_version=version, touch=True, ttl_ms=ttl_ms)
        _Single(self, key, kv.Request(cas=op), None, done).start()

    def scan(
        self,
        ranges: Sequence[tuple[bytes, bytes]],
        done: Callable[[TxnResult], None],
        snapshot: bool,
    ) -> None:
        """Scan `ranges` outside any transaction, shard by shard: with `snapshot`, every
        part at one timestamp (a read-only snapshot transaction that scans); else each part
        with a linearizable `Scan` at its group's leader (`client.scan`, one part after the
        other: no one timestamp for the whole). `done(result)` once (ok or fail)."""
        _Scan(self, list(ranges), done, snapshot).start()


class _Txn:
    """One read-write transaction, step by step (the module docstring's steps 1-4)."""

    def __init__(
        self,
        client: SimTxnClient,
        keys: list[bytes],
        body: Body,
        done: Callable[[TxnResult], None],
        scans: list[tuple[bytes, bytes]],
    ) -> None:
        self.c = client
        self.keys = list(dict.fromkeys(keys))
        self.scan_parts = scan_parts(client, scans)
        self.ranges: dict[int, list[kv.KeyRange]] = {}
        self.body = body
        self.done_cb = done
        self.result = TxnResult(txn_id=client.new_txn_id())
        self.read_deadline = 0.0
        self.votes: dict[int, kv.VoteProof | None] = {}
        # The ts of the Prepares: below every prepare_ts, so a valid asker_ts (rule D4).
        self.prepare_ts_sent = 0
        self.abort_deadline = 0.0
        self.settling = False
        self.parts: dict[int, tuple[list[kv.ReadItem], list[kv.WriteItem], list[kv.KeyRange]]] = {}
        self.finished = False
        # Half the transactions read for update (leader-local update locks, wound-wait);
        # the age goes with every read for update and every Prepare.
        self.for_update = client.t.rng.random() < 0.5
        self.priority = client.clock.now(client.t.wall_ns())
        self.lock_groups: set[int] = set()

    def finish(self, status: str, why: str = "") -> None:
        if self.finished:
            return
        self.finished = True
        self.result.status = status
        self.result.why = why
        self.done_cb(self.result)

    def start(self) -> None:
        self._scan_next(0)

    # 0. scans ---------------------------------------------------------------------------

    def _scan_next(self, i: int) -> None:
        if i == len(self.scan_parts):
            self._read_next(0)
            return
        self.read_deadline = self.c.t.now() + self.c.read_timeout_s
        self._scan(i)

    def _scan(self, i: int) -> None:
        group, start, end = self.scan_parts[i]
        request = kv.Request(scan=kv.ScanRequest(start=start, end=end, limit=SCAN_LIMIT))
        self.c._header(request.scan.header, group)
        remaining = self.read_deadline - self.c.t.now()
        if remaining <= 0:
            self.finish("fail", f"scan of [{start!r}, {end!r}) refused until its deadline")
            return
        self.c.t.call(group, request, remaining, lambda r, _a: self._on_scan(i, r))

    def _on_scan(self, i: int, response: kv.Response | None) -> None:
        part = group, start, end = self.scan_parts[i]
        if scan_answer(self, part, response, lambda: self._scan(i)):
            self.ranges.setdefault(group, []).append(kv.KeyRange(start=start, end=end))
            self._scan_next(i + 1)

    # 1. reads ---------------------------------------------------------------------------

    def _read_next(self, i: int) -> None:
        if i == len(self.keys):
            self._compute()
            return
        key = self.keys[i]
        self.read_deadline = self.c.t.now() + self.c.read_timeout_s
        self._read(i, key)

    def _read(self, i: int, key: bytes) -> None:
        request = kv.Request(get=kv.GetRequest(key=key))
        group = self.c._group(key)
        if self.for_update:
            request.get.lock_txn_id = self.result.txn_id
            request.get.lock_priority = self.priority
            self.lock_groups.add(group)
        self.c._header(request.get.header, group)
        remaining = self.read_deadline - self.c.t.now()
        if remaining <= 0:
            self.finish("fail", f"read of {key!r} refused until its deadline")
            return
        self.c.t.call(group, request, remaining, lambda r, _a: self._on_read(i, key, r))

    def _on_read(self, i: int, key: bytes, response: kv.Response | None) -> None:
        if response is None:
            self.finish("fail", f"read of {key!r} got no answer")
            return
        error = error_of(response)
        if error.code == kv.CONFLICT and self.for_update:
            # Wounded or queued too long: give the locks back, as the real client does.
            self._resolve_all(sorted(self.lock_groups), False, 0)
            self.finish("fail", f"read for update of {key!r} refused")
            return
        if error.code == kv.CONFLICT:
            delay = self.c.t.rng.uniform(0.005, 0.03)
            self.c.t.later(delay, lambda: self._read(i, key))
            return
        if error.code != kv.OK:
            self.finish("fail", f"read of {key!r}: {kv.ErrorCode.Name(error.code)}")
            return
        got = response.get
        self.c.clock.observe(got.version)
        self.result.reads[key] = (got.value if got.found else None, got.version)
        self._read_next(i + 1)

    # 2. the body -------------------------------------------------------------------------

    def _compute(self) -> None:
        values = {k: v for k, (v, _ver) in self.result.reads.items()}
        self.result.writes = dict(self.body(values))
        if self.c.abandon("before_commit"):
            self.finish("info", "client died before commit")
            return
        self._commit()

    # 3. commit ---------------------------------------------------------------------------

    def _commit(self) -> None:
        res = self.result
        reads, writes = res.reads, res.writes
        if "no_read_validation" in self.c.mutations:
            reads = {}
        if not reads and not writes:
            self.finish("ok", "empty")
            return
        for key, (_v, version) in reads.items():
            part = self.parts.setdefault(self.c._group(key), ([], [], []))
            part[0].append(kv.ReadItem(key=key, version=version))
        for key, value in writes.items():
            part = self.parts.setdefault(self.c._group(key), ([], [], []))
            if isinstance(value, Atomic):
                atomic = WriteItem(key=key, value=None, ops=value.ops)
                part[1].append(kv.WriteItem(**write_item_fields(atomic)))
            elif isinstance(value, Leased):
                part[1].append(kv.WriteItem(key=key, value=value.value, ttl_ms=value.ttl_ms))
            elif value is None:
                part[1].append(kv.WriteItem(key=key, delete=True))
            else:
                part[1].append(kv.WriteItem(key=key, value=value))
        if "no_read_ranges" not in self.c.mutations:
            for group, ranges in self.ranges.items():
                self.parts.setdefault(group, ([], [], []))[2].extend(ranges)
        first = next(iter(writes)) if writes else next(iter(reads))
        res.coordinator = self.c._group(first)
        res.participants = tuple(sorted(self.parts))
        self.c.clock.observe(start_ts_of(self.result.txn_id))  # as txn/commit.py
        ts = self.c.clock.now(self.c.t.wall_ns())
        self.commit_deadline = self.c.t.now() + self.c.commit_timeout_s
        if len(self.parts) == 1:
            self._one_phase(ts)
        else:
            self._prepare_all(ts)

    def _remaining(self) -> float:
        return max(self.commit_deadline - self.c.t.now(), 0.001)

    def _one_phase(self, ts: int) -> None:
        res = self.result
        res.one_phase = True
        self.prepare_ts_sent = ts  # a settle's asker_ts: the commit is stamped at or above
        reads, writes, ranges = self.parts[res.coordinator]
        op = kv.CommitOnePhaseRequest(
            txn_id=res.txn_id, ts=ts, reads=reads, writes=writes, read_ranges=ranges
        )
        self.c._header(op.header, res.coordinator)
        self.c.t.call(
            res.coordinator, kv.Request(commit_one_phase=op), self._remaining(), self._on_one_phase
        )

    def _on_one_phase(self, response: kv.Response | None, ambiguous: bool) -> None:
        if response is None:
            if ambiguous and "unknown_as_fail" not in self.c.mutations:
                if not self._settle("one-phase commit unanswered"):
                    self.finish("info", "one-phase commit unanswered (CommitUnknown)")
            else:
                self.finish("fail", "one-phase commit refused before proposing")
            return
        error = error_of(response)
        if error.code != kv.OK:
            self.finish("fail", f"one-phase commit: {kv.ErrorCode.Name(error.code)}")
            return
        self.result.commit_ts = response.commit_one_phase.commit_ts
        self.c.clock.observe(self.result.commit_ts)
        self.finish("ok")

    def _prepare_all(self, ts: int) -> None:
        res = self.result
        self.prepare_ts_sent = ts
        for group in res.participants:
            reads, writes, ranges = self.parts[group]
            op = kv.PrepareRequest(
                txn_id=res.txn_id,
                coordinator_group=res.coordinator,
                participants=res.participants,
                ts=ts,
                priority=self.priority,
                reads=reads,
                writes=writes,
                read_ranges=ranges,
            )
            self.c._header(op.header, group)
            self.c.t.call(
                group,
                kv.Request(prepare=op),
                self._remaining(),
                self._vote_callback(group),
            )
        if self.c.abandon("mid_prepare"):
            self.finish("info", "client died with its prepares in flight")

    def _vote_callback(self, group: int) -> OnAnswer:
        return lambda response, _ambiguous: self._on_vote(group, response)

    def _on_vote(self, group: int, response: kv.Response | None) -> None:
        if self.finished:
            return
        if response is None or error_of(response).code != kv.OK:
            self.votes[group] = None
        else:
            vote = response.prepare
            self.votes[group] = kv.VoteProof(
                group_id=group, prepare_ts=vote.prepare_ts, mac=vote.vote_mac
            )
            self.c.clock.observe(vote.prepare_ts)
            if self._forges():
                self._forge_early_commit()
        if len(self.votes) < len(self.result.participants):
            return
        if any(v is None for v in self.votes.values()):
            missing = sorted(g for g, v in self.votes.items() if v is None)
            self._abort(f"no or missing votes from groups {missing}")
            return
        votes = [v for v in self.votes.values() if v is not None]
        commit_ts = max(v.prepare_ts for v in votes)
        self.result.commit_ts = commit_ts
        self.c.clock.observe(commit_ts)
        if self.c.abandon("before_resolve"):
            self.finish("ok", "every vote yes; the client died before resolving")
            return
        if self._forges():
            self._forge_abort()
        self.finish("ok")
        self._resolve_all(list(self.result.participants), True, commit_ts, votes)

    def _abort(self, why: str) -> None:
        """Record the abort at the coordinator group; its answer is the outcome."""
        if self.c.abandon("before_abort"):
            self.finish("info", f"{why}; the client died before recording the abort")
            return
        self.abort_deadline = self.c.t.now() + max(self._remaining(), 0.5)
        self._send_abort(why)

    def _send_abort(self, why: str) -> None:
        res = self.result
        recover = "abort_without_recovery" not in self.c.mutations
        op = kv.DecideRequest(
            txn_id=res.txn_id,
            participants=res.participants,
            commit=False,
            recover=recover,
            asker_ts=self.prepare_ts_sent,
        )
        self.c._header(op.header, res.coordinator)
        self.c.t.call(
            res.coordinator,
            kv.Request(decide=op),
            max(self.abort_deadline - self.c.t.now(), 0.001),
            lambda r, _a: self._on_abort_decided(r, why),
        )

    def _settle(self, why: str) -> bool:
        """The outcome is unknown: settle it if this client does (once); False if not."""
        if not self.c.settle_unknown or self.settling:
            return False
        self.settling = True
        self.abort_deadline = self.c.t.now() + SETTLE_S
        self._send_abort(f"{why}; settled")
        return True

    def _on_abort_decided(self, response: kv.Response | None, why: str) -> None:
        if response is None or error_of(response).code != kv.OK:
            if "unknown_as_fail" in self.c.mutations:
                self.finish("fail", why)
            elif not self._settle(why):
                self.finish("info", f"{why}; the abort was not recorded (CommitUnknown)")
            return
        answer = response.decide
        # The mutation is a client of before the recovery Decide: it never heard of pending.
        if answer.pending and "abort_without_recovery" not in self.c.mutations:
            delay = self.c.t.rng.uniform(0.005, 0.03)
            if self.c.t.now() + delay < self.abort_deadline:
                self.c.t.later(delay, lambda: self._send_abort(why))
            elif not self._settle(why):
                self.finish("info", f"{why}; the prevent round had not decided (CommitUnknown)")
            return
        self.c.clock.observe(answer.commit_ts)
        if answer.committed:
            self.result.commit_ts = answer.commit_ts
            self.finish("ok", "recovery had recorded the commit")
        else:
            self.finish("fail", why)

    def _forges(self) -> bool:
        return self.c.forged_resolves > 0 and self.c.t.rng.random() < self.c.forged_resolves

    def _forge_early_commit(self) -> None:
        """A buggy client resolves as committed on the votes it has so far, and fills in
        the missing ones: the nodes must refuse it (rule 12), or a participant that votes
        no would leave this one committed."""
        parts = list(self.result.participants)
        votes = [v for v in self.votes.values() if v is not None]
        votes += [
            kv.VoteProof(group_id=g, prepare_ts=votes[0].prepare_ts, mac=bytes(MAC_BYTES))
            for g in parts
            if self.votes.get(g) is None
        ]
        self.c.t.count("forged_commit_resolves")
        self._resolve_all(parts, True, max(v.prepare_ts for v in votes), votes)

    def _forge_abort(self) -> None:
        """A buggy client aborts one participant of a committed transaction, as if it
        had freed its update locks: the nodes must not log it (rule 12). Or it asks a
        group with no part in the transaction to record its abort, naming that group among
        the participants: the abort that group delivers must change nothing (rule R7)."""
        parts = sorted(self.result.participants)
        others = [
            g for g in self.c.t.shard_map.group_ids() if g != META_GROUP_ID and g not in parts
        ]
        if others and self.c.t.rng.random() < 0.5:
            group = self.c.t.rng.choice(others)
            op = kv.DecideRequest(
                txn_id=self.result.txn_id, participants=[*parts, group], recover=True
            )
            self.c._header(op.header, group)
            self.c.t.count("forged_decides_elsewhere")
            self.c.t.call(group, kv.Request(decide=op), 0.5, lambda _r, _a: None)
            return
        self.c.t.count("forged_abort_resolves")
        self._resolve_all([self.c.t.rng.choice(parts)], False, 0)

    def _resolve_all(
        self, groups: list[int], commit: bool, commit_ts: int, votes: Sequence[kv.VoteProof] = ()
    ) -> None:
        """A commit carries every yes vote as its proof (node rule 12)."""
        for group in groups:
            op = kv.ResolveRequest(
                txn_id=self.result.txn_id,
                commit=commit,
                commit_ts=commit_ts,
                participants=groups if commit else [],
                votes=votes,
            )
            self.c._header(op.header, group)
            self.c.t.call(group, kv.Request(resolve=op), 0.5, lambda _r, _a: None)


class _Operation:
    """What the one-shot operations outside a transaction share: their result (under a
    fresh id), their deadline, and for reads the snapshot timestamp asked for first."""

    def __init__(self, client: SimTxnClient, done: Callable[[TxnResult], None]) -> None:
        self.c = client
        self.done_cb = done
        self.result = TxnResult(txn_id=client.new_txn_id())
        self.deadline = 0.0

    def finish(self, status: str, why: str = "") -> None:
        self.result.status = status
        self.result.why = why
        self.done_cb(self.result)

    def _read_at_snapshot(self, then: Callable[[], None]) -> None:
        """Take a snapshot timestamp (`result.snapshot_ts`), then call `then()`."""

        def on_ts(response: kv.Response | None, _ambiguous: bool) -> None:
            if response is None or error_of(response).code != kv.OK:
                self.finish("fail", "no timestamp")
                return
            ts = max(response.timestamp.ts, self.c.clock.last)
            self.c.clock.observe(ts)
            self.result.snapshot_ts = ts
            then()

        request = kv.Request(timestamp=kv.TimestampRequest())
        self.c.t.call(None, request, self.c.read_timeout_s, on_ts)


class _Snapshot(_Operation):
    """One read-only snapshot transaction, or (`plain`) one linearizable read of one key."""

    def __init__(
        self,
        client: SimTxnClient,
        keys: list[bytes],
        done: Callable[[TxnResult], None],
        plain: bool = False,
    ) -> None:
        self.keys = list(dict.fromkeys(keys))
        self.plain = plain
        super().__init__(client, done)

    def start(self) -> None:
        self.deadline = self.c.t.now() + self.c.read_timeout_s
        if self.plain:
            self.c.t.count("plain_gets")
            self._read(0)
            return
        self._read_at_snapshot(lambda: self._read(0))

    def _read(self, i: int) -> None:
        if i == len(self.keys):
            self.finish("ok")
            return
        key = self.keys[i]
        group = self.c._group(key)
        request = kv.Request(
            get=kv.GetRequest(key=key, snapshot=True, at_version=self.result.snapshot_ts)
        )
        if self.plain or "snapshot_reads_latest" in self.c.mutations:
            request = kv.Request(get=kv.GetRequest(key=key))
        self.c._header(request.get.header, group)
        remaining = self.deadline - self.c.t.now()
        if remaining <= 0:
            self.finish("fail", f"snapshot read of {key!r} timed out")
            return
        self.c.t.call(group, request, remaining, lambda r, _a: self._on_read(i, key, r))

    def _on_read(self, i: int, key: bytes, response: kv.Response | None) -> None:
        if response is None:
            self.finish("fail", f"snapshot read of {key!r} got no answer")
            return
        error = error_of(response)
        if error.code == kv.CONFLICT:
            self.c.t.later(self.c.t.rng.uniform(0.005, 0.03), lambda: self._read(i))
            return
        if error.code != kv.OK:
            self.finish("fail", f"snapshot read of {key!r}: {kv.ErrorCode.Name(error.code)}")
            return
        got = response.get
        self.c.clock.observe(got.version)
        self.result.reads[key] = (got.value if got.found else None, got.version)
        self._read(i + 1)


class _Single(_Operation):
    """One single-key Put, Delete or compare-and-set, outside any transaction.

    Not idempotent, so never re-sent once an attempt may have been proposed (the transport's
    `resend=False`): silence or OUTCOME_UNKNOWN is ``info``, as the real client's
    OutcomeUnknown. A CONFLICT (rule W1: a prepared transaction's intent on the key; nothing
    was applied) is retried after a short backoff until the commit deadline, as the real
    client does, then ``fail``; so ``fail`` means no attempt was applied (or the comparison
    failed, which writes nothing either).
    """

    def __init__(
        self,
        client: SimTxnClient,
        key: bytes,
        request: kv.Request,
        value: bytes | None,
        done: Callable[[TxnResult], None],
    ) -> None:
        self.key = key
        self.request = request
        self.kind = request.WhichOneof("op")
        self.value = value
        # A touch keeps the value and version: it writes nothing, whatever its outcome.
        self.touch = self.kind == "cas" and request.cas.touch
        super().__init__(client, done)
        self.group = client._group(key)
        client._header(getattr(request, self.kind).header, self.group)

    def start(self) -> None:
        self.c.t.count(f"single_{self.kind}")
        self.deadline = self.c.t.now() + self.c.commit_timeout_s
        self._send()

    def _send(self) -> None:
        remaining = self.deadline - self.c.t.now()
        if remaining <= 0:
            self.finish(
                "fail", f"{self.kind} of {self.key!r} refused (CONFLICT) until its deadline"
            )
            return
        self.c.t.call(self.group, self.request, remaining, self._on_answer, resend=False)

    def _on_answer(self, response: kv.Response | None, ambiguous: bool) -> None:
        if response is None:
            if ambiguous and not self.touch:
                self.result.writes = {self.key: self.value}
                self.finish("info", f"{self.kind} of {self.key!r} unanswered (OutcomeUnknown)")
            else:
                self.finish("fail", f"{self.kind} of {self.key!r} never proposed")
            return
        error = error_of(response)
        if error.code == kv.CONFLICT:
            self.c.t.count("single_conflicts")
            self.c.t.later(self.c.t.rng.uniform(0.005, 0.03), self._send)
            return
        if error.code != kv.OK:
            self.finish("fail", f"{self.kind} of {self.key!r}: {kv.ErrorCode.Name(error.code)}")
            return
        body = getattr(response, self.kind)
        if self.kind == "cas" and not body.succeeded:
            self.c.clock.observe(body.current_version)
            value = body.current_value if body.found else None
            self.result.reads[self.key] = (value, body.current_version)
            self.finish("fail", "compare-and-set: the comparison failed")
            return
        version = int(body.version)
        self.c.clock.observe(version)
        if self.touch:  # no commit: the version it names is the one it kept
            self.result.expires_at = body.expires_at
        else:
            self.result.commit_ts = version
            if version:  # a delete of an absent key (version 0) writes nothing
                self.result.writes = {self.key: self.value}
        self.finish("ok")


class _Scan(_Operation):
    """One scan outside any transaction: a snapshot scan at one timestamp, or linearizable
    scans of each shard's part (`SimTxnClient.scan`)."""

    def __init__(
        self,
        client: SimTxnClient,
        ranges: list[tuple[bytes, bytes]],
        done: Callable[[TxnResult], None],
        snapshot: bool,
    ) -> None:
        self.snapshot = snapshot
        self.parts = scan_parts(client, ranges)
        super().__init__(client, done)
        self.result.scanned = tuple((lo, hi) for _g, lo, hi in self.parts)

    def start(self) -> None:
        self.c.t.count("snapshot_scans" if self.snapshot else "plain_scans")
        self.deadline = self.c.t.now() + self.c.read_timeout_s
        if not self.snapshot:
            self._scan(0)
            return
        self._read_at_snapshot(lambda: self._scan(0))

    def _scan(self, i: int) -> None:
        if i == len(self.parts):
            self.finish("ok")
            return
        group, start, end = self.parts[i]
        op = kv.ScanRequest(start=start, limit=SCAN_LIMIT)
        if end is not None:
            op.end = end
        if self.snapshot:
            op.snapshot = True
            op.at_version = self.result.snapshot_ts
        self.c._header(op.header, group)
        remaining = self.deadline - self.c.t.now()
        if remaining <= 0:
            self.finish("fail", f"scan of [{start!r}, {end!r}) refused until its deadline")
            return
        request = kv.Request(scan=op)
        self.c.t.call(group, request, remaining, lambda r, _a: self._on_scan(i, r))

    def _on_scan(self, i: int, response: kv.Response | None) -> None:
        if scan_answer(self, self.parts[i], response, lambda: self._scan(i)):
            self._scan(i + 1)
