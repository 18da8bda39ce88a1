"""Cluster configuration (TOML), validated at start with errors that name the bad field.

Example::

    cluster_id = "demo"
    data_dir = "/var/lib/paxoskv"          # each node uses data_dir/<node name>; a relative
                                           # path is relative to this file's directory
    peer_secret = "3f9c...e1"              # optional, >= 16 characters: nodes present it to
                                           # each other (the peer service shares the client port)

    [[nodes]]
    id = 1
    name = "n1"
    address = "10.0.0.1:7001"              # gRPC address for peers and clients
    metrics_address = "10.0.0.1:9101"      # optional: Prometheus scrapes GET /metrics here

    [shards]
    split_points = ["g", "p"]              # 3 shards: [, g) [g, p) [p, +inf)
    replication = 3

    [paxos]                                # all optional
    election_timeout_min_ms = 150
    election_timeout_max_ms = 300
    heartbeat_interval_ms = 50
    lease_ms = 120
    max_batch_count = 1024
    max_batch_bytes = 4194304
    pipeline_window = 1                    # slots in flight per group (docs/ARCHITECTURE.md)
    thrifty_accepts = true                 # Accepts to a quorum only (paxos/config.py)
    max_apply_bytes = 262144               # chosen bytes applied per cycle (a backlog: more cycles)
    pre_vote = true                        # ask before campaigning (paxos/config.py)
    max_promise_bytes = 1048576            # votes per promise part in an election (paxos/config.py)

    [client]
    request_timeout_ms = 5000

    [tls]                                  # optional: TLS on every hop (router/tls.py)
    ca_file = "/etc/paxoskv/ca.pem"        # trusted by nodes and clients
    cert_file = "/etc/paxoskv/node.pem"    # this node's certificate (SANs: node addresses)
    key_file = "/etc/paxoskv/node-key.pem"
    require_client_cert = true             # clients must present a CA-signed certificate

    [txn]                                  # all optional
    max_clock_offset_ms = 250              # default: 0 when every node is on loopback
    resolve_after_ms = 1000                # participants ask about older prepares
    decision_retention_s = 600             # txn_status answers this far back

Relative paths (data_dir, nodes[].data_dir, the [tls] files; data_dir's default
"./paxoskv-data" too) are taken relative to the directory of the config file, not the working
directory: a node started from anywhere, or a cluster directory moved or copied together with
its config (`paxoskv cluster start` writes `data_dir = "data"`), finds the same data.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from paxos.config import MAX_LEASE_S, MAX_PIPELINE_WINDOW, MAX_SLOT_BYTES
from router.limits import MAX_KEY_BYTES
from router.tls import TlsFiles, TlsSetupError
from shard.clock_limits import MIN_DECISION_RETENTION_S, fewest_decision_retention_s
from shard.tls_certs import read_node_pems

MIN_PEER_SECRET_CHARS = 16
#: Node ids are uint64 on the wire, 0 meaning none.
MAX_NODE_ID = 2**64
#: Most commands in one slot: each costs its framing in every Accept, promise and catch-up
#: reply that carries the slot (paxos.config `COMMAND_FRAMING_BYTES`).
MAX_BATCH_COUNT = 4096
#: A node's name: a directory name and a --node-id that cannot be taken for an id.
NODE_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]*")


class ConfigError(ValueError):
    """The configuration is invalid; the message names the field."""


@dataclass(frozen=True, slots=True, kw_only=True)
class NodeConfig:
    id: int
    name: str
    address: str
    data_dir: str | None = None
    # HOST:PORT of the node's Prometheus endpoint (GET /metrics); None: none.
    metrics_address: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class PaxosSettings:
    election_timeout_min_ms: int = 150
    election_timeout_max_ms: int = 300
    heartbeat_interval_ms: int = 50
    lease_ms: int = 120
    lease_drift_ms: int = 20
    max_batch_count: int = 1024
    max_batch_bytes: int = 4 * 1024 * 1024
    pipeline_window: int = 1
    compact_threshold: int = 5_000
    compact_keep: int = 500
    compact_threshold_bytes: int = 64 * 1024 * 1024
    thrifty_accepts: bool = True
    max_apply_bytes: int = 256 * 1024
    pre_vote: bool = True
    max_promise_bytes: int = 1024 * 1024


@dataclass(frozen=True, slots=True, kw_only=True)
class NodeTls:
    """A node's TLS: what it trusts and presents, and whether clients must present too."""

    files: TlsFiles
    require_client_cert: bool = True


