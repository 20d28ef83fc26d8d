"""`python -m p2pft.train.zygote --socket PATH`: a per-box process that has already imported torch, transformers,
peft and the training worker, and forks a fresh worker for each request of `p2pft.train.warm_shim`.

Why: a cold worker spends seconds importing before it can rendezvous (docs/warm-start.md); every round of an
elastic job pays it on every rank. A fork of this process skips the imports.

Fork safety: the zygote never runs a torch op (no intra-op thread pool), never initialises CUDA (checked before
serving) and never touches torch.distributed; it is single-threaded apart from what `import torch` starts.
Everything a worker decides (threads, seeds, device, process group) happens in the forked child, as in a cold one.

Protocol (Unix stream socket, mode 0600, same uid only): the shim sends a 4-byte big-endian length, then a JSON
request {"argv": [...], "env": {...}, "cwd": "...", "module": "p2pft.train"} with its stdin/stdout/stderr attached
(SCM_RIGHTS, with the first bytes). The zygote answers JSON lines: {"pid": N} once forked, {"exit": code} when
the child ends (negative = killed by that signal). The child itself also sends {"exit": code} before it exits,
so the shim learns a clean exit even if the zygote died meanwhile. The child watches the connection: when the
shim is gone (EOF), the child kills itself, so a worker never outlives its torchrun agent.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import select
import signal
import socket
import struct
import sys
import threading
import time
from pathlib import Path
from typing import Any

from p2pft.launch.lifetime import die_with_parent

PREWARM_MODULES = (
    "torch", "torch.distributed", "torch.distributed.checkpoint", "torch.nn.parallel", "transformers", "peft",
    "p2pft.train.__main__", "p2pft.train.worker",
)
MAX_REQUEST_BYTES = 4 << 20
HEADER = struct.Struct(">I")
WORKER_MARK_ENV = "P2PFT_WARM_ZYGOTE_PID"  # set in each forked worker: tests and logs can tell warm from cold


class ZygoteRequestError(ValueError):
    pass


def prewarm() -> float:
    """Import what every worker imports; returns the seconds it took. Never runs a torch op."""
    started = time.monotonic()
    import importlib

    for name in PREWARM_MODULES:
        importlib.import_module(name)
    # Lazy attributes that a worker resolves on its first model load.
    from peft import LoraConfig, get_peft_model  # noqa: F401
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer  # noqa: F401

    from p2pft.train.__main__ import user_errors

    user_errors()
    return time.monotonic() - started


def cuda_untouched() -> bool:
    import torch

    return not torch.cuda.is_initialized()


def read_request(conn: socket.socket) -> tuple[dict[str, Any], list[int]]:
    """One length-prefixed JSON request and the fds that came with its first bytes."""
    data, fds, _flags, _addr = socket.recv_fds(conn, 65536, 3)
    buffer = bytearray(data)
    try:
        if len(buffer) < HEADER.size:
            raise ZygoteRequestError("request shorter than its header")
        (length,) = HEADER.unpack_from(buffer)
        if length > MAX_REQUEST_BYTES:
            raise ZygoteRequestError(f"request of {length} bytes is over {MAX_REQUEST_BYTES}")
        while len(buffer) < HEADER.size + length:
            chunk = conn.recv(65536)
            if not chunk:
                raise ZygoteRequestError("connection closed inside a request")
            buffer.extend(chunk)
        request = json.loads(bytes(buffer[HEADER.size:HEADER.size + length]))
        check_request(request, fds)
    except BaseException:
        for fd in fds:
            with contextlib.suppress(OSError):
                os.close(fd)
        raise
    return request, fds


def check_request(request: Any, fds: list[int]) -> None:
    if not isinstance(request, dict):
        raise ZygoteRequestError("request must be a JSON object")
    if not isinstance(request.get("argv"), list) or not all(isinstance(a, str) for a in request["argv"]):
        raise ZygoteRequestError("request field argv must be a list of strings")
    env = request.get("env")
    if not isinstance(env, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in env.items()):
        raise ZygoteRequestError("request field env must map strings to strings")
    if not isinstance(request.get("cwd"), str) or not isinstance(request.get("module"), str):
        raise ZygoteRequestError("request fields cwd and module must be strings")
    if len(fds) != 3:
        raise ZygoteRequestError(f"request must carry stdin, stdout and stderr, got {len(fds)} fds")


def send_line(conn: socket.socket, message: dict[str, Any]) -> None:
    with contextlib.suppress(OSError):
        conn.sendall(json.dumps(message).encode() + b"\n")


def exit_code_of(status: int) -> int:
    return -os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)


# ---- the forked child -------------------------------------------------------------------------------------


def become_worker(conn: socket.socket, request: dict[str, Any], fds: list[int]) -> None:
    """In the forked child: take the shim's identity (env, cwd, stdio, argv), run the module, never return."""
    code = 1
    try:
        os.setsid()  # out of the zygote's process group: signals meant for the daemon's group never reach it
        for signum in (signal.SIGTERM, signal.SIGHUP, signal.SIGCHLD, signal.SIGQUIT):
            signal.signal(signum, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        for target, fd in enumerate(fds):
            os.dup2(fd, target)
            os.close(fd)
        os.environ.clear()
        os.environ.update(request["env"])
        os.environ[WORKER_MARK_ENV] = str(os.getppid())
        os.chdir(request["cwd"])
        _apply_sys_path(request["cwd"])
        _apply_thread_count()
        _watch_shim(conn)
        code = _run_module(request["module"], request["argv"])
    except BaseException:  # the child must never fall back into the zygote's loop
        import traceback

        traceback.print_exc()
    finally:
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):
                stream.flush()
        send_line(conn, {"exit": code})
        os._exit(code & 0xFF if code >= 0 else 1)


