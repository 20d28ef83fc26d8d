"""X.509 material for a cluster: an EC P-256 CA and node certificates it signs (pure, no files).

Every node certificate carries the fixed DNS name `p2pft-node` in its SAN, and every channel sets
`grpc.ssl_target_name_override` to it. So a certificate stays valid whatever IP address a dev box gets from
DHCP, and the CA alone decides who is in the cluster. The node id is the certificate's common name: the
server reads it from the TLS auth context and refuses a Hello/Heartbeat that claims another id.

Node certificates last a year (NODE_DAYS): a box that leaves for good, or whose key leaks, stops being a member
by itself within a year even where nobody revokes it; a live daemon renews its own before then
(p2pft.security.renewal). Joining boxes make their own key and send a certificate signing request
(p2pft.security.enrol); the CA key never leaves the box that holds it.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import ipaddress

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

TLS_TARGET_NAME = "p2pft-node"
_CA_YEARS = 20
NODE_DAYS = 365


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    pkcs8 = serialization.PrivateFormat.PKCS8
    return key.private_bytes(serialization.Encoding.PEM, pkcs8, serialization.NoEncryption())


def new_ca() -> tuple[bytes, bytes]:
    """A fresh cluster CA: (cert PEM, key PEM)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "p2pft"),
                      x509.NameAttribute(NameOID.COMMON_NAME, "p2pft cluster CA")])
    now = _now()
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=365 * _CA_YEARS))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True, content_commitment=False,
                          key_encipherment=False, data_encipherment=False, key_agreement=False,
                          encipher_only=False, decipher_only=False),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM), _key_pem(key)


def issue_node_cert(ca_cert_pem: bytes, ca_key_pem: bytes, node_id: str, days: int = NODE_DAYS) -> tuple[bytes, bytes]:
    """A node certificate signed by the CA: (cert PEM, key PEM). CN = node id; SAN = p2pft-node and friends."""
    key = ec.generate_private_key(ec.SECP256R1())
    return sign_node_key(ca_cert_pem, ca_key_pem, node_id, key.public_key(), days), _key_pem(key)


def new_node_key() -> tuple[ec.EllipticCurvePrivateKey, bytes]:
    """A node's own key pair (made on the node, never sent anywhere): (key, key PEM)."""
    key = ec.generate_private_key(ec.SECP256R1())
    return key, _key_pem(key)


def make_csr(key: ec.EllipticCurvePrivateKey, node_id: str) -> bytes:
    """A certificate signing request (PEM) for `node_id`: proves the joining box holds the key it asks about."""
    csr = (x509.CertificateSigningRequestBuilder()
           .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, node_id)]))
           .sign(key, hashes.SHA256()))
    return csr.public_bytes(serialization.Encoding.PEM)


def csr_public_key(csr_pem: bytes) -> ec.EllipticCurvePublicKey:
    """The key of a CSR whose self-signature holds; only EC P-256 (what p2pft makes and gRPC's TLS takes)."""
    csr = x509.load_pem_x509_csr(csr_pem)
    if not csr.is_signature_valid:
        raise ValueError("the certificate signing request's signature does not verify")
    key = csr.public_key()
    if not isinstance(key, ec.EllipticCurvePublicKey) or not isinstance(key.curve, ec.SECP256R1):
        raise ValueError("the certificate signing request's key is not EC P-256")
    return key


def sign_node_key(ca_cert_pem: bytes, ca_key_pem: bytes, node_id: str, public_key: ec.EllipticCurvePublicKey,
                  days: int = NODE_DAYS) -> bytes:
    """A node certificate (PEM) for `public_key`, CN = node id, signed by the CA, valid `days`."""
    ca_cert = x509.load_pem_x509_certificate(ca_cert_pem)
    ca_key = serialization.load_pem_private_key(ca_key_pem, password=None)
    if not isinstance(ca_key, ec.EllipticCurvePrivateKey):
        raise ValueError("cluster CA key is not an EC key")
    now = _now()
    san = x509.SubjectAlternativeName([
        x509.DNSName(TLS_TARGET_NAME),
        x509.DNSName(f"{node_id}.{TLS_TARGET_NAME}"),
        x509.DNSName("localhost"),
        x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
    ])
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "p2pft"),
                                 x509.NameAttribute(NameOID.COMMON_NAME, node_id)]))
        .issuer_name(ca_cert.subject)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(san, critical=False)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]),
                       critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM)


def fingerprint_of(cert_pem_or_der: bytes) -> str:
    """sha256 over the certificate's DER, 64 hex digits: what a join token pins the cluster CA by."""
    if cert_pem_or_der.lstrip().startswith(b"-----"):
        cert = x509.load_pem_x509_certificate(cert_pem_or_der)
        cert_pem_or_der = cert.public_bytes(serialization.Encoding.DER)
    return hashlib.sha256(cert_pem_or_der).hexdigest()


def not_after_of(cert_pem: bytes) -> dt.datetime:
    return x509.load_pem_x509_certificate(cert_pem).not_valid_after_utc


def cluster_id_of(ca_cert_pem: bytes) -> str:
    """First 16 hex chars of sha256 over the CA certificate's DER: public, stable, never secret material."""
    der = x509.load_pem_x509_certificate(ca_cert_pem).public_bytes(serialization.Encoding.DER)
    return hashlib.sha256(der).hexdigest()[:16]


def common_name_of(cert_pem: bytes) -> str:
    cert = x509.load_pem_x509_certificate(cert_pem)
    names = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    return str(names[0].value) if names else ""


def is_signed_by(cert_pem: bytes, ca_cert_pem: bytes) -> bool:
    cert = x509.load_pem_x509_certificate(cert_pem)
    ca = x509.load_pem_x509_certificate(ca_cert_pem)
    try:
        cert.verify_directly_issued_by(ca)
    except Exception:  # InvalidSignature, ValueError (wrong issuer), TypeError (key type)
        return False
    return True


def ca_key_matches(ca_cert_pem: bytes, ca_key_pem: bytes) -> bool:
    cert = x509.load_pem_x509_certificate(ca_cert_pem)
    key = serialization.load_pem_private_key(ca_key_pem, password=None)
    fmt = serialization.PublicFormat.SubjectPublicKeyInfo
    enc = serialization.Encoding.DER
    return bool(cert.public_key().public_bytes(enc, fmt) == key.public_key().public_bytes(enc, fmt))
