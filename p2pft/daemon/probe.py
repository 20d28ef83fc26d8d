"""The daemon's side of `p2pft doctor` (the `Probe` RPC): this box's facts, two short-lived TCP listeners the
caller dials, and dials back to the caller's listeners.

A caller learns whether it reaches this box's collective address (the one rounds would give the workers
towards the caller) and a port of its store range, and whether this box reaches the caller's ports. Nothing a
request asks can hurt the daemon: at most MAX_DIAL_TARGETS dials of DIAL_TIMEOUT_S each, run together;
listeners live at most MAX_LISTEN_S and at most MAX_OPEN_LISTENERS at once; a malformed request is
`ProbeRefused` (the servicer answers INVALID_ARGUMENT). The socket helpers are shared with the CLI, which opens
its own listener on this box's collective address and dials the peers' listeners.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import random
import shutil
import socket
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from p2pft.membership.state import Member
from p2pft.network import addresses
from p2pft.network.interfaces import read_interfaces
from p2pft.network.routes import NoReachableAddress, choose_local_address
from p2pft.rpc import convert
from p2pft.rpc.gen import daemon_pb2

log = logging.getLogger("p2pft.probe")
MAX_DIAL_TARGETS = 8
DIAL_TIMEOUT_S = 2.0
MAX_LISTEN_S = 10.0
MAX_OPEN_LISTENERS = 16          # two per probe: 8 doctors at once, and no more sockets than that
MAX_TARGET_CHARS = 270           # a 253-character host name, brackets, a port
MAX_BIND_ATTEMPTS = 256          # a store range may be wide; a free port is usually among the first few
WILDCARD = "0.0.0.0"


class ProbeRefused(ValueError):
    """A request the daemon will not run: one line naming the field."""


class ProbeBusy(RuntimeError):
    """Too many probe listeners are open right now."""


@dataclass(frozen=True)
class DialOutcome:
    target: str
    error: str = ""   # "" when a TCP connection was established

    @property
    def ok(self) -> bool:
        return not self.error


# ---- pure checks of a request ---------------------------------------------------------------------------------


def dial_targets(raw: Sequence[str], caller_host: str) -> list[str]:
    """The request's targets made dialable (":PORT" = the caller's host); ProbeRefused names the bad one."""
    if len(raw) > MAX_DIAL_TARGETS:
        raise ProbeRefused(f"dial: at most {MAX_DIAL_TARGETS} targets, got {len(raw)}")
    out = []
    for item in raw:
        shown = item[:60]
        if len(item) > MAX_TARGET_CHARS or not item.isprintable() or any(c.isspace() for c in item):
            raise ProbeRefused(f"dial: {shown!r} is not HOST:PORT (or :PORT for the caller's host)")
        resolved = addresses.resolve(item, caller_host)
        if not resolved:
            raise ProbeRefused(f"dial: {shown!r} is not HOST:PORT with a port in 1-65535 (or :PORT)")
        out.append(resolved)
    return out


def listen_seconds(value: float) -> float:
    """How long to keep the listeners open: the request's value, at most MAX_LISTEN_S; 0 = none."""
    if not math.isfinite(value) or value < 0:
        raise ProbeRefused(f"listen_s: expected seconds between 0 and {MAX_LISTEN_S:g}, got {value!r}")
    return min(value, MAX_LISTEN_S)


def port_candidates(low: int, high: int, start: int) -> list[int]:
    """Ports of the store range to try, from `start` round the range (so concurrent probes spread out);
    [0] (any free port) when the range is 0-0."""
    if (low, high) == (0, 0):
        return [0]
    size = high - low + 1
    offset = (start - low) % size
    return [low + (offset + i) % size for i in range(min(size, MAX_BIND_ATTEMPTS))]


# ---- sockets (shared with the CLI) ----------------------------------------------------------------------------


