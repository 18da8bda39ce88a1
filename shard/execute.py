"""execute_cycle: the one legal order of executing a node's Ready batches.

Shared by the real runtime and the simulator, so both run exactly the same sequence:
send what needs no persist, persist every group in ONE write (group commit; synced unless
it carries nothing but chosen watermarks, see PersistBatch.needs_sync), send the votes that
needed it, apply every chosen slot into ONE engine batch (unsynced: the Paxos log is durable
and a crash re-applies; the applied index rides in the same batch), write it, then answer
clients and advance the replicas.

`background_cycle` runs, once per wake of the shell, the paced steps of snapshot builds and
restores that span many wakes (`NodeCore.background`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from paxos import PersistBatch, Ready
from paxos.messages import Message
from shard.node import NodeCore, NodeDisk
from shard.node_records import GroupHost

Send = Callable[[int, Sequence[Message]], None]


def execute_cycle(core: NodeCore, disk: NodeDisk, send: Send) -> bool:
    """Run one cycle; returns False when no group had anything to do."""
    readies = start_cycle(core, send)
    if not readies:
        return False
    persist_cycle(core, disk, send, readies)
    apply_cycle(core, disk, readies)
    return True


def start_cycle(core: NodeCore, send: Send) -> list[tuple[GroupHost, Ready]]:
    """First step: collect every group's Ready and send what needs no persist.

    A shell may yield between the steps so that those messages (a leader's Accepts) leave
    while the fsync of `persist_cycle` runs, instead of after it.
    """
    readies = core.collect()
    for host, ready in readies:
        if ready.messages:
            send(host.group_id, ready.messages)
    return readies


def persist_cycle(
    core: NodeCore, disk: NodeDisk, send: Send, readies: list[tuple[GroupHost, Ready]]
) -> bool:
    """Second step: persist (one write), then send the votes; True if any vote was sent.

    A shell may yield after it so that the votes (a follower's Accepted, on the leader's
    critical path) leave before `apply_cycle` writes and answers, instead of after it.
    """
    batches = cycle_persists(readies)
    if batches:
        disk.persist(batches)
    return send_votes(send, readies)


def cycle_persists(readies: list[tuple[GroupHost, Ready]]) -> list[tuple[int, PersistBatch]]:
    """What the second step writes: every group's non-empty persist batch, for ONE write."""
    return [(h.group_id, r.persist) for h, r in readies if not r.persist.is_empty()]


def send_votes(send: Send, readies: list[tuple[GroupHost, Ready]]) -> bool:
    """The second step's end, once its write is durable: send the messages that waited for
    it; True if any was sent."""
    sent = False
    for host, ready in readies:
        if ready.messages_after_persist:
            send(host.group_id, ready.messages_after_persist)
            sent = True
    return sent


def apply_cycle(core: NodeCore, disk: NodeDisk, readies: list[tuple[GroupHost, Ready]]) -> None:
    """Last step: apply every chosen slot in one unsynced batch, answer, advance."""
    batch = disk.engine.new_batch()
    core.apply(readies, batch)
    if len(batch):
        disk.engine.write(batch, sync=False)
    core.answer(readies)


def background_cycle(core: NodeCore, disk: NodeDisk) -> bool:
    """One paced step of the snapshot builds and restores, if one is due; True if it ran.

    Its writes are unsynced like an apply's: the next synced persist makes them durable, and
    a restore's replica sends nothing that depends on them until it is done.
    """
    if not core.background_due():
        return False
    batch = disk.engine.new_batch()
    core.background(batch)
    if len(batch):
        disk.engine.write(batch, sync=False)
    core.answer(())
    return True
