"""Real processes: durability across crashes (DESIGN.md contract 2).

A write acknowledged to a client is fsynced on a majority: it survives `kill -9` of every
node followed by a restart, and a crashed follower catches up on what it missed.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from router import kv_pb2 as kv
from shard.cluster import ClusterError, LocalCluster, wait_for

pytestmark = pytest.mark.cluster

PREFIXES = [b"b-", b"m-", b"t-"]  # one per data group of the default layout


def test_kill9_every_node_during_writes_then_restart(
    cluster: LocalCluster, kv_of: Any, writer_of: Any
) -> None:
    """Writes stream to all three shards; every node is killed with SIGKILL mid-stream (no
    chance to flush anything); after a restart from the data directories every acknowledged
    write is there, with its value, and the cluster takes writes again."""
    with writer_of(cluster, PREFIXES) as writer:
        writer.wait_acks(150)
        cluster.kill_all(signal.SIGKILL)
        acked = list(writer.acks)
    assert acked, "nothing was acknowledged before the crash"
    cluster.start(deadline_s=60.0)
    kv_ = kv_of(cluster)
    lost = [a.key for a in acked if kv_.get(a.key) != a.value]
    assert not lost, f"{len(lost)} of {len(acked)} acknowledged writes lost: {lost[:5]}"
    # Nothing appeared that no client wrote: every key present was at least attempted.
    attempted = {a.key for a in acked} | set(writer.unacked)
    for prefix in PREFIXES:
        group_id = kv_.group_of(prefix)
        present = [key for key, _ in kv_.scan_all(group_id, prefix, prefix[:-1] + b".")]
        assert set(present) <= attempted, sorted(set(present) - attempted)[:5]
    ack = kv_.put(b"b-after-restart", b"ok")
    assert kv_.get(ack.key) == b"ok"
    print(f"\n{len(acked)} acknowledged writes survived kill -9 of all nodes")


def test_a_node_whose_data_was_lost_is_refused_then_rebuilt(
    cluster: LocalCluster, kv_of: Any, writer_of: Any
) -> None:
    """A node that voted and lost its data (a replaced disk) must not vote again with no
    memory of its promises (shard/node_identity.py): a plain restart is refused with one
    clear line while the others go on serving. `start(rebuild=...)` (`paxoskv cluster start
    --rebuild`) brings it back under writes as a non-voter until Paxos rule 14 lets it vote;
    then with another node killed every group needs its vote, and every acknowledged write
    is still there."""
    kv_ = kv_of(cluster)
    victim = cluster.names[-1]
    with writer_of(cluster, PREFIXES) as writer:
        writer.wait_acks(30)
        cluster.kill(victim)
        shutil.rmtree(cluster.config.node_data_dir(cluster.node(victim)) / "db")
        with pytest.raises(ClusterError, match=rf"no data for node {victim} .*--rebuild"):
            cluster.restart(victim)
        assert not cluster.is_running(victim)
        writer.wait_acks(len(writer.acks) + 30, deadline_s=30.0)
        with pytest.raises(ClusterError, match="is running: stop it before rebuilding"):
            cluster.start(rebuild=[cluster.names[0]])
        cluster.start(deadline_s=60.0, rebuild=[victim])
        roles = {g.group_id: g.role for g in cluster.status_all(names=[victim])[victim].groups}
        assert "rebuilding" not in roles.values(), roles
        writer.wait_acks(len(writer.acks) + 30, deadline_s=30.0)
    acked = list(writer.acks)
    other = cluster.names[0]
    cluster.kill(other)  # from now on every group's quorum includes the rebuilt node
    for group_id in cluster.shard_map.group_ids():
        cluster.wait_for_leader(group_id)
    lost = [a.key for a in acked if kv_.get(a.key) != a.value]
    assert not lost, f"{len(lost)} of {len(acked)} acknowledged writes lost: {lost[:5]}"
    after = kv_.put(b"m-after-the-rebuild", b"2")
    assert kv_.get(after.key) == b"2"
    print(f"\n{victim} rebuilt; {len(acked)} acknowledged writes intact without {other}")


class _BootstrapsWipedNodes(LocalCluster):
    """An operator who starts a node whose data was lost with `paxoskv node --bootstrap`,
    which the README warns against: nothing on the node's empty disk tells it apart from a
    cluster's first start."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.wiped: set[str] = set()

    def _node_launch(self, name: str, env: dict[str, str]) -> tuple[list[str], str]:
        argv, where = super()._node_launch(name, env)
        if name in self.wiped and "--bootstrap" not in argv:
            argv.append("--bootstrap")
        return argv, where


