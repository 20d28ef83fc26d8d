"""Revoked node ids: a list signed by the cluster CA, gossiped in heartbeats, enforced by every daemon.

`p2pft revoke NODE` on a box that holds the CA key writes `<state-dir>/tls/revoked.json`: the cluster id, a
version that only grows, the revoked node ids, and an ECDSA signature by the CA key over the three. Every
daemon sends the newest list it has in each heartbeat (request and reply) and takes a list only when the
signature verifies against its own CA certificate, the cluster id is its own and the version is newer, so a
member cannot forge or roll back a list: the worst it can do is not pass it on (the others still hear it from
the CA's box, or from anyone who has it).

Revoking by node id is enough because a CA box never signs one id twice (p2pft.security.enrolment) and node
ids are the certificates' common names; a certificate made with a copy of a CA key from before this scheme
(tokens of the first format carried it) can take any id: for that case make a new cluster.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import threading
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from p2pft.security.certs import cluster_id_of

log = logging.getLogger("p2pft.revocation")
REVOKED_FILE = "revoked.json"
MAX_DOCUMENT_BYTES = 256 * 1024   # ~10,000 ids: far more than an office ever revokes, bounded for gossip


@dataclass(frozen=True)
class RevocationList:
    cluster_id: str
    version: int
    nodes: frozenset[str]
    document: bytes = b""   # the signed JSON as received or written: what is gossiped on


def _payload(cluster_id: str, version: int, nodes: frozenset[str]) -> bytes:
    return json.dumps({"cluster": cluster_id, "version": version, "nodes": sorted(nodes)},
                      sort_keys=True, separators=(",", ":")).encode()


def sign_list(ca_cert_pem: bytes, ca_key_pem: bytes, version: int, nodes: frozenset[str]) -> RevocationList:
    key = serialization.load_pem_private_key(ca_key_pem, password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise ValueError("cluster CA key is not an EC key")
    cluster_id = cluster_id_of(ca_cert_pem)
    payload = _payload(cluster_id, version, nodes)
    signature = key.sign(payload, ec.ECDSA(hashes.SHA256()))
    document = json.dumps({"payload": payload.decode(), "signature": base64.b64encode(signature).decode()},
                          separators=(",", ":")).encode()
    return RevocationList(cluster_id, version, nodes, document)


def verify_list(document: bytes, ca_cert_pem: bytes) -> RevocationList:
    """The list in `document` if the CA signed it for this cluster; ValueError otherwise."""
    if len(document) > MAX_DOCUMENT_BYTES:
        raise ValueError(f"revocation list of {len(document)} bytes is over {MAX_DOCUMENT_BYTES}")
    try:
        outer = json.loads(document)
        payload = str(outer["payload"]).encode()
        signature = base64.b64decode(str(outer["signature"]), validate=True)
    except (ValueError, KeyError, TypeError) as exc:
        raise ValueError(f"revocation list is malformed ({type(exc).__name__})") from None
    public_key = x509.load_pem_x509_certificate(ca_cert_pem).public_key()
    if not isinstance(public_key, ec.EllipticCurvePublicKey):
        raise ValueError("cluster CA key is not an EC key")
    try:
        public_key.verify(signature, payload, ec.ECDSA(hashes.SHA256()))
    except InvalidSignature:
        raise ValueError("revocation list is not signed by this cluster's CA") from None
    data = json.loads(payload)
    cluster_id, version, nodes = data.get("cluster"), data.get("version"), data.get("nodes")
    if cluster_id != cluster_id_of(ca_cert_pem):
        raise ValueError("revocation list is another cluster's")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise ValueError("revocation list has no valid version")
    if not isinstance(nodes, list) or not all(isinstance(n, str) and 0 < len(n) <= 64 for n in nodes):
        raise ValueError("revocation list has invalid node ids")
    return RevocationList(cluster_id, version, frozenset(nodes), document)


def revoke(state_dir: Path, node_id: str) -> RevocationList:
    """Add `node_id` to this CA box's signed list (a new version) and write it; the daemon gossips it."""
    tls = Path(state_dir) / "tls"
    ca_cert, ca_key = (tls / "ca.crt").read_bytes(), (tls / "ca.key").read_bytes()
    current = load_list(state_dir, ca_cert)
    signed = sign_list(ca_cert, ca_key, current.version + 1, current.nodes | {node_id})
    _write(tls / REVOKED_FILE, signed.document)
    return signed


