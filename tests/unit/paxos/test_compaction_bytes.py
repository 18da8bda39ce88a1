"""The held log stays bounded in bytes, whatever the batch size (not only in slots)."""

from __future__ import annotations

import random

from paxos import MemoryStorage, Replica, ReplicaConfig, Role


def single_voter_leader(config: ReplicaConfig) -> tuple[Replica, MemoryStorage, float]:
    """A one-voter replica run until it leads with a valid lease; (replica, storage, now)."""
    storage = MemoryStorage()
    replica = Replica(config, storage.load(), 0, random.Random(1))
    now = 0.0
    while replica.role is not Role.LEADER or not replica.has_valid_lease(now):
        now += 0.05
        replica.tick(now)
        while replica.has_ready():
            ready = replica.ready()
            storage.save(ready.persist)
            replica.advance(ready)
    return replica, storage, now


def test_big_batches_trigger_compaction_by_bytes() -> None:
    config = ReplicaConfig(
        node_id=1,
        voters=(1,),
        compact_threshold=1_000,
        compact_keep=100,
        compact_threshold_bytes=200_000,
    )
    replica, storage, _ = single_voter_leader(config)
    applied = 0
    for i in range(200):
        replica.propose(bytes([i % 256]) * 10_000)  # one 10 kB command per slot
        while replica.has_ready():
            ready = replica.ready()
            storage.save(ready.persist)
            applied += len(ready.committed)
            replica.advance(ready)
    status = replica.status()
    assert applied >= 199
    # 200 slots of 10 kB = 2 MB were applied; far fewer than the slot threshold, yet the log
    # was compacted to stay near the byte limit.
    assert status.log_start > 100, status
    held = sum(len(c) for _, value in storage.load().accepted.values() for c in value)
    assert held <= 2 * config.compact_threshold_bytes
