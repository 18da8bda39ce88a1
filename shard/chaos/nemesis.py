"""Faults on a seeded schedule against a running `ChaosCluster`.

A nemesis has `start(ctx)` (inject one fault; returns what it did) and `stop(ctx, fault)`
(undo it), both blocking (they signal processes and wait), so the scheduler runs them in a
thread while the clients keep going on the event loop. `heal(ctx)` undoes everything
(idempotent), for the end of a run and for errors.

=============  =============================================================================
name           one fault
=============  =============================================================================
kill           SIGKILL a random node, or the leader of a random group; restart it at stop
pause          SIGSTOP a random node or group leader; SIGCONT at stop
partition      cut one node (random, or a group leader) from the others, or split the nodes
               into a random majority and minority; heal at stop. Real partitions need
               network namespaces (netns.py); without them the fallback is the in-node
               fault hook (shard/faults.py), which drops Paxos peer traffic only — the
               report names which one ran
restart-all    SIGKILL every node at once, restart them all at stop
crash-2pc      (fault hook) arm a crash point on the leader of a random group: the node
               exits when it applies a PREPARE, a coordinator decision or a RESOLVE; at stop
               it is restarted (or disarmed if it never got there)
flaky-net      (fault hook) every node duplicates and delays (so reorders) peer messages
drop-replies   (fault hook) a group leader drops some successful write replies after applying
mix            each fault drawn at random from the above (hook ones only with the hook)
none           no faults (a baseline)
=============  =============================================================================
"""

from __future__ import annotations

import contextlib
import random
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from shard.chaos.netns import ChaosCluster, NetnsNetwork
from shard.faults import FaultsClient

__all__ = [
    "NEMESES",
    "Context",
    "Fault",
    "HookPartitioner",
    "Nemesis",
    "NetnsPartitioner",
    "make_nemesis",
]


class Partitioner(Protocol):
    kind: str

    def cut(self, side_a: list[int], side_b: list[int]) -> None: ...

    def heal(self) -> None: ...


class NetnsPartitioner:
    """Partitions by blackhole routes between network namespaces (real separation)."""

    kind = "netns"

    def __init__(self, network: NetnsNetwork) -> None:
        self.network = network

    def cut(self, side_a: list[int], side_b: list[int]) -> None:
        self.network.cut(side_a, side_b)

    def heal(self) -> None:
        self.network.heal()


class HookPartitioner:
    """FALLBACK partitions: each node's fault hook drops Paxos peer messages to and from
    the other side (the nodes' own client calls between groups still flow)."""

    kind = "fault-hook (fallback: drops Paxos peer traffic only)"

    def __init__(self, cluster: ChaosCluster) -> None:
        self.cluster = cluster

    def cut(self, side_a: list[int], side_b: list[int]) -> None:
        for mine, other in ((side_a, side_b), (side_b, side_a)):
            for node_id in mine:
                name = self.cluster.name_of(node_id)
                if self.cluster.is_running(name):
                    FaultsClient.call(
                        self.cluster.channel(name), {"op": "partition", "peers": other}
                    )

    def heal(self) -> None:
        for name in self.cluster.names:
            if self.cluster.is_running(name):
                with contextlib.suppress(Exception):
                    FaultsClient.call(self.cluster.channel(name), {"op": "heal"})


@dataclass
class Context:
    """What a nemesis may act on."""

    cluster: ChaosCluster
    rng: random.Random
    partitioner: Partitioner | None
    hook: bool  # nodes run with the fault hook (PAXOSKV_FAULTS=1)
    say: Callable[[str], None] = lambda _m: None

    def node_ids(self) -> list[int]:
        return [n.id for n in self.cluster.config.nodes]

    def group_ids(self) -> list[int]:
        return sorted(self.cluster.shard_map.group_ids())

    def pick_target(self) -> tuple[str, str]:
        """(node name, why): half the time a random node, else the leader of a random group."""
        if self.rng.random() < 0.5:
            group = self.rng.choice(self.group_ids())
            leader = None
            with contextlib.suppress(Exception):
                leader = self.cluster.leader_of(group, timeout_s=0.5)
            if leader is not None:
                return leader, f"leader of group {group}"
        return self.rng.choice(self.cluster.names), "random node"


@dataclass
class Fault:
    """One injected fault, for the report (times in seconds on the history's clock)."""

    kind: str
    detail: dict[str, Any]
    started_at: float
    ended_at: float | None = None
    stop_detail: dict[str, Any] = field(default_factory=dict)
    recovery_s: float | None = None
    error: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "detail": self.detail,
            "started_at_s": round(self.started_at, 3),
            "ended_at_s": None if self.ended_at is None else round(self.ended_at, 3),
            "stop": self.stop_detail,
            "recovery_s": None if self.recovery_s is None else round(self.recovery_s, 3),
            "error": self.error,
        }


