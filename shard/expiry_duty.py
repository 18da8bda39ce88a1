"""A leader's deletion of the values whose time to live ran out (node rule 17).

Every EXPIRY_CHECK_S each data group a node leads reads its due expiry records
(`ShardStateMachine.due_expiries`, EXPIRES_PER_CHECK at a time, going on from where the
last check stopped when it found that many) and proposes an Expire for each that is not
under way, whose key no intent or prepared scan holds (its Expire would be refused: found
by review, 256 such keys at the head of the records held every record behind them). The
Expire is an ordinary command of the group's log, so every replica applies the same
decision (state machine rule 7): it deletes the key only if the key still holds the
version the record names, never at a timestamp before the deadline, never under an
intent. An Expire that got no result (the leadership moved, the proposal timed out) is
proposed again EXPIRE_RETRY_S later, one refused for an intent at the next check that finds
none; a new leader finds the records in its own state and carries on. Every key found due is
noted (`GroupHost.due`, shard.due_keys) until its Expire deleted it: no Prepare takes a new
intent on it meanwhile (shard.lock_wait rule L5), so readers that keep overlapping cannot
hold an expired value for ever.

"Due" is judged by the leader's wall clock less twice the cluster's max clock offset, not
by its hybrid clock, which a new leadership or a request's timestamp may push ahead of
real time (found by review: a Prepare 0.49 s ahead made a 1 s lease go after 0.72 s). The
deadline is the writer's hybrid timestamp plus the TTL, at least its wall clock then
(within the offset of real time) plus the TTL; so in real time a value lives at least its
TTL, and goes about EXPIRY_CHECK_S + 2 x max_clock_offset after it while its group has a
leader.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from functools import partial
from typing import Any

from shard import codec
from shard.errors import Status
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
        # Expires under way: when each may be proposed again (entries past it drop out).
        self._retry_at: dict[_Record, float] = {}
        # Per group, the record the last check stopped at when it read a full page.
        self._resume_after: dict[int, tuple[int, bytes]] = {}

    @property
    def in_flight(self) -> int:
        """Expiry records whose Expire is under way or waits for its retry."""
        return len(self._retry_at)

    def check(self, leaders: Iterable[GroupHost], now: float, due_ts: int) -> None:
        """Propose an Expire for the records due at `due_ts` (a timestamp of the leader's
        wall clock, less the offsets) in the groups led here, a page per group."""
        self._retry_at = {r: at for r, at in self._retry_at.items() if at > now}
        for host in leaders:
            shard, group = host.shard, host.group_id
            due = shard.due_expiries(due_ts, EXPIRES_PER_CHECK, self._resume_after.pop(group, None))
            if len(due) == EXPIRES_PER_CHECK:
                self._resume_after[group] = due[-1][:2]
            host.due.prune(shard, EXPIRES_PER_CHECK)
            for deadline, key, version in due:
                # Held for its Expire: no new Prepare reads it meanwhile (rule L5).
                host.due.add(shard, key, deadline, version)
                record = (group, deadline, key)
                if record in self._retry_at:
                    continue
                if shard.intents_on(key) or shard.scanners(key):
                    # A holder that came after a Prepare parked for this key may be older
                    # than it (found by review: a wait cycle through the Expire for 1 s).
                    host.due.recheck()
                    continue
                self._retry_at[record] = now + EXPIRE_RETRY_S
                encode = partial(codec.encode_expire, key, version, deadline)
                self._propose(host, encode, partial(self._settled, host, record))

    def _settled(self, host: GroupHost, record: _Record, result: Any) -> None:
        """An Expire's result: applied, its record is gone from the group's state, so no
        check sees it again; refused (an intent came first), the next check proposes it
        again once no intent holds the key; not applied here, EXPIRE_RETRY_S later."""
        if result is None:
            return
        host.due.settle(host.shard, record[2])
        if result.status is Status.CONFLICT:
            self._retry_at.pop(record, None)
            host.due.recheck()
