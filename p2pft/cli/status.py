"""`p2pft status [--json]`: this daemon's view of the cluster (nodes, devices, memory, state, heartbeats)."""

from __future__ import annotations

import argparse
import json
from typing import Any


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = subparsers.add_parser("status", help="cluster status as this box's daemon sees it")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("--wide", action="store_true", help="every column (node ids, addresses, versions)")
    p.set_defaults(func=handler)


def fetch_status(args: argparse.Namespace) -> Any:
    from p2pft.cli.connect import call_daemon

    return call_daemon(args, lambda client: client.status())


def status_to_dict(reply: Any) -> dict[str, Any]:
    from google.protobuf.json_format import MessageToDict

    return MessageToDict(reply, preserving_proto_field_name=True, always_print_fields_with_no_presence=True)


def handler(args: argparse.Namespace) -> int:
    reply = fetch_status(args)
    if args.json:
        print(json.dumps(status_to_dict(reply), indent=2, sort_keys=True))
        return 0
    from p2pft.cli.jobs import console_for_output

    console = console_for_output()
    console.print(render_status(reply, console.width, wide=args.wide))
    return 0


def render_status(reply: Any, width: int = 80, *, wide: bool = False) -> Any:
    from p2pft.cli.cluster_render import render_status as render

    return render(reply, width, wide=wide)
