"""`LocalCluster.wait_rebuilt` (cluster start --rebuild): a rebuilding replica that catches
up by a snapshot restored in steps shows the role 'restoring' (shard.node `_role_shown`
puts it first), and is still rebuilding (its replica is paused: Paxos rule 14 cannot have
let it vote). The wait must not say 'rebuilt: voting in every group again' then: the user's
next step (stopping another node) would leave a group without a voting quorum."""

from __future__ import annotations

from pathlib import Path

import pytest

from router import kv_pb2 as kv
from shard.cluster import ClusterError, LocalCluster


def _status(role: str) -> kv.StatusResponse:
    return kv.StatusResponse(groups=[kv.GroupStatus(group_id=1, role=role)])


def test_a_replica_restoring_a_snapshot_mid_rebuild_is_not_reported_rebuilt(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cluster = LocalCluster(tmp_path / "c", nodes=3, shards=1)
    seen = iter(["rebuilding", "restoring", "rebuilding", "follower"])
    asked: list[str] = []

    def status_all(timeout_s: float = 1.0, names: object = None) -> dict[str, kv.StatusResponse]:
        role = next(seen)
        asked.append(role)
        return {"n2": _status(role)}

    monkeypatch.setattr(cluster, "status_all", status_all)
    monkeypatch.setattr("shard.cluster.time.sleep", lambda _s: None)
    said: list[str] = []
    cluster.wait_rebuilt(["n2"], deadline_s=60.0, progress=said.append)
    assert asked[-1] == "follower", (asked, said)
    assert said[-1].endswith("rebuilt: voting in every group again")


def test_cluster_start_refuses_to_rebuild_two_nodes_at_once(tmp_path: Path) -> None:
    """`--rebuild` is documented as one node at a time (cluster start's help, README): two
    lost disks of one three-replica group may hold the only copies of chosen slots, and
    both catching up from the third as if nothing were lost would drop acknowledged writes
    silently. The option appends, so `--rebuild n1 --rebuild n2` must be refused."""
    cluster = LocalCluster(tmp_path / "c", nodes=3, shards=1)
    cluster._write_config()
    cluster._fresh = False
    for node in cluster.config.nodes:
        if node.name == "n3":
            (cluster.config.node_data_dir(node) / "db").mkdir(parents=True)
    states = cluster.node_states()
    cluster._check_rebuild(["n1"], states)  # one at a time: fine
    with pytest.raises(ClusterError, match="one node at a time"):
        cluster._check_rebuild(["n1", "n2"], states)
