"""Rich renderables for jobs (`p2pft jobs`, `describe`, `top`) built from JobService's JobView: no I/O.

Human output names boxes, never node ids (ids stay in `--json`). Tables fit the console by dropping the least
useful columns instead of wrapping cells.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from typing import Any

from p2pft.jobs.model import JobRecord, record_from_dict
from p2pft.jobs.views import (
    duration,
    left_out_sentence,
    name_of,
    plan_sentence,
    starting_sentence,
    with_names,
)

SPARK = "▁▂▃▄▅▆▇█"
STATUS_STYLE = {"running": "cyan", "waiting": "yellow", "paused": "yellow", "succeeded": "green", "failed": "red",
                "cancelled": "magenta"}


def record_of(view: Any) -> JobRecord | None:
    try:
        return record_from_dict(json.loads(view.record_json))
    except (ValueError, TypeError):
        return None


def fit_columns(columns: Sequence[tuple[str, int, int]], width: int) -> list[str]:
    """Pure: the names of the columns that fit `width`. Each column is (name, width it needs, priority); the
    lowest priority goes first until the rest fit (3 characters of padding per column)."""
    kept = list(columns)
    while kept and sum(w + 3 for _, w, _ in kept) > width:
        drop = min(range(len(kept)), key=lambda i: (kept[i][2], -i))
        if kept[drop][2] >= 100:  # essential columns stay; the table cuts their cells instead
            break
        kept.pop(drop)
    return [name for name, _, _ in kept]


def sparkline(values: Sequence[float], width: int = 20) -> str:
    values = list(values)[-width:]
    if not values:
        return ""
    low, high = min(values), max(values)
    span = (high - low) or 1.0
    return "".join(SPARK[min(len(SPARK) - 1, int((v - low) / span * (len(SPARK) - 1) + 0.5))] for v in values)


def steps_text(view: Any) -> str:
    return f"{view.step}/{view.total_steps}" if view.total_steps else str(view.step)


def eta_text(view: Any) -> str:
    if view.status in ("succeeded", "failed", "cancelled"):
        return "-"
    return duration(view.eta_s) if view.eta_s > 0 else "?"


def rate_text(view: Any) -> str:
    if view.steps_per_s <= 0:
        return "-"
    text = f"{view.steps_per_s:.2f} step/s"
    if view.samples_per_s > 0:
        text += f" {view.samples_per_s:.1f} samples/s"
    return text


def boxes_text(view: Any) -> str:
    return ",".join(name_of(n, view.names) for n in view.members) or "-"


def status_markup(status: str) -> str:
    style = STATUS_STYLE.get(status, "")
    return f"[{style}]{status}[/]" if style else status


def jobs_table(views: Sequence[Any], width: int, *, wide: bool = False) -> Any:
    from rich.table import Table

    columns = [("JOB", 26, 100), ("STATUS", 9, 100), ("STEP", 9, 90), ("LOSS", 7, 70), ("ETA", 6, 60),
               ("ROUND", 5, 40), ("WORLD", 5, 50), ("BOXES", 14, 30), ("MESSAGE", 30, 20)]
    if wide:
        columns += [("COORDINATOR", 16, 10)]
    kept = fit_columns(columns, width) if not wide else [c for c, _, _ in columns]
    table = Table(box=None, pad_edge=False, header_style="bold")
    for name in kept:
        table.add_column(name, no_wrap=True, overflow="ellipsis", max_width=60 if name == "MESSAGE" else None)
    for view in views:
        cells = {"JOB": view.job_id, "STATUS": status_markup(view.status), "STEP": steps_text(view),
                 "LOSS": f"{view.loss:.4f}" if view.loss else "-", "ETA": eta_text(view),
                 "ROUND": str(view.round), "WORLD": str(view.world_size), "BOXES": boxes_text(view),
                 "MESSAGE": view.message, "COORDINATOR": view.coordinator}
        table.add_row(*(cells[name] for name in kept))
    return table


def rounds_table(record: JobRecord, names: Mapping[str, str], width: int) -> Any:
    from rich.table import Table

    columns = [("#", 3, 100), ("REASON", 30, 100), ("BOXES", 16, 90), ("WORLD", 5, 80), ("RESUMED", 7, 60),
               ("FIRST STEP", 10, 50), ("RECOVERY", 8, 70), ("ENDED", 24, 20)]
    kept = fit_columns(columns, width)
    table = Table(box=None, pad_edge=False, header_style="bold")
    for name in kept:
        table.add_column(name, no_wrap=name != "REASON", overflow="ellipsis" if name != "REASON" else "fold")
    for info in record.rounds:
        recovery = info.recovery_s
        resumed = info.first_step - 1 if info.first_step is not None else info.resume_step
        cells = {"#": str(info.round), "REASON": with_names(info.reason, names),
                 "BOXES": ",".join(name_of(n, names) for n in info.members), "WORLD": str(info.world_size),
                 "RESUMED": "-" if resumed is None else str(resumed),
                 "FIRST STEP": "-" if info.first_step is None else str(info.first_step),
                 "RECOVERY": f"{recovery:.1f}s" if recovery is not None and info.round > 0 else "-",
                 "ENDED": with_names(info.ended_reason, names) or "-"}
        table.add_row(*(cells[name] for name in kept))
    return table


def job_panel(view: Any, width: int, *, events: Sequence[str] = ()) -> Any:
    """One job for `top`: progress bar with ETA, step/total, loss with its sparkline, rate, round, world, plan."""
    from rich.console import Group
    from rich.progress_bar import ProgressBar
    from rich.table import Table
    from rich.text import Text

    record = record_of(view)
    grid = Table.grid(padding=(0, 1))
    grid.add_column(no_wrap=True)
    grid.add_column(ratio=1)
    grid.add_column(no_wrap=True)
    total = view.total_steps or None
    bar = ProgressBar(total=float(total or 1), completed=float(view.step if total else 0), width=max(10, width - 40),
                      pulse=total is None and view.status == "running")
    grid.add_row(Text(f"{view.job_id}", style="bold"), bar,
                 Text.from_markup(f"{steps_text(view)}  ETA {eta_text(view)}"))
    line = f"{status_markup(view.status)}  round {view.round}  world {view.world_size}  boxes {boxes_text(view)}"
    loss = f"loss {view.loss:.4f} {sparkline(view.recent_losses)}" if view.loss else "loss -"
    parts: list[Any] = [grid, Text.from_markup(line), Text(f"{loss}   {rate_text(view)}", no_wrap=True,
                                                          overflow="ellipsis")]
    if record is not None and record.current_round is not None:
        plan = plan_sentence(record.current_round, view.names, dict(view.rank_speeds), dict(view.rank_bounds))
        parts.append(Text(f"plan (samples x micro-batch per rank, measured speed): {plan}", no_wrap=False))
        parts += [Text(line, style="yellow") for line in _round_notes(record, view.names) if view.status == "running"]
    if view.message and view.status != "running":
        parts.append(Text(view.message, style=STATUS_STYLE.get(view.status, "")))
    return Group(*parts)


def describe(view: Any, width: int) -> Any:
    """`p2pft describe JOB`: everything about one job, for people."""
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    record = record_of(view)
    names = dict(view.names)
    facts = Table.grid(padding=(0, 2))
    facts.add_column(style="bold", no_wrap=True)
    facts.add_column()

    def row(label: str, value: str) -> None:
        facts.add_row(label, Text(value))

    row("Job", view.job_id)
    facts.add_row("Status", Text.from_markup(status_markup(view.status)))
    if view.message:
        row("Message", view.message)
    row("Progress", f"step {steps_text(view)}, loss {view.loss:.4f}" if view.loss else f"step {steps_text(view)}")
    if view.status in ("running", "waiting"):
        row("Rate", f"{rate_text(view)}, ETA {eta_text(view)}")
    if record is not None:
        row("Submitted", f"{_when(record.submitted_unix)} from {name_of(record.submitter, names)}")
        if record.ended_unix:
            row("Ended", f"{_when(record.ended_unix)} after {duration(record.ended_unix - record.submitted_unix)}")
        row("Coordinated by", f"{name_of(record.coordinator, names)} (term {record.term})")
        spec = record.spec
        row("Model", spec.model_name_or_path)
        row("Dataset", f"{', '.join(spec.dataset)} in {spec.dataset_dir}")
        row("Output dir", view.output_dir + (f" (outputs on {name_of(view.outputs_node, names)})"
                                             if view.outputs_node else ""))
        if record.checkpoints:
            row("Checkpoints", checkpoints_text(record))
        if record.current_round is not None:
            row("Plan", plan_sentence(record.current_round, names, dict(view.rank_speeds), dict(view.rank_bounds)))
            for note in _round_notes(record, names) if view.status == "running" else ():
                row("Round", note)
        for warning in record.warnings:
            row("Warning", warning)
    parts: list[Any] = [facts]
    if record is not None and record.rounds:
        parts += [Text(""), Text("Rounds", style="bold"), rounds_table(record, names, width)]
    return Group(*parts)


def checkpoints_text(record: JobRecord) -> str:
    """How many steps were committed, the newest, and the newest durable one (held complete by enough boxes to
    survive a box's loss: p2pft.jobs.durability), which the job resumes from at worst."""
    text = f"{len(set(record.checkpoints))}, newest step {max(record.checkpoints)}"
    if not record.durable:
        return text + ", none durable yet"
    newest = max(record.durable)
    return text + (" (durable)" if newest == max(record.checkpoints) else f", newest durable step {newest}")


def _round_notes(record: JobRecord, names: Mapping[str, str]) -> list[str]:
    current = record.current_round
    if current is None:
        return []
    notes = [starting_sentence(current, names), left_out_sentence(current, names, time.time())]
    return [note for note in notes if note]


def _when(unix: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(unix)) if unix else "-"
