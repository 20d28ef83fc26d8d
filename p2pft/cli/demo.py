"""`p2pft demo`: the product in a few minutes on one machine, nothing downloaded.

Default: a local three-daemon cluster on loopback (own state dirs and credentials, static peers, no mDNS)
trains the embedded demo job while the demo kills one box, drains another and starts the first one again;
it shows the progress and every round, ends with the summary, and stops everything it started.
`--local`: the single-box run (`p2pft run --nproc 2` of the same job), no daemon.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from p2pft.cli.main import CliError

DEMO_DIR = Path(__file__).resolve().parent.parent / "demo"
BOXES = ("box-a", "box-b", "box-c")
CLUSTER_JOB = {"max_steps": 90, "save_steps": 3, "learning_rate": 5.0e-3}  # long enough for three events


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("demo", help="three local daemons train while boxes die, drain and join",
                                   description="Start a throw-away three-daemon cluster on this box, train the "
                                               "embedded demo job, kill one box, drain another, bring one back, "
                                               "and summarise. --local: one box, no daemon.")
    parser.add_argument("--workdir", default=None, help="where the model, boxes and outputs go (default: a new "
                                                        "temporary dir for the cluster demo, ./demo-output with "
                                                        "--local)")
    parser.add_argument("--local", action="store_true", help="the single-box run: no daemons, no events")
    parser.add_argument("--nproc", type=int, default=2, help="with --local: worker processes (default 2)")
    parser.set_defaults(func=handle)


def write_demo_job(workdir: Path, **overrides: Any) -> Path:
    import yaml

    from p2pft.testing.tiny_model import build_tiny_model

    model_dir = workdir / "tiny-model"
    if not (model_dir / "config.json").is_file():
        print(f"p2pft demo: building a tiny model in {model_dir}", flush=True)
        build_tiny_model(model_dir)
    job = yaml.safe_load((DEMO_DIR / "demo_job.yaml").read_text())
    job.update({"model_name_or_path": str(model_dir), "dataset_dir": str(DEMO_DIR),
                "output_dir": str(workdir / "output"), **overrides})
    path = workdir / "demo_job.yaml"
    path.write_text(yaml.safe_dump(job, sort_keys=False))
    return path


def handle(args: argparse.Namespace) -> int:
    if args.nproc < 1:
        raise CliError(f"--nproc: must be >= 1, got {args.nproc}")
    if args.local:
        return run_local(Path(args.workdir or "demo-output").resolve(), args.nproc)
    from p2pft.cli.demo_cluster import run_cluster_demo

    workdir = Path(args.workdir).resolve() if args.workdir else Path(tempfile.mkdtemp(prefix="p2pft-demo-"))
    workdir.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(workdir / "output", ignore_errors=True)
    job_path = write_demo_job(workdir, **CLUSTER_JOB)
    return run_cluster_demo(workdir, job_path, BOXES)


def run_local(workdir: Path, nproc: int) -> int:
    from p2pft.cli.run import run_job, write_summary

    workdir.mkdir(parents=True, exist_ok=True)
    job_path = write_demo_job(workdir)
    shutil.rmtree(workdir / "output", ignore_errors=True)  # every demo starts fresh instead of resuming
    run_args = argparse.Namespace(job=str(job_path), nproc=nproc, output_dir=None, plan=None,
                                  max_micro_batch=None)
    started = time.time()
    code, spec = run_job(run_args)
    write_summary(Path(spec.output_dir), code, started, nproc)
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
    sys.stdout.flush()
    return 0
