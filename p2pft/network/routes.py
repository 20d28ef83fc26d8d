"""Which local address and interface the other members of a round reach this box on.

The kernel knows: the source address of the route towards a peer is the address that peer sees us come from,
whatever the hostname resolves to (127.0.1.1 on stock Ubuntu) and whatever the daemon listens on (0.0.0.0).
`route_source` asks it (a UDP socket's connect sends nothing); `choose_local_address` is the pure decision.
"""

from __future__ import annotations

import ipaddress
import socket
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from p2pft.network.interfaces import Interface, by_name, interface_of

LOOPBACK = "127.0.0.1"


class NoReachableAddress(ValueError):
    """One line: which peer (or setting) and what to check."""


@dataclass(frozen=True)
class LocalChoice:
    address: str                    # what the members dial this box on (store, --local-addr, collectives)
    interface: str                  # the interface holding it ("" when the system does not list it)
    how: str                        # "alone", "route", "setting", "environment": for logs and `p2pft doctor`


def route_source(host: str) -> str | None:
    """The local address of the route towards `host` (an IP or a name), or None when there is no route."""
    try:
        infos = socket.getaddrinfo(host, 9, type=socket.SOCK_DGRAM)
    except (OSError, UnicodeError):
        return None
    for family, kind, proto, _, target in infos:
        try:
            with socket.socket(family, kind, proto) as probe:
                probe.connect(target)
                return str(probe.getsockname()[0])
        except OSError:
            continue
    return None


def host_of(address: str) -> str:
    """'10.0.0.2:7650' / '[fe80::1]:7650' -> the host part."""
    host, _, _ = address.rpartition(":")
    return host[1:-1] if host.startswith("[") and host.endswith("]") else host


def choose_local_address(peer_hosts: Sequence[str], interfaces: Sequence[Interface], *,
                         source_of: Callable[[str], str | None] = route_source,
                         interface_setting: str = "", interface_env: str = "") -> LocalChoice:
    """The address (and interface) to give the round's other members.

    A configured interface wins (`interface_setting`, then the user's own GLOO_SOCKET_IFNAME); otherwise the
    source address the kernel routes towards most of the peers (the first peer breaks a tie); alone, loopback.
    """
    for name, how in ((interface_setting, "setting"), (interface_env, "environment")):
        if name:
            interface = by_name(name, interfaces)
            if interface is None or not interface.addresses:
                known = ", ".join(i.name for i in interfaces) or "none"
                origin = "collective_interface" if how == "setting" else "GLOO_SOCKET_IFNAME"
                raise NoReachableAddress(f"{origin}={name!r}: this box has no interface of that name with an IPv4 "
                                         f"address (it has: {known}); fix the setting or remove it")
            return LocalChoice(interface.addresses[0], interface.name, how)
    peers = [h for h in dict.fromkeys(peer_hosts) if h]
    if not peers:
        return _choice(LOOPBACK, interfaces, "alone")
    sources = {peer: source_of(peer) for peer in peers}
    routed = [s for s in sources.values() if s]
    if not routed:
        raise NoReachableAddress(f"no route from this box to {', '.join(peers)}: check the network link and the "
                                 "routing table (ip route)")
    counts = Counter(routed)
    best = max(routed, key=lambda s: (counts[s], -routed.index(s)))
    return _choice(best, interfaces, "route")


def _choice(address: str, interfaces: Sequence[Interface], how: str) -> LocalChoice:
    interface = interface_of(address, interfaces)
    return LocalChoice(address, interface.name if interface else "", how)


def unreachable_peers(peer_hosts: Sequence[str], choice: LocalChoice,
                      sources: Mapping[str, str | None]) -> list[str]:
    """Peers whose route leaves by another address than the chosen one (a multi-homed round)."""
    return [p for p in peer_hosts if sources.get(p) not in (None, choice.address)]


def is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"
