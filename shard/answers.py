"""The client answers a group's state gives: served reads, snapshot safe time, applied commands.

Rule numbers are those of shard.node.
"""

from __future__ import annotations

from router import kv_pb2 as kv
from shard import codec
from shard.admission_checks import _conflict_error, _error
from shard.errors import ShardError, Status, VersionCompacted, WrongShard
from shard.limits import MAX_CHANGES_RECORDS, MAX_SCAN_ITEMS, MAX_SCAN_RESPONSE_BYTES
from shard.lock_wait import DEFAULT_SCAN_ITEMS, scan_page, within
from shard.node_records import GroupHost, _Pending
from shard.state_machine import ShardStateMachine
from txn.records import (
    Conflict,
    DecisionResult,
    IntentInfo,
    OnePhaseResult,
    PrepareResult,
    PreventResult,
)


def snapshot_safe(host: GroupHost, pending: _Pending) -> bool:
    """Rule 3: whether a parked snapshot read's timestamp is safe time for its keys."""
    at = pending.request.at_version
    # A read of changes needs the versions above its `changes_after` (found by review: one
    # below the horizon waited out its deadline on intents, then was UNAVAILABLE).
    oldest = pending.request.changes_after if _reads_changes(pending) else at
    if oldest < host.shard.gc_horizon:
        # Refused whatever it waits for: serve_read answers with the error now.
        return True
    for waiting in host.proposals.values():
        if 0 < waiting.ts <= at:
            return False
    if any(0 < ts <= at for ts in host.expired.values()):
        return False
    shard = host.shard
    op = pending.request
    if pending.kind == "get":
        intents = [(op.key, i) for i in shard.intents_on(op.key)]
    else:
        end = op.end if op.HasField("end") else shard.key_range[1]
        intents = shard.intents_in_range(op.start, end)
    held = [key for key, i in intents if i.is_write and i.prepare_ts <= at]
    if held and host.proven:
        held = [key for key, i in intents if _undecided_at(host, pending, i, at)]
    if not held or pending.kind == "get" or _reads_changes(pending):
        # A read of changes shows every version of the whole range up to `at`.
        return not held
    # Only the part of the range the answer covers (rule L1 of shard.lock_wait): an
    # intent past a page's last item changes nothing the page shows.
    try:
        covered = scan_page(shard, op, end, at)[2]
    except ShardError:
        # Any read the shard refuses is answered now: serve_read turns the refusal into
        # its error. Raised here, it stopped the node (found by review, for a GC horizon
        # that passed `at` while the read waited, now refused above).
        return True
    return not any(within(key, covered) for key in held)


def _reads_changes(pending: _Pending) -> bool:
    return pending.kind == "scan" and pending.request.HasField("changes_after")


def _undecided_at(host: GroupHost, pending: _Pending, intent: IntentInfo, at: int) -> bool:
    """Rules 3 and 14: whether a snapshot read at `at` waits for write `intent`, prepared at
    or below `at`. Not when its commit is proven here and lands above `at` (the read never
    shows it), nor, for a get, when it lands at or below `at` with a value (the read shows
    that value: `ProvenCommits.read_through`)."""
    if not intent.is_write or intent.prepare_ts > at:
        return False
    commit_ts = host.proven.commit_ts(host.shard, intent.txn_id)
    if commit_ts is None:
        return True
    return commit_ts <= at and (pending.kind != "get" or intent.value is None)


def _found(pending: _Pending, value: bytes, version: int, expires_at: int) -> kv.Response:
    """A get's answer with the value it found and that value's expiry deadline (0: none)."""
    found = kv.GetResponse(found=True, value=value, version=version, expires_at=expires_at)
    return kv.Response(id=pending.request_id, get=found)


