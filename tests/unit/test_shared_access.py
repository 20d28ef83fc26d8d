"""The CLI on a box whose daemon is the systemd service: the service's group gets what the CLI needs, no more."""

from __future__ import annotations

import argparse
import os
import stat
from pathlib import Path

import pytest

from p2pft.cli import connect, shared_access
from p2pft.cli.install_service import next_steps
from p2pft.cli.main import main


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_init_in_a_service_state_dir_shares_the_cli_credentials_with_its_group(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    state = tmp_path / "svc"
    state.mkdir()
    os.chmod(state, 0o750)  # as install-service and StateDirectoryMode=0750 leave it
    assert main(["--state-dir", str(state), "init"]) == 0
    out = capsys.readouterr().out
    group = shared_access.group_name(state.stat().st_gid)
    assert f"members of group {group} can use the p2pft CLI" in out and f"usermod -aG {group} NAME" in out
    tls = state / "tls"
    # node.key speaks for this box to every peer: the group's CLI uses the daemon's socket, not the key.
    assert (_mode(tls), _mode(tls / "node.key"), _mode(tls / "node.crt")) == (0o750, 0o600, 0o644)
    assert _mode(tls / "ca.key") == 0o600  # minting certificates (join tokens) stays the owner's
    assert _mode(state) == 0o750


def test_init_in_a_private_state_dir_keeps_everything_private(tmp_path: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    state = tmp_path / "mine"
    assert main(["--state-dir", str(state), "init"]) == 0
    assert "members of group" not in capsys.readouterr().out
    assert (_mode(state), _mode(state / "tls"), _mode(state / "tls" / "node.key")) == (0o700, 0o700, 0o600)


def test_install_service_names_the_developer_to_add_to_the_group() -> None:
    lines = next_steps("p2pft", "/var/lib/p2pft", "alice")
    assert any(line.startswith("usermod -aG p2pft alice ") for line in lines)
    assert any(line.startswith("usermod -aG p2pft NAME ") for line in next_steps("p2pft", "/var/lib/p2pft", "root"))


def test_without_own_credentials_the_cli_uses_the_services_state_dir(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    service, own = tmp_path / "var-lib-p2pft", tmp_path / "home-state"
    service.mkdir()
    monkeypatch.setattr(shared_access, "SERVICE_STATE_DIR", service)
    monkeypatch.setattr("p2pft.daemon.state_dir.default_state_dir", lambda: own)
    monkeypatch.delenv("P2PFT_STATE_DIR", raising=False)
    plain = argparse.Namespace()
    assert connect.client_state_dir(plain) == own  # no service daemon running: the user's own dir
    (service / "daemon.addr").write_text("127.0.0.1:47341\n")
    assert connect.client_state_dir(plain) == service
    assert connect.client_state_dir(argparse.Namespace(state_dir=str(own))) == own.resolve()  # a flag wins
    monkeypatch.setenv("P2PFT_STATE_DIR", str(own))
    assert connect.client_state_dir(plain) == own.resolve()
    monkeypatch.delenv("P2PFT_STATE_DIR")
    assert main(["init"]) == 0 and (own / "tls" / "node.crt").is_file()  # the user's own cluster credentials
    assert connect.client_state_dir(plain) == own  # a user with a cluster of their own keeps it
