"""Real network partitions: every node in its own Linux network namespace, joined by veth
links to one bridge; a partition is a set of blackhole routes inside the namespaces.

Layout for a run with id R (names fit Linux's 15-character interface limit)::

    root namespace:   bridge pkb<R> 10.A.B.254/24     (the harness's clients live here)
                      veth   pkv<R>n<i>  (bridge port)
    namespace pkv-<R>-n<i>:  eth0 10.A.B.<i>/24, lo    (node i binds 10.A.B.<i>:7000)

`cut(side_a, side_b)` adds, in each namespace of side a, a blackhole route to every address
of side b, and the reverse: packets between the sides are discarded by the kernel (new
connections fail at once, established streams stall until gRPC gives up on them), while
the harness still reaches every node. `heal()` deletes the routes. Nothing here touches
the root namespace's routes; `teardown()` deletes the namespaces and the bridge (also when
the run crashed: `cleanup_stale(dir)` reads the names back from DIR/netns.json).

Needs root (CAP_NET_ADMIN) and iproute2; `probe()` says whether both work here. When they
do not, the runner falls back to the in-process fault hook (shard/faults.py) and says so.

`ChaosCluster` is a `LocalCluster` whose nodes start inside their namespaces (`ip netns
exec`) and/or with PAXOSKV_FAULTS=1 in their environment.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import secrets
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path

from shard.cluster import LocalCluster
from shard.config import ClusterConfig, NodeConfig, PaxosSettings, render_config

__all__ = ["ChaosCluster", "NetnsError", "NetnsNetwork", "cleanup_stale", "probe"]

NODE_PORT = 7000
STATE_FILE = "netns.json"


class NetnsError(RuntimeError):
    """A namespace command failed; the message has the command and its stderr."""


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(["ip", *args], capture_output=True, text=True, check=False, timeout=20)
    if check and result.returncode != 0:
        raise NetnsError(f"ip {' '.join(args)}: {result.stderr.strip() or result.returncode}")
    return result


def probe() -> str | None:
    """None when network namespaces work here, else why not (one sentence)."""
    if shutil.which("ip") is None:
        return "iproute2 ('ip') is not installed"
    if os.geteuid() != 0:
        return "network namespaces need root"
    name = f"pkvprobe{secrets.token_hex(3)}"
    try:
        _ip("netns", "add", name)
    except (NetnsError, OSError, subprocess.TimeoutExpired) as exc:
        return f"cannot create a network namespace ({exc})"
    # The whole random name (15 characters, the most a link's name may have): with one
    # hex digit of it, two probes at once (each pytest worker probes as it imports
    # tests/cluster/test_chaos.py), or a link a killed probe left, collided 1 time in 16.
    try:
        _ip("link", "add", f"{name}a", "type", "veth", "peer", "name", "eth0", "netns", name)
        _ip("link", "del", f"{name}a")
    except NetnsError as exc:
        return f"cannot create veth links ({exc})"
    finally:
        _ip("netns", "del", name, check=False)
    return None


def _free_subnet() -> ipaddress.IPv4Network:
    used = _ip("-o", "-4", "addr", "show").stdout + _ip("-4", "route", "show").stdout
    for _ in range(100):
        net = ipaddress.IPv4Network(
            f"10.{secrets.randbelow(50) + 200}.{secrets.randbelow(256)}.0/24"
        )
        if str(net.network_address)[:-2] not in used:
            return net
    raise NetnsError("no free 10.2xx.y.0/24 subnet found")


class NetnsNetwork:
    """The namespaces, links and partitions of one run; see the module doc."""

    def __init__(self, state_dir: Path, nodes: int, run_id: str | None = None) -> None:
        self.run_id = run_id or secrets.token_hex(3)
        self.state_dir = state_dir
        self.nodes = nodes
        self.bridge = f"pkb{self.run_id}"
        self.subnet = _free_subnet()
        self._routes: set[tuple[int, int]] = set()  # (in namespace of node i, to node j)
        self._up = False

    def namespace(self, node_id: int) -> str:
        return f"pkv-{self.run_id}-n{node_id}"

    def address(self, node_id: int) -> str:
        return str(self.subnet.network_address + node_id)

    @property
    def gateway(self) -> str:
        return str(self.subnet.network_address + 254)

    def setup(self) -> None:
        """Create the bridge, one namespace per node and the links; raise NetnsError."""
        self.state_dir.mkdir(parents=True, exist_ok=True)
        (self.state_dir / STATE_FILE).write_text(
            json.dumps(
                {
                    "bridge": self.bridge,
                    "namespaces": [self.namespace(i) for i in range(1, self.nodes + 1)],
                    "subnet": str(self.subnet),
                }
            )
        )
        self._up = True
        try:
            _ip("link", "add", self.bridge, "type", "bridge")
            _ip("addr", "add", f"{self.gateway}/24", "dev", self.bridge)
            _ip("link", "set", self.bridge, "up")
            for i in range(1, self.nodes + 1):
                ns = self.namespace(i)
                port = f"pkv{self.run_id}n{i}"
                _ip("netns", "add", ns)
                _ip("link", "add", port, "type", "veth", "peer", "name", "eth0", "netns", ns)
                _ip("link", "set", port, "master", self.bridge, "up")
                _ip("-n", ns, "addr", "add", f"{self.address(i)}/24", "dev", "eth0")
                _ip("-n", ns, "link", "set", "eth0", "up")
                _ip("-n", ns, "link", "set", "lo", "up")
        except BaseException:
            self.teardown()
            raise

    def cut(self, side_a: Sequence[int], side_b: Sequence[int]) -> None:
        """Discard every packet between the two sides (both directions)."""
        for a in side_a:
            for b in side_b:
                for src, dst in ((a, b), (b, a)):
                    if (src, dst) in self._routes or src == dst:
                        continue
                    _ip(
                        "-n",
                        self.namespace(src),
                        "route",
                        "add",
                        "blackhole",
                        f"{self.address(dst)}/32",
                    )
                    self._routes.add((src, dst))

    def heal(self) -> None:
        """Remove every blackhole route this run added."""
        for src, dst in sorted(self._routes):
            _ip(
                "-n",
                self.namespace(src),
                "route",
                "del",
                "blackhole",
                f"{self.address(dst)}/32",
                check=False,
            )
        self._routes.clear()

    @property
    def cuts(self) -> list[tuple[int, int]]:
        return sorted(self._routes)

    def teardown(self) -> None:
        """Delete the namespaces and the bridge (the veth pairs go with the namespaces)."""
        if not self._up:
            return
        self._up = False
        for i in range(1, self.nodes + 1):
            _ip("netns", "del", self.namespace(i), check=False)
        _ip("link", "del", self.bridge, check=False)
        with contextlib.suppress(FileNotFoundError):
            (self.state_dir / STATE_FILE).unlink()


def cleanup_stale(state_dir: Path) -> bool:
    """Delete the namespaces and bridge a crashed run left behind (from its state file)."""
    path = state_dir / STATE_FILE
    try:
        state = json.loads(path.read_text())
    except (FileNotFoundError, ValueError):
        return False
    for ns in state.get("namespaces", []):
        _ip("netns", "del", ns, check=False)
    if state.get("bridge"):
        _ip("link", "del", state["bridge"], check=False)
    path.unlink(missing_ok=True)
    return True


def write_config(
    data_dir: Path,
    addresses: Sequence[str],
    *,
    shards: int,
    paxos: PaxosSettings | None = None,
    request_timeout_ms: int = 5000,
) -> None:
    """Write DIR/cluster.toml for nodes at explicit addresses (all on this one machine, so
    the maximum clock offset is 0: every node reads the same clock)."""
    from shard.cluster import default_split_points

    config = ClusterConfig(
        cluster_id=f"chaos-{secrets.token_hex(3)}",
        nodes=tuple(
            NodeConfig(id=i, name=f"n{i}", address=address)
            for i, address in enumerate(addresses, start=1)
        ),
        split_points=default_split_points(shards),
        replication=min(3, len(addresses)),
        data_dir=str(data_dir / "data"),
        paxos=paxos or PaxosSettings(),
        request_timeout_ms=request_timeout_ms,
        max_clock_offset_ms=0,
    )
    data_dir.mkdir(parents=True, exist_ok=True)
    (data_dir / "cluster.toml").write_text(
        "# Written by `paxoskv chaos` (nodes at explicit addresses).\n" + render_config(config)
    )


class ChaosCluster(LocalCluster):
    """A LocalCluster whose nodes start inside network namespaces and/or with the fault hook.

    Args:
        data_dir: as LocalCluster.
        netns: node id -> namespace name (None: the root namespace).
        faults: start nodes with PAXOSKV_FAULTS=1 (shard/faults.py serves its admin service).
        kwargs: as LocalCluster (only for a new directory without cluster.toml).
    """

    def __init__(
        self,
        data_dir: str | Path,
        *,
        netns: dict[int, str] | None = None,
        faults: bool = False,
        **kwargs: object,
    ) -> None:
        super().__init__(data_dir, **kwargs)  # type: ignore[arg-type]
        self.netns = dict(netns or {})
        self.faults = faults

    def _node_launch(self, name: str, env: dict[str, str]) -> tuple[list[str], str]:
        """LocalCluster's launch with an `ip netns exec NS` prefix and the fault-hook env.

        `ip netns exec` execs the node in place, so the recorded pid and /proc/PID/cmdline
        are the node's own and LocalCluster's pid checks (rule 1) hold unchanged.
        """
        if self.faults:
            env["PAXOSKV_FAULTS"] = "1"
        else:
            env.pop("PAXOSKV_FAULTS", None)
        argv, where = super()._node_launch(name, env)
        ns = self.netns.get(self.node(name).id)
        if ns is None:
            return argv, where
        return ["ip", "netns", "exec", ns, *argv], f" in netns {ns}"
