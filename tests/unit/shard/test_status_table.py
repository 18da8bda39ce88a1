"""`paxoskv status`'s table (shard/cli_kv.status_table) from nodes' Status answers."""

from __future__ import annotations

import re

from paxos.ballot import ZERO_BALLOT, Ballot, ballot_from_text
from router import kv_pb2 as kv
from router.client import NodeStatus
from router.shard_map import NodeAddress, ShardMap, bootstrap
from shard.cli_status import status_report, status_table

NAMES = {1: "n1", 2: "n2", 3: "n3", 4: "n4"}


def cluster_map(nodes: int, split_points: list[bytes]) -> ShardMap:
    """The bootstrap map of nodes n1..n`nodes`, three replicas per group."""
    addresses = [
        NodeAddress(node_id=i, name=NAMES[i], client_addr=f"127.0.0.1:{7000 + i}", peer_addr="")
        for i in range(1, nodes + 1)
    ]
    return bootstrap(addresses, split_points, 3)


def node_with(node_id: int, groups: dict[int, tuple[str, str, int, int]]) -> NodeStatus:
    """A node's Status answer: each group's (role, ballot, chosen index, applied index)."""
    status = kv.StatusResponse(
        cluster_id="c",
        node_id=node_id,
        map_version=1,
        groups=[
            kv.GroupStatus(
                group_id=g, role=role, ballot=ballot, chosen_index=chosen, applied_index=applied
            )
            for g, (role, ballot, chosen, applied) in groups.items()
        ],
    )
    return NodeStatus(node_id, NAMES[node_id], f"127.0.0.1:{7000 + node_id}", status, None)


def node(node_id: int, roles: dict[int, str]) -> NodeStatus:
    return node_with(node_id, {g: (role, "2.1", 70, 70) for g, role in roles.items()})


def group_rows(text: str) -> dict[str, dict[str, str]]:
    """The group table's rows by group id, each cell under its column's title."""
    header, *lines = text.split("\n\n")[0].splitlines()
    titles = re.split(r" {2,}", header)
    return {
        line.split()[0]: dict(zip(titles, re.split(r" {2,}", line), strict=True)) for line in lines
    }


def test_a_replica_in_an_unusual_role_says_so() -> None:
    shard_map = cluster_map(3, [b"m"])
    nodes = [
        node(1, {0: "leader", 1: "leader", 2: "follower"}),
        node(2, {0: "follower", 1: "follower", 2: "leader"}),
        node(3, {0: "follower", 1: "restoring", 2: "candidate"}),
    ]
    text, healthy = status_table(shard_map, nodes)
    rows = group_rows(text)
    assert rows["0"]["REPLICAS"] == "n1,n2,n3"
    assert rows["1"]["REPLICAS"] == "n1,n2,n3:restoring"
    assert rows["2"]["REPLICAS"] == "n1,n2,n3:candidate"
    assert healthy


def test_each_node_shows_its_client_memory_and_what_it_shed() -> None:
    shard_map = cluster_map(3, [])
    nodes = [node(i, {0: "leader" if i == 1 else "follower"}) for i in (1, 2, 3)]
    for n in nodes:
        n.status.client_bytes_limit = 1 << 30
    nodes[0].status.client_bytes_held = 3 << 19
    nodes[1].status.answers_shed = 12
    nodes[2] = NodeStatus(3, "n3", "127.0.0.1:7003", None, "connection refused")
    text, _ = status_table(shard_map, nodes)
    cells = [re.split(r" {2,}", line) for line in text.split("\n\n")[1].splitlines()]
    assert cells[0] == ["NODE", "NAME", "ADDRESS", "CLIENT MEMORY", "STATE"]
    assert cells[1][3:] == ["1.5/1024 MiB", "up (map v1)"]
    assert cells[2][3:] == ["0.0/1024 MiB, 12 shed", "up (map v1)"]
    assert cells[3][3:] == ["-", "UNREACHABLE: connection refused"]


def test_a_node_that_reports_no_client_memory_shows_a_dash() -> None:
    """A node of an older version sends no budget: not a budget of 0 MiB (found by review)."""
    shard_map = cluster_map(3, [])
    nodes = [node(i, {0: "leader" if i == 1 else "follower"}) for i in (1, 2, 3)]
    text, _ = status_table(shard_map, nodes)
    cells = [re.split(r" {2,}", line) for line in text.split("\n\n")[1].splitlines()]
    assert [row[3] for row in cells[1:]] == ["-", "-", "-"]


def four_nodes(group_1_role: str) -> list[NodeStatus]:
    """Groups 0-2 over n1..n4: n2 leads group 1 (or is `group_1_role` there), chosen ahead of
    applied; n3 leads group 2, where n1, deposed, still says it leads at a lower ballot and
    has applied more than n3 so far."""
    return [
        node_with(1, {0: ("leader", "2.1", 9, 9), 2: ("leader", "3.1", 48, 48)}),
        node_with(2, {0: ("follower", "2.1", 9, 9), 1: (group_1_role, "4.2", 80, 75)}),
        node_with(
            3,
            {
                0: ("follower", "2.1", 9, 9),
                1: ("follower", "4.2", 80, 70),
                2: ("leader", "5.3", 50, 44),
            },
        ),
        node_with(4, {1: ("follower", "4.2", 79, 70), 2: ("follower", "5.3", 50, 44)}),
    ]


