"""`paxoskv cluster start|stop|status`: a local cluster of node processes (shard.cluster).

Imports of grpc and the node stay inside the handlers, so `paxoskv --help` stays fast.
Errors are raised as exceptions; `shard.cli.main` prints them as one line.
"""

from __future__ import annotations

import argparse
import contextlib
import shlex
import sys
from collections.abc import Iterator
from typing import Any

from shard.cli_kv import (
    UsageError,
    bounded_int,
    debug_option,
    non_negative_seconds,
    positive_seconds,
    shard_count,
    split_point,
    usage_error,
)

DATA_DIR_HELP = "the cluster directory (config, data, logs, pid files)"


def register_cluster_commands(subparsers: Any) -> None:
    """Add `cluster start|stop|status` to the `paxoskv` parser's subcommands."""
    cluster = subparsers.add_parser(
        "cluster",
        help="start, stop and inspect a local cluster",
        description="A local cluster of `paxoskv node` processes on 127.0.0.1, all kept "
        "under one --data-dir: DIR/cluster.toml, DIR/data/NAME, DIR/logs/NAME.log, "
        "DIR/pids/NAME.pid.",
    )
    cluster.set_defaults(handler=lambda _args: usage_error(cluster))
    commands = cluster.add_subparsers(title="cluster commands", metavar="COMMAND")

    start = commands.add_parser(
        "start",
        help="start a local cluster in the background",
        description="Start the nodes in the background and return once every group has a "
        "leader. A directory without a cluster gets a new one; a directory with a stopped "
        "cluster restarts it from its data, and so does a node that was killed or stopped "
        "while the others run; a cluster whose every node runs is refused. Split points cut "
        "the lowercase alphabet into nearly equal ranges by a key's first byte (3 shards: "
        "a-i, j-q, r-z; digits, uppercase and most punctuation go to the first shard).",
    )
    start.add_argument("--data-dir", required=True, help=DATA_DIR_HELP)
    start.add_argument(
        "--nodes", type=bounded_int(1), default=None, help="node count (new cluster: 3)"
    )
    start.add_argument(
        "--shards",
        type=shard_count,
        default=None,
        help="data shard count, at most 26 (new cluster: 3)",
    )
    start.add_argument(
        "--split-point",
        action="append",
        type=split_point,
        default=None,
        metavar="KEY",
        dest="split_points",
        help="new cluster: a key where one shard ends and the next begins, instead of the "
        "alphabet's (repeat it: N points make N+1 shards, in key order whatever the order "
        "given), to spread a prefix over shards: --split-point user/g --split-point user/p",
    )
    start.add_argument(
        "--base-port",
        type=bounded_int(1, 65535),
        default=None,
        help="node i listens on BASE_PORT+i-1, and serves its Prometheus metrics on "
        "BASE_PORT+N+i-1 for N nodes (default: free ports picked by bind-testing)",
    )
    start.add_argument(
        "--timeout",
        type=positive_seconds,
        default=60.0,
        help="seconds to wait for leaders (default 60)",
    )
    start.add_argument(
        "--tls",
        action="store_true",
        default=None,
        help="new cluster: TLS on every hop, clients included, with a private CA and "
        "certificates written under DATA_DIR/tls (prints the client's export lines)",
    )
    start.add_argument(
        "--rebuild",
        action="append",
        default=[],
        metavar="NAME",
        help="a stopped node whose data was lost (a replaced disk, a deleted data "
        "directory): start it on its empty directory as a non-voter, wait until it caught "
        "up and votes again (every other node must be up; one node at a time)",
    )
    start.set_defaults(handler=_start)

    stop = commands.add_parser(
        "stop",
        help="stop a local cluster",
        description="SIGTERM exactly the recorded node pids (each checked to still be this "
        "cluster's node), wait, SIGKILL stragglers, remove the pid files. Works from the pid "
        "files alone when cluster.toml does not load.",
    )
    stop.add_argument("--data-dir", required=True, help=DATA_DIR_HELP)
    stop.add_argument(
        "--grace",
        type=non_negative_seconds,
        default=10.0,
        help="seconds before SIGKILL (default 10)",
    )
    stop.set_defaults(handler=_stop)

    status = commands.add_parser(
        "status",
        help="show nodes and group leaders of a local cluster",
        description="Per node: address, pid and state: running, paused, stopped, or exited "
        "(its process went without stopping: killed or crashed; shown with the pid it had, "
        "the log to read and the command that restarts it). Per group: key range, leader, "
        "ballot, chosen and applied index on each replica. Exits 3 when no node is running "
        "(as `systemctl status` does), and 1 when a node is stopped or exited or does not "
        "answer or a group has no leader (as `paxoskv status` does), or when DIR holds no "
        "cluster at all, so scripts can tell.",
    )
    status.add_argument("--data-dir", required=True, help=DATA_DIR_HELP)
    status.set_defaults(handler=_status)
    for command in (start, stop, status):
        debug_option(command)


