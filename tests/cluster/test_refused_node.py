"""Real processes: a node its peers refuse shows as refused in `paxoskv status`.

Found by an operations review: a node started with another peer secret answered clients and
Status, `paxoskv status` listed it "up" and exited 0, while the other nodes refused its
streams and it took no part in consensus. Now each node reports the peers refusing its
streams (`StatusResponse.refused_by`), and the table says so and exits 1.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from typing import Any

import pytest

from shard.cli import main
from shard.cluster import LocalCluster, wait_for

pytestmark = pytest.mark.cluster


def test_a_node_with_another_peer_secret_is_shown_refused(
    make_cluster: Callable[..., LocalCluster], capsys: Any
) -> None:
    cluster = make_cluster(shards=1)
    cluster.stop_node("n3")
    secret = cluster.config.peer_secret
    other = cluster.config_path.with_name("other-secret.toml")
    other.write_text(cluster.config_path.read_text().replace(secret, "f" * 32))
    seeds = ",".join(cluster.addresses.values())
    with open(cluster.logs_dir / "n3-other-secret.log", "wb") as log:
        node = subprocess.Popen(
            [sys.executable, "-m", "shard.cli", "node", "--config", str(other), "--node-id", "n3"],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:

        def refused_shown() -> bool:
            code = main(["status", "--cluster", seeds, "--timeout", "2"])
            out = capsys.readouterr().out
            return code == 1 and "REFUSED by n1, n2" in out and "peer secret" in out

        wait_for(refused_shown, 20.0, "n3 to show as refused by n1 and n2 in paxoskv status")
    finally:
        node.terminate()
        try:
            node.wait(10)
        except subprocess.TimeoutExpired:
            node.kill()
            node.wait(10)
    # Back on the cluster's config it is accepted again, and status is healthy.
    cluster.restart("n3")
    cluster.wait_healthy(30.0)
    wait_for(
        lambda: main(["status", "--cluster", seeds, "--timeout", "2"]) == 0,
        20.0,
        "paxoskv status to exit 0 once n3 runs on the cluster's config",
    )
