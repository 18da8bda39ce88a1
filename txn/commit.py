"""The commit protocol of `AsyncClient`: one- or two-phase commit, aborts and resolves."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from router import kv_pb2 as kv
from router.client import response_error
from router.client_errors import OUTCOME_ADVICE
from router.errors import UnknownGroup, WrongShard
from router.limits import txn_part_refusal
from txn.codec import write_item_fields
from txn.errors import (
    ClientClosed,
    CommitUnknown,
    Conflict,
    DeadlineExceeded,
    FencingTokenRejected,
    LimitExceeded,
    PaxosKVError,
    ServerError,
    TransactionTooOld,
    TxnRef,
    Unavailable,
    _conflict,
)
from txn.hlc import LOGICAL_BITS, physical_us
from txn.records import WriteItem
from txn.resend import RESEND_BACKOFF, Copies, _NoAnswer, send_idempotent
from txn.status import TxnState, TxnStatus
from txn.txn_ids import start_ts_of

if TYPE_CHECKING:
    from txn.client import AsyncClient
    from txn.transaction import AsyncTransaction

__all__ = ["Committer"]

_DECIDE_TIMEOUT_S = 2.0  # budget of a Decide or Resolve sent after the prepares
# The share of a two-phase commit's deadline (at most _DECIDE_TIMEOUT_S) the prepares leave
# to recording the abort when one fails: the abort used to get _DECIDE_TIMEOUT_S past the
# deadline, so `paxoskv txn --timeout 1` against a group without a majority took 3 s (found
# by review); now the whole commit, abort included, ends by the caller's deadline.
_ABORT_SHARE = 0.25
_FENCE_CHECK_TIMEOUT_S = 2.0  # the read that tells a stale fencing token from other conflicts
# How long after its transaction's start a commit request (Prepare, one-phase commit) is
# still sent, whatever the deadline. Nodes keep decision records at least
# MIN_DECISION_RETENTION_S (120 s, shard/config.py) and judge a commit request by the start
# its id carries (shard/node.py rule 13); a copy sent later may arrive below a group's purge
# mark and be refused for it (participant rules P7, O5), and that refusal says nothing about
# an earlier copy: a one-phase commit whose first copy committed (its answer lost) would be
# reported as a Conflict, and `run` would do it again. Half the minimum retention leaves
# room for clock offsets, P7's margin (a quarter of the retention at most) and the purge
# interval.
RESEND_WINDOW_S = 60.0
MAX_TXN_AGE_S = 20.0
"""How long after its start a transaction may begin its commit (TransactionTooOld after
that): the commit's copies then have RESEND_WINDOW_S - MAX_TXN_AGE_S left to be sent in."""


def _cause(exc: BaseException) -> str:
    """`exc`'s message without what a single write's OutcomeUnknown says of its outcome (it
    may or may not have been applied; re-send only a compare-and-set...): a commit says its
    own (found by review: a commit's message carried both, one contradicting the other; by
    an application trial: "...may or may not have been applied); the transaction was
    aborted")."""
    if isinstance(exc, Conflict):  # its advice (re-run) is not the commit's either
        return exc.summary
    text = str(exc)
    for joint in ("; ", ", and "):
        text = text.removesuffix(joint + OUTCOME_ADVICE)
    for maybe in ("the write", "it"):
        text = text.removesuffix(f"; {maybe} may or may not have been applied")
    return text


