"""Node rule 3 whatever order the driver calls the core in (found by review).

A new leader's timestamps start above anything its predecessor served (the raise by twice
the clock offset). The raise was taken when the cycle collected the groups' Readies, so a
command stamped between the election (in a step or a tick) and that collect went out
below it: the simulator's wake submitted client requests there, and the node's own
duties, which run in the tick, proposed there in the real shell too.
"""

from __future__ import annotations

import random

from paxos import Ballot, Role
from paxos.messages import Message, Prepare, PreVote, PreVoteReply, Promise
from router import kv_pb2 as kv
from router.shard_map import NodeAddress, bootstrap
from shard.config import PaxosSettings
from shard.disk import MemoryNodeDisk
from shard.execute import execute_cycle
from shard.node import NodeCore, TxnSettings
from tests.unit.shard.test_node_core import CLUSTER, WALL0, OneNode, header
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
    nodes = [
        NodeAddress(node_id=i, name=f"n{i}", client_addr=f"x:{i}", peer_addr=f"x:{i}")
        for i in (1, 2, 3)
    ]
    disk = MemoryNodeDisk()
    core = NodeCore(
        cluster_id=CLUSTER,
        node_id=1,
        bootstrap_map=bootstrap(nodes, [], 3),
        disk=disk,
        paxos_settings=PaxosSettings(),
        rng=random.Random(1),
        request_timeout_s=5.0,
        txn_settings=TxnSettings(max_clock_offset_s=OFFSET_S),
    )
    outbox: list[Message] = []
    now, wall = 0.0, WALL0

    def cycle() -> None:
        while execute_cycle(core, disk, lambda g, msgs: outbox.extend(msgs)):
            pass

    group = core.hosts[1]
    while group.replica.role is not Role.LEADER:
        now += 0.01
        wall += 10_000_000
        core.tick(now, wall)
        cycle()
        sent, outbox[:] = list(outbox), []
        # Node 2 answers node 1's pre-votes and Prepares of group 1; nothing else arrives.
        for msg in sent:
            if msg.dst != 2 or not isinstance(msg, PreVote | Prepare):
                continue
            if isinstance(msg, PreVote):
                reply: Message = PreVoteReply(
                    src=2, dst=1, ballot=Ballot(0, 0), seq=msg.seq, granted=True
                )
            else:
                reply = Promise(
                    src=2,
                    dst=1,
                    ballot=msg.ballot,
                    from_slot=msg.from_slot,
                    accepted=(),
                    chosen_watermark=0,
                    log_start=1,
                )
            if core.hosts[1].replica.role is not Role.LEADER:
                core.step(1, reply)
            if group.replica.role is Role.LEADER:
                break
    answers: list[kv.Response] = []
    submitted_wall = wall
    put = kv.PutRequest(header=header(1), key=b"apple", value=b"v")
    core.submit(kv.Request(put=put), answers.append)  # before any collect saw the leader
    stamped = [p.ts for p in group.proposals.values()] or [0]
    assert max(stamped) >> LOGICAL_BITS >= (submitted_wall + 2 * int(OFFSET_S * 1e9)) // 1000
