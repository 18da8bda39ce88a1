"""Re-sending an idempotent request: given up at a silent node, doubled at a slow one.

Theory of operation
-------------------
A group's leader can go silent without a word: SIGSTOPped, cut off by a partition, its
machine frozen. Its connection stays open, so nothing fails; only time tells. The group
elects another leader within an election timeout or two, but a request waiting at the
silent one learns nothing of it. So the routing client watches a node a request waits at
(`router.client._SilenceWatch`: nothing heard, not even the answer to a probe, for the
client's `attempt_timeout_s`), moves the group's leader guess off a silent one to the next
replica (`RoutingCache.on_not_leader`), and gives the copy up (`idempotent`); the SAME
request is then sent again, where the guess now points, until the operation's deadline (a
read by the routing client itself, a commit request by `send_idempotent` here, which
judges what a lost copy leaves ambiguous).
The replica asked next serves it or names the new leader.

A live leader may be slow (a request parked for a lock, a loaded node): the copy waits for
its answer until the deadline, and the routing client sends the node one more copy of an
idempotent request after each attempt timeout without an answer (an answer lost on the way
is answered by the next copy), the first answer without an error winning. Found by review:
a first form gave each copy one attempt timeout and dropped it then, so a leader slower
than that never got a read answered; a second form ran each copy as a task of its own here, which cost the
client enough CPU to lower 2-shard commits/s at 16 and 64 clients by a tenth to a third.

Which requests may be sent again (the caller says so by calling `send_idempotent`):

- Reads: a linearizable get, a scan page, a snapshot read, the snapshot timestamp, a
  transaction's status. Two copies served read the same data twice, or the second later
  data; the caller uses the one answer it gets. A transaction's read of a key is recorded
  from that answer only, and validated at commit.
- A read for update (`tx.get(key, for_update=True)`): it also takes the key's update lock at
  the leader. Sent again, the lock is asked for again by the same transaction at the same
  age: a leader that already gave it that lock gives it again (`LockTable.acquire` grants a
  holder its own key), and a copy parked at a deposed leader is refused there (NOT_LEADER)
  once that replica runs again, or takes a lock in a table dropped with its leadership. The
  locks are hints, never replicated (shard.lock_wait rule U1): an extra or lost one costs
  at most a wait or a retry, never correctness; one left behind goes with the
  transaction's commit or abort, or after LOCK_TTL_S. What is NOT sent again is a read for
  update the leader refused (wounded, or queued too long): that refusal is final
  (txn.client rule 4).
- The commit's requests (Prepare, CommitOnePhase, Decide, Resolve), idempotent under the
  transaction id (txn.client rule 1). A copy may have been applied when its answer was
  lost or its node went silent (`OutcomeUnknown`): then a refusal of a later copy, and
  the deadline, are `_NoAnswer(ambiguous=True)`, never "nothing was applied".

- A lease's renewal, `cas(..., touch=True)`: it keeps the value and its version, and lets
  the value live `ttl_s` from the time it is applied, never less than it had. Applied twice,
  the second copy changes nothing but the deadline, from its own later time, which the
  caller asked for too; a copy applied late finds the version gone once the lease was
  released or taken over, and changes nothing (a renewal on `expected_value` instead may
  extend a later holder's lease of the same value: a delay, never an overlap). Found by an
  application trial: a renewal waiting its whole timeout at a frozen leader lost a lease
  the group's new leader, elected in 0.3 s, would have renewed.

Never sent again: a single-key put, delete or any other cas. Not idempotent, it waits for
its answer until its deadline (OutcomeUnknown after that, once written to the node); it
still moves the leader guess off a silent node after the attempt timeout (router.client),
so the requests that follow it go elsewhere.

Each copy's header carries the operation's deadline (`Header.timeout_ms`), so a leader that
parks it for a lock or an intent answers in time (it waits at most half of it,
shard.lock_wait rule L4).
"""

from __future__ import annotations

import asyncio
from collections.abc import Collection
from dataclasses import dataclass
from typing import TYPE_CHECKING