class Committer:
    """An `AsyncClient`'s commits (rules 1 and 2 of the `txn.client` docstring): it sends
    through the client, whose clock, deadlines and background tasks it uses."""

    def __init__(self, client: AsyncClient) -> None:
        self._client = client

    async def stale_fence(self, tx: AsyncTransaction) -> FencingTokenRejected | None:
        """After a refused commit of a fenced transaction: the error for a lock whose latest
        version is not its token any more, else None (the refusal had another cause).

        A version once superseded never becomes latest again, so a lock found at another
        version means the store refused (or would now refuse) the token. When the lock
        cannot be read in time the refusal stays an ordinary, retryable Conflict.
        """
        try:
            timeout_s = tx._timeout_for("check of its fencing tokens")
        except DeadlineExceeded:
            return None
        if timeout_s is None or timeout_s > _FENCE_CHECK_TIMEOUT_S:
            timeout_s = _FENCE_CHECK_TIMEOUT_S
        deadline = self._client._deadline(timeout_s)
        for lock, token in tx._fences.items():
            request = kv.Request(get=kv.GetRequest(key=lock))
            try:
                response = await self._client._read(request, key=lock, deadline=deadline)
            except PaxosKVError:
                return None
            version = response.get.version
            self._client._clock.observe(version)
            if version != token:
                return FencingTokenRejected(lock, token, version, txn_id=tx.txn_id)
        return None

    async def commit(self, tx: AsyncTransaction) -> int:
        reads = list(tx._reads.items())
        ttls = tx._ttls
        writes = [
            *(
                WriteItem(key=key, value=value, ttl_ms=0 if value is None else ttls.get(key, 0))
                for key, value in tx._writes.items()
            ),
            *(WriteItem(key=key, value=None, ops=tuple(ops)) for key, ops in tx._ops.items()),
        ]
        if not reads and not writes and not tx._scanned:
            return 0
        try:
            timeout_s = tx._timeout_for("commit")
        except DeadlineExceeded as late:
            raise self._refused_unsent(tx, late) from None
        deadline = self._client._deadline(timeout_s)
        await self._client._ready(deadline)
        shard_map = self._client._map()
        parts: dict[int, _Part] = {}
        for key, version in reads:
            group = shard_map.locate(key).group_id
            parts.setdefault(group, _Part()).reads.append(kv.ReadItem(key=key, version=version))
        for write in writes:
            group = shard_map.locate(write.key).group_id
            item = kv.WriteItem(**write_item_fields(write))
            parts.setdefault(group, _Part()).writes.append(item)
        for start, end in tx._scanned:
            for desc, lo, hi in shard_map.split_range(start, end):
                part = parts.setdefault(desc.group_id, _Part())
                part.ranges.append(kv.KeyRange(start=lo, end=hi or b""))
        for group, part in parts.items():
            part.ranges = _union(part.ranges)  # nodes refuse overlapping scanned ranges
            # Refused here, the commit sends nothing (a Prepare refused by the routing client
            # or a node would leave the other participants' prepares to abort).
            refusal = txn_part_refusal(part.reads, part.writes, part.ranges)
            if refusal is not None:
                raise self._refused_unsent(tx, LimitExceeded(f"group {group}: {refusal}"))
        age_s = self._client._monotonic() - tx._started_mono
        if age_s > MAX_TXN_AGE_S:
            raise self._refused_unsent(
                tx,
                TransactionTooOld(
                    f"transaction {tx.txn_id.hex()} began {age_s:.1f} s ago, over the "
                    f"{MAX_TXN_AGE_S:g} s a transaction may take to commit (MAX_TXN_AGE_S); "
                    "nothing was written: re-run it"
                ),
            )
        first_key = writes[0].key if writes else reads[0][0] if reads else tx._scanned[0][0]
        coordinator = shard_map.locate(first_key).group_id
        # At or above the start the id carries, or the nodes refuse it (node rule 13).
        self._client._clock.observe(start_ts_of(tx.txn_id))
        ts = self._client._clock.now(self._client._wall_ns())
        # Rules P7, O5: no copy of a commit request leaves RESEND_WINDOW_S after the start.
        send_by = min(deadline, asyncio.get_running_loop().time() + RESEND_WINDOW_S - age_s)
        # Never after the Prepares' ts, even if the wall clock stepped back since the start:
        # an abort's asker_ts derives from it and must stay below every prepare_ts (rule D4).
        started_ns = min(tx._started_ns, physical_us(ts) * 1000)
        tx._ref = TxnRef(tx.txn_id, coordinator, started_ns)
        tx._participants = sorted(parts)
        if len(parts) == 1:
            return await self._commit_one_phase(
                tx._ref, coordinator, ts, parts[coordinator], send_by
            )
        return await self._commit_two_phase(
            tx._ref, parts, ts, tx._priority or ts, deadline, send_by
        )

    def _refused_unsent(self, tx: AsyncTransaction, error: PaxosKVError) -> PaxosKVError:
        """`error`, for a commit refused before anything was sent, once the update locks
        the transaction's reads took are freed (as abort() does)."""
        if tx._lock_groups:
            self.resolve_all(tx.txn_id, tx._lock_groups, False, 0)
        return error

    async def _send_idempotent(
        self,
        request: kv.Request,
        group_id: int,
        deadline: float,
        passthrough: Collection[int] = (),
        copies: Copies | None = None,
    ) -> kv.Response:
        """Send a commit request, idempotent under its transaction id (rule 1): the SAME
        request is re-sent while its answer is lost, its node silent or its group
        unavailable (`txn.resend.send_idempotent`, which reads share).

        Raises:
            _NoAnswer: as `send_idempotent`.
            Unavailable: the shard map changed under the request (not applied).
            LimitExceeded, InvalidArgument, WrongCluster, ServerError: from the node.
        """
        try:
            return await send_idempotent(
                self._client,
                request,
                group_id=group_id,
                write=True,
                deadline=deadline,
                passthrough=passthrough,
                copies=copies,
            )
        except (WrongShard, UnknownGroup) as exc:
            raise Unavailable(
                f"the shard map changed during the commit ({exc}); nothing was committed"
            ) from exc

    async def _commit_one_phase(
        self,
        ref: TxnRef,
        group_id: int,
        ts: int,
        part: _Part,
        deadline: float,
    ) -> int:
        op = kv.CommitOnePhaseRequest(
            txn_id=ref.txn_id,
            ts=ts,
            reads=part.reads,
            writes=part.writes,
            read_ranges=part.ranges,
        )
        request = kv.Request(commit_one_phase=op)
        try:
            response = await self._send_idempotent(
                request, group_id, deadline, passthrough=(kv.CONFLICT,)
            )
        except _NoAnswer as exc:
            if exc.ambiguous:
                raise CommitUnknown(
                    f"the one-phase commit at group {group_id} got no answer before the "
                    f"deadline (last: {_cause(exc.last)}); it may or may not have committed",
                    ref=ref,
                ) from exc.last
            raise exc.last from None
        except (ServerError, ClientClosed) as exc:
            raise CommitUnknown(
                f"the one-phase commit failed on the node ({exc}); it may or may not have "
                "committed",
                ref=ref,
            ) from exc
        # The only error passed through is CONFLICT; read where it is, not only in the body:
        # a CONFLICT at the top level read as an empty body was a commit at timestamp 0.
        refused = response_error(response, "commit_one_phase")
        if refused is not None:
            raise _conflict(refused, "commit", ref.txn_id)
        body = response.commit_one_phase
        self._client._clock.observe(body.commit_ts)
        return body.commit_ts

    async def _commit_two_phase(
        self,
        ref: TxnRef,
        parts: dict[int, _Part],
        ts: int,
        priority: int,
        deadline: float,
        send_by: float,
    ) -> int:
        participants = sorted(parts)
        coordinator = ref.group_id
        left = deadline - asyncio.get_running_loop().time()
        prepare_by = min(send_by, deadline - min(_DECIDE_TIMEOUT_S, left * _ABORT_SHARE))
        try:
            outcomes = await asyncio.gather(
                *(
                    self._prepare(
                        ref,
                        group,
                        coordinator,
                        participants,
                        ts,
                        priority,
                        parts[group],
                        prepare_by,
                    )
                    for group in participants
                ),
                return_exceptions=True,
            )
        except asyncio.CancelledError:
            # Nobody was told it committed; recording the abort settles it sooner.
            self._client._spawn(
                self._send_after_outcome(_abort_request(ref, participants), ref.group_id)
            )
            raise
        failures = [
            (group, outcome)
            for group, outcome in zip(participants, outcomes, strict=True)
            if isinstance(outcome, BaseException)
        ]
        if failures:
            return await self._abort_after_failed_prepare(ref, participants, failures, deadline)
        votes = [o for o in outcomes if isinstance(o, kv.VoteProof)]
        commit_ts = max(v.prepare_ts for v in votes)
        self._client._clock.observe(commit_ts)
        # Committed (rule 2). Every participant, the coordinator included, now resolves its
        # part; that leaves the record txn_status and recovery read (participant rule R5).
        # The votes are the commit's proof (txn/proofs.py).
        self.resolve_all(ref.txn_id, participants, True, commit_ts, votes)
        return commit_ts

    async def _prepare(
        self,
        ref: TxnRef,
        group_id: int,
        coordinator: int,
        participants: list[int],
        ts: int,
        priority: int,
        part: _Part,
        deadline: float,
    ) -> kv.VoteProof:
        """The group's yes vote, or raise why there is none."""
        op = kv.PrepareRequest(
            txn_id=ref.txn_id,
            coordinator_group=coordinator,
            participants=participants,
            ts=ts,
            priority=priority,
            reads=part.reads,
            writes=part.writes,
            read_ranges=part.ranges,
        )
        copies = Copies()
        try:
            response = await self._send_idempotent(
                kv.Request(prepare=op), group_id, deadline, (kv.CONFLICT,), copies
            )
        except _NoAnswer as exc:
            raise _PrepareUnanswered(
                f"group {group_id} did not answer the prepare before the deadline "
                f"({_cause(exc.last)})",
                never_sent=not copies.tried,
            ) from exc.last
        refused = response_error(response, "prepare")  # CONFLICT, as in the one-phase commit
        if refused is not None:
            raise _conflict(refused, "prepare", ref.txn_id)
        body = response.prepare
        self._client._clock.observe(body.prepare_ts)
        return kv.VoteProof(group_id=group_id, prepare_ts=body.prepare_ts, mac=body.vote_mac)

    async def _abort_after_failed_prepare(
        self,
        ref: TxnRef,
        participants: list[int],
        failures: list[tuple[int, BaseException]],
        deadline: float,
    ) -> int:
        """Record ABORT at the coordinator group (whose leader then resolves every
        participant) and raise the prepare's failure; return the commit timestamp instead
        if the recorded decision is a commit (rule 2).

        A prepare whose answer was lost may have been logged, and then it may have been the
        last yes vote: the transaction committed the moment it was logged. So the abort is a
        recovery Decide (`_abort_request`): while the coordinator group holds its own
        PREPARE it records nothing and answers `pending`, and its leader asks the other
        participants to prevent the txn, recording COMMIT if every one had prepared. The
        Decide is re-sent while the answer is not a recorded decision, up to the commit's
        `deadline` (the prepares left it time: _ABORT_SHARE). When it cannot be recorded
        but a Prepare was never sent, the transaction did not commit all the same (its
        group never votes): that answer is definite, the abort left to recovery.
        """
        # An unanswered prepare may have been logged, and been the last yes vote: not a
        # "failed" one (found by an application trial, whose transaction had committed).
        if any(isinstance(exc, _PrepareUnanswered) for _, exc in failures):
            after = "a prepare went unanswered (it may have been logged, and then committed it)"
        else:
            after = "a failed prepare"
        unknown = f"group {ref.group_id} could not record the abort after {after}"
        prepare = f"the prepare: {_cause(failures[0][1])}"
        cause: BaseException | None = None
        try:
            body = await self._record_abort(ref, participants, deadline)
        except asyncio.CancelledError:
            # As for a cancellation during the prepares: let the abort reach the coordinator
            # in the background, or the prepared intents wait for recovery.
            self._client._spawn(
                self._send_after_outcome(_abort_request(ref, participants), ref.group_id)
            )
            raise
        except _NoAnswer as exc:
            unrecorded = CommitUnknown(
                f"{unknown} (last: {_cause(exc.last)})",
                ref=ref,
                details=f"it may still commit if every participant prepared; {prepare}",
            )
            cause = exc.last
        except (PaxosKVError, ClientClosed) as exc:
            unrecorded = CommitUnknown(f"{unknown} ({exc})", ref=ref, details=prepare)
            cause = exc
        else:
            if body is not None and body.committed:
                self._client._clock.observe(body.commit_ts)
                return body.commit_ts
            if body is not None:
                raise _prepare_failure(ref, failures)
            unrecorded = CommitUnknown(
                f"{unknown}: it is still asking the participants whether every one prepared "
                "(then the transaction committed)",
                ref=ref,
                details=prepare,
            )
        unsent = [f for f in failures if isinstance(f[1], _PrepareUnanswered) and f[1].never_sent]
        if unsent:
            error = _prepare_failure(ref, unsent)
            raise error from error.__cause__
        raise unrecorded from cause

    async def _record_abort(
        self, ref: TxnRef, participants: list[int], end: float
    ) -> kv.DecideResponse | None:
        """Ask `ref`'s decision group for ABORT with a recovery Decide (`_abort_request`),
        re-sent while it answers `pending` (its prevent round is finding out whether every
        participant prepared); the recorded decision, or None if still pending at `end`.

        Raises:
            _NoAnswer, PaxosKVError, ClientClosed: as `_send_idempotent`.
        """
        attempt = 0
        while True:
            response = await self._send_idempotent(
                _abort_request(ref, participants), ref.group_id, end
            )
            if not response.decide.pending:
                return response.decide
            attempt += 1
            if not await self._client._pause(RESEND_BACKOFF, attempt, end):
                return None

    def resolve_all(
        self,
        txn_id: bytes,
        participants: Iterable[int],
        commit: bool,
        commit_ts: int,
        votes: Sequence[kv.VoteProof] = (),
    ) -> None:
        """Resolve each of `participants`; a commit with every one's yes vote as its proof,
        an abort (freeing update locks) with none (node rule 12)."""
        groups = list(participants)
        for group in groups:
            op = kv.ResolveRequest(
                txn_id=txn_id,
                commit=commit,
                commit_ts=commit_ts,
                participants=groups if commit else (),
                votes=votes,
            )
            self._client._spawn(self._send_after_outcome(kv.Request(resolve=op), group))

    async def _send_after_outcome(self, request: kv.Request, group_id: int) -> None:
        """Best effort, in the background, a Resolve or Decide(abort) sent once the outcome
        is known: if it fails, recovery records the same outcome in the end."""
        loop = asyncio.get_running_loop()
        with contextlib.suppress(PaxosKVError, _NoAnswer):
            await self._send_idempotent(request, group_id, loop.time() + _DECIDE_TIMEOUT_S)

    async def settle(self, ref: TxnRef, participants: list[int], end: float) -> TxnStatus:
        """`txn_status(settle=True)` for a transaction without a decision, by loop time
        `end` (the caller's deadline, or the end of its settle window if sooner: no abort
        may be recorded after that)."""
        what = f"transaction {ref.txn_id.hex()}: group {ref.group_id} could not record an outcome"
        try:
            body = await self._record_abort(ref, participants, end)
        except _NoAnswer as exc:
            if isinstance(exc.last, ClientClosed):
                # Closed after a copy whose answer was lost: that copy may have recorded it.
                raise ClientClosed(
                    f"{what}: the client was closed; it may have been recorded",
                    maybe_committed=True,
                ) from None
            raise DeadlineExceeded(f"{what} in time (last: {exc.last}); ask again") from None
        except ClientClosed:
            raise
        except PaxosKVError as exc:
            raise Unavailable(f"{what} ({exc}); ask again") from exc
        if body is None:
            raise DeadlineExceeded(
                f"{what} in time: it is still asking the participants whether every one "
                "prepared; ask again"
            )
        if body.committed:
            self._client._clock.observe(body.commit_ts)
            return TxnStatus(TxnState.COMMITTED, body.commit_ts)
        return TxnStatus(TxnState.ABORTED)


