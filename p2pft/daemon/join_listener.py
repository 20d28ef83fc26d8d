"""The join listener: where `p2pft init --token` asks this box to sign its certificate (only on a CA holder).

A TLS socket beside the gRPC server (the gRPC port requires a client certificate that a joining box does not
have yet; p2pft/security/enrol.py has the protocol). It runs only while this box holds the CA key, binds
`join_listen` (default: the gRPC listen host, port 47340; port 0 when gRPC's port is 0) and writes the bound
address to `<state-dir>/join.addr`, which `p2pft join-token` puts in its tokens. Everything it answers comes
from one request line of at most 64 KiB, read within 15 s; at most 8 joins are served at once, the rest are
closed at once (a join is a handful of round trips: a flood must not hold the daemon's memory or threads).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from pathlib import Path

from p2pft.daemon.state_dir import write_file_atomic
from p2pft.security.enrol import IO_TIMEOUT_S, MAX_MESSAGE_BYTES, answer, greeting, server_ssl_context

log = logging.getLogger("p2pft.join")
JOIN_ADDR_FILE = "join.addr"
MAX_CONCURRENT_JOINS = 8


class JoinListener:
    name = "join-listener"

    def __init__(self, state_dir: Path, listen_host: str, port: int, ca_cert_pem: bytes) -> None:
        self.state_dir = Path(state_dir)
        self.listen_host = listen_host
        self.requested_port = port
        self.ca_cert_pem = ca_cert_pem
        self.port = 0
        self._slots = asyncio.Semaphore(MAX_CONCURRENT_JOINS)
        self._server: asyncio.Server | None = None
        self._context: ssl.SSLContext | None = None

    async def start(self) -> int:
        context = self._context = server_ssl_context(self.state_dir)
        host = None if self.listen_host in ("0.0.0.0", "::", "") else self.listen_host
        self._server = await asyncio.start_server(self._serve, host, self.requested_port, ssl=context,
                                                  ssl_handshake_timeout=IO_TIMEOUT_S, limit=MAX_MESSAGE_BYTES,
                                                  reuse_address=True)
        self.port = self._server.sockets[0].getsockname()[1]
        write_file_atomic(self.state_dir / JOIN_ADDR_FILE, f"{_join(self.listen_host or '0.0.0.0', self.port)}\n")
        log.info("join listener on %s:%d (this box holds the cluster CA key)", self.listen_host, self.port)
        return self.port

    def reload_certificate(self) -> None:
        """This box's certificate was renewed: new joins see the new one (the SSL context is shared by every new
        connection; those in progress keep theirs)."""
        if self._context is not None:
            tls = self.state_dir / "tls"
            self._context.load_cert_chain(tls / "node.crt", tls / "node.key")

    async def run(self) -> None:
        if self._server is None:
            return
        try:
            await asyncio.Event().wait()   # serves until the node cancels it
        finally:
            self.close()

    def close(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
        path = self.state_dir / JOIN_ADDR_FILE
        with contextlib.suppress(OSError):
            if path.read_text().strip().endswith(f":{self.port}"):
                path.unlink()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = _peer_of(writer)
        if self._slots.locked():
            log.warning("join from %s refused: %d joins already in progress", peer, MAX_CONCURRENT_JOINS)
            writer.close()
            return
        async with self._slots:
            try:
                writer.write(greeting(self.ca_cert_pem))
                await writer.drain()
                line = await asyncio.wait_for(reader.readline(), IO_TIMEOUT_S)
                if line.endswith(b"\n"):
                    reply = await asyncio.to_thread(answer, self.state_dir, self.ca_cert_pem, line, peer)
                    writer.write(reply)
                    await writer.drain()
            except (TimeoutError, ValueError, ConnectionError, OSError) as exc:
                # ValueError: a line over the limit (LimitOverrunError); the others: the joining box went away.
                log.info("join from %s ended early: %s", peer, type(exc).__name__)
            finally:
                writer.close()
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(writer.wait_closed(), 2.0)


def _peer_of(writer: asyncio.StreamWriter) -> str:
    info = writer.get_extra_info("peername")
    return f"{info[0]}:{info[1]}" if isinstance(info, tuple) and len(info) >= 2 else "?"


def _join(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def read_join_addr(state_dir: Path) -> str | None:
    try:
        return (Path(state_dir) / JOIN_ADDR_FILE).read_text().strip() or None
    except OSError:
        return None
