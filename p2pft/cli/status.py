"""`p2pft status [--json]`: this daemon's view of the cluster (nodes, devices, memory, state, heartbeats)."""

from __future__ import annotations

import argparse
import json
from typing import Any


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = subparsers.add_parser("status", help="cluster status as this box's daemon sees it")
    p.add_argument("--json", action="store_true", help="machine-readable output")
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
    from rich.console import Console

    Console().print(render_status(reply))
    return 0


def _age(seconds: float) -> str:
    if seconds < 0:
        return "never"
    return f"{seconds:.1f}s"


def _devices(node: Any) -> str:
    parts = []
    for d in node.peer.devices:
        if d.kind == "cpu":
            parts.append(f"cpu {d.memory_free_mb / 1024:.0f}/{d.memory_total_mb / 1024:.0f} GiB free")
        else:
            parts.append(f"{d.kind}:{d.index} {d.name} {d.memory_free_mb}/{d.memory_total_mb} MiB free "
                         f"{d.utilization_pct:.0f}%")
    return "\n".join(parts) or "-"


_STATE_STYLE = {"idle": "green", "busy": "cyan", "draining": "yellow", "lost": "red"}


def render_status(reply: Any) -> Any:
    from rich.console import Group
    from rich.table import Table

    head = (f"cluster [bold]{reply.cluster_id}[/]  node [bold]{reply.node_id}[/]  coordinator "
            f"[bold]{reply.coordinator_id or '-'}[/]  up {reply.uptime_s:.0f}s  "
            f"heartbeat {reply.heartbeat_interval_s:g}s")
    table = Table(show_lines=False)
    for col in ("", "NODE", "NAME", "ADDRESS", "STATE", "HEARD"):
        table.add_column(col, no_wrap=True)
    for col in ("DEVICES", "VERSIONS", "NOTE"):
        table.add_column(col)
    for node in reply.nodes:
        marks = ("*" if node.is_coordinator else "") + ("<" if node.is_self else "")
        v = node.peer.versions
        versions = f"{v.p2pft}/p{v.protocol} torch {v.torch or '-'} cuda {v.cuda or '-'}"
        note = node.incompatible_reason
        if node.is_self and node.rss_mb:
            note = (note + " " if note else "") + f"daemon RSS {node.rss_mb} MB"
        if not node.is_self and node.state != "lost" and abs(node.clock_offset_s) > 1:
            note = (note + " " if note else "") + f"clock {node.clock_offset_s:+.1f}s"
        style = _STATE_STYLE.get(node.state, "")
        table.add_row(marks, node.peer.node_id, node.peer.name, node.peer.address or "-",
                      f"[{style}]{node.state}[/]" if style else node.state,
                      "self" if node.is_self else _age(node.last_heartbeat_age_s), _devices(node), versions, note)
    counters = ", ".join(f"{k}={v}" for k, v in sorted(reply.error_counters.items())) or "none"
    return Group(head, table, f"errors: {counters}   (* coordinator, < this daemon)")
