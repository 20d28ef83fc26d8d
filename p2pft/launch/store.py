"""The job's c10d rendezvous store, in a long-lived process of its own.

`python -m p2pft.launch.store --host H --port P [--ready-file F]` or `--ports LOW-HIGH` (the first free one)

torchrun's default puts the store inside one agent: when that agent dies, every other agent exits
(DESIGN.md trap 3). Here the store outlives every agent and every round; each round uses its own rendezvous
id on it, and every agent runs with `is_host=0`. The process writes its bound port to the ready file (port 0 =
any free port), then sleeps until SIGTERM/SIGINT or until the process that started it is gone (p2pft.launch.lifetime).
It imports torch, so the daemon starts it as a subprocess.

torch's store server listens on every interface whatever `--host` is (that is only where its own client
dials); the daemon tells each round's members the address that reaches them (p2pft.network).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import threading
from datetime import timedelta
from pathlib import Path

from p2pft.launch.lifetime import die_with_parent


def write_ready_file(path: Path, *, host: str, port: int) -> None:
    """Atomically, so a reader never sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    partial.write_text(json.dumps({"host": host, "port": port, "pid": os.getpid()}) + "\n")
    os.replace(partial, path)


def read_ready_file(path: Path) -> tuple[str, int] | None:
    """(host, port) once the store is serving, else None. Torch-free: the daemon polls this."""
    try:
        data = json.loads(path.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None
    return str(data["host"]), int(data["port"])


def _open_store(host: str, ports: range) -> object:
    from torch.distributed import TCPStore  # here, not at module level: `--help` stays fast

    last: Exception | None = None
    for port in ports:
        try:
            return TCPStore(
                host,
                port,
                is_master=True,
                wait_for_workers=False,
                # The same settings torchrun's c10d backend uses for its own clients.
                multi_tenant=True,
                timeout=timedelta(seconds=60),
            )
        except Exception as exc:  # the port is taken (torch raises DistNetworkError/RuntimeError)
            last = exc
    raise SystemExit(f"p2pft store: no free port in {ports.start}-{ports.stop - 1} ({last}); widen store_ports")


PARENT_POLL_S = 1.0


def serve(host: str, ports: range, ready_file: Path | None, parent_pid: int | None = None) -> int:
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    # The daemon starts the store in a session of its own, so a kill of the daemon's group never reaches it:
    # without this it outlived a killed daemon and held its port. The parent-death signal (SIGTERM: the
    # handler above) ends it; polling the parent pid is the net for the window before the signal was armed.
    parent = os.getppid() if parent_pid is None else parent_pid
    if not die_with_parent(signal.SIGTERM, parent):
        print("p2pft store: the process that started it is gone: not serving", flush=True)
        return 0
    store = _open_store(host, ports)
    bound_port = store.port  # type: ignore[attr-defined]
    if ready_file is not None:
        write_ready_file(ready_file, host=host, port=bound_port)
    print(f"p2pft store serving on {host}:{bound_port} (pid {os.getpid()})", flush=True)
    while not stop.wait(timeout=PARENT_POLL_S):
        if os.getppid() != parent:
            print("p2pft store: the process that started it is gone", flush=True)
            break
    print("p2pft store stopping", flush=True)
    del store
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m p2pft.launch.store", description=__doc__.split("\n")[0])
    parser.add_argument("--host", required=True, help="address to listen on (the agents' --rdzv-endpoint host)")
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
    return serve(args.host, ports, args.ready_file, args.parent_pid)


if __name__ == "__main__":
    raise SystemExit(main())
