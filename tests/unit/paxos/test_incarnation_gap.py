"""Peers refuse a node whose data came back in an incarnation no rebuild made
(shard/node_identity.py), with the Paxos replicas of the `Group` harness: a value chosen by
{Z, X} is not chosen a second time by {Y, X after its data was lost and it was started with
--bootstrap} when Y knew X's earlier incarnation. When Y never took it (Y's own first start
came late), Y takes the new one as X's first and the slot is chosen twice: the gap
docs/ARCHITECTURE.md ("A node's data") describes (found by review; strict xfail)."""

from __future__ import annotations

from pathlib import Path

import pytest

from paxos import Role
from paxos.messages import Message
from shard.node_identity import NodeIdentity, admit_peer, node_incarnation, open_node_disk
from tests.unit.paxos.test_rebuild import chosen_by_1_and_2, lose_disk

# Replica ids of the Group harness are node ids: 1 = Z (leads), 2 = X (loses its data),
# 3 = Y (never reached by X before the loss, in the open case).
Z, X, Y = 1, 2, 3


@pytest.mark.parametrize(
    "y_saw_x0",
    [
        pytest.param(
            False,
            marks=pytest.mark.xfail(
                strict=True,
                reason="open: a peer that never took the earlier incarnation takes the new one",
            ),
        ),
        True,
    ],
)
def test_a_wiped_node_bootstrapped_again_gets_no_vote_counted(
    tmp_path: Path, y_saw_x0: bool
) -> None:
    ident = {i: NodeIdentity("c", i, f"n{i}") for i in (Z, X, Y)}
    disks = {}
    # First start of X and Z; Y is down (it will do its own first start later).
    disks[Z] = open_node_disk(tmp_path / "z", ident[Z], first_start=True)
    x_disk = open_node_disk(tmp_path / "x0", ident[X], first_start=True)
    x0 = node_incarnation(x_disk.db)
    x_disk.close()
    # X's stream to Z is accepted (this is how X's Accepted reached leader Z).
    assert admit_peer(disks[Z].db, X, x0) == ""
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
        assert admit_peer(disks[Y].db, X, x0) == ""
    # Z refuses X's new incarnation, as the commit intends ...
    assert admit_peer(disks[Z].db, X, x1) != ""
    # ... Y has no record of X and admits it.
    y_admits_x = admit_peer(disks[Y].db, X, x1) == ""
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
        "(Y admitted X's new non-rebuilt incarnation: it had no record of X)"
    )
