"""Join tokens: how a second box gets a node certificate of the same cluster without a central server.

Choice: the token carries the cluster CA certificate AND the CA key (`p2pft-join-1.` + base64url(JSON)).
`p2pft init --token T` then signs its own node certificate locally.

Trade-off, for an office LAN with no central server: a one-time enrolment secret would need the issuing box to
be online at enrolment time and a pre-TLS enrolment protocol that resists a man in the middle (a PAKE); that is
a lot of machinery for a few dev boxes. With the CA key in the token, enrolment works offline and any member can
enrol the next box, at the cost that the token is as sensitive as the cluster itself: whoever holds it can mint
members. `p2pft join-token` says so on stderr; rotate by running `p2pft init --force` on every box (a new CA).
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from dataclasses import dataclass

TOKEN_PREFIX = "p2pft-join-1."
_BASE64URL_BODY = re.compile(r"[A-Za-z0-9_-]+")


class TokenError(ValueError):
    """The join token cannot be used; the message is one line saying why and what to do."""


@dataclass(frozen=True)
class JoinToken:
    ca_cert_pem: bytes
    ca_key_pem: bytes
    cluster_id: str


def encode_token(token: JoinToken) -> str:
    body = json.dumps(
        {"ca_cert": token.ca_cert_pem.decode(), "ca_key": token.ca_key_pem.decode(), "cluster": token.cluster_id},
        separators=(",", ":"),
    ).encode()
    return TOKEN_PREFIX + base64.urlsafe_b64encode(body).decode().rstrip("=")


def decode_token(text: str) -> JoinToken:
    text = text.strip()
    if not text.startswith(TOKEN_PREFIX):
        raise TokenError(f"--token does not start with {TOKEN_PREFIX!r}: copy the whole output of `p2pft join-token`")
    body = text[len(TOKEN_PREFIX):]
    # b64decode silently drops characters outside the alphabet, so garbage must be refused up front.
    if not _BASE64URL_BODY.fullmatch(body):
        raise TokenError("--token is damaged (characters outside base64url): copy it again")
    try:
        raw = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
        data = json.loads(raw)
        token = JoinToken(data["ca_cert"].encode(), data["ca_key"].encode(), str(data["cluster"]))
    except (binascii.Error, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise TokenError(f"--token is damaged or truncated ({type(exc).__name__}): copy it again") from None
    from p2pft.security.certs import ca_key_matches, cluster_id_of

    try:
        actual = cluster_id_of(token.ca_cert_pem)
        matches = ca_key_matches(token.ca_cert_pem, token.ca_key_pem)
    except ValueError:
        raise TokenError("--token holds no valid CA certificate/key: copy it again") from None
    if actual != token.cluster_id or not matches:
        raise TokenError("--token is inconsistent (CA certificate, key and cluster id disagree): copy it again")
    return token
