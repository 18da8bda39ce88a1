"""ReplicaConfig.validate refuses the timing relations the lease rules depend on (rule 6: a
follower's lease promise must end before its election timer could; the leader's lease is
the promise minus a non-negative drift), and `quorum` is a strict majority for every group
size."""

from __future__ import annotations

import pytest

from paxos import ReplicaConfig


def _config(**timing: float) -> ReplicaConfig:
    return ReplicaConfig(node_id=1, voters=(1, 2, 3), **timing)  # type: ignore[arg-type]


def test_the_default_timing_is_valid() -> None:
    _config().validate()


@pytest.mark.parametrize(
    "timing",
    [
        # a lease promise longer than the shortest election timeout
        dict(lease_duration_s=0.2, election_timeout_min_s=0.15, election_timeout_max_s=0.3),
        # no drift margin left: the leader's lease would be empty or negative
        dict(lease_duration_s=0.1, lease_drift_s=0.1),
        dict(lease_drift_s=-0.01),
        # heartbeats no faster than the election timeout
        dict(heartbeat_interval_s=0.15, election_timeout_min_s=0.15, election_timeout_max_s=0.3),
    ],
)
def test_lease_and_timer_relations_are_enforced(timing: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        _config(**timing).validate()


@pytest.mark.parametrize(("n", "quorum"), [(1, 1), (2, 2), (3, 2), (4, 3), (5, 3), (6, 4)])
def test_a_quorum_is_a_strict_majority(n: int, quorum: int) -> None:
    config = ReplicaConfig(node_id=1, voters=tuple(range(1, n + 1)))
    assert config.quorum == quorum
    assert 2 * config.quorum > n  # any two quorums intersect
