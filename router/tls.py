"""TLS for every gRPC hop: the PEM files a node or a client trusts and presents.

One CA file says whom to trust; a certificate and its key say who we are. Nodes present
theirs to clients and to each other (the peer service shares the client port); clients
present theirs when the nodes require client certificates. Certificates must name the host
part of the addresses used to reach the nodes (an IP SAN for an IP address), as gRPC checks.

A client given no `tls=` (its default "env") reads the same files from PAXOSKV_TLS_CA,
PAXOSKV_TLS_CERT and PAXOSKV_TLS_KEY (as libpq reads PGSSLROOTCERT), so scripts and the
command line reach a TLS cluster without code changes.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol

import grpc
from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization

from router.env import ENV_CA, ENV_CERT, ENV_KEY


class TlsSetupError(ValueError):
    """A TLS file is missing, unreadable or not PEM; the message names the file."""


@dataclass(frozen=True, slots=True)
class TlsFiles:
    """Paths of a CA bundle and, optionally, of our certificate chain and its private key.

    Paths may be given as `str` (`TlsFiles("ca.pem", "client.pem", "client-key.pem")`); they
    are kept as `Path`s.
    """

    ca_file: Path
    cert_file: Path | None = None
    key_file: Path | None = None

    def __post_init__(self) -> None:
        # Found by a docs review: the README's TlsFiles(ca, cert, key) with strings failed
        # with an AttributeError at the first connection.
        for name in ("ca_file", "cert_file", "key_file"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, Path):
                object.__setattr__(self, name, Path(value))
        if (self.cert_file is None) != (self.key_file is None):
            raise TlsSetupError(
                "a TLS certificate needs its private key and a key its certificate: give both "
                "or neither (--tls-cert and --tls-key, or PAXOSKV_TLS_CERT and PAXOSKV_TLS_KEY; "
                f"certificate: {self.cert_file or 'none'}, key: {self.key_file or 'none'})"
            )

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> TlsFiles | None:
        """The files named by PAXOSKV_TLS_CA/CERT/KEY; None when PAXOSKV_TLS_CA is unset."""
        ca = environ.get(ENV_CA, "")
        cert = environ.get(ENV_CERT, "")
        key = environ.get(ENV_KEY, "")
        if not ca:
            if cert or key:
                raise TlsSetupError(
                    f"a TLS certificate or key is given without a CA to trust ({ENV_CA}, or "
                    "--tls-ca on the command line)"
                )
            return None
        return cls(Path(ca), Path(cert) if cert else None, Path(key) if key else None)

    def channel_credentials(self) -> grpc.ChannelCredentials:
        """Credentials of a client channel: trust the CA, present our certificate if any."""
        ca = read_pem(self.ca_file, "the TLS CA file")
        if self.cert_file is None or self.key_file is None:
            return grpc.ssl_channel_credentials(root_certificates=ca)
        cert = read_pem(self.cert_file, "the TLS certificate file")
        key = read_pem(self.key_file, "the TLS key file")
        check_key_pair(
            cert,
            key,
            f"the TLS certificate file {self.cert_file}",
            f"the TLS key file {self.key_file}",
        )
        return grpc.ssl_channel_credentials(
            root_certificates=ca, private_key=key, certificate_chain=cert
        )

    def server_credentials(self, *, require_client_cert: bool) -> grpc.ServerCredentials:
        """Credentials of a node's port: present our certificate; with `require_client_cert`
        refuse every connection that does not present one signed by the CA."""
        if self.cert_file is None or self.key_file is None:
            raise TlsSetupError("a node needs its own TLS certificate and key, not a CA alone")
        return grpc.ssl_server_credentials(
            [
                (
                    read_pem(self.key_file, "the TLS key file"),
                    read_pem(self.cert_file, "the TLS certificate file"),
                )
            ],
            root_certificates=read_pem(self.ca_file, "the TLS CA file"),
            require_client_auth=require_client_cert,
        )


class CredentialSource(Protocol):
    """Anything that makes a client channel's TLS credentials: `TlsFiles`, or a node's
    `shard.tls_reload.ReloadingTls` (the files it checked and took up last)."""

    def channel_credentials(self) -> grpc.ChannelCredentials: ...


#: What a client's `tls=` takes: files (or another credential source), None for plaintext,
#: or "env" (the default) for the files the environment names, if any.
ClientTls = CredentialSource | None | Literal["env"]


def resolve_client_tls(tls: ClientTls) -> CredentialSource | None:
    """Where a client's credentials come from (None: plaintext)."""
    return TlsFiles.from_env() if tls == "env" else tls


def aio_channel(
    address: str, credentials: grpc.ChannelCredentials | None, options: Sequence[tuple[str, Any]]
) -> grpc.aio.Channel:
    """An asyncio channel to `address`: TLS with `credentials`, plaintext without."""
    if credentials is None:
        return grpc.aio.insecure_channel(address, options=list(options))
    return grpc.aio.secure_channel(address, credentials, options=list(options))


def sync_channel(
    address: str, credentials: grpc.ChannelCredentials | None, options: Sequence[tuple[str, Any]]
) -> grpc.Channel:
    """The same, for synchronous callers (tools, the local cluster's Status calls)."""
    if credentials is None:
        return grpc.insecure_channel(address, options=list(options))
    return grpc.secure_channel(address, credentials, options=list(options))


def check_key_pair(cert: bytes, key: bytes, cert_name: str, key_name: str) -> None:
    """Raise TlsSetupError, naming the files, unless `cert` holds a certificate and `key` is
    the unencrypted private key of its first one (gRPC itself only logs lines of its own
    and fails the handshake)."""
    try:
        leaf = x509.load_pem_x509_certificates(cert)[0]
    except ValueError as exc:
        raise TlsSetupError(f"{cert_name} holds no PEM certificate ({exc})") from None
    try:
        private = serialization.load_pem_private_key(key, password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        raise TlsSetupError(f"{key_name} is not an unencrypted PEM private key ({exc})") from None
    public = serialization.PublicFormat.SubjectPublicKeyInfo
    if private.public_key().public_bytes(
        serialization.Encoding.PEM, public
    ) != leaf.public_key().public_bytes(serialization.Encoding.PEM, public):
        raise TlsSetupError(f"{key_name} is not the private key of {cert_name}'s certificate")


def read_pem(path: Path, what: str) -> bytes:
    """The bytes of a PEM file; TlsSetupError naming `what` and the path if unusable."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise TlsSetupError(f"cannot read {what} {path}: {exc.strerror}") from None
    if b"-----BEGIN " not in data:
        raise TlsSetupError(f"{what} {path} is not PEM (no -----BEGIN line)")
    return data
