"""A leader's deletion of the values whose time to live ran out (node rule 17).

Every EXPIRY_CHECK_S each data group a node leads reads its due expiry records
(`ShardStateMachine.due_expiries`, at most EXPIRES_PER_CHECK) and proposes an Expire for each
that is not already under way. The Expire is an ordinary command of the group's log, so
every replica applies the same decision (state machine rule 7): it deletes the key only if
the key still holds the version the record names, never before the deadline, and never
under an intent. An Expire that got no result (the leadership moved, the proposal timed
out) or met an intent is proposed again EXPIRE_RETRY_S later; a new leader finds the records
in its own state and carries on. So a value lives at least its time to live, by the clock
of the leader that wrote it, and goes about EXPIRY_CHECK_S after that while its group has a
leader (a leader's clock may run up to the cluster's max_clock_offset ahead).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from functools import partial
from typing import Any

from shard import codec
from shard.node_records import GroupHost

EXPIRY_CHECK_S = 0.1
"""How often a leader looks for due values."""

EXPIRES_PER_CHECK = 256
"""Expires one check proposes at most per group (a burst of due keys goes over several)."""

EXPIRE_RETRY_S = 1.0
"""After this, an Expire that got no result or met an intent is proposed again."""

ProposeCommand = Callable[[GroupHost, Callable[[int], bytes], Callable[[Any], None]], None]
"""Propose the command `encode(ts)` in the host's group; the callback gets the applied
`CommandResult`, or None when it was not applied here (not leader, timed out)."""

_Record = tuple[int, int, bytes]  # group, deadline, key


class KeyExpiry:
    """Rule 17 for the groups a node leads; `NodeCore.tick` runs it."""

    def __init__(self, propose: ProposeCommand) -> None:
        self._propose = propose
        # Expires under way: when each may be proposed again. Rebuilt by each check from
        # the records still due, so records gone (expired, or no longer led here) drop out.
        self._retry_at: dict[_Record, float] = {}

    @property
    def in_flight(self) -> int:
        """Expiry records whose Expire is under way or waits for its retry."""
        return len(self._retry_at)

    def check(self, leaders: Iterable[GroupHost], now: float, now_ts: int) -> None:
        """Propose an Expire for every record due at `now_ts` in the groups led here."""
        retry_at: dict[_Record, float] = {}
        for host in leaders:
            for deadline, key, version in host.shard.due_expiries(now_ts, EXPIRES_PER_CHECK):
                record = (host.group_id, deadline, key)
                due = self._retry_at.get(record, now)
                if due > now:
                    retry_at[record] = due
                    continue
                retry_at[record] = now + EXPIRE_RETRY_S
                # Its result needs no handling: applied, the record is gone from the
                # group's state, so the next check does not see it; else it is still due.
                self._propose(host, partial(codec.encode_expire, key, version, deadline), _ignore)
        self._retry_at = retry_at


def _ignore(_result: Any) -> None:
    return None
