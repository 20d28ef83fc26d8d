"""Cluster CA, node certificates, join tokens and the credentials layout (real cryptography, no mocks)."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from p2pft.daemon.state_dir import load_or_create_node_id, read_node_id
from p2pft.security.certs import TLS_TARGET_NAME, cluster_id_of, common_name_of, is_signed_by, new_ca
from p2pft.security.credentials import (
    CredentialsError,
    create_cluster,
    join_cluster,
    load_credentials,
    make_join_token,
    tls_dir,
)
from p2pft.security.token import TOKEN_PREFIX, TokenError, decode_token


def test_init_creates_ca_and_node_cert(tmp_path: Path) -> None:
    node_id = load_or_create_node_id(tmp_path)
    creds = create_cluster(tmp_path, node_id)
    assert creds.node_id == node_id == read_node_id(tmp_path) and len(node_id) == 16
    assert creds.cluster_id == cluster_id_of(creds.ca_cert_pem) and len(creds.cluster_id) == 16
    assert is_signed_by(creds.node_cert_pem, creds.ca_cert_pem)
    assert common_name_of(creds.node_cert_pem) == node_id
    from cryptography import x509

    cert = x509.load_pem_x509_certificate(creds.node_cert_pem)
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert TLS_TARGET_NAME in san.get_values_for_type(x509.DNSName)
    for secret in ("ca.key", "node.key"):
        assert stat.S_IMODE((tls_dir(tmp_path) / secret).stat().st_mode) == 0o600
    assert load_or_create_node_id(tmp_path) == node_id  # persistent


def test_cluster_id_is_public_and_stable(tmp_path: Path) -> None:
    creds = create_cluster(tmp_path, "n1")
    assert load_credentials(tmp_path).cluster_id == creds.cluster_id
    key = (tls_dir(tmp_path) / "ca.key").read_bytes()
    assert creds.cluster_id not in key.decode()


def test_join_token_gives_same_cluster_different_node(tmp_path: Path) -> None:
    a = create_cluster(tmp_path / "a", "nodea")
    token = make_join_token(tmp_path / "a")
    assert token.startswith(TOKEN_PREFIX) and "\n" not in token
    b = join_cluster(tmp_path / "b", "nodeb", token)
    assert b.cluster_id == a.cluster_id and b.node_id == "nodeb"
    assert is_signed_by(b.node_cert_pem, a.ca_cert_pem)
    assert join_cluster(tmp_path / "b", "nodeb", token) == b  # idempotent


def test_other_cluster_certificates_do_not_verify(tmp_path: Path) -> None:
    a = create_cluster(tmp_path / "a", "n")
    other_ca, _ = new_ca()
    assert not is_signed_by(a.node_cert_pem, other_ca)
    assert cluster_id_of(other_ca) != a.cluster_id


def test_refuses_to_overwrite_without_force(tmp_path: Path) -> None:
    first = create_cluster(tmp_path, "n")
    with pytest.raises(CredentialsError, match="--force"):
        create_cluster(tmp_path, "n")
    other = create_cluster(tmp_path / "o", "x")
    with pytest.raises(CredentialsError, match="already holds credentials"):
        join_cluster(tmp_path, "n", make_join_token(tmp_path / "o"))
    assert create_cluster(tmp_path, "n", force=True).cluster_id not in (first.cluster_id, other.cluster_id)


def test_missing_credentials_name_the_fix(tmp_path: Path) -> None:
    with pytest.raises(CredentialsError) as err:
        load_credentials(tmp_path)
    assert "p2pft --state-dir" in str(err.value) and "init" in str(err.value) and "\n" not in str(err.value)


@pytest.mark.parametrize("mangle", [
    lambda t: t[len(TOKEN_PREFIX):],             # prefix lost
    lambda t: t[: len(t) // 2],                   # truncated copy
    lambda t: t + "!!",                           # garbage appended
    lambda t: TOKEN_PREFIX + "e30",               # "{}"
])
def test_damaged_tokens_are_one_line_errors(tmp_path: Path, mangle: object) -> None:
    create_cluster(tmp_path, "n")
    token = make_join_token(tmp_path)
    with pytest.raises(TokenError) as err:
        decode_token(mangle(token))  # type: ignore[operator]
    assert "--token" in str(err.value) and "\n" not in str(err.value)


def test_token_with_mismatched_key_is_refused(tmp_path: Path) -> None:
    import base64
    import json

    create_cluster(tmp_path / "a", "n")
    token = make_join_token(tmp_path / "a")
    body = json.loads(base64.urlsafe_b64decode(token[len(TOKEN_PREFIX):] + "=="))
    _, other_key = new_ca()
    body["ca_key"] = other_key.decode()
    # Tokens are unpadded base64url: a padded forgery would be refused for its '=' (1 run in 8), not its key.
    forged = TOKEN_PREFIX + base64.urlsafe_b64encode(json.dumps(body).encode()).decode().rstrip("=")
    with pytest.raises(TokenError, match="inconsistent"):
        decode_token(forged)
