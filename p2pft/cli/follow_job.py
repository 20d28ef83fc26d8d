"""Following one job from the CLI (`p2pft submit` without --detach, `p2pft demo`): progress with rate and ETA,
one line per round event, the summary at the end. The sentences come from p2pft.jobs.views (pure)."""

from __future__ import annotations

import sys
import time
from typing import Any

from p2pft.cli.job_render import record_of
from p2pft.jobs.views import RoundTracker, duration, summary_lines

PLAIN_EVERY_S = 5.0   # not a terminal: a progress line at most this often (a CI log stays readable)


class JobFollower:
    def __init__(self, job_id: str, *, console: Any = None) -> None:
        from rich.console import Console

        self.job_id = job_id
        self.console = console or Console(stderr=True)
        self.tracker = RoundTracker()
        self.progress: Any = None
        self.task: Any = None
        self._last_plain = 0.0
        self._last_plain_text = ""

    async def watch(self, stub: Any) -> Any:
        from p2pft.rpc.gen import jobs_pb2

        last = None
        self.open()
        try:
            async for view in stub.WatchJob(jobs_pb2.WatchJobRequest(job_id=self.job_id, interval_s=0.5)):
                last = view
                self.update(view)
        finally:
            self.close()
        return last

    def open(self) -> None:
        if not self.console.is_terminal:
            return
        from rich.progress import BarColumn, Progress, TextColumn

        self.progress = Progress(TextColumn("{task.description}"), BarColumn(bar_width=None),
                                 TextColumn("{task.fields[steps]}"), TextColumn("{task.fields[info]}"),
                                 console=self.console, transient=True, expand=True)
        self.progress.start()
        self.task = self.progress.add_task(self.job_id, total=None, steps="", info="starting")

    def close(self) -> None:
        if self.progress is not None:
            self.progress.stop()
            self.progress = None

    def say(self, text: str) -> None:
        if self.progress is not None:
            self.progress.console.print(text, markup=False, highlight=False)
        else:
            print(text, file=sys.stderr, flush=True)

    def update(self, view: Any) -> None:
        record = record_of(view)
        if record is not None:
            for sentence in self.tracker.feed(record, dict(view.names)):
                self.say(sentence)
        info = progress_info(view)
        steps = f"{view.step}/{view.total_steps or '?'}" if view.step else ""
        if self.progress is not None:
            started = view.step > 0
            self.progress.update(self.task, completed=view.step, total=(view.total_steps or None) if started else None,
                                 steps=steps, info=info, description=self.job_id if started else "starting")
            return
        now = time.monotonic()
        text = f"{self.job_id} {steps} {info}".replace("  ", " ")
        if text != self._last_plain_text and now - self._last_plain >= PLAIN_EVERY_S:
            self._last_plain, self._last_plain_text = now, text
            self.say(text)

    def summary(self, view: Any) -> list[str]:
        record = record_of(view)
        if record is None:
            return [f"{view.job_id} {view.status}: {view.message}"]
        where = view.output_dir if view.status == "succeeded" else ""
        if view.status != "succeeded" and view.output_dir:
            where = f"{view.output_dir}/summary.json"
        return summary_lines(record, dict(view.names), view.loss or None, where)


def progress_info(view: Any) -> str:
    """`loss 2.3456  1.9 step/s  ETA 1m05s  round 1 world 2` (what the bar cannot show)."""
    if view.status in ("waiting", "paused"):
        return f"{view.status}: {view.message}" if view.message else view.status
    parts = []
    if view.loss:
        parts.append(f"loss {view.loss:.4f}")
    if view.steps_per_s > 0:
        parts.append(f"{view.steps_per_s:.2f} step/s")
    if view.eta_s > 0:
        parts.append(f"ETA {duration(view.eta_s)}")
    parts.append(f"round {view.round} world {view.world_size}")
    if not view.step and view.status == "running":
        parts.append("(starting the workers)")
    return "  ".join(parts)
