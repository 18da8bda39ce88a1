"""Paxos rules 12 and 13 on whole nodes: a node back from a partition costs no group an
election.

Found while testing snapshot catch-up: a node cut off for 2 s campaigned again and again
(nobody could grant it), so its promised round ran up; back in touch, it nacked each
leader's heartbeat with that round and every leader stepped down, leaving every group it
hosts without a leader for an election timeout (150-300 ms by default). Rule 12: the leader,
whose lease shows a quorum still follows it, takes a higher ballot at once. Rule 13
(pre-vote, on by default): the cut-off node asks before it campaigns, hears no yes, and so
never raises its round; its return changes nothing.
"""

from __future__ import annotations

from paxos.ballot import Ballot
from paxos.messages import Nack, Prepare, PreVote
from router import kv_pb2 as kv
from shard.config import PaxosSettings
from shard.node import NodeCore
from tests.unit.shard.test_node_core import ThreeNodes, put

GROUPS = (0, 1, 2)


def leaders(nodes: ThreeNodes) -> dict[int, list[int]]:
    return {
        g: [i for i, c in nodes.cores.items() if c.hosts[g].replica.role.value == "leader"]
        for g in GROUPS
    }


def test_without_pre_vote_a_leader_retakes_its_group_from_a_rejoining_node() -> None:
    """Rule 12 alone (pre-vote off): the rejoining node's round ran up and it nacks."""
    nodes = ThreeNodes(PaxosSettings(pre_vote=False))
    assert [nodes.leader(g) for g in GROUPS] == [1, 2, 3]  # spread over the nodes
    nodes.cut = 3
    nodes.advance(2.0)
    rounds = [nodes.cores[3].hosts[g].replica.status().promised.round for g in GROUPS]
    assert min(rounds) > 3, rounds  # it campaigned while cut off
    ballots = [nodes.cores[nodes.leader(g)].hosts[g].replica.status().promised for g in (0, 1)]
    nodes.cut = None
    leaderless_ms = 0
    for _ in range(500):
        nodes.advance(0.001)
        # Groups 0 and 1 kept their leaders (1 and 2) through the cut; group 2 may move
        # back to node 3 (its preferred node) by a leadership transfer.
        if any(len(leaders(nodes)[g]) != 1 for g in (0, 1)):
            leaderless_ms += 1
    # One Phase 1 round trip per group (a few ms here), never an election timeout.
    assert leaderless_ms <= 10, leaderless_ms
    assert [nodes.leader(g) for g in (0, 1)] == [1, 2]
    after = [nodes.cores[nodes.leader(g)].hosts[g].replica.status().promised for g in (0, 1)]
    assert all(
        a.round > rounds[g] and a > b for g, (a, b) in enumerate(zip(after, ballots, strict=True))
    )
    assert nodes.call(2, put(b"apple", b"red")).put.error.code == kv.OK
    assert len(leaders(nodes)[2]) == 1


def test_with_pre_vote_a_cut_off_node_keeps_its_round_and_its_return_changes_nothing() -> None:
    nodes = ThreeNodes()
    assert [nodes.leader(g) for g in GROUPS] == [1, 2, 3]
    ballots = {g: nodes.cores[nodes.leader(g)].hosts[g].replica.status().promised for g in (0, 1)}
    rounds = [nodes.cores[3].hosts[g].replica.status().promised.round for g in GROUPS]
    nodes.cut = 3
    nodes.advance(2.0)
    # It asked (its timers ran out ~10 times) but nobody heard it: no round was raised.
    assert [nodes.cores[3].hosts[g].replica.status().promised.round for g in (0, 1)] == rounds[:2]
    nodes.cut = None
    for _ in range(500):
        nodes.advance(0.001)
        assert [leaders(nodes)[g] for g in (0, 1)] == [[1], [2]]
    # The leaders of groups 0 and 1 never needed a new ballot.
    assert {g: nodes.cores[nodes.leader(g)].hosts[g].replica.status().promised for g in (0, 1)} == (
        ballots
    )
    assert nodes.call(2, put(b"apple", b"red")).put.error.code == kv.OK
    assert len(leaders(nodes)[2]) == 1


def test_pre_vote_still_elects_when_a_leader_dies() -> None:
    """Rule 13 keeps elections live: with the leader's node cut off, the others' leases run
    out, they grant each other's pre-votes, and each of its groups elects a new leader."""
    nodes = ThreeNodes()
    assert nodes.leader(0) == 1
    nodes.cut = 1
    nodes.advance(1.0)
    assert leaders(nodes)[0] in ([2], [3])
    assert nodes.call(2, put(b"apple", b"red")).put.error.code == kv.OK


def campaigning(core: NodeCore) -> list[int]:
    """Groups whose replica on `core` asks for votes (a pre-vote or a Prepare) in its Ready."""
    asking = []
    for g in GROUPS:
        ready = core.hosts[g].replica.ready()
        if any(
            isinstance(m, PreVote | Prepare) for m in ready.messages + ready.messages_after_persist
        ):
            asking.append(g)
    return asking


def test_deferred_elections_let_a_stalled_follower_hear_its_leader_first() -> None:
    """NodeCore.defer_elections: a follower whose election timers ran out during a stall
    does not campaign at its next tick when the shell deferred them."""
    for defer in (False, True):
        nodes = ThreeNodes()
        core = nodes.cores[3]
        stalled_until = nodes.now + 1.0
        if defer:
            core.defer_elections(stalled_until)
        core.tick(stalled_until, nodes.wall + 10**9)
        asking = campaigning(core)
        assert (asking == []) is defer, asking


def test_a_leader_without_a_valid_lease_steps_down_on_such_a_nack() -> None:
    """Rule 12's guard: only a leader whose lease shows a quorum follows it re-campaigns;
    one whose lease ran out may have been replaced, so it steps down as before."""
    for lease_valid in (True, False):
        nodes = ThreeNodes()
        replica = nodes.cores[1].hosts[0].replica  # node 1 leads group 0
        ballot = replica.status().promised
        now = nodes.now if lease_valid else nodes.now + 1.0  # no heartbeat acks meanwhile
        replica.observe_time(now)
        assert replica.has_valid_lease(now) is lease_valid
        replica.step(
            Nack(
                src=3, dst=1, ballot=ballot, promised=Ballot(ballot.round + 9, 3), leader_hint=None
            )
        )
        assert replica.role.value == ("candidate" if lease_valid else "follower")


def test_a_group_led_away_from_its_preferred_node_is_handed_back() -> None:
    """Leaders spread over the nodes: a group whose preferred node (its replica the map
    names first) was cut off elects another leader, which hands the group back by a
    leadership transfer once that node is back (within a REBALANCE_S check or two)."""
    nodes = ThreeNodes()
    assert [nodes.leader(g) for g in GROUPS] == [1, 2, 3]
    nodes.cut = 3
    nodes.advance(2.0)
    assert [n for n in leaders(nodes)[2] if n != 3], "nobody took group 2 over"
    nodes.cut = None
    nodes.advance(2.5)
    assert leaders(nodes) == {0: [1], 1: [2], 2: [3]}
