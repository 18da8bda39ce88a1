"""report.json and the human summary of one chaos run.

The report is the run's verdict: `valid` is True only when the history is well formed, the
workload's checker found no anomaly (and was conclusive), no acknowledged write was lost,
and the cluster recovered after the faults healed. `exit_code` maps it for the CLI:

====  ======================================================================
code  meaning
====  ======================================================================
0     valid
3     anomalies, acknowledged writes lost, or a malformed history
4     the cluster did not recover after healing, or the final reads failed
5     the checker was inconclusive (search budget) but found nothing
====  ======================================================================

1 and 2 stay what they are for every `paxoskv` command, an error and a usage error (no
verdict), so a script never takes a typo for an anomaly (found by a docs review).
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from shard.chaos.history import client_ops, validate

__all__ = [
    "build_report",
    "exit_code",
    "leader_churn",
    "network_text",
    "summary_lines",
    "write_report",
]


def op_counts(history: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Invocations and completions by type, overall and per `f` (final reads apart)."""
    types: Counter[str] = Counter()
    by_f: dict[str, Counter[str]] = {}
    final: Counter[str] = Counter()
    errors: Counter[str] = Counter()
    for op in client_ops(history):
        kind = op["type"]
        if op.get("final"):
            final[kind] += 1
            continue
        types[kind] += 1
        by_f.setdefault(op["f"], Counter())[kind] += 1
        if kind in ("fail", "info") and op.get("error"):
            errors[f"{kind}: {str(op['error']).split(':')[0]}"] += 1
    return {
        "invoked": types["invoke"],
        "ok": types["ok"],
        "fail": types["fail"],
        "info": types["info"],
        "never_completed": types["invoke"] - types["ok"] - types["fail"] - types["info"],
        "by_f": {f: dict(c) for f, c in sorted(by_f.items())},
        "errors": dict(errors.most_common(12)),
        "final_reads": dict(final),
    }


