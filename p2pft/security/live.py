"""The server's certificate, swappable while the daemon runs (a renewed certificate needs no restart).

grpc's dynamic SSL server credentials ask `fetch` before every new TLS handshake: it answers None (keep the
current certificate) until `swap` gives it a new pair, which it hands over once; grpc keeps using it from then
on. Connections already open keep the certificate they were made with (the old one stays valid until it
expires). grpc calls `fetch` from its own threads, hence the lock.
"""

from __future__ import annotations

import threading

import grpc

from p2pft.security.credentials import Credentials


class ServerCertificate:
    def __init__(self, credentials: Credentials) -> None:
        self._lock = threading.Lock()
        self._initial = credentials
        self._pending: grpc.ServerCertificateConfiguration | None = None
        self.swaps = 0

    def server_credentials(self) -> grpc.ServerCredentials:
        return grpc.dynamic_ssl_server_credentials(_configuration(self._initial), self._fetch,
                                                   require_client_authentication=True)

    def swap(self, credentials: Credentials) -> None:
        with self._lock:
            self._pending = _configuration(credentials)
            self.swaps += 1

    def _fetch(self) -> grpc.ServerCertificateConfiguration | None:
        with self._lock:
            pending, self._pending = self._pending, None
        return pending


def _configuration(credentials: Credentials) -> grpc.ServerCertificateConfiguration:
    return grpc.ssl_server_certificate_configuration([(credentials.node_key_pem, credentials.node_cert_pem)],
                                                     root_certificates=credentials.ca_cert_pem)
