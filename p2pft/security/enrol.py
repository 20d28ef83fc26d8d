"""The join protocol between `p2pft init --token` and the issuing daemon's join listener (TLS, no client cert).

Why not a gRPC method on the daemon's port: that server requires a client certificate on every call (the
joining box has none yet), and grpc cannot trust a server by a pinned fingerprint. So the listener is a small
TLS socket of its own (p2pft/daemon/join_listener.py) speaking newline-delimited JSON, each message at most
MAX_MESSAGE_BYTES:

  server -> client  {"p2pft_join": 1, "ca_cert": PEM}
  client -> server  {"token_id": ..., "secret": base64url, "node_id": wanted id, "csr": PEM}
  server -> client  {"node_id": id, "node_cert": PEM, "ca_cert": PEM}   or   {"error": one line}

The client checks, before it sends the secret: the CA certificate's sha256 is the token's, and the certificate
the server presented in the TLS handshake (which proves the server holds its key) is signed by that CA and names
the token's issuer. A man in the middle without the issuer's node key learns nothing and signs nothing.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import socket
import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from p2pft.security.certs import common_name_of, csr_public_key, fingerprint_of, is_signed_by, make_csr, new_node_key
from p2pft.security.enrolment import EnrolmentRefused, redeem, sign_join_request
from p2pft.security.token import NEW_TOKEN_HINT, JoinToken, TokenError

log = logging.getLogger("p2pft.join")
MAX_MESSAGE_BYTES = 64 * 1024
CONNECT_TIMEOUT_S = 5.0
IO_TIMEOUT_S = 15.0


class JoinError(RuntimeError):
    """Joining failed; one line saying why and what to do."""


@dataclass(frozen=True)
class Joined:
    node_id: str
    node_cert_pem: bytes
    node_key_pem: bytes
    ca_cert_pem: bytes


# ---- server side (the daemon's join listener calls these) ------------------------------------------------------

def server_ssl_context(state_dir: Path) -> ssl.SSLContext:
    """TLS with this node's certificate, asking for no client certificate (the joining box has none)."""
    tls = Path(state_dir) / "tls"
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(tls / "node.crt", tls / "node.key")
    return context


def greeting(ca_cert_pem: bytes) -> bytes:
    return _line({"p2pft_join": 1, "ca_cert": ca_cert_pem.decode()})


def answer(state_dir: Path, ca_cert_pem: bytes, request_line: bytes, peer: str) -> bytes:
    """The reply line to one join request (never raises: every refusal is an {"error": ...} line, logged once)."""
    try:
        request = json.loads(request_line)
        if not isinstance(request, dict):
            raise ValueError("not an object")
        token_id, node_id, csr = request["token_id"], request["node_id"], request["csr"]
        secret = _unb64(request["secret"])
        if not all(isinstance(v, str) for v in (token_id, node_id, csr)):
            raise ValueError("a field is not a string")
    except (ValueError, KeyError, TypeError, binascii.Error):
        log.warning("join from %s refused: malformed request", peer)
        return _line({"error": "malformed join request: use the same p2pft version on both boxes"})
    try:
        csr_pem = csr.encode()
        csr_public_key(csr_pem)          # a bad CSR must not spend a use of the token
        redeem(state_dir, token_id, secret)
        issued_id, cert = sign_join_request(state_dir, csr_pem, node_id, token_id)
    except EnrolmentRefused as exc:
        log.warning("join from %s refused (token %s): %s", peer, token_id[:16], exc)
        return _line({"error": str(exc)})
    except ValueError as exc:
        log.warning("join from %s refused: %s", peer, exc)
        return _line({"error": f"{exc}: use the same p2pft version on both boxes"})
    except Exception as exc:  # a full disk, unreadable files: the joining box gets a line, the log the rest
        log.exception("join from %s failed on this box", peer)
        return _line({"error": f"the issuing box could not sign ({type(exc).__name__}): see its p2pftd log"})
    log.info("join from %s: signed a certificate for node %s (token %s)", peer, issued_id, token_id)
    return _line({"node_id": issued_id, "node_cert": cert.decode(), "ca_cert": ca_cert_pem.decode()})


# ---- client side (`p2pft init --token`) -------------------------------------------------------------------------

