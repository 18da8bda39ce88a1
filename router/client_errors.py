"""Errors raised by `router.client.RoutingClient`, sorted by what the caller can do.

Every error carries three flags (FoundationDB's `error_definitions.h` rule, STYLE.md §8.5):

- `code`: the server's `kv.ErrorCode` name, or a client-side name ("DEADLINE_EXCEEDED").
- `retryable`: the same request may succeed later (the client already retried until its
  deadline; a caller with a longer horizon may try again).
- `maybe_committed`: a write may have been applied, and may still be applied later (a
  proposal outlives its lost answer until its slot is decided), so a read now proves
  nothing. Never re-send such a write blindly: see `OUTCOME_ADVICE`.

This module is pure (no I/O): the transaction client can raise and catch these without
importing the gRPC shell.
"""

from __future__ import annotations

from router.errors import RouterError


class ClientError(RouterError):
    """Base class of the errors the routing client raises."""

    code: str = "CLIENT_ERROR"
    retryable: bool = False
    maybe_committed: bool = False

    def __init__(self, message: str, *, maybe_committed: bool | None = None) -> None:
        super().__init__(message)
        if maybe_committed is not None:
            self.maybe_committed = maybe_committed


class Unavailable(ClientError):
    """No replica could serve the request right now (no leader, nodes down or unreachable).

    Nothing was applied: the request was refused, or never reached a node.
    """

    code = "UNAVAILABLE"
    retryable = True


class DeadlineExceeded(Unavailable):
    """The client retried until its deadline without an answer; nothing was applied.

    (A write that may have reached a leader before the deadline is `OutcomeUnknown` instead.)
    """

    code = "DEADLINE_EXCEEDED"


OUTCOME_ADVICE = (
    "it may still be applied later, so a read now settles nothing: re-send only a write "
    "that applies at most once (compare-and-set on the version of a key that existed; "
    "an expected absence or value can match again after other writes), or use a "
    "transaction, whose outcome txn_status(ref, settle=True) settles"
)
"""What to do about a write whose outcome is unknown (found by review: the advice was to
read the key, but the node keeps the proposal in its pipeline after answering, so a read
could show the old value and the write land afterwards)."""


class OutcomeUnknown(ClientError):
    """A write may or may not have been applied (its answer was lost, or its leader changed
    after proposing it), and may still be applied later: see `OUTCOME_ADVICE`."""

    code = "OUTCOME_UNKNOWN"
    maybe_committed = True


class LimitExceeded(ClientError, ValueError):
    """A key, value or request is over a documented size limit; nothing was applied."""

    code = "LIMIT_EXCEEDED"


class InvalidArgument(ClientError, ValueError):
    """The request is malformed (e.g. an empty key); nothing was applied."""

    code = "INVALID_ARGUMENT"


class SnapshotTooOld(ClientError):
    """A read at a timestamp older than the group's MVCC retention (a snapshot kept open
    too long): the versions it needs may be collected. Nothing was applied; read again
    at a newer timestamp (a new snapshot)."""

    code = "SNAPSHOT_TOO_OLD"
    retryable = True


class WrongCluster(ClientError):
    """The contacted node belongs to another cluster: the seed addresses or the cluster id
    are wrong."""

    code = "WRONG_CLUSTER"


class ServerError(ClientError):
    """The node reported an internal error (a bug). For a write `maybe_committed` is set:
    treat it as maybe applied."""

    code = "INTERNAL"


class ClientClosed(ClientError):
    """The client was closed; create a new one."""

    code = "CLIENT_CLOSED"