def load_list(state_dir: Path, ca_cert_pem: bytes) -> RevocationList:
    """The list on disk, or an empty one (version 0) when there is none or it does not verify."""
    path = Path(state_dir) / "tls" / REVOKED_FILE
    try:
        return verify_list(path.read_bytes(), ca_cert_pem)
    except FileNotFoundError:
        pass
    except (OSError, ValueError) as exc:
        log.error("%s ignored: %s", path, exc)
    return RevocationList(cluster_id_of(ca_cert_pem), 0, frozenset())


def _write(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(data)
    os.chmod(tmp, 0o644)   # public: it names ids, no secret; the CLI of the service's group may read it
    os.replace(tmp, path)


class Revocations:
    """A daemon's current list: checked on every call (thread-safe reads), offered every list a peer sends,
    re-read from disk when `p2pft revoke` rewrote it."""

    def __init__(self, state_dir: Path, ca_cert_pem: bytes, self_id: str) -> None:
        self.state_dir = Path(state_dir)
        self.ca_cert_pem = ca_cert_pem
        self.self_id = self_id
        self._lock = threading.Lock()
        self.current = load_list(self.state_dir, ca_cert_pem)
        self._mtime = self._disk_mtime()
        self._refused_logged: set[str] = set()

    def is_revoked(self, node_id: str) -> bool:
        # This box's own CLI keeps working on its own daemon (it uses this node's certificate) even if this
        # node was revoked: that is how its user finds out (`p2pft status` names no peers).
        return node_id != self.self_id and node_id in self.current.nodes

    @property
    def document(self) -> bytes:
        return self.current.document

    def offer(self, document: bytes, source: str) -> bool:
        """Take a peer's list if it verifies and is newer; True when it was taken."""
        if not document or document == self.current.document:
            return False   # the common case, every heartbeat: no signature to check again
        try:
            offered = verify_list(document, self.ca_cert_pem)
        except ValueError as exc:
            log.warning("revocation list from %s refused: %s", source, exc)
            return False
        with self._lock:
            if offered.version <= self.current.version:
                return False
            self.current = offered
            try:
                _write(self.state_dir / "tls" / REVOKED_FILE, offered.document)
                self._mtime = self._disk_mtime()
            except OSError as exc:
                log.error("revocation list v%d not saved (%s); it holds until this daemon stops", offered.version, exc)
        log.warning("revocation list v%d from %s: revoked %s", offered.version, source,
                    ", ".join(sorted(offered.nodes)))
        return True

    def refresh(self) -> bool:
        """Re-read the file when it changed (the CA box's `p2pft revoke`); True when a newer list was taken."""
        mtime = self._disk_mtime()
        if mtime == self._mtime:
            return False
        self._mtime = mtime
        on_disk = load_list(self.state_dir, self.ca_cert_pem)
        with self._lock:
            if on_disk.version <= self.current.version:
                return False
            self.current = on_disk
        log.warning("revocation list v%d: revoked %s", on_disk.version, ", ".join(sorted(on_disk.nodes)))
        return True

    def refused_once(self, node_id: str) -> bool:
        """True the first time a call from `node_id` is refused (log once, count always)."""
        if node_id in self._refused_logged:
            return False
        self._refused_logged.add(node_id)
        return True

    def _disk_mtime(self) -> int:
        try:
            return (self.state_dir / "tls" / REVOKED_FILE).stat().st_mtime_ns
        except OSError:
            return 0
