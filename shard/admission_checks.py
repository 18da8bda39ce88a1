"""Rule 4's checks of a request at admission, and the typed errors a node refuses with."""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Any

from router import kv_pb2 as kv
from router.shard_map import META_GROUP_ID, ShardMap
from txn.codec import write_item_refusal
from txn.participant import PHASE_LIMIT
from txn.records import MAX_TXN_ID_BYTES, Conflict, quote_key
from txn.txn_ids import start_ts_of


class _Refusal(Exception):
    def __init__(self, error: kv.Error) -> None:
        super().__init__(error.message)
        self.error = error


def _error(code: kv.ErrorCode, message: str, **fields: Any) -> kv.Error:
    return kv.Error(code=code, message=message, **fields)


def _already_aborted(key: bytes, txn_id: bytes, phase: str) -> _Refusal:
    """The refusal of a request of a transaction whose abort reached this leader first."""
    reason = "this transaction was already aborted"
    return _Refusal(
        _conflict_error(Conflict(key=key, other_txn=txn_id, phase=phase, reason=reason))
    )


def _already_finished(key: bytes, txn_id: bytes) -> _Refusal:
    """The refusal of a read for update of a transaction that already committed or is
    committing here (its Prepare or one-phase commit ended, or its Resolve(commit) came)."""
    reason = "this transaction already committed or is committing: it reads nothing more"
    return _Refusal(
        _conflict_error(Conflict(key=key, other_txn=txn_id, phase="read", reason=reason))
    )


def _conflict_error(conflict: Conflict) -> kv.Error:
    if conflict.phase == PHASE_LIMIT:  # txn.participant rule A1: a limit, not retryable
        return kv.Error(code=kv.LIMIT_EXCEEDED, message=conflict.reason)
    return kv.Error(
        code=kv.CONFLICT,
        message=(
            f"conflict on key {conflict.key!r} in phase {conflict.phase}"
            + (f" with transaction {conflict.other_txn.hex()}" if conflict.other_txn else "")
            + f": {conflict.reason}"
        ),
        conflict=kv.Conflict(
            key=conflict.key,
            other_txn=conflict.other_txn,
            phase=conflict.phase,
            reason=conflict.reason,
        ),
    )


def _check_disjoint(read_ranges: Sequence[kv.KeyRange]) -> None:
    """Scanned ranges must not overlap: the phantom check reads each range's keys, so one
    range listed many times over (found by review: 2,000 ranges of one shard in a 42 KB
    Prepare) held every replica's apply for 15-20 s. Clients send their union."""
    ordered = sorted(read_ranges, key=lambda r: r.start)
    for before, after in itertools.pairwise(ordered):
        if not before.end or before.end > after.start:
            raise _Refusal(
                _error(
                    kv.INVALID_ARGUMENT,
                    f"scanned ranges overlap ([{quote_key(before.start)}, "
                    f"{quote_key(before.end or b'+inf')}) and [{quote_key(after.start)}, "
                    "...)); send their union",
                )
            )


def _check_scan_range(op: kv.ScanRequest) -> None:
    """A scan's end, when set, is above its start: [start, end) with end <= start holds no
    key, which a Prepare's scanned range is refused for too (`txn.records.KeyRange`), and
    the routing clients never send (found by review: answered OK with no items)."""
    if op.HasField("end") and op.end <= op.start:
        raise _Refusal(
            _error(
                kv.INVALID_ARGUMENT,
                f"empty key range [{quote_key(op.start)}, {quote_key(op.end)}): a scan's "
                "end, when set, must be above its start (leave it unset for no end)",
            )
        )


