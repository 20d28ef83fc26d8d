"""`p2pft install-service`: run p2pftd under systemd as its own system user.

Steps (as root): create the system user/group if missing, create the state dir (0750: the owner, and the
group's members for the CLI, see cli/shared_access.py), write /etc/systemd/system/p2pftd.service, then print
the commands to run, including the one that lets a developer use the CLI (`usermod -aG p2pft NAME`).
`--dry-run` prints the same steps without doing anything. The unit text is generated here (`render_unit`)
and systemd/p2pftd.service in the repository is its default rendering (a test keeps them identical).
"""

from __future__ import annotations

import argparse
import os
import pwd
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from p2pft.cli.main import CliError
from p2pft.cli.shared_access import share_cli_credentials

DEFAULT_USER = "p2pft"
DEFAULT_STATE_DIR = "/var/lib/p2pft"
DEFAULT_P2PFTD = "/usr/local/bin/p2pftd"
DEFAULT_UNIT_DIR = "/etc/systemd/system"
# The group may enter the state dir (daemon.addr, the CLI's credentials); what the daemon writes itself stays
# 0600/0700 under the unit's UMask=0077. systemd applies StateDirectoryMode at every start, so both say 0750.
STATE_DIR_MODE = 0o750
UNIT_NAME = "p2pftd.service"
_USER_NAME = re.compile(r"[a-z_][a-z0-9_-]{0,31}")
_SAFE_PATH = re.compile(r"/[A-Za-z0-9._/+-]*")  # no spaces or % specifiers: used verbatim in the unit

UNIT_TEMPLATE = """\
# p2pftd: this box's share of the office's elastic fine-tuning cluster.
# Written by `p2pft install-service` (systemd/p2pftd.service in the repository is the default rendering).
# Installed in a virtualenv? Point ExecStart at its script, e.g. /opt/p2pft/.venv/bin/p2pftd
# (install-service does this for you: it writes the path of the p2pftd next to the python it runs with).
# Then: systemctl daemon-reload && systemctl enable --now p2pftd

[Unit]
Description=p2pft daemon (elastic fine-tuning across the office's GPUs)
After=network-online.target
Wants=network-online.target

[Service]
# The daemon sends READY=1 once it serves; only its main process may notify.
Type=notify
NotifyAccess=main
# Create the NVIDIA device nodes (nvidia-uvm) with full privileges before the sandbox below applies;
# the leading "-" ignores a missing nvidia-modprobe (CPU-only boxes).
ExecStartPre=-+/usr/bin/nvidia-modprobe -u -c=0
ExecStart={p2pftd} --state-dir {state_dir}
ExecReload=/bin/kill -HUP $MAINPID
User={user}
Group={user}
{state_lines}
UMask=0077
Restart=on-failure
RestartSec=5
# SIGTERM means drain: checkpoint, tell the peers, stop the workers, exit. Only the daemon gets SIGTERM
# (KillMode=mixed); whatever is left after it exits or after TimeoutStopSec is killed.
KillSignal=SIGTERM
KillMode=mixed
TimeoutStopSec=120
LimitNOFILE=65536
Environment=PYTHONUNBUFFERED=1
# Hardening that keeps GPUs and networking usable: no PrivateDevices/DevicePolicy (/dev/nvidia*), the
# address families gRPC, mDNS and interface listing need, and no ProtectHome (job files, datasets and
# models often live in home directories).
NoNewPrivileges=yes
ProtectSystem=full
PrivateTmp=yes
ProtectKernelTunables=yes
ProtectKernelModules=yes
ProtectKernelLogs=yes
ProtectControlGroups=yes
ProtectClock=yes
ProtectHostname=yes
RestrictNamespaces=yes
RestrictRealtime=yes
RestrictSUIDSGID=yes
LockPersonality=yes
RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6 AF_NETLINK
SystemCallArchitectures=native

[Install]
WantedBy=multi-user.target
"""


def render_unit(*, p2pftd: str = DEFAULT_P2PFTD, user: str = DEFAULT_USER, state_dir: str = DEFAULT_STATE_DIR) -> str:
    """The unit file text. A state dir under /var/lib is managed by systemd (StateDirectory=)."""
    _check_user(user)
    _check_path(p2pftd, "--p2pftd")
    _check_path(state_dir, "--state-dir")
    relative = os.path.relpath(state_dir, "/var/lib")
    if state_dir.startswith("/var/lib/") and not relative.startswith(".."):
        state_lines = f"StateDirectory={relative}\nStateDirectoryMode={STATE_DIR_MODE:04o}"
    else:
        state_lines = f"ReadWritePaths={state_dir}"
    return UNIT_TEMPLATE.format(p2pftd=p2pftd, state_dir=state_dir, user=user, state_lines=state_lines)


@dataclass(frozen=True)
class Step:
    """One change to the system, shown by --dry-run and carried out otherwise."""

    kind: Literal["create_user", "state_dir", "unit"]
    description: str
    command: tuple[str, ...] | None = None  # what runs, for steps done by another program


def plan_install(*, user: str, state_dir: str, unit_path: Path, user_exists: bool) -> list[Step]:
    steps = []
    if not user_exists:
        useradd = ("useradd", "--system", "--user-group", "--home-dir", state_dir, "--no-create-home",
                   "--shell", "/usr/sbin/nologin", user)  # fmt: skip
        steps.append(Step("create_user", f"create system user and group {user!r}", useradd))
    steps.append(Step("state_dir", f"create {state_dir} owned by {user}, mode {STATE_DIR_MODE:04o} (group {user}: "
                                   "the CLI)"))
    steps.append(Step("unit", f"write {unit_path}"))
    return steps


