"""A node's TLS files, taken up again when they change: certificates rotate without a restart.

The node's port uses gRPC's dynamic server credentials: each new connection (a client's, a
peer's) gets the files taken up last. Outgoing channels (peer links at each dial, the node's
own client once rebuilt) use them too. Connections already open keep the certificates they
began with, as etcd's do; so rotate to certificates that overlap the old ones in validity
(and, for a new CA, first to a CA file that holds both). Files that changed but do not make
a usable set (a half-written key, a key of another certificate) are refused and the previous
ones kept, with a warning.
"""

from __future__ import annotations

import logging
import os

import grpc

from router.tls import TlsFiles
from shard.tls_certs import read_node_pems

log = logging.getLogger("paxoskv.tls")

#: How often the node looks at its TLS files' metadata (three stat calls).
TLS_CHECK_S = 2.0

_Pems = tuple[bytes, bytes, bytes]  # CA, certificate chain, private key
_Stamp = tuple[tuple[int, int, int, int], ...]  # per file: mtime, ctime (ns), size, inode


class ReloadingTls:
    """The node's TLS files and the credentials built from them, re-read when they change."""

    def __init__(self, files: TlsFiles, *, require_client_cert: bool) -> None:
        """Raises TlsSetupError, naming the file, when the files are not a usable set."""
        if files.cert_file is None or files.key_file is None:
            raise ValueError("a node needs its own TLS certificate and key, not a CA alone")
        self.files = files
        self._require_client_cert = require_client_cert
        self._stamp = self._stat()
        self._pems = self._load()
        self._fresh: grpc.ServerCertificateConfiguration | None = None
        self._refused: str | None = None  # the last refusal logged, to log each once
        #: How many times new files were taken up since start.
        self.reloads = 0

    def _paths(self) -> tuple[str, str, str]:
        assert self.files.cert_file is not None and self.files.key_file is not None
        return (str(self.files.ca_file), str(self.files.cert_file), str(self.files.key_file))

    def _stat(self) -> _Stamp:
        stats = [os.stat(path) for path in self._paths()]
        # ctime too: a chmod that makes a refused key readable changes nothing else.
        return tuple((s.st_mtime_ns, s.st_ctime_ns, s.st_size, s.st_ino) for s in stats)

    def _load(self) -> _Pems:
        assert self.files.cert_file is not None and self.files.key_file is not None
        return read_node_pems(self.files.ca_file, self.files.cert_file, self.files.key_file)

    def _server_config(self) -> grpc.ServerCertificateConfiguration:
        ca, cert, key = self._pems
        return grpc.ssl_server_certificate_configuration([(key, cert)], root_certificates=ca)

    def server_credentials(self) -> grpc.ServerCredentials:
        """Credentials of the node's port; new connections get the files taken up last."""
        return grpc.dynamic_ssl_server_credentials(
            self._server_config(),
            self._fetch,
            require_client_authentication=self._require_client_cert,
        )

    def _fetch(self) -> grpc.ServerCertificateConfiguration | None:
        # Called by gRPC at each new connection (under the GIL); None keeps the last one.
        fresh, self._fresh = self._fresh, None
        return fresh

    def channel_credentials(self) -> grpc.ChannelCredentials:
        """Credentials of an outgoing channel: trust the CA, present the node's certificate."""
        ca, cert, key = self._pems
        return grpc.ssl_channel_credentials(
            root_certificates=ca, private_key=key, certificate_chain=cert
        )

    def poll(self) -> bool:
        """Take up the files if they changed since the last look; True if new ones were.

        A changed set that cannot be used is looked at again at every poll until it can
        (a half-copied key, a key made readable later), its refusal logged once.
        """
        try:
            stamp = self._stat()
        except OSError:
            return False  # a file is being replaced: look again next time
        if stamp == self._stamp:
            return False
        try:
            pems = self._load()
        except Exception as exc:  # any reason at all: the node keeps serving with the old
            reason = f"{type(exc).__name__}: {exc}"
            if reason != self._refused:
                self._refused = reason
                log.warning(
                    "TLS files changed but cannot be used; keeping the previous ones",
                    extra={"reason": reason},
                )
            return False
        self._stamp, self._pems, self._refused = stamp, pems, None
        self._fresh = self._server_config()
        self.reloads += 1
        log.info("TLS files reloaded", extra={"files": list(self._paths())})
        return True
