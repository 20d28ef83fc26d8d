"""`p2pft top`: a live view of the cluster over the daemon's server-streamed Watch RPC (Ctrl-C quits)."""

from __future__ import annotations

import argparse
from typing import Any


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = subparsers.add_parser("top", help="live cluster view (Ctrl-C quits)")
    p.add_argument("--interval", type=float, default=1.0, metavar="S", help="refresh interval (default 1 s)")
    p.add_argument("--count", type=int, default=0, metavar="N", help="stop after N updates (0 = until Ctrl-C)")
    p.set_defaults(func=handler)


def handler(args: argparse.Namespace) -> int:
    from rich.live import Live

    from p2pft.cli.connect import call_daemon
    from p2pft.cli.status import render_status

    async def follow(client: Any) -> int:
        seen = 0
        with Live(refresh_per_second=4, screen=False) as live:
            async for reply in client.watch(args.interval):
                live.update(render_status(reply))
                seen += 1
                if args.count and seen >= args.count:
                    break
        return 0

    return call_daemon(args, follow)