def _apply_sys_path(cwd: str) -> None:
    """What `python -m` would have put first on sys.path: the cwd, then $PYTHONPATH (modules already
    imported by the zygote stay the zygote's: the daemon starts it from the same interpreter and checkout)."""
    extra = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    rest = [p for p in sys.path[1:] if p not in extra]
    sys.path[:] = [cwd, *extra, *rest]


def _apply_thread_count() -> None:
    # torch read OMP_NUM_THREADS when the zygote imported it: apply the worker's own value explicitly.
    value = os.environ.get("OMP_NUM_THREADS", "")
    if value.isdigit() and int(value) > 0:
        import torch

        torch.set_num_threads(int(value))


def _watch_shim(conn: socket.socket) -> None:
    """The shim holds the other end: EOF means it died (its agent was killed), so this worker goes too."""

    def watch() -> None:
        with contextlib.suppress(OSError):
            while conn.recv(4096):
                pass
        os.kill(os.getpid(), signal.SIGKILL)

    threading.Thread(target=watch, name="p2pft-shim-watch", daemon=True).start()


def _run_module(module: str, argv: list[str]) -> int:
    import atexit
    import runpy

    for stream in (sys.stdout, sys.stderr):  # PYTHONUNBUFFERED was read by the zygote, not by this worker
        with contextlib.suppress(Exception):
            stream.reconfigure(line_buffering=True)  # type: ignore[union-attr]
    sys.argv = [module, *argv]
    # The zygote imported `<package>.__main__` (or the module) already; runpy runs a fresh copy as __main__ and
    # would warn about the stale one.
    for name in (f"{module}.__main__", module):
        if name in sys.modules and not hasattr(sys.modules[name], "__path__"):
            del sys.modules[name]
    code: int = 0
    try:
        runpy.run_module(module, run_name="__main__", alter_sys=True)
    except SystemExit as exc:
        code = _system_exit_code(exc)
    except BaseException:  # report like an uncaught exception in a cold interpreter
        import traceback

        traceback.print_exc()
        code = 1
    for thread in threading.enumerate():  # what interpreter shutdown would wait for
        if thread is not threading.main_thread() and not thread.daemon:
            thread.join()
    atexit._run_exitfuncs()
    return code


def _system_exit_code(exc: SystemExit) -> int:
    if exc.code is None:
        return 0
    if isinstance(exc.code, int):
        return exc.code
    print(exc.code, file=sys.stderr)
    return 1


# ---- the zygote's loop -------------------------------------------------------------------------------------


