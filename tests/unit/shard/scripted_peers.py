"""Node 1's `NodeCore` in a three-node cluster whose peers' answers a test writes by hand:
for the node rules that hang on the moment a campaign is won."""

from __future__ import annotations

import random

from paxos import Ballot, Role
from paxos.messages import (
    Heartbeat,
    HeartbeatAck,
    Message,
    Prepare,
    PreVote,
    PreVoteReply,
    Promise,
)
from router.shard_map import NodeAddress, bootstrap
from shard.config import PaxosSettings
from shard.disk import MemoryNodeDisk
from shard.execute import execute_cycle
from shard.node import NodeCore, TxnSettings
from tests.unit.shard.test_node_core import CLUSTER, WALL0

TICK_S = 0.01


class NodeOneOfThree:
    """Node 1 of nodes 1-3 with one data group, time advanced by hand; what it sends is
    kept in `outbox` until a test answers or drops it."""

    def __init__(self, txn_settings: TxnSettings | None = None) -> None:
        nodes = [
            NodeAddress(node_id=i, name=f"n{i}", client_addr=f"x:{i}", peer_addr=f"x:{i}")
            for i in (1, 2, 3)
        ]
        self.disk = MemoryNodeDisk()
        self.core = NodeCore(
            cluster_id=CLUSTER,
            node_id=1,
            bootstrap_map=bootstrap(nodes, [], 3),
            disk=self.disk,
            paxos_settings=PaxosSettings(),
            rng=random.Random(1),
            request_timeout_s=5.0,
            txn_settings=txn_settings or TxnSettings(),
        )
        self.outbox: list[tuple[int, Message]] = []
        self.now = 0.0
        self.wall = WALL0

    def tick(self) -> None:
        self.now += TICK_S
        self.wall += int(TICK_S * 1e9)
        self.core.tick(self.now, self.wall)

    def cycle(self) -> None:
        while execute_cycle(self.core, self.disk, self._send):
            pass

    def _send(self, group_id: int, msgs: list[Message]) -> None:
        self.outbox.extend((group_id, m) for m in msgs)

    def take_sent(self) -> list[tuple[int, Message]]:
        sent, self.outbox[:] = list(self.outbox), []
        return sent

    def campaign_until_prepared(self, group_id: int) -> Prepare:
        """Tick until `group_id`'s replica sends Prepares (node 2 grants its pre-votes);
        the Prepare to node 2, unanswered."""
        for _ in range(10_000):
            self.tick()
            self.cycle()
            for sender, msg in self.take_sent():
                if sender != group_id or msg.dst != 2:
                    continue
                if isinstance(msg, Prepare):
                    return msg
                if isinstance(msg, PreVote):
                    granted = PreVoteReply(
                        src=2, dst=1, ballot=Ballot(0, 0), seq=msg.seq, granted=True
                    )
                    self.core.step(group_id, granted)
        raise AssertionError(f"group {group_id} never campaigned")

    def promise_from_2(self, group_id: int, prepare: Prepare) -> None:
        """Node 2's Promise to `prepare`, from an empty log: node 1 wins the campaign."""
        promise = Promise(
            src=2,
            dst=1,
            ballot=prepare.ballot,
            from_slot=prepare.from_slot,
            accepted=(),
            chosen_watermark=0,
            log_start=1,
        )
        self.core.step(group_id, promise)
        assert self.core.hosts[group_id].replica.role is Role.LEADER

    def heartbeats_acked_by_2(self, group_id: int) -> None:
        """Node 2 acknowledges every heartbeat of `group_id` sent so far, caught up with
        them; the rest of the outbox is dropped."""
        for sender, msg in self.take_sent():
            if sender == group_id and msg.dst == 2 and isinstance(msg, Heartbeat):
                ack = HeartbeatAck(
                    src=2,
                    dst=1,
                    ballot=msg.ballot,
                    seq=msg.seq,
                    chosen_watermark=msg.chosen_watermark,
                )
                self.core.step(group_id, ack)
