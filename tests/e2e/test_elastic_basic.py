"""Submit -> rounds on real daemons -> the job succeeds with outputs on the submitting box."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.daemon_harness import wait_until
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
    logs = cli("logs", job_id, state_dir=a.state_dir).stdout.splitlines()
    assert logs[0].startswith("round 0: job submitted") and logs[-1].startswith(f"job {job_id} succeeded")
    assert len([line for line in logs if line.startswith("step ")]) == STEPS  # readable; `--json` gives the raw lines


def test_job_waits_for_min_nodes_visibly_and_can_be_cancelled(cluster: Cluster, tiny_model_dir: Path,
                                                              tmp_path: Path) -> None:
    import yaml

    a = cluster.start("a", peers=[])
    b = cluster.start("b")
    cluster.wait_mesh([a, b])
    job = write_job(tmp_path / "job.yaml", tiny_model_dir, tmp_path / "out")
    data = yaml.safe_load(job.read_text())
    data["p2pft"].update({"min_nodes": 3, "max_nodes": None})
    job.write_text(yaml.safe_dump(data))
    job_id = cli("submit", str(job), "--detach", state_dir=a.state_dir).stdout.split()[0]
    waiting = cluster.wait_job(a, job_id, lambda j: "min_nodes" in j["message"], 30, "the job to wait")
    assert waiting["status"] == "waiting" and "2 of 3 min_nodes" in waiting["message"]
    assert "waiting" in cli("jobs", state_dir=a.state_dir).stdout
    cancelled = cli("cancel", job_id, state_dir=b.state_dir, check=False)  # not the coordinator: forwarded
    assert cancelled.returncode != 0 and "no job" in cancelled.stderr  # b never took part: it does not know it
    assert "cancelled" in cli("cancel", job_id, state_dir=a.state_dir).stdout
    assert cluster.job(a, job_id)["status"] == "cancelled"
    assert "cancelled" in cli("logs", job_id, state_dir=a.state_dir).stdout
    # A cancelled job still leaves its summary where the user asked for outputs (the daemon's end-summary loop).
    summary_file = tmp_path / "out" / "summary.json"
    wait_until(lambda: summary_file.is_file(), 15, what="summary.json of the cancelled job")
    summary = json.loads(summary_file.read_text())
    assert summary["status"] == "cancelled" and summary["job_id"] == job_id