@dataclass(frozen=True, slots=True, kw_only=True)
class ClusterConfig:
    cluster_id: str
    nodes: tuple[NodeConfig, ...]
    split_points: tuple[bytes, ...] = ()
    replication: int = 3
    data_dir: str = "./paxoskv-data"
    paxos: PaxosSettings = field(default_factory=PaxosSettings)
    request_timeout_ms: int = 5000
    #: None = automatic: 0 when every node is on loopback (one clock), else 250 ms.
    max_clock_offset_ms: int | None = None
    resolve_after_ms: int = 1000
    decision_retention_s: int = 600
    #: Shared by the nodes, presented on every peer stream ("" = peer streams unauthenticated).
    peer_secret: str = ""
    #: None = plaintext on every hop.
    tls: NodeTls | None = None

    @property
    def clock_offset_ms(self) -> int:
        """The maximum clock offset in force (see max_clock_offset_ms)."""
        if self.max_clock_offset_ms is not None:
            return self.max_clock_offset_ms
        loopback = all(
            n.address.rsplit(":", 1)[0] in ("127.0.0.1", "localhost", "[::1]", "::1")
            for n in self.nodes
        )
        return 0 if loopback else 250

    def node(self, ref: str | int) -> NodeConfig:
        """Find a node by id or name; raises ConfigError naming the known nodes."""
        for node in self.nodes:
            if str(node.id) == str(ref) or node.name == ref:
                return node
        known = ", ".join(f"{n.name} (id {n.id})" for n in self.nodes)
        raise ConfigError(f"--node-id {ref!r} is not in the config; known nodes: {known}")

    def node_data_dir(self, node: NodeConfig) -> Path:
        return Path(node.data_dir) if node.data_dir else Path(self.data_dir) / node.name


def load_config(path: str | Path) -> ClusterConfig:
    """Read and validate a TOML config file."""
    try:
        raw = tomllib.loads(Path(path).read_text())
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist") from None
    except OSError as exc:  # a directory, no permission (found by review: a bare errno line)
        raise ConfigError(f"cannot read config file {path}: {exc.strerror or exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}") from None
    try:
        return parse_config(raw, base_dir=Path(path).absolute().parent)
    except ConfigError as exc:
        # Found by a README walk-through: the bad field was named, the file was not.
        raise ConfigError(f"config file {path}: {exc}") from None


def check_not_left_behind(config_path: str | Path, config: ClusterConfig, node: NodeConfig) -> None:
    """Refuse to start `node` when its data sits where a relative data_dir pointed before
    relative paths meant the config file's directory: the working directory's (found by
    review: the node was refused as having lost its data, and told to --rebuild).

    Raises:
        ConfigError: the data is at the old place and not at the new one.
    """
    here = config.node_data_dir(node)
    base = Path(config_path).absolute().parent
    if not here.is_relative_to(base):
        return  # an absolute path elsewhere: its meaning did not change
    before = Path.cwd() / here.relative_to(base)
    if before != here and (before / "db").exists() and not (here / "db").exists():
        raise ConfigError(
            f"node {node.name}'s data is in {before.resolve()}, where the relative data_dir "
            f"of {config_path} pointed when relative paths meant the working directory; they "
            f"now mean the config file's directory ({here.resolve()} has no data): set "
            f"data_dir to the full path"
        )


def _get(table: dict[str, Any], key: str, kind: type, where: str, default: Any = None) -> Any:
    if key not in table:
        if default is None:
            raise ConfigError(f"{where}{key} is required")
        return default
    value = table[key]
    if (kind is int and isinstance(value, bool)) or not isinstance(value, kind):
        raise ConfigError(f"{where}{key} must be {_KIND_NAMES[kind]}, got {value!r}")
    return value


_KIND_NAMES = {int: "an integer", bool: "true or false", str: "a string", list: "a list"}


def _table(raw: dict[str, Any], name: str) -> dict[str, Any]:
    table = raw.get(name, {})
    if not isinstance(table, dict):
        raise ConfigError(f"{name} must be a [{name}] table, got {table!r}")
    return table


def _refuse_unknown(table: dict[str, Any], known: set[str], where: str) -> None:
    """A misspelt key would otherwise silently keep its default."""
    unknown = set(table) - known
    if unknown:
        raise ConfigError(f"{where}: unknown settings {sorted(unknown)} (known: {sorted(known)})")


