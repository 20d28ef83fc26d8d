"""A state dir that p2pft creates itself (outside systemd) is the box's alone: mode 0700, whatever the umask."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from p2pft.cli.main import main
from p2pft.daemon.state_dir import create_state_dir, load_or_create_node_id


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def open_umask() -> Iterator[None]:
    previous = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(previous)


def test_a_new_state_dir_is_0700_and_an_existing_one_keeps_its_mode(tmp_path: Path, open_umask: None) -> None:
    new = create_state_dir(tmp_path / "a" / "b" / "state")
    assert _mode(new) == 0o700
    existing = tmp_path / "existing"
    existing.mkdir(mode=0o755)
    os.chmod(existing, 0o750)
    assert _mode(create_state_dir(existing)) == 0o750
    node_dir = tmp_path / "by-node-id"
    load_or_create_node_id(node_dir)
    assert _mode(node_dir) == 0o700


def test_p2pft_init_creates_its_state_dir_0700(tmp_path: Path, open_umask: None,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    state_dir = tmp_path / "home" / ".local" / "state" / "p2pft"
    assert main(["--state-dir", str(state_dir), "init"]) == 0
    assert "created cluster" in capsys.readouterr().out
    assert _mode(state_dir) == 0o700
    assert _mode(state_dir / "tls" / "node.key") & 0o077 == 0
