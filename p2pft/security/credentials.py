"""This node's cluster credentials on disk, and gRPC mTLS built from them.

Files under `<state-dir>/tls/`: ca.crt, ca.key (0600; kept so any member can issue join tokens, see
p2pft.security.token), node.crt, node.key (0600). Server and channels always use mutual TLS with the cluster
CA as the only root: a peer or client with another cluster's certificate, or none, fails the handshake.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc

from p2pft.security.certs import (
    TLS_TARGET_NAME,
    cluster_id_of,
    common_name_of,
    is_signed_by,
    issue_node_cert,
    new_ca,
)
from p2pft.security.token import JoinToken, decode_token, encode_token

TLS_DIR = "tls"
CA_CERT, CA_KEY, NODE_CERT, NODE_KEY = "ca.crt", "ca.key", "node.crt", "node.key"
MAX_MESSAGE_BYTES = 16 * 1024 * 1024


class CredentialsError(RuntimeError):
    """Missing or unusable credentials; one line naming the state dir and the command that fixes it."""


@dataclass(frozen=True)
class Credentials:
    ca_cert_pem: bytes
    node_cert_pem: bytes
    node_key_pem: bytes
    node_id: str       # the certificate's common name
    cluster_id: str

    def server_credentials(self) -> grpc.ServerCredentials:
        return grpc.ssl_server_credentials(
            [(self.node_key_pem, self.node_cert_pem)], root_certificates=self.ca_cert_pem, require_client_auth=True
        )

    def channel_credentials(self) -> grpc.ChannelCredentials:
        return grpc.ssl_channel_credentials(
            root_certificates=self.ca_cert_pem, private_key=self.node_key_pem, certificate_chain=self.node_cert_pem
        )


def tls_dir(state_dir: Path) -> Path:
    return Path(state_dir) / TLS_DIR


def has_credentials(state_dir: Path) -> bool:
    d = tls_dir(state_dir)
    return all((d / name).exists() for name in (CA_CERT, NODE_CERT, NODE_KEY))


def load_credentials(state_dir: Path) -> Credentials:
    d = tls_dir(state_dir)
    if not has_credentials(state_dir):
        raise CredentialsError(
            f"no cluster credentials in {d}: run `p2pft --state-dir {state_dir} init` (new cluster) "
            f"or `p2pft --state-dir {state_dir} init --token T` (join one)"
        )
    try:
        ca = (d / CA_CERT).read_bytes()
        cert = (d / NODE_CERT).read_bytes()
        key = (d / NODE_KEY).read_bytes()
        node_id = common_name_of(cert)
        cluster_id = cluster_id_of(ca)
    except (OSError, ValueError) as exc:
        raise CredentialsError(f"credentials in {d} are unreadable ({exc}): run `p2pft init --force`") from None
    return Credentials(ca, cert, key, node_id, cluster_id)


def create_cluster(state_dir: Path, node_id: str, *, force: bool = False) -> Credentials:
    """`p2pft init`: a new cluster CA and this node's certificate."""
    _refuse_overwrite(state_dir, force)
    ca_cert, ca_key = new_ca()
    return _write_node(state_dir, node_id, ca_cert, ca_key)


def join_cluster(state_dir: Path, node_id: str, token_text: str, *, force: bool = False) -> Credentials:
    """`p2pft init --token T`: this node's certificate under the token's CA (raises TokenError)."""
    token = decode_token(token_text)
    if has_credentials(state_dir) and not force:
        existing = load_credentials(state_dir)
        if existing.cluster_id == token.cluster_id:
            return existing  # idempotent: already in this cluster
    _refuse_overwrite(state_dir, force)
    return _write_node(state_dir, node_id, token.ca_cert_pem, token.ca_key_pem)


def make_join_token(state_dir: Path) -> str:
    creds = load_credentials(state_dir)
    key_path = tls_dir(state_dir) / CA_KEY
    if not key_path.exists():
        raise CredentialsError(f"{key_path} is missing: only a box that holds the cluster CA key can issue tokens")
    return encode_token(JoinToken(creds.ca_cert_pem, key_path.read_bytes(), creds.cluster_id))


def _refuse_overwrite(state_dir: Path, force: bool) -> None:
    if has_credentials(state_dir) and not force:
        existing = load_credentials(state_dir)
        raise CredentialsError(
            f"{tls_dir(state_dir)} already holds credentials of cluster {existing.cluster_id}: "
            "pass --force to replace them (this box leaves that cluster)"
        )


def _write_node(state_dir: Path, node_id: str, ca_cert: bytes, ca_key: bytes) -> Credentials:
    cert, key = issue_node_cert(ca_cert, ca_key, node_id)
    assert is_signed_by(cert, ca_cert)
    d = tls_dir(state_dir)
    d.mkdir(parents=True, exist_ok=True)
    os.chmod(d, 0o700)
    _write(d / CA_CERT, ca_cert, 0o644)
    _write(d / CA_KEY, ca_key, 0o600)
    _write(d / NODE_KEY, key, 0o600)
    _write(d / NODE_CERT, cert, 0o644)
    return load_credentials(state_dir)


def _write(path: Path, data: bytes, mode: int) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.chmod(tmp, mode)
    os.replace(tmp, path)


def channel_options(extra: Sequence[tuple[str, Any]] = ()) -> list[tuple[str, Any]]:
    """Options every p2pft channel uses: the fixed TLS name, message size caps, fast reconnects."""
    return [
        ("grpc.ssl_target_name_override", TLS_TARGET_NAME),
        ("grpc.default_authority", TLS_TARGET_NAME),
        ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
        ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
        # A restarted peer should be dialled again within about a heartbeat, not after grpc's 20 s backoff.
        ("grpc.initial_reconnect_backoff_ms", 200),
        ("grpc.min_reconnect_backoff_ms", 200),
        ("grpc.max_reconnect_backoff_ms", 1000),
        *extra,
    ]


def secure_channel(target: str, state_dir: Path | Credentials) -> grpc.aio.Channel:
    """An asyncio mTLS channel to a p2pft daemon (peers and the CLI)."""
    creds = state_dir if isinstance(state_dir, Credentials) else load_credentials(Path(state_dir))
    return grpc.aio.secure_channel(target, creds.channel_credentials(), options=channel_options())
