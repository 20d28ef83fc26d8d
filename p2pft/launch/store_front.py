"""The accepting front of a job's rendezvous store: listens on the store port, lets through only admitted peers
(p2pft.launch.admission) and forwards their bytes both ways to the store, which listens on loopback only.

A refused connection is aborted before anything is read from it or any connection to the store is made, so it
never reaches the store. Forwarding is two asyncio protocols writing into each other's transport (no task per
chunk, TCP_NODELAY on both sides as asyncio sets it, the sender paused while the other side's buffer is full):
a TCPStore request costs two loopback hops more. Torch-free.
"""

from __future__ import annotations

import asyncio
import errno
import socket
from collections.abc import Callable

from p2pft.launch.admission import AdmittedFile, RefusalLog, admits, normalize_ip
from p2pft.network.addresses import WILDCARD_HOSTS

Say = Callable[[str], None]


def bind_listener(host: str, ports: range) -> socket.socket:
    """A listening socket on the first free port of `ports` (0 = any). A wildcard host listens on IPv6 and IPv4
    at once where the box has IPv6, as torch's own store server did."""
    last: OSError | None = None
    for port in ports:
        try:
            return _bind_one(host, port)
        except OSError as exc:
            last = exc
    raise OSError(f"no free port in {ports.start}-{ports.stop - 1} on {host or '*'} ({last})")


def _bind_one(host: str, port: int) -> socket.socket:
    if host in WILDCARD_HOSTS:
        try:
            return _listen(socket.AF_INET6, "::", port, dual_stack=True)
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise
        return _listen(socket.AF_INET, "0.0.0.0", port)
    family, _, _, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    return _listen(family, address[0], port)


def _listen(family: int, host: str, port: int, *, dual_stack: bool = False) -> socket.socket:
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if dual_stack:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        sock.bind((host, port))
        sock.listen(512)
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    return sock


class _Half(asyncio.Protocol):
    """One side of a forwarded connection; `other` is the opposite side once both are connected."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.other: _Half | None = None
        self.closed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        if self.other is not None and self.other.transport is not None:
            self.other.transport.write(data)

    def eof_received(self) -> bool:
        self._close_other()
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._close_other()

    def _close_other(self) -> None:
        if self.other is not None and self.other.transport is not None:
            self.other.transport.close()   # after what is buffered for it has been written

    # Flow control: when the other side cannot take more, stop reading this one.
    def pause_writing(self) -> None:
        if self.other is not None and self.other.transport is not None:
            self.other.transport.pause_reading()

    def resume_writing(self) -> None:
        if self.other is not None and self.other.transport is not None and not self.other.closed:
            self.other.transport.resume_reading()


class _Incoming(_Half):
    def __init__(self, front: StoreFront) -> None:
        super().__init__()
        self.front = front

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        assert self.transport is not None
        peer = transport.get_extra_info("peername") or ("", 0)
        local = transport.get_extra_info("sockname") or ("", 0)
        if not self.front.admit(str(peer[0]), str(local[0])):
            self.transport.abort()
            return
        self.transport.pause_reading()   # until the store connection is up
        self.front.connect_upstream(self)


class StoreFront:
    def __init__(self, upstream: tuple[str, int], admitted: AdmittedFile, say: Say, *,
                 refusals: RefusalLog | None = None) -> None:
        self.upstream = upstream
        self.admitted = admitted
        self.say = say
        self.refusals = refusals or RefusalLog()
        self.server: asyncio.Server | None = None
        self.accepted = 0
        self.refused = 0
        self._pending: set[asyncio.Task[None]] = set()
        self._last_error = ""

    async def start(self, listener: socket.socket) -> None:
        self.server = await asyncio.get_running_loop().create_server(lambda: _Incoming(self), sock=listener,
                                                                     backlog=512)

    def admit(self, peer: str, local: str) -> bool:
        admitted = self.admitted.admitted()
        if self.admitted.error and self.admitted.error != self._last_error:
            self.say(f"p2pft store: cannot read the admitted addresses, admitting this box only: "
                     f"{self.admitted.error}")
        self._last_error = self.admitted.error
        if admits(peer, local, admitted.hosts):
            self.accepted += 1
            return True
        self.refused += 1
        ip = normalize_ip(peer) or peer
        count = self.refusals.refused(ip)
        if count is not None:
            times = "" if count == 1 else f" ({count} connections since the last line)"
            why = f"not a member of round {admitted.round}" if admitted.round >= 0 else \
                "no round admitted yet (only this box)"
            self.say(f"p2pft store: refused a connection from {ip}: {why}{times}")
        return False

    def connect_upstream(self, incoming: _Incoming) -> None:
        task = asyncio.get_running_loop().create_task(self._connect(incoming))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def _connect(self, incoming: _Incoming) -> None:
        host, port = self.upstream
        outgoing = _Half()
        try:
            await asyncio.get_running_loop().create_connection(lambda: outgoing, host, port)
        except OSError as exc:
            self.say(f"p2pft store: the store at {host}:{port} did not take a connection ({exc})")
            if incoming.transport is not None:
                incoming.transport.abort()
            return
        assert outgoing.transport is not None and incoming.transport is not None
        if incoming.closed:
            outgoing.transport.close()
            return
        incoming.other, outgoing.other = outgoing, incoming
        incoming.transport.resume_reading()

    async def close(self) -> None:
        if self.server is not None:
            self.server.close()
        for task in list(self._pending):
            task.cancel()