def join(token: JoinToken, wanted_node_id: str) -> Joined:
    """Enrol at the first address of the token that answers; raises JoinError (or TokenError) with one line."""
    key, key_pem = new_node_key()   # made here, never sent: only the CSR (its public half, self-signed) is
    csr = make_csr(key, wanted_node_id).decode()
    failures, impostors = [], []
    for address in token.addresses:
        try:
            reply = _exchange(address, token, wanted_node_id, csr)
        except OSError as exc:
            failures.append(f"{address} ({_why(exc)})")
            continue
        except TokenError as exc:
            # Something else answers there (this box's own daemon of another cluster on 127.0.0.1, a reused
            # address): the secret was not sent; the next address may be the issuer.
            impostors.append(str(exc))
            continue
        if "error" in reply:
            raise JoinError(f"the issuing box refused: {reply['error']}")
        try:
            node_id, cert, ca = str(reply["node_id"]), str(reply["node_cert"]).encode(), str(reply["ca_cert"]).encode()
        except (KeyError, TypeError):
            raise JoinError(f"{address} answered no certificate: use the same p2pft version on both boxes") from None
        if fingerprint_of(ca) != token.ca_fingerprint or not is_signed_by(cert, ca) or common_name_of(cert) != node_id:
            raise JoinError(f"{address} sent a certificate that does not match the token: ask for a new token "
                            f"({NEW_TOKEN_HINT})")
        if not _same_key(cert, key_pem):
            raise JoinError(f"{address} signed another key than this box's: use the same p2pft version on both boxes")
        return Joined(node_id, cert, key_pem, ca)
    if impostors:
        raise JoinError(f"{'; '.join(impostors)}" + (f"; no answer from {', '.join(failures)}" if failures else ""))
    port_hint = token.addresses[0].rpartition(":")[2]
    raise JoinError(f"cannot reach the box that issued this token at {', '.join(failures)}: start p2pftd there "
                    f"(and let TCP {port_hint} through its firewall), then run this again")


def _exchange(address: str, token: JoinToken, wanted_node_id: str, csr: str) -> dict[str, Any]:
    host, _, port = address.rpartition(":")
    host = host[1:-1] if host.startswith("[") else host
    # No CA to verify against yet: the check is ours, right after the handshake and before any secret is sent.
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    with socket.create_connection((host, int(port)), timeout=CONNECT_TIMEOUT_S) as raw:
        raw.settimeout(IO_TIMEOUT_S)
        with context.wrap_socket(raw, server_hostname=None) as tls:
            reader = tls.makefile("rb")
            hello = _read_line(reader)
            leaf_der = tls.getpeercert(binary_form=True)
            ca = str(hello.get("ca_cert", "")).encode()
            if not leaf_der or not ca:
                raise ConnectionError("not a p2pft join listener")
            _check_server(address, token, ca, leaf_der)
            tls.sendall(_line({"token_id": token.token_id, "secret": _b64(token.secret),
                               "node_id": wanted_node_id, "csr": csr}))
            return _read_line(reader)


def _check_server(address: str, token: JoinToken, ca_pem: bytes, leaf_der: bytes) -> None:
    try:
        matches = fingerprint_of(ca_pem) == token.ca_fingerprint
        leaf_pem = x509.load_der_x509_certificate(leaf_der).public_bytes(serialization.Encoding.PEM)
        signed = matches and is_signed_by(leaf_pem, ca_pem)
        issuer_ok = signed and common_name_of(leaf_pem) == token.issuer
    except ValueError:
        matches = issuer_ok = False
    if not matches:
        raise TokenError(f"{address} is not a box of this token's cluster (its CA differs): check the address, or "
                         f"ask for a new token ({NEW_TOKEN_HINT})")
    if not issuer_ok:
        raise TokenError(f"{address} is not the box that issued this token (its certificate is not node "
                         f"{token.issuer}'s): check the address, or ask for a new token")


def _same_key(cert_pem: bytes, key_pem: bytes) -> bool:
    cert = x509.load_pem_x509_certificate(cert_pem)
    key = serialization.load_pem_private_key(key_pem, password=None)
    fmt, enc = serialization.PublicFormat.SubjectPublicKeyInfo, serialization.Encoding.DER
    return bool(cert.public_key().public_bytes(enc, fmt) == key.public_key().public_bytes(enc, fmt))


def _why(exc: OSError) -> str:
    if isinstance(exc, TimeoutError | socket.timeout):
        return "timed out"
    if isinstance(exc, ssl.SSLError):
        return f"TLS failed: {exc.reason or exc}"
    return exc.strerror or type(exc).__name__


def _read_line(reader: Any) -> dict[str, Any]:
    line = reader.readline(MAX_MESSAGE_BYTES + 1)
    if not line.endswith(b"\n"):
        raise ConnectionError("the join listener's answer was cut off or too long")
    try:
        data = json.loads(line)
    except ValueError:
        data = None
    if not isinstance(data, dict):
        raise ConnectionError("the join listener's answer is not a JSON object")
    return data


def _line(data: dict[str, Any]) -> bytes:
    return json.dumps(data, separators=(",", ":")).encode() + b"\n"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: Any) -> bytes:
    if not isinstance(text, str) or len(text) > 128:
        raise ValueError("secret is not base64url")
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
