"""Join tokens: what a new box needs to enrol, and nothing that lets anyone mint certificates.

A token (`p2pft-join-2.` + base64url(JSON)) holds:
  ca       sha256 of the cluster CA certificate (64 hex): the joining box pins the issuing daemon by it
  issuer   the node id of the box that issued it (the joining box checks the server's certificate names it)
  addrs    HOST:PORT addresses of the issuing daemon's join listener, tried in order
  id       a short public token id (the issuing box finds the token's record by it)
  secret   32 random bytes (base64url): the only secret in it

The issuing box keeps only sha256(secret) with an expiry and a count of remaining uses
(`<state-dir>/tls/join_tokens.json`, 0600; p2pft.security.enrolment). The joining box makes its own key and
sends a certificate signing request with the secret over TLS to that daemon (p2pft.security.enrol): the CA key
stays on the box that holds it. Tokens of the first format (`p2pft-join-1.`) held the CA key itself; they are
refused with a line saying how to get a new one.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import secrets
from dataclasses import dataclass

TOKEN_PREFIX = "p2pft-join-2."
OLD_TOKEN_PREFIXES = ("p2pft-join-1.",)
MAX_TOKEN_CHARS = 4096   # a token with a dozen addresses is ~400 characters
_BASE64URL_BODY = re.compile(r"[A-Za-z0-9_-]+")
_HEX64 = re.compile(r"[0-9a-f]{64}")
_TOKEN_ID = re.compile(r"[0-9a-f]{16}")
_NODE_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")
_ADDRESS = re.compile(r"(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]{1,253}):[0-9]{1,5}")
SECRET_BYTES = 32
NEW_TOKEN_HINT = "run `p2pft join-token` on the box that holds the cluster CA key (the one that ran `p2pft init`)"


class TokenError(ValueError):
    """The join token cannot be used; the message is one line saying why and what to do."""


@dataclass(frozen=True)
class JoinToken:
    ca_fingerprint: str          # sha256 hex of the CA certificate's DER
    issuer: str                  # node id of the issuing box
    addresses: tuple[str, ...]   # its join listener
    token_id: str
    secret: bytes

    @property
    def cluster_id(self) -> str:
        # cluster ids are the first 16 hex digits of the same hash (p2pft.security.certs.cluster_id_of)
        return self.ca_fingerprint[:16]


def new_token(ca_fingerprint: str, issuer: str, addresses: tuple[str, ...]) -> JoinToken:
    return JoinToken(ca_fingerprint, issuer, addresses, secrets.token_hex(8), secrets.token_bytes(SECRET_BYTES))


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    if not _BASE64URL_BODY.fullmatch(text):
        raise ValueError("not base64url")
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def encode_token(token: JoinToken) -> str:
    body = json.dumps({"ca": token.ca_fingerprint, "issuer": token.issuer, "addrs": list(token.addresses),
                       "id": token.token_id, "secret": _b64(token.secret)}, separators=(",", ":")).encode()
    return TOKEN_PREFIX + _b64(body)


def decode_token(text: str) -> JoinToken:
    text = text.strip()
    if text.startswith(OLD_TOKEN_PREFIXES):
        raise TokenError(f"this token is of the old format that carried the cluster CA key and is no longer taken: "
                         f"get a new one ({NEW_TOKEN_HINT}) and delete the old one")
    if not text.startswith(TOKEN_PREFIX):
        raise TokenError(f"--token does not start with {TOKEN_PREFIX!r}: copy the whole output of `p2pft join-token`")
    if len(text) > MAX_TOKEN_CHARS:
        raise TokenError(f"--token is {len(text)} characters, more than a join token ever is: copy it again")
    body = text[len(TOKEN_PREFIX):]
    # b64decode silently drops characters outside the alphabet, so garbage must be refused up front.
    if not _BASE64URL_BODY.fullmatch(body):
        raise TokenError("--token is damaged (characters outside base64url): copy it again")
    try:
        data = json.loads(_unb64(body))
        addresses = tuple(str(a) for a in data["addrs"])
        token = JoinToken(str(data["ca"]), str(data["issuer"]), addresses, str(data["id"]), _unb64(data["secret"]))
    except (binascii.Error, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise TokenError(f"--token is damaged or truncated ({type(exc).__name__}): copy it again") from None
    if (not _HEX64.fullmatch(token.ca_fingerprint) or not _NODE_ID.fullmatch(token.issuer)
            or not _TOKEN_ID.fullmatch(token.token_id) or len(token.secret) != SECRET_BYTES
            or not token.addresses or not all(_ADDRESS.fullmatch(a) for a in token.addresses)):
        raise TokenError("--token is damaged (a field has the wrong form): copy it again")
    return token