#: `cluster status`'s exit status when no node runs (LSB's "program is not running").
NOT_RUNNING_EXIT = 3
#: `cluster status`'s exit status when some node or group is down (as `paxoskv status`).
UNHEALTHY_EXIT = 1
#: How long `cluster start` lets a first start's refusals "for now" clear.
REFUSAL_SETTLE_S = 3.0


def _progress(message: str) -> None:
    print(f"paxoskv cluster: {message}", file=sys.stderr, flush=True)


def _open(data_dir: str, *, must_exist: bool = True, **shape: Any) -> Any:
    from pathlib import Path

    from shard.cluster import CONFIG_NAME, ClusterError, LocalCluster, holds_other_files

    if must_exist and not (Path(data_dir) / CONFIG_NAME).exists():
        # Found by review: "create one with: paxoskv cluster start", which then refused a
        # directory holding other files.
        hint = (
            "it holds other files: is --data-dir right? A new cluster needs a new or empty "
            "directory"
            if holds_other_files(Path(data_dir))
            else f"create one with: paxoskv cluster start --data-dir {shlex.quote(data_dir)}"
        )
        raise ClusterError(f"{data_dir} holds no cluster ({CONFIG_NAME} is missing); {hint}")
    return LocalCluster(data_dir, **shape)


@contextlib.contextmanager
def _closing(cluster: Any) -> Iterator[None]:
    """Close the cluster's gRPC channels at the end, except after Ctrl-C: a KeyboardInterrupt
    that cut a gRPC call short as it started left the call registered, and closing its
    channel then waited for it forever (about 1 in 40 interruptions of `leaders()`). The
    process exits at once then, which closes the sockets anyway."""
    try:
        yield
    except KeyboardInterrupt:
        raise
    except BaseException:
        cluster.close()
        raise
    cluster.close()


def _start(args: argparse.Namespace) -> int:
    cluster = _open(
        args.data_dir,
        must_exist=False,
        nodes=args.nodes,
        shards=args.shards,
        base_port=args.base_port,
        split_points=_sorted_points(args.split_points),
        tls=args.tls,
    )
    with _closing(cluster):
        if len(cluster.names) < 3:
            _progress(
                f"warning: {len(cluster.names)} node(s), so every group has "
                f"{len(cluster.names)} replica(s) and survives no node failure (3 survive one)"
            )
        try:
            cluster.start(deadline_s=args.timeout, progress=_progress, rebuild=args.rebuild)
        except KeyboardInterrupt:
            _progress(_after_interrupt(cluster, args.data_dir))
            raise
        for line in cluster.describe():
            print(line)
        # Found by an operator trial: a node every peer refused (its data put back from a
        # copy) was reported started; only `paxoskv status` said otherwise.
        refused = cluster.refused(settle_s=REFUSAL_SETTLE_S)
        for name, why in refused.items():
            _progress(f"error: {name} runs but its peers refuse it ({why})")
        print("client addresses:")
        for name, address in cluster.addresses.items():
            print(f"  {name}  {address}")
        scraped = [n for n in cluster.config.nodes if n.metrics_address is not None]
        if scraped:
            print("metrics (Prometheus):")
            for node in scraped:
                print(f"  {node.name}  http://{node.metrics_address}/metrics")
        _print_exports(cluster)
    return UNHEALTHY_EXIT if refused else 0


def _sorted_points(points: list[bytes] | None) -> tuple[bytes, ...] | None:
    """The --split-point keys in key order; a usage error for one given twice."""
    if points is None:
        return None
    if len(set(points)) != len(points):
        twice = next(p for p in points if points.count(p) > 1)
        raise UsageError(f"--split-point {twice.decode()!r} is given twice")
    return tuple(sorted(points))


def _after_interrupt(cluster: Any, data_dir: str) -> str:
    """What an interrupted start left: a failing start stops the nodes it launched, but one
    interrupted once every group had a leader leaves them running (they are healthy)."""
    running = [s.name for s in cluster.node_states() if s.pid is not None]
    if not running:
        return "interrupted; no node of the cluster is running (`cluster start` starts them)"
    where = shlex.quote(data_dir)
    return (
        f"interrupted; {', '.join(running)} keep running: `paxoskv cluster stop --data-dir "
        f"{where}` stops them"
    )


