"""systemd/p2pftd.service and `p2pft install-service`."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

from p2pft.cli import install_service
from p2pft.cli.install_service import plan_install, render_unit
from p2pft.cli.main import main

REPO = Path(__file__).resolve().parents[2]
UNIT_FILE = REPO / "systemd" / "p2pftd.service"


def parse_unit(text: str) -> dict[str, dict[str, list[str]]]:
    """Minimal systemd unit parser: section -> key -> values (keys may repeat)."""
    sections: dict[str, dict[str, list[str]]] = {}
    current: dict[str, list[str]] | None = None
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], {})
            continue
        assert current is not None, f"key outside a section: {line}"
        key, sep, value = line.partition("=")
        assert sep, f"not key=value: {line}"
        current.setdefault(key.strip(), []).append(value.strip())
    return sections


def test_repository_unit_is_the_default_rendering() -> None:
    regenerate = "from p2pft.cli.install_service import render_unit as r; open('systemd/p2pftd.service','w').write(r())"
    assert UNIT_FILE.read_text() == render_unit(), f'regenerate it: .venv/bin/python -c "{regenerate}"'


def test_unit_has_the_required_keys() -> None:
    unit = parse_unit(UNIT_FILE.read_text())
    service = {key: values[-1] for key, values in unit["Service"].items()}
    assert service["Type"] == "notify"
    assert service["ExecStart"] == "/usr/local/bin/p2pftd --state-dir /var/lib/p2pft"
    assert service["ExecReload"] == "/bin/kill -HUP $MAINPID"
    assert service["Restart"] == "on-failure" and int(service["RestartSec"]) > 0
    assert service["User"] == "p2pft" and service["Group"] == "p2pft"
    # 0750: the group's members use the CLI (daemon.addr, the CLI's credentials); the daemon's own files are 0600
    assert service["StateDirectory"] == "p2pft" and service["StateDirectoryMode"] == "0750"
    assert service["UMask"] == "0077"
    assert service["KillSignal"] == "SIGTERM" and service["KillMode"] == "mixed"
    assert int(service["TimeoutStopSec"]) >= 60  # a drain writes a checkpoint first
    assert "PrivateDevices" not in service and "DevicePolicy" not in service  # GPUs stay visible
    assert {"AF_UNIX", "AF_INET", "AF_INET6"} <= set(service["RestrictAddressFamilies"].split())
    assert service["NoNewPrivileges"] == "yes" and service["ProtectSystem"] in ("full", "strict")
    assert unit["Install"]["WantedBy"] == ["multi-user.target"]
    assert "network-online.target" in unit["Unit"]["After"][0]


def test_state_dir_outside_var_lib_is_made_writable_instead() -> None:
    service = parse_unit(render_unit(p2pftd="/opt/p2pft/.venv/bin/p2pftd", user="gpu", state_dir="/srv/p2pft"))
    assert service["Service"]["ExecStart"] == ["/opt/p2pft/.venv/bin/p2pftd --state-dir /srv/p2pft"]
    assert service["Service"]["ReadWritePaths"] == ["/srv/p2pft"] and "StateDirectory" not in service["Service"]
    assert parse_unit(render_unit(state_dir="/var/lib/p2pft/box2"))["Service"]["StateDirectory"] == ["p2pft/box2"]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"user": "Bad User"}, "--user 'Bad User': use a lowercase system user name"),
        ({"state_dir": "relative/dir"}, "--state-dir 'relative/dir': give an absolute path"),
        ({"p2pftd": "/opt/my venv/p2pftd"}, "--p2pftd '/opt/my venv/p2pftd'"),
        ({"state_dir": "/var/lib/../etc"}, "--state-dir '/var/lib/../etc'"),
    ],
)
def test_bad_values_are_one_line_errors(kwargs: dict[str, str], message: str) -> None:
    with pytest.raises(ValueError) as info:
        render_unit(**kwargs)
    assert str(info.value).startswith(message)


def test_systemd_analyze_verify(tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze not installed (apt-get install systemd); the key checks above still ran")
    # verify insists that ExecStart exists: use an executable that does.
    executable = install_service.find_p2pftd()
    if not os.access(executable, os.X_OK):
        executable = shutil.which("true") or "/bin/true"
    unit = tmp_path / "p2pftd.service"
    unit.write_text(render_unit(p2pftd=executable))
    done = subprocess.run([analyze, "verify", str(unit)], capture_output=True, text=True, timeout=30, check=False)
    complaints = [line for line in (done.stdout + done.stderr).splitlines() if "p2pftd" in line]
    assert done.returncode == 0 and complaints == [], done.stdout + done.stderr
    # and verify really checks: a typo'd value is reported
    unit.write_text(render_unit(p2pftd=executable).replace("TimeoutStopSec=120", "TimeoutStopSec=two-minutes"))
    done = subprocess.run([analyze, "verify", str(unit)], capture_output=True, text=True, timeout=30, check=False)
    assert "two-minutes" in done.stdout + done.stderr


def test_plan_creates_the_user_only_when_missing(tmp_path: Path) -> None:
    unit_path = tmp_path / "p2pftd.service"
    missing = plan_install(user="p2pft", state_dir="/var/lib/p2pft", unit_path=unit_path, user_exists=False)
    assert [step.kind for step in missing] == ["create_user", "state_dir", "unit"]
    assert missing[0].command is not None and missing[0].command[:2] == ("useradd", "--system")
    present = plan_install(user="p2pft", state_dir="/var/lib/p2pft", unit_path=unit_path, user_exists=True)
    assert [step.kind for step in present] == ["state_dir", "unit"]


def test_dry_run_prints_everything_and_changes_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    units = tmp_path / "units"
    code = main(["install-service", "--dry-run", "--user", "p2pftnobody", "--state-dir", str(tmp_path / "state"),
                 "--p2pftd", "/opt/p2pft/bin/p2pftd", "--unit-dir", str(units)])  # fmt: skip
    out = capsys.readouterr().out
    assert code == 0
    assert "create system user and group 'p2pftnobody': useradd --system" in out
    assert f"ExecStart=/opt/p2pft/bin/p2pftd --state-dir {tmp_path}/state" in out
    assert "systemctl enable --now p2pftd" in out
    assert not units.exists() and not (tmp_path / "state").exists()


def test_install_needs_root(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(install_service.os, "geteuid", lambda: 1000)
    assert main(["install-service", "--unit-dir", "/nonexistent/units"]) == 1
    assert "install-service needs root: run it with sudo, or add --dry-run" in capsys.readouterr().err


@pytest.mark.skipif(os.geteuid() != 0, reason="installs files owned by root: needs root")
def test_install_as_root_for_an_existing_user(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    state, units = tmp_path / "state", tmp_path / "units"
    code = main(["install-service", "--user", "root", "--state-dir", str(state), "--p2pftd", "/bin/true",
                 "--unit-dir", str(units)])  # fmt: skip
    assert code == 0, capsys.readouterr()
    assert stat.S_IMODE(state.stat().st_mode) == 0o750
    unit = units / "p2pftd.service"
    assert unit.read_text() == render_unit(p2pftd="/bin/true", user="root", state_dir=str(state))
    assert stat.S_IMODE(unit.stat().st_mode) == 0o644
    assert "useradd" not in capsys.readouterr().out  # root exists: no user created
