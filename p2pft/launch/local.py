"""argv/env for a single-box run: `torchrun --standalone` of the training worker (`p2pft run`). Torch-free."""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from pathlib import Path


def local_torchrun_command(*, nproc: int, job_json: Path, plan_json: Path, run_dir: Path, node_id: str,
                           checkpoint_dir: Path | None = None, python: str = sys.executable,
                           base_env: Mapping[str, str] | None = None) -> tuple[list[str], dict[str, str]]:
    """`python -m torch.distributed.run` (= torchrun, without relying on the script being on PATH)."""
    argv = [
        python, "-m", "torch.distributed.run", "--standalone", "--nnodes", "1", "--nproc-per-node", str(nproc),
        "--max-restarts", "0", "-m", "p2pft.train",
        "--job", str(job_json), "--plan", str(plan_json), "--run-dir", str(run_dir),
    ]
    if checkpoint_dir is not None:
        argv += ["--checkpoint-dir", str(checkpoint_dir)]
    env = dict(os.environ if base_env is None else base_env)
    env["P2PFT_NODE_ID"] = node_id
    env["HF_HUB_OFFLINE"] = "1"
    env.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // max(1, nproc))))
    env.setdefault("PYTHONUNBUFFERED", "1")
    return argv, env
