"""Static peers (`--peer HOST:PORT`): for offices where mDNS is blocked.

A static peer is only an address until the daemon's Hello answers with the node id; then the daemon calls
`StaticDiscovery.answered(...)`, which emits PeerSeen(source="static") (again whenever the details change),
and `unreachable(...)` emits PeerLost once for a peer that had answered. Parsing is strict with one-line
errors naming the value: `--peer 'x:99999': port must be 1-65535`.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from p2pft.discovery.events import EventCallback, PeerLost, PeerSeen

_HOSTNAME = re.compile(r"(?=.{1,253}$)[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,62})(?:\.[A-Za-z0-9_-]{1,63})*\.?")


class PeerAddressError(ValueError):
    """A `--peer` value is not HOST:PORT; the message is one line naming it."""


@dataclass(frozen=True)
class PeerAddress:
    host: str  # a host name or an IP address (IPv6 without brackets)
    port: int

    @property
    def target(self) -> str:
        """ "host:port" for gRPC (brackets around IPv6)."""
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


def parse_peer(value: str, *, flag: str = "--peer") -> PeerAddress:
    """ "box-a:50051", "10.0.0.7:50051", "[fe80::1]:50051" -> PeerAddress; PeerAddressError otherwise."""
    text = value.strip()
    if text.startswith("["):
        host, sep, port_text = text[1:].partition("]:")
        if not sep:
            raise PeerAddressError(f"{flag} {value!r}: write IPv6 peers as [ADDRESS]:PORT")
        if not _is_ip(host):
            raise PeerAddressError(f"{flag} {value!r}: {host!r} is not an IP address (brackets are for IPv6)")
    else:
        host, sep, port_text = text.rpartition(":")
        if not sep or not host:
            raise PeerAddressError(f"{flag} {value!r}: expected HOST:PORT, e.g. gpu-box-2:50051")
        if ":" in host:
            raise PeerAddressError(f"{flag} {value!r}: write IPv6 peers as [ADDRESS]:PORT")
    if not port_text.isdigit():
        raise PeerAddressError(f"{flag} {value!r}: port {port_text!r} is not a number")
    port = int(port_text)
    if not 1 <= port <= 65535:
        raise PeerAddressError(f"{flag} {value!r}: port must be 1-65535")
    if not _valid_host(host):
        raise PeerAddressError(f"{flag} {value!r}: {host!r} is not a host name or IP address")
    return PeerAddress(host, port)


def parse_peers(values: Sequence[str], *, flag: str = "--peer") -> list[PeerAddress]:
    """Parse every value (first error raised) and drop exact duplicates, keeping the order."""
    peers: list[PeerAddress] = []
    for value in values:
        peer = parse_peer(value, flag=flag)
        if peer not in peers:
            peers.append(peer)
    return peers


def _valid_host(host: str) -> bool:
    return _is_ip(host) or bool(_HOSTNAME.fullmatch(host))


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


class StaticDiscovery:
    """Turns Hello answers from configured addresses into discovery events (source="static")."""

    def __init__(self, peers: Sequence[str] | Sequence[PeerAddress], on_event: EventCallback) -> None:
        self.peers = [p if isinstance(p, PeerAddress) else parse_peer(p) for p in peers]
        self._on_event = on_event
        self._seen: dict[PeerAddress, PeerSeen] = {}

    def answered(
        self, peer: PeerAddress, *, node_id: str, cluster_id: str, protocol_version: int, txt: Mapping[str, str]
    ) -> PeerSeen:
        """The peer at this address answered Hello: emit PeerSeen unless nothing changed since last time."""
        event = PeerSeen(node_id, cluster_id, peer.host, peer.port, protocol_version, dict(txt), "static")
        if self._seen.get(peer) != event:
            self._seen[peer] = event
            self._on_event(event)
        return event

    def unreachable(self, peer: PeerAddress) -> None:
        """The peer stopped answering: PeerLost once (a hint; heartbeats decide liveness)."""
        seen = self._seen.pop(peer, None)
        if seen is not None:
            self._on_event(PeerLost(seen.node_id, "static"))
