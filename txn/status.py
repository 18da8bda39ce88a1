"""The states of a transaction: its life in this client, and its outcome as recorded."""

from __future__ import annotations

import enum
from dataclasses import dataclass

from router import kv_pb2 as kv

__all__ = ["TransactionState", "TxnState", "TxnStatus"]


class TransactionState(enum.Enum):
    """Where a transaction is in its life."""

    OPEN = "open"
    """Reading and buffering writes."""
    COMMITTING = "committing"
    """`commit()` is running."""
    COMMITTED = "committed"
    """Committed at `commit_ts`."""
    ABORTED = "aborted"
    """Aborted by the caller, by an exception, or by a failed commit: nothing was written."""
    UNKNOWN = "unknown"
    """The commit raised `CommitUnknown`, or was cancelled or interrupted part-way: it may
    have committed; ask `client.txn_status(tx.ref)`."""


class TxnState(enum.IntEnum):
    """A transaction's outcome as its decision group records it (`client.txn_status`)."""

    UNKNOWN = kv.TxnStatusResponse.UNKNOWN
    """No record: never prepared at the coordinator, or older than the retention window."""
    IN_PROGRESS = kv.TxnStatusResponse.IN_PROGRESS
    """Prepared at the coordinator group, and not every participant is prepared yet: it may
    still commit or abort. (A transaction whose every participant is prepared is reported
    COMMITTED even before its decision record is written: parallel commits.) If its client
    died, recovery decides it within about `txn.resolve_after_ms`."""
    COMMITTED = kv.TxnStatusResponse.COMMITTED
    ABORTED = kv.TxnStatusResponse.ABORTED


@dataclass(frozen=True, slots=True)
class TxnStatus:
    """The answer of `client.txn_status`: the state and, when committed, the commit ts."""

    state: TxnState
    commit_ts: int | None = None

    @property
    def committed(self) -> bool:
        return self.state is TxnState.COMMITTED
