"""Cross-shard transactions: hybrid logical clock, 2PC over Paxos groups, the client.

The supported client surface; import from here::

    from txn import Client, AsyncClient, Conflict, CommitUnknown, transactional

- `Client` (synchronous) / `AsyncClient` (asyncio): `transaction()`, `run(fn, ...)`,
  `@client.transactional`, `snapshot()`, `watch(start, end)`, `txn_status(ref)`,
  single-key `get/get_versioned/get_entry/put/delete/cas/scan`, `close()`; `Entry` is
  what `get_entry` returns (value, version, `expires_at`, `ttl_left_s()`).
- `AsyncWatch` / `Watch`: batches of `Change(version, key, value)` in commit order (with
  `watch(..., prev_values=True)`, also `prev_value` and `prev_version`), and `through`, the
  version to resume after.
- `Transaction` / `AsyncTransaction`: `get`, `scan`, `put`, `delete`, `delete_range`,
  `put_fenced`, `delete_fenced`, `atomic`, `add`, `commit`, `abort`, `txn_id`,
  `commit_ts`, `ref`, `read_set`.
- `AtomicOp` (the operations of `atomic`), `encode_int` / `decode_int` (a counter's bytes).
- Errors: one table in `txn.errors`, each with `code`, `retryable` and `maybe_committed`;
  `RetryEvent`, what a client's `on_retry` gets each time `run` runs a function again.
- `prefix_end(prefix)`: the end of a scan of every key with that prefix;
  `DELETE_RANGE_KEYS`: the most keys one `delete_range` deletes in a group.

The 2PC rules themselves (`txn.records`, `txn.store`, the participant and coordinator) are
imported by the shard from their modules.
"""

from router.client import CasResult
from router.limits import DELETE_RANGE_KEYS
from router.watch_lanes import Change
from txn.args import prefix_end
from txn.atomic import AtomicOp, decode_int, encode_int
from txn.client import AsyncClient
from txn.entry import Entry
from txn.errors import (
    ERRORS,
    ClientClosed,
    CommitUnknown,
    Conflict,
    DeadlineExceeded,
    FencingTokenRejected,
    InvalidArgument,
    LimitExceeded,
    OutcomeUnknown,
    PaxosKVError,
    ServerError,
    SnapshotTooOld,
    TooManyRetries,
    TransactionClosed,
    TransactionTooOld,
    TxnRef,
    Unavailable,
    WatchClosed,
    WrongCluster,
)
from txn.hlc import ts_at_wall_ns, wall_ns_of
from txn.retry import RetryEvent
from txn.snapshot import AsyncSnapshot
from txn.status import TransactionState, TxnState, TxnStatus
from txn.sync_client import Client, Snapshot, Transaction, Watch, transactional
from txn.transaction import AsyncTransaction
from txn.watch import AsyncWatch

__all__ = [
    "DELETE_RANGE_KEYS",
    "ERRORS",
    "AsyncClient",
    "AsyncSnapshot",
    "AsyncTransaction",
    "AsyncWatch",
    "AtomicOp",
    "CasResult",
    "Change",
    "Client",
    "ClientClosed",
    "CommitUnknown",
    "Conflict",
    "DeadlineExceeded",
    "Entry",
    "FencingTokenRejected",
    "InvalidArgument",
    "LimitExceeded",
    "OutcomeUnknown",
    "PaxosKVError",
    "RetryEvent",
    "ServerError",
    "Snapshot",
    "SnapshotTooOld",
    "TooManyRetries",
    "Transaction",
    "TransactionClosed",
    "TransactionState",
    "TransactionTooOld",
    "TxnRef",
    "TxnState",
    "TxnStatus",
    "Unavailable",
    "Watch",
    "WatchClosed",
    "WrongCluster",
    "decode_int",
    "encode_int",
    "prefix_end",
    "transactional",
    "ts_at_wall_ns",
    "wall_ns_of",
]