def serve_read(host: GroupHost, pending: _Pending, map_version: int) -> kv.Response | kv.Error:
    """The answer to a read, from the group's state now (`map_version` for WRONG_SHARD)."""
    op = pending.request
    shard = host.shard
    if pending.kind == "txn_status":
        response = kv.Response(id=pending.request_id)
        _fill_txn_status(shard, op.txn_id, response.txn_status)
        return response
    if pending.kind == "txn_statuses":
        response = kv.Response(id=pending.request_id)
        for txn_id in op.txn_ids:
            _fill_txn_status(shard, txn_id, response.txn_statuses.statuses.add())
        return response
    at = op.at_version or None
    try:
        if pending.kind == "get":
            if not op.snapshot:
                intents = shard.intents_on(op.key)
                blocking = [i for i in intents if i.is_write]
                # Rule 14, linearizable reads only: a stale_ok one may ask for an older version.
                through = None
                if blocking and not op.stale_ok:
                    through = host.proven.read_through(shard, intents)
                if through is not None:
                    # Its commit is proven; the apply will write this.
                    return _found(pending, *through)
                if blocking:
                    return _conflict_error(
                        Conflict(
                            key=op.key,
                            other_txn=blocking[0].txn_id,
                            phase="read",
                            reason="a prepared transaction is writing this key; retry",
                        )
                    )
            # First, so that a read below the GC horizon is refused as every read there.
            found = shard.get(op.key, at)
            if op.snapshot and at is not None and shard.has_intents:
                intents = shard.intents_on(op.key)
                through = host.proven.read_through(shard, intents, at)
                if through is not None:
                    # Rule 14: a proven commit at or below the snapshot (_undecided_at).
                    return _found(pending, *through)
                if any(_undecided_at(host, pending, i, at) for i in intents):
                    # Judged safe on a proof this leader no longer holds (it stopped leading
                    # while the read waited in the backlog): the store alone would miss the
                    # commit (found by review).
                    return _error(
                        kv.UNAVAILABLE,
                        "the snapshot read lost its safe time (leadership moved); retry",
                    )
            if found is None:
                latest = shard.latest_record(op.key) if at is None else None
                version = latest[0] if latest is not None else 0
                if at is not None:  # a snapshot shows a deletion without its version
                    pending.absent_since = shard.deleted_at(op.key, at)
                return kv.Response(
                    id=pending.request_id, get=kv.GetResponse(found=False, version=version)
                )
            value, version = found
            return _found(pending, value, version, shard.expiry_of(op.key, version))
        end = op.end if op.HasField("end") else shard.key_range[1]
        if op.HasField("changes_after"):
            return _changes(pending, shard, end)
        asked = op.limit or DEFAULT_SCAN_ITEMS
        items, limit, covered, pending.absent_since = scan_page(shard, op, end, at)
        if not op.snapshot:
            # Only the part of the range the answer covers (rule L1 of shard.lock_wait).
            for key, intent in shard.intents_in_range(*covered):
                if intent.is_write:
                    return _conflict_error(
                        Conflict(
                            key=key,
                            other_txn=intent.txn_id,
                            phase="read",
                            reason="a prepared transaction is writing a key in the range",
                        )
                    )
        size = sum(len(k) + len(v) for k, v, _ in items)
        cut = size >= MAX_SCAN_RESPONSE_BYTES or len(items) == limit < asked
        return kv.Response(
            id=pending.request_id,
            scan=kv.ScanResponse(
                items=[kv.KeyValue(key=k, value=v, version=ver) for k, v, ver in items],
                more=len(items) < asked and cut,
                reverse=op.reverse,
            ),
        )
    except WrongShard as exc:
        return _error(kv.WRONG_SHARD, str(exc), map_version=map_version)
    except VersionCompacted as exc:
        return _error(kv.SNAPSHOT_TOO_OLD, str(exc))
    except ShardError as exc:
        return _error(kv.INVALID_ARGUMENT, str(exc))


def _changes(pending: _Pending, shard: ShardStateMachine, end: bytes | None) -> kv.Response:
    """A read of changes (`shard.changes`): its deletions are items, so rule 2 waits for
    them through the items' versions."""
    op = pending.request
    page = shard.changes(
        op.start,
        end,
        op.changes_after,
        op.at_version,
        min(op.limit or DEFAULT_SCAN_ITEMS, MAX_SCAN_ITEMS),
        MAX_SCAN_RESPONSE_BYTES,
        MAX_CHANGES_RECORDS,
        op.prev_values,
    )
    scan = kv.ScanResponse(
        items=[
            kv.KeyValue(
                key=c.key,
                value=c.value or b"",
                version=c.version,
                deleted=c.value is None,
                prev_value=c.prev_value,
                prev_version=c.prev_version,
            )
            for c in page.changes
        ],
        changes=True,
        through=page.through,
        prev_values=op.prev_values,
    )
    if page.covered_end is not None:
        scan.covered_end = page.covered_end
    scan.more = page.covered_end is not None or page.through < op.at_version
    return kv.Response(id=pending.request_id, scan=scan)


