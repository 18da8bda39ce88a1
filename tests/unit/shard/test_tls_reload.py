"""Certificates rotate without a restart (shard/tls_reload.py): changed TLS files are taken
up by new connections to the node's port, and a set that cannot be used is refused."""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import time
from pathlib import Path
from typing import Any

import grpc
import pytest

from paxos.ballot import Ballot
from paxos.messages import Heartbeat
from router import kv_pb2 as kv
from router import kv_pb2_grpc
from router.tls import TlsFiles
from shard import peer_pb2_grpc
from shard import tls_reload as tls_reload_module
from shard.cluster import free_ports
from shard.tls_certs import LocalPki, make_local_pki
from shard.tls_reload import ReloadingTls
from shard.transport import GRPC_OPTIONS, PeerLink, PeerServicer


@pytest.fixture
def node_files(tmp_path: Path) -> tuple[TlsFiles, LocalPki, LocalPki]:
    """The node's files (a copy of PKI one's), and PKI one and two."""
    one = make_local_pki(tmp_path / "one", "one")
    two = make_local_pki(tmp_path / "two", "two")
    live = tmp_path / "live"
    live.mkdir(mode=0o700)
    files = TlsFiles(live / "ca.pem", live / "node.pem", live / "node-key.pem")
    install(one, files)
    return files, one, two


def install(pki: LocalPki, files: TlsFiles) -> None:
    """Put `pki`'s CA and node certificate in place of the node's files (a rotation), each
    file replaced whole, as the README tells operators to."""
    assert pki.node.cert_file and pki.node.key_file and files.cert_file and files.key_file
    for source, target in (
        (pki.ca_file, files.ca_file),
        (pki.node.cert_file, files.cert_file),
        (pki.node.key_file, files.key_file),
    ):
        replace(source, target)


def replace(source: Path, target: Path) -> None:
    temporary = target.with_suffix(".new")
    shutil.copyfile(source, temporary)
    os.replace(temporary, target)


def test_changed_files_are_taken_up_and_a_broken_set_is_refused(
    node_files: tuple[TlsFiles, LocalPki, LocalPki], caplog: pytest.LogCaptureFixture
) -> None:
    files, one, two = node_files
    tls = ReloadingTls(files, require_client_cert=True)
    assert not tls.poll()  # nothing changed
    install(two, files)
    assert tls.poll() and tls.reloads == 1
    assert not tls.poll()
    assert files.key_file is not None and one.node.key_file is not None
    replace(one.node.key_file, files.key_file)  # a key of another certificate
    with caplog.at_level(logging.WARNING, logger="paxoskv.tls"):
        assert not tls.poll()
    assert "keeping the previous ones" in caplog.text
    assert any("not the private key" in getattr(r, "reason", "") for r in caplog.records)
    assert tls.reloads == 1


def test_new_connections_get_the_rotated_certificates(
    node_files: tuple[TlsFiles, LocalPki, LocalPki],
) -> None:
    files, one, two = node_files
    tls = ReloadingTls(files, require_client_cert=True)

    async def answers(client: LocalPki, address: str) -> bool:
        """Whether a new connection with `client`'s files (trusting its CA) gets Status."""
        credentials = client.client.channel_credentials()
        async with grpc.aio.secure_channel(address, credentials) as channel:
            try:
                await kv_pb2_grpc.KVStub(channel).Status(kv.StatusRequest(), timeout=3)
            except grpc.aio.AioRpcError:
                return False
            return True

    class Servicer(kv_pb2_grpc.KVServicer):
        async def Status(self, request: kv.StatusRequest, context: object) -> kv.StatusResponse:
            return kv.StatusResponse(node_name="n1")

    async def run() -> list[bool]:
        server = grpc.aio.server()
        kv_pb2_grpc.add_KVServicer_to_server(Servicer(), server)
        address = f"127.0.0.1:{free_ports(1)[0]}"
        server.add_secure_port(address, tls.server_credentials())
        await server.start()
        try:
            before = [await answers(one, address), await answers(two, address)]
            install(two, files)
            assert tls.poll()
            after = [await answers(one, address), await answers(two, address)]
            return before + after
        finally:
            await server.stop(0)

    assert asyncio.run(run()) == [True, False, False, True]


