"""`paxoskv status`: the cluster's groups and nodes from their Status answers, as a table
for people or as JSON for scripts (`--json`).

Each group is described from the view of the replica that reports itself leader (the
highest ballot if several do); without one, from the most advanced replica. Its `behind`
compares every replica's own applied index with that view's chosen one.
"""

from __future__ import annotations

from typing import Any

from paxos.ballot import ballot_from_text

__all__ = ["status_report", "status_table"]


def status_report(shard_map: Any, nodes: list[Any]) -> dict[str, Any]:
    """The groups and nodes of `paxoskv status --json`, and `healthy`: every node answered,
    none is refused by its peers, and every group has a leader.

    A group's `leader` is a node name, or None (`leadership` "none": replicas answered,
    none leads; "unknown": none answered); `behind` maps each replica whose applied index
    trails the chosen one to by how many slots (None: it did not answer).
    """
    names = {n.node_id: n.name for n in nodes}
    views: dict[int, list[tuple[int, Any]]] = {}
    for node in nodes:
        if node.status is not None:
            for group in node.status.groups:
                views.setdefault(group.group_id, []).append((node.node_id, group))
    groups = [
        _group_report(shard_map, group_id, views.get(group_id, []), names)
        for group_id in sorted(set(shard_map.group_ids()) | {0})
    ]
    node_reports = [_node_report(node, names) for node in nodes]
    healthy = all(g["leader"] is not None for g in groups) and all(
        n["state"] == "up" for n in node_reports
    )
    return {"healthy": healthy, "groups": groups, "nodes": node_reports}


def _group_report(
    shard_map: Any, group_id: int, seen: list[tuple[int, Any]], names: dict[int, str]
) -> dict[str, Any]:
    if group_id == 0:
        start, end, label, replicas = None, None, "(meta)", shard_map.meta_replicas
    else:
        desc = shard_map.group(group_id)
        start, end, label, replicas = desc.start, desc.end, desc.label, desc.replicas
    roles = {nid: g.role for nid, g in seen}
    report: dict[str, Any] = {
        "group_id": group_id,
        "range": label,
        "start_hex": None if start is None else start.hex(),
        "end_hex": None if end is None else end.hex(),
        "replicas": [
            {"name": names.get(r, str(r)), "role": roles.get(r, "unknown")} for r in replicas
        ],
        "leader": None,
        "leadership": "unknown",
        "ballot": None,
        "chosen_index": None,
        "applied_index": None,
        "behind": {},
    }
    if not seen:
        return report
    leaders = [(nid, g) for nid, g in seen if g.role == "leader"]
    if leaders:
        node_id, view = max(leaders, key=lambda item: ballot_from_text(item[1].ballot))
        report["leader"] = names.get(node_id, str(node_id))
        report["leadership"] = "leader"
    else:
        node_id, view = max(seen, key=lambda item: item[1].applied_index)
        report["leadership"] = "none"
    applied = {nid: g.applied_index for nid, g in seen}
    report.update(
        ballot=view.ballot,
        chosen_index=view.chosen_index,
        applied_index=view.applied_index,
        behind={
            names.get(r, str(r)): (None if r not in applied else view.chosen_index - applied[r])
            for r in replicas
            if r not in applied or applied[r] < view.chosen_index
        },
    )
    return report


def _node_report(node: Any, names: dict[int, str]) -> dict[str, Any]:
    status = node.status
    report: dict[str, Any] = {
        "node_id": node.node_id,
        "name": node.name,
        "address": node.address,
        "state": "unreachable",
        "detail": str(node.error),
        "map_version": None,
        "client_bytes_held": None,
        "client_bytes_limit": None,
        "answers_shed": None,
    }
    if status is None:
        return report
    report.update(
        map_version=status.map_version,
        client_bytes_held=status.client_bytes_held,
        client_bytes_limit=status.client_bytes_limit or None,
        answers_shed=status.answers_shed,
    )
    if status.refused_by:
        # Found by an operations review: a node its peers refuse (another secret or shard
        # map, lost data) answered Status and showed "up", exit status 0.
        refusers = ", ".join(names.get(r.node_id, str(r.node_id)) for r in status.refused_by)
        report.update(state="refused", detail=f"by {refusers}: {status.refused_by[0].reason}")
    else:
        report.update(state="up", detail="")
    return report


def status_table(shard_map: Any, nodes: list[Any]) -> tuple[str, bool]:
    """The text of `paxoskv status` (`status_report` as two tables) and `healthy`."""
    report = status_report(shard_map, nodes)
    rows = [_group_row(g) for g in report["groups"]]
    out = _table(
        ["GROUP", "RANGE", "REPLICAS", "LEADER", "BALLOT", "CHOSEN", "APPLIED", "BEHIND"], rows
    )
    node_rows = [
        [str(n["node_id"]), n["name"], n["address"], _client_memory(n), _node_state(n)]
        for n in report["nodes"]
    ]
    out += "\n" + _table(["NODE", "NAME", "ADDRESS", "CLIENT MEMORY", "STATE"], node_rows)
    return out, report["healthy"]


def _group_row(group: dict[str, Any]) -> list[str]:
    # A replica in an unusual role says so: "n3:restoring" (a snapshot), "n2:candidate".
    replicas = ",".join(
        r["name"] + ("" if r["role"] in ("leader", "follower", "unknown") else f":{r['role']}")
        for r in group["replicas"]
    )
    head = [str(group["group_id"]), group["range"], replicas]
    if group["leadership"] == "unknown":
        return [*head, "unknown", "-", "-", "-", "-"]
    # BEHIND: `n3:1024`, `n3:?` when n3 did not answer, or "-": a replica far behind
    # catches up or is about to be sent a snapshot. The nodes answer a few ms apart, so
    # under writes a follower trails by a few slots as a matter of course.
    behind = ",".join(
        f"{name}:{'?' if slots is None else slots}" for name, slots in group["behind"].items()
    )
    return [
        *head,
        group["leader"] or "none",
        group["ballot"],
        str(group["chosen_index"]),
        str(group["applied_index"]),
        behind or "-",
    ]


def _client_memory(node: dict[str, Any]) -> str:
    """What a node's client streams hold of its budget, and the read answers it shed
    (retried by clients): a node that sheds is short of memory for its clients. A node that
    reports no budget (an older version) shows "-"."""
    if not node["client_bytes_limit"]:
        return "-"
    text = f"{node['client_bytes_held'] / (1 << 20):.1f}/{node['client_bytes_limit'] / (1 << 20):.0f} MiB"
    return text + (f", {node['answers_shed']} shed" if node["answers_shed"] else "")


def _node_state(node: dict[str, Any]) -> str:
    if node["state"] == "up":
        return f"up (map v{node['map_version']})"
    if node["state"] == "refused":
        return f"REFUSED {node['detail']}"  # the detail reads "by n1, n2: REASON"
    return f"UNREACHABLE: {node['detail']}"


def _table(header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)) for r in rows]
    head = "  ".join(cell.ljust(w) for cell, w in zip(header, widths, strict=True))
    return "\n".join(line.rstrip() for line in [head, *lines]) + "\n"