def _check_changes(op: kv.ScanRequest) -> None:
    """A read of changes is a snapshot read up to at_version, in key order, at the leader:
    without at_version it has no window, a reverse one has no order the client could page
    on, and a stale_ok one could miss changes not applied at that replica yet. A wait for a
    change (node rule 16) reads no window: it has changes_after alone, and no previous
    values (nor has a read of values: it returns the values)."""
    if op.prev_values and (op.await_change or not op.HasField("changes_after")):
        raise _Refusal(
            _error(
                kv.INVALID_ARGUMENT,
                "prev_values is for a read of changes (changes_after and at_version): a "
                "scan returns values, and a wait for a change returns none",
            )
        )
    if op.await_change:
        if not op.HasField("changes_after") or op.at_version or op.reverse or op.snapshot:
            raise _Refusal(
                _error(
                    kv.INVALID_ARGUMENT,
                    "a wait for a change needs changes_after, and takes neither at_version, "
                    "reverse nor snapshot",
                )
            )
        return
    if not op.HasField("changes_after"):
        return
    if op.at_version <= 0 or op.stale_ok or op.reverse:
        raise _Refusal(
            _error(
                kv.INVALID_ARGUMENT,
                "a read of changes needs at_version (the window's end), and takes neither "
                "reverse nor stale_ok",
            )
        )
    if op.changes_after > op.at_version:
        raise _Refusal(
            _error(
                kv.INVALID_ARGUMENT,
                f"changes_after {op.changes_after} is above at_version {op.at_version}: the "
                "window (changes_after, at_version] is empty",
            )
        )


#: What a transaction's write may be, for the refusal of one that is none of them.
WRITE_FORMS = (
    "a write puts a value, deletes the key (delete: true, no value), or applies atomic "
    'operations (ops, with delete: true and value "atomic")'
)


def _check_writes(writes: Sequence[kv.WriteItem]) -> None:
    """A transaction's write puts a value, deletes, or applies known atomic operations
    (found by review: delete and a value were taken as a delete, the value dropped without
    a word; a CasRequest with both is refused likewise)."""
    for write in writes:
        refusal = write_item_refusal(write)
        if refusal is not None:
            raise _Refusal(_error(kv.INVALID_ARGUMENT, f"{refusal}: {WRITE_FORMS}"))


def _check_participants(shard_map: ShardMap, participants: Sequence[int], group_id: int) -> None:
    """Every participant is a data group of the map, and `group_id` is one of them: a transaction naming groups that do not exist could never be decided or resolved,
    and its record would be delivered and recovered forever."""
    for participant in participants:
        if participant == META_GROUP_ID or not shard_map.has_group(participant):
            raise _Refusal(
                _error(
                    kv.INVALID_ARGUMENT,
                    f"participant {participant} is not a data group of shard map "
                    f"v{shard_map.version}",
                    map_version=shard_map.version,
                )
            )
    if group_id not in participants:
        raise _Refusal(
            _error(kv.INVALID_ARGUMENT, f"group {group_id} is not among the participants")
        )


def _check_txn_id(txn_id: bytes) -> None:
    if not txn_id or len(txn_id) > MAX_TXN_ID_BYTES:
        raise _Refusal(
            _error(
                kv.INVALID_ARGUMENT,
                f"txn_id must be 1 to {MAX_TXN_ID_BYTES} bytes, got {len(txn_id)}",
            )
        )


def _check_new_txn_id(txn_id: bytes) -> None:
    """Node rule 13: a request that may leave a record or a lock of a transaction names it
    by an id that carries its start, so every later question about it is judged by that
    start and never by what the asker claims."""
    _check_txn_id(txn_id)
    if not start_ts_of(txn_id):
        raise _Refusal(
            _error(
                kv.INVALID_ARGUMENT,
                f"txn_id {quote_key(txn_id, 32)} carries no start timestamp: make transaction ids "
                "with txn.txn_ids.new_txn_id (the txn client does)",
            )
        )


def _wounded_error(wound: tuple[bytes, bytes], phase: str) -> kv.Error:
    key, by_txn = wound
    reason = (
        "wounded: an older transaction took the update lock of a key this transaction read "
        "for update; it retries with its age kept, so it wins in the end"
    )
    return _conflict_error(Conflict(key=key, other_txn=by_txn, phase=phase, reason=reason))


def _check_update_lock(op: kv.GetRequest) -> None:
    _check_new_txn_id(op.lock_txn_id)
    if op.lock_priority == 0:
        raise _Refusal(_error(kv.INVALID_ARGUMENT, "a read for update needs lock_priority > 0"))
    if op.snapshot or op.stale_ok or op.at_version:
        # A read at a version is a snapshot read (`NodeCore._start_read`): it would take no lock.
        raise _Refusal(
            _error(
                kv.INVALID_ARGUMENT,
                "a read for update is a linearizable read: no snapshot, no stale_ok, no at_version",
            )
        )
