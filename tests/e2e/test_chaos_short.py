"""The chaos campaign in brief (inside `make test`): one job on three real daemons (loopback), two faults drawn
from a fixed seed (kill -9 of a member's daemon, restarted; kill -9 of a member's workers), then the campaign's
checks. The long campaign (`make chaos`, bench/chaos_campaign.py) runs every kind of fault, many jobs.

The job is the e2e scenarios' job (30 steps, save_steps 1) with `save_total_limit` and `max_nodes` set, neither
of which changes the maths: the e2e session's reference run serves."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.chaos import plan
from tests.chaos.job import SAVE_TOTAL_LIMIT, JobSettings, run_job
from tests.e2e.conftest import STEPS

pytestmark = pytest.mark.slow
SEED = 1   # kill_daemon, then kill_workers


def test_a_job_survives_two_seeded_faults_with_nothing_lost_or_left(
        tiny_model_dir: Path, reference_adapter: Path, tmp_path: Path) -> None:
    settings = JobSettings(seed=SEED, index=0, faults=2, steps=STEPS, kinds=(plan.KILL_DAEMON, plan.KILL_WORKERS),
                           netns=False, tmpfs_mib=0, budget_s=300, recovery_timeout_s=120)
    result = run_job(tmp_path / "job", tiny_model_dir, reference_adapter, settings, log=lambda _: None)
    done = [f for f in result["faults"] if "skipped" not in f]
    assert [f["kind"] for f in done] == [plan.KILL_DAEMON, plan.KILL_WORKERS], result["faults"]
    assert result["status"] == "succeeded", (result["message"], result["stuck"])
    assert all(f["recovered_s"] is not None for f in done), done
    assert result["samples"]["samples_lost"] == 0 and result["samples"]["samples_duplicated"] == 0, result["samples"]
    assert result["samples"]["steps_in_ledger"] == STEPS and result["samples"]["metrics_steps_missing"] == 0
    assert result["trained"]["samples_lost"] == 0 and result["trained"]["samples_duplicated"] == 0
    assert result["losses"]["losses_off"] == 0, result["losses"]
    assert result["loads"]["checkpoint_loads"] >= 1 and result["loads"]["loads_never_committed"] == 0, result["loads"]
    assert result["adapter_max_diff"] is not None and result["adapter_max_diff"] < 1e-5
    assert [o for f in done for o in f["orphans"]] == [] and result["orphans_at_stop"] == []
    assert result["orphans_after"] == [] and result["crashes"] == []
    assert all(not files for files in result["partial_files"].values()), result["partial_files"]
    # an ended job keeps its retained checkpoints (and at most the newest complete one besides), nothing more
    assert all(d["checkpoint_steps"] <= SAVE_TOTAL_LIMIT + 1 for d in result["disk"].values()), result["disk"]
    assert all(d["data_model_copies"] == 0 and d["round_outputs"] == 0 for d in result["disk"].values())
