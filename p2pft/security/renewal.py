"""Certificate renewal: a member's new certificate for a new key, signed by a box that holds the CA key.

Node certificates last a year (p2pft.security.certs.NODE_DAYS). Before one runs out its daemon makes a new key,
sends a CSR naming its own node id to the CA box over mTLS (the `Renew` RPC: the handshake proves it holds the
current key, and the caller gate has already refused a revoked caller), and swaps the returned certificate in
(p2pft/daemon/renewal.py). The CA box signs with the rules of a join (`sign_node_key`, same validity and
extensions) and records the new serial in issued.json. The old certificate stays valid until it expires: a
renewal revokes nothing.

Files: the new pair is written as `node.key.next` and `node.crt.next` first, then renamed over node.key and
node.crt (key first). Two renames are not one atomic step; `complete_pending_renewal` (run before credentials
are loaded) finishes a swap cut between them, so a crash never leaves a key that does not match its certificate.
"""

from __future__ import annotations

import datetime as dt
import os
import time
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import NameOID

from p2pft.security.certs import TLS_TARGET_NAME, csr_public_key, is_signed_by, sign_node_key
from p2pft.security.enrolment import CA_CERT, CA_KEY, NODE_ID, EnrolmentRefused, holds_ca_key, issued_book, record_into

NODE_CERT, NODE_KEY = "node.crt", "node.key"
PENDING = ".next"
CA_HOLDER_FILE = "ca_holder"        # the node id of the box that last signed this box's certificate
DEFAULT_RENEW_BEFORE_DAYS = 30.0
MIN_RENEWAL_INTERVAL_S = 600.0      # one renewal per node per 10 min: a member cannot grow issued.json in a loop
VIA_RENEWAL = "renewal"


class RenewalRefused(ValueError):
    """A renewal this box will not sign: one line for the caller."""


class NotCaHolder(RenewalRefused):
    """This box has no CA key: ask the box that has it."""


class IdentityRefused(RenewalRefused):
    """The request asks for another identity than the caller's own."""


@dataclass(frozen=True)
class CertFacts:
    node_id: str
    serial: str            # hex
    not_after: dt.datetime


def cert_facts(cert_pem: bytes) -> CertFacts:
    cert = x509.load_pem_x509_certificate(cert_pem)
    names = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    return CertFacts(str(names[0].value) if names else "", format(cert.serial_number, "x"), cert.not_valid_after_utc)


def renewal_due(not_after: dt.datetime, now: dt.datetime, renew_before_days: float) -> bool:
    """Whether a certificate valid until `not_after` should be renewed now."""
    return not_after - now < dt.timedelta(days=renew_before_days)


def requested_identity(csr_pem: bytes, caller_id: str) -> None:
    """Refuse a CSR that names anything but the caller: its CN must be the caller's node id, and any SAN may name
    only the names every certificate of that node carries (the CA builds the SAN itself anyway)."""
    try:
        csr = x509.load_pem_x509_csr(csr_pem)
    except ValueError:
        raise RenewalRefused("the renewal request holds no PEM certificate signing request") from None
    names = [str(a.value) for a in csr.subject.get_attributes_for_oid(NameOID.COMMON_NAME)]
    if names != [caller_id]:
        raise IdentityRefused(f"the renewal request names {', '.join(names) or 'no node'} but the caller is node "
                             f"{caller_id}: a box renews only its own certificate")
    try:
        san = csr.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return
    allowed = {TLS_TARGET_NAME, f"{caller_id}.{TLS_TARGET_NAME}", "localhost"}
    others = [n for n in san.get_values_for_type(x509.DNSName) if n not in allowed]
    if others:
        raise IdentityRefused(f"the renewal request asks for the names {', '.join(others)}: node {caller_id} may "
                             "only renew its own")


