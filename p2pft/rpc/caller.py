"""Who is calling: the node id a caller's certificate names, or this box's local operator.

A call over TCP carries a client certificate signed by the cluster CA (mutual TLS): its CN is the caller's node
id. A call on the daemon's Unix socket (p2pft/daemon/local_socket.py) carries none: the kernel let it in because
the caller may open the socket file, i.e. it is the daemon's user, root, or (on a service) a member of the state
dir's group. Such a caller is LOCAL_OPERATOR: it may do what this box's own CLI does (submit, cancel, drain,
fetch, status), but it is no node, so every rule that needs a node identity (reports, orders, stops, shared
records, hellos and heartbeats) refuses it.
"""

from __future__ import annotations

import grpc

# Not a node id: node ids are [A-Za-z0-9._-] (p2pft/jobs/validation.py), so no certificate can name it.
LOCAL_OPERATOR = "@local-operator"
LOCAL_TRANSPORT = b"local"   # grpc's transport_security_type for local (UDS) credentials


def is_local_socket_call(auth: dict[str, list[bytes]], peer: str) -> bool:
    """Whether a call came in on the Unix socket: grpc's local credentials and a unix peer, both.

    The daemon binds local credentials only to its Unix socket, so a TCP caller can never carry them."""
    return LOCAL_TRANSPORT in (auth.get("transport_security_type") or []) and peer.startswith("unix:")


def caller_identity(context: grpc.aio.ServicerContext) -> str:
    """LOCAL_OPERATOR on the Unix socket; else the certificate's CN (a node id); '' without either."""
    try:
        auth = context.auth_context()
    except Exception:   # a test double without an auth context
        return ""
    local = LOCAL_TRANSPORT in (auth.get("transport_security_type") or [])
    if local and is_local_socket_call(auth, context.peer() or ""):
        return LOCAL_OPERATOR
    values = auth.get("x509_common_name") or []
    return values[0].decode(errors="replace") if values else ""
