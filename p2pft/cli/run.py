"""`p2pft run JOB.yaml [--nproc N] [--output-dir DIR] [--plan 12,4] [--max-micro-batch M]`: train on this box.

One box, no daemon: the job is validated, JOB.json and PLAN.json go into `<output_dir>/run/`, and
`torchrun --standalone` runs the worker as a real subprocess whose output streams through. The worker resumes
by itself from the newest committed checkpoint in `<output_dir>/checkpoints`.
"""

from __future__ import annotations

import argparse
import json
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from p2pft.cli.main import CliError
from p2pft.launch.contract import EXIT_STOPPED_ON_REQUEST

RUN_SUBDIR = "run"


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("run", help="train a job on this box only (torchrun, no daemon)",
                                   description="Train JOB.yaml on this box with N worker processes.")
    add_run_arguments(parser)
    parser.set_defaults(func=handle)


def add_run_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("job", metavar="JOB.yaml", help="the job file")
    parser.add_argument("--nproc", type=int, default=1, help="worker processes on this box (default 1)")
    parser.add_argument("--output-dir", metavar="DIR", help="overrides output_dir of the job")
    parser.add_argument("--plan", metavar="SAMPLES", help="per-rank samples of each global batch, e.g. 12,4")
    parser.add_argument("--max-micro-batch", type=int, metavar="M",
                        help="largest micro-batch per rank (default: p2pft.micro_batch_size or "
                             "per_device_train_batch_size)")


def parse_plan_arg(text: str | None, nproc: int) -> list[int] | None:
    if text is None:
        return None
    try:
        samples = [int(part) for part in text.split(",")]
    except ValueError:
        raise CliError(f"--plan {text!r}: give one integer per process, e.g. --plan 12,4") from None
    if len(samples) != nproc:
        raise CliError(f"--plan {text!r} lists {len(samples)} ranks but --nproc is {nproc}; give one count each")
    return samples


def prepare_run(args: argparse.Namespace) -> tuple[Any, Path, Path, Path, str]:
    """Validate the job, write JOB.json and PLAN.json; returns (spec, run_dir, job_json, plan_json, node_id)."""
    from p2pft.config.job import JobSpecError, check_job_resources, job_to_dict, load_job
    from p2pft.planning.batch_plan import BatchPlanError, RankCapacity, explicit_plan, plan_batch, plan_to_json

    if args.nproc < 1:
        raise CliError(f"--nproc must be >= 1, got {args.nproc}")
    if not Path(args.job).is_file():
        raise CliError(f"job file {args.job} does not exist; pass the path of a job YAML file")
    try:
        loaded = load_job(args.job)
    except JobSpecError as exc:
        raise CliError(str(exc)) from None
    except OSError as exc:
        raise CliError(f"cannot read job file {args.job}: {exc.strerror}") from None
    for warning in loaded.warnings:
        print(f"p2pft: warning: {warning}", file=sys.stderr)
    spec = loaded.spec
    missing = check_job_resources(spec)
    if missing:  # before any worker starts: one line instead of a failure per rank
        raise CliError(missing[0])
    if args.output_dir:
        spec = spec.model_copy(update={"output_dir": str(Path(args.output_dir).resolve())})
    max_micro = args.max_micro_batch or spec.p2pft.micro_batch_size or spec.per_device_train_batch_size
    if max_micro < 1:
        raise CliError(f"--max-micro-batch must be >= 1, got {max_micro}")
    node_id = socket.gethostname()
    ranks = [RankCapacity(node_id, local_rank, 1.0, max_micro) for local_rank in range(args.nproc)]
    samples = parse_plan_arg(args.plan, args.nproc)
    try:
        plan = (explicit_plan(spec.p2pft.global_batch_size, ranks, samples) if samples is not None
                else plan_batch(spec.p2pft.global_batch_size, ranks, "uniform"))
    except BatchPlanError as exc:
        raise CliError(f"batch plan: {exc}") from None
    run_dir = Path(spec.output_dir) / RUN_SUBDIR
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "stop-request").unlink(missing_ok=True)  # a stale request must not stop a new run
    job_json, plan_json = run_dir / "JOB.json", run_dir / "PLAN.json"
    job_json.write_text(json.dumps(job_to_dict(spec), indent=1))
    plan_json.write_text(json.dumps(plan_to_json(plan), indent=1))
    return spec, run_dir, job_json, plan_json, node_id


