"""This node's cluster credentials on disk, and gRPC mTLS built from them.

Files under `<state-dir>/tls/`: ca.crt, node.crt, node.key (0600), and on the box that made the cluster (or
one an admin copied it to) ca.key (0600) with the join bookkeeping (p2pft.security.enrolment). Joining boxes
never get ca.key: they make their own key and have the CA box sign it (p2pft.security.enrol). Server and
channels always use mutual TLS with the cluster CA as the only root: a peer or client with another cluster's
certificate, or none, fails the handshake.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc

from p2pft.security.certs import (
    NODE_DAYS,
    TLS_TARGET_NAME,
    cluster_id_of,
    common_name_of,
    is_signed_by,
    issue_node_cert,
    new_ca,
)
from p2pft.security.enrolment import DEFAULT_TTL_S, holds_ca_key, issue_token, record_issued
from p2pft.security.renewal import CA_HOLDER_FILE, complete_pending_renewal, write_ca_holder
from p2pft.security.token import decode_token

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
            f"or `p2pft --state-dir {state_dir} init --token-file F` (join one)"
        )
    if (d / (NODE_CERT + ".next")).exists():
        complete_pending_renewal(state_dir)   # a renewal cut between its two renames (p2pft.security.renewal)
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
    """`p2pft init`: a new cluster CA and this node's certificate; this box keeps the CA key."""
    _refuse_overwrite(state_dir, force)
    ca_cert, ca_key = new_ca()
    cert, key = issue_node_cert(ca_cert, ca_key, node_id)
    creds = _write_node(state_dir, ca_cert, cert, key, ca_key=ca_key)
    record_issued(state_dir, node_id, cert, "init")
    return creds


def join_cluster(state_dir: Path, node_id: str, token_text: str, *, force: bool = False) -> Credentials:
    """`p2pft init --token T`: enrol at the issuing daemon (raises TokenError, JoinError, CredentialsError).

    The node id in the certificate is the one the CA side granted: `node_id` unless that id was taken; the
    caller keeps the state dir's node_id file in step with `Credentials.node_id`."""
    from p2pft.security.enrol import join

    token = decode_token(token_text)
    if has_credentials(state_dir) and not force:
        existing = load_credentials(state_dir)
        if existing.cluster_id == token.cluster_id:
            return existing  # idempotent: already in this cluster
    if has_credentials(state_dir) and holds_ca_key(state_dir) and load_credentials(state_dir).cluster_id == \
            token.cluster_id:
        # --force here would delete the only copy of this cluster's CA key: nobody could join or revoke after.
        raise CredentialsError(f"{tls_dir(state_dir)} holds this cluster's CA key; joining again would delete it: "
                               "move ca.key to another box first (docs/daemon.md, 'Security choices')")
    _refuse_overwrite(state_dir, force)
    joined = join(token, node_id)
    creds = _write_node(state_dir, joined.ca_cert_pem, joined.node_cert_pem, joined.node_key_pem, ca_key=None)
    write_ca_holder(state_dir, token.issuer)   # where this box's daemon asks first for a renewal
    return creds


def make_join_token(state_dir: Path, addresses: tuple[str, ...], *, ttl_s: float = DEFAULT_TTL_S,
                    uses: int = 1) -> str:
    """A token for the daemon of this box (which must hold the CA key) reachable at `addresses`."""
    creds = load_credentials(state_dir)
    if not holds_ca_key(state_dir):
        raise CredentialsError(f"{tls_dir(state_dir) / CA_KEY} is missing: this box cannot issue join tokens; run "
                               "`p2pft join-token` on the box that holds the cluster CA key (the one that ran "
                               "`p2pft init`)")
    text, _ = issue_token(state_dir, creds.node_id, addresses, ttl_s=ttl_s, uses=uses)
    return text


def issue_local_node(ca_state_dir: Path, state_dir: Path, node_id: str, *, force: bool = False,
                     days: int = NODE_DAYS) -> Credentials:
    """A member's credentials made on this machine by the CA holder's state dir, without the network (the demo's
    boxes and test clusters live on one machine; the CA key is not copied). `days`: the certificate's validity
    (tests of renewal make one that is about to run out)."""
    ca_dir = tls_dir(ca_state_dir)
    if has_credentials(state_dir) and not force:
        existing = load_credentials(state_dir)
        if existing.cluster_id == cluster_id_of((ca_dir / CA_CERT).read_bytes()):
            return existing
    _refuse_overwrite(state_dir, force)
    ca_cert = (ca_dir / CA_CERT).read_bytes()
    cert, key = issue_node_cert(ca_cert, (ca_dir / CA_KEY).read_bytes(), node_id, days=days)
    record_issued(ca_state_dir, node_id, cert, "local")
    creds = _write_node(state_dir, ca_cert, cert, key, ca_key=None)
    write_ca_holder(state_dir, load_credentials(ca_state_dir).node_id)
    return creds


