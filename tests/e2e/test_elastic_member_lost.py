"""kill -9 of a member's box (daemon, agent, workers) mid-run: a new round on the survivors finishes the job
exactly (the same adapter as a single-process run), every step once."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.e2e.conftest import (
    STEPS,
    Cluster,
    check_outputs,
    kill_box,
    newest_step_seen,
    submit,
    wait_replicated,
    wait_step,
    write_job,
)

pytestmark = pytest.mark.slow


def test_member_killed_mid_run_survivors_finish_exactly(
        cluster: Cluster, tiny_model_dir: Path, reference_adapter: Path, tmp_path: Path) -> None:
    a = cluster.start("a", peers=[])
    b = cluster.start("b")
    c = cluster.start("c")
    cluster.wait_mesh([a, b, c])
    out = tmp_path / "out"
    job_id = submit(cluster, a, write_job(tmp_path / "job.yaml", tiny_model_dir, out))
    wait_step([a, b, c], 3)
    replicated = wait_replicated([a, c], 3)
    killed_at = newest_step_seen([a, b, c])
    kill_box(b)
    job = cluster.wait_job(a, job_id, lambda j: j["status"] == "succeeded", 180, "the job to succeed")
    summary = check_outputs(out, reference_adapter, STEPS)
    last = summary["rounds"][-1]
    assert b.node_id not in last["members"] and last["world_size"] == 2
    assert last["resumed_from_step"] is not None and last["resumed_from_step"] >= replicated
    assert killed_at < STEPS and len(job["rounds"]) >= 2
    assert last["recovery_s"] is not None and last["recovery_s"] < 60
