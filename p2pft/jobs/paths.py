"""Where a job's files live inside a daemon's state dir (everything received from peers lands under here)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

JOBS_DIR = "jobs"
RECORD_FILE = "record.json"
LINES_FILE = "lines.jsonl"
# Job ids arrive from peers and become directory names: nothing that could climb out of <state-dir>/jobs.
_JOB_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")


def valid_job_id(job_id: str) -> bool:
    return bool(_JOB_ID.fullmatch(job_id)) and ".." not in job_id


@dataclass(frozen=True)
class JobPaths:
    root: Path                      # <state-dir>/jobs/<job-id>

    @classmethod
    def of(cls, state_dir: Path, job_id: str) -> JobPaths:
        if not valid_job_id(job_id):
            raise ValueError(f"job id {job_id[:80]!r} is not a valid job id (letters, digits, '.', '_', '-')")
        return cls(Path(state_dir) / JOBS_DIR / job_id)

    @property
    def record(self) -> Path:
        return self.root / RECORD_FILE

    @property
    def lines(self) -> Path:
        return self.root / LINES_FILE     # metric/ledger lines collected from every member, tagged by round

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def model(self) -> Path:
        return self.root / "model"

    @property
    def checkpoints(self) -> Path:
        return self.root / "checkpoints"

    @property
    def outputs(self) -> Path:
        return self.root / "output"       # final outputs when this box is not the submitting one

    @property
    def store_dir(self) -> Path:
        return self.root / "store"

    def round_dir(self, round_number: int) -> Path:
        return self.root / "rounds" / str(round_number)

    def round_output(self, round_number: int) -> Path:
        return self.round_dir(round_number) / "output"