from router import kv_pb2 as kv
from router.cache import Backoff
from router.errors import UnknownGroup, WrongShard
from txn.errors import (
    DeadlineExceeded,
    OutcomeUnknown,
    PaxosKVError,
    Unavailable,
)

if TYPE_CHECKING:
    from txn.client import AsyncClient

#: The pause before each re-send (the guess already moved off the node that failed).
RESEND_BACKOFF = Backoff(base_s=0.005, max_s=0.2)


@dataclass
class Copies:
    """What the copies of one request sent so far left: whether one may have been applied,
    and whether one was handed to the routing client at all (`tried`: none was, so no
    copy of it exists anywhere, not even one a network could deliver twice). A caller
    that sends the request again over several calls keeps one (found by review: a
    renewal's copy lost at a silent leader, then a later call's refusal, read as "nothing
    was applied")."""

    maybe_applied: bool = False
    tried: bool = False


class _NoAnswer(Exception):
    """An idempotent request got no answer before its deadline; `ambiguous`: some attempt
    may have been applied."""

    def __init__(self, ambiguous: bool, last: PaxosKVError) -> None:
        super().__init__(str(last))
        self.ambiguous = ambiguous
        self.last = last


async def send_idempotent(
    client: AsyncClient,
    request: kv.Request,
    *,
    key: bytes | None = None,
    group_id: int | None = None,
    write: bool,
    deadline: float,
    passthrough: Collection[int] = (),
    copies: Copies | None = None,
) -> kv.Response:
    """Send `request` (to the group owning `key`, or to `group_id`), re-sending the SAME
    request while its answer is lost, its node silent or its group unavailable, until
    `deadline` (loop time); see the module docstring.

    Args:
        write: the request changes state (a commit request): a copy whose answer was lost
            may have been applied, which makes the outcome `ambiguous`.
        copies: the earlier copies' record, kept up to date (default: a fresh one).

    Raises:
        _NoAnswer: no answer before the deadline; or, after a copy that may have been
            applied, a later copy refused for any reason, or the shard map changed under
            it (`last` an Unavailable saying so).
        WrongShard, UnknownGroup: the shard map changed under the request (routed by group)
            and no copy of it may have been applied: re-plan it.
        LimitExceeded, InvalidArgument: refused, and no copy may have been applied.
        WrongCluster, ServerError, ClientClosed: from the node or the client, as they are,
            when no copy may have been applied.
    """
    # Connecting is not a try: the seeds get the whole deadline, as for any first call.
    try:
        await client._ready(deadline)
    except Unavailable as exc:
        raise _NoAnswer(False, exc) from None
    loop = asyncio.get_running_loop()
    copies = Copies() if copies is None else copies
    last: PaxosKVError = DeadlineExceeded("no time was left to send the request")
    attempt = 0
    while (remaining := deadline - loop.time()) > 0:
        copies.tried = True
        try:
            return await client._send(
                request,
                key=key,
                group_id=group_id,
                write=write,
                timeout_s=remaining,
                passthrough=passthrough,
                idempotent=True,
            )
        except OutcomeUnknown as exc:
            copies.maybe_applied, last = True, exc
        except Unavailable as exc:
            last = exc
        except (WrongShard, UnknownGroup) as exc:
            if copies.maybe_applied:  # an earlier copy may have been applied before it
                moved = Unavailable(f"the shard map changed under the request ({exc})")
                raise _NoAnswer(True, moved) from exc
            raise
        except PaxosKVError as exc:
            # LimitExceeded, InvalidArgument, WrongCluster... of this copy say nothing of an
            # earlier one that may have been applied (found by review: a re-send reaching a
            # new leader whose clock lags, refused by rule 9, read as "not committed").
            if copies.maybe_applied:
                raise _NoAnswer(True, exc) from exc
            raise
        if not await client._pause(RESEND_BACKOFF, attempt, deadline):
            break
        attempt += 1
    raise _NoAnswer(copies.maybe_applied, last)