def test_a_node_whose_data_was_lost_gets_no_vote_when_started_with_bootstrap(
    tmp_path: Path, kv_of: Any
) -> None:
    """Found by review: such a node took part at once and led two groups within half a
    second, with no memory of its promises. Its peers now refuse it (it came back in a new
    incarnation that no rebuild made, shard/node_identity.py): with another node down, no
    group has a quorum, so nothing is chosen on its forgotten votes; rebuilt, it counts."""
    cluster = _BootstrapsWipedNodes(tmp_path / "c", nodes=3, shards=1)
    try:
        cluster.start(deadline_s=60.0)
        for name in cluster.names:  # the ready line says where the data is, resolved
            data = cluster.config.node_data_dir(cluster.node(name)).resolve()
            assert f"serving on {cluster.addresses[name]}, data in {data}" in cluster.log_tail(name)
        kv_ = kv_of(cluster)
        before = kv_.put(b"m-before", b"1")
        victim, other = cluster.names[-1], cluster.names[0]
        cluster.kill(victim)
        shutil.rmtree(cluster.config.node_data_dir(cluster.node(victim)) / "db")
        cluster.wiped.add(victim)
        cluster.restart(victim)
        wait_for(
            lambda: "came back with new data" in cluster.log_tail(victim, 50),
            30.0,
            f"{victim}'s peers refusing it",
        )
        cluster.kill(other)  # the quorum of every group now needs the victim's vote
        with pytest.raises(Exception, match=r"no answer in|outcome is unknown") as refused:
            kv_.put(b"m-without-a-quorum", b"2", deadline_s=3.0)
        assert type(refused.value).__name__ == "Indeterminate"  # conftest's: never acknowledged
        roles = {g.group_id: g.role for g in cluster.status_all(names=[victim])[victim].groups}
        assert "leader" not in roles.values(), roles
        cluster.restart(other)
        cluster.kill(victim)
        shutil.rmtree(cluster.config.node_data_dir(cluster.node(victim)) / "db")
        cluster.wiped.discard(victim)
        cluster.start(deadline_s=60.0, rebuild=[victim])
        cluster.kill(other)  # now the rebuilt victim's vote counts
        for group_id in cluster.shard_map.group_ids():
            cluster.wait_for_leader(group_id)
        assert kv_.get(before.key) == b"1"
        assert kv_.get(kv_.put(b"m-after", b"3").key) == b"3"
    finally:
        cluster.stop(grace_s=3.0)
        cluster.close()


