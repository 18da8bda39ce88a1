"""Cluster config (TOML): what `paxoskv cluster start` writes parses back to the same
config, and every bad or unknown field is refused with an error that names it."""

from __future__ import annotations

import dataclasses
import tomllib
from pathlib import Path
from typing import Any

import pytest

from shard.config import (
    MIN_DECISION_RETENTION_S,
    ClusterConfig,
    ConfigError,
    NodeConfig,
    PaxosSettings,
    fewest_decision_retention_s,
    load_config,
    parse_config,
    render_config,
)
from shard.node import replica_config
from shard.runtime import bootstrap_map
from shard.tls_certs import make_local_pki


def sample() -> ClusterConfig:
    return ClusterConfig(
        cluster_id="prod-1",
        peer_secret="0123456789abcdef0123",
        nodes=(
            NodeConfig(id=1, name="n1", address="10.0.0.1:7001", metrics_address="10.0.0.1:9101"),
            NodeConfig(id=2, name="n2", address="10.0.0.2:7001", data_dir="/srv/n2"),
            NodeConfig(id=3, name="n3", address="10.0.0.3:7001"),
        ),
        split_points=(b"g", b"p"),
        replication=3,
        data_dir="/srv/pkv",
        paxos=PaxosSettings(election_timeout_min_ms=1000, election_timeout_max_ms=2000),
        request_timeout_ms=7000,
        max_clock_offset_ms=100,
        resolve_after_ms=500,
        decision_retention_s=900,
    )


def raw() -> dict[str, Any]:
    return tomllib.loads(render_config(sample()))


def test_a_rendered_config_parses_back_to_the_same_config() -> None:
    assert parse_config(raw()) == sample()
    assert (
        parse_config(
            tomllib.loads(
                render_config(
                    ClusterConfig(
                        cluster_id="c",
                        nodes=(NodeConfig(id=1, name="n1", address="127.0.0.1:1"),),
                        replication=1,
                    )
                )
            )
        ).clock_offset_ms
        == 0
    )


@pytest.mark.parametrize(
    ("table", "key"),
    [
        (None, "clusterid"),
        ("nodes", "adress"),
        ("shards", "split_point"),
        ("paxos", "election_timeout_ms"),
        ("client", "request_timeout"),
        ("txn", "resolve_after"),
    ],
)
def test_an_unknown_key_is_refused_with_its_name(table: str | None, key: str) -> None:
    doc = raw()
    if table is None:
        doc[key] = 1
    elif table == "nodes":
        doc["nodes"][1][key] = "x"
    else:
        doc.setdefault(table, {})[key] = 1
    with pytest.raises(ConfigError, match=key):
        parse_config(doc)


def test_an_unknown_table_is_refused() -> None:
    doc = raw()
    doc["clinet"] = {"request_timeout_ms": 1}
    with pytest.raises(ConfigError, match="clinet"):
        parse_config(doc)


def _set(path: str, value: Any) -> dict[str, Any]:
    doc = raw()
    *tables, key = path.split(".")
    target: Any = doc
    for name in tables:
        target = target[int(name)] if name.isdigit() else target.setdefault(name, {})
    target[key] = value
    return doc


