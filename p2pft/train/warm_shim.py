"""`python -m p2pft.train.warm_shim ARGS...`: what torchrun runs instead of `-m p2pft.train` on a warm box.

Cheap imports only (no torch). It asks the box's zygote (`p2pft.train.zygote`, socket in $P2PFT_ZYGOTE_SOCKET)
to fork a worker with this process's argv, environment, cwd and stdio, forwards the signals torchrun sends,
and exits with the worker's exit code. Whenever the zygote is absent, refuses or fails before the fork, it
becomes the cold worker itself (exec of `python -m p2pft.train ARGS...`): correctness never depends on it.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import struct
import sys
from typing import Any

SOCKET_ENV = "P2PFT_ZYGOTE_SOCKET"
TARGET_ENV = "P2PFT_WARM_TARGET"  # the worker module; default p2pft.train
DEFAULT_TARGET = "p2pft.train"
TARGET_ARG = "--warm-target="  # first argument, overrides $P2PFT_WARM_TARGET for this process only
FORWARDED_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1, signal.SIGUSR2)
HEADER = struct.Struct(">I")
CONNECT_TIMEOUT_S = 5.0
PR_SET_PDEATHSIG = 1


class ZygoteUnavailable(Exception):
    pass


def request_fork(sock_path: str, module: str, argv: list[str]) -> tuple[socket.socket, int]:
    """Connect, send the request with our stdio fds, return (connection, child pid)."""
    conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        conn.settimeout(CONNECT_TIMEOUT_S)
        conn.connect(sock_path)
        body = json.dumps({"argv": argv, "env": dict(os.environ), "cwd": os.getcwd(), "module": module}).encode()
        payload = HEADER.pack(len(body)) + body
        sent = socket.send_fds(conn, [payload], [0, 1, 2])
        conn.sendall(payload[sent:])
        reply = _read_line(conn)
    except (OSError, ValueError) as exc:
        conn.close()
        raise ZygoteUnavailable(str(exc)) from exc
    if not isinstance(reply, dict) or not isinstance(reply.get("pid"), int):
        conn.close()
        raise ZygoteUnavailable(f"zygote refused: {reply}")
    conn.settimeout(None)
    return conn, reply["pid"]


_buffer = bytearray()


def _read_line(conn: socket.socket) -> Any:
    """The next JSON line from the zygote or the child; None at EOF."""
    while b"\n" not in _buffer:
        try:
            chunk = conn.recv(4096)
        except InterruptedError:
            continue
        if not chunk:
            return None
        _buffer.extend(chunk)
    line, _, rest = bytes(_buffer).partition(b"\n")
    _buffer[:] = rest
    return json.loads(line)


def relay(conn: socket.socket, child_pid: int) -> int:
    """Forward signals to the child until it reports its exit; the exit code torchrun should see."""

    def forward(signum: int, _frame: Any) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(child_pid, signum)

    for signum in FORWARDED_SIGNALS:
        signal.signal(signum, forward)
    while True:
        message = _read_line(conn)
        if message is None:  # neither the zygote nor the child is left to tell: treat as a crash
            return 1
        if isinstance(message, dict) and isinstance(message.get("exit"), int):
            return message["exit"]


def exit_like(code: int) -> None:
    """Exit with `code`; a negative code means the child died of that signal, so die of it too."""
    if code < 0:
        for signum in FORWARDED_SIGNALS:
            signal.signal(signum, signal.SIG_DFL)
        sys.stdout.flush()
        os.kill(os.getpid(), -code)
        code = 128 - code
    os._exit(code & 0xFF)


def exec_cold(module: str, argv: list[str], why: str) -> None:
    print(f"[p2pft] warm start unavailable ({why}): starting a cold worker", file=sys.stderr, flush=True)
    os.execv(sys.executable, [sys.executable, "-m", module, *argv])


def die_with_parent() -> None:
    """torchrun starts workers in sessions of their own: if the agent dies hard, its worker (this shim, and so
    the forked worker that watches it) must not live on. Survives the cold fallback's exec too."""
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):
        pass


def main() -> None:
    die_with_parent()
    argv = sys.argv[1:]
    module = os.environ.get(TARGET_ENV) or DEFAULT_TARGET
    if argv and argv[0].startswith(TARGET_ARG):  # e.g. the agent itself: --warm-target=torch.distributed.run
        module, argv = argv[0][len(TARGET_ARG):], argv[1:]
    sock_path = os.environ.get(SOCKET_ENV)
    if not sock_path:
        exec_cold(module, argv, f"{SOCKET_ENV} is not set")
        return
    try:
        conn, child_pid = request_fork(sock_path, module, argv)
    except ZygoteUnavailable as exc:
        exec_cold(module, argv, str(exc))
        return
    exit_like(relay(conn, child_pid))


if __name__ == "__main__":
    main()
