"""The CLI on a box whose daemon runs as a system service (`p2pft install-service`): the service's group.

The CLI speaks to its daemon over mTLS with the box's node certificate, so using the CLI means reading the
node's key. The service's state dir is 0750 and owned by the service's user and group; the members of that
group (`usermod -aG p2pft alice`) get exactly what the CLI needs: the state dir's top level (daemon.addr),
tls/ (0750), node.key (0640). The CA key stays the owner's alone (issuing join tokens is an admin's job:
`sudo -u p2pft p2pft join-token`), and everything the daemon writes itself (jobs, blobs, submissions) stays
0600/0700 under the unit's UMask=0077. Being in the group means acting as this box in the cluster (submit,
cancel, drain), like the docker group on a docker host.
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
    """When `state_dir` is open to its group (a service's state dir), open what the CLI reads to that group too.

    Returns the group's name, or None when the state dir is private (0700: a developer's own daemon) and
    nothing was changed. Run by whoever owns the files (`sudo -u p2pft p2pft init`) or by root
    (`install-service`, for a box initialised before).
    """
    info = state_dir.stat()
    if info.st_mode & GROUP_OPEN != GROUP_OPEN:
        return None
    tls = tls_dir(state_dir)
    for path, mode in ((tls, 0o750), (tls / NODE_KEY, 0o640), (tls / NODE_CERT, 0o644), (tls / CA_CERT, 0o644)):
        if path.exists():
            if path.stat().st_gid != info.st_gid:
                os.chown(path, -1, info.st_gid)  # the owner may give its files to a group it belongs to
            os.chmod(path, mode)
    return group_name(info.st_gid)


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
