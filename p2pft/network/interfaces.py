"""This box's network interfaces, and which of them are its LAN (mDNS goes there, not to docker0 or a VPN).

A box's LAN interfaces are those carrying a default route, except virtual ones (bridges, tunnels, container
and VM networks); a box with no default route (an isolated lab network) uses every interface that is up and is
not virtual. Loopback is never a LAN interface. Reading is at the edge (`read_interfaces`, `default_route_names`);
the choices are pure functions of what was read.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

# Names that container runtimes, hypervisors and VPNs give their interfaces: never the office LAN.
VIRTUAL_PREFIXES = ("docker", "br-", "virbr", "veth", "vnet", "lxcbr", "lxdbr", "cni", "flannel", "cali",
                    "kube", "podman", "vboxnet", "vmnet", "tun", "tap", "wg", "tailscale", "zt", "utun", "ppp",
                    "ipsec", "nebula", "cilium", "weave", "genev", "vxlan")
SYS_NET = Path("/sys/class/net")
PROC_ROUTE = Path("/proc/net/route")


@dataclass(frozen=True)
class Interface:
    name: str
    addresses: tuple[str, ...]      # IPv4, in the order the system lists them
    up: bool
    kind: str                       # "loopback", "bridge", "tunnel", "virtual-name" or "ethernet"

    @property
    def virtual(self) -> bool:
        return self.kind in ("bridge", "tunnel", "virtual-name")


def classify(name: str, *, loopback: bool, bridge: bool, tunnel: bool) -> str:
    """Why an interface is (not) a LAN candidate, from its name and what /sys says about it."""
    if loopback:
        return "loopback"
    if bridge:
        return "bridge"
    if tunnel:
        return "tunnel"
    if name.startswith(VIRTUAL_PREFIXES):
        return "virtual-name"
    return "ethernet"


def read_interfaces() -> list[Interface]:
    """Every interface with at least one IPv4 address (psutil, /sys/class/net)."""
    import psutil

    stats = psutil.net_if_stats()
    out = []
    for name, addrs in psutil.net_if_addrs().items():
        ipv4 = tuple(a.address for a in addrs if a.family == socket.AF_INET)
        if not ipv4:
            continue
        loopback = name == "lo" or all(ipaddress.ip_address(a).is_loopback for a in ipv4)
        bridge = (SYS_NET / name / "bridge").is_dir()
        tunnel = _arp_type(name) in (65534, 776, 778, 768, 769)  # none (tun/wg), sit, gre, ipip, tunnel6
        kind = classify(name, loopback=loopback, bridge=bridge, tunnel=tunnel)
        up = bool(stats.get(name) and stats[name].isup)
        out.append(Interface(name=name, addresses=ipv4, up=up, kind=kind))
    return out


def _arp_type(name: str) -> int | None:
    try:
        return int((SYS_NET / name / "type").read_text().strip())
    except (OSError, ValueError):
        return None


def default_route_names(route_table: str | None = None) -> frozenset[str]:
    """Interfaces that carry an IPv4 default route (/proc/net/route: destination and mask 0)."""
    if route_table is None:
        try:
            route_table = PROC_ROUTE.read_text()
        except OSError:
            return frozenset()
    names = set()
    for line in route_table.splitlines()[1:]:
        fields = line.split()
        if len(fields) >= 8 and fields[1] == "00000000" and fields[7] == "00000000":
            names.add(fields[0])
    return frozenset(names)


def lan_interfaces(interfaces: Sequence[Interface], default_routes: Iterable[str]) -> list[Interface]:
    """The box's LAN: up, not loopback, not virtual; those with a default route when any has one."""
    candidates = [i for i in interfaces if i.up and i.kind == "ethernet"]
    routed = set(default_routes)
    with_route = [i for i in candidates if i.name in routed]
    return with_route or candidates


def lan_addresses(interfaces: Sequence[Interface] | None = None,
                  default_routes: Iterable[str] | None = None) -> list[str]:
    """IPv4 addresses of the LAN interfaces (mDNS's default)."""
    interfaces = read_interfaces() if interfaces is None else interfaces
    default_routes = default_route_names() if default_routes is None else default_routes
    return [a for i in lan_interfaces(interfaces, default_routes) for a in i.addresses]


def interface_of(address: str, interfaces: Sequence[Interface]) -> Interface | None:
    """The interface that holds `address`; loopback addresses belong to `lo` even when only 127.0.0.1 is listed."""
    for interface in interfaces:
        if address in interface.addresses:
            return interface
    try:
        if ipaddress.ip_address(address).is_loopback:
            return next((i for i in interfaces if i.kind == "loopback"), None)
    except ValueError:
        return None
    return None


def by_name(name: str, interfaces: Sequence[Interface]) -> Interface | None:
    return next((i for i in interfaces if i.name == name), None)
