"""What this box's own user submitted: the only source of paths outside the state dir.

A job record travels between boxes (orders, shares, GetRecord) and any member could forge one naming this box
as its submitter. So the paths a job may use outside `<state-dir>/jobs/<id>` on this box (its `output_dir`, its
local `dataset_dir`) are read from `<state-dir>/submissions/<job-id>.json`, written here at submit time and
never from the wire; a job submitted elsewhere keeps its outputs in the state dir.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from p2pft.jobs.paths import JobPaths

SUBMISSIONS_DIR = "submissions"   # beside jobs/, out of reach of every tree a peer's manifest lays out
KEPT = ("output_dir", "dataset_dir", "model_name_or_path")


def submission_file(state_dir: Path, job_id: str) -> Path:
    JobPaths.of(state_dir, job_id)   # the same job id rules (raises ValueError)
    return Path(state_dir) / SUBMISSIONS_DIR / f"{job_id}.json"


def record_submission(state_dir: Path, job_id: str, spec: dict[str, Any]) -> None:
    """At submit time, on the submitting box: remember the spec's own paths."""
    path = submission_file(state_dir, job_id)
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps({key: spec.get(key) for key in KEPT if isinstance(spec.get(key), str)}))
    os.chmod(tmp, 0o600)
    tmp.replace(path)


def own_path(state_dir: Path, job_id: str, key: str) -> Path | None:
    """`key` (output_dir, dataset_dir, ...) as this box's user submitted it; None when submitted elsewhere."""
    try:
        data = json.loads(submission_file(state_dir, job_id).read_text())
    except (OSError, ValueError):
        return None
    value = data.get(key) if isinstance(data, dict) else None
    return Path(value) if isinstance(value, str) and value else None


def output_target(state_dir: Path, job_id: str) -> Path:
    """Where this box puts a finished job's outputs: the submitted output_dir for its own user's jobs, else the
    job's directory in the state dir (whatever the record says)."""
    return own_path(state_dir, job_id, "output_dir") or JobPaths.of(state_dir, job_id).outputs
