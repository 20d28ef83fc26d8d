"""Rich renderables for the cluster (`p2pft status`, the boxes pane of `p2pft top`) from the daemon's
StatusReply: no I/O. Names first; node ids only where the console is wide enough or --wide asks."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from p2pft.cli.job_render import fit_columns

CERT_WARN_DAYS = 21   # below the default renewal threshold (30 d) by a week of failed renewals
STATE_STYLE = {"idle": "green", "busy": "cyan", "draining": "yellow", "lost": "red", "left": "dim"}


def age(seconds: float) -> str:
    return "never" if seconds < 0 else f"{seconds:.1f}s"


def devices_text(node: Any) -> str:
    parts = []
    for d in node.peer.devices:
        if d.kind == "cpu":
            parts.append(f"cpu {d.memory_free_mb / 1024:.0f}/{d.memory_total_mb / 1024:.0f}G free")
        else:
            parts.append(f"{d.kind}:{d.index} {d.name} {d.memory_free_mb / 1024:.0f}/{d.memory_total_mb / 1024:.0f}G "
                         f"{d.utilization_pct:.0f}%")
    return "; ".join(parts) or "-"


def name_of_node(node: Any) -> str:
    return node.peer.name or node.peer.node_id


def boxes_table(reply: Any, width: int, *, wide: bool = False) -> Any:
    from rich.table import Table

    columns = [("", 2, 100), ("NAME", 10, 100), ("STATE", 8, 100), ("HEARD", 6, 90), ("DEVICES", 24, 80),
               ("ADDRESS", 15, 50), ("NODE", 16, 30), ("VERSIONS", 24, 20), ("NOTE", 16, 60)]
    kept = [c for c, _, _ in columns] if wide else fit_columns(columns, width)
    table = Table(box=None, pad_edge=False, header_style="bold")
    for name in kept:
        table.add_column(name, no_wrap=True, overflow="ellipsis")
    for node in reply.nodes:
        marks = ("*" if node.is_coordinator else "") + ("<" if node.is_self else "")
        v = node.peer.versions
        note = node.incompatible_reason
        if node.is_self and node.rss_mb:
            note = (note + " " if note else "") + f"daemon RSS {node.rss_mb} MB"
        if not node.is_self and node.state not in ("lost", "left") and abs(node.clock_offset_s) > 1:
            note = (note + " " if note else "") + f"clock {node.clock_offset_s:+.1f}s"
        certificate = cert_note(node.cert_not_after_unix_s, time.time(), wide=wide)
        if certificate:
            note = (note + " " if note else "") + certificate
        style = STATE_STYLE.get(node.state, "")
        cells = {"": marks, "NAME": name_of_node(node), "STATE": f"[{style}]{node.state}[/]" if style else node.state,
                 "HEARD": "self" if node.is_self else age(node.last_heartbeat_age_s), "DEVICES": devices_text(node),
                 "ADDRESS": node.peer.address or "-", "NODE": node.peer.node_id,
                 "VERSIONS": f"{v.p2pft}/p{v.protocol} torch {v.torch or '-'} cuda {v.cuda or '-'}", "NOTE": note}
        table.add_row(*(cells[name] for name in kept))
    return table


def cert_note(not_after_unix_s: float, now_unix_s: float, *, wide: bool = False) -> str:
    """The node's certificate when it runs out within CERT_WARN_DAYS (its daemon renews it from 30 days before;
    docs/daemon.md), or always with --wide; '' when the daemon has not seen it."""
    if not not_after_unix_s:
        return ""
    days = (not_after_unix_s - now_unix_s) / 86400
    if days < 0:
        return "certificate EXPIRED"
    if days < CERT_WARN_DAYS or wide:
        return f"certificate {days:.0f}d left"
    return ""


def coordinator_name(reply: Any) -> str:
    for node in reply.nodes:
        if node.peer.node_id == reply.coordinator_id:
            return name_of_node(node)
    return reply.coordinator_id or "-"


def render_status(reply: Any, width: int = 80, *, wide: bool = False) -> Any:
    from rich.console import Group
    from rich.text import Text

    me = next((name_of_node(n) for n in reply.nodes if n.is_self), reply.node_id)
    head = Text.from_markup(f"cluster [bold]{reply.cluster_id}[/]  this box [bold]{me}[/]  mesh coordinator "
                            f"[bold]{coordinator_name(reply)}[/]  up {reply.uptime_s:.0f}s  "
                            f"heartbeat {reply.heartbeat_interval_s:g}s", overflow="ellipsis")
    head.no_wrap = True
    lines = [Text(line, overflow="ellipsis", no_wrap=True) for line in errors_lines(reply, wide=wide)]
    lines[0].append("   (* mesh coordinator, < this box)")
    return Group(head, boxes_table(reply, width, wide=wide), *lines)


def duration(seconds: float) -> str:
    """45s, 12m, 2h03m, 3d04h: how long ago the daemon started, in words that fit a status line."""
    s = max(0, int(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m"
    if s < 86400:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 86400}d{s % 86400 // 3600:02d}h"


def _counts(counters: Any) -> str:
    return ", ".join(f"{k}={v}" for k, v in sorted(counters.items()) if v)


def errors_lines(reply: Any, *, wide: bool = False) -> list[str]:
    """What went wrong lately, first: a hiccup hours ago is not a problem now. Totals since the daemon started
    are a count on the same line when nothing happened lately, and a line of their own with --wide."""
    totals, since = _counts(reply.error_counters), f"since the start, {duration(reply.uptime_s)} ago"
    if not reply.recent_window_s:  # a daemon from before the recent window: totals are all it says
        return [f"errors {since}: {totals}" if totals else "errors: none"]
    window = f"last {reply.recent_window_s / 60:g} min"
    recent = _counts(reply.recent_error_counters)
    if not totals:
        return ["errors: none"]
    if recent:
        first = f"errors in the {window}: {recent}"
    else:
        earlier = sum(v for v in reply.error_counters.values())
        first = f"errors in the {window}: none ({earlier} {since}" + (")" if wide else "; --wide lists them)")
    return [first, f"errors {since}: {totals}"] if wide else [first]


def membership_events(before: Any, after: Any) -> list[str]:
    """Pure: what changed between two StatusReplies, in words (`box-c joined`, `box-b lost`, ...)."""
    old = {n.peer.node_id: n for n in before.nodes} if before is not None else {}
    out = []
    for node in after.nodes:
        previous = old.get(node.peer.node_id)
        name = name_of_node(node)
        if previous is None:
            if before is not None:
                out.append(f"{name} joined ({node.state})")
        elif previous.state != node.state:
            out.append(f"{name}: {previous.state} -> {node.state}" + {
                "lost": " (no heartbeat)", "left": " (stopped cleanly)", "draining": " (drains)"}.get(node.state, ""))
    return out


def top_view(reply: Any, jobs: Sequence[Any], events: Sequence[str], width: int, height: int = 40) -> Any:
    """The whole `p2pft top` screen: boxes, each unfinished job (and the newest finished one), events."""
    from rich.console import Group
    from rich.rule import Rule
    from rich.text import Text

    from p2pft.cli.job_render import job_panel

    shown = [j for j in jobs if j.status in ("running", "waiting")]
    if not shown and jobs:
        shown = [jobs[-1]]
    parts: list[Any] = [render_status(reply, width), Rule("jobs", style="dim")]
    if shown:
        for view in shown:
            parts.append(job_panel(view, width))
    else:
        parts.append(Text("no jobs (p2pft submit JOB.yaml)", style="dim"))
    parts.append(Rule("events", style="dim"))
    room = max(3, height - 14 - 6 * len(shown) - len(reply.nodes))
    parts += [Text(line, overflow="ellipsis", no_wrap=True) for line in list(events)[-room:]]
    parts.append(Text("q quits", style="dim"))
    return Group(*parts)
