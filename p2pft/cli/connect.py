"""Shared by the CLI commands that talk to a daemon: find the target (this box's daemon's local socket, else its
TLS address with this box's certificate), run one async call."""

from __future__ import annotations

import argparse
import asyncio
import os
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

from p2pft.cli.main import CliError

T = TypeVar("T")


def state_dir_of(args: argparse.Namespace) -> Path:
    from p2pft.daemon.state_dir import resolve_state_dir

    return resolve_state_dir(getattr(args, "state_dir", None))


def client_state_dir(args: argparse.Namespace) -> Path:
    """The state dir whose daemon the CLI talks to. As `state_dir_of`, except that a user without credentials of
    their own on a box whose daemon runs as the service (`install-service`) gets the service's state dir: the
    everyday `p2pft status` of a developer on such a box needs no flag."""
    from p2pft.cli.shared_access import SERVICE_STATE_DIR
    from p2pft.daemon.state_dir import DAEMON_ADDR_FILE, STATE_DIR_ENV
    from p2pft.security.credentials import has_credentials

    state_dir = state_dir_of(args)
    if getattr(args, "state_dir", None) or os.environ.get(STATE_DIR_ENV) or state_dir == SERVICE_STATE_DIR:
        return state_dir
    try:
        if not has_credentials(state_dir) and (SERVICE_STATE_DIR / DAEMON_ADDR_FILE).exists():
            return SERVICE_STATE_DIR
    except PermissionError:  # the service's dir exists but is closed to us: daemon_target says how to get in
        return SERVICE_STATE_DIR
    return state_dir


def local_socket_target(args: argparse.Namespace, state_dir: Path) -> str | None:
    """`unix:<state-dir>/p2pftd.sock` when the CLI talks to its own box's daemon and that daemon serves its local
    socket; None for --daemon/P2PFT_DAEMON (another box, or TLS on purpose) and for a daemon without the socket
    (an older release, a state dir path too long for a socket): those keep the TLS path."""
    from p2pft.cli.shared_access import no_access_hint
    from p2pft.daemon.state_dir import local_socket_path
    from p2pft.rpc.client import DAEMON_ENV

    if getattr(args, "daemon", None) or os.environ.get(DAEMON_ENV):
        return None
    path = local_socket_path(state_dir)
    try:
        if not path.exists():
            return None
    except PermissionError:
        raise CliError(no_access_hint(state_dir)) from None
    if not os.access(path, os.R_OK | os.W_OK):   # connecting needs write access to the socket file
        raise CliError(no_access_hint(state_dir))
    return f"unix:{path}"


def daemon_target(args: argparse.Namespace) -> tuple[str, Any]:
    """(this box's daemon, this box's credentials), or a one-line CliError saying what to do. The daemon's local
    socket when it has one (credentials None: the CLI needs no key then), else its TLS address and this box's
    certificate."""
    from p2pft.security.credentials import CredentialsError, load_credentials

    state_dir = client_state_dir(args)
    local = local_socket_target(args, state_dir)
    if local is not None:
        return local, None
    try:
        credentials = load_credentials(state_dir)
        target = resolve_daemon_target(getattr(args, "daemon", None), state_dir)
    except PermissionError:
        raise CliError(_denied(state_dir)) from None
    except CredentialsError as exc:
        if "Permission denied" in str(exc):
            raise CliError(_denied(state_dir)) from None
        raise CliError(str(exc)) from None
    if not target:
        raise CliError(f"no daemon address: {state_dir}/daemon.addr is missing (is p2pftd running with this state "
                       "dir?); start it (sudo systemctl start p2pftd), or pass --daemon HOST:PORT or set "
                       "P2PFT_DAEMON")
    return target, credentials


def _denied(state_dir: Path) -> str:
    """The key could not be read: a user outside the state dir's group, or one inside it whose daemon has no
    socket (stopped, or older than this CLI)."""
    from p2pft.cli.shared_access import no_access_hint, no_daemon_socket_hint

    return no_daemon_socket_hint(state_dir) if os.access(state_dir, os.R_OK | os.X_OK) else no_access_hint(state_dir)


def call_daemon(args: argparse.Namespace, fn: Callable[..., Awaitable[T]]) -> T:
    """Run `fn(client)` against the daemon chosen by --daemon / P2PFT_DAEMON / <state-dir>/daemon.addr."""
    # grpc core prints failed TLS handshakes at INFO by default; the CLI says it in one line of its own instead.
    os.environ.setdefault("GRPC_VERBOSITY", "ERROR")
    import grpc

    from p2pft.rpc.client import DaemonClient, describe_rpc_error

    target, credentials = daemon_target(args)

    async def run() -> T:
        async with DaemonClient(target, credentials) as client:
            return await fn(client)

    try:
        return asyncio.run(run())
    except grpc.RpcError as exc:
        raise CliError(describe_rpc_error(exc, target)) from None


def resolve_daemon_target(explicit: str | None, state_dir: Path) -> str | None:
    """--daemon beats P2PFT_DAEMON beats `<state-dir>/daemon.addr` (written by the running daemon)."""
    from p2pft.daemon.state_dir import read_daemon_addr  # the CLI side may read the daemon's files
    from p2pft.rpc.client import DAEMON_ENV

    return explicit or os.environ.get(DAEMON_ENV) or read_daemon_addr(state_dir)
