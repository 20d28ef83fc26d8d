"""kill -9 of the coordinator's box (the submitting one: daemon, store, agent, workers) mid-run: the survivors
agree on a new coordinator, which starts a new round on a new store and finishes the job with outputs on its
own box; the submitting box, back again, pulls them with `p2pft fetch`."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.e2e.conftest import (
    STEPS,
    Cluster,
    check_outputs,
    cli,
    kill_box,
    newest_step_seen,
    submit,
    wait_replicated,
    wait_step,
    write_job,
)

pytestmark = pytest.mark.slow


def test_coordinator_killed_survivors_take_over_and_outputs_come_back(
        cluster: Cluster, tiny_model_dir: Path, reference_adapter: Path, tmp_path: Path) -> None:
    a = cluster.start("a", peers=[])
    b = cluster.start("b")
    c = cluster.start("c")
    cluster.wait_mesh([a, b, c])
    out = tmp_path / "out"
    job_id = submit(cluster, a, write_job(tmp_path / "job.yaml", tiny_model_dir, out))
    wait_step([a, b, c], 3)
    replicated = wait_replicated([b, c], 3)
    killed_at = newest_step_seen([a, b, c])
    kill_box(a)
    job = cluster.wait_job(b, job_id, lambda j: j["status"] == "succeeded", 240, "the job to succeed")
    assert job["coordinator"] in (b.node_id, c.node_id) and job["term"] >= 1
    assert "coordinator" in job["rounds"][-1]["reason"] or a.node_id in job["rounds"][-1]["reason"]
    assert not (out / "adapter_model.safetensors").exists()  # the submitting box was gone
    a2 = cluster.restart(a)
    fetched = cli("fetch", job_id, state_dir=a2.state_dir, timeout=120)
    assert str(out) in fetched.stdout
    summary = check_outputs(out, reference_adapter, STEPS)
    last = summary["rounds"][-1]
    assert a.node_id not in last["members"] and last["world_size"] == 2
    assert last["coordinator"] == job["coordinator"] and last["resumed_from_step"] >= replicated
    assert killed_at < STEPS, "the kill came after the last step: nothing was recovered"
    assert last["first_step"] == last["resumed_from_step"] + 1
