"""Real processes: an election whose promises go in parts (paxos replica rule 18).

A follower paused while writes go on falls behind; when the leader then dies and that
follower campaigns, the other follower's promise must carry every slot it lacks. With a
small `paxos.max_promise_bytes` that promise goes in many parts, asked for one by one over
the real peer streams. The simulator and the unit tests prove the rule; this shows it
working end to end in node processes: the new leader logs how many parts its Phase 1 took,
and every acknowledged write is still there.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import pytest

from shard.cluster import LocalCluster
from shard.config import PaxosSettings

pytestmark = pytest.mark.cluster

GROUP = 1
PREFIX = b"p-"
#: About eight votes of a small put per part: the lagging follower's promise takes dozens.
PART_BYTES = 1024
ROUNDS = 4


def _promise_parts_logged(cluster: LocalCluster, name: str) -> list[int]:
    """The promise_parts of every 'became leader of GROUP' line in `name`'s log."""
    found = []
    for line in cluster.log_file(name).read_text(errors="replace").splitlines():
        if '"group role"' not in line:
            continue
        entry = json.loads(line)
        if entry.get("group") == GROUP and entry.get("role") == "leader":
            found.append(int(entry.get("promise_parts", 0)))
    return found


def _others(cluster: LocalCluster, name: str) -> list[str]:
    return [n for n in cluster.names if n != name]


def test_a_follower_far_behind_is_elected_through_promises_in_parts(
    make_cluster: Callable[..., LocalCluster],
    report: Callable[..., None],
    kv_of: Any,
    writer_of: Any,
) -> None:
    """Pause follower B while writes go on; then pause follower A, kill -9 the leader and
    resume B (alone, it cannot elect); then resume A. A's stall guard defers its own
    campaign by an election timeout, B's queued pre-vote reaches it first, and A's promise
    to B carries the slots B missed, in parts. A may still win the race (then nothing is
    cut): up to ROUNDS rounds until B's Phase 1 took parts. Every round ends with a leader,
    and every acknowledged write reads back at the end."""
    cluster = make_cluster(shards=1, paxos=PaxosSettings(max_promise_bytes=PART_BYTES))
    kv_ = kv_of(cluster)
    assert kv_.group_of(PREFIX) == GROUP
    parts_seen = 0
    with writer_of(cluster, [PREFIX]) as writer:
        writer.wait_acks(20)
        for round_ in range(ROUNDS):
            leader = cluster.wait_for_leader(GROUP)
            a, b = _others(cluster, leader)
            logged_before = len(_promise_parts_logged(cluster, b))
            cluster.pause(b)
            try:
                writer.wait_acks(len(writer.acks) + 200)  # B misses these
                cluster.pause(a)
                try:
                    cluster.kill(leader)
                finally:
                    cluster.resume(b)
                # Alone, B cannot elect; its pre-votes queue on the stream to A.
                time.sleep(0.3)
            finally:
                cluster.resume(a)
            t_resumed = time.monotonic()
            new = cluster.wait_for_leader(GROUP, not_on=leader, deadline_s=30.0)
            writer.wait_acks(len(writer.acks) + 20, deadline_s=30.0)
            window_s = time.monotonic() - t_resumed
            logged = _promise_parts_logged(cluster, b)[logged_before:]
            parts = max(logged, default=0) if new == b else 0
            report(
                "election_in_parts",
                round=round_,
                killed=leader,
                behind=b,
                new_leader=new,
                promise_parts=parts,
                resumed_to_20_more_acks_s=round(window_s, 3),
            )
            cluster.restart(leader)
            cluster.wait_healthy(30.0)
            if parts:
                parts_seen = parts
                break
    assert parts_seen > 1, (
        f"in {ROUNDS} rounds the follower that fell behind never won an election through "
        f"promises in parts (each time the up-to-date follower won first)"
    )
    assert writer.acks, "nothing was acknowledged"
    for ack in writer.acks:
        assert kv_.get(ack.key) == ack.value, f"acknowledged write {ack.key!r} was lost"