def bind_listener(host: str, ports: Iterable[int]) -> socket.socket:
    """A listening TCP socket on the first free port of `ports`; OSError (last one's) when none is free."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    last: OSError | None = None
    for port in ports:
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((host, port))
            sock.listen(16)
            sock.setblocking(False)
            return sock
        except OSError as exc:
            sock.close()
            last = exc
    raise last or OSError(f"no port to try on {host}")


async def _wait_for_close(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    # The dialler closes first, so TIME_WAIT stays on its side and never blocks a store port here.
    try:
        async with asyncio.timeout(DIAL_TIMEOUT_S):
            while await reader.read(1024):
                pass
    except (TimeoutError, OSError):
        pass
    finally:
        writer.close()


async def serve_briefly(sock: socket.socket, seconds: float,
                        on_closed: Callable[[], None] | None = None) -> int:
    """Accept (and drop) connections on `sock` for `seconds`; returns its port. Never holds it longer."""
    server = await asyncio.start_server(_wait_for_close, sock=sock)
    port = int(sock.getsockname()[1])

    def close() -> None:
        server.close()
        if on_closed is not None:
            on_closed()

    asyncio.get_running_loop().call_later(seconds, close)
    return port


async def dial(target: str, timeout_s: float = DIAL_TIMEOUT_S) -> DialOutcome:
    """Open (and close) a TCP connection to HOST:PORT; the error is one line saying what happened."""
    parts = addresses.split(target)
    if parts is None:
        return DialOutcome(target, "not HOST:PORT")
    host, port = parts
    try:
        async with asyncio.timeout(timeout_s):
            _, writer = await asyncio.open_connection(host, port)
    except TimeoutError:
        return DialOutcome(target, f"no answer within {timeout_s:g} s (a firewall drops the packets, or no route)")
    except ConnectionRefusedError:
        return DialOutcome(target, "connection refused (nothing listens there, or a firewall rejects it)")
    except OSError as exc:
        return DialOutcome(target, (exc.strerror or str(exc) or type(exc).__name__).splitlines()[0])
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    return DialOutcome(target)


async def dial_all(targets: Sequence[str], timeout_s: float = DIAL_TIMEOUT_S) -> list[DialOutcome]:
    return list(await asyncio.gather(*(dial(t, timeout_s) for t in targets)))


def free_bytes(path: Path) -> int:
    """Free bytes for an unprivileged writer on the file system holding `path` (0 when unreadable)."""
    try:
        return int(shutil.disk_usage(path).free)
    except OSError:
        return 0


# ---- the daemon's side ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ProbeFacts:
    """What the prober reads from the node at each call (settings may change on SIGHUP)."""

    node_id: str
    name: str
    state_dir: Path
    mdns: bool
    static_peers: tuple[str, ...]
    collective_interface: str
    store_ports: tuple[int, int]


class Prober:
    """Answers Probe requests; one per daemon (it counts the listeners it holds open)."""

    def __init__(self, facts: Callable[[], ProbeFacts], member: Callable[[], Member],
                 environ: Callable[[], dict[str, str]] | None = None) -> None:
        self.facts = facts
        self.member = member      # the node's own Member: versions, devices (refreshed every few seconds)
        self.environ = environ or (lambda: dict(os.environ))
        self.open_listeners = 0

    async def probe(self, request: daemon_pb2.ProbeRequest, caller_host: str) -> daemon_pb2.ProbeReply:
        """Raises ProbeRefused (a malformed request) or ProbeBusy (too many listeners open)."""
        received = time.time_ns()
        targets = dial_targets(list(request.dial), caller_host)
        seconds = listen_seconds(request.listen_s)
        if seconds and self.open_listeners + 2 > MAX_OPEN_LISTENERS:
            raise ProbeBusy(f"{self.open_listeners} probe listeners are open; try again in {MAX_LISTEN_S:g} s")
        facts = self.facts()
        reply = await asyncio.to_thread(self._facts_reply, facts, caller_host)
        if seconds:
            await self._listen(reply, facts, seconds)
        for outcome in await dial_all(targets):
            reply.dialled.add(target=outcome.target, ok=outcome.ok, error=outcome.error)
        # Arrival and departure times: the caller's NTP-style estimate stays exact however long the dials took.
        reply.received_unix_ns = received
        reply.replied_unix_ns = time.time_ns()
        log.debug("probe from %s: %d dials, listeners %s", caller_host, len(targets), seconds or "none")
        return reply

    def _facts_reply(self, facts: ProbeFacts, caller_host: str) -> daemon_pb2.ProbeReply:
        """Blocking (psutil, the routing table, statvfs): run in a thread."""
        member = self.member()
        env = self.environ().get("GLOO_SOCKET_IFNAME", "")
        reply = daemon_pb2.ProbeReply(
            node_id=facts.node_id, name=facts.name, state_dir=str(facts.state_dir),
            state_dir_free_bytes=free_bytes(facts.state_dir), mdns=facts.mdns, static_peers=list(facts.static_peers),
            caller_host=caller_host, store_port_low=facts.store_ports[0], store_port_high=facts.store_ports[1],
            devices=[convert.device_to_pb(d) for d in member.devices],
        )
        if member.versions is not None:
            reply.versions.CopyFrom(convert.versions_to_pb(member.versions))
        reply.collective.setting = facts.collective_interface
        reply.collective.env = env
        try:
            choice = choose_local_address([caller_host] if caller_host else [], read_interfaces(),
                                          interface_setting=facts.collective_interface, interface_env=env)
        except NoReachableAddress as exc:
            reply.collective.error = str(exc)
        else:
            reply.collective.address, reply.collective.interface = choice.address, choice.interface
            reply.collective.how = choice.how
        return reply

    async def _listen(self, reply: daemon_pb2.ProbeReply, facts: ProbeFacts, seconds: float) -> None:
        """One listener on the collective address (any port), one on a free store port (every interface)."""
        errors = []
        address = reply.collective.address
        if address:
            try:
                reply.collective_port = await self._serve(bind_listener(address, [0]), seconds)
            except OSError as exc:
                errors.append(f"cannot listen on {address}: {exc.strerror or exc}")
        low, high = facts.store_ports
        try:
            sock = bind_listener(WILDCARD, port_candidates(low, high, random.randint(low, high)))
            reply.store_port = await self._serve(sock, seconds)
        except OSError as exc:
            errors.append(f"no free port in the store range {low}-{high}: {exc.strerror or exc}")
        reply.listener_error = "; ".join(errors)

    async def _serve(self, sock: socket.socket, seconds: float) -> int:
        self.open_listeners += 1

        def closed() -> None:
            self.open_listeners -= 1

        try:
            return await serve_briefly(sock, seconds, closed)
        except OSError:
            self.open_listeners -= 1
            sock.close()
            raise