def sign_renewal(state_dir: Path, caller_id: str, csr_pem: bytes, *, now: float | None = None) -> bytes:
    """The CA side: a new certificate (PEM) for the CSR's key, CN = `caller_id`, recorded in issued.json.

    `caller_id` is the CN of the certificate the caller proved in the TLS handshake (or this box's own id for a
    local renewal). Raises NotCaHolder without the CA key, RenewalRefused for anything else refused."""
    if not holds_ca_key(state_dir):
        raise NotCaHolder("this box holds no cluster CA key")
    if not NODE_ID.fullmatch(caller_id or ""):
        raise IdentityRefused("only a node renews a certificate (over TLS, with its own certificate)")
    requested_identity(csr_pem, caller_id)
    try:
        public_key = csr_public_key(csr_pem)
    except ValueError as exc:
        raise RenewalRefused(str(exc)) from None
    now = time.time() if now is None else now
    tls = Path(state_dir) / "tls"
    ca_cert, ca_key = (tls / CA_CERT).read_bytes(), (tls / CA_KEY).read_bytes()
    try:
        with issued_book(state_dir) as issued:
            entry = issued.get(caller_id)
            if isinstance(entry, dict) and entry.get("via") == VIA_RENEWAL and \
                    now - float(entry.get("issued", 0)) < MIN_RENEWAL_INTERVAL_S:
                raise RenewalRefused(f"node {caller_id} was renewed less than {MIN_RENEWAL_INTERVAL_S / 60:.0f} "
                                     "minutes ago: use the certificate it got then")
            cert = sign_node_key(ca_cert, ca_key, caller_id, public_key)
            record_into(issued, caller_id, cert, VIA_RENEWAL)
    except EnrolmentRefused as exc:   # a damaged issued.json: one line naming it
        raise RenewalRefused(str(exc)) from None
    return cert


def check_renewed(cert_pem: bytes, ca_cert_pem: bytes, node_id: str, key_pem: bytes,
                  current_not_after: dt.datetime) -> CertFacts:
    """The renewing side: the certificate a peer sent is for this node, this key, this CA, and lasts longer than
    the current one; ValueError with one line otherwise."""
    try:
        facts = cert_facts(cert_pem)
    except ValueError:
        raise ValueError("the answer holds no PEM certificate") from None
    if not is_signed_by(cert_pem, ca_cert_pem):
        raise ValueError("the certificate is not signed by this cluster's CA")
    if facts.node_id != node_id:
        raise ValueError(f"the certificate is for node {facts.node_id}, not {node_id}")
    if not same_key(cert_pem, key_pem):
        raise ValueError("the certificate is for another key than the one this box made")
    if facts.not_after <= current_not_after:
        raise ValueError("the certificate expires no later than the current one")
    return facts


def same_key(cert_pem: bytes, key_pem: bytes) -> bool:
    cert = x509.load_pem_x509_certificate(cert_pem)
    key = serialization.load_pem_private_key(key_pem, password=None)
    fmt, enc = serialization.PublicFormat.SubjectPublicKeyInfo, serialization.Encoding.DER
    return bool(cert.public_key().public_bytes(enc, fmt) == key.public_key().public_bytes(enc, fmt))


def write_renewed(state_dir: Path, cert_pem: bytes, key_pem: bytes) -> None:
    """Both files complete and synced under their `.next` names, then renamed into place (key first)."""
    tls = Path(state_dir) / "tls"
    _write_synced(tls / (NODE_KEY + PENDING), key_pem, 0o600)
    _write_synced(tls / (NODE_CERT + PENDING), cert_pem, 0o644)
    complete_pending_renewal(state_dir)


def complete_pending_renewal(state_dir: Path) -> bool:
    """Finish a renewal whose renames were cut off; True when something was moved. A `.next` key without its
    certificate (cut while writing) is dropped: the current pair is whole and still valid."""
    tls = Path(state_dir) / "tls"
    key_next, cert_next = tls / (NODE_KEY + PENDING), tls / (NODE_CERT + PENDING)
    try:
        if not cert_next.exists():
            key_next.unlink(missing_ok=True)
            return False
        if key_next.exists():
            if not same_key(cert_next.read_bytes(), key_next.read_bytes()):
                key_next.unlink()
                cert_next.unlink()
                return False
            os.replace(key_next, tls / NODE_KEY)
        if same_key(cert_next.read_bytes(), (tls / NODE_KEY).read_bytes()):
            os.replace(cert_next, tls / NODE_CERT)
        else:   # a certificate for a key that never landed: the current pair stays
            cert_next.unlink()
        _fsync_dir(tls)
    except (OSError, ValueError):
        return False   # not ours to change (a group member's CLI) or unreadable: load what is there
    return True


def read_ca_holder(state_dir: Path) -> str:
    try:
        text = (Path(state_dir) / "tls" / CA_HOLDER_FILE).read_text().strip()
    except OSError:
        return ""
    return text if NODE_ID.fullmatch(text) else ""


def write_ca_holder(state_dir: Path, node_id: str) -> None:
    if NODE_ID.fullmatch(node_id):
        _write_synced(Path(state_dir) / "tls" / CA_HOLDER_FILE, f"{node_id}\n".encode(), 0o644)


def _write_synced(path: Path, data: bytes, mode: int) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.chmod(tmp, mode)
    os.replace(tmp, path)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
