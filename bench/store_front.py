"""What the job store's accepting front costs: torch TCPStore operations through the front vs straight to the
loopback store behind it (p2pft.launch.store_front).

One real store process (the daemon's StoreProcess); a client on each path; per path: the time to open a client
(connect + torch's validate and ping), and the round trip of `set`, `get`, `add` and `compare_set` (the c10d
rendezvous's operations), median and p95 of --ops each, interleaved so load on the box hits both paths alike.

    .venv/bin/python bench/store_front.py [--ops 2000] [--connects 20]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from torch.distributed import TCPStore

from p2pft.jobs.store_process import StoreProcess


def client(port: int) -> TCPStore:
    return TCPStore("127.0.0.1", port, is_master=False, timeout=timedelta(seconds=30))


def timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return (time.perf_counter() - start) * 1e6


def summary(samples: list[float]) -> str:
    ordered = sorted(samples)
    return f"median {statistics.median(ordered):7.1f} us, p95 {ordered[int(0.95 * (len(ordered) - 1))]:7.1f} us"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--ops", type=int, default=2000)
    parser.add_argument("--connects", type=int, default=20)
    args = parser.parse_args()
    loop = asyncio.new_event_loop()
    with tempfile.TemporaryDirectory() as directory:
        store = StoreProcess("127.0.0.1", Path(directory))
        loop.run_until_complete(store.start())
        try:
            ready = json.loads(next(Path(directory).glob("ready-*.json")).read_text())
            paths = {"direct": int(ready["store_port"]), "front": store.port}
            connects: dict[str, list[float]] = {name: [] for name in paths}
            for _ in range(args.connects):
                for name, port in paths.items():
                    connects[name].append(timed(lambda port=port: client(port)))   # type: ignore[misc]
            clients = {name: client(port) for name, port in paths.items()}
            value = b"x" * 256
            ops: dict[str, Callable[[TCPStore, int], object]] = {
                "set": lambda c, i: c.set(f"k{i % 64}", value),
                "get": lambda c, i: c.get(f"k{i % 64}"),
                "add": lambda c, i: c.add("counter", 1),
                "compare_set": lambda c, i: c.compare_set("state", b"", value),
            }
            print(f"open a client ({args.connects}x): direct {summary(connects['direct'])}; "
                  f"front {summary(connects['front'])}")
            for op, fn in ops.items():
                samples: dict[str, list[float]] = {name: [] for name in paths}
                for i in range(args.ops):
                    for name, c in clients.items():
                        samples[name].append(timed(lambda c=c, i=i, fn=fn: fn(c, i)))   # type: ignore[misc]
                extra = statistics.median(samples["front"]) - statistics.median(samples["direct"])
                print(f"{op:11s} direct {summary(samples['direct'])}; front {summary(samples['front'])}; "
                      f"front adds {extra:.1f} us")
        finally:
            loop.run_until_complete(store.stop())
            loop.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