def next_steps(user: str, state_dir: str, developer: str | None = None) -> list[str]:
    """What to run after the install. `developer`: who ran sudo (SUDO_USER), named in the usermod line."""
    member = developer if developer and developer != "root" else "NAME"
    return [
        "systemctl daemon-reload",
        "systemctl enable --now p2pftd",
        f"sudo -u {user} p2pft --state-dir {state_dir} init     # first box: create the cluster credentials",
        f"sudo -u {user} p2pft --state-dir {state_dir} init --token-file F     # other boxes (F: join-token's output)",
        f"usermod -aG {user} {member}     # each developer who uses the p2pft CLI here (then log in again)",
        "journalctl -u p2pftd -f     # follow its log",
        f"# the daemon runs as {user}: job files' models, datasets and output_dir must be readable/writable by it, "
        f"e.g. in: install -d -o {user} -g {user} -m 2775 /srv/p2pft",
    ]


def find_p2pftd() -> str:
    """The p2pftd beside the running python (a venv), else on PATH, else the default path."""
    beside = Path(sys.executable).parent / "p2pftd"
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    return shutil.which("p2pftd") or DEFAULT_P2PFTD


def user_exists(user: str) -> bool:
    try:
        pwd.getpwnam(user)
    except KeyError:
        return False
    return True


def make_state_dir(state_dir: Path, user: str) -> None:
    entry = pwd.getpwnam(user)
    state_dir.mkdir(parents=True, exist_ok=True)
    os.chown(state_dir, entry.pw_uid, entry.pw_gid)
    state_dir.chmod(STATE_DIR_MODE)
    # A box initialised before (tls/ owner-only): its group gets the CLI's credentials now.
    share_cli_credentials(state_dir)


def write_unit(unit_path: Path, text: str) -> None:
    unit_path.parent.mkdir(parents=True, exist_ok=True)
    partial = unit_path.with_name(unit_path.name + ".partial")
    partial.write_text(text)
    partial.chmod(0o644)
    partial.replace(unit_path)


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = subparsers.add_parser("install-service", help="run p2pftd under systemd (as root)")
    parser.add_argument("--user", default=DEFAULT_USER, help=f"system user to run as (default {DEFAULT_USER})")
    parser.add_argument("--state-dir", dest="service_state_dir", metavar="DIR", help=f"default {DEFAULT_STATE_DIR}")
    parser.add_argument("--p2pftd", metavar="PATH", help="the p2pftd executable (default: the one beside python)")
    parser.add_argument("--unit-dir", default=DEFAULT_UNIT_DIR, metavar="DIR", help="where the unit file goes")
    parser.add_argument("--dry-run", action="store_true", help="print the steps and the unit, change nothing")
    parser.set_defaults(func=handler)


def handler(args: argparse.Namespace) -> int:
    state_dir = args.service_state_dir or args.state_dir or DEFAULT_STATE_DIR
    p2pftd = args.p2pftd or find_p2pftd()
    try:
        unit = render_unit(p2pftd=p2pftd, user=args.user, state_dir=state_dir)
    except ValueError as exc:
        raise CliError(str(exc)) from None
    unit_path = Path(args.unit_dir) / UNIT_NAME
    steps = plan_install(user=args.user, state_dir=state_dir, unit_path=unit_path, user_exists=user_exists(args.user))
    if args.dry_run:
        print("p2pft install-service --dry-run: would")
        for number, step in enumerate(steps, 1):
            print(f"  {number}. {step.description}" + (f": {' '.join(step.command)}" if step.command else ""))
        print(f"--- {unit_path} ---\n{unit}--- then run ---")
        print("\n".join(f"  {line}" for line in next_steps(args.user, state_dir, os.environ.get("SUDO_USER"))))
        return 0
    if os.geteuid() != 0:
        raise CliError("install-service needs root: run it with sudo, or add --dry-run to see the steps")
    if not Path(p2pftd).is_file():
        print(f"p2pft: warning: {p2pftd} does not exist yet; install p2pft there or pass --p2pftd", file=sys.stderr)
    for step in steps:
        if step.kind == "create_user" and step.command is not None:
            done = subprocess.run(step.command, capture_output=True, text=True, check=False)
            if done.returncode != 0:
                raise CliError(f"{step.description} failed: {(done.stderr or done.stdout).strip()[:200]}")
        elif step.kind == "state_dir":
            make_state_dir(Path(state_dir), args.user)
        elif step.kind == "unit":
            write_unit(unit_path, unit)
        print(f"done: {step.description}")
    print("now run:\n" + "\n".join(f"  {line}" for line in next_steps(args.user, state_dir,
                                                                      os.environ.get("SUDO_USER"))))
    return 0


def _check_user(user: str) -> None:
    if not _USER_NAME.fullmatch(user):
        raise ValueError(f"--user {user!r}: use a lowercase system user name like p2pft")


def _check_path(path: str, flag: str) -> None:
    if not _SAFE_PATH.fullmatch(path) or "//" in path or "/../" in f"{path}/":
        raise ValueError(f"{flag} {path!r}: give an absolute path without spaces or special characters")
