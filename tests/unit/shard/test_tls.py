"""TLS: the files (router.tls), the local PKI (shard.tls_certs), and peer streams over TLS on
real gRPC (127.0.0.1): a peer with the cluster's CA gets through, one with another CA's
certificate or none is refused before any message reaches the node."""

from __future__ import annotations

import asyncio
import logging
import stat
import time
from pathlib import Path
from typing import Any

import grpc
import pytest
from cryptography import x509

from paxos.ballot import Ballot
from paxos.messages import Heartbeat
from router.client import RoutingClient
from router.client_errors import InvalidArgument
from router.tls import TlsFiles, TlsSetupError, read_pem, resolve_client_tls
from shard import peer_pb2_grpc
from shard.cluster import free_ports
from shard.config import ClusterConfig, NodeConfig, NodeTls
from shard.runtime import NodeRuntime
from shard.tls_certs import LocalPki, make_local_pki
from shard.transport import GRPC_OPTIONS, PeerLink, PeerServicer


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> LocalPki:
    return make_local_pki(tmp_path_factory.mktemp("pki"), "test")


@pytest.fixture(scope="module")
def other_pki(tmp_path_factory: pytest.TempPathFactory) -> LocalPki:
    return make_local_pki(tmp_path_factory.mktemp("other"), "other")


# ---------------------------------------------------------------------------- files


def test_a_certificate_needs_its_key_and_a_key_its_certificate(tmp_path: Path) -> None:
    with pytest.raises(TlsSetupError, match="give both or neither"):
        TlsFiles(tmp_path / "ca.pem", cert_file=tmp_path / "c.pem")
    with pytest.raises(TlsSetupError, match="give both or neither"):
        TlsFiles(tmp_path / "ca.pem", key_file=tmp_path / "k.pem")


def test_from_env_reads_the_three_variables_and_none_without_a_ca() -> None:
    assert TlsFiles.from_env({}) is None
    assert TlsFiles.from_env({"PAXOSKV_TLS_CA": "/x/ca.pem"}) == TlsFiles(Path("/x/ca.pem"))
    env = {
        "PAXOSKV_TLS_CA": "/x/ca.pem",
        "PAXOSKV_TLS_CERT": "/x/c.pem",
        "PAXOSKV_TLS_KEY": "/x/k.pem",
    }
    assert TlsFiles.from_env(env) == TlsFiles(Path("/x/ca.pem"), Path("/x/c.pem"), Path("/x/k.pem"))
    with pytest.raises(TlsSetupError, match="without a CA"):
        TlsFiles.from_env({"PAXOSKV_TLS_CERT": "/x/c.pem", "PAXOSKV_TLS_KEY": "/x/k.pem"})


def test_a_client_reads_the_environment_only_by_default(
    monkeypatch: pytest.MonkeyPatch, pki: LocalPki
) -> None:
    monkeypatch.setenv("PAXOSKV_TLS_CA", str(pki.ca_file))
    assert resolve_client_tls("env") == TlsFiles(pki.ca_file)
    assert resolve_client_tls(None) is None
    assert resolve_client_tls(pki.client) == pki.client


def test_unreadable_and_non_pem_files_are_named(tmp_path: Path) -> None:
    with pytest.raises(TlsSetupError, match=r"cannot read the CA .*missing.pem"):
        read_pem(tmp_path / "missing.pem", "the CA")
    junk = tmp_path / "junk.pem"
    junk.write_text("not a certificate")
    with pytest.raises(TlsSetupError, match=r"junk.pem is not PEM"):
        read_pem(junk, "the CA")
    # A routing client refuses bad files at construction, as a typed client error.
    with pytest.raises(InvalidArgument, match=r"junk\.pem is not PEM"):
        RoutingClient(["127.0.0.1:1"], tls=TlsFiles(junk))