def _refuse_overwrite(state_dir: Path, force: bool) -> None:
    if has_credentials(state_dir) and not force:
        existing = load_credentials(state_dir)
        raise CredentialsError(
            f"{tls_dir(state_dir)} already holds credentials of cluster {existing.cluster_id}: "
            "pass --force to replace them (this box leaves that cluster)"
        )


def _write_node(state_dir: Path, ca_cert: bytes, cert: bytes, key: bytes, *, ca_key: bytes | None) -> Credentials:
    assert is_signed_by(cert, ca_cert)
    d = tls_dir(state_dir)
    if not Path(state_dir).is_dir():
        Path(state_dir).mkdir(parents=True, mode=0o700)   # keys inside: this box's alone, whatever the umask
        os.chmod(state_dir, 0o700)
    d.mkdir(exist_ok=True)
    os.chmod(d, 0o700)
    _write(d / CA_CERT, ca_cert, 0o644)
    if ca_key is not None:
        _write(d / CA_KEY, ca_key, 0o600)
    else:
        # A box that joins (again, with --force) must not keep another cluster's CA key nor its bookkeeping.
        for name in (CA_KEY, "join_tokens.json", "issued.json", CA_HOLDER_FILE):
            (d / name).unlink(missing_ok=True)
    _write(d / NODE_KEY, key, 0o600)
    _write(d / NODE_CERT, cert, 0o644)
    return load_credentials(state_dir)


def restrict_node_key(state_dir: Path) -> bool:
    """Make node.key 0600 when it is open to anyone else (0640 from a release whose CLI read it through the
    service's group); True when the mode changed. The CLI uses the daemon's local socket instead."""
    path = tls_dir(state_dir) / NODE_KEY
    try:
        if path.stat().st_mode & 0o077 == 0:
            return False
        os.chmod(path, 0o600)
    except OSError:   # not ours to change (another user's file): leave it as its owner made it
        return False
    return True


def _write(path: Path, data: bytes, mode: int) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.chmod(tmp, mode)
    os.replace(tmp, path)


def node_target_name(node_id: str) -> str:
    """The TLS name only `node_id`'s certificate carries (its SAN `<node id>.p2pft-node`, p2pft.security.certs)."""
    return f"{node_id}.{TLS_TARGET_NAME}"


def channel_options(extra: Sequence[tuple[str, Any]] = (), *, node_id: str | None = None) -> list[tuple[str, Any]]:
    """Options every p2pft channel uses: the TLS name, message size caps, fast reconnects.

    With `node_id` the handshake checks the server's certificate names that node: a member that gossiped another
    node's id with its own address, or answers at an address that changed hands, is refused in the handshake.
    Without it (a first dial by address, the CLI to its own daemon) any certificate of the cluster is accepted."""
    return [
        ("grpc.ssl_target_name_override", node_target_name(node_id) if node_id else TLS_TARGET_NAME),
        ("grpc.default_authority", TLS_TARGET_NAME),
        ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
        ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
        # A restarted peer should be dialled again within about a heartbeat, not after grpc's 20 s backoff.
        ("grpc.initial_reconnect_backoff_ms", 200),
        ("grpc.min_reconnect_backoff_ms", 200),
        ("grpc.max_reconnect_backoff_ms", 1000),
        *extra,
    ]


def secure_channel(target: str, state_dir: Path | Credentials, *, node_id: str | None = None) -> grpc.aio.Channel:
    """An asyncio mTLS channel to a p2pft daemon (peers and the CLI); `node_id`: the node we mean to reach,
    whose certificate the server must present (see channel_options)."""
    creds = state_dir if isinstance(state_dir, Credentials) else load_credentials(Path(state_dir))
    return grpc.aio.secure_channel(target, creds.channel_credentials(), options=channel_options(node_id=node_id))
