"""Heartbeat rounds ride with heartbeat traffic a node sends anyway
(NodeCore._coalesce_heartbeats): an idle node writes to its peers at fewer moments, every
group's rounds stay at most one interval apart, and writes do not bring rounds forward."""

from __future__ import annotations

import itertools
from typing import Any

import pytest

from paxos.messages import Heartbeat
from shard.node import NodeCore
from tests.unit.shard.test_node_core import ThreeNodes, put


def idle_sends(
    nodes: ThreeNodes, seconds: float, writes_to: int | None = None
) -> tuple[dict[int, set[float]], dict[Any, list[float]]]:
    """The moments each node sent something, and the send times of each leader's rounds;
    with `writes_to`, a put to that group's leader every millisecond meanwhile."""
    moments: dict[int, set[float]] = {1: set(), 2: set(), 3: set()}
    rounds: dict[Any, list[float]] = {}
    send = nodes._send

    def recording(group_id: int, msgs: Any) -> None:
        for msg in msgs:
            moments[msg.src].add(round(nodes.now, 6))
            if isinstance(msg, Heartbeat):
                times = rounds.setdefault((group_id, msg.src), [])
                if not times or times[-1] != nodes.now:
                    times.append(nodes.now)
        send(group_id, msgs)

    nodes._send = recording  # type: ignore[method-assign]
    if writes_to is None:
        nodes.advance(seconds)
        return moments, rounds
    leader = nodes.cores[nodes.leader(writes_to)]
    for i in range(int(seconds * 1000)):
        leader.submit(put(b"k%d" % i, b"v", group=writes_to), lambda answer: None)
        nodes.advance(0.001)
    return moments, rounds


@pytest.mark.parametrize("coalesce", [True, False])
def test_rounds_stay_within_one_interval(coalesce: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    if not coalesce:
        monkeypatch.setattr(NodeCore, "_coalesce_heartbeats", lambda self: None)
    nodes = ThreeNodes()
    interval = nodes.paxos_settings.heartbeat_interval_ms / 1000
    _, rounds = idle_sends(nodes, 1.0)
    assert len(rounds) == 3  # the meta group and two data groups, one leader each
    for times in rounds.values():
        gaps = [b - a for a, b in itertools.pairwise(times)]
        assert max(gaps) <= interval + 0.0015, gaps


def test_an_idle_node_writes_at_fewer_moments(monkeypatch: pytest.MonkeyPatch) -> None:
    coalesced, _ = idle_sends(ThreeNodes(), 1.0)
    monkeypatch.setattr(NodeCore, "_coalesce_heartbeats", lambda self: None)
    separate, _ = idle_sends(ThreeNodes(), 1.0)
    for node in (1, 2, 3):
        assert len(coalesced[node]) < 0.9 * len(separate[node]), (coalesced, separate)


def test_writes_do_not_bring_rounds_forward() -> None:
    """Under a stream of writes a leader sends Accepts and its followers votes at every
    cycle; rounds coalesced with those came at twice the heartbeat rate (each one a message
    to every peer and an ack back: 15 % more node CPU per sequential put, measured)."""
    nodes = ThreeNodes()
    interval = nodes.paxos_settings.heartbeat_interval_ms / 1000
    seconds = 1.0
    _, rounds = idle_sends(nodes, seconds, writes_to=1)
    assert len(rounds) == 3
    for key, times in rounds.items():
        assert len(times) <= 1.25 * seconds / interval, (key, len(times))