def test_a_node_put_back_from_an_older_copy_of_its_data_is_refused(
    tmp_path: Path, kv_of: Any
) -> None:
    """Found by an operator trial: a node's directory put back from a copy made before its
    last restart had forgotten a vote that chose an acknowledged write, and the replicas
    then answered by which one led. Its peers keep the newest run they took of it, and the
    copy's runs leave that one out: refused, its vote counts for nothing until rebuilt."""
    cluster = LocalCluster(tmp_path / "c", nodes=3, shards=1)
    try:
        cluster.start(deadline_s=60.0)
        kv_ = kv_of(cluster)
        before = kv_.put(b"o-before", b"1")
        victim, other = cluster.names[-1], cluster.names[0]
        data = cluster.config.node_data_dir(cluster.node(victim)) / "db"
        cluster.stop_node(victim)
        shutil.copytree(data, tmp_path / "copy")
        cluster.restart(victim)  # a new run, which its peers take once it votes
        cluster.kill(other)
        after = kv_.put(b"o-after-the-copy", b"2")  # chosen with the victim's vote
        cluster.restart(other)
        cluster.stop_node(victim)
        shutil.rmtree(data)
        shutil.copytree(tmp_path / "copy", data)
        cluster.restart(victim)
        wait_for(
            lambda: "data is older than when this node last saw it" in cluster.log_tail(victim, 50),
            30.0,
            f"{victim}'s peers refusing its old data",
        )
        # `paxoskv cluster status` says so, and exits 1 (it said "running", exit 0).
        shown = subprocess.run(
            [
                sys.executable,
                "-m",
                "shard.cli",
                "cluster",
                "status",
                "--data-dir",
                str(cluster.data_dir),
            ],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert shown.returncode == 1, shown
        assert f"{victim} is REFUSED by" in shown.stdout and "data is older" in shown.stdout
        cluster.kill(other)  # a quorum now needs the victim's vote, which is refused
        with pytest.raises(Exception, match=r"no answer in|outcome is unknown") as refused:
            kv_.put(b"o-without-a-quorum", b"3", deadline_s=3.0)
        assert type(refused.value).__name__ == "Indeterminate"
        cluster.restart(other)
        assert kv_.get(before.key) == b"1" and kv_.get(after.key) == b"2"
    finally:
        cluster.stop(grace_s=3.0)
        cluster.close()


class _FirstStartWithOneNodeLate(LocalCluster):
    """A first start in which the last node comes up only once the others have refused each
    other's streams for want of its answer."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.late = self.names[-1]
        self.roles_before_it: dict[int, set[str]] = {}

    def _launch(self, names: list[str], end: float, say: Any) -> None:
        early = [n for n in names if n != self.late]
        super()._launch(early, end, say)
        late_id = self.node(self.late).id
        wait_for(
            lambda: all(
                f"node(s) {late_id} did not answer" in self.log_tail(n, 200) for n in early
            ),
            30.0,
            "the early nodes refusing each other for now",
        )
        self._before_late(early, late_id)
        for st in self.status_all(names=early).values():
            assert st is not None
            for g in st.groups:
                self.roles_before_it.setdefault(g.group_id, set()).add(g.role)
        super()._launch([self.late], end, say)

    def _before_late(self, early: list[str], late_id: int) -> None:
        """What happens before the late node comes up (nothing here)."""


def test_a_first_start_needs_every_node_once(tmp_path: Path, kv_of: Any) -> None:
    """A first contact between two nodes is confirmed with every other node
    (shard/node_identity.py: otherwise a node whose data was lost and that was started
    with --bootstrap counted at a peer whose own first start came late, and the two could
    choose a second value for a slot). So the first two nodes up refuse each other for
    now and nothing is elected until the third answers; then the cluster serves."""
    cluster = _FirstStartWithOneNodeLate(tmp_path / "c", nodes=3, shards=1)
    try:
        cluster.start(deadline_s=90.0, settle_s=0)
        assert cluster.roles_before_it, "no status of the early nodes"
        assert all("leader" not in roles for roles in cluster.roles_before_it.values()), (
            cluster.roles_before_it
        )
        kv_ = kv_of(cluster)
        assert kv_.get(kv_.put(b"m-first", b"1").key) == b"1"
    finally:
        cluster.stop(grace_s=3.0)
        cluster.close()


class _FirstStartWithTheLateNodeOfAnotherCluster(_FirstStartWithOneNodeLate):
    """The late node is first started on a config with another cluster_id (and its own
    data directory), and stopped by PID once the early nodes said why it did not answer."""

    def _before_late(self, early: list[str], late_id: int) -> None:
        text = self.config_path.read_text()
        other = self.config_path.with_name("other-cluster.toml")
        other.write_text(
            text.replace(f"cluster_id = '{self.cluster_id}'", "cluster_id = 'other'").replace(
                "data_dir = 'data'", "data_dir = 'other-data'"
            )
        )
        argv = ["node", "--config", str(other), "--node-id", self.late, "--bootstrap"]
        with open(self.logs_dir / "other-cluster.log", "wb") as log:
            node = subprocess.Popen(
                [sys.executable, "-m", "shard.cli", *argv], stdout=log, stderr=subprocess.STDOUT
            )
        try:
            said = f"node {late_id} refused the question: cluster id '{self.cluster_id}' does "
            wait_for(
                lambda: all(said in self.log_tail(n, 200) for n in early),
                30.0,
                "the early nodes naming the late node's other cluster_id",
            )
        finally:
            node.kill()
            node.wait(10)


def test_a_first_start_names_a_node_of_another_cluster(tmp_path: Path) -> None:
    """Found by an operator trial: a node configured with another cluster_id at a first
    start was only "did not answer" in the others' logs; they now say what it answered,
    and the cluster starts once the node runs on the cluster's config."""
    cluster = _FirstStartWithTheLateNodeOfAnotherCluster(tmp_path / "c", nodes=3, shards=1)
    try:
        cluster.start(deadline_s=90.0, settle_s=0)
        assert cluster.status_all()
    finally:
        cluster.stop(grace_s=3.0)
        cluster.close()


class _StoppedOnceDatabasesExist(LocalCluster):
    """`paxoskv cluster start` stopped (Ctrl-C, a node failing, the deadline) as soon as
    every node's new RocksDB exists, before the nodes are ready."""

    def _wait_ready(self, name: str, end: float) -> None:
        current = [self.config.node_data_dir(n) / "db" / "CURRENT" for n in self.config.nodes]
        wait_for(lambda: all(p.exists() for p in current), 30.0, "the nodes' databases")
        raise KeyboardInterrupt


def test_a_first_start_stopped_part_way_starts_again(tmp_path: Path, kv_of: Any) -> None:
    """Found by review: the nodes' databases existed, so the next start passed no
    --bootstrap, and every node that had not recorded its identity yet was refused as one
    that lost its data: the cluster could never start."""
    first = _StoppedOnceDatabasesExist(tmp_path / "c", nodes=3, shards=1)
    try:
        with pytest.raises(KeyboardInterrupt):
            first.start(deadline_s=30.0)
    finally:
        first.stop(grace_s=3.0)
        first.close()
    again = LocalCluster(tmp_path / "c")
    try:
        again.start(deadline_s=60.0, settle_s=0)
        kv_ = kv_of(again)
        assert kv_.get(kv_.put(b"b-after-a-stopped-start", b"1").key) == b"1"
    finally:
        again.stop(grace_s=3.0)
        again.close()


def test_crashed_follower_catches_up_after_restart(
    cluster: LocalCluster, kv_of: Any, writer_of: Any
) -> None:
    """kill -9 a follower of every group, keep writing (a majority is still up), restart it:
    its replicas learn every write they missed (stale_ok reads on it show them all)."""
    kv_ = kv_of(cluster)
    leaders = {cluster.wait_for_leader(g) for g in (1, 2, 3)}
    followers = [n for n in cluster.names if n not in leaders]
    victim = followers[0] if followers else cluster.names[-1]
    with writer_of(cluster, PREFIXES) as writer:
        writer.wait_acks(30)
        cluster.kill(victim)
        writer.wait_acks(len(writer.acks) + 90, deadline_s=30.0)
        acked = list(writer.acks)
    cluster.restart(victim)
    cluster.wait_healthy(30.0)

    def caught_up() -> bool:
        for a in acked:
            got = kv_.get_at(victim, a.key, stale_ok=True)
            if got.error.code != kv.OK or got.value != a.value:
                return False
        return True

    t0 = time.monotonic()
    wait_for(caught_up, 30.0, f"{victim} to catch up on {len(acked)} writes")
    print(f"\n{victim} caught up on {len(acked)} writes in {time.monotonic() - t0:.2f} s")


def test_a_start_that_runs_out_of_time_says_which_option_and_stops_its_nodes(
    tmp_path: Path,
) -> None:
    """Found by review: "n1 printed no ready line in time", without the option to raise,
    and without saying that the nodes it launched were stopped."""
    cluster = LocalCluster(tmp_path / "c", nodes=3, shards=1)
    try:
        with pytest.raises(ClusterError, match=r"raise `--timeout`.*; the start stopped n1, "):
            cluster.start(deadline_s=0.01)
        assert not any(cluster.is_running(name) for name in cluster.names)
    finally:
        cluster.stop(grace_s=3.0)
        cluster.close()
