"""`p2pft export JOB|DIR [--step N] [--to DIR]`: a committed checkpoint step as a `checkpoint-N/` folder that
PEFT (`PeftModel.from_pretrained`) or transformers (`from_pretrained`) loads and LLaMA-Factory can export.

DIR: a `p2pft run` output_dir (its `checkpoints/`), a checkpoint dir itself (`step-N/` inside; give `--job`),
or a daemon's job dir; JOB: a job id (prefix) whose checkpoints this box's daemon holds in its state dir.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from p2pft.cli.main import CliError


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("export", help="a committed checkpoint step as a PEFT/HF checkpoint-N folder")
    parser.add_argument("source", metavar="JOB|DIR", help="output_dir, checkpoint dir, job dir or job id (prefix)")
    parser.add_argument("--step", type=int, help="the committed step to export (default: the newest)")
    parser.add_argument("--to", metavar="DIR", help="where the folder goes (default: <output_dir>/checkpoint-N)")
    parser.add_argument("--job", metavar="JOB_FILE", help="the job file the run was trained with (default: the "
                        "copy the run keeps: p2pft_job.json, run/JOB.json or the newest round's JOB.json)")
    parser.set_defaults(func=handle)


@dataclass(frozen=True)
class Source:
    root: Path             # where the default checkpoint-N goes and the run's files are
    checkpoint_dir: Path
    job_file: Path | None
    metrics: list[dict[str, Any]]


def _has_steps(directory: Path) -> bool:
    return any(child.name.startswith("step-") and child.is_dir() for child in directory.iterdir())


def _job_file(root: Path) -> Path | None:
    for candidate in (root / "p2pft_job.json", root / "run" / "JOB.json"):
        if candidate.is_file():
            return candidate
    rounds = sorted((p for p in (root / "rounds").glob("*/JOB.json") if p.parent.name.isdigit()),
                    key=lambda p: int(p.parent.name))
    return rounds[-1] if rounds else None


def _metrics(root: Path) -> list[dict[str, Any]]:
    from p2pft.formats.lf_outputs import read_metric_lines

    if (root / "metrics.jsonl").is_file():
        return read_metric_lines(root / "metrics.jsonl")
    if (root / "lines.jsonl").is_file():   # a daemon's job dir: every round's lines, merged as the job's outputs are
        from p2pft.jobs.outputs import LineBook

        book = LineBook.load(root / "lines.jsonl")
        return book.merged_metrics() + book.merged_evals()
    return []


def find_source(path: Path) -> Source:
    if (path / "checkpoints").is_dir():
        root, checkpoint_dir = path, path / "checkpoints"
    elif path.is_dir() and _has_steps(path):
        root, checkpoint_dir = path.parent, path
    else:
        raise CliError(f"JOB|DIR: {path} holds no p2pft checkpoints (no checkpoints/ and no step-N/ inside)")
    return Source(root, checkpoint_dir, _job_file(root), _metrics(root))


def job_dir(args: argparse.Namespace, prefix: str) -> Path:
    from p2pft.cli.connect import state_dir_of
    from p2pft.jobs.paths import JOBS_DIR

    jobs = state_dir_of(args) / JOBS_DIR
    matches = sorted(p for p in jobs.glob(f"{prefix}*") if p.is_dir()) if jobs.is_dir() else []
    if len(matches) != 1:
        what = "no job" if not matches else f"{len(matches)} jobs ({', '.join(p.name for p in matches[:3])})"
        raise CliError(f"JOB|DIR: {prefix!r} is not a directory, and {what} in {jobs} match it")
    return matches[0]


def load_spec(job_file: Path) -> Any:
    from p2pft.config.job import JobSpecError, load_job

    try:
        return load_job(job_file).spec   # YAML reads JSON too
    except JobSpecError as exc:
        raise CliError(f"--job: {job_file}: {exc}") from None


def choose_step(checkpoint_dir: Path, wanted: int | None) -> int:
    from p2pft.formats.checkpoint_index import committed_steps

    steps = committed_steps(checkpoint_dir)
    if not steps:
        raise CliError(f"{checkpoint_dir} holds no committed checkpoint")
    if wanted is None:
        return steps[-1]
    if wanted not in steps:
        raise CliError(f"--step {wanted}: not a committed step in {checkpoint_dir}; committed: "
                       f"{', '.join(str(s) for s in steps)}")
    return wanted


def handle(args: argparse.Namespace) -> int:
    path = Path(args.source)
    source = find_source(path if path.is_dir() else job_dir(args, args.source))
    job_file = Path(args.job) if args.job else source.job_file
    if job_file is None:
        raise CliError(f"no job file found next to {source.checkpoint_dir}; pass --job JOB_FILE (the job it trained)")
    spec = load_spec(job_file)
    step = choose_step(source.checkpoint_dir, args.step)
    dest = Path(args.to) if args.to else source.root / f"checkpoint-{step}"
    if dest.exists() and any(dest.iterdir()):
        if args.to is None and any((dest / name).is_file() for name in ("adapter_config.json", "config.json")):
            raise CliError(f"{dest} already holds step {step}'s model (the run writes checkpoint-N at each save): "
                           "use it as it is, or pass --to DIR for another copy")
        raise CliError(f"--to: {dest} exists and is not empty; choose another directory or remove it")
    from p2pft.train.checkpoint import CheckpointError
    from p2pft.train.export import export_step
    from p2pft.train.model import ModelLoadError

    try:
        export_step(source.checkpoint_dir, step, spec, dest, source.metrics)
    except (CheckpointError, ModelLoadError) as exc:
        raise CliError(str(exc)) from None
    what = "adapter (PeftModel.from_pretrained)" if spec.finetuning_type == "lora" else "model (from_pretrained)"
    print(f"step {step} -> {dest}: {what}, tokenizer, trainer_state.json" if (dest / "trainer_state.json").is_file()
          else f"step {step} -> {dest}: {what}, tokenizer")
    return 0
