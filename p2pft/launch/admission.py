"""Who may open a connection to a job's rendezvous store: the current round's members and this box.

torch's TCPStore has no authentication and the c10d rendezvous unpickles what it reads from it, so the store
binds loopback only and a front (p2pft.launch.store_front) accepts a connection on the store port only from an
admitted address. The coordinating daemon writes the round's member addresses into the *admitted file* before it
sends the round's orders; the front reads the file again whenever it changed (inode, mtime, size) when a
connection arrives, so a member dialling after its order is never refused for being early. Torch-free: the daemon
writes the file with these helpers.

Always admitted, whatever the file says: 127.0.0.1 and ::1, and a peer whose address is the address it reached
(a connection from this box to one of its own addresses comes from that address). Other loopback addresses
(127.0.0.2 ...) are not: nothing of p2pft dials from them, and the tests use one as a stranger.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

ALWAYS = frozenset({"127.0.0.1", "::1"})
MAX_HOSTS = 10_000


def normalize_ip(text: str) -> str | None:
    """The canonical text of an IP address ('::ffff:10.0.0.2' -> '10.0.0.2', zone ids dropped); None for a
    name or garbage."""
    bare = text.strip().strip("[]").partition("%")[0]
    try:
        address = ipaddress.ip_address(bare)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return str(address.ipv4_mapped)
    return str(address)


def admits(peer: str, local: str, admitted: frozenset[str]) -> bool:
    """Whether a connection from `peer` that reached this box at `local` may go on to the store."""
    ip = normalize_ip(peer)
    if ip is None:
        return False
    return ip in ALWAYS or ip == normalize_ip(local) or ip in admitted


@dataclass(frozen=True)
class Admitted:
    round: int
    hosts: frozenset[str]


NOBODY = Admitted(round=-1, hosts=frozenset())


def write_admitted(path: Path, *, round_number: int, hosts: Iterable[str]) -> None:
    """Atomically (a front never reads half a file); IP literals only (the daemon resolves names first)."""
    ips = sorted({ip for ip in (normalize_ip(h) for h in hosts) if ip is not None})
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    partial.write_text(json.dumps({"round": round_number, "hosts": ips}) + "\n")
    os.replace(partial, path)


def parse_admitted(text: str) -> Admitted:
    """The file's content; anything malformed admits nobody beyond this box (ValueError says what)."""
    data = json.loads(text)
    if not isinstance(data, dict) or not isinstance(data.get("hosts"), list) or \
            not isinstance(data.get("round"), int) or len(data["hosts"]) > MAX_HOSTS:
        raise ValueError("expected {\"round\": int, \"hosts\": [ip, ...]}")
    ips = {normalize_ip(h) if isinstance(h, str) else None for h in data["hosts"]}
    return Admitted(round=data["round"], hosts=frozenset(ip for ip in ips if ip is not None))


class AdmittedFile:
    """The admitted file as the front sees it: read again only when it changed since the last look."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self._seen: tuple[int, int, int] | None = None
        self.current = NOBODY
        self.error = ""          # why the newest version could not be read ('' when it could)

    def admitted(self) -> Admitted:
        if self.path is None:
            return NOBODY
        try:
            stat = self.path.stat()
        except FileNotFoundError:
            self._seen, self.current = None, NOBODY
            return self.current
        key = (stat.st_ino, stat.st_mtime_ns, stat.st_size)
        if key != self._seen:
            self._seen = key
            try:
                self.current, self.error = parse_admitted(self.path.read_text()), ""
            except (OSError, ValueError) as exc:   # json.JSONDecodeError is a ValueError
                self.current, self.error = NOBODY, f"{self.path}: {exc}"
        return self.current


class RefusalLog:
    """One line per refused address, then at most one summary per `interval_s`: a scan of the port or a
    misconfigured box must not fill the store's log."""

    def __init__(self, interval_s: float = 600.0, max_addresses: int = 4096) -> None:
        self.interval_s = interval_s
        self.max_addresses = max_addresses
        self._last: dict[str, tuple[float, int]] = {}   # address -> (when last logged, refused since)

    def refused(self, address: str, now: float | None = None) -> int | None:
        """Count a refusal; the number of refusals to report now (this one included), or None to stay quiet."""
        now = time.monotonic() if now is None else now
        entry = self._last.get(address)
        if entry is None or now - entry[0] >= self.interval_s:
            if entry is None and len(self._last) >= self.max_addresses:
                with contextlib.suppress(StopIteration):
                    self._last.pop(next(iter(self._last)))
            self._last[address] = (now, 0)
            return 1 + (entry[1] if entry is not None else 0)
        self._last[address] = (entry[0], entry[1] + 1)
        return None
