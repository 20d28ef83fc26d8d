"""What a box keeps of a job once it ended: its record, its lines and logs, the checkpoint steps the job retains
(`save_total_limit`: the newest; all when unset), and, on the box that holds them, its outputs. Everything else
goes: older and torn checkpoint steps, the copies of the dataset and model, each round's output dir (the job's
outputs were collected from one of them into the output dir; the merged lines are in lines.jsonl), and every
blob of the job that nothing else references.

Runs when this box learns the job ended (the manager's `forget_member`), and a minute after start then every
GC_INTERVAL_S for every ended job and the whole blob store (a box that was down, or stopped, when a job ended
catches up; blobs of pruned steps of live jobs go).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
from pathlib import Path
from typing import TYPE_CHECKING

from p2pft.formats.checkpoint_index import COMMIT_MARKER, committed_steps, list_steps, newest_committed, step_dir
from p2pft.jobs.blob_gc import GC_INTERVAL_S, BlobCollector
from p2pft.jobs.model import JobRecord
from p2pft.jobs.paths import JobPaths
from p2pft.transfer.collect import remove_stale_leftovers

if TYPE_CHECKING:
    from p2pft.jobs.manager import JobsManager

log = logging.getLogger("p2pft.jobs.cleanup")
FIRST_SWEEP_S = 60.0


def retained_limit(record: JobRecord) -> int | None:
    """How many committed steps an ended job keeps (None: all, as LLaMA-Factory without save_total_limit)."""
    limit = record.spec.save_total_limit
    return int(limit) if isinstance(limit, int) and limit > 0 else None


def surplus_steps(committed: list[int], newest_complete: int | None, limit: int | None) -> list[int]:
    """Committed steps an ended job no longer keeps here (pure): all but the `limit` newest, and never the newest
    step complete here. Unlike the worker's prune, a step need not be complete to count: on a box past the job's
    `replication` index a step is never complete here (the others' files never come), so prune would keep every
    one of them for ever; after the end nothing resumes from them."""
    if limit is None:
        return []
    kept = set(committed[-limit:])
    if newest_complete is not None:
        kept.add(newest_complete)
    return [s for s in committed if s not in kept]


def torn_steps(all_steps: list[int], committed: list[int]) -> list[int]:
    """Step dirs without a commit marker: after the end no save can be in progress in them (pure)."""
    done = set(committed)
    return [s for s in all_steps if s not in done]


def tidy_ended_job(state_dir: Path, record: JobRecord) -> list[str]:
    """Remove what an ended job no longer needs on this box; returns what went (blocking, idempotent)."""
    paths = JobPaths.of(state_dir, record.job_id)
    gone: list[str] = []
    committed = committed_steps(paths.checkpoints, verify=False)
    newest_complete = newest_committed(paths.checkpoints, verify=True)
    for step in surplus_steps(committed, newest_complete, retained_limit(record)):
        _remove_step(paths.checkpoints, step)
        gone.append(f"checkpoint step-{step}")
    for step in torn_steps(list_steps(paths.checkpoints), committed):
        _remove_step(paths.checkpoints, step)
        gone.append(f"torn checkpoint step-{step}")
    for directory in (paths.data, paths.model, *sorted((paths.root / "rounds").glob("*/output"))):
        if directory.is_dir() and not directory.is_symlink():
            shutil.rmtree(directory, ignore_errors=True)
            gone.append(str(directory.relative_to(paths.root)))
    return gone


def _remove_step(checkpoints: Path, step: int) -> None:
    directory = step_dir(checkpoints, step)
    with contextlib.suppress(FileNotFoundError):
        (directory / COMMIT_MARKER).unlink()   # first: a crash midway never leaves a committed-looking step
    shutil.rmtree(directory, ignore_errors=True)


class JobCleanup:
    """The daemon part that applies the above: at a job's end, and periodically (a component with `run()`)."""

    name = "job cleanup"

    def __init__(self, manager: JobsManager, *, interval_s: float = GC_INTERVAL_S) -> None:
        self.manager = manager
        self.interval_s = interval_s
        self.collector = BlobCollector(manager)
        self._done: set[str] = set()   # ended jobs tidied since this daemon started

    async def after_end(self, job_id: str) -> None:
        record = self.manager.records.get(job_id)
        if record is None or not record.terminal:
            return
        try:
            candidates = await self.collector.ended_job_blobs(record)   # before pruning: pruned steps' blobs too
            gone = await asyncio.to_thread(tidy_ended_job, self.manager.state_dir, record)
            self._done.add(job_id)
            await self.collector.collect(candidates=candidates, why=f"after job {job_id} ended")
            if gone:
                log.info("job %s ended: removed %s", job_id, ", ".join(gone))
        except Exception:
            log.exception("job %s: cleaning up after its end failed; the periodic pass tries again", job_id)

    async def run(self) -> None:
        # First a minute after start (not at once: the manager loads its records first): a daemon stopped
        # right after a job ended (a demo, a reboot) did not finish that job's cleanup.
        delay = min(FIRST_SWEEP_S, self.interval_s)
        while True:
            await asyncio.sleep(delay)
            delay = self.interval_s
            try:
                await self.sweep()
            except Exception:
                log.exception("periodic cleanup failed; trying again in %.0f s", self.interval_s)

    async def sweep(self) -> None:
        for job_id, record in list(self.manager.records.items()):
            if record.terminal and job_id not in self._done:
                gone = await asyncio.to_thread(tidy_ended_job, self.manager.state_dir, record)
                self._done.add(job_id)
                if gone:
                    log.info("job %s (ended): removed %s", job_id, ", ".join(gone))
        await self.collector.collect()
        leftovers = await asyncio.to_thread(remove_stale_leftovers, self.manager.store)
        if leftovers:
            log.info("blob store: removed %d abandoned partial or temp files", leftovers)