def build_report(
    *,
    options: dict[str, Any],
    history: Sequence[dict[str, Any]],
    check: dict[str, Any] | None,
    faults: Sequence[dict[str, Any]],
    network: dict[str, Any],
    final_recovery_s: float | None,
    harness_error: str | None,
    wall_s: float,
    churn: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The report dict (see the module doc for `valid`)."""
    problems = validate(history)
    counts = op_counts(history)
    lost = None if check is None else check.get("lost_writes")
    anomalies = _anomaly_count(check)
    conclusive = check is not None and check.get("valid") in (True, False)
    valid = (
        harness_error is None
        and not problems
        and check is not None
        and check.get("valid") is True
        and not lost
    )
    recoveries = [f["recovery_s"] for f in faults if f.get("recovery_s") is not None]
    return {
        "valid": valid,
        "options": options,
        "network": network,
        "ops": counts,
        "faults_injected": sum(1 for f in faults if not f.get("error")),
        "faults": list(faults),
        "recovery": {
            "after_each_fault_s": recoveries,
            "max_after_fault_s": max(recoveries) if recoveries else None,
            "not_recovered": sum(
                1 for f in faults if f.get("recovery_s") is None and not f.get("error")
            ),
            "after_final_heal_s": final_recovery_s,
        },
        "anomalies": anomalies,
        "anomaly_types": [] if check is None else _anomaly_types(check),
        "lost_writes": None if lost is None else len(lost),
        "lost_write_examples": [] if not lost else lost[:10],
        "leader_churn": churn,
        "checker_conclusive": conclusive,
        "check": check,
        "history_problems": problems,
        "harness_error": harness_error,
        "wall_s": round(wall_s, 2),
    }


def _anomaly_types(check: dict[str, Any]) -> list[str]:
    if "anomaly_types" in check:
        return list(check["anomaly_types"])
    return sorted({a.get("type", "anomaly") for a in check.get("anomalies", [])})


def _anomaly_count(check: dict[str, Any] | None) -> int:
    if check is None:
        return 0
    if "anomaly_counts" in check:
        return int(sum(check["anomaly_counts"].values()))
    anomalies = check.get("anomalies") or []
    if isinstance(anomalies, dict):  # type -> examples (Elle)
        return sum(len(examples) for examples in anomalies.values())
    return len(anomalies)


EXIT_INVALID = 3
EXIT_NOT_RECOVERED = 4
EXIT_INCONCLUSIVE = 5


def exit_code(report: dict[str, Any]) -> int:
    if report["valid"]:
        return 0
    if report["anomalies"] or report["lost_writes"] or report["history_problems"]:
        return EXIT_INVALID
    if report["harness_error"]:
        return EXIT_NOT_RECOVERED
    return EXIT_INCONCLUSIVE


def network_text(network: dict[str, Any], nemesis: str) -> str:
    """How the run makes partitions, if it makes any, and whether the nodes' fault hook is
    on (found by a new user's review: `partitions via -` for `--nemesis kill`)."""
    kind = network.get("partitions")
    partitions = f"partitions via {kind}" if kind else f"partitions: none (nemesis {nemesis})"
    return f"{partitions}; fault hook {'on' if network.get('fault_hook') else 'off'}"


def summary_lines(report: dict[str, Any]) -> list[str]:
    opts = report["options"]
    ops = report["ops"]
    rec = report["recovery"]
    verdict = "VALID" if report["valid"] else "INVALID"
    net = report["network"]
    lines = [
        f"chaos {opts['workload']} / nemesis {opts['nemesis']}: {verdict} "
        f"(seed {opts['seed']}, {opts['duration_s']:g} s, {opts['clients']} clients, "
        f"{report['wall_s']:.0f} s wall)",
        f"  ops: {ops['invoked']} invoked, {ops['ok']} ok, {ops['fail']} fail, "
        f"{ops['info']} info; final reads {ops['final_reads'].get('ok', 0)} ok",
        f"  faults injected: {report['faults_injected']} "
        f"({', '.join(sorted({f['kind'] for f in report['faults']})) or 'none'}); "
        f"{network_text(net, opts['nemesis'])}",
        f"  recovery: max {seconds_text(rec['max_after_fault_s'])} after a fault, "
        f"{seconds_text(rec['after_final_heal_s'])} after the final heal"
        + (f", {rec['not_recovered']} faults without recovery" if rec["not_recovered"] else ""),
        f"  leader elections (node logs): {(report.get('leader_churn') or {}).get('elections', '-')}",
        f"  checker: {report['check']['summary'] if report['check'] else '-'}",
        f"  anomalies: {report['anomalies']} {report['anomaly_types'] or ''}; acknowledged "
        f"writes lost: {'n/a' if report['lost_writes'] is None else report['lost_writes']}",
    ]
    if report["history_problems"]:
        lines.append(f"  history problems: {report['history_problems'][:3]}")
    if report["harness_error"]:
        lines.append(f"  harness error: {report['harness_error']}")
    return lines


def leader_churn(logs_dir: Path) -> dict[str, Any]:
    """Leader elections seen in the node logs (JSON lines "group role", best effort): how
    many times some replica became leader, per group and per minute of the run. Frequent
    elections with every node up are spurious (timeouts too short for the load)."""
    per_group: Counter[int] = Counter()
    times: list[float] = []
    for path in sorted(logs_dir.glob("*.log")):
        with path.open(errors="replace") as f:
            for line in f:
                if not line.startswith("{") or '"group role"' not in line:
                    continue
                try:
                    entry = json.loads(line)
                except ValueError:
                    continue
                if entry.get("role") == "leader" and isinstance(entry.get("group"), int):
                    per_group[entry["group"]] += 1
                    times.append(float(entry.get("ts", 0.0)))
    if not times:
        return {"elections": 0}
    start = min(times)
    per_minute: Counter[int] = Counter(int((t - start) // 60) for t in times)
    return {
        "elections": sum(per_group.values()),
        "per_group": {str(g): n for g, n in sorted(per_group.items())},
        "per_minute": [per_minute.get(m, 0) for m in range(max(per_minute) + 1)],
    }


def seconds_text(value: float | None) -> str:
    """`value` seconds as the run's lines and its summary show them ("-": none)."""
    return "-" if value is None else f"{value:.2f} s"


def write_report(path: Path, report: dict[str, Any]) -> None:
    path.write_text(json.dumps(report, indent=2, default=str) + "\n")