def test_a_client_key_that_is_not_its_certificates_is_named(pki: LocalPki) -> None:
    """Found by a new user's review: gRPC only logged lines of its own ("Invalid private
    key") and failed the handshake; the nodes already checked their own pair."""
    assert pki.client.cert_file is not None and pki.node.key_file is not None
    mixed = TlsFiles(pki.ca_file, pki.client.cert_file, pki.node.key_file)
    with pytest.raises(TlsSetupError, match=r"TLS key file .* is not the private key of"):
        mixed.channel_credentials()
    with pytest.raises(InvalidArgument, match="is not the private key of"):
        RoutingClient(["127.0.0.1:1"], tls=mixed)


def test_a_node_needs_its_own_certificate(pki: LocalPki) -> None:
    with pytest.raises(TlsSetupError, match="not a CA alone"):
        TlsFiles(pki.ca_file).server_credentials(require_client_cert=True)


# ---------------------------------------------------------------------------- local PKI


def test_paths_may_be_strings(pki: LocalPki) -> None:
    """As the README writes it: TlsFiles(ca, cert, key) with str paths."""
    assert pki.client.cert_file is not None and pki.client.key_file is not None
    files = TlsFiles(str(pki.ca_file), str(pki.client.cert_file), str(pki.client.key_file))
    assert files == pki.client and isinstance(files.ca_file, Path)
    assert files.channel_credentials() is not None


def test_the_local_pki_signs_node_and_client_certificates_with_its_ca(pki: LocalPki) -> None:
    ca = x509.load_pem_x509_certificate(pki.ca_file.read_bytes())
    for files, usage in (
        (pki.node, x509.oid.ExtendedKeyUsageOID.SERVER_AUTH),
        (pki.client, x509.oid.ExtendedKeyUsageOID.CLIENT_AUTH),
    ):
        assert files.cert_file is not None and files.key_file is not None
        cert = x509.load_pem_x509_certificate(files.cert_file.read_bytes())
        cert.verify_directly_issued_by(ca)
        assert usage in cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
        # Private keys: the owner's alone.
        assert stat.S_IMODE(files.key_file.stat().st_mode) == 0o600
    node = x509.load_pem_x509_certificate(read_pem(pki.node.cert_file or Path(), "node"))
    names = node.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert [str(ip) for ip in names.get_values_for_type(x509.IPAddress)] == ["127.0.0.1"]
    assert names.get_values_for_type(x509.DNSName) == ["localhost"]


# ---------------------------------------------------------------------------- peer streams


def _peer_batches(
    server_pki: LocalPki | TlsFiles, link_credentials: grpc.ChannelCredentials | None
) -> int:
    """Messages node 2 (TLS with `server_pki`'s node files, client certificates required)
    received from node 1's link within 3 s of heartbeats."""
    server_files = server_pki.node if isinstance(server_pki, LocalPki) else server_pki

    async def run() -> int:
        port = free_ports(1)[0]
        received: list[Any] = []
        server = grpc.aio.server(options=GRPC_OPTIONS)
        servicer = PeerServicer("c", 2, {1}, lambda src, g, m: received.append(m))
        peer_pb2_grpc.add_PeerServicer_to_server(servicer, server)
        credentials = server_files.server_credentials(require_client_cert=True)
        server.add_secure_port(f"127.0.0.1:{port}", credentials)
        await server.start()
        link = PeerLink(
            "c",
            1,
            2,
            f"127.0.0.1:{port}",
            credentials=None if link_credentials is None else lambda: link_credentials,
            backoff_s=(0.05, 0.1),
        )
        link.start()
        try:
            end = time.monotonic() + 3.0
            while time.monotonic() < end and not received:
                hb = Heartbeat(src=1, dst=2, ballot=Ballot(1, 1), chosen_watermark=0, seq=1)
                link.send(1, [hb])
                await asyncio.sleep(0.02)
            return len(received)
        finally:
            await link.stop()
            await server.stop(0)

    return asyncio.run(run())


def test_a_peer_with_the_clusters_ca_and_certificate_gets_through(pki: LocalPki) -> None:
    assert _peer_batches(pki, pki.node.channel_credentials()) > 0