def run_job(args: argparse.Namespace) -> tuple[int, Any]:
    from p2pft.formats.checkpoint_index import newest_committed
    from p2pft.launch.local import local_torchrun_command

    previous = _previous_job(args)
    spec, run_dir, job_json, plan_json, node_id = prepare_run(args)
    checkpoint_dir = Path(spec.output_dir) / "checkpoints"
    _apply_rerun_policy(spec, previous, json.loads(job_json.read_text()), checkpoint_dir)
    resume = newest_committed(checkpoint_dir)
    if resume is not None:
        print(f"p2pft: resuming from step {resume}", flush=True)
    argv, env = local_torchrun_command(nproc=args.nproc, job_json=job_json, plan_json=plan_json,
                                       run_dir=run_dir, node_id=node_id)
    events = run_dir / "events.jsonl"
    events_offset = events.stat().st_size if events.is_file() else 0
    # Same process group as ours: Ctrl-C reaches torchrun, which stops its workers.
    process = subprocess.Popen(argv, env=env)
    try:
        code = process.wait()
    except KeyboardInterrupt:
        process.wait()
        raise
    if code != 0 and _stopped_on_request(events, events_offset):
        code = EXIT_STOPPED_ON_REQUEST  # torchrun reports any non-zero worker exit, 75 included, as 1
    return code, spec


def _previous_job(args: argparse.Namespace) -> dict[str, Any] | None:
    """The JOB.json of the run already in the output_dir, read before this run replaces it."""
    from p2pft.config.job import JobSpecError, load_job

    try:
        output_dir = Path(args.output_dir).resolve() if args.output_dir else Path(load_job(args.job).spec.output_dir)
        return json.loads((output_dir / RUN_SUBDIR / "JOB.json").read_text())
    except (JobSpecError, OSError, ValueError):
        return None  # no previous run (or an unreadable job file, which prepare_run reports)


def _apply_rerun_policy(spec: Any, previous: dict[str, Any] | None, current: dict[str, Any],
                        checkpoint_dir: Path) -> None:
    from p2pft.config.rerun import decide_rerun
    from p2pft.formats.checkpoint_index import newest_committed

    decision = decide_rerun(previous, current, has_checkpoint=newest_committed(checkpoint_dir) is not None,
                            overwrite=bool(spec.overwrite_output_dir), output_dir=str(spec.output_dir))
    if decision.action == "refuse":
        raise CliError(decision.message)
    if decision.action == "fresh" and decision.message:
        print(f"p2pft: {decision.message}", flush=True)
        shutil.rmtree(checkpoint_dir, ignore_errors=True)
        from p2pft.formats.lf_outputs import OUTPUT_FILES  # torch-free

        for name in ("metrics.jsonl", "ledger.jsonl", *OUTPUT_FILES):
            (Path(spec.output_dir) / name).unlink(missing_ok=True)
        from p2pft.formats.checkpoint_folders import remove_all

        remove_all(Path(spec.output_dir))   # the old run's checkpoint-N folders go with its checkpoints


def _stopped_on_request(events: Path, offset: int) -> bool:
    if not events.is_file():
        return False
    with events.open("rb") as handle:
        handle.seek(offset)
        new_lines = handle.read().decode(errors="replace").splitlines()
    for line in new_lines:
        try:
            if json.loads(line).get("event") == "stopped_on_request":
                return True
        except ValueError:
            continue
    return False


def write_summary(output_dir: Path, code: int, started_unix: float, nproc: int) -> dict[str, Any]:
    """summary.json for a single-box run (the daemon's coordinator writes a richer one for cluster jobs)."""
    from p2pft.formats.checkpoint_index import committed_steps

    steps = []
    metrics = output_dir / "metrics.jsonl"
    if metrics.is_file():
        for line in metrics.read_text().splitlines():
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if "loss" in record:
                steps.append(record)
    status = {0: "finished", EXIT_STOPPED_ON_REQUEST: "stopped"}.get(code, "failed")
    summary = {
        "status": status, "exit_code": code, "steps": steps[-1]["step"] if steps else 0,
        "epochs": steps[-1]["epoch"] + 1 if steps else 0, "final_loss": steps[-1]["loss"] if steps else None,
        "rounds": [{"started": started_unix, "world_size": nproc, "reason": "p2pft run"}],
        "checkpoint_steps": committed_steps(output_dir / "checkpoints", verify=False),
    }
    (output_dir / "summary.json").write_text(json.dumps(summary, indent=1))
    return summary


def handle(args: argparse.Namespace) -> int:
    started = time.time()
    code, spec = run_job(args)
    write_summary(Path(spec.output_dir), code, started, args.nproc)
    if code == 0:
        print(f"p2pft: finished; outputs in {spec.output_dir}")
    elif code == EXIT_STOPPED_ON_REQUEST:
        print(f"p2pft: stopped on request after a checkpoint; run again to resume ({spec.output_dir})")
    else:
        print(f"p2pft: training failed (exit {code}); run again to resume from the last checkpoint",
              file=sys.stderr)
    return code
