"""The transaction duties of a node's leaders: deliver decisions, recover prepares, purge.

Rule numbers are those of shard.node (rule 6 above all).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from typing import Any

from paxos import Role
from router import kv_pb2 as kv
from shard.lock_wait import LOCK_WAIT_MAX_S
from shard.node_records import GroupHost, _Prevention, _Resolving
from txn.hlc import LOGICAL_BITS
from txn.proofs import decision_mac
from txn.records import Decide, DecisionInfo, Finish, PurgeDecisions, Resolve
from txn.store import MAX_PURGE_PER_COMMAND

Outbound = tuple[int, kv.Request, Callable[[kv.Response | None], None]]

# Questions of a purge check (rule G2) outstanding at once, each a txn_statuses request about
# up to PURGE_CHECK_BATCH transactions of one participant group. Measured before the
# questions were batched (bench/README.md, session 17: txn2 at 16 clients across purges of
# a minute's records, one txn_status per question): with 64 in flight the clients' commits
# fell to 2-100/s for 10 s each pass, p99 201 ms; with 8, seconds under 120/s 5 instead of
# 19, p99 172 ms (without any check, 136 ms).
PURGE_CHECKS_IN_FLIGHT = 8
# Transactions one question of a purge check asks a group about (at most MAX_STATUS_IDS).
PURGE_CHECK_BATCH = 256
# A purge of which nothing was heard for this many request timeouts (no answer to its check,
# no result of its command) is given up (its answers lost with a leadership change, say) and
# the next purge interval starts anew. Not the pass's whole length: a check asks
# PURGE_CHECKS_IN_FLIGHT questions at a time, and a participant slow to answer takes up to a
# request timeout for each round of them.
PURGE_PASS_TIMEOUTS = 4


class TxnDuties:
    """Rule 6 for the groups a node leads; `NodeCore` runs it and hands it what it uses."""

    def __init__(
        self,
        *,
        cluster_id: str,
        proof_key: bytes,
        request_timeout_s: float,
        resolve_after_s: float,
        decision_retention_s: float,
        now: Callable[[], float],
        retention_now_us: Callable[[], int],
        propose: Callable[[GroupHost, Any, Callable[[Any], None]], None],
        send: Callable[[Outbound], None],
    ) -> None:
        self._cluster_id = cluster_id
        self._proof_key = proof_key
        self._timeout_s = request_timeout_s
        self._resolve_after_s = resolve_after_s
        self._decision_retention_s = decision_retention_s
        #: The node's time (tick's clock), read when a duty runs or an answer arrives.
        self._now = now
        #: The time retention windows run to, in µs (`NodeCore._retention_now_us`).
        self._retention_now_us = retention_now_us
        #: Propose a transaction record the node itself needs (`NodeCore._propose_internal`).
        self._propose = propose
        #: Queue a request for another group (`NodeCore.outbound`).
        self._send = send
        #: The purge under way of each group (checking, or its command in flight).
        self._purging: dict[int, _PurgeCheck] = {}

    def drive_decisions(self, leaders: list[GroupHost]) -> None:
        """Rule 6, coordinator side: deliver recorded decisions, then log Finish.

        A fresh decision is delivered as soon as it is applied (`NodeCore._finish`); this
        periodic sweep finds the rest (a new leader's inheritance, failed deliveries).
        """
        for host in leaders:
            unfinished = {d.txn_id: d for d in host.shard.unfinished_decisions()}
            for txn_id in [t for t in host.resolving if t not in unfinished]:
                del host.resolving[txn_id]
            for decision in unfinished.values():
                self.deliver(host, decision)

    def deliver(self, host: GroupHost, decision: DecisionInfo) -> None:
        """Send `decision` to the participants that have not confirmed it; Finish once all
        have. The coordinator's own part was resolved by the Decide itself (rule D2)."""
        txn_id = decision.txn_id
        state = host.resolving.setdefault(txn_id, _Resolving())
        state.confirmed.add(host.group_id)
        if state.finishing:
            return
        if state.confirmed >= set(decision.participants):
            state.finishing = True
            self._propose(host, Finish(txn_id=txn_id), lambda _r: _unfinish(state))
            return
        for group_id in decision.participants:
            if group_id in state.confirmed or group_id in state.inflight:
                continue
            state.inflight.add(group_id)
            request = self._resolve_request(group_id, decision)
            self._send((group_id, request, _on_resolved(state, group_id)))

    def _resolve_request(self, group_id: int, decision: DecisionInfo) -> kv.Request:
        """The Resolve that tells `group_id` the recorded `decision`, vouched for by this
        node (node rule 12)."""
        resolve = kv.ResolveRequest(
            header=self._header(group_id),
            txn_id=decision.txn_id,
            commit=decision.committed,
            commit_ts=decision.commit_ts,
            # Node rule 12: this node vouches for the decision its group recorded.
            participants=decision.participants,
            decision_mac=decision_mac(
                self._proof_key,
                decision.txn_id,
                decision.committed,
                decision.commit_ts,
                decision.participants,
            ),
        )
        return kv.Request(resolve=resolve)

    def _header(self, group_id: int) -> kv.Header:
        """The header of a request this node sends another group (transaction duties)."""
        return kv.Header(cluster_id=self._cluster_id, group_id=group_id)

    def recover_prepared(self, leaders: list[GroupHost]) -> None:
        """Rule 6, participant side: ask the coordinator about transactions stuck prepared."""
        for host in leaders:
            prepared = {p.txn_id: p for p in host.shard.prepared_txns()}
            for txn_id in [t for t in host.prepared_seen if t not in prepared]:
                del host.prepared_seen[txn_id]
            self._forget_old_notes(host, prepared)
            for txn_id, info in prepared.items():
                seen = host.prepared_seen.setdefault(txn_id, self._now())
                if self._now() - seen < self._resolve_after_s or txn_id in host.querying:
                    continue
                host.querying.add(txn_id)
                coordinator = info.coordinator_group
                decide = kv.DecideRequest(
                    header=self._header(coordinator),
                    txn_id=txn_id,
                    participants=info.participants,
                    commit=False,
                    recover=True,
                    asker_ts=info.prepare_ts,
                )
                request = kv.Request(decide=decide)
                self._send((coordinator, request, self._on_recovery_answer(host, txn_id)))

    def start_prevention(self, host: GroupHost, txn_id: bytes) -> None:
        """Rule 6: ask every other participant to Prevent `txn_id` (prepared here)."""
        info = host.shard.prepared(txn_id)
        if info is None or txn_id in host.preventing or host.replica.role is not Role.LEADER:
            return
        state = _Prevention(info.participants, {host.group_id: info.prepare_ts})
        host.preventing[txn_id] = state
        for group_id in info.participants:
            if group_id == host.group_id:
                continue
            prevent = kv.PreventRequest(
                header=self._header(group_id),
                txn_id=txn_id,
                asker_ts=info.prepare_ts,
                participants=info.participants,
            )
            request = kv.Request(prevent=prevent)
            self._send((group_id, request, self._on_prevented(host, txn_id, group_id, state)))
        self._decide_if_prevented(host, txn_id, state)

    def _on_prevented(
        self, host: GroupHost, txn_id: bytes, group_id: int, state: _Prevention
    ) -> Callable[[kv.Response | None], None]:
        def done(response: kv.Response | None) -> None:
            if host.preventing.get(txn_id) is not state or state.deciding:
                return  # an answer to a round given up since (a later one has its own)
            answer = None if response is None else response.prevent
            if (
                answer is None
                or answer.error.code != kv.OK
                or (answer.unknown and not answer.checked)
            ):
                # (`unknown`: that group may have purged the txn's record, rule V2; the txn
                # stays in doubt rather than risk aborting a commit.) Another participant's
                # answer may still decide: given up only once every one answered, and the
                # next recovery Decide about the txn starts it again. (Given up at once, the
                # round's outcome hung on which group answered first; found by review.)
                state.inconclusive.add(group_id)
                self._decide_if_prevented(host, txn_id, state)
                return
            if not answer.prepared:  # prevented, or unknown but `checked` (rule V2)
                self._decide_prevented(host, txn_id, state, commit=False)
                return
            state.prepared[group_id] = answer.prepare_ts
            self._decide_if_prevented(host, txn_id, state)

        return done

    def _decide_if_prevented(self, host: GroupHost, txn_id: bytes, state: _Prevention) -> None:
        """Commit once every participant answered prepared; give the round up once every one
        answered and some inconclusively (whichever answer came last: given up only when
        the inconclusive one did, a round whose last answer was `prepared` stayed in
        `host.preventing` for good, and no later recovery Decide started another)."""
        answered = set(state.prepared)
        if answered >= set(state.participants):
            self._decide_prevented(host, txn_id, state, commit=True)
        elif answered | state.inconclusive >= set(state.participants):
            del host.preventing[txn_id]  # both callers hold the round listed

    def _decide_prevented(
        self, host: GroupHost, txn_id: bytes, state: _Prevention, *, commit: bool
    ) -> None:
        """Log the prevent round's outcome; the decision is then delivered as any other."""
        state.deciding = True
        record = Decide(
            txn_id=txn_id,
            participants=state.participants,
            commit=commit,
            commit_ts=max(state.prepared.values()) if commit else 0,
            if_prepared=not commit,  # rule D5: the round's premise must still hold
        )

        def decided(_result: Any) -> None:
            if host.preventing.get(txn_id) is state:
                del host.preventing[txn_id]
            decision = host.shard.decision(txn_id)
            if decision is not None and not decision.finished and host.replica.role is Role.LEADER:
                self.deliver(host, decision)

        self._propose(host, record, decided)

    def _forget_old_notes(self, host: GroupHost, prepared: Collection[bytes]) -> None:
        """Drop the leader's notes (ages, early aborts, ends) no request can need any more:
        an age is kept while its transaction may still prepare here or holds intents."""
        stale_before = self._now() - (self._timeout_s + LOCK_WAIT_MAX_S)
        for txn_id in [t for t, (_, since) in host.ages.items() if since < stale_before]:
            if txn_id not in prepared:
                del host.ages[txn_id]
        for txn_id in [t for t, since in host.aborted.items() if since < stale_before]:
            del host.aborted[txn_id]
        # One per transaction, not rare as aborts: pruned from the oldest, never scanned.
        finished = host.finished
        while finished and next(iter(finished.values())) < stale_before:
            finished.popitem(last=False)

    def _on_recovery_answer(
        self, host: GroupHost, txn_id: bytes
    ) -> Callable[[kv.Response | None], None]:
        def done(response: kv.Response | None) -> None:
            answer = None if response is None else response.decide
            if (
                answer is None
                or answer.error.code != kv.OK
                or (answer.pending and not answer.checked)
            ):
                host.querying.discard(txn_id)
                if answer is not None and answer.pending:
                    # The coordinator's prevent round decides; ask again only if it fails
                    # (pending for a purge there, rule D4, nothing decides: ask again later).
                    host.prepared_seen[txn_id] = self._now()
                return
            if answer.pending:  # `checked`: aborted here if still prepared (rules D4, R6)
                record = Resolve(txn_id=txn_id, commit=False, if_prepared=True)
            else:
                record = Resolve(txn_id=txn_id, commit=answer.committed, commit_ts=answer.commit_ts)
            self._propose(host, record, lambda _r: host.querying.discard(txn_id))

        return done

    def purge_decisions(self, leaders: list[GroupHost]) -> None:
        retention_us = int(self._decision_retention_s * 1e6)
        horizon_us = max(0, self._retention_now_us() - retention_us)
        for host in leaders:
            check = self._purging.get(host.group_id)
            if check is None or self._now() - check.heard > PURGE_PASS_TIMEOUTS * self._timeout_s:
                self._purge_step(host, horizon_us << LOGICAL_BITS)

    def _purge_step(self, host: GroupHost, before_ts: int) -> None:
        """Purge below `before_ts`, one bounded command after the other while the last one
        says `more` and deleted something (rule G1's per-command bound: one command per
        purge interval let a group recording more decisions than that bound per interval
        fall behind for good; found by review). Before each command, ask the other
        participants of every commit it would meet whether they still hold it prepared
        (rule G2): one txn_statuses request per participant group and PURGE_CHECK_BATCH
        commits, PURGE_CHECKS_IN_FLIGHT requests at a time."""
        candidates = host.shard.purge_candidates(before_ts, MAX_PURGE_PER_COMMAND)
        by_group: dict[int, list[DecisionInfo]] = {}
        for info in candidates:
            for group_id in info.participants:
                if group_id != host.group_id:
                    by_group.setdefault(group_id, []).append(info)
        check = _PurgeCheck(
            candidates,
            deque(
                (group_id, infos[i : i + PURGE_CHECK_BATCH])
                for group_id, infos in sorted(by_group.items())
                for i in range(0, len(infos), PURGE_CHECK_BATCH)
            ),
            heard=self._now(),
        )
        # The pass under way from now on: one given up before goes no further.
        self._purging[host.group_id] = check

        def purged(result: Any) -> None:
            if self._purging.get(host.group_id) is not check:
                return  # given up meanwhile, and another pass may be under way
            del self._purging[host.group_id]
            outcome = getattr(result, "txn", None)
            # A command that deleted nothing met only commits it could not verify (rule
            # G2), which it moved to the back: the next command would meet them again, so
            # the pass ends here and the next purge interval goes on (found by review:
            # with more of them than a command handles, the pass never ended).
            more = getattr(outcome, "more", False) and getattr(outcome, "purged", 0) > 0
            if more and host.replica.role is Role.LEADER:
                self._purge_step(host, before_ts)

        def ask_or_propose() -> None:
            if self._purging.get(host.group_id) is not check:
                return  # given up: a later pass asks again
            check.heard = self._now()
            while check.questions and check.in_flight < PURGE_CHECKS_IN_FLIGHT:
                group_id, infos = check.questions.popleft()
                if group_id in check.silent:
                    check.unverified.update(info.txn_id for info in infos)  # not asked again
                    continue
                check.in_flight += 1
                request = kv.Request(
                    txn_statuses=kv.TxnStatusesRequest(
                        header=self._header(group_id), txn_ids=[info.txn_id for info in infos]
                    )
                )
                answered = self._on_purge_check(check, infos, group_id, ask_or_propose)
                self._send((group_id, request, answered))
            if check.in_flight == 0:  # every question answered
                verified = tuple(
                    info.txn_id for info in check.candidates if info.txn_id not in check.unverified
                )
                self._propose(host, PurgeDecisions(before_ts=before_ts, verified=verified), purged)

        ask_or_propose()

    def _on_purge_check(
        self,
        check: _PurgeCheck,
        infos: list[DecisionInfo],
        group_id: int,
        then: Callable[[], None],
    ) -> Callable[[kv.Response | None], None]:
        """Rule G2: a participant that still holds a commit prepared (or does not answer)
        keeps the record; the one that holds it gets the Resolve it missed. `then` asks the
        next question or proposes the purge."""

        def done(response: kv.Response | None) -> None:
            statuses = _txn_statuses_answer(response, len(infos))
            if statuses is None:
                # A group down for hours would otherwise cost a timeout per question each pass.
                check.silent.add(group_id)
                check.unverified.update(info.txn_id for info in infos)
            else:
                for info, status in zip(infos, statuses, strict=True):
                    if status.state == kv.TxnStatusResponse.IN_PROGRESS:
                        check.unverified.add(info.txn_id)
                        resolve = self._resolve_request(group_id, info)
                        self._send((group_id, resolve, lambda _r: None))
            check.in_flight -= 1
            then()

        return done


@dataclass(slots=True)
class _PurgeCheck:
    """One purge command's check of its commits with their other participants (rule G2)."""

    candidates: list[DecisionInfo]
    #: (participant group, the commits to ask it about) still to ask.
    questions: deque[tuple[int, list[DecisionInfo]]]
    #: When the pass last heard anything (started, an answer came, its command proposed).
    heard: float = 0.0
    in_flight: int = 0
    unverified: set[bytes] = field(default_factory=set)
    #: Groups that left a question unanswered: not asked again in this check.
    silent: set[int] = field(default_factory=set)


def _txn_statuses_answer(
    response: kv.Response | None, asked: int
) -> Sequence[kv.TxnStatusResponse] | None:
    """The group's answers to a txn_statuses request about `asked` transactions, or None if
    it gave none (or not one per transaction)."""
    if response is None or response.WhichOneof("result") != "txn_statuses":
        return None
    body = response.txn_statuses
    if body.error.code != kv.OK or len(body.statuses) != asked:
        return None
    statuses: Sequence[kv.TxnStatusResponse] = body.statuses
    return statuses


def _unfinish(state: _Resolving) -> None:
    state.finishing = False


def _on_resolved(state: _Resolving, group_id: int) -> Callable[[kv.Response | None], None]:
    def done(response: kv.Response | None) -> None:
        state.inflight.discard(group_id)
        if response is not None and response.resolve.error.code == kv.OK:
            state.confirmed.add(group_id)

    return done
