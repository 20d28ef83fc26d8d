"""sd_notify without a dependency: one datagram to $NOTIFY_SOCKET (a path, or '@name' for an abstract socket)."""

from __future__ import annotations

import os
import socket


def sd_notify(message: str, environ: dict[str, str] | None = None) -> bool:
    """Send e.g. 'READY=1' or 'STOPPING=1'; False (and nothing sent) when not run by systemd."""
    address = (environ if environ is not None else os.environ).get("NOTIFY_SOCKET", "")
    if not address:
        return False
    target = "\0" + address[1:] if address.startswith("@") else address
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.connect(target)
            sock.sendall(message.encode())
    except OSError:
        return False
    return True


def under_journal(environ: dict[str, str] | None = None) -> bool:
    """systemd connects stderr to the journal and sets JOURNAL_STREAM: the journal adds its own timestamps."""
    return bool((environ if environ is not None else os.environ).get("JOURNAL_STREAM"))
