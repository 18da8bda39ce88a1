"""Real processes: a node stopped with SIGTERM hands the groups it leads to its peers first
(node rule 15, paxos replica rule 19), so a rolling restart costs its clients a leadership
transfer, not an election timeout, and loses nothing."""

from __future__ import annotations

import itertools
import json
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

import txn
from shard.cluster import LocalCluster, wait_for
from tests.cluster.rejoin import restart_and_settle

pytestmark = pytest.mark.cluster

# One key prefix per data group of the default 3-shard layout (split points "j", "r").
PREFIX = {1: b"b-", 2: b"m-", 3: b"t-"}


def _log_records(cluster: LocalCluster, name: str, msg: str) -> list[dict[str, Any]]:
    records = []
    for line in cluster.log_file(name).read_text(errors="replace").splitlines():
        if line.startswith("{"):
            record = json.loads(line)
            if record.get("msg") == msg:
                records.append(record)
    return records


class _Writer:
    """A thread writing one key after another to one group through `txn.Client` (what a
    user runs), noting when each write was acknowledged."""

    def __init__(self, client: txn.Client, prefix: bytes) -> None:
        self._client = client
        self._prefix = prefix
        self.acked: list[tuple[bytes, bytes, float]] = []
        self.unknown: list[bytes] = []
        self.errors: list[BaseException] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="writer", daemon=True)

    def __enter__(self) -> _Writer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=30.0)

    def _run(self) -> None:
        i = 0
        while not self._stop.is_set():
            key, value = self._prefix + b"%06d" % i, b"value-%d" % i
            try:
                self._client.put(key, value)
                self.acked.append((key, value, time.monotonic()))
            except txn.OutcomeUnknown:
                self.unknown.append(key)
            except BaseException as exc:
                self.errors.append(exc)
                return
            i += 1

    def wait_acks(self, more: int, deadline_s: float = 20.0) -> None:
        target = len(self.acked) + more
        wait_for(
            lambda: len(self.acked) >= target or bool(self.errors),
            deadline_s,
            f"{target} acknowledged writes (have {len(self.acked)})",
        )
        assert not self.errors, f"writer failed: {self.errors[0]!r}"


def _longest_gap(acked: list[float], since: float, until: float) -> float:
    """The longest time without an acknowledged write from `since` to the first one at or
    after `until` (the node's stop: without a handoff, the election comes after it)."""
    end = min((t for t in acked if t >= until), default=until)
    points = [since, *sorted(t for t in acked if since < t < end), end]
    return max(b - a for a, b in itertools.pairwise(points))


def test_sigterm_of_a_leader_hands_its_groups_over_during_writes(
    cluster: LocalCluster, report: Callable[..., None]
) -> None:
    """SIGTERM the node leading a shard while a client streams writes to it, three times in
    a row (restarting it in between): the node logs every group it led as handed over, none
    kept, before it stops; another node leads; writes go on; every acknowledged write is
    there. The longest pause of the writes is reported, not asserted."""
    group_id = 2
    assert cluster.group_of(PREFIX[group_id]) == group_id
    cluster.wait_settled(deadline_s=15.0)
    pauses = []
    with (
        txn.Client(cluster.env_value(), timeout_s=20.0) as client,
        _Writer(client, PREFIX[group_id]) as writer,
    ):
        writer.wait_acks(30)
        for round_ in range(3):
            old = cluster.wait_for_leader(group_id)
            led = sorted(g for g, leader in cluster.leaders().items() if leader.leader == old)
            handed_before = len(_log_records(cluster, old, "leadership handed off"))
            writer.wait_acks(20)
            t_term = time.monotonic()
            cluster.stop_node(old)
            t_stopped = time.monotonic()
            writer.wait_acks(30, deadline_s=30.0)
            new = cluster.wait_for_leader(group_id, not_on=old)
            handed = _log_records(cluster, old, "leadership handed off")[handed_before:]
            pause = _longest_gap([t for _, _, t in writer.acked], t_term, t_stopped)
            pauses.append(pause)
            report(
                "sigterm_leader_pause",
                round=round_,
                group=group_id,
                stopped=old,
                new_leader=new,
                handed_over=[r["groups"] for r in handed],
                stop_s=round(t_stopped - t_term, 4),
                longest_pause_s=round(pause, 4),
            )
            assert len(handed) == 1, f"{old} logged {handed} when stopping"
            assert handed[0]["kept"] == [], f"{old} kept groups {handed[0]['kept']}"
            assert set(led) <= set(handed[0]["groups"]), (led, handed[0])
            restart_and_settle(cluster, old)
        assert writer.acked, "nothing was acknowledged"
        for key, value, _ in writer.acked:
            assert client.get(key) == value, f"acknowledged write {key!r} was lost"
    report(
        "sigterm_leader_summary",
        longest_pauses_s=[round(p, 4) for p in pauses],
        writes_acked=len(writer.acked),
        outcome_unknown=len(writer.unknown),
    )
