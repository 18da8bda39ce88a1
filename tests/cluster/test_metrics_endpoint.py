"""Prometheus metrics of real node processes (`GET /metrics` on each node's
metrics_address, which `paxoskv cluster start` gives every node): one leader per group
across the nodes, requests counted by operation and code, group-commit writes timed, and an
endpoint that survives nonsense."""

from __future__ import annotations

import secrets
import socket
import time
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

import txn
from shard.cluster import LocalCluster, wait_for

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape(address: str) -> Samples:
    """Every sample a node's endpoint shows now, by (name, sorted labels)."""
    with urllib.request.urlopen(f"http://{address}/metrics", timeout=10) as answer:
        assert answer.status == 200
        assert answer.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        text = answer.read().decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def _addresses(cluster: LocalCluster) -> list[str]:
    addresses = [n.metrics_address for n in cluster.config.nodes]
    assert all(addresses), "paxoskv cluster start gives every node a metrics address"
    return [a for a in addresses if a is not None]


def _total(samples: list[Samples], name: str, **labels: str) -> float:
    """`name`'s samples with `labels` among theirs, summed over every node."""
    return sum(
        value
        for node in samples
        for (metric, have), value in node.items()
        if metric == name and set(labels.items()) <= set(have)
    )


def test_every_group_has_one_leader_across_the_nodes(shared_cluster: LocalCluster) -> None:
    addresses = _addresses(shared_cluster)
    groups = [str(g) for g in range(len(shared_cluster.config.split_points) + 2)]

    def one_leader_each() -> bool:
        nodes = [scrape(a) for a in addresses]
        return all(_total(nodes, "paxoskv_group_is_leader", group=g) == 1 for g in groups)

    # Leaders may still be moving to their preferred nodes (a transfer): wait it out.
    wait_for(one_leader_each, 30.0, "one leader per group across the nodes' metrics")
    nodes = [scrape(a) for a in addresses]
    names = {
        dict(labels)["node"] for node in nodes for (m, labels) in node if m == "paxoskv_node_info"
    }
    assert names == {n.name for n in shared_cluster.config.nodes}
    for node in nodes:
        for g in groups:
            assert node[("paxoskv_group_has_leader", (("group", g),))] == 1
            chosen = node[("paxoskv_group_chosen_index", (("group", g),))]
            assert node[("paxoskv_group_applied_index", (("group", g),))] <= chosen
        assert node[("paxoskv_group_leader_changes_seen_total", (("group", "0"),))] >= 1
        assert node[("process_resident_memory_bytes", ())] > 0


def test_requests_are_counted_and_group_commits_timed(shared_cluster: LocalCluster) -> None:
    addresses = _addresses(shared_cluster)
    before = [scrape(a) for a in addresses]
    run = secrets.token_hex(3).encode()
    with txn.Client(shared_cluster.env_value(), timeout_s=10.0) as client:
        for i in range(20):
            client.put(b"metrics/" + run + b"%d" % i, b"v")
        missing = client.get(b"metrics/" + run + b"-none")
    assert missing is None
    ok = "paxoskv_requests_total"
    persists = ("paxoskv_disk_persist_duration_seconds_count", ())

    def rendered_since(nodes: list[Samples]) -> bool:
        """Every node's rendering is newer than the puts (each replica synced their slots)
        and the get's node's newer than the get."""
        grew = _total(nodes, ok, op="get", code="OK") > _total(before, ok, op="get", code="OK")
        return grew and all(n[persists] > b[persists] for n, b in zip(nodes, before, strict=True))

    # A node renders its metrics at most once a second (RENDER_EVERY_S): scrape until the
    # renderings are newer than the puts.
    after = before
    end = time.monotonic() + 15
    while not rendered_since(after):
        assert time.monotonic() < end, "the requests never showed in the metrics"
        time.sleep(0.2)
        after = [scrape(a) for a in addresses]
    # Each answered once (a copy re-sent after an attempt timeout may add one; a request
    # counted twice would add 20).
    puts = _total(after, ok, op="put", code="OK") - _total(before, ok, op="put", code="OK")
    assert 20 <= puts < 30
    assert _total(after, ok, op="get", code="OK") > _total(before, ok, op="get", code="OK")
    timed = "paxoskv_request_duration_seconds_count"
    assert _total(after, timed, op="put") - _total(before, timed, op="put") >= 20
    for node_after in after:
        assert node_after[("paxoskv_loop_busy_duration_seconds_count", ())] > 0


@pytest.mark.parametrize(
    "nonsense",
    [b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\x00" * 64, b"X" * 20_000, b""],
    ids=["tls hello", "20 KB without a line end", "closed at once"],
)
def test_nonsense_at_the_metrics_port_leaves_the_node_serving(
    shared_cluster: LocalCluster, nonsense: bytes
) -> None:
    address = _addresses(shared_cluster)[0]
    host, _, port = address.rpartition(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        if nonsense:
            sock.sendall(nonsense)
        sock.shutdown(socket.SHUT_WR)
        answer = b""
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and (chunk := sock.recv(4096)):
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 400")
    assert scrape(address)[("paxoskv_shard_map_version", ())] >= 1
    with txn.Client(shared_cluster.env_value(), timeout_s=10.0) as client:
        key = b"metrics/after-nonsense/" + secrets.token_hex(3).encode()
        version = client.put(key, b"v")
        assert client.get(key) == b"v" and version > 0
