"""Submit -> rounds on real daemons -> the job succeeds with outputs on the submitting box."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.e2e.conftest import STEPS, Cluster, check_outputs, cli, write_job

pytestmark = pytest.mark.slow


def test_submit_runs_on_three_daemons_and_matches_single_process_run(
        cluster: Cluster, tiny_model_dir: Path, reference_adapter: Path, tmp_path: Path) -> None:
    a = cluster.start("a", peers=[])
    b = cluster.start("b")
    c = cluster.start("c")
    cluster.wait_mesh([a, b, c])
    out = tmp_path / "out"
    job = write_job(tmp_path / "job.yaml", tiny_model_dir, out, max_steps=STEPS)
    done = cli("submit", str(job), state_dir=a.state_dir, timeout=240, check=False)
    assert done.returncode == 0, f"{done.stderr[-2000:]}\n{cluster.logs_tail()}"
    job_id = done.stdout.split()[0]
    record = cluster.job(a, job_id)
    assert record["status"] == "succeeded"
    assert record["rounds"][0]["members"] and len(record["rounds"][0]["members"]) == 3
    summary = check_outputs(out, reference_adapter, STEPS)
    assert summary["rounds"][0]["world_size"] == 3
    listed = cli("jobs", state_dir=a.state_dir).stdout
    assert job_id in listed and "succeeded" in listed
