"""Peers refuse a node whose data came back in an incarnation no rebuild made
(shard/node_identity.py), with the Paxos replicas of the `Group` harness: a value chosen by
{Z, X} is not chosen a second time by {Y, X after its data was lost and it was started with
--bootstrap}. When Y knew X's earlier incarnation it refuses the new one at once. When Y
never took it (Y's own first start came late), Y asks every other node at this first
contact: Z says it knew another one, or, down, does not answer and Y waits. Before that
question (found by review), Y took the new incarnation as X's first and the slot was chosen
twice."""

from __future__ import annotations

from pathlib import Path

import pytest

from paxos import Role
from paxos.messages import Message
from shard.node_identity import (
    NodeIdentity,
    PeerRecords,
    admit_peer,
    asks_others,
    node_incarnation,
    open_node_disk,
    recorded_incarnation,
    token_digest,
)
from tests.unit.paxos.test_rebuild import chosen_by_1_and_2, lose_disk

# Replica ids of the Group harness are node ids: 1 = Z (leads), 2 = X (loses its data),
# 3 = Y (never reached by X before the loss, in the open case).
Z, X, Y = 1, 2, 3


@pytest.mark.parametrize(("y_saw_x0", "z_answers"), [(True, True), (False, True), (False, False)])
def test_a_wiped_node_bootstrapped_again_gets_no_vote_counted(
    tmp_path: Path, y_saw_x0: bool, z_answers: bool
) -> None:
    ident = {i: NodeIdentity("c", i, f"n{i}") for i in (Z, X, Y)}
    disks = {}
    # First start of X and Z; Y is down (it will do its own first start later).
    disks[Z] = open_node_disk(tmp_path / "z", ident[Z], first_start=True)
    x_disk = open_node_disk(tmp_path / "x0", ident[X], first_start=True)
    x0 = node_incarnation(x_disk.db)
    x_disk.close()
    # X's stream to Z is accepted (this is how X's Accepted reached leader Z).
    assert admit_peer(disks[Z].db, X, x0).refusal == ""
    g = chosen_by_1_and_2()  # b"v" chosen at slot 1 by Z and X; Y heard nothing
    # X's data is lost; it is started again with --bootstrap (new directory, new incarnation).
    x_disk = open_node_disk(tmp_path / "x1", ident[X], first_start=True)
    x1 = node_incarnation(x_disk.db)
    x_disk.close()
    assert not x1.rebuilt and x1.token != x0.token
    lose_disk(g, X, 0.5, rebuilding=False)
    # Y now does its own (legitimate) first start.
    disks[Y] = open_node_disk(tmp_path / "y", ident[Y], first_start=True)
    if y_saw_x0:
        assert admit_peer(disks[Y].db, X, x0).refusal == ""
    # Z refuses X's new incarnation: it knew another one.
    assert admit_peer(disks[Z].db, X, x1).refusal != ""
    # Y asks Z at a first contact (as the runtime does, shard/runtime.py `_admit_peer`).
    assert asks_others(disks[Y].db, X, x1) is not y_saw_x0
    z_record = recorded_incarnation(disks[Z].db, X)
    assert z_record == token_digest(x0.token)
    others = PeerRecords({Z: z_record}) if z_answers else PeerRecords(unanswered=[Z])
    y_admits = admit_peer(disks[Y].db, X, x1, others)
    assert y_admits.refusal and y_admits.for_now is (not y_saw_x0 and not z_answers)
    y_admits_x = y_admits.refusal == ""
    for d in disks.values():
        d.close()

    # Z goes down (one node: within the fault model). Deliver exactly what the transport
    # would: a message from src reaches dst only if dst admits src's stream.
    admitted = {(X, Y): y_admits_x, (Y, X): True}  # X's fresh disk admits Y too

    def keep(m: Message) -> bool:
        return admitted.get((m.src, m.dst), False)

    g.idle(X, 1.0)
    g.idle(Y, 1.0)
    g.stabilize(keep=keep)
    if g.r(Y).role is Role.LEADER:
        g.r(Y).propose(b"w")
        g.stabilize(keep=keep)
        g.heartbeat(Y, keep=keep)
    assert g.chosen(Z) == [(b"v",)]
    # Agreement: slot 1 must not be chosen as anything but b"v" anywhere.
    assert g.chosen(Y) in ([], [(b"v",)]), (
        f"slot 1 chosen twice: b'v' by {{Z, X}}, {g.chosen(Y)} by {{Y, wiped X}} "
        "(Y admitted X's new non-rebuilt incarnation)"
    )