def test_each_group_row_shows_its_own_replicas_leader_ballot_chosen_and_applied() -> None:
    """Found untested by an audit: each group its own replicas, the indexes in their own
    columns, and the row from the highest-ballot leader's view (not the most applied)."""
    text, healthy = status_table(cluster_map(4, [b"m"]), four_nodes("leader"))
    rows = group_rows(text)
    columns = ["REPLICAS", "LEADER", "BALLOT", "CHOSEN", "APPLIED"]
    assert [rows["0"][c] for c in columns] == ["n1,n2,n3", "n1", "2.1", "9", "9"]
    assert [rows["1"][c] for c in columns] == ["n2,n3,n4", "n2", "4.2", "80", "75"]
    assert [rows["2"][c] for c in columns] == ["n1,n3,n4", "n3", "5.3", "50", "44"]
    assert healthy


def test_a_group_without_a_leader_makes_the_status_unhealthy() -> None:
    text, healthy = status_table(cluster_map(4, [b"m"]), four_nodes("candidate"))
    assert group_rows(text)["1"]["LEADER"] == "none"
    assert not healthy


def test_a_node_its_peers_refuse_is_shown_refused_and_the_cluster_unhealthy() -> None:
    """Found by an operations review: a node started with another peer secret (or shard
    map, or after losing its data without --rebuild) answered Status, showed "up" and
    `paxoskv status` exited 0, while it took no part in consensus."""
    shard_map = cluster_map(3, [b"m"])
    roles = {0: "follower", 1: "follower", 2: "follower"}
    nodes = [node(1, {0: "leader", 1: "leader", 2: "leader"}), node(2, roles), node(3, roles)]
    assert status_table(shard_map, nodes)[1]
    reason = "missing or wrong peer secret: every node of the cluster needs the same"
    nodes[2].status.refused_by.extend(
        [kv.PeerRefusal(node_id=1, reason=reason), kv.PeerRefusal(node_id=2, reason=reason)]
    )
    text, healthy = status_table(shard_map, nodes)
    assert not healthy
    (row,) = [line for line in text.splitlines() if line.startswith("3 ")]
    assert f"REFUSED by n1, n2: {reason}" in row


def test_behind_names_each_replica_trailing_the_chosen_index_and_by_how_much() -> None:
    """For an operator: which follower lags (catching up, about to need a snapshot), and
    which one did not answer at all."""
    text, _ = status_table(cluster_map(4, [b"m"]), four_nodes("leader"))
    rows = group_rows(text)
    assert rows["0"]["BEHIND"] == "-"  # n1-n3 all at 9
    assert rows["1"]["BEHIND"] == "n2:5,n3:10,n4:10"  # chosen 80 at n2
    assert rows["2"]["BEHIND"] == "n1:2,n3:6,n4:6"  # chosen 50 at n3; n1 at 48
    nodes = [*four_nodes("leader")[:3], NodeStatus(4, "n4", "127.0.0.1:7004", None, "refused")]
    rows = group_rows(status_table(cluster_map(4, [b"m"]), nodes)[0])
    assert rows["1"]["BEHIND"] == "n2:5,n3:10,n4:?"


def test_the_json_report_holds_the_tables_facts_as_fields() -> None:
    """Found by a fault trial: a script read the leader with awk '{print $4}', and the
    range "[-inf, j)" holds a space, so it read the replicas. `status --json` gives fields."""
    nodes = [*four_nodes("leader")[:3], NodeStatus(4, "n4", "127.0.0.1:7004", None, "refused")]
    nodes[0].status.client_bytes_limit = 1 << 30
    report = status_report(cluster_map(4, [b"m"]), nodes)
    groups = {g["group_id"]: g for g in report["groups"]}
    assert groups[1] == {
        "group_id": 1,
        "range": "[-inf, m)",
        "start_hex": "",
        "end_hex": b"m".hex(),
        "replicas": [
            {"name": "n2", "role": "leader"},
            {"name": "n3", "role": "follower"},
            {"name": "n4", "role": "unknown"},
        ],
        "leader": "n2",
        "leadership": "leader",
        "ballot": "4.2",
        "chosen_index": 80,
        "applied_index": 75,
        "behind": {"n2": 5, "n3": 10, "n4": None},
    }
    assert groups[2]["range"] == "[m, +inf)" and groups[2]["end_hex"] is None  # no end
    assert groups[0]["range"] == "(meta)" and groups[0]["behind"] == {}
    assert groups[2]["leader"] == "n3"  # the highest ballot, not n1's older claim
    assert [n["state"] for n in report["nodes"]] == ["up", "up", "up", "unreachable"]
    assert report["nodes"][0]["client_bytes_limit"] == 1 << 30
    assert report["nodes"][1]["client_bytes_limit"] is None  # none reported: not 0
    assert report["nodes"][3]["detail"] == "refused"
    assert report["healthy"] is False  # n4 unreachable
    candidate = status_report(cluster_map(4, [b"m"]), four_nodes("candidate"))
    group_1 = candidate["groups"][1]
    assert (group_1["leader"], group_1["leadership"]) == (None, "none")
    assert not candidate["healthy"]
    unseen = status_report(cluster_map(3, [b"m"]), [node(1, {0: "leader"})])
    assert unseen["groups"][1]["leadership"] == "unknown" and not unseen["healthy"]


def test_a_ballot_read_from_its_text_orders_as_ballots_do() -> None:
    assert ballot_from_text("10.1") == Ballot(10, 1) > ballot_from_text("9.3")
    assert ballot_from_text(str(Ballot(4, 2))) == Ballot(4, 2)
    for bad in ("", "3", "3.", "a.1", "1.2.3", "-1.2", "\u00b2.1", "1.\u00b2"):
        assert ballot_from_text(bad) == ZERO_BALLOT
