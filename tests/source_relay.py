"""A test helper: make a real client's connection arrive at a server from another loopback address.

`SourceRelay("127.0.0.3", ("127.0.0.1", port))` listens on 127.0.0.1 (a free port); every connection made to it
is carried on to the target from a socket bound to 127.0.0.3, byte for byte. A torch TCPStore client (which
cannot choose its source address) pointed at the relay reaches the target as if it were a box at 127.0.0.3.
Threads, stdlib only; `close()` ends everything.
"""

from __future__ import annotations

import contextlib
import socket
import threading


class SourceRelay:
    def __init__(self, source_ip: str, target: tuple[str, int]) -> None:
        self.source_ip = source_ip
        self.target = target
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._sockets: list[socket.socket] = []
        self._closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            upstream = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            try:
                upstream.bind((self.source_ip, 0))
                upstream.connect(self.target)
            except OSError:
                client.close()
                upstream.close()
                continue
            for sock in (client, upstream):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self._sockets += [client, upstream]
            threading.Thread(target=self._pipe, args=(client, upstream), daemon=True).start()
            threading.Thread(target=self._pipe, args=(upstream, client), daemon=True).start()

    @staticmethod
    def _pipe(source: socket.socket, sink: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := source.recv(65536):
                sink.sendall(data)
        for sock in (source, sink):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        self._closed = True
        for sock in (self._listener, *self._sockets):
            with contextlib.suppress(OSError):
                sock.close()