def test_outgoing_credentials_follow_the_files(
    node_files: tuple[TlsFiles, LocalPki, LocalPki],
) -> None:
    """A peer link builds its channel's credentials at each dial: after a rotation to PKI
    two, the node gets into a peer that accepts only PKI two's certificates."""
    files, _, two = node_files
    tls = ReloadingTls(files, require_client_cert=True)

    class Servicer(kv_pb2_grpc.KVServicer):
        async def Status(self, request: kv.StatusRequest, context: object) -> kv.StatusResponse:
            return kv.StatusResponse(node_name="peer")

    async def dial(address: str) -> bool:
        async with grpc.aio.secure_channel(address, tls.channel_credentials()) as channel:
            try:
                await kv_pb2_grpc.KVStub(channel).Status(kv.StatusRequest(), timeout=3)
            except grpc.aio.AioRpcError:
                return False
            return True

    async def run() -> list[bool]:
        server = grpc.aio.server()
        kv_pb2_grpc.add_KVServicer_to_server(Servicer(), server)
        address = f"127.0.0.1:{free_ports(1)[0]}"
        server.add_secure_port(address, two.node.server_credentials(require_client_cert=True))
        await server.start()
        try:
            before = await dial(address)
            install(two, files)
            assert tls.poll()
            return [before, await dial(address)]
        finally:
            await server.stop(0)

    assert asyncio.run(run()) == [False, True]


def test_a_refused_set_is_looked_at_again_until_it_can_be_used(
    node_files: tuple[TlsFiles, LocalPki, LocalPki],
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Found by review: a set refused for any reason but ValueError (cryptography's
    UnsupportedAlgorithm) ended the watch for good, and a refused set was not looked at
    again until a file changed once more (a key made readable by a chmod never was)."""
    files, _, two = node_files
    tls = ReloadingTls(files, require_client_cert=True)

    def unsupported(*paths: Path) -> tuple[bytes, bytes, bytes]:
        raise RuntimeError("an algorithm this build does not support")

    monkeypatch.setattr(tls_reload_module, "read_node_pems", unsupported)
    install(two, files)
    with caplog.at_level(logging.WARNING, logger="paxoskv.tls"):
        assert not tls.poll() and not tls.poll()
    assert [r.getMessage() for r in caplog.records].count(
        "TLS files changed but cannot be used; keeping the previous ones"
    ) == 1  # once per reason
    monkeypatch.undo()
    assert tls.poll() and tls.reloads == 1  # no file changed since: looked at again


def test_a_peer_link_redials_with_the_rotated_certificate(
    node_files: tuple[TlsFiles, LocalPki, LocalPki],
) -> None:
    """A peer link builds its channel credentials at each dial: against a peer of the new
    CA only, nothing gets through before the rotation and heartbeats do after it."""
    files, _, two = node_files
    tls = ReloadingTls(files, require_client_cert=True)

    async def run() -> tuple[int, int]:
        received: list[Any] = []
        server = grpc.aio.server(options=GRPC_OPTIONS)
        servicer = PeerServicer("c", 2, {1}, lambda src, g, m: received.append(m))
        peer_pb2_grpc.add_PeerServicer_to_server(servicer, server)
        address = f"127.0.0.1:{free_ports(1)[0]}"
        server.add_secure_port(address, two.node.server_credentials(require_client_cert=True))
        await server.start()
        link = PeerLink(
            "c", 1, 2, address, credentials=tls.channel_credentials, backoff_s=(0.05, 0.1)
        )
        link.start()

        async def heartbeats(seconds: float) -> int:
            end = time.monotonic() + seconds
            while time.monotonic() < end:
                hb = Heartbeat(src=1, dst=2, ballot=Ballot(1, 1), chosen_watermark=0, seq=1)
                link.send(1, [hb])
                await asyncio.sleep(0.02)
            return len(received)

        try:
            before = await heartbeats(1.0)
            install(two, files)
            assert tls.poll()
            end = time.monotonic() + 5.0
            while not received and time.monotonic() < end:
                await heartbeats(0.1)
            return before, len(received)
        finally:
            await link.stop()
            await server.stop(0)

    before, after = asyncio.run(run())
    assert before == 0 and after > 0
