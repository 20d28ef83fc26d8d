"""`p2pft peers [--json]`: the members this daemon knows, with state, address, versions and last heartbeat."""

from __future__ import annotations

import argparse
import json
from typing import Any


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = subparsers.add_parser("peers", help="members of the cluster this box's daemon knows")
    p.add_argument("--json", action="store_true", help="machine-readable output: a list of members")
    p.set_defaults(func=handler)


def peers_from_status(reply: Any) -> list[dict[str, Any]]:
    out = []
    for node in reply.nodes:
        v = node.peer.versions
        out.append({
            "node_id": node.peer.node_id,
            "name": node.peer.name,
            "address": node.peer.address,
            "state": node.state,
            "is_self": node.is_self,
            "is_coordinator": node.is_coordinator,
            "last_heartbeat_age_s": None if node.last_heartbeat_age_s < 0 else round(node.last_heartbeat_age_s, 3),
            "clock_offset_s": round(node.clock_offset_s, 4),
            "compatible": not node.incompatible_reason or node.state in ("lost", "left"),
            "note": node.incompatible_reason,
            "versions": {"p2pft": v.p2pft, "protocol": v.protocol, "python": v.python, "torch": v.torch,
                         "cuda": v.cuda},
        })
    return out


def handler(args: argparse.Namespace) -> int:
    from p2pft.cli.status import fetch_status

    reply = fetch_status(args)
    peers = peers_from_status(reply)
    if args.json:
        print(json.dumps(peers, indent=2))
        return 0
    from rich.console import Console
    from rich.table import Table

    table = Table()
    for col in ("", "NODE", "NAME", "ADDRESS", "STATE", "LAST HEARTBEAT", "P2PFT/PROTO", "NOTE"):
        table.add_column(col)
    for p in peers:
        age = "self" if p["is_self"] else ("never" if p["last_heartbeat_age_s"] is None
                                           else f"{p['last_heartbeat_age_s']:.1f}s ago")
        marks = ("*" if p["is_coordinator"] else "") + ("<" if p["is_self"] else "")
        table.add_row(marks, p["node_id"], p["name"], p["address"] or "-", p["state"], age,
                      f"{p['versions']['p2pft']}/{p['versions']['protocol']}", p["note"])
    Console().print(table)
    return 0