def parse_config(raw: dict[str, Any], base_dir: Path | None = None) -> ClusterConfig:
    """Validate a parsed TOML document; every unknown key is refused with its name.

    Relative paths are made relative to `base_dir` (the config file's directory); without
    it they stay relative to the working directory.
    """

    def path(value: str) -> str:
        return value if base_dir is None else str(base_dir / value)

    _refuse_unknown(
        raw,
        {
            "cluster_id",
            "data_dir",
            "peer_secret",
            "nodes",
            "shards",
            "paxos",
            "client",
            "txn",
            "tls",
        },
        "the top level",
    )
    cluster_id = _get(raw, "cluster_id", str, "")
    if not cluster_id:
        raise ConfigError("cluster_id must not be empty")
    peer_secret = _get(raw, "peer_secret", str, "", "")
    if peer_secret and len(peer_secret) < MIN_PEER_SECRET_CHARS:
        raise ConfigError(
            f"peer_secret must be at least {MIN_PEER_SECRET_CHARS} characters "
            f"(e.g. `python -c 'import secrets; print(secrets.token_hex(16))'`)"
        )
    nodes_raw = raw.get("nodes")
    if not isinstance(nodes_raw, list) or not nodes_raw:
        raise ConfigError("nodes must be a non-empty array of [[nodes]] tables")
    nodes = []
    for i, table in enumerate(nodes_raw):
        where = f"nodes[{i}]."
        if not isinstance(table, dict):
            raise ConfigError(f"nodes[{i}] must be a [[nodes]] table, got {table!r}")
        _refuse_unknown(
            table, {"id", "name", "address", "data_dir", "metrics_address"}, f"nodes[{i}]"
        )
        node_data_dir = _get(table, "data_dir", str, where, "")
        node = NodeConfig(
            id=_get(table, "id", int, where),
            name=_get(table, "name", str, where),
            address=_get(table, "address", str, where),
            data_dir=path(node_data_dir) if node_data_dir else None,
            metrics_address=_get(table, "metrics_address", str, where, "") or None,
        )
        if not 0 < node.id < MAX_NODE_ID:
            raise ConfigError(f"{where}id must be a positive integer below 2**64, got {node.id}")
        # The name names the node's data directory and, beside the id, its --node-id
        # (found by review: a node named "2" was taken for node 2, and "n2/" shared n2's
        # directory).
        if not node.name:
            raise ConfigError(f"{where}name must not be empty")
        if not NODE_NAME.fullmatch(node.name) or node.name.isdigit():
            raise ConfigError(
                f"{where}name must be letters, digits, '.', '_' or '-', not starting with "
                "'.' or '-' and not a number alone "
                f"(it names the node's data directory and its --node-id), got {node.name!r}"
            )
        _check_host_port(node.address, f"{where}address")
        if node.metrics_address is not None:
            _check_host_port(node.metrics_address, f"{where}metrics_address")
        nodes.append(node)
    for attr in ("id", "name", "address"):
        values = [getattr(n, attr) for n in nodes]
        if len(set(values)) != len(values):
            raise ConfigError(f"nodes[].{attr} must be unique, got {values}")
    listened = [n.address for n in nodes] + [n.metrics_address for n in nodes if n.metrics_address]
    # Found by an operator trial: localhost:7001 beside 127.0.0.1:7001 was taken, and the
    # node dialled itself as its peer.
    same = [a for a in listened if [_listen_key(b) for b in listened].count(_listen_key(a)) > 1]
    if same:
        raise ConfigError(
            "nodes[].address and nodes[].metrics_address must all differ, got "
            f"{sorted(set(same))}: the same address"
        )
    shards = _table(raw, "shards")
    _refuse_unknown(shards, {"split_points", "replication"}, "shards")
    splits_raw = _get(shards, "split_points", list, "shards.", [])
    splits = tuple(s.encode() if isinstance(s, str) else s for s in splits_raw)
    if any(not isinstance(s, bytes) or not s for s in splits):
        raise ConfigError("shards.split_points must be non-empty strings")
    too_long = [s for s in splits if len(s) > MAX_KEY_BYTES]
    if too_long:
        # A shard's bounds are scan bounds: every scan across a longer one was refused.
        raise ConfigError(
            f"shards.split_points must be at most {MAX_KEY_BYTES} bytes (a key's limit), "
            f"got one of {len(too_long[0])}"
        )
    if list(splits) != sorted(set(splits)):
        raise ConfigError(f"shards.split_points must be sorted and distinct, got {splits_raw}")
    replication = _get(shards, "replication", int, "shards.", min(3, len(nodes)))
    if not 1 <= replication <= len(nodes):
        raise ConfigError(
            f"shards.replication must be between 1 and the node count {len(nodes)}, "
            f"got {replication}"
        )
    paxos_raw = _table(raw, "paxos")
    _refuse_unknown(paxos_raw, set(PaxosSettings.__dataclass_fields__), "paxos")
    defaults = PaxosSettings()
    paxos_kwargs = {}
    for name in PaxosSettings.__dataclass_fields__:
        default = getattr(defaults, name)
        kind = bool if isinstance(default, bool) else int
        value = _get(paxos_raw, name, kind, "paxos.", default)
        if kind is int and value <= 0:
            raise ConfigError(f"paxos.{name} must be positive, got {value}")
        paxos_kwargs[name] = value
    if paxos_kwargs["max_batch_count"] > MAX_BATCH_COUNT:
        raise ConfigError(
            f"paxos.max_batch_count must be at most {MAX_BATCH_COUNT}, "
            f"got {paxos_kwargs['max_batch_count']}"
        )
    if paxos_kwargs["max_batch_bytes"] > MAX_SLOT_BYTES:
        raise ConfigError(
            f"paxos.max_batch_bytes must be at most {MAX_SLOT_BYTES} (8 MiB: a peer message "
            f"carries at most 64 MiB), got {paxos_kwargs['max_batch_bytes']}"
        )
    if paxos_kwargs["pipeline_window"] > MAX_PIPELINE_WINDOW:
        raise ConfigError(
            f"paxos.pipeline_window must be at most {MAX_PIPELINE_WINDOW}, "
            f"got {paxos_kwargs['pipeline_window']}"
        )
    if paxos_kwargs["max_promise_bytes"] > MAX_SLOT_BYTES:
        raise ConfigError(
            f"paxos.max_promise_bytes must be at most {MAX_SLOT_BYTES} (8 MiB: each promise "
            f"part must arrive well within an election timeout), "
            f"got {paxos_kwargs['max_promise_bytes']}"
        )
    settings = PaxosSettings(**paxos_kwargs)
    if not settings.election_timeout_min_ms < settings.election_timeout_max_ms:
        raise ConfigError("paxos.election_timeout_min_ms must be below election_timeout_max_ms")
    if not settings.heartbeat_interval_ms < settings.election_timeout_min_ms:
        raise ConfigError("paxos.heartbeat_interval_ms must be below election_timeout_min_ms")
    if settings.lease_ms > MAX_LEASE_S * 1000:
        raise ConfigError(f"paxos.lease_ms must be at most {MAX_LEASE_S * 1000:.0f}")
    if not settings.lease_drift_ms < settings.lease_ms <= settings.election_timeout_min_ms:
        raise ConfigError(
            "paxos.lease_ms must be above lease_drift_ms and at most election_timeout_min_ms"
        )
    if not settings.compact_keep < settings.compact_threshold:
        raise ConfigError("paxos.compact_keep must be below paxos.compact_threshold")
    client = _table(raw, "client")
    _refuse_unknown(client, {"request_timeout_ms"}, "client")
    timeout = _get(client, "request_timeout_ms", int, "client.", 5000)
    if timeout <= 0:
        raise ConfigError(f"client.request_timeout_ms must be positive, got {timeout}")
    txn = _table(raw, "txn")
    _refuse_unknown(txn, {"max_clock_offset_ms", "resolve_after_ms", "decision_retention_s"}, "txn")
    offset = txn.get("max_clock_offset_ms")
    if offset is not None and (
        isinstance(offset, bool) or not isinstance(offset, int) or not 0 <= offset <= 60_000
    ):
        # Every answer waits out the offset (commit wait): a huge one blocks every write.
        raise ConfigError(
            f"txn.max_clock_offset_ms must be an integer from 0 to 60000, got {offset!r}"
        )
    resolve_after = _get(txn, "resolve_after_ms", int, "txn.", 1000)
    retention = _get(txn, "decision_retention_s", int, "txn.", 600)
    if resolve_after <= 0:
        raise ConfigError("txn.resolve_after_ms must be positive")
    config = ClusterConfig(
        cluster_id=cluster_id,
        peer_secret=peer_secret,
        tls=_parse_tls(raw, peer_secret, path),
        max_clock_offset_ms=offset,
        resolve_after_ms=resolve_after,
        decision_retention_s=retention,
        nodes=tuple(nodes),
        split_points=splits,
        replication=replication,
        data_dir=path(_get(raw, "data_dir", str, "", "./paxoskv-data")),
        paxos=settings,
        request_timeout_ms=timeout,
    )
    fewest = fewest_decision_retention_s(config.clock_offset_ms)
    if retention < fewest:
        why = (
            "clients settle outcomes of transactions up to a minute old"
            if fewest == MIN_DECISION_RETENTION_S
            else f"16 clock offsets + 2 s with txn.max_clock_offset_ms = "
            f"{config.clock_offset_ms}: a transaction's records may be stamped up to 4 "
            "offsets + 0.5 s below its requests' timestamps, which must stay within a "
            "quarter of the window"
        )
        raise ConfigError(
            f"txn.decision_retention_s must be at least {fewest} ({why}), got {retention}"
        )
    dirs = [config.node_data_dir(n).resolve() for n in config.nodes]
    if len(set(dirs)) != len(dirs):
        # Found by review: two nodes on one directory (the second is refused only at start,
        # as another node's data or one in use).
        raise ConfigError(f"every node needs its own data directory, got {[str(d) for d in dirs]}")
    return config


