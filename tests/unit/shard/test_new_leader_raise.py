"""Node rule 3 whatever order the driver calls the core in (found by review).

A new leader's timestamps start above anything its predecessor served (the raise by twice
the clock offset). The raise was taken when the cycle collected the groups' Readies, so a
command stamped between the election (in a step or a tick) and that collect went out
below it: the simulator's wake submitted client requests there, and the node's own
duties, which run in the tick, proposed there in the real shell too.
"""

from __future__ import annotations

from paxos import Role
from router import kv_pb2 as kv
from shard.execute import execute_cycle
from shard.node import TxnSettings
from tests.unit.shard.scripted_peers import NodeOneOfThree
from tests.unit.shard.test_node_core import WALL0, OneNode, header
from txn.hlc import LOGICAL_BITS

OFFSET_S = 0.2


def test_a_write_stamped_before_the_next_cycle_of_a_new_leader_is_raised() -> None:
    node = OneNode(elect=False, max_clock_offset_s=OFFSET_S)
    now, wall = 0.0, WALL0
    while not all(h.replica.role is Role.LEADER for h in node.core.hosts.values()):
        now += 0.01
        wall += 10_000_000
        node.core.tick(now, wall)  # the elections happen here; no cycle has run yet
    answers: list[kv.Response] = []
    submitted_wall = wall
    put = kv.PutRequest(header=header(1), key=b"apple", value=b"v")
    node.core.submit(kv.Request(put=put), answers.append)
    while not answers:
        now += 0.01
        wall += 10_000_000
        node.core.tick(now, wall)
        while execute_cycle(node.core, node.disk, lambda g, m: None):
            pass
    version_us = answers[0].put.version >> LOGICAL_BITS
    assert version_us >= (submitted_wall + 2 * int(OFFSET_S * 1e9)) // 1000


def test_a_write_submitted_right_after_a_promise_elected_the_node_is_raised() -> None:
    """The same when the election is a peer's Promise delivered by `step` (three replicas;
    the simulator submitted requests between its steps and the next collect)."""
    node = NodeOneOfThree(TxnSettings(max_clock_offset_s=OFFSET_S))
    node.promise_from_2(1, node.campaign_until_prepared(1))
    core, group, wall = node.core, node.core.hosts[1], node.wall
    answers: list[kv.Response] = []
    submitted_wall = wall
    put = kv.PutRequest(header=header(1), key=b"apple", value=b"v")
    core.submit(kv.Request(put=put), answers.append)  # before any collect saw the leader
    stamped = [p.ts for p in group.proposals.values()] or [0]
    assert max(stamped) >> LOGICAL_BITS >= (submitted_wall + 2 * int(OFFSET_S * 1e9)) // 1000
