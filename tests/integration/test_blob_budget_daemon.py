"""Issue 10 / 11: `p2pftd --blob-budget` reaches the daemon's store: a submit whose dataset does not fit is refused
in one line naming the box and the sizes. A real daemon and the real CLI."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.daemon_harness import BIN, Daemon, DaemonPool, make_cluster

pytestmark = pytest.mark.slow


def _p2pft(*args: str) -> list[str]:
    exe = BIN / "p2pft"
    return [*([str(exe)] if exe.exists() else [sys.executable, "-m", "p2pft.cli.main"]), *args]


def test_a_submit_past_the_blob_budget_is_refused_naming_box_and_sizes(tmp_path: Path, pool: DaemonPool) -> None:
    a = pool.add(Daemon(make_cluster(tmp_path, ["a"])["a"], name="small-box", extra=["--blob-budget", "1M"])).start()
    data = tmp_path / "data"
    data.mkdir()
    (data / "dataset_info.json").write_text('{"big": {"file_name": "big.json"}}')
    (data / "big.json").write_bytes(b"[" + b" " * (2 * 1024 * 1024) + b"]")   # 2 MiB: over the 1 MiB budget
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text('{"model_type": "llama"}')
    job = tmp_path / "job.yaml"
    job.write_text(yaml.safe_dump({
        "model_name_or_path": str(model), "finetuning_type": "lora", "dataset": "big", "dataset_dir": str(data),
        "template": "default", "max_steps": 10, "output_dir": str(tmp_path / "out"), "p2pft": {"global_batch_size": 4},
    }))
    done = subprocess.run(_p2pft("--state-dir", str(a.state_dir), "submit", "--detach", str(job)),
                          capture_output=True, text=True, timeout=120, env={**os.environ})
    assert done.returncode != 0, done.stdout
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, done.stderr
    assert "box small-box: blob store full" in lines[0] and "big.json needs 2.0 MiB" in lines[0], lines[0]
    assert "1.0 MiB budget" in lines[0] and "--blob-budget" in lines[0]
    assert a.alive()