def _print_exports(cluster: Any) -> None:
    for name, value in cluster.client_env().items():
        print(f"export {name}={shlex.quote(value)}")


def _stop(args: argparse.Namespace) -> int:
    from shard.config import ConfigError

    try:
        cluster = _open(args.data_dir)
    except ConfigError as exc:
        return _stop_without_config(args, exc)
    was_running = any(cluster.is_running(name) for name in cluster.names)
    killed = cluster.stop(grace_s=args.grace, progress=_progress)
    _say_stopped(f"cluster {cluster.cluster_id!r} in {cluster.data_dir}", was_running, killed)
    return 0


def _stop_without_config(args: argparse.Namespace, error: Exception) -> int:
    """An edit that broke cluster.toml must not keep the running nodes from stopping: stop
    them from their pid files (each still checked to be this directory's node)."""
    from shard.cluster import ClusterProcesses

    processes = ClusterProcesses(args.data_dir)
    _progress(f"the config did not load ({error}); stopping the nodes its pid files name")
    was_running = any(processes.pid(name) is not None for name in processes.recorded_names())
    killed = processes.stop_recorded(grace_s=args.grace, progress=_progress)
    _say_stopped(f"the cluster in {processes.data_dir}", was_running, killed)
    return 0


def _status_without_config(args: argparse.Namespace, error: Exception) -> int:
    """A broken cluster.toml: say so, and which nodes its pid files name still run (found
    by a user's walk-through: only the TOML error was printed, as if nothing ran)."""
    from shard.cluster import ClusterProcesses

    processes = ClusterProcesses(args.data_dir)
    _progress(f"the config did not load ({error}); the nodes its pid files name:")
    running = False
    for name in processes.recorded_names():
        pid = processes.pid(name)
        running = running or pid is not None
        print(f"  {name}: {_recorded_node_text(processes, name, pid)}")
    if not running:
        print("no node is running")
        return NOT_RUNNING_EXIT
    return UNHEALTHY_EXIT


def _recorded_node_text(processes: Any, name: str, pid: int | None) -> str:
    if pid is not None:
        return f"pid {pid}, running"
    exited = processes.exit_of(name)
    return "not running" if exited is None else f"pid {exited.pid} {exited.summary()}"


def _say_stopped(what: str, was_running: bool, killed: list[str]) -> None:
    suffix = f" ({', '.join(killed)} needed SIGKILL)" if killed else ""
    if not was_running:
        suffix = " (no node was running)"
    print(f"{what} stopped{suffix}")


def _status(args: argparse.Namespace) -> int:
    from shard.config import ConfigError

    try:
        cluster = _open(args.data_dir)
    except ConfigError as exc:
        return _status_without_config(args, exc)
    with _closing(cluster):
        for line in cluster.describe():
            print(line)
        states = {s.name: s for s in cluster.node_states()}
        # A node is down when stopped or exited without stopping (pid None either way).
        if all(state.pid is None for state in states.values()):
            print("no node is running")
            return NOT_RUNNING_EXIT
        statuses = cluster.status_all(timeout_s=1.0)
        for name, st in statuses.items():
            if states[name].pid is not None and st is None:
                print(f"  {name} does not answer Status ({states[name].state})")
        refused = cluster.refused()
        for name, why in refused.items():
            print(f"  {name} is REFUSED by {why}")
        leaders = cluster.leaders(timeout_s=1.0)
        healthy = (
            not refused
            and all(st is not None for st in statuses.values())
            and all(leader.leader is not None for leader in leaders.values())
        )
        print("groups:")
        for group_id, leader in sorted(leaders.items()):
            label = "meta" if group_id == 0 else "data"
            replicas = []
            for name, st in statuses.items():
                if st is None:
                    continue
                for g in st.groups:
                    if g.group_id == group_id:
                        replicas.append(
                            f"{name} {g.role} chosen {g.chosen_index} applied {g.applied_index}"
                        )
            who = leader.leader or "none"
            ballot = f" ballot {leader.ballot}" if leader.leader else ""
            print(f"  group {group_id} ({label}) leader {who}{ballot}  [{'; '.join(replicas)}]")
        _print_exports(cluster)
    return 0 if healthy else UNHEALTHY_EXIT
