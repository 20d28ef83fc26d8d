"""The CLI on a box whose daemon runs as a system service (`p2pft install-service`): the service's group.

The CLI speaks to its daemon on the daemon's Unix socket (`p2pftd.sock`, 0660 with the state dir's group,
p2pft/daemon/local_socket.py). The service's state dir is 0750 and owned by the service's user and group; the
members of that group (`usermod -aG p2pft alice`) get exactly what the CLI needs: the state dir's top level
(daemon.addr, the socket) and the public certificates (tls/ 0750, node.crt and ca.crt 0644). The keys stay the
owner's alone: node.key (0600; it speaks for this box to every peer: releases before the socket made it 0640 for
the group, and the daemon closes it again when its socket is up) and the CA key (issuing join tokens is an
admin's job: `sudo -u p2pft p2pft join-token`); everything the daemon writes itself (jobs, blobs, submissions)
stays 0600/0700 under the unit's UMask=0077. Being in the group means operating this box (submit, cancel, drain,
fetch), like the docker group on a docker host, but no longer speaking for it to its peers.
"""

from __future__ import annotations

import grp
import os
import stat
from pathlib import Path

from p2pft.security.credentials import CA_CERT, NODE_CERT, NODE_KEY, tls_dir

SERVICE_STATE_DIR = Path("/var/lib/p2pft")  # install-service's default, and the root daemon's default
GROUP_OPEN = stat.S_IRGRP | stat.S_IXGRP


def group_name(gid: int) -> str:
    try:
        return grp.getgrgid(gid).gr_name
    except KeyError:
        return str(gid)


def share_cli_credentials(state_dir: Path) -> str | None:
    """When `state_dir` is open to its group (a service's state dir), open the certificates to that group too, and
    keep (or make again) node.key the owner's alone: the group's CLI uses the daemon's socket.

    Returns the group's name, or None when the state dir is private (0700: a developer's own daemon) and
    nothing was changed. Run by whoever owns the files (`sudo -u p2pft p2pft init`) or by root
    (`install-service`, for a box initialised before).
    """
    info = state_dir.stat()
    if info.st_mode & GROUP_OPEN != GROUP_OPEN:
        return None
    tls = tls_dir(state_dir)
    for path, mode in ((tls, 0o750), (tls / NODE_KEY, 0o600), (tls / NODE_CERT, 0o644), (tls / CA_CERT, 0o644)):
        if path.exists():
            if path.stat().st_gid != info.st_gid:
                os.chown(path, -1, info.st_gid)  # the owner may give its files to a group it belongs to
            os.chmod(path, mode)
    return group_name(info.st_gid)


def no_daemon_socket_hint(state_dir: Path) -> str:
    """One line for a user who may use the state dir but not its key, when the daemon's socket is not there."""
    return (f"no daemon socket at {state_dir}/p2pftd.sock, and this box's key is its daemon's user's alone: start "
            "p2pftd (sudo systemctl start p2pftd); a p2pftd older than this CLI has no socket: restart it")


def no_access_hint(state_dir: Path) -> str:
    """One line for a user who cannot read a service's state dir: how to get in."""
    try:
        info = state_dir.stat()
    except OSError:
        return f"cannot read {state_dir}"
    group, owner = group_name(info.st_gid), _user_name(info.st_uid)
    return (f"cannot read {state_dir} (permission denied): its daemon runs as {owner!r}; members of group {group!r} "
            f"can use the CLI: sudo usermod -aG {group} $USER (then log in again), or run sudo -u {owner} p2pft "
            f"--state-dir {state_dir} ...")


def _user_name(uid: int) -> str:
    import pwd

    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)
