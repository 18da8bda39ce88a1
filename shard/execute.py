"""execute_cycle: the one legal order of executing a node's Ready batches.

Shared by the real runtime and the simulator, so both run exactly the same sequence:
send what needs no persist, persist every group in ONE synced write (group commit), send the
votes that needed it, apply every chosen slot into ONE engine batch (unsynced: the Paxos log
is durable and a crash re-applies; the applied index rides in the same batch), write it, then
answer clients and advance the replicas.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from paxos.messages import Message
from shard.node import NodeCore, NodeDisk

Send = Callable[[int, Sequence[Message]], None]


def execute_cycle(core: NodeCore, disk: NodeDisk, send: Send) -> bool:
    """Run one cycle; returns False when no group had anything to do."""
    readies = core.collect()
    if not readies:
        return False
    for host, ready in readies:
        if ready.messages:
            send(host.group_id, ready.messages)
    batches = [(h.group_id, r.persist) for h, r in readies if not r.persist.is_empty()]
    if batches:
        disk.persist(batches)
    for host, ready in readies:
        if ready.messages_after_persist:
            send(host.group_id, ready.messages_after_persist)
    batch = disk.engine.new_batch()
    core.apply(readies, batch)
    if len(batch):
        disk.engine.write(batch, sync=False)
    core.answer(readies)
    return True
