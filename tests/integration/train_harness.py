"""Shared helpers for the training integration tests: a job file, a real `p2pft run` subprocess, outputs."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import psutil
import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
DEMO_DATA = REPO_ROOT / "p2pft" / "demo"
# Not `-m p2pft.cli.main`: run as __main__, that module's CliError would not be the one the commands raise.
P2PFT_CLI = (sys.executable, "-c", "import sys; from p2pft.cli.main import main; sys.exit(main())")


def write_job(path: Path, model_dir: Path, output_dir: Path, **overrides: Any) -> Path:
    """A fp32, dropout-free LoRA job on the bundled demo data (96 samples: 6 steps per epoch at batch 16)."""
    elastic = {"global_batch_size": 16, "sample_ledger": True, **overrides.pop("p2pft", {})}
    job: dict[str, Any] = {
        "model_name_or_path": str(model_dir), "finetuning_type": "lora", "lora_rank": 4, "lora_alpha": 8,
        "lora_dropout": 0.0, "lora_target": "all", "dataset": "p2pft_demo", "dataset_dir": str(DEMO_DATA),
        "template": "default", "cutoff_len": 64, "learning_rate": 1.0e-2, "max_steps": 8,
        "lr_scheduler_type": "cosine", "warmup_steps": 2, "weight_decay": 0.01, "logging_steps": 1,
        "save_steps": 2, "output_dir": str(output_dir), "seed": 7, "p2pft": elastic, **overrides,
    }
    if job["finetuning_type"] == "full":
        job = {key: value for key, value in job.items() if not key.startswith("lora_")}
    path.write_text(yaml.safe_dump(job))
    return path


def start_run(job: Path, *, nproc: int, plan: Sequence[int] | None = None, max_micro_batch: int | None = None,
              env: Mapping[str, str] | None = None, log: Path) -> subprocess.Popen[bytes]:
    argv = [*P2PFT_CLI, "run", str(job), "--nproc", str(nproc)]
    if plan is not None:
        argv += ["--plan", ",".join(str(x) for x in plan)]
    if max_micro_batch is not None:
        argv += ["--max-micro-batch", str(max_micro_batch)]
    full_env = {**os.environ, "OMP_NUM_THREADS": "1", **(env or {})}
    with log.open("wb") as out:  # its own session: teardown kills torchrun and every worker with it
        return subprocess.Popen(argv, env=full_env, stdout=out, stderr=subprocess.STDOUT, cwd=REPO_ROOT,
                                start_new_session=True)


def kill_group(process: subprocess.Popen[bytes]) -> None:
    """Kill the whole session, even after `p2pft run` exited: a worker must never outlive its test."""
    # torchrun starts each worker in a session of its own, so killing our session alone would orphan them.
    try:
        descendants = psutil.Process(process.pid).children(recursive=True)
    except psutil.Error:
        descendants = []
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    for child in descendants:
        with contextlib.suppress(psutil.Error):
            child.kill()
    process.wait(timeout=30)


def run(job: Path, *, nproc: int, log: Path, timeout: float = 120, **kwargs: Any) -> tuple[int, str]:
    """Run `p2pft run` to the end; returns (exit code, its output)."""
    process = start_run(job, nproc=nproc, log=log, **kwargs)
    try:
        code = process.wait(timeout=timeout)
    finally:
        kill_group(process)
    return code, log.read_text(errors="replace")


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def step_losses(output_dir: Path) -> dict[int, float]:
    return {r["step"]: r["loss"] for r in read_jsonl(output_dir / "metrics.jsonl") if "loss" in r}


def adapter_weights(output_dir: Path) -> dict[str, Any]:
    from safetensors.torch import load_file

    return load_file(str(output_dir / "adapter_model.safetensors"))


def max_weight_diff(a: Path, b: Path) -> float:
    wa, wb = adapter_weights(a), adapter_weights(b)
    assert set(wa) == set(wb) and wa
    return max(float((wa[k] - wb[k]).abs().max()) for k in wa)