def _fill_txn_status(shard: ShardStateMachine, txn_id: bytes, status: kv.TxnStatusResponse) -> None:
    """`status` := what this group's records say of `txn_id`."""
    decision = shard.decision(txn_id)
    if decision is not None:
        status.state = (
            kv.TxnStatusResponse.COMMITTED if decision.committed else kv.TxnStatusResponse.ABORTED
        )
        status.commit_ts = decision.commit_ts
    elif (prepared := shard.prepared(txn_id)) is not None:
        status.state = kv.TxnStatusResponse.IN_PROGRESS
        status.prepare_ts = prepared.prepare_ts
        status.participants.extend(prepared.participants)
    else:
        status.state = kv.TxnStatusResponse.UNKNOWN


def _shown_ts(status: kv.TxnStatusResponse) -> int:
    return max(int(status.commit_ts), int(status.prepare_ts))


def _newest_version_read(pending: _Pending, response: kv.Response) -> int:
    """Rule 2: the newest version a get or scan answer shows (0: nothing to wait for); for a
    txn_status answer, the timestamp it shows: a client reports a commit at it (a
    COMMITTED commit_ts, or max(prepare_ts) over IN_PROGRESS answers), so it waits as a
    vote does (rule 7); for a txn_statuses answer, the newest of those it shows."""
    if pending.kind == "txn_status":
        return _shown_ts(response.txn_status)
    if pending.kind == "txn_statuses":
        return max((_shown_ts(s) for s in response.txn_statuses.statuses), default=0)
    if pending.kind not in ("get", "scan") or pending.request.stale_ok:
        return 0
    if pending.kind == "get":
        newest = int(response.get.version)
    else:
        newest = max((item.version for item in response.scan.items), default=0)
    return max(newest, pending.absent_since)


def _result_response(pending: _Pending, result: codec.CommandResult) -> tuple[kv.Response, int]:
    """The client response for an applied command, and the timestamp it makes visible."""
    response = kv.Response(id=pending.request_id)
    body = getattr(response, pending.kind)
    body.SetInParent()  # an OK answer with all-default fields must still say what it answers
    if result.status is Status.CONFLICT and result.conflict is not None:
        body.error.CopyFrom(_conflict_error(result.conflict))
        return response, 0
    if result.status not in (Status.OK, Status.CAS_FAILED):
        code = kv.LIMIT_EXCEEDED if result.status is Status.LIMIT_EXCEEDED else kv.INVALID_ARGUMENT
        body.error.CopyFrom(_error(code, result.message))
        return response, 0
    kind = pending.kind
    # A transaction kind proposed its own command (`NodeCore._command_for`), whose applied
    # result has one type (`ShardStateMachine._apply_txn`): the asserts below narrow to it.
    txn = result.txn
    if kind in ("put", "delete"):
        body.version = result.version
        if result.expires_at:
            body.expires_at = result.expires_at
        return response, max(result.version, result.absent_since)
    if kind == "cas":
        body.succeeded = result.ok
        body.version = result.version
        body.expires_at = result.expires_at
        if not result.ok:
            body.found = result.current_value is not None
            body.current_value = result.current_value or b""
            body.current_version = result.current_version
        # A failed compare-and-set shows the current version, or the deletion that made the
        # key absent: rule 2 holds for it too (found by review, for deletions).
        return response, max(result.version, result.current_version, result.absent_since)
    if kind == "prepare":
        assert isinstance(txn, PrepareResult)
        if txn.conflict is not None:
            body.error.CopyFrom(_conflict_error(txn.conflict))
            return response, 0
        body.prepare_ts = txn.prepare_ts
        return response, txn.prepare_ts  # rule 7
    if kind == "decide":
        assert isinstance(txn, DecisionResult)
        body.committed = txn.committed
        body.commit_ts = txn.commit_ts
        body.pending = txn.pending
        body.checked = txn.checked
        return response, txn.commit_ts if txn.committed else 0
    if kind == "prevent":
        assert isinstance(txn, PreventResult)
        body.prepared = txn.prepared
        body.prepare_ts = txn.prepare_ts
        body.unknown = txn.unknown
        body.checked = txn.checked
        return response, 0
    if kind == "commit_one_phase":
        assert isinstance(txn, OnePhaseResult)
        if txn.conflict is not None:
            body.error.CopyFrom(_conflict_error(txn.conflict))
            return response, 0
        body.commit_ts = txn.commit_ts
        return response, txn.commit_ts
    return response, 0
