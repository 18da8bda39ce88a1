"""Bringing a stopped or killed node of a `LocalCluster` back, for tests that stop one
node per round."""

from __future__ import annotations

from shard.cluster import LocalCluster


def restart_and_settle(cluster: LocalCluster, name: str) -> None:
    """Restart `name`, then wait until it leads its preferred groups again (it takes them
    back by leadership transfer): a test's next round must not read a leader that is one no
    more (seen: a kill aimed at a leader that hit a follower and measured nothing)."""
    cluster.restart(name)
    cluster.wait_healthy(20.0)
    assert cluster.wait_settled(10.0), (
        f"{name} restarted but did not lead its preferred groups again within 10 s: "
        f"{cluster.leaders()}"
    )
