"""The signed revocation list (real ECDSA with real cluster CAs): only the CA's newer lists are taken, a member
cannot forge, widen or roll one back, and `p2pft revoke` needs the CA key."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from p2pft.security.credentials import create_cluster, issue_local_node, load_credentials
from p2pft.security.revocation import Revocations, load_list, revoke, sign_list, verify_list


def test_revoke_writes_a_signed_growing_list(tmp_path: Path) -> None:
    creds = create_cluster(tmp_path / "ca", "box-a")
    first = revoke(tmp_path / "ca", "box-x")
    second = revoke(tmp_path / "ca", "box-y")
    assert (first.version, second.version) == (1, 2) and second.nodes == {"box-x", "box-y"}
    assert load_list(tmp_path / "ca", creds.ca_cert_pem) == second
    assert verify_list(second.document, creds.ca_cert_pem).nodes == {"box-x", "box-y"}


def test_members_take_only_newer_lists_signed_by_their_ca(tmp_path: Path) -> None:
    ca = create_cluster(tmp_path / "ca", "box-a")
    member = issue_local_node(tmp_path / "ca", tmp_path / "b", "box-b")
    held = Revocations(tmp_path / "b", member.ca_cert_pem, "box-b")
    v1 = revoke(tmp_path / "ca", "box-x")
    v2 = revoke(tmp_path / "ca", "box-y")
    assert held.offer(v2.document, "test") and held.is_revoked("box-x") and held.is_revoked("box-y")
    assert not held.offer(v1.document, "test")                        # no rollback
    assert held.current.version == 2
    # Saved: a restarted daemon still refuses them.
    assert Revocations(tmp_path / "b", member.ca_cert_pem, "box-b").is_revoked("box-y")

    # Another cluster's CA signs a list "for" this cluster: refused.
    other = create_cluster(tmp_path / "other", "box-o")
    other_key = (tmp_path / "other" / "tls" / "ca.key").read_bytes()
    foreign = sign_list(other.ca_cert_pem, other_key, 99, frozenset({"box-a"}))
    assert not held.offer(foreign.document, "test") and not held.is_revoked("box-a")

    # A member edits a real list (more nodes, higher version) without re-signing: refused.
    outer = json.loads(v2.document)
    payload = json.loads(outer["payload"])
    payload.update(version=50, nodes=["box-a", "box-b"])
    outer["payload"] = json.dumps(payload, sort_keys=True, separators=(",", ":"))
    assert not held.offer(json.dumps(outer).encode(), "test") and not held.is_revoked("box-a")
    for junk in (b"x", b"{}", b'{"payload": 1, "signature": "!!"}', b"[" * 300_000):
        assert not held.offer(junk, "test")
    assert held.current.version == 2 and ca.cluster_id == held.current.cluster_id


def test_a_box_never_refuses_its_own_cli(tmp_path: Path) -> None:
    creds = create_cluster(tmp_path / "ca", "box-a")
    issue_local_node(tmp_path / "ca", tmp_path / "b", "box-b")
    signed = revoke(tmp_path / "ca", "box-b")
    held = Revocations(tmp_path / "b", creds.ca_cert_pem, "box-b")
    assert held.offer(signed.document, "test") and not held.is_revoked("box-b")


def _p2pft(state_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "p2pft.cli.main", "--state-dir", str(state_dir), *args],
                          capture_output=True, text=True, timeout=60, env={**os.environ, "P2PFT_DAEMON": ""})


def test_revoke_cli(tmp_path: Path) -> None:
    create_cluster(tmp_path / "ca", "box-a")
    issue_local_node(tmp_path / "ca", tmp_path / "b", "box-b")
    done = _p2pft(tmp_path / "ca", "revoke", "box-b")
    assert done.returncode == 0 and "revoked node box-b" in done.stdout and done.stderr == ""
    assert load_list(tmp_path / "ca", load_credentials(tmp_path / "ca").ca_cert_pem).nodes == {"box-b"}
    member = _p2pft(tmp_path / "b", "revoke", "box-a")
    assert member.returncode == 1 and "does not hold the cluster CA key" in member.stderr
    assert member.stderr.count("\n") == 1
    self_revoke = _p2pft(tmp_path / "ca", "revoke", "box-a")
    assert self_revoke.returncode == 1 and "this box" in self_revoke.stderr
    unknown = _p2pft(tmp_path / "ca", "revoke", "box-zz")
    assert unknown.returncode == 0 and "never signed" in unknown.stderr


@pytest.mark.parametrize("bad", ["../x", "", "a b"])
def test_revoke_refuses_non_ids(tmp_path: Path, bad: str) -> None:
    create_cluster(tmp_path / "ca", "box-a")
    done = _p2pft(tmp_path / "ca", "revoke", bad)
    assert done.returncode == 1 and "not a node id" in done.stderr
