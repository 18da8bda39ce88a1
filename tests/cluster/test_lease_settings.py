"""Real processes: nodes configured with different leases, as in a rolling change of
`[paxos]` (each machine's copy of the config edited and its node restarted in turn).

Found by an operator trial: a leader configured with `lease_ms = 900` among followers with
the default 120 served stale linearizable reads for about 580 ms after the others, cut off
from it, had elected a new leader and acknowledged a newer value. A leader's lease now lasts
the shortest promise of the quorum that renewed it (paxos/replica.py rule 6); the unit
scenarios are in tests/unit/paxos/test_mixed_leases.py, the simulator's in its
`mixed_leases` profile.
"""

from __future__ import annotations

import re
import time
from typing import Any

import pytest

from router import kv_pb2 as kv
from shard.chaos.netns import ChaosCluster
from shard.cluster import wait_for
from shard.faults import FaultsClient

pytestmark = pytest.mark.cluster

GROUP = 1
LONG = {"lease_ms": 900, "election_timeout_min_ms": 1000, "election_timeout_max_ms": 1200}


def _restart_with_long_lease(cluster: ChaosCluster, name: str) -> None:
    """One step of a rolling change: `name` restarts on a config with the longer lease,
    then the file is put back (nodes read it only as they start)."""
    original = cluster.config_path.read_text()
    changed = original
    for setting, value in LONG.items():
        changed, count = re.subn(rf"(?m)^{setting} = \d+$", f"{setting} = {value}", changed)
        assert count == 1, setting
    cluster.stop_node(name)
    cluster.config_path.write_text(changed)
    try:
        cluster.restart(name)
    finally:
        cluster.config_path.write_text(original)


def test_a_leader_with_a_longer_lease_serves_no_stale_read_once_cut_off(
    faulty_cluster: ChaosCluster, kv_of: Any
) -> None:
    cluster = faulty_cluster
    old = cluster.wait_for_leader(GROUP)
    _restart_with_long_lease(cluster, old)
    # It leads again: the nodes hand each group back to its preferred leader.
    wait_for(lambda: cluster.leader_of(GROUP, timeout_s=0.5) == old, 30.0, f"{old} to lead again")
    kv_ = kv_of(cluster)
    key = b"m-leader-pointer"
    kv_.put(key, b"old")
    others = [n for n in cluster.names if n != old]
    ids = {n: cluster.node(n).id for n in cluster.names}
    FaultsClient.call(cluster.channel(old), {"op": "partition", "peers": [ids[n] for n in others]})
    for name in others:
        FaultsClient.call(cluster.channel(name), {"op": "partition", "peers": [ids[old]]})
    cut_at = time.monotonic()
    new = cluster.wait_for_leader(GROUP, deadline_s=20.0, not_on=old)
    put = kv.PutRequest(header=kv_.header(GROUP), key=key, value=b"new")
    wait_for(
        lambda: cluster.stub(new).Put(put, timeout=2.0).error.code == kv.OK,
        10.0,
        f"{new} to acknowledge the new value",
    )
    acked_after_s = time.monotonic() - cut_at
    # The old leader's own lease would still run (900 ms from its last renewal): hammer it
    # with linearizable reads.
    answers = kv_.reads_at(old, key, for_s=1.0, timeout_s=0.3)
    stale = [a for a in answers if a.error.code == kv.OK and a.value != b"new"]
    assert not stale, (
        f"{old} (lease_ms 900, followers 120) served {len(stale)} stale read(s) after {new} "
        f"acknowledged the new value {acked_after_s:.2f} s into the partition"
    )
    assert answers and all(
        a.error.code in (kv.OK, kv.NOT_LEADER, kv.UNAVAILABLE) for a in answers
    ), answers[:3]
    for name in cluster.names:
        FaultsClient.call(cluster.channel(name), {"op": "heal"})
    wait_for(lambda: kv_.get(key) == b"new", 20.0, "the new value to read back once healed")