def test_a_peer_with_another_cas_certificate_is_refused(pki: LocalPki, other_pki: LocalPki) -> None:
    # It trusts our CA (so it would accept our certificate) but presents one we did not sign.
    impostor = TlsFiles(pki.ca_file, other_pki.node.cert_file, other_pki.node.key_file)
    assert _peer_batches(pki, impostor.channel_credentials()) == 0


def test_a_peer_without_a_certificate_or_without_tls_is_refused(pki: LocalPki) -> None:
    assert _peer_batches(pki, TlsFiles(pki.ca_file).channel_credentials()) == 0
    assert _peer_batches(pki, None) == 0


def test_a_peer_refuses_a_node_whose_certificate_another_ca_signed(
    pki: LocalPki, other_pki: LocalPki
) -> None:
    # The server presents another CA's certificate (and trusts our CA, so our certificate
    # would pass): our link must not talk to it.
    impostor = TlsFiles(pki.ca_file, other_pki.node.cert_file, other_pki.node.key_file)
    assert _peer_batches(impostor, pki.node.channel_credentials()) == 0


def test_a_peer_refuses_a_node_whose_certificate_names_another_host(
    tmp_path: Path, pki: LocalPki
) -> None:
    """The link dials 127.0.0.1; a certificate of our CA for 127.0.0.2 only must not do."""
    elsewhere = make_local_pki(tmp_path / "elsewhere", "elsewhere", hosts=("127.0.0.2",))
    link = TlsFiles(elsewhere.ca_file, elsewhere.node.cert_file, elsewhere.node.key_file)
    assert _peer_batches(elsewhere, link.channel_credentials()) == 0
    named = make_local_pki(tmp_path / "named", "named")  # the same, naming 127.0.0.1
    assert _peer_batches(named, named.node.channel_credentials()) > 0


def test_a_nodes_own_calls_to_other_groups_leaders_use_its_certificate(
    tmp_path: Path, pki: LocalPki
) -> None:
    """The node's internal client (transaction duties: a participant asking a coordinator)
    reaches a TLS node, which refuses plaintext and certificate-less clients."""
    config = ClusterConfig(
        cluster_id="tls-runtime",
        peer_secret="s" * 16,
        nodes=(NodeConfig(id=1, name="n1", address=f"127.0.0.1:{free_ports(1)[0]}"),),
        replication=1,
        data_dir=str(tmp_path),
        tls=NodeTls(files=pki.node),
    )

    async def run() -> bool:
        runtime = NodeRuntime(config, config.nodes[0], first_start=True)
        await runtime.start()
        try:
            client = await asyncio.wait_for(runtime._group_client(), 10.0)
            return client.shard_map is not None
        finally:
            await runtime.stop(grace_s=0.1)

    assert asyncio.run(run())


def test_private_keys_go_to_a_directory_of_ours_alone(tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir(mode=0o777)
    shared.chmod(0o777)
    with pytest.raises(TlsSetupError, match="no one else can enter"):
        make_local_pki(shared, "x")
    assert not list(shared.iterdir())
    fresh = make_local_pki(tmp_path / "fresh", "x")
    assert stat.S_IMODE((tmp_path / "fresh").stat().st_mode) == 0o700
    assert fresh.node.key_file is not None
    assert stat.S_IMODE(fresh.node.key_file.stat().st_mode) == 0o600


def test_a_refused_handshake_is_logged_once_per_reason(
    pki: LocalPki, other_pki: LocalPki, caplog: pytest.LogCaptureFixture
) -> None:
    """Found by review: a node whose certificate its peers refuse logged nothing; its groups
    just never elected a leader. The link redials every 50-100 ms and logs once."""
    caplog.set_level(logging.WARNING, logger="paxoskv.transport")
    impostor = TlsFiles(pki.ca_file, other_pki.node.cert_file, other_pki.node.key_file)
    assert _peer_batches(pki, impostor.channel_credentials()) == 0
    failures = [r for r in caplog.records if r.getMessage() == "peer stream failed"]
    assert len(failures) == 1, [r.__dict__.get("reason") for r in failures]
    assert failures[0].__dict__["address"].startswith("127.0.0.1:")
