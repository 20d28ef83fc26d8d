"""Pure helpers for the addresses daemons advertise, observe and gossip."""

from __future__ import annotations

import ipaddress

WILDCARD_HOSTS = ("0.0.0.0", "::", "")


def split(address: str) -> tuple[str, int] | None:
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit():
        return None
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    return host, int(port)


def join(host: str, port: int) -> str:
    if ":" in host:
        return f"[{host}]:{port}"
    return f"{host}:{port}"


def advertised(listen_host: str, port: int) -> str:
    """What we tell peers: our listen address, or ':port' when we listen on every interface (the receiver
    fills in the host it saw the connection come from)."""
    return f":{port}" if listen_host in WILDCARD_HOSTS else join(listen_host, port)


def local_target(listen_host: str, port: int) -> str:
    """What the CLI on this box dials (daemon.addr)."""
    if listen_host in ("0.0.0.0", ""):
        return f"127.0.0.1:{port}"
    if listen_host == "::":
        return f"[::1]:{port}"
    return join(listen_host, port)


def observed_host(grpc_peer: str) -> str:
    """The host part of grpc's context.peer(): 'ipv4:10.0.0.2:5123' or 'ipv6:[::1]:5123'."""
    kind, _, rest = grpc_peer.partition(":")
    if kind not in ("ipv4", "ipv6"):
        return ""
    parts = split(rest)
    return parts[0] if parts else ""


def resolve(advertised_address: str, fallback_host: str) -> str:
    """A dialable host:port from an advertised one; '' when it cannot be made dialable."""
    parts = split(advertised_address)
    if parts is None:
        return ""
    host, port = parts
    if host in WILDCARD_HOSTS:
        host = fallback_host
    if not host or not 0 < port <= 65535:
        return ""
    try:
        ipaddress.ip_address(host)
    except ValueError:
        if len(host) > 253:
            return ""
    return join(host, port)
