"""`p2pft demo [--workdir DIR] [--nproc N]`: fine-tune a tiny local model on the bundled demo data.

Nothing is downloaded: a tiny random-init Llama is built locally, the embedded demo job is filled in with its
path and the bundled dataset, and the job runs like `p2pft run --nproc 2`.
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path
from typing import Any

from p2pft.cli.main import CliError

DEMO_DIR = Path(__file__).resolve().parent.parent / "demo"


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("demo", help="fine-tune a tiny local model on bundled data (no downloads)",
                                   description="Build a tiny model and fine-tune it with LoRA on this box.")
    parser.add_argument("--workdir", default="demo-output", help="where the model and outputs go (./demo-output)")
    parser.add_argument("--nproc", type=int, default=2, help="worker processes (default 2)")
    parser.set_defaults(func=handle)


def write_demo_job(workdir: Path) -> Path:
    import yaml

    from p2pft.testing.tiny_model import build_tiny_model

    model_dir = workdir / "tiny-model"
    if not (model_dir / "config.json").is_file():
        print(f"p2pft demo: building a tiny model in {model_dir}", flush=True)
        build_tiny_model(model_dir)
    job = yaml.safe_load((DEMO_DIR / "demo_job.yaml").read_text())
    job.update({"model_name_or_path": str(model_dir), "dataset_dir": str(DEMO_DIR),
                "output_dir": str(workdir / "output")})
    path = workdir / "demo_job.yaml"
    path.write_text(yaml.safe_dump(job, sort_keys=False))
    return path


def handle(args: argparse.Namespace) -> int:
    from p2pft.cli.run import run_job, write_summary

    workdir = Path(args.workdir).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    job_path = write_demo_job(workdir)
    shutil.rmtree(workdir / "output", ignore_errors=True)  # every demo starts fresh instead of resuming
    run_args = argparse.Namespace(job=str(job_path), nproc=args.nproc, output_dir=None, plan=None,
                                  max_micro_batch=None)
    started = time.time()
    code, spec = run_job(run_args)
    write_summary(Path(spec.output_dir), code, started, args.nproc)
    if code != 0:
        raise CliError(f"the demo run failed (exit {code}); see the output above", code=code)
    output = Path(spec.output_dir)
    losses = [json.loads(line)["loss"] for line in (output / "metrics.jsonl").read_text().splitlines()
              if "loss" in json.loads(line)]
    print(f"p2pft demo: loss {losses[0]:.3f} -> {losses[-1]:.3f} over {len(losses)} steps")
    print(f"p2pft demo: adapter in {output} (load with PeftModel.from_pretrained), "
          f"metrics in {output / 'metrics.jsonl'}")
    if not losses[-1] < losses[0]:
        raise CliError("the demo's loss did not fall; something is wrong with training")
    return 0
