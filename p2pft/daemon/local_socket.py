"""The daemon's local channel: the same gRPC services on a Unix socket in its state dir, for this box's CLI.

Who may open it is decided by the kernel's file permissions, nothing else: grpc Python does not expose the
caller's credentials (no SO_PEERCRED), so there is no uid check in p2pft. The socket is 0600 (the daemon's user;
root passes any mode), or 0660 with the state dir's group when the state dir is open to its group (a service's
`/var/lib/p2pft`, 0750 group `p2pft`: its members use the CLI). It is bound with umask 077, so it is never
wider than that, not even before the chmod. Calls arriving on it get the local operator role
(`p2pft.rpc.caller.LOCAL_OPERATOR`); a certificate over TCP never does.

One daemon per socket: a lock file beside it (flock, released by the kernel when the daemon dies however it
dies) says who owns it. The owner removes a stale socket left by a killed daemon; a second daemon started on
the same state dir finds the lock taken and serves without the socket rather than take it over (grpc would
unlink a live socket to bind its own).
"""

from __future__ import annotations

import fcntl
import logging
import os
import stat
from dataclasses import dataclass
from pathlib import Path

import grpc

from p2pft.daemon.state_dir import LOCAL_SOCKET_FILE

log = logging.getLogger("p2pft.daemon")
LOCK_SUFFIX = ".lock"
MAX_UNIX_PATH = 107   # sockaddr_un's sun_path is 108 bytes, NUL included
GROUP_OPEN = stat.S_IRGRP | stat.S_IXGRP


def socket_mode(state_dir_mode: int) -> int:
    """0660 when the state dir lets its group in (its members use the CLI), else 0600."""
    return 0o660 if state_dir_mode & GROUP_OPEN == GROUP_OPEN else 0o600


@dataclass
class LocalSocket:
    path: Path
    lock_fd: int
    inode: int | None = None

    @property
    def target(self) -> str:
        return f"unix:{self.path}"

    @classmethod
    def claim(cls, state_dir: Path) -> LocalSocket | None:
        """The socket's lock, or None (logged) when another daemon holds it or the path cannot be a socket."""
        path = Path(state_dir) / LOCAL_SOCKET_FILE
        if len(os.fsencode(path)) > MAX_UNIX_PATH:
            log.warning("no local socket: %s is longer than %d bytes (a Unix socket's limit); the CLI uses TLS with "
                        "this box's certificate instead", path, MAX_UNIX_PATH)
            return None
        fd = os.open(path.with_name(path.name + LOCK_SUFFIX), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            log.warning("no local socket: another p2pftd serves %s (it holds %s%s); this one serves TLS only",
                        path, path.name, LOCK_SUFFIX)
            return None
        return cls(path, fd)

    def bind(self, server: grpc.aio.Server) -> bool:
        """Add the socket to `server` (before `server.start()`); False (logged) when it cannot be bound."""
        try:
            if self.path.is_symlink() or (self.path.exists() and not stat.S_ISSOCK(self.path.lstat().st_mode)):
                log.warning("no local socket: %s exists and is not a socket; remove it and restart", self.path)
                return False
            self.path.unlink(missing_ok=True)   # a stale one: we hold the lock, so no daemon serves it
            old_umask = os.umask(0o077)   # bound 0600 at most: nobody else can connect before the chmod
            try:
                port = server.add_secure_port(self.target, grpc.local_server_credentials(grpc.LocalConnectionType.UDS))
            finally:
                os.umask(old_umask)
            if port == 0:
                log.warning("no local socket: cannot bind %s", self.path)
                return False
            self._open_to_group()
            self.inode = self.path.stat().st_ino
        except OSError as exc:
            log.warning("no local socket at %s: %s", self.path, exc)
            return False
        return True

    def _open_to_group(self) -> None:
        info = self.path.parent.stat()
        mode = socket_mode(info.st_mode)
        if mode & stat.S_IRWXG:
            try:
                os.chown(self.path, -1, info.st_gid)
            except PermissionError:   # the daemon's user is not in the state dir's group: keep it to ourselves
                log.warning("local socket %s stays 0600: cannot give it to the state dir's group %d", self.path,
                            info.st_gid)
                mode = 0o600
        os.chmod(self.path, mode)

    def release(self) -> None:
        """Remove the socket if it is still ours, and let the lock go."""
        try:
            if self.inode is not None and self.path.stat().st_ino == self.inode:
                self.path.unlink()
        except OSError:
            pass
        os.close(self.lock_fd)
