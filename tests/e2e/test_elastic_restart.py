"""A member's daemon killed (with its workers) and restarted mid-job on the same state dir keeps its node id,
rejoins the job and takes part in its last round; the job ends exactly as a single-process run."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.e2e.conftest import (
    Cluster,
    check_outputs,
    kill_box,
    run_reference,
    submit,
    wait_replicated,
    wait_step,
    write_job,
)

# ~3 min: behind `make chaos`; its logic (resync vs a newer order, stale coordination) runs in-process in
# tests/unit/test_jobs_faults.py within `make test`.
pytestmark = [pytest.mark.slow, pytest.mark.chaos]

# Longer than the other scenarios: with warm workers the survivors recover in ~2 s and would finish a 30-step
# job before the restarted daemon is back, leaving nothing to rejoin.
STEPS = 120


@pytest.fixture(scope="module")
def long_reference(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path) -> Path:
    return run_reference(tmp_path_factory.mktemp("reference-long"), tiny_model_dir, max_steps=STEPS)


def test_restarted_daemon_rejoins_its_job(
        cluster: Cluster, tiny_model_dir: Path, long_reference: Path, tmp_path: Path) -> None:
    a = cluster.start("a", peers=[])
    b = cluster.start("b")
    c = cluster.start("c")
    cluster.wait_mesh([a, b, c])
    node_b = b.node_id
    out = tmp_path / "out"
    job_id = submit(cluster, a, write_job(tmp_path / "job.yaml", tiny_model_dir, out, max_steps=STEPS))
    wait_step([a, b, c], 3)
    wait_replicated([a, b, c], 3)
    kill_box(b)
    b2 = cluster.restart(b)
    assert b2.node_id == node_b
    job = cluster.wait_job(a, job_id, lambda j: j["status"] == "succeeded", 240, "the job to succeed")
    summary = check_outputs(out, long_reference, STEPS)
    last = summary["rounds"][-1]
    assert node_b in last["members"] and last["world_size"] == 3 and len(summary["rounds"]) >= 2
    assert last["resumed_from_step"] is not None and last["resumed_from_step"] >= 3
    mine = cluster.job(b2, job_id)  # the restarted daemon knows its job again
    assert mine["status"] == "succeeded" and job["rounds"][-1]["members"] == last["members"]