@pytest.mark.parametrize(
    ("path", "value", "named"),
    [
        ("cluster_id", "", "cluster_id"),
        ("cluster_id", 7, "cluster_id"),
        ("nodes.0.id", 0, "nodes[0].id"),
        ("nodes.0.id", True, "nodes[0].id"),
        ("nodes.1.address", "no-port", "nodes[1].address"),
        ("nodes.1.address", "h:70000", "nodes[1].address"),
        ("nodes.2.name", "n1", "nodes[].name"),
        ("nodes.2.data_dir", 5, "nodes[2].data_dir"),
        ("shards.split_points", ["p", "g"], "shards.split_points"),
        ("shards.split_points", ["", "g"], "shards.split_points"),
        ("shards.split_points", ["g" * 4097], "at most 4096 bytes"),
        ("shards.replication", 4, "shards.replication"),
        ("paxos.heartbeat_interval_ms", 0, "paxos.heartbeat_interval_ms"),
        ("paxos.election_timeout_max_ms", 900, "election_timeout_min_ms"),
        ("paxos.lease_ms", 5000, "paxos.lease_ms"),
        ("paxos.lease_ms", 60_001, "paxos.lease_ms must be at most 60000"),
        ("paxos.thrifty_accepts", 1, "paxos.thrifty_accepts"),
        ("paxos.pre_vote", "yes", "paxos.pre_vote"),
        ("client.request_timeout_ms", -1, "client.request_timeout_ms"),
        ("txn.max_clock_offset_ms", -5, "txn.max_clock_offset_ms"),
        ("txn.decision_retention_s", 0, "txn.decision_retention_s"),
        ("txn.decision_retention_s", 60, "at least 120"),
        ("peer_secret", "short", "peer_secret must be at least 16"),
        ("paxos.pipeline_window", 65, "paxos.pipeline_window must be at most 64"),
        ("paxos.max_batch_bytes", 8 * 1024 * 1024 + 1, "paxos.max_batch_bytes must be at most"),
        ("peer_secret", 5, "peer_secret"),
        # Found by review: each was taken, to fail later or never.
        ("nodes.0.id", 2**64, "nodes[0].id"),
        ("nodes.0.name", "2", "nodes[0].name"),
        ("nodes.1.name", "n2/", "nodes[1].name"),
        ("nodes.1.name", "..", "nodes[1].name"),
        ("nodes.1.name", "-x", "nodes[1].name"),
        ("nodes.1.address", "http://h:1", "nodes[1].address"),
        ("nodes.1.address", "h:\uff11\uff12", "nodes[1].address"),
        ("nodes.0.data_dir", "/srv/n2", "its own data directory"),
        ("txn.max_clock_offset_ms", True, "txn.max_clock_offset_ms"),
        ("txn.max_clock_offset_ms", 10**12, "txn.max_clock_offset_ms"),
        ("paxos.compact_keep", 5_000, "paxos.compact_keep"),
        ("paxos.max_batch_count", 4097, "paxos.max_batch_count must be at most 4096"),
        ("paxos.max_promise_bytes", 0, "paxos.max_promise_bytes must be positive"),
        ("paxos.max_promise_bytes", 8 * 1024 * 1024 + 1, "paxos.max_promise_bytes must be at"),
        ("nodes.1.metrics_address", "9101", "nodes[1].metrics_address must be HOST:PORT"),
        ("nodes.1.metrics_address", 9101, "nodes[1].metrics_address"),
        ("nodes.1.metrics_address", "10.0.0.2:7001", "must all differ, got ['10.0.0.2:7001']"),
        ("nodes.1.metrics_address", "10.0.0.1:9101", "must all differ, got ['10.0.0.1:9101']"),
    ],
)
def test_a_bad_value_is_refused_naming_the_field(path: str, value: Any, named: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(_set(path, value))
    assert named in str(info.value)


def test_a_retention_window_must_outlast_how_far_timestamps_may_run_ahead() -> None:
    """Found by review: a 60 s offset with a 120 s window let a late Prepare vote yes after
    its transaction's abort was recorded and purged (tests/unit/shard/test_purge_clocks.py)."""
    assert fewest_decision_retention_s(250) == MIN_DECISION_RETENTION_S
    assert fewest_decision_retention_s(60_000) == 962  # 4 x (4 x 60 s + 0.5 s)
    doc = _set("txn.max_clock_offset_ms", 60_000)
    doc["txn"]["decision_retention_s"] = 961
    with pytest.raises(ConfigError, match=r"at least 962 \(16 clock offsets \+ 2 s with txn"):
        parse_config(doc)
    doc["txn"]["decision_retention_s"] = 962
    assert parse_config(doc).decision_retention_s == 962


@pytest.mark.parametrize(("key", "value"), [("nodes", []), ("nodes", [5]), ("shards", 3)])
def test_a_table_of_the_wrong_shape_is_refused(key: str, value: Any) -> None:
    doc = raw()
    doc[key] = value
    with pytest.raises(ConfigError, match=key):
        parse_config(doc)


def test_a_missing_or_unreadable_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.toml")
    broken = tmp_path / "broken.toml"
    broken.write_text("cluster_id = \n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(broken)
    good = tmp_path / "good.toml"
    good.write_text(render_config(sample()))
    assert load_config(good) == sample()
    # Found by a README walk-through: a bad field was named, its file was not.
    bad = tmp_path / "bad.toml"
    bad.write_text(render_config(sample()).replace("replication = 3", 'replication = "three"'))
    with pytest.raises(ConfigError) as info:
        load_config(bad)
    assert str(info.value) == (
        f"config file {bad}: shards.replication must be an integer, got 'three'"
    )


def _with_tls(tmp_path: Path, **overrides: Any) -> dict[str, Any]:
    pki = make_local_pki(tmp_path / "tls", "c")
    tls: dict[str, Any] = {
        "ca_file": str(pki.ca_file),
        "cert_file": str(pki.node.cert_file),
        "key_file": str(pki.node.key_file),
    }
    tls.update(overrides)
    return raw() | {"tls": tls}


def test_a_tls_table_parses_renders_back_and_requires_client_certificates_by_default(
    tmp_path: Path,
) -> None:
    config = parse_config(_with_tls(tmp_path))
    assert config.tls is not None
    assert config.tls.require_client_cert is True
    assert config.tls.files.key_file == tmp_path / "tls" / "node-key.pem"
    assert parse_config(tomllib.loads(render_config(config))) == config
    relaxed = parse_config(_with_tls(tmp_path, require_client_cert=False))
    assert relaxed.tls is not None and relaxed.tls.require_client_cert is False
    assert parse_config(raw()).tls is None


@pytest.mark.parametrize(
    ("overrides", "named"),
    [
        ({"ca_file": "/nonexistent/ca.pem"}, "cannot read tls.ca_file /nonexistent/ca.pem"),
        ({"key_file": None}, "tls.key_file is required"),
        ({"require_client_cert": "yes"}, "tls.require_client_cert must be true or false"),
        ({"cafile": "x"}, "unknown settings ['cafile']"),
    ],
)
def test_a_bad_tls_setting_is_refused_naming_it(
    tmp_path: Path, overrides: dict[str, Any], named: str
) -> None:
    doc = _with_tls(tmp_path, **{k: v for k, v in overrides.items() if v is not None})
    for key in [k for k, v in overrides.items() if v is None]:
        del doc["tls"][key]
    with pytest.raises(ConfigError) as err:
        parse_config(doc)
    assert named in str(err.value)


def test_a_tls_file_that_is_not_pem_is_refused_naming_the_field(tmp_path: Path) -> None:
    junk = tmp_path / "junk.pem"
    junk.write_text("hello")
    with pytest.raises(ConfigError, match=r"tls.cert_file .*junk.pem is not PEM"):
        parse_config(_with_tls(tmp_path, cert_file=str(junk)))


def test_tls_needs_a_peer_secret(tmp_path: Path) -> None:
    """Found by review: the CA signs clients' certificates too, so without the secret any
    client certificate (or with require_client_cert = false, none) opened peer streams."""
    doc = _with_tls(tmp_path)
    del doc["peer_secret"]
    with pytest.raises(ConfigError, match=r"\[tls\] needs peer_secret"):
        parse_config(doc)


def test_tls_files_that_are_pem_but_wrong_are_refused_naming_the_field(tmp_path: Path) -> None:
    """Found by review: gRPC itself said only that it failed to bind the port."""
    other = make_local_pki(tmp_path / "other", "other")
    cases = {
        "tls.key_file is not the private key of tls.cert_file": {
            "key_file": str(other.node.key_file)
        },
        "tls.key_file is not an unencrypted PEM private key": {
            "key_file": str(other.node.cert_file)
        },
        "tls.ca_file holds no PEM certificate": {"ca_file": str(other.node.key_file)},
        "tls.cert_file holds no PEM certificate": {"cert_file": str(other.node.key_file)},
    }
    for message, overrides in cases.items():
        with pytest.raises(ConfigError, match=message):
            parse_config(_with_tls(tmp_path, **overrides))


def test_the_bootstrap_map_is_cut_at_the_configured_split_points() -> None:
    """Every node derives group 0's first map from the config: the ranges start at its split
    points, each with `replication` replicas among the configured nodes."""
    four = NodeConfig(id=4, name="n4", address="10.0.0.4:7001")
    config = dataclasses.replace(sample(), nodes=(*sample().nodes, four))
    shard_map = bootstrap_map(config)
    assert [r.start for r in shard_map.ranges] == [b"", b"g", b"p"]
    assert [r.end for r in shard_map.ranges] == [b"g", b"p", None]
    for replicas in [r.replicas for r in shard_map.ranges] + [shard_map.meta_replicas]:
        assert len(replicas) == 3 and set(replicas) <= {1, 2, 3, 4}, replicas


def test_every_paxos_setting_reaches_the_replica_config() -> None:
    """A setting the node parses but never hands to its replicas would be ignored without a
    word: every field, set away from its default, shows in `replica_config`'s result."""
    defaults = PaxosSettings()
    changed = {
        f.name: (not getattr(defaults, f.name))
        if isinstance(getattr(defaults, f.name), bool)
        else getattr(defaults, f.name) + 7
        for f in dataclasses.fields(PaxosSettings)
    }
    config = replica_config(1, (1, 2, 3), PaxosSettings(**changed))
    renamed = {"lease_ms": "lease_duration_s"}
    for name, value in changed.items():
        target = renamed.get(
            name, name.removesuffix("_ms") + "_s" if name.endswith("_ms") else name
        )
        expected = value / 1000 if name.endswith("_ms") else value
        assert getattr(config, target) == expected, name


@pytest.mark.parametrize(
    ("first", "second"),
    [("localhost:7001", "127.0.0.1:7001"), ("[::1]:7001", "ip6-localhost:7001"), ("H:1", "h:1")],
)
def test_one_address_written_two_ways_is_refused(first: str, second: str) -> None:
    """Found by an operator trial: localhost:7001 beside 127.0.0.1:7001 was taken, and the
    node dialled itself as its peer."""
    doc = _set("nodes.0.address", first)
    doc["nodes"][1]["address"] = second
    with pytest.raises(ConfigError, match=r"must all differ.*the same address"):
        parse_config(doc)
