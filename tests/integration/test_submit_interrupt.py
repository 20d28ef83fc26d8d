"""Ctrl-C on `p2pft submit` (following its job) stops following, not the job: a real daemon, a real submit
process, a real SIGINT."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.daemon_harness import BIN, Daemon, DaemonPool, make_cluster, wait_until

pytestmark = pytest.mark.slow
DEMO_DATA = Path(__file__).resolve().parents[2] / "p2pft" / "demo"


def _p2pft(*args: str) -> list[str]:
    exe = BIN / "p2pft"
    return [*([str(exe)] if exe.exists() else [sys.executable, "-m", "p2pft.cli.main"]), *args]


def _job_status(state_dir: Path, job_id: str) -> str:
    done = subprocess.run(_p2pft("--state-dir", str(state_dir), "jobs", "--json"), capture_output=True, text=True,
                          timeout=60, check=True)
    records = {job["job_id"]: job for job in json.loads(done.stdout)["jobs"]}
    return str(records[job_id]["status"]) if job_id in records else ""


def test_ctrl_c_leaves_the_job_running_and_says_how_to_follow_or_cancel_it(tmp_path: Path, pool: DaemonPool) -> None:
    a = pool.add(Daemon(make_cluster(tmp_path, ["a"])["a"])).start()
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text('{"model_type": "llama"}')  # never loaded: the job waits for a 2nd box
    job = tmp_path / "job.yaml"
    job.write_text(yaml.safe_dump({
        "model_name_or_path": str(model), "finetuning_type": "lora", "dataset": "p2pft_demo",
        "dataset_dir": str(DEMO_DATA), "template": "default", "max_steps": 10, "output_dir": str(tmp_path / "out"),
        "p2pft": {"global_batch_size": 4, "min_nodes": 2},
    }))
    submit = subprocess.Popen(_p2pft("--state-dir", str(a.state_dir), "submit", str(job)),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert submit.stdout is not None
        job_id = submit.stdout.readline().strip()
        assert job_id.startswith("job-"), (job_id, a.log_tail())
        wait_until(lambda: _job_status(a.state_dir, job_id) == "waiting", 30, what="the job to wait for a 2nd box")
        assert submit.poll() is None  # still following
        submit.send_signal(signal.SIGINT)
        out, err = submit.communicate(timeout=30)
    finally:
        if submit.poll() is None:
            submit.kill()
    assert submit.returncode == 130, (out, err)
    assert "Traceback" not in err, err
    assert f"job {job_id} keeps running" in err
    assert f"p2pft logs {job_id} -f" in err and f"p2pft cancel {job_id}" in err
    assert _job_status(a.state_dir, job_id) == "waiting"  # the daemon still has it, untouched

    cancelled = subprocess.run(_p2pft("--state-dir", str(a.state_dir), "cancel", job_id), capture_output=True,
                               text=True, timeout=60, check=False)  # the command it printed works
    assert cancelled.returncode == 0, cancelled.stderr
    wait_until(lambda: _job_status(a.state_dir, job_id) == "cancelled", 15, what="the job to be cancelled")
