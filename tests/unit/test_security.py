"""Cluster CA, node certificates, join tokens and the credentials layout (real cryptography, no mocks)."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from p2pft.daemon.state_dir import load_or_create_node_id, read_node_id
from p2pft.security.certs import TLS_TARGET_NAME, cluster_id_of, common_name_of, is_signed_by, new_ca, not_after_of
from p2pft.security.credentials import (
    CredentialsError,
    create_cluster,
    issue_local_node,
    load_credentials,
    make_join_token,
    tls_dir,
)
from p2pft.security.enrolment import issued_nodes
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


def test_local_issue_gives_same_cluster_different_node_without_the_ca_key(tmp_path: Path) -> None:
    a = create_cluster(tmp_path / "a", "nodea")
    b = issue_local_node(tmp_path / "a", tmp_path / "b", "nodeb")
    assert b.cluster_id == a.cluster_id and b.node_id == "nodeb"
    assert is_signed_by(b.node_cert_pem, a.ca_cert_pem)
    assert not (tls_dir(tmp_path / "b") / "ca.key").exists()
    assert issue_local_node(tmp_path / "a", tmp_path / "b", "nodeb") == b  # idempotent
    assert set(issued_nodes(tmp_path / "a")) == {"nodea", "nodeb"}
    old_umask = os.umask(0o022)
    try:   # a state dir the credentials create is this box's alone, whatever the umask
        issue_local_node(tmp_path / "a", tmp_path / "new" / "c", "nodec")
    finally:
        os.umask(old_umask)
    assert stat.S_IMODE((tmp_path / "new" / "c").stat().st_mode) == 0o700


def test_node_certificates_last_a_year(tmp_path: Path) -> None:
    import datetime as dt

    creds = create_cluster(tmp_path, "n1")
    left = not_after_of(creds.node_cert_pem) - dt.datetime.now(dt.UTC)
    assert dt.timedelta(days=360) < left <= dt.timedelta(days=366)


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
        issue_local_node(tmp_path / "o", tmp_path, "n")
    assert create_cluster(tmp_path, "n", force=True).cluster_id not in (first.cluster_id, other.cluster_id)


def test_missing_credentials_name_the_fix(tmp_path: Path) -> None:
    with pytest.raises(CredentialsError) as err:
        load_credentials(tmp_path)
    assert "p2pft --state-dir" in str(err.value) and "init" in str(err.value) and "\n" not in str(err.value)


def _token(tmp_path: Path) -> str:
    create_cluster(tmp_path, "n")
    return make_join_token(tmp_path, ("10.0.0.1:47340", "[fd00::1]:47340"))


def test_token_holds_no_key_material(tmp_path: Path) -> None:
    import base64
    import json

    token = _token(tmp_path)
    body = json.loads(base64.urlsafe_b64decode(token[len(TOKEN_PREFIX):] + "=="))
    assert set(body) == {"ca", "issuer", "addrs", "id", "secret"}
    assert "PRIVATE KEY" not in token and "BEGIN" not in json.dumps(body)
    parsed = decode_token(token)
    assert parsed.addresses == ("10.0.0.1:47340", "[fd00::1]:47340") and parsed.issuer == "n"
    assert parsed.cluster_id == load_credentials(tmp_path).cluster_id
    # The issuing box stores the secret's hash, never the secret.
    stored = (tls_dir(tmp_path) / "join_tokens.json").read_text()
    assert body["secret"] not in stored and parsed.token_id in stored
    assert stat.S_IMODE((tls_dir(tmp_path) / "join_tokens.json").stat().st_mode) == 0o600


@pytest.mark.parametrize("mangle", [
    lambda t: t[len(TOKEN_PREFIX):],             # prefix lost
    lambda t: t[: len(t) // 2],                   # truncated copy
    lambda t: t + "!!",                           # garbage appended
    lambda t: TOKEN_PREFIX + "e30",               # "{}"
])
def test_damaged_tokens_are_one_line_errors(tmp_path: Path, mangle: object) -> None:
    token = _token(tmp_path)
    with pytest.raises(TokenError) as err:
        decode_token(mangle(token))  # type: ignore[operator]
    assert "--token" in str(err.value) and "\n" not in str(err.value)


def test_old_tokens_with_the_ca_key_are_refused_saying_how_to_get_a_new_one() -> None:
    import base64
    import json

    cert, key = new_ca()
    body = {"ca_cert": cert.decode(), "ca_key": key.decode(), "cluster": cluster_id_of(cert)}
    old = "p2pft-join-1." + base64.urlsafe_b64encode(json.dumps(body).encode()).decode().rstrip("=")
    with pytest.raises(TokenError) as err:
        decode_token(old)
    assert "old format" in str(err.value) and "p2pft join-token" in str(err.value) and "\n" not in str(err.value)
