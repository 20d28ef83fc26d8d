"""A third daemon started mid-run joins the running job at the next round: the round stops at a step
boundary with a checkpoint (no step lost), the newcomer gets the dataset and the checkpoint, world 3 goes on."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.e2e.conftest import STEPS, Cluster, check_outputs, submit, wait_step, write_job

# ~66 s: behind `make chaos` to keep `make test` near 20 min; make test keeps a join in the cluster demo
# (tests/integration/test_demo.py) and exact maths across a plan change (test_train_exact).
pytestmark = [pytest.mark.slow, pytest.mark.chaos]


def test_third_daemon_joins_running_job(
        cluster: Cluster, tiny_model_dir: Path, reference_adapter: Path, tmp_path: Path) -> None:
    a = cluster.start("a", peers=[])
    b = cluster.start("b")
    cluster.wait_mesh([a, b])
    out = tmp_path / "out"
    job_id = submit(cluster, a, write_job(tmp_path / "job.yaml", tiny_model_dir, out))
    wait_step([a, b], 2)
    c = cluster.start("c")
    job = cluster.wait_job(a, job_id, lambda j: j["status"] == "succeeded", 240, "the job to succeed")
    summary = check_outputs(out, reference_adapter, STEPS)
    first, last = summary["rounds"][0], summary["rounds"][-1]
    assert first["world_size"] == 2 and c.node_id not in first["members"]
    assert last["world_size"] == 3 and c.node_id in last["members"] and "joins" in last["reason"]
    # zero steps lost: the new round resumed from the step the previous round stopped at
    assert last["resumed_from_step"] == summary["rounds"][-2]["last_step"]
    assert (c.state_dir / "jobs" / job_id / "data" / "dataset_info.json").is_file()  # shipped, inside the state dir
    assert job["status"] == "succeeded"
