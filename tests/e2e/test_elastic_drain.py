"""`p2pft drain` on a member: the round checkpoints at the next step boundary, the member leaves, the others go
on in a new round from exactly that step: no step is computed twice, none is lost."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.e2e.conftest import STEPS, Cluster, check_outputs, cli, submit, wait_step, write_job

pytestmark = pytest.mark.slow


def test_drain_member_loses_no_step(
        cluster: Cluster, tiny_model_dir: Path, reference_adapter: Path, tmp_path: Path) -> None:
    a = cluster.start("a", peers=[])
    b = cluster.start("b")
    c = cluster.start("c")
    cluster.wait_mesh([a, b, c])
    out = tmp_path / "out"
    job_id = submit(cluster, a, write_job(tmp_path / "job.yaml", tiny_model_dir, out))
    wait_step([a, b, c], 3)
    drained = cli("drain", state_dir=b.state_dir, timeout=180)
    assert job_id in drained.stdout
    assert b.view()[b.node_id] == "draining"
    cluster.wait_job(a, job_id, lambda j: j["status"] == "succeeded", 240, "the job to succeed")
    summary = check_outputs(out, reference_adapter, STEPS)
    before, after = summary["rounds"][-2], summary["rounds"][-1]
    assert b.node_id in before["members"] and b.node_id not in after["members"] and after["world_size"] == 2
    assert after["resumed_from_step"] == before["last_step"]
    assert after["first_step"] == before["last_step"] + 1
    # No step computed twice: across the rounds' own metric lines every step appears once.
    per_round: dict[int, int] = {}
    for line in (a.state_dir / "jobs" / job_id / "lines.jsonl").read_text().splitlines():
        entry = json.loads(line)
        if entry["kind"] == "metrics" and entry["line"].get("kind") != "eval":
            per_round[entry["line"]["step"]] = per_round.get(entry["line"]["step"], 0) + 1
    assert sorted(per_round) == list(range(1, STEPS + 1)) and set(per_round.values()) == {1}
