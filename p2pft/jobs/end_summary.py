"""summary.json for jobs that end without outputs (failed, cancelled), on the box that submitted them.

A succeeded job's coordinator writes its outputs and summary itself (JobsManager.end_job). A failed or
cancelled one used to leave nothing in `output_dir`: the user who looks there finds no trace of why. This
daemon component watches the records and, on the submitting box, writes the summary once per job (a marker in
the job's state dir remembers it across restarts, so an old job never overwrites a newer job's directory).
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

from p2pft.jobs.model import JobRecord
from p2pft.jobs.outputs import write_summary
from p2pft.jobs.paths import JobPaths
from p2pft.jobs.submission import own_path

log = logging.getLogger("p2pft.jobs.end_summary")
MARKER = "end-summary-written"
POLL_S = 1.0


def needs_end_summary(record: JobRecord, node_id: str) -> bool:
    """Pure: a job that ended without outputs, submitted from this box, with an output_dir in its spec."""
    return (record.status in ("failed", "cancelled") and record.submitter == node_id
            and bool(record.spec.output_dir))


class EndSummaryWriter:
    name = "end summaries"   # the daemon names its component tasks

    def __init__(self, manager: Any) -> None:
        self.manager = manager   # JobsManager: records, book(job_id), node_id, state_dir

    def write_due(self) -> list[Path]:
        written = []
        for record in list(self.manager.records.values()):
            if not needs_end_summary(record, self.manager.node_id):
                continue
            marker = JobPaths.of(self.manager.state_dir, record.job_id).root / MARKER
            target = own_path(self.manager.state_dir, record.job_id, "output_dir")  # never the record's path
            if marker.exists() or target is None:
                continue
            try:
                path = write_summary(target, record, self.manager.book(record.job_id))
            except OSError as exc:
                log.warning("job %s: cannot write its summary.json: %s", record.job_id, exc)
                marker.parent.mkdir(parents=True, exist_ok=True)
                marker.write_text(f"failed: {exc}\n")  # say it once, not every second
                continue
            marker.parent.mkdir(parents=True, exist_ok=True)
            marker.write_text(str(path) + "\n")
            log.info("job %s %s: summary in %s", record.job_id, record.status, path)
            written.append(path)
        return written

    async def run(self) -> None:
        while True:
            try:
                await asyncio.to_thread(self.write_due)
            except Exception:
                log.exception("end summaries failed; going on")
            # A plain sleep: wait_changed() clears the manager's shared event, which the watch streams rely on.
            await asyncio.sleep(POLL_S)
