"""The job's c10d rendezvous store, in a long-lived process of its own, behind an accepting front.

`python -m p2pft.launch.store --host H --port P [--listen L] [--admitted-file A] [--ready-file F]`
or `--ports LOW-HIGH` (the first free one)

torchrun's default puts the store inside one agent: when that agent dies, every other agent exits
(DESIGN.md trap 3). Here the store outlives every agent and every round; each round uses its own rendezvous
id on it, and every agent runs with `is_host=0`. The process writes its port to the ready file (port 0 =
any free port), then serves until SIGTERM/SIGINT or until the process that started it is gone
(p2pft.launch.lifetime). It imports torch, so the daemon starts it as a subprocess.

torch's TCPStore has no authentication and the rendezvous unpickles what it reads, and its server listens on
every interface when it binds by itself. So the TCPStore server here listens on a socket bound to 127.0.0.1
(handed over with `master_listen_fd`), and the store port (`--listen`, every interface by default) is the
accepting front (p2pft.launch.store_front): it forwards only connections from the addresses in the admitted file
(the current round's members, written by the coordinating daemon before each round) and from this box.
`--host` is only the address written to the ready file.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import socket
import threading
from datetime import timedelta
from pathlib import Path

from p2pft.launch.admission import AdmittedFile
from p2pft.launch.lifetime import die_with_parent
from p2pft.launch.store_front import StoreFront, bind_listener


def write_ready_file(path: Path, *, host: str, port: int, store_port: int = 0) -> None:
    """Atomically, so a reader never sees half a file. `store_port`: the loopback port behind the front."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    partial.write_text(json.dumps({"host": host, "port": port, "pid": os.getpid(), "store_port": store_port}) + "\n")
    os.replace(partial, path)


def read_ready_file(path: Path) -> tuple[str, int] | None:
    """(host, port) once the store is serving, else None. Torch-free: the daemon polls this."""
    try:
        data = json.loads(path.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None
    return str(data["host"]), int(data["port"])


def open_loopback_store() -> tuple[object, int]:
    """The TCPStore server on a socket bound to 127.0.0.1 (a free port): reachable only through the front."""
    from torch.distributed import TCPStore  # here, not at module level: `--help` stays fast

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(512)
    port = sock.getsockname()[1]
    store = TCPStore(
        "127.0.0.1",
        port,
        is_master=True,
        wait_for_workers=False,
        # The same settings torchrun's c10d backend uses for its own clients.
        multi_tenant=True,
        timeout=timedelta(seconds=60),
        master_listen_fd=sock.detach(),   # torch's server owns the socket from here
    )
    return store, port


PARENT_POLL_S = 1.0


def serve(host: str, ports: range, ready_file: Path | None, parent_pid: int | None = None, *,
          listen: str = "", admitted_file: Path | None = None) -> int:
    early_stop = threading.Event()   # a signal before the event loop runs
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: early_stop.set())
    # The daemon starts the store in a session of its own, so a kill of the daemon's group never reaches it:
    # without this it outlived a killed daemon and held its port. The parent-death signal (SIGTERM: the
    # handler above) ends it; polling the parent pid is the net for the window before the signal was armed.
    parent = os.getppid() if parent_pid is None else parent_pid
    if not die_with_parent(signal.SIGTERM, parent):
        print("p2pft store: the process that started it is gone: not serving", flush=True)
        return 0
    try:
        listener = bind_listener(listen, ports)
    except OSError as exc:
        raise SystemExit(f"p2pft store: {exc}; widen store_ports") from None
    store, store_port = open_loopback_store()
    return asyncio.run(_serve_front(store, store_port, listener, host, ready_file, parent, admitted_file,
                                    early_stop))


async def _serve_front(store: object, store_port: int, listener: socket.socket, host: str, ready_file: Path | None,
                       parent: int, admitted_file: Path | None, early_stop: threading.Event) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    front = StoreFront(("127.0.0.1", store_port), AdmittedFile(admitted_file), lambda line: print(line, flush=True))
    await front.start(listener)
    port = listener.getsockname()[1]
    if ready_file is not None:
        write_ready_file(ready_file, host=host, port=port, store_port=store_port)
    print(f"p2pft store serving on {host}:{port} (front on {listener.getsockname()[0]}, store on "
          f"127.0.0.1:{store_port}, pid {os.getpid()})", flush=True)
    while not early_stop.is_set():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=PARENT_POLL_S)
        if stop.is_set():
            break
        if os.getppid() != parent:
            print("p2pft store: the process that started it is gone", flush=True)
            break
    print(f"p2pft store stopping ({front.accepted} connections forwarded, {front.refused} refused)", flush=True)
    await front.close()
    del store
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m p2pft.launch.store", description=__doc__.split("\n")[0])
    parser.add_argument("--host", required=True, help="the address written to the ready file (where this box dials)")
    parser.add_argument("--listen", default="", help="address the front listens on (default: every interface)")
    parser.add_argument("--admitted-file", type=Path,
                        help="the addresses admitted besides this box (p2pft.launch.admission); none when absent")
    parser.add_argument("--port", type=int, default=0, help="port to listen on; 0 = any free port")
    parser.add_argument("--ports", metavar="LOW-HIGH", help="listen on the first free port of this range")
    parser.add_argument("--ready-file", type=Path, help="written with {host, port, pid} once serving")
    parser.add_argument("--parent-pid", type=int, default=None,
                        help="stop when this pid is no longer the parent (default: the parent at start)")
    args = parser.parse_args(argv)
    if not 0 <= args.port <= 65535:
        parser.error(f"--port {args.port} must be in 0..65535")
    ports = range(args.port, args.port + 1)
    if args.ports:
        low, _, high = args.ports.partition("-")
        if not (low.isdigit() and high.isdigit() and 1 <= int(low) <= int(high) <= 65535):
            parser.error(f"--ports {args.ports!r} must be LOW-HIGH within 1..65535")
        ports = range(int(low), int(high) + 1)
    return serve(args.host, ports, args.ready_file, args.parent_pid, listen=args.listen,
                 admitted_file=args.admitted_file)


if __name__ == "__main__":
    raise SystemExit(main())
