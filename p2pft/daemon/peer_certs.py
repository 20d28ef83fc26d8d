"""The certificate each peer last presented here (on its Hello and Heartbeat calls), for `p2pft status`: its
serial and expiry show which boxes renewed and which are about to run out."""

from __future__ import annotations

import grpc

from p2pft.security.renewal import CertFacts, cert_facts


class PeerCertificates:
    def __init__(self) -> None:
        self._seen: dict[str, tuple[bytes, CertFacts]] = {}   # node id -> (PEM, facts): parsed once per PEM

    def note(self, node_id: str, context: grpc.aio.ServicerContext) -> None:
        """Called after the caller's identity was checked against `node_id` (so the map holds members only)."""
        try:
            pems = context.auth_context().get("x509_pem_cert") or []
        except Exception:   # a test double without an auth context
            return
        if not pems:
            return
        pem = bytes(pems[0])
        seen = self._seen.get(node_id)
        if seen is not None and seen[0] == pem:
            return
        try:
            self._seen[node_id] = (pem, cert_facts(pem))
        except ValueError:
            return

    def facts(self, node_id: str) -> CertFacts | None:
        seen = self._seen.get(node_id)
        return seen[1] if seen else None


def not_after_unix_s(facts: CertFacts | None) -> float:
    return facts.not_after.timestamp() if facts else 0.0
