"""Client side of the Daemon service, for peers (daemon -> daemon) and the CLI; always deadlines, mTLS over TCP,
and for the CLI on its own box the daemon's Unix socket (`unix:PATH`, p2pft/daemon/local_socket.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc

from p2pft.rpc.gen import daemon_pb2, daemon_pb2_grpc
from p2pft.security.credentials import Credentials, channel_options, secure_channel

DAEMON_ENV = "P2PFT_DAEMON"
DEFAULT_TIMEOUT_S = 5.0


def is_local_target(target: str) -> bool:
    return target.startswith("unix:")


def local_channel(target: str) -> grpc.aio.Channel:
    """A channel to this box's daemon on its Unix socket: no certificate, the socket file's mode is the check."""
    return grpc.aio.secure_channel(target, grpc.local_channel_credentials(grpc.LocalConnectionType.UDS),
                                   options=channel_options())


def describe_rpc_error(exc: BaseException, target: str) -> str:
    """One line saying what went wrong talking to `target`, and what to do."""
    if not isinstance(exc, grpc.RpcError):
        return f"{target}: {type(exc).__name__}: {exc}"
    code = exc.code() if hasattr(exc, "code") else None
    details = (exc.details() if hasattr(exc, "details") else "") or ""
    lowered = details.lower()
    if "handshake" in lowered or "ssl" in lowered or "certificate" in lowered or "tsi_" in lowered:
        return (f"TLS handshake with {target} failed: it is a daemon of another cluster, not a p2pft daemon, "
                f"or a member that is not the node expected at that address "
                f"(join this cluster with `p2pft init --token-file F`, F from `p2pft join-token` on the CA box)")
    if code == grpc.StatusCode.UNAVAILABLE:
        return f"no daemon answers at {target}: is p2pftd running there? ({details.splitlines()[0] if details else ''})"
    if code == grpc.StatusCode.DEADLINE_EXCEEDED:
        return f"daemon at {target} did not answer in time (deadline exceeded)"
    return f"daemon at {target} answered {code.name if code else 'an error'}: {details}"


class DaemonClient:
    """One channel to one daemon. Use `async with`, or call `close()`."""

    def __init__(self, target: str, credentials: Credentials | None, *, timeout_s: float = DEFAULT_TIMEOUT_S,
                 node_id: str | None = None) -> None:
        """`credentials` may be None only for a `unix:` target (this box's daemon's local socket)."""
        self.target = target
        self.node_id = node_id      # the node meant at `target`: its certificate must name it (None: any member)
        self.timeout_s = timeout_s
        if is_local_target(target):
            self.channel = local_channel(target)
        else:
            if credentials is None:
                raise ValueError(f"{target}: a TCP target needs this box's credentials")
            self.channel = secure_channel(target, credentials, node_id=node_id)
        self.stub = daemon_pb2_grpc.DaemonStub(self.channel)

    async def __aenter__(self) -> DaemonClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        await self.channel.close(grace=None)

    async def hello(self, request: daemon_pb2.HelloRequest, timeout_s: float | None = None) -> daemon_pb2.HelloReply:
        return await self.stub.Hello(request, timeout=timeout_s or self.timeout_s)

    async def heartbeat(
        self, request: daemon_pb2.HeartbeatRequest, timeout_s: float | None = None
    ) -> daemon_pb2.HeartbeatReply:
        return await self.stub.Heartbeat(request, timeout=timeout_s or self.timeout_s)

    async def members(self, timeout_s: float | None = None) -> daemon_pb2.MembersReply:
        return await self.stub.Members(daemon_pb2.MembersRequest(), timeout=timeout_s or self.timeout_s)

    async def status(self, timeout_s: float | None = None) -> daemon_pb2.StatusReply:
        return await self.stub.Status(daemon_pb2.StatusRequest(), timeout=timeout_s or self.timeout_s)

    async def debug(self, timeout_s: float | None = None) -> daemon_pb2.DebugReply:
        return await self.stub.Debug(daemon_pb2.DebugRequest(), timeout=timeout_s or self.timeout_s)

    async def probe(self, request: daemon_pb2.ProbeRequest, timeout_s: float | None = None) -> daemon_pb2.ProbeReply:
        return await self.stub.Probe(request, timeout=timeout_s or self.timeout_s)

    async def renew(self, request: daemon_pb2.RenewRequest, timeout_s: float | None = None) -> daemon_pb2.RenewReply:
        return await self.stub.Renew(request, timeout=timeout_s or self.timeout_s)

    async def watch(self, interval_s: float = 0.0) -> AsyncIterator[daemon_pb2.StatusReply]:
        # A stream has no overall deadline; each item must arrive within the per-call timeout plus the interval.
        call = self.stub.Watch(daemon_pb2.WatchRequest(interval_s=interval_s))
        try:
            async for reply in call:
                yield reply
        finally:
            call.cancel()
