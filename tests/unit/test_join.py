"""Joining with a token against a real join listener (real TLS on loopback, real certificates, real files):
the CA key stays on the issuing box; a token is good only for its uses, until it expires, with its own secret,
and only at the box that issued it."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from p2pft.daemon.join_listener import JOIN_ADDR_FILE, JoinListener, read_join_addr
from p2pft.security.certs import is_signed_by, not_after_of
from p2pft.security.credentials import (
    CredentialsError,
    create_cluster,
    issue_local_node,
    join_cluster,
    load_credentials,
    make_join_token,
    tls_dir,
)
from p2pft.security.enrol import JoinError
from p2pft.security.enrolment import issue_token, issued_nodes
from p2pft.security.token import decode_token, encode_token


class Listening:
    """A JoinListener on 127.0.0.1 served by an event loop in a thread (as the daemon's loop serves it)."""

    def __init__(self, state_dir: Path) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        creds = load_credentials(state_dir)
        self.listener = JoinListener(state_dir, "127.0.0.1", 0, creds.ca_cert_pem)
        self.port = asyncio.run_coroutine_threadsafe(self.listener.start(), self.loop).result(10)
        self.address = f"127.0.0.1:{self.port}"

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.listener.close)
        time.sleep(0.05)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


@pytest.fixture
def ca_box(tmp_path: Path) -> Iterator[tuple[Path, Listening]]:
    state = tmp_path / "ca"
    create_cluster(state, "box-a")
    listening = Listening(state)
    try:
        yield state, listening
    finally:
        listening.stop()


def test_join_gets_a_signed_certificate_and_never_the_ca_key(ca_box: tuple[Path, Listening], tmp_path: Path) -> None:
    state, listening = ca_box
    assert read_join_addr(state) == listening.address
    token = make_join_token(state, (listening.address,))
    joined = join_cluster(tmp_path / "b", "box-b", token)
    a = load_credentials(state)
    assert joined.cluster_id == a.cluster_id and joined.node_id == "box-b"
    assert is_signed_by(joined.node_cert_pem, a.ca_cert_pem)
    assert not (tls_dir(tmp_path / "b") / "ca.key").exists()
    # Its key was made on the joining box: the CA box never saw it (only issued.json's serial of its cert).
    assert joined.node_key_pem not in b"".join(p.read_bytes() for p in tls_dir(state).iterdir() if p.is_file())
    assert "box-b" in issued_nodes(state)
    assert not_after_of(joined.node_cert_pem).year - time.gmtime().tm_year <= 1
    # A box without the CA key issues no tokens.
    with pytest.raises(CredentialsError) as err:
        make_join_token(tmp_path / "b", (listening.address,))
    assert "does not hold" in str(err.value) or "cannot issue" in str(err.value)


def test_a_token_is_spent_after_its_uses(ca_box: tuple[Path, Listening], tmp_path: Path) -> None:
    state, listening = ca_box
    token = make_join_token(state, (listening.address,))
    join_cluster(tmp_path / "b", "box-b", token)
    with pytest.raises(JoinError) as err:
        join_cluster(tmp_path / "c", "box-c", token)
    assert "already used" in str(err.value) and "\n" not in str(err.value)
    assert not (tls_dir(tmp_path / "c") / "node.crt").exists()
    twice = make_join_token(state, (listening.address,), uses=2)
    assert join_cluster(tmp_path / "c", "box-c", twice).node_id == "box-c"
    assert join_cluster(tmp_path / "d", "box-d", twice).node_id == "box-d"
    with pytest.raises(JoinError, match="already used"):
        join_cluster(tmp_path / "e", "box-e", twice)


