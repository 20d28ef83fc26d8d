"""A developer on a box whose daemon runs as a service: in the state dir's group, the CLI works as that user
through the daemon's Unix socket, without reading the box's key; outside it, one line says how to get in. Real
processes as another uid (setpriv), a real daemon: the kernel's file permissions are what is tested."""

from __future__ import annotations

import grp
import json
import os
import shutil
import stat
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.daemon_harness import BIN, Daemon, DaemonPool

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(os.geteuid() != 0 or shutil.which("setpriv") is None,
                       reason="runs the CLI as another user: needs root and setpriv"),
]
NOBODY = 65534


def _free_gid() -> int:
    for gid in range(47000, 48000):
        try:
            grp.getgrgid(gid)
        except KeyError:
            return gid
    raise RuntimeError("no free gid")


@pytest.fixture
def world_readable_root() -> Iterator[Path]:
    root = Path(tempfile.mkdtemp(prefix="p2pft-svc-", dir="/tmp"))  # pytest's tmp_path is 0700: nobody gets in
    os.chmod(root, 0o755)
    try:
        yield root
    finally:
        shutil.rmtree(root, ignore_errors=True)


def _p2pft(*args: str, groups: str | None = None) -> subprocess.CompletedProcess[str]:
    exe = BIN / "p2pft"
    base = [str(exe)] if exe.exists() else [sys.executable, "-m", "p2pft.cli.main"]
    who = ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}",
           f"--groups={groups}" if groups else "--clear-groups"]
    env = {"PATH": os.environ.get("PATH", ""), "HOME": "/nonexistent", "PYTHONDONTWRITEBYTECODE": "1"}
    return subprocess.run([*who, *base, *args], capture_output=True, text=True, timeout=60, env=env, check=False)


def _p2pft_python(code: str, groups: str | None = None) -> subprocess.CompletedProcess[str]:
    who = ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}",
           f"--groups={groups}" if groups else "--clear-groups"]
    return subprocess.run([*who, sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                          check=False)


def test_group_members_use_the_cli_and_others_are_told_how(world_readable_root: Path) -> None:
    gid = _free_gid()
    state = world_readable_root / "state"
    state.mkdir()
    os.chown(state, 0, gid)
    os.chmod(state, 0o750)  # what install-service makes (owner: the service's user, group: its group)
    init = subprocess.run([str(BIN / "p2pft"), "--state-dir", str(state), "init"], capture_output=True, text=True,
                          timeout=60, check=True)
    assert f"members of group {gid} can use the p2pft CLI" in init.stdout
    pool = DaemonPool()
    try:
        daemon = pool.add(Daemon(state, name="svc")).start()
        key, sock = state / "tls" / "node.key", state / "p2pftd.sock"
        assert stat.S_IMODE(key.stat().st_mode) == 0o600    # the key that speaks for this box is not the group's
        assert stat.S_IMODE(sock.stat().st_mode) == 0o660 and sock.stat().st_gid == gid
        member = _p2pft("status", "--json", "--state-dir", str(state), groups=str(gid))
        assert member.returncode == 0, member.stderr
        nodes = json.loads(member.stdout)["nodes"]
        assert [n["peer"]["node_id"] for n in nodes] == [daemon.node_id]
        listed = _p2pft("jobs", "--json", "--state-dir", str(state), groups=str(gid))   # an operator call
        assert listed.returncode == 0 and json.loads(listed.stdout)["jobs"] == [], listed.stderr
        reading_the_key = _p2pft_python(f"open({str(key)!r}, 'rb')", groups=str(gid))
        assert reading_the_key.returncode != 0 and "Permission denied" in reading_the_key.stderr
        token = _p2pft("join-token", "--state-dir", str(state), groups=str(gid))
        assert token.returncode == 1 and "Traceback" not in token.stderr  # the CA key is not the group's
        assert f"sudo -u root p2pft --state-dir {state} join-token" in token.stderr

        outsider = _p2pft("status", "--state-dir", str(state))
        assert outsider.returncode == 1 and "Traceback" not in outsider.stderr, outsider.stderr
        assert outsider.stderr.count("\n") == 1 and f"sudo usermod -aG {gid} $USER" in outsider.stderr
        # Even with the state dir opened to everyone, the socket's own mode keeps an outsider out.
        os.chmod(state, 0o755)
        knocking = _p2pft_python(f"import socket; socket.socket(socket.AF_UNIX).connect({str(sock)!r})")
        assert knocking.returncode != 0 and "Permission denied" in knocking.stderr, knocking.stderr
    finally:
        pool.stop_all()
    # A group member whose daemon is stopped (or older, without the socket) is told so, not sent to usermod.
    stopped = _p2pft("status", "--state-dir", str(state), groups=str(gid))
    assert stopped.returncode == 1 and "no daemon socket at" in stopped.stderr, stopped.stderr