#: The [tls] table's file settings, in TlsFiles order.
TLS_FILES = ("ca_file", "cert_file", "key_file")


def _parse_tls(raw: dict[str, Any], peer_secret: str, path: Callable[[str], str]) -> NodeTls | None:
    if "tls" not in raw:
        return None
    if not peer_secret:
        # The CA signs clients' certificates too: without the secret, any client certificate
        # (or, with require_client_cert = false, none) would open a Paxos peer stream.
        raise ConfigError(
            "[tls] needs peer_secret: a certificate the CA signed for a client must not be "
            "enough to speak Paxos to the nodes"
        )
    table = _table(raw, "tls")
    _refuse_unknown(table, {"ca_file", "cert_file", "key_file", "require_client_cert"}, "tls")
    paths = {name: Path(path(_get(table, name, str, "tls."))) for name in TLS_FILES}
    # Read and parse now, so a bad file stops the node at start with the field named (gRPC
    # itself says only that it failed to bind the port).
    try:
        read_node_pems(paths["ca_file"], paths["cert_file"], paths["key_file"])
    except TlsSetupError as exc:
        raise ConfigError(str(exc)) from None
    return NodeTls(
        files=TlsFiles(paths["ca_file"], paths["cert_file"], paths["key_file"]),
        require_client_cert=_get(table, "require_client_cert", bool, "tls.", True),
    )