class Nemesis:
    name = "none"
    needs_hook = False

    def start(self, ctx: Context) -> dict[str, Any]:
        return {}

    def stop(self, ctx: Context, detail: dict[str, Any]) -> dict[str, Any]:
        return {}

    def heal(self, ctx: Context) -> None:
        """Undo everything this nemesis may have done (idempotent)."""
        _restart_stopped(ctx)


def _restart_stopped(ctx: Context) -> list[str]:
    """SIGCONT paused nodes, restart dead ones; returns the names acted on."""
    acted = []
    for state in ctx.cluster.node_states():
        if state.state == "paused":
            ctx.cluster.resume(state.name)
            acted.append(state.name)
        elif state.pid is None:  # stopped, or exited without stopping (crashed)
            _restart(ctx.cluster, state.name)
            acted.append(state.name)
    return acted


def _restart(cluster: ChaosCluster, name: str, attempts: int = 3) -> None:
    for attempt in range(attempts):
        try:
            cluster.restart(name, deadline_s=30.0)
            return
        except Exception:
            if attempt == attempts - 1:
                raise
            time.sleep(0.5)


class KillNemesis(Nemesis):
    name = "kill"

    def start(self, ctx: Context) -> dict[str, Any]:
        name, why = ctx.pick_target()
        ctx.cluster.kill(name, signal.SIGKILL)
        return {"node": name, "target": why}

    def stop(self, ctx: Context, detail: dict[str, Any]) -> dict[str, Any]:
        _restart(ctx.cluster, detail["node"])
        return {"restarted": detail["node"]}


class PauseNemesis(Nemesis):
    name = "pause"

    def start(self, ctx: Context) -> dict[str, Any]:
        name, why = ctx.pick_target()
        ctx.cluster.pause(name)
        return {"node": name, "target": why}

    def stop(self, ctx: Context, detail: dict[str, Any]) -> dict[str, Any]:
        ctx.cluster.resume(detail["node"])
        return {"resumed": detail["node"]}


class RestartAllNemesis(Nemesis):
    name = "restart-all"

    def start(self, ctx: Context) -> dict[str, Any]:
        killed = ctx.cluster.kill_all(signal.SIGKILL)
        return {"killed": killed}

    def stop(self, ctx: Context, detail: dict[str, Any]) -> dict[str, Any]:
        from concurrent.futures import ThreadPoolExecutor

        names = [s.name for s in ctx.cluster.node_states() if s.pid is None]
        with ThreadPoolExecutor(len(names) or 1) as pool:
            list(pool.map(lambda n: _restart(ctx.cluster, n), names))
        return {"restarted": names}


