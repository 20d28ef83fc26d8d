"""`python -m p2pft.discovery`: run MdnsDiscovery alone and print what it sees, one JSON object per line.

A debugging aid for "why don't my boxes see each other?" and the driver of the multi-process tests/benchmark.
stdout lines: {"event": "started", "t": ..., "start_s": ...}, {"event": "seen", "t": ..., **PeerSeen fields},
{"event": "lost", "t": ..., "node_id": ...}, {"event": "counters", ...}; `t` is time.monotonic() (one clock
for every process on a box, so latencies across processes can be subtracted).
stdin commands, one per line: `state VALUE` (update the TXT `state`), `counters`, `stop` (or end of input).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import signal
import sys
import time
from collections.abc import Sequence
from typing import Any

from p2pft.discovery.events import PeerLost, PeerSeen
from p2pft.discovery.mdns import MdnsDiscovery
from p2pft.discovery.txt import cluster_id_for_key


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m p2pft.discovery", description=__doc__.splitlines()[0])
    parser.add_argument("--node-id", required=True)
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument("--cluster-key", help="cluster key; its id is announced")
    group.add_argument("--cluster-id", help="16 hex digits, as announced")
    parser.add_argument("--port", type=int, default=1, help="the port to announce (nothing listens on it here)")
    parser.add_argument("--interface", action="append", required=True, help="IP address to multicast on")
    parser.add_argument("--state", default="idle")
    parser.add_argument("--dev", default="")
    return parser


def _print(obj: dict[str, Any]) -> None:
    print(json.dumps(obj), flush=True)


def _on_event(event: PeerSeen | PeerLost) -> None:
    kind = "seen" if isinstance(event, PeerSeen) else "lost"
    fields = dataclasses.asdict(event)
    if isinstance(event, PeerSeen):
        fields["txt"] = dict(event.txt)
    _print({"event": kind, "t": time.monotonic(), **fields})


async def run(args: argparse.Namespace) -> int:
    cluster_id = args.cluster_id or cluster_id_for_key(args.cluster_key)
    discovery = MdnsDiscovery(
        node_id=args.node_id,
        cluster_id=cluster_id,
        port=args.port,
        interfaces=args.interface,
        txt={"state": args.state, "dev": args.dev},
        on_event=_on_event,
    )
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    begin = time.monotonic()
    await discovery.start()
    _print({"event": "started", "t": time.monotonic(), "start_s": time.monotonic() - begin, "cluster_id": cluster_id})
    commands = asyncio.create_task(_read_commands(discovery, stop))
    await stop.wait()
    commands.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await commands
    await discovery.stop()
    _print({"event": "counters", **discovery.counters})
    return 0


async def _read_commands(discovery: MdnsDiscovery, stop: asyncio.Event) -> None:
    reader = asyncio.StreamReader()
    await asyncio.get_running_loop().connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while raw := await reader.readline():  # b"" = end of input
        command, _, value = raw.decode(errors="replace").strip().partition(" ")
        if command == "state":
            await discovery.update_txt({**discovery.txt, "state": value})
        elif command == "counters":
            _print({"event": "counters", **discovery.counters})
        elif command == "stop":
            break
    stop.set()


def main(argv: Sequence[str] | None = None) -> int:
    return asyncio.run(run(build_parser().parse_args(argv)))


if __name__ == "__main__":
    sys.exit(main())
