"""A private CA and its certificates for a local cluster (`paxoskv cluster start --tls`).

For a cluster on one machine or a test: every node shares one certificate for 127.0.0.1 and
localhost (server and client use), and one client certificate serves the command line and
scripts. A production cluster brings its own PKI (README, "Running nodes on several
machines").
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import stat
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from router.tls import TlsFiles, TlsSetupError, check_key_pair, read_pem

VALIDITY = datetime.timedelta(days=365)
LOCAL_HOSTS = ("127.0.0.1", "localhost")


@dataclass(frozen=True, slots=True)
class LocalPki:
    """Where `make_local_pki` wrote the files."""

    ca_file: Path
    node: TlsFiles
    client: TlsFiles


def make_local_pki(directory: Path, name: str, hosts: tuple[str, ...] = LOCAL_HOSTS) -> LocalPki:
    """Write a new CA, a node certificate for `hosts` and a client certificate under
    `directory`, a directory of the owner's alone (keys readable by the owner only).

    Raises:
        TlsSetupError: `directory` exists and is not a directory of ours that only we can
            enter (in a shared /tmp another user could read or swap the keys).
    """
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    _check_private(directory)
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"paxoskv {name} CA")])
    ca_cert = (
        _builder(ca_name, ca_name, ca_key.public_key(), now)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .sign(ca_key, hashes.SHA256())
    )
    ca_file = directory / "ca.pem"
    ca_file.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    node = _issue(
        directory,
        "node",
        f"paxoskv {name} node",
        hosts,
        (ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH),
        ca_cert,
        ca_key,
        now,
    )
    client = _issue(
        directory,
        "client",
        f"paxoskv {name} client",
        (),
        (ExtendedKeyUsageOID.CLIENT_AUTH,),
        ca_cert,
        ca_key,
        now,
    )
    return LocalPki(
        ca_file=ca_file,
        node=TlsFiles(ca_file, node[0], node[1]),
        client=TlsFiles(ca_file, client[0], client[1]),
    )


def read_node_pems(ca_file: Path, cert_file: Path, key_file: Path) -> tuple[bytes, bytes, bytes]:
    """The (CA, certificate chain, private key) PEMs of a node, checked as a usable set.

    Raises:
        TlsSetupError: a file is unreadable or not PEM, or `check_node_pems` refuses them
            (each message names the [tls] field).
    """
    ca = read_pem(ca_file, "tls.ca_file")
    cert = read_pem(cert_file, "tls.cert_file")
    key = read_pem(key_file, "tls.key_file")
    check_node_pems(ca, cert, key)
    return ca, cert, key


def check_node_pems(ca: bytes, cert: bytes, key: bytes) -> None:
    """Raise TlsSetupError, naming the [tls] field, unless `ca` and `cert` hold certificates
    and `key` is the unencrypted private key of `cert`'s first one."""
    try:
        x509.load_pem_x509_certificates(ca)
    except ValueError as exc:
        raise TlsSetupError(f"tls.ca_file holds no PEM certificate ({exc})") from None
    check_key_pair(cert, key, "tls.cert_file", "tls.key_file")


def _builder(
    subject: x509.Name, issuer: x509.Name, key: ec.EllipticCurvePublicKey, now: datetime.datetime
) -> x509.CertificateBuilder:
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(key)
        .serial_number(x509.random_serial_number())
        # An hour back: a peer whose clock is a little behind still accepts it.
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + VALIDITY)
    )


def _issue(
    directory: Path,
    stem: str,
    common_name: str,
    hosts: tuple[str, ...],
    usages: tuple[x509.ObjectIdentifier, ...],
    ca_cert: x509.Certificate,
    ca_key: ec.EllipticCurvePrivateKey,
    now: datetime.datetime,
) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    builder = (
        _builder(subject, ca_cert.subject, key.public_key(), now)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage(list(usages)), critical=False)
    )
    if hosts:
        names = [_general_name(h) for h in dict.fromkeys(hosts)]  # once each, in order
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    cert = builder.sign(ca_key, hashes.SHA256())
    cert_file = directory / f"{stem}.pem"
    key_file = directory / f"{stem}-key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    private = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    # A new file of our own (never an existing one or a link's target), then renamed over.
    staged = key_file.with_name(f".{key_file.name}.{os.getpid()}")
    fd = os.open(staged, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(private)
    os.replace(staged, key_file)
    return cert_file, key_file


def _check_private(directory: Path) -> None:
    info = os.lstat(directory)
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid() or info.st_mode & 0o077:
        raise TlsSetupError(
            f"{directory} must be a directory of this user's that no one else can enter "
            f"(mode 0700) to hold private keys; remove it or pick another data directory"
        )


def _general_name(host: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(host))
    except ValueError:
        return x509.DNSName(host)
