"""The CA side of joining: join tokens issued here, redeemed by the join listener, and the certificates signed.

Files in `<state-dir>/tls/` of a box that holds the CA key (all 0600, the CA key's owner's alone):
  join_tokens.json  token id -> sha256 of its secret, expiry (unix s), uses left: never the secret itself, so a
                    copy of this file lets nobody join
  issued.json       node id -> serial, expiry and the token it came with, for every certificate signed here
                    (node ids are never signed twice: a box that joins again under a taken id gets a fresh one)
  .enrol.lock       flock: `p2pft join-token` (the CLI) and the daemon's join listener write these files
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import hmac
import json
import os
import re
import secrets
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from cryptography import x509

from p2pft.security.certs import csr_public_key, fingerprint_of, sign_node_key
from p2pft.security.token import JoinToken, encode_token, new_token

TOKENS_FILE, ISSUED_FILE, LOCK_FILE = "join_tokens.json", "issued.json", ".enrol.lock"
CA_CERT, CA_KEY = "ca.crt", "ca.key"
DEFAULT_TTL_S = 24 * 3600
MAX_TTL_S = 30 * 24 * 3600    # a forgotten token must not stay good for ever
MAX_USES = 1000
NODE_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")
# One hash compared when the token id is unknown, so a wrong id and a wrong secret take the same time.
_NO_SUCH_HASH = hashlib.sha256(b"p2pft: no such token").hexdigest()


class EnrolmentRefused(ValueError):
    """A join request that this box will not sign: one line for the joining box (never says which check failed
    beyond what the holder of a real token needs to know)."""


class NotCaHolder(RuntimeError):
    """This box has no CA key: it cannot issue tokens nor sign."""


def _tls(state_dir: Path) -> Path:
    return Path(state_dir) / "tls"


def holds_ca_key(state_dir: Path) -> bool:
    return (_tls(state_dir) / CA_KEY).is_file()


@contextlib.contextmanager
def _locked(state_dir: Path) -> Iterator[Path]:
    tls = _tls(state_dir)
    fd = os.open(tls / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield tls
    finally:
        os.close(fd)   # releases the lock


def _read(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except ValueError:
        # A damaged file must not keep tokens alive nor let ids repeat silently: refuse until an admin looks.
        raise EnrolmentRefused(f"{path} is damaged; move it aside on the issuing box and issue a new token") from None
    return data if isinstance(data, dict) else {}


def _write(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(data, f, indent=1, sort_keys=True)
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)


def _secret_hash(secret: bytes) -> str:
    return hashlib.sha256(secret).hexdigest()


def issue_token(state_dir: Path, issuer: str, addresses: tuple[str, ...], *, ttl_s: float = DEFAULT_TTL_S,
                uses: int = 1, now: float | None = None) -> tuple[str, JoinToken]:
    """A new token (text, parsed) whose record is stored here; expired and used-up records are dropped."""
    if not holds_ca_key(state_dir):
        raise NotCaHolder(f"{_tls(state_dir) / CA_KEY} is missing")
    if not 0 < ttl_s <= MAX_TTL_S:
        raise ValueError(f"--ttl must be more than 0 and at most {MAX_TTL_S // 86400} days")
    if not 1 <= uses <= MAX_USES:
        raise ValueError(f"--uses must be 1..{MAX_USES}")
    now = time.time() if now is None else now
    tls = _tls(state_dir)
    # Read the CA key here: a user who may read ca.crt but not ca.key (a service's group) gets PermissionError.
    (tls / CA_KEY).read_bytes()
    token = new_token(fingerprint_of((tls / CA_CERT).read_bytes()), issuer, addresses)
    with _locked(state_dir):
        records = _read(tls / TOKENS_FILE)
        records = {k: v for k, v in records.items() if v.get("expires", 0) > now and v.get("uses_left", 0) > 0}
        records[token.token_id] = {"sha256": _secret_hash(token.secret), "expires": now + ttl_s,
                                   "uses_left": uses, "issued": now}
        _write(tls / TOKENS_FILE, records)
    return encode_token(token), token


def redeem(state_dir: Path, token_id: str, secret: bytes, *, now: float | None = None) -> None:
    """Spend one use of a token, or raise EnrolmentRefused (unknown, wrong secret, expired, used up)."""
    now = time.time() if now is None else now
    with _locked(state_dir) as tls:
        records = _read(tls / TOKENS_FILE)
        record = records.get(token_id) if isinstance(token_id, str) else None
        stored = str(record.get("sha256", _NO_SUCH_HASH)) if isinstance(record, dict) else _NO_SUCH_HASH
        # Constant time: the comparison never tells how many leading characters of a guess were right.
        matches = hmac.compare_digest(stored, _secret_hash(secret))
        if record is None or not matches:
            raise EnrolmentRefused("the issuing box does not know this join token (wrong or damaged): ask for a new "
                                   "one (`p2pft join-token` on the box that holds the cluster CA key)")
        if record.get("expires", 0) <= now:
            raise EnrolmentRefused("this join token has expired: ask for a new one (`p2pft join-token --ttl 24h` "
                                   "on the box that holds the cluster CA key)")
        if record.get("uses_left", 0) <= 0:
            raise EnrolmentRefused("this join token was already used: ask for a new one (`p2pft join-token "
                                   "[--uses N]` on the box that holds the cluster CA key)")
        record["uses_left"] = int(record["uses_left"]) - 1
        _write(tls / TOKENS_FILE, records)


def sign_join_request(state_dir: Path, csr_pem: bytes, requested_id: str, token_id: str) -> tuple[str, bytes]:
    """Sign the CSR's key for a node id never issued here: (node id, cert PEM). The requested id when it is free
    and well-formed, else a fresh random one (the CA side decides ids, so no two boxes share one)."""
    public_key = csr_public_key(csr_pem)   # ValueError: bad CSR
    tls = _tls(state_dir)
    ca_cert, ca_key = (tls / CA_CERT).read_bytes(), (tls / CA_KEY).read_bytes()
    with _locked(state_dir):
        issued = _read(tls / ISSUED_FILE)
        node_id = requested_id if isinstance(requested_id, str) and NODE_ID.fullmatch(requested_id) else ""
        while not node_id or node_id in issued:
            node_id = secrets.token_hex(8)
        cert = sign_node_key(ca_cert, ca_key, node_id, public_key)
        _record(issued, node_id, cert, token_id)
        _write(tls / ISSUED_FILE, issued)
    return node_id, cert


def record_issued(state_dir: Path, node_id: str, cert_pem: bytes, how: str) -> None:
    with _locked(state_dir) as tls:
        issued = _read(tls / ISSUED_FILE)
        _record(issued, node_id, cert_pem, how)
        _write(tls / ISSUED_FILE, issued)


@contextlib.contextmanager
def issued_book(state_dir: Path) -> Iterator[dict[str, Any]]:
    """issued.json under the enrolment lock: yielded for changes (`record_into`), written back when the block
    ends without an exception (EnrolmentRefused when the file is damaged)."""
    with _locked(state_dir) as tls:
        issued = _read(tls / ISSUED_FILE)
        yield issued
        _write(tls / ISSUED_FILE, issued)


def record_into(issued: dict[str, Any], node_id: str, cert_pem: bytes, how: str) -> None:
    _record(issued, node_id, cert_pem, how)


def issued_nodes(state_dir: Path) -> dict[str, Any]:
    return _read(_tls(state_dir) / ISSUED_FILE)


def _record(issued: dict[str, Any], node_id: str, cert_pem: bytes, how: str) -> None:
    cert = x509.load_pem_x509_certificate(cert_pem)
    entry = issued.get(node_id) if isinstance(issued.get(node_id), dict) else None
    serials = list(entry.get("serials", [])) if entry else []
    serials.append(format(cert.serial_number, "x"))
    issued[node_id] = {"serials": serials, "not_after": cert.not_valid_after_utc.isoformat(),
                       "issued": time.time(), "via": how}