#: Names of one loopback address, as written in configs.
_LOOPBACK_NAMES = {"localhost": "127.0.0.1", "[::1]": "::1", "ip6-localhost": "::1"}


def _listen_key(address: str) -> tuple[str, str]:
    """What two addresses share when they are the same socket: host names are case-free,
    and the loopback has several names (no DNS is asked: a config is checked offline)."""
    host, _, port = address.rpartition(":")
    host = host.lower()
    return _LOOPBACK_NAMES.get(host, host), port


def _check_host_port(value: str, field_name: str) -> None:
    host, _, port = value.rpartition(":")
    if (
        not host
        or "/" in host
        or not (port.isascii() and port.isdigit())
        or not 0 < int(port) < 65536
    ):
        raise ConfigError(f"{field_name} must be HOST:PORT, got {value!r}")


def render_config(config: ClusterConfig) -> str:
    """The TOML text of a config (what `paxoskv cluster start` writes)."""
    lines = [f"cluster_id = {config.cluster_id!r}", f"data_dir = {config.data_dir!r}"]
    if config.peer_secret:
        lines.append(f"peer_secret = {config.peer_secret!r}")
    lines.append("")
    for node in config.nodes:
        lines += ["[[nodes]]", f"id = {node.id}", f"name = {node.name!r}"]
        lines += [f"address = {node.address!r}"]
        if node.data_dir:
            lines.append(f"data_dir = {node.data_dir!r}")
        if node.metrics_address:
            lines.append(f"metrics_address = {node.metrics_address!r}")
        lines.append("")
    splits = ", ".join(repr(s.decode()) for s in config.split_points)
    lines += ["[shards]", f"split_points = [{splits}]", f"replication = {config.replication}", ""]
    lines.append("[paxos]")
    for name in PaxosSettings.__dataclass_fields__:
        value = getattr(config.paxos, name)
        lines.append(f"{name} = {str(value).lower() if isinstance(value, bool) else value}")
    lines += ["", "[client]", f"request_timeout_ms = {config.request_timeout_ms}", ""]
    lines += ["[txn]"]
    if config.max_clock_offset_ms is not None:
        lines.append(f"max_clock_offset_ms = {config.max_clock_offset_ms}")
    lines += [f"resolve_after_ms = {config.resolve_after_ms}"]
    lines += [f"decision_retention_s = {config.decision_retention_s}", ""]
    if config.tls is not None:
        files = config.tls.files
        lines += ["[tls]", f"ca_file = {str(files.ca_file)!r}"]
        lines += [f"cert_file = {str(files.cert_file)!r}", f"key_file = {str(files.key_file)!r}"]
        lines += [f"require_client_cert = {str(config.tls.require_client_cert).lower()}", ""]
    return "\n".join(lines)
