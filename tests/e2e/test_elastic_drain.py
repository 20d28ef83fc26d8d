"""`p2pft drain` on a member, then SIGTERM to another member's daemon (its drain hook): each time the round
checkpoints at the next step boundary, the member leaves, the others go on in a new round from exactly that
step: no step is computed twice, none is lost."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import pytest

from tests.e2e.conftest import STEPS, Cluster, check_outputs, cli, newest_step_seen, submit, wait_step, write_job

# ~51 s: behind `make chaos` to keep `make test` near 20 min; make test keeps a drain in the cluster demo
# (tests/integration/test_demo.py) and the drain decisions in tests/unit/test_jobs_state.py and test_jobs_faults.py.
pytestmark = [pytest.mark.slow, pytest.mark.chaos]


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
    stopped_at = newest_step_seen([a, b, c])
    wait_step([a, c], stopped_at + 1)  # the world-2 round trains
    assert c.proc is not None
    os.killpg(c.proc.pid, signal.SIGTERM)  # the daemon's drain hook leaves the job the same way
    assert c.proc.wait(timeout=120) == 0
    cluster.wait_job(a, job_id, lambda j: j["status"] == "succeeded", 240, "the job to succeed")
    summary = check_outputs(out, reference_adapter, STEPS)
    rounds = summary["rounds"]
    assert [r["world_size"] for r in rounds[-3:]] == [3, 2, 1]
    assert b.node_id not in rounds[-2]["members"] and rounds[-1]["members"] == [a.node_id]
    for before, after in zip(rounds[-3:-1], rounds[-2:], strict=True):
        assert "drains" in after["reason"]
        assert after["first_step"] == before["last_step"] + 1 == after["resumed_from_step"] + 1
    # No step computed twice: across the rounds' own metric lines every step appears once.
    per_round: dict[int, int] = {}
    for line in (a.state_dir / "jobs" / job_id / "lines.jsonl").read_text().splitlines():
        entry = json.loads(line)
        if entry["kind"] == "metrics" and entry["line"].get("kind") != "eval":
            per_round[entry["line"]["step"]] = per_round.get(entry["line"]["step"], 0) + 1
    assert sorted(per_round) == list(range(1, STEPS + 1)) and set(per_round.values()) == {1}
