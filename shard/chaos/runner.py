"""One chaos run end to end: cluster up, clients and faults, heal, recover, final reads,
check, report.

Theory of operation
-------------------
1. Network. Partitions need separation between node processes. When the nemesis can
   partition and `--net auto` finds network namespaces usable (netns.probe: root and
   iproute2), every node runs in its own namespace (`--net netns`); otherwise partitions go
   through the in-node fault hook (`--net hook`, shard/faults.py), a FALLBACK that drops
   Paxos peer traffic only. The fault hook is also turned on for nemeses that need it
   (crash points in 2PC, duplicated/delayed messages, dropped replies, and `mix`). The
   report's `network` section names what ran.
2. Cluster: a `ChaosCluster` in DIR/cluster (3 nodes, 3 shards by default), started and
   settled.
3. Workload: `--clients` logical clients (each its own `AsyncClient`, seeded RNG) loop on
   `workload.step` until the duration ends; every operation goes to DIR/history.jsonl.
4. Nemesis: a seeded schedule — quiet for `quiet_s`, one fault for `fault_s`, stop it, then
   wait until the cluster recovered (every group has a leader a majority follows and a probe
   write to every group succeeds; the time from the fault's end is its recovery time), and
   again. Blocking cluster calls run in a thread so clients keep going.
5. End: workers finish their current op; the nemesis heals everything; we wait for
   recovery (recorded), then read every key or account with a fresh client (recorded, so the
   checkers see them); stop the cluster; tear the namespaces down.
6. Check the history with the workload's checker, count acknowledged writes lost, write
   DIR/report.json and print a summary (report.py has the exit codes).

Seeds: `--seed` fixes every random choice of the harness (operations, targets, timings of
the schedule); the cluster's own timing is not deterministic, so a seed names a schedule,
not an exact interleaving. The history is what to keep when a run fails.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import secrets
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from shard.chaos import history as histories
from shard.chaos import report as reports
from shard.chaos.history import History, Worker
from shard.chaos.nemesis import (
    Context,
    Fault,
    HookPartitioner,
    MixNemesis,
    Nemesis,
    NetnsPartitioner,
    Partitioner,
    make_nemesis,
)
from shard.chaos.netns import NODE_PORT, ChaosCluster, NetnsNetwork, probe, write_config
from shard.chaos.workloads import WORKLOADS, Workload, shard_prefixes
from shard.config import load_config
from txn.client import AsyncClient

__all__ = ["ChaosError", "ChaosOptions", "recheck", "run"]

PARTITIONING = {"partition", "mix"}
HOOKED = {"crash-2pc", "flaky-net", "drop-replies", "mix"}


class ChaosError(RuntimeError):
    """The run cannot start (bad options, output directory in use, no namespaces)."""


@dataclass
class ChaosOptions:
    workload: str
    nemesis: str
    duration_s: float
    out: Path
    clients: int = 5
    seed: int | None = None
    nodes: int = 3
    shards: int = 3
    net: str = "auto"  # auto | netns | hook | loopback
    timeout_s: float = 3.0
    quiet_s: tuple[float, float] = (1.0, 3.0)
    fault_s: tuple[float, float] = (1.0, 4.0)
    think_s: float = 0.01
    recovery_deadline_s: float = 30.0
    final_deadline_s: float = 60.0


def run(options: ChaosOptions, say: Callable[[str], None] = print) -> dict[str, Any]:
    """Run one chaos test; returns the report (also written to OUT/report.json)."""
    if options.workload not in WORKLOADS:
        raise ChaosError(f"unknown workload {options.workload!r}; one of {', '.join(WORKLOADS)}")
    nemesis = make_nemesis(options.nemesis)
    if options.seed is None:
        options.seed = secrets.randbelow(2**31)
    out = Path(options.out).resolve()
    if (out / "cluster").exists() or (out / "history.jsonl").exists():
        raise ChaosError(f"{out} already holds a run; choose a new --out directory")
    if out.is_dir() and any(out.iterdir()):
        # As --help says: new or empty. A run writes cluster/, history.jsonl and report.json
        # among whatever is there (a local cluster's directory, say).
        raise ChaosError(f"{out} is not empty; choose a new or empty --out directory")
    if out.exists() and not out.is_dir():
        raise ChaosError(f"{out} is not a directory; choose a new or empty --out directory")
    out.mkdir(parents=True, exist_ok=True)
    network_info, use_netns, hook = _choose_network(options)
    started = time.monotonic()
    history: History | None = None
    network: NetnsNetwork | None = None
    cluster: ChaosCluster | None = None
    faults: list[Fault] = []
    check: dict[str, Any] | None = None
    final_recovery: float | None = None
    harness_error: str | None = None
    try:
        if use_netns:
            network = NetnsNetwork(out, options.nodes)
            network.setup()
            network_info["subnet"] = str(network.subnet)
            write_config(
                out / "cluster",
                [f"{network.address(i)}:{NODE_PORT}" for i in range(1, options.nodes + 1)],
                shards=options.shards,
            )
            cluster = ChaosCluster(
                out / "cluster",
                netns={i: network.namespace(i) for i in range(1, options.nodes + 1)},
                faults=hook,
            )
        else:
            cluster = ChaosCluster(
                out / "cluster", nodes=options.nodes, shards=options.shards, faults=hook
            )
        say(
            f"starting {options.nodes} nodes, {options.shards} shards in {out / 'cluster'} "
            f"({reports.network_text(network_info, options.nemesis)}; seed {options.seed})"
        )
        cluster.start(deadline_s=90.0)
        history = History(out / "history.jsonl")  # time 0 = the workload's start
        # Anchor for matching history times with the node logs' wall-clock "ts".
        history.nemesis("begin", {"wall_time": round(time.time(), 3)})
        partitioner: Partitioner | None = None
        if network is not None:
            partitioner = NetnsPartitioner(network)
        elif hook:
            partitioner = HookPartitioner(cluster)
        ctx = Context(
            cluster=cluster,
            rng=random.Random(f"{options.seed}-nemesis"),
            partitioner=partitioner,
            hook=hook,
            say=say,
        )
        starts = [r.start for r in cluster.shard_map.ranges]
        workload = WORKLOADS[options.workload](shard_prefixes(starts), timeout_s=options.timeout_s)
        try:
            final_recovery = asyncio.run(
                _drive(options, cluster, history, workload, nemesis, ctx, faults, say)
            )
        except _HarnessFailure as exc:
            harness_error = str(exc)
        say("checking the history")
        checking = time.monotonic()
        check = workload.check(history.ops)
        check["check_s"] = round(time.monotonic() - checking, 2)
    finally:
        if history is not None:
            history.close()
        if cluster is not None:
            with contextlib.suppress(Exception):
                cluster.stop(grace_s=5.0)
            cluster.close()
        if network is not None:
            network.teardown()
    report = reports.build_report(
        options={k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(options).items()},
        history=[] if history is None else history.ops,
        check=check,
        faults=[f.as_dict() for f in faults],
        network=network_info,
        final_recovery_s=final_recovery,
        harness_error=harness_error,
        wall_s=time.monotonic() - started,
        churn=reports.leader_churn(out / "cluster" / "logs"),
    )
    report["exit_code"] = reports.exit_code(report)
    reports.write_report(out / "report.json", report)
    for line in reports.summary_lines(report):
        say(line)
    say(f"history: {out / 'history.jsonl'}; report: {out / 'report.json'}")
    return report


def recheck(out: Path, say: Callable[[str], None] = lambda _line: None) -> dict[str, Any]:
    """Check a kept run's history again, offline, with today's checker.

    The workload, its key layout and the run's facts (faults, recovery, network) come from
    OUT/report.json and OUT/cluster/cluster.toml; the rebuilt report goes to
    OUT/recheck.json (the original report is left as it was) and is returned.

    Raises:
        ChaosError: OUT is not a chaos run directory with its history and report.
    """
    try:
        saved = json.loads((out / "report.json").read_text())
        config = load_config(out / "cluster" / "cluster.toml")
        ops = histories.load(out / "history.jsonl")
        options = saved["options"]
        workload = WORKLOADS[options["workload"]](
            shard_prefixes([b"", *config.split_points]), timeout_s=options["timeout_s"]
        )
        facts = {
            "faults": saved["faults"],
            "network": saved["network"],
            "final_recovery_s": saved["recovery"]["after_final_heal_s"],
            "harness_error": saved["harness_error"],
            "wall_s": saved["wall_s"],
        }
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ChaosError(
            f"{out} is not a complete chaos run directory ({type(exc).__name__}: {exc})"
        ) from None
    say(f"checking {len(ops)} history records of {out}")
    report = reports.build_report(
        options=options,
        history=ops,
        check=workload.check(ops),
        churn=saved.get("leader_churn"),
        **facts,
    )
    report["exit_code"] = reports.exit_code(report)
    reports.write_report(out / "recheck.json", report)
    for line in reports.summary_lines(report):
        say(line)
    return report


def _choose_network(options: ChaosOptions) -> tuple[dict[str, Any], bool, bool]:
    """(network section of the report, use namespaces, turn on the fault hook)."""
    partitions = options.nemesis in PARTITIONING
    hook = options.nemesis in HOOKED or options.net == "hook"
    use_netns = False
    why_not = None
    if options.net == "netns" or (options.net == "auto" and partitions):
        why_not = probe()
        if why_not is None:
            use_netns = True
        elif options.net == "netns":
            raise ChaosError(f"--net netns: network namespaces are not usable here: {why_not}")
    if partitions and not use_netns:
        hook = True
    kind = None
    if partitions:
        kind = (
            "netns"
            if use_netns
            else "fault-hook (FALLBACK: in-node drop of Paxos peer traffic, not a real "
            "network partition)"
        )
    info: dict[str, Any] = {
        "partitions": kind,
        "fault_hook": hook,
        "namespaces": use_netns,
    }
    if why_not and not use_netns:
        info["netns_unavailable"] = why_not
    return info, use_netns, hook


class _HarnessFailure(Exception):
    """The cluster did not recover or the final reads failed (report exit code 2)."""


async def _drive(
    options: ChaosOptions,
    cluster: ChaosCluster,
    history: History,
    workload: Workload,
    nemesis: Nemesis,
    ctx: Context,
    faults: list[Fault],
    say: Callable[[str], None],
) -> float | None:
    seeds = cluster.env_value()
    seed = options.seed
    clients = [
        AsyncClient(
            seeds,
            timeout_s=options.timeout_s,
            rng=random.Random(f"{seed}-client{i}"),
            tls=cluster.client_tls,
        )
        for i in range(options.clients)
    ]
    probe_client = AsyncClient(seeds, timeout_s=2.0, tls=cluster.client_tls)
    probe_keys = [
        (r.group_id, (r.start.decode() or "0") + "/~probe") for r in cluster.shard_map.ranges
    ]
    stop = asyncio.Event()
    workers = [Worker(i, options.clients) for i in range(options.clients)]

    async def recovered(since: float) -> float | None:
        """Seconds from `since` until every group has a leader and takes a probe write."""
        loop = asyncio.get_running_loop()
        end = loop.time() + options.recovery_deadline_s
        while loop.time() < end:
            try:
                leaders = await asyncio.to_thread(cluster.leaders, 1.0)
                if all(lead.leader for lead in leaders.values()):
                    for _group, key in probe_keys:
                        await probe_client.put(key.encode(), b"probe", timeout_s=2.0)
                    # Rounded as the report keeps it, so the line said now and its summary agree.
                    return round(time.monotonic() - since, 3)
            except Exception:
                pass
            await asyncio.sleep(0.1)
        return None

    async def work(i: int) -> None:
        rng = random.Random(f"{seed}-worker{i}")
        while not stop.is_set():
            await workload.step(clients[i], workers[i], rng, history)
            if options.think_s:
                await asyncio.sleep(rng.uniform(0, options.think_s))

    async def wait_or_stop(seconds: float) -> bool:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), seconds)
            return True
        return False

    async def schedule() -> None:
        rng = ctx.rng
        while not stop.is_set():
            if await wait_or_stop(rng.uniform(*options.quiet_s)):
                return
            chosen = nemesis.choose(ctx) if isinstance(nemesis, MixNemesis) else nemesis
            if chosen.name == "none":
                continue
            began = history.now() / 1e9
            try:
                detail = await asyncio.to_thread(chosen.start, ctx)
            except Exception as exc:
                fault = Fault(chosen.name, {}, began, error=f"start failed: {exc}")
                faults.append(fault)
                history.nemesis(f"start-{chosen.name}", None, error=fault.error)
                say(f"  nemesis {chosen.name}: could not start ({exc})")
                continue
            fault = Fault(chosen.name, detail, began)
            faults.append(fault)
            history.nemesis(f"start-{chosen.name}", detail, wall=round(time.time(), 3))
            say(f"  {began:7.2f}s nemesis start {chosen.name} {detail}")
            await wait_or_stop(rng.uniform(*options.fault_s))
            try:
                fault.stop_detail = await asyncio.to_thread(chosen.stop, ctx, detail)
            except Exception as exc:
                fault.error = f"stop failed: {exc}"
                with contextlib.suppress(Exception):
                    await asyncio.to_thread(chosen.heal, ctx)
            ended = time.monotonic()
            fault.ended_at = history.now() / 1e9
            history.nemesis(
                f"stop-{chosen.name}",
                fault.stop_detail,
                error=fault.error,
                wall=round(time.time(), 3),
            )
            fault.recovery_s = await recovered(ended)
            say(
                f"  {fault.ended_at:7.2f}s nemesis stop {chosen.name} {fault.stop_detail}; "
                f"recovered in {reports.seconds_text(fault.recovery_s)}"
            )

    try:
        await workload.setup(clients[0])
        say(
            f"running {options.workload} with {options.clients} clients for {options.duration_s:g} s"
        )
        tasks = [asyncio.create_task(work(i)) for i in range(options.clients)]
        scheduler = asyncio.create_task(schedule())
        await wait_or_stop(options.duration_s)
        stop.set()
        await scheduler
        await asyncio.gather(*tasks)
        say("healing")
        await asyncio.to_thread(nemesis.heal, ctx)
        history.nemesis("heal", None)
        final_recovery = await recovered(time.monotonic())
        if final_recovery is None:
            raise _HarnessFailure(
                f"the cluster did not recover within {options.recovery_deadline_s:g} s of "
                "the final heal (no leader in some group, or a probe write failed)"
            )
        say(f"recovered {final_recovery:.2f} s after the final heal; final reads")
        final_client = AsyncClient(seeds, timeout_s=options.timeout_s, tls=cluster.client_tls)
        try:
            next_process = max(w.process for w in workers) + 1
            await asyncio.wait_for(
                workload.final_reads(final_client, history, next_process),
                options.final_deadline_s + 30,
            )
        except Exception as exc:
            raise _HarnessFailure(f"final reads failed: {exc}") from exc
        finally:
            await final_client.close()
        return final_recovery
    finally:
        stop.set()
        for client in [*clients, probe_client]:
            with contextlib.suppress(Exception):
                await client.close()