@dataclass
class _Part:
    """One participant group's share of a transaction's commit."""

    reads: list[kv.ReadItem] = field(default_factory=list)
    writes: list[kv.WriteItem] = field(default_factory=list)
    ranges: list[kv.KeyRange] = field(default_factory=list)


def _union(ranges: list[kv.KeyRange]) -> list[kv.KeyRange]:
    """Scanned ranges as disjoint ones, in key order (an empty end is +inf): two scans of a
    transaction may overlap, and the phantom check of their union is the same check."""
    out: list[kv.KeyRange] = []
    for key_range in sorted(ranges, key=lambda r: r.start):
        last = out[-1] if out else None
        if last is None or (last.end and last.end < key_range.start):
            out.append(key_range)
        elif last.end and (not key_range.end or key_range.end > last.end):
            out[-1] = kv.KeyRange(start=last.start, end=key_range.end)
    return out


def _abort_request(ref: TxnRef, participants: list[int]) -> kv.Request:
    """The client's abort of a 2PC commit: a recovery Decide (txn.coordinator rule D3), never
    recorded over a set of yes votes that may be complete. Its `asker_ts`, the start time,
    is below every timestamp of the transaction (rule D4)."""
    return kv.Request(
        decide=kv.DecideRequest(
            txn_id=ref.txn_id,
            participants=participants,
            commit=False,
            recover=True,
            asker_ts=(ref.started_ns // 1000) << LOGICAL_BITS,
        )
    )


class _PrepareUnanswered(Unavailable):
    """A prepare got no answer; raised as a plain Unavailable saying the transaction was
    aborted once that abort is recorded (`_prepare_failure`), and not before (next to
    "could not record the abort" it would contradict the outcome), unless `never_sent`:
    no copy of it was ever handed to the routing client (the commit's deadline left no
    time, or no node could be reached), so its group never votes and the transaction
    never commits (rule 2), abort recorded or not. A Prepare that was sent and refused
    does not count: a copy a network delivered twice could still be taken later."""

    def __init__(self, message: str, *, never_sent: bool) -> None:
        super().__init__(message)
        self.never_sent = never_sent


def _prepare_failure(ref: TxnRef, failures: list[tuple[int, BaseException]]) -> BaseException:
    """The error to raise for failed prepares: a Conflict first; all are "not committed"."""
    for _, exc in failures:
        if isinstance(exc, Conflict):
            return exc
    _, exc = failures[0]
    if isinstance(exc, _PrepareUnanswered):
        aborted = Unavailable(f"{exc}; the transaction was aborted")
        aborted.__cause__ = exc.__cause__
        return aborted
    if isinstance(exc, PaxosKVError) and exc.maybe_committed:
        exc.maybe_committed = False  # rule 2: the abort is recorded
    return exc