def test_expired_and_wrong_secret_tokens_are_refused(ca_box: tuple[Path, Listening], tmp_path: Path) -> None:
    state, listening = ca_box
    creds = load_credentials(state)
    _, expired = issue_token(state, creds.node_id, (listening.address,), ttl_s=60, now=time.time() - 120)
    with pytest.raises(JoinError, match="expired"):
        join_cluster(tmp_path / "b", "box-b", encode_token(expired))
    _, good = issue_token(state, creds.node_id, (listening.address,))
    forged = encode_token(good.__class__(good.ca_fingerprint, good.issuer, good.addresses, good.token_id,
                                         bytes(32)))
    with pytest.raises(JoinError, match="does not know this join token"):
        join_cluster(tmp_path / "b", "box-b", forged)
    # The forgery spent nothing: the real token still works once.
    assert join_cluster(tmp_path / "b", "box-b", encode_token(good)).node_id == "box-b"


def test_a_taken_node_id_gets_a_fresh_one(ca_box: tuple[Path, Listening], tmp_path: Path) -> None:
    state, listening = ca_box
    joined = join_cluster(tmp_path / "b", "box-a", make_join_token(state, (listening.address,)))
    assert joined.node_id != "box-a" and len(joined.node_id) == 16


def test_the_joining_box_checks_whom_it_talks_to(ca_box: tuple[Path, Listening], tmp_path: Path) -> None:
    state, listening = ca_box
    # Another cluster's listener at the token's address: refused before the secret is sent.
    other = tmp_path / "other"
    create_cluster(other, "box-x")
    impostor = Listening(other)
    try:
        token = decode_token(make_join_token(state, (listening.address,)))
        moved = encode_token(token.__class__(token.ca_fingerprint, token.issuer, (impostor.address,),
                                             token.token_id, token.secret))
        with pytest.raises(JoinError, match="not a box of this token's cluster"):
            join_cluster(tmp_path / "b", "box-b", moved)
        # A member of the right cluster that is not the issuer: refused too.
        member = tmp_path / "member"
        issue_local_node(state, member, "box-m")
        wrong_issuer = Listening(member)
        try:
            relayed = encode_token(token.__class__(token.ca_fingerprint, token.issuer, (wrong_issuer.address,),
                                                   token.token_id, token.secret))
            with pytest.raises(JoinError, match="not the box that issued"):
                join_cluster(tmp_path / "b", "box-b", relayed)
        finally:
            wrong_issuer.stop()
        # An impostor first in the list does not stop the join at the real issuer after it, and the secret was
        # never sent to it: the token (single use) still works.
        both = encode_token(token.__class__(token.ca_fingerprint, token.issuer, (impostor.address, listening.address),
                                            token.token_id, token.secret))
        assert join_cluster(tmp_path / "b", "box-b", both).node_id == "box-b"
    finally:
        impostor.stop()


def test_nobody_listening_is_one_line_naming_the_fix(ca_box: tuple[Path, Listening], tmp_path: Path) -> None:
    state, listening = ca_box
    listening.stop()
    assert not (state / JOIN_ADDR_FILE).exists()
    token = make_join_token(state, (listening.address,))
    with pytest.raises(JoinError) as err:
        join_cluster(tmp_path / "b", "box-b", token)
    text = str(err.value)
    assert listening.address in text and "start p2pftd" in text and "\n" not in text


def test_garbage_to_the_listener_is_answered_and_it_serves_on(ca_box: tuple[Path, Listening], tmp_path: Path) -> None:
    import socket
    import ssl

    state, listening = ca_box
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
    for payload in (b"not json\n", b'{"token_id": 1}\n', b"[]\n", b"x" * 70_000 + b"\n"):
        with socket.create_connection(("127.0.0.1", listening.port), timeout=5) as raw, \
                context.wrap_socket(raw) as tls:
            reader = tls.makefile("rb")
            assert b"ca_cert" in reader.readline()
            tls.sendall(payload)
            reply = reader.readline()
            assert reply == b"" or "error" in json.loads(reply)
    assert join_cluster(tmp_path / "b", "box-b", make_join_token(state, (listening.address,))).node_id == "box-b"


def test_the_ca_box_never_joins_its_own_cluster_over_its_key(ca_box: tuple[Path, Listening]) -> None:
    state, listening = ca_box
    token = make_join_token(state, (listening.address,))
    with pytest.raises(CredentialsError, match="would delete it"):
        join_cluster(state, "box-a", token, force=True)
    assert (tls_dir(state) / "ca.key").exists()
