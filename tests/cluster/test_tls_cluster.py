"""A TLS cluster of real node processes (`paxoskv cluster start --tls`): peers and clients
speak TLS on every hop, clients must present a certificate of the cluster's CA, and a client
without one (or speaking plaintext) is refused with a line that says what to check."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

import txn
from router.tls import ClientTls, TlsFiles
from shard.cluster import LocalCluster, wait_for
from shard.tls_certs import make_local_pki
from shard.tls_reload import TLS_CHECK_S

pytestmark = pytest.mark.cluster


@pytest.fixture
def tls_cluster(make_cluster: Callable[..., LocalCluster]) -> LocalCluster:
    return make_cluster(tls=True)


def _client(cluster: LocalCluster, tls: ClientTls, **kwargs: object) -> txn.Client:
    return txn.Client(cluster.env_value(), tls=tls, timeout_s=3.0, max_attempts=3, **kwargs)


def test_a_tls_cluster_commits_across_shards_and_refuses_clients_without_a_certificate(
    tls_cluster: LocalCluster,
) -> None:
    tls = tls_cluster.client_tls
    assert tls is not None and tls_cluster.config.tls is not None
    # The config holds the peer secret, the tls directory the private keys: ours alone.
    assert stat.S_IMODE(tls_cluster.config_path.stat().st_mode) == 0o600
    assert stat.S_IMODE(tls.ca_file.parent.stat().st_mode) == 0o700
    # Every group elected a leader over TLS peer streams (start waited for it); the data
    # goes through the Paxos groups of every shard and a 2PC commit across two of them.
    with _client(tls_cluster, tls) as client:
        for key in (b"alpha", b"kilo", b"tango"):
            client.put(key, b"v-" + key)
        with client.transaction() as tx:
            tx.put(b"bravo", b"1")
            tx.put(b"sierra", b"2")
        assert [k for k, _ in client.scan(b"", None)] == [
            b"alpha",
            b"bravo",
            b"kilo",
            b"sierra",
            b"tango",
        ]
    # The local cluster's own calls (status, leaders) use the client certificate too.
    assert all(lead.leader for lead in tls_cluster.leaders().values())

    refused = {
        "a cluster with TLS needs the CA": None,  # plaintext
        "this client speaks TLS": TlsFiles(tls.ca_file),  # no client certificate
    }
    for hint, files in refused.items():
        with pytest.raises(txn.Unavailable) as err, _client(tls_cluster, files) as client:
            client.get(b"alpha")
        assert hint in str(err.value)


def test_the_command_line_reaches_a_tls_cluster_through_the_printed_exports(
    tls_cluster: LocalCluster,
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PAXOSKV_")}
    cli = [sys.executable, "-m", "shard.cli"]
    status = subprocess.run(
        [*cli, "cluster", "status", "--data-dir", str(tls_cluster.data_dir)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    exports = dict(
        line.removeprefix("export ").split("=", 1)
        for line in status.stdout.splitlines()
        if line.startswith("export ")
    )
    assert set(exports) == {
        "PAXOSKV_CLUSTER",
        "PAXOSKV_TLS_CA",
        "PAXOSKV_TLS_CERT",
        "PAXOSKV_TLS_KEY",
    }
    with_tls = env | exports
    put = subprocess.run(
        [*cli, "put", "hotel", "h"], env=with_tls, capture_output=True, text=True, timeout=60
    )
    assert put.returncode == 0, put.stderr
    got = subprocess.run(
        [*cli, "get", "hotel"], env=with_tls, capture_output=True, text=True, timeout=60
    )
    assert (got.returncode, got.stdout) == (0, "h\n"), got.stderr
    plaintext = subprocess.run(
        [*cli, "get", "hotel", "--timeout", "2"],
        env=env | {"PAXOSKV_CLUSTER": exports["PAXOSKV_CLUSTER"]},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert plaintext.returncode == 1
    assert plaintext.stderr.count("\n") == 1 and "PAXOSKV_TLS_CA" in plaintext.stderr


def test_certificates_rotate_to_a_new_ca_without_a_restart(
    tls_cluster: LocalCluster, tmp_path: Path
) -> None:
    """A running cluster moves to a new CA as the README says: a CA file trusting both,
    then every node's certificate from the new CA, then the clients' files and a CA file of
    the new CA alone (shard/tls_reload.py; each step waits until every node logged it).
    A client of the new CA only is refused before and served after; a node killed and
    restarted at the end makes its peers dial it, and it them, with the new certificates,
    and a cross-shard commit goes through."""
    node = tls_cluster.config.tls
    client_files = tls_cluster.client_tls
    assert node is not None and node.files.cert_file and node.files.key_file
    assert client_files is not None and client_files.cert_file and client_files.key_file
    new = make_local_pki(tmp_path / "new-ca", "new")
    assert new.node.cert_file and new.node.key_file
    assert new.client.cert_file and new.client.key_file

    def step(files: list[tuple[bytes, Path]], reloads: int) -> None:
        for data, target in files:  # each file replaced whole
            temporary = target.with_suffix(".new")
            temporary.write_bytes(data)
            os.replace(temporary, target)
        wait_for(lambda: reloaded(tls_cluster) >= reloads, 3 * TLS_CHECK_S + 10, f"step {reloads}")

    def served(client: txn.Client) -> bool:
        try:
            client.put(b"rotated", b"1")
        except txn.PaxosKVError:
            return False
        return True

    new_only = TlsFiles(new.ca_file, new.client.cert_file, new.client.key_file)
    with _client(tls_cluster, new_only) as client:
        assert not served(client)  # the nodes do not trust the new CA yet
    bundle = node.files.ca_file.read_bytes() + new.ca_file.read_bytes()
    step([(bundle, node.files.ca_file)], 1)
    step(
        [
            (new.node.key_file.read_bytes(), node.files.key_file),
            (new.node.cert_file.read_bytes(), node.files.cert_file),
        ],
        2,
    )
    with _client(tls_cluster, new_only) as client:
        assert served(client)
    step(
        [
            (new.client.key_file.read_bytes(), client_files.key_file),
            (new.client.cert_file.read_bytes(), client_files.cert_file),
            (new.ca_file.read_bytes(), node.files.ca_file),
        ],
        3,
    )
    tls_cluster.close()  # its cached channels hold the old client certificate
    tls_cluster.kill("n2")
    tls_cluster.restart("n2")
    with _client(tls_cluster, new_only) as client:
        with client.transaction() as tx:
            tx.put(b"alpha-rotated", b"1")
            tx.put(b"tango-rotated", b"2")
        assert client.get(b"tango-rotated") == b"2"


def reloaded(cluster: LocalCluster) -> int:
    """The fewest "TLS files reloaded" lines of any node's log."""
    return min(cluster.log_file(n).read_text().count("TLS files reloaded") for n in cluster.names)
