"""Job ids come from peers and name directories: only safe names get a place in the state dir."""

from pathlib import Path

import pytest

from p2pft.jobs.model import new_job_id
from p2pft.jobs.paths import JobPaths


def test_generated_job_ids_live_under_the_jobs_dir(tmp_path: Path) -> None:
    job_id = new_job_id()
    paths = JobPaths.of(tmp_path, job_id)
    assert paths.root == tmp_path / "jobs" / job_id


@pytest.mark.parametrize("job_id", ["..", "../etc", "a/../../b", "/abs", "", "a/b", ".hidden", "x" * 200, "a\x00b"])
def test_ids_that_could_escape_or_are_odd_are_refused(tmp_path: Path, job_id: str) -> None:
    with pytest.raises(ValueError, match="not a valid job id"):
        JobPaths.of(tmp_path, job_id)