class PartitionNemesis(Nemesis):
    name = "partition"

    def start(self, ctx: Context) -> dict[str, Any]:
        assert ctx.partitioner is not None
        ids = ctx.node_ids()
        mode = ctx.rng.choice(["isolate-node", "isolate-leader", "majority-minority"])
        if mode == "majority-minority" and len(ids) > 3:
            shuffled = ids[:]
            ctx.rng.shuffle(shuffled)
            minority = shuffled[: (len(ids) - 1) // 2]
        else:
            if mode == "isolate-leader":
                name, _why = ctx.pick_target()
                victim = ctx.cluster.node(name).id
            else:
                victim = ctx.rng.choice(ids)
            minority = [victim]
        majority = [i for i in ids if i not in minority]
        ctx.partitioner.cut(minority, majority)
        names = ctx.cluster.name_of
        return {
            "mode": mode,
            "minority": [names(i) for i in minority],
            "majority": [names(i) for i in majority],
            "via": ctx.partitioner.kind,
        }

    def stop(self, ctx: Context, detail: dict[str, Any]) -> dict[str, Any]:
        assert ctx.partitioner is not None
        ctx.partitioner.heal()
        return {"healed": True}

    def heal(self, ctx: Context) -> None:
        if ctx.partitioner is not None:
            ctx.partitioner.heal()
        super().heal(ctx)


def _hook_call(ctx: Context, name: str, request: dict[str, Any]) -> dict[str, Any]:
    return FaultsClient.call(ctx.cluster.channel(name), request)


class Crash2pcNemesis(Nemesis):
    name = "crash-2pc"
    needs_hook = True

    def start(self, ctx: Context) -> dict[str, Any]:
        group = ctx.rng.choice(ctx.group_ids())
        leader = None
        with contextlib.suppress(Exception):
            leader = ctx.cluster.leader_of(group, timeout_s=0.5)
        name = leader or ctx.rng.choice(ctx.cluster.names)
        point = ctx.rng.choice(["prepare-chosen", "decision-chosen", "resolve-apply"])
        _hook_call(ctx, name, {"op": "arm", "point": point, "groups": [group]})
        return {"node": name, "group": group, "point": point}

    def stop(self, ctx: Context, detail: dict[str, Any]) -> dict[str, Any]:
        name = detail["node"]
        if ctx.cluster.is_running(name):
            with contextlib.suppress(Exception):
                _hook_call(ctx, name, {"op": "disarm"})
            return {"crashed": False}
        _restart(ctx.cluster, name)
        return {"crashed": True, "restarted": name}

    def heal(self, ctx: Context) -> None:
        super().heal(ctx)
        for name in ctx.cluster.names:
            with contextlib.suppress(Exception):
                _hook_call(ctx, name, {"op": "clear"})


class FlakyNetNemesis(Nemesis):
    name = "flaky-net"
    needs_hook = True

    def start(self, ctx: Context) -> dict[str, Any]:
        request = {
            "op": "net",
            "duplicate": round(ctx.rng.uniform(0.05, 0.3), 3),
            "delay": round(ctx.rng.uniform(0.05, 0.3), 3),
            "delay_ms": [1, ctx.rng.choice([20, 50, 150])],
        }
        for name in ctx.cluster.names:
            with contextlib.suppress(Exception):
                _hook_call(ctx, name, request)
        return {k: v for k, v in request.items() if k != "op"}

    def stop(self, ctx: Context, detail: dict[str, Any]) -> dict[str, Any]:
        self._off(ctx)
        return {"off": True}

    def _off(self, ctx: Context) -> None:
        for name in ctx.cluster.names:
            with contextlib.suppress(Exception):
                _hook_call(ctx, name, {"op": "net"})

    def heal(self, ctx: Context) -> None:
        super().heal(ctx)
        self._off(ctx)


class DropRepliesNemesis(Nemesis):
    name = "drop-replies"
    needs_hook = True

    def start(self, ctx: Context) -> dict[str, Any]:
        name, why = ctx.pick_target()
        request = {"op": "drop-replies", "probability": 0.3, "count": ctx.rng.randint(1, 10)}
        _hook_call(ctx, name, request)
        return {"node": name, "target": why, "probability": 0.3, "count": request["count"]}

    def stop(self, ctx: Context, detail: dict[str, Any]) -> dict[str, Any]:
        state: dict[str, Any] = {}
        with contextlib.suppress(Exception):
            state = _hook_call(ctx, detail["node"], {"op": "drop-replies", "count": 0})
        return {"replies_dropped": state.get("counters", {}).get("replies_dropped")}

    def heal(self, ctx: Context) -> None:
        super().heal(ctx)
        for name in ctx.cluster.names:
            with contextlib.suppress(Exception):
                _hook_call(ctx, name, {"op": "drop-replies", "count": 0})


class MixNemesis(Nemesis):
    """Each fault drawn from the others (hook-based ones only when the hook is on)."""

    name = "mix"

    def __init__(self, members: list[Nemesis], weights: list[float]) -> None:
        self.members = members
        self.weights = weights
        self._current: Nemesis | None = None

    def choose(self, ctx: Context) -> Nemesis:
        usable = [
            (m, w)
            for m, w in zip(self.members, self.weights, strict=True)
            if (ctx.hook or not m.needs_hook)
            and (ctx.partitioner is not None or m.name != "partition")
        ]
        return ctx.rng.choices([m for m, _ in usable], [w for _, w in usable])[0]

    def heal(self, ctx: Context) -> None:
        for member in self.members:
            if ctx.hook or not member.needs_hook:
                member.heal(ctx)


NEMESES: dict[str, Callable[[], Nemesis]] = {
    "none": Nemesis,
    "kill": KillNemesis,
    "pause": PauseNemesis,
    "partition": PartitionNemesis,
    "restart-all": RestartAllNemesis,
    "crash-2pc": Crash2pcNemesis,
    "flaky-net": FlakyNetNemesis,
    "drop-replies": DropRepliesNemesis,
    "mix": lambda: MixNemesis(
        [
            KillNemesis(),
            PauseNemesis(),
            PartitionNemesis(),
            RestartAllNemesis(),
            Crash2pcNemesis(),
            FlakyNetNemesis(),
            DropRepliesNemesis(),
        ],
        [3, 3, 3, 1, 2, 1, 1],
    ),
}


def make_nemesis(name: str) -> Nemesis:
    try:
        return NEMESES[name]()
    except KeyError:
        raise ValueError(f"unknown nemesis {name!r}; one of {', '.join(NEMESES)}") from None