class Zygote:
    def __init__(self, socket_path: Path) -> None:
        self.socket_path = socket_path
        self.children: dict[int, socket.socket] = {}
        self.stopping = False
        self.bound_inode: int | None = None

    def listen(self) -> socket.socket:
        """Bind under a temporary name, then rename: the path appears only once it accepts connections."""
        self.socket_path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        staging = self.socket_path.with_name(f".{self.socket_path.name}.{os.getpid()}")
        with contextlib.suppress(FileNotFoundError):
            staging.unlink()
        server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        old_umask = os.umask(0o177)
        try:
            server.bind(str(staging))
        finally:
            os.umask(old_umask)
        os.chmod(staging, 0o600)
        server.listen(16)
        os.replace(staging, self.socket_path)
        self.bound_inode = self.socket_path.stat().st_ino
        return server

    def serve(self, server: socket.socket, parent_pid: int | None = None) -> None:
        """Until SIGTERM/SIGINT (the handler sets `stopping`; the 0.2 s select timeout is what makes the loop
        read it) or until the daemon that started us is gone (a second net under the parent-death signal)."""
        while not self.stopping:
            readable, _, _ = select.select([server], [], [], 0.2)
            self.reap()
            if parent_pid is not None and os.getppid() != parent_pid:
                print("[p2pft zygote] the daemon that started it is gone: stopping", flush=True)
                return
            if readable and not self.stopping:
                conn, _ = server.accept()
                self.handle(conn, server)

    def handle(self, conn: socket.socket, server: socket.socket) -> None:
        if not _same_user(conn):
            conn.close()
            return
        try:
            conn.settimeout(10.0)
            request, fds = read_request(conn)
            conn.settimeout(None)
        except (OSError, ValueError) as exc:
            send_line(conn, {"error": str(exc)})
            conn.close()
            return
        for stream in (sys.stdout, sys.stderr):
            stream.flush()
        pid = os.fork()
        if pid == 0:
            server.close()
            for other in self.children.values():
                other.close()
            become_worker(conn, request, fds)
        for fd in fds:
            os.close(fd)
        self.children[pid] = conn
        send_line(conn, {"pid": pid})
        print(f"[p2pft zygote] forked pid {pid}: {request['module']}", flush=True)

    def reap(self) -> None:
        while self.children:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            conn = self.children.pop(pid, None)
            if conn is not None:
                send_line(conn, {"exit": exit_code_of(status)})
                conn.close()

    def close(self) -> None:
        """Remove our socket, never a successor's (a restarted daemon's zygote may have bound the path)."""
        with contextlib.suppress(FileNotFoundError):
            if self.socket_path.stat().st_ino == self.bound_inode:
                self.socket_path.unlink()


def _same_user(conn: socket.socket) -> bool:
    creds = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    _pid, uid, _gid = struct.unpack("3i", creds)
    return uid == os.getuid()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m p2pft.train.zygote", description=__doc__.splitlines()[0])
    parser.add_argument("--socket", required=True, type=Path, help="Unix socket path (created with mode 0600)")
    parser.add_argument("--parent-pid", type=int, default=None, help="exit at once if this pid is gone")
    args = parser.parse_args(argv)
    # The daemon that started us owns us: when it dies, so does the zygote (running workers stay: each one
    # dies with its own shim). SIGTERM, so that the socket is removed on the way out.
    if not die_with_parent(signal.SIGTERM, args.parent_pid):
        return 0  # the parent died before the death signal was armed
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    seconds = prewarm()
    if not cuda_untouched():
        print("[p2pft zygote] CUDA was initialised while importing: refusing to fork workers", file=sys.stderr)
        return 3
    zygote = Zygote(args.socket)
    server = zygote.listen()

    def stop(_signum: int, _frame: Any) -> None:
        zygote.stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    print(f"[p2pft zygote] pid {os.getpid()} ready on {args.socket} after {seconds:.1f} s of imports", flush=True)
    try:
        zygote.serve(server, args.parent_pid)
    finally:
        zygote.close()
        server.close()
    return 0


def exit_now(code: int) -> None:
    """Leave without the interpreter's finalisation: tearing down torch, transformers and peft took seconds on
    a busy box, and a stop (daemon shutdown, parent death) must be prompt. Nothing is left to flush but stdio."""
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    os._exit(code)


if __name__ == "__main__":
    exit_now(main())
