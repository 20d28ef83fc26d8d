"""Where a daemon keeps its state, and the small files in it that the CLI also reads.

Layout of a state dir:
  node_id        this box's persistent node id (one line), created once
  tls/           cluster CA and this node's certificate (see p2pft.security.credentials)
  daemon.addr    `host:port` the running daemon listens on, written at start (the CLI's TLS target)
  p2pftd.sock    the running daemon's local channel for this box's CLI (p2pft/daemon/local_socket.py), with
                 p2pftd.sock.lock, held by the daemon that owns the socket
  join.addr      `host:port` of the join listener, on a box that holds the CA key (p2pft/daemon/join_listener.py)
Later issues add jobs/ and blobs/ beside them.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

STATE_DIR_ENV = "P2PFT_STATE_DIR"
NODE_ID_FILE = "node_id"
DAEMON_ADDR_FILE = "daemon.addr"
LOCAL_SOCKET_FILE = "p2pftd.sock"


def default_state_dir() -> Path:
    """/var/lib/p2pft for root (a system service), else ~/.local/state/p2pft (XDG state home)."""
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        return Path("/var/lib/p2pft")
    xdg = os.environ.get("XDG_STATE_HOME")
    base = Path(xdg) if xdg else Path.home() / ".local" / "state"
    return base / "p2pft"


def resolve_state_dir(explicit: str | os.PathLike[str] | None = None) -> Path:
    """--state-dir beats P2PFT_STATE_DIR beats the default."""
    if explicit:
        return Path(explicit).expanduser().resolve()
    env = os.environ.get(STATE_DIR_ENV)
    if env:
        return Path(env).expanduser().resolve()
    return default_state_dir()


def create_state_dir(state_dir: Path) -> Path:
    """Create the state dir 0700 when it does not exist (its keys, records and blobs are this box's alone); an
    existing one keeps its mode (systemd's StateDirectoryMode=0700, or what an admin chose)."""
    if not state_dir.is_dir():
        state_dir.parent.mkdir(parents=True, exist_ok=True)
        try:
            state_dir.mkdir(mode=0o700)
        except FileExistsError:
            pass   # made meanwhile by another process: its mode stands
        else:
            os.chmod(state_dir, 0o700)   # whatever the umask
    return state_dir


def new_node_id() -> str:
    # 16 hex chars: unique enough for an office, short enough to read in a table, a valid DNS label.
    return secrets.token_hex(8)


def read_node_id(state_dir: Path) -> str | None:
    path = state_dir / NODE_ID_FILE
    if not path.exists():
        return None
    value = path.read_text().strip()
    return value or None


def load_or_create_node_id(state_dir: Path) -> str:
    """The node id survives restarts: it is created once and then read from the state dir."""
    existing = read_node_id(state_dir)
    if existing:
        return existing
    create_state_dir(state_dir)
    node_id = new_node_id()
    _write_atomic(state_dir / NODE_ID_FILE, node_id + "\n")
    return node_id


def write_node_id(state_dir: Path, node_id: str) -> None:
    """The id the cluster CA granted when it differs from the one asked for (`p2pft init --token`)."""
    _write_atomic(state_dir / NODE_ID_FILE, node_id + "\n")


def write_file_atomic(path: Path, text: str, mode: int = 0o644) -> None:
    _write_atomic(path, text, mode)


def write_daemon_addr(state_dir: Path, address: str) -> None:
    _write_atomic(state_dir / DAEMON_ADDR_FILE, address + "\n")


def read_daemon_addr(state_dir: Path) -> str | None:
    path = state_dir / DAEMON_ADDR_FILE
    if not path.exists():
        return None
    return path.read_text().strip() or None


def local_socket_path(state_dir: Path) -> Path:
    return Path(state_dir) / LOCAL_SOCKET_FILE


def remove_daemon_addr(state_dir: Path, address: str) -> None:
    """Remove daemon.addr only if it still names us (another daemon may have started on this state dir)."""
    if read_daemon_addr(state_dir) == address:
        (state_dir / DAEMON_ADDR_FILE).unlink(missing_ok=True)


def _write_atomic(path: Path, text: str, mode: int = 0o644) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    os.chmod(tmp, mode)
    os.replace(tmp, path)
