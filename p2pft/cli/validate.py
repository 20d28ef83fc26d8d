"""`p2pft validate JOB.yaml [--json]`: check a job file and this box's datasets/model, without training."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from p2pft.cli.main import CliError


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "validate",
        help="check a job file (keys, types, datasets, model) without running it",
        description="Validate a LLaMA-Factory style job file with a p2pft: section, and check that this box "
        "has its datasets and model. Prints warnings for ignored keys and a summary; exit 1 on the first error.",
    )
    parser.add_argument("job", metavar="JOB.yaml", help="the job file")
    parser.add_argument("--json", action="store_true", help="print the validated job as JSON")
    parser.set_defaults(func=handle)


def summary_line(spec: Any) -> str:
    """`ok: ...` summary of a validated JobSpec (what will actually run)."""
    elastic = spec.p2pft
    method = spec.finetuning_type
    if method == "lora":
        method += f" (rank {spec.lora_rank}, alpha {spec.lora_alpha}, target {','.join(spec.lora_target)})"
    length = f"{spec.max_steps} steps" if spec.max_steps is not None else f"{spec.num_train_epochs:g} epochs"
    nodes = f"{elastic.min_nodes}..{elastic.max_nodes if elastic.max_nodes is not None else 'any'} nodes"
    precision = "bf16" if spec.bf16 else "fp16" if spec.fp16 else "fp32"
    return (
        f"model {spec.model_name_or_path}; {method}; datasets {','.join(spec.dataset)}; "
        f"global batch {elastic.global_batch_size}; {length}; lr {spec.learning_rate:g} {spec.lr_scheduler_type}; "
        f"{precision}; {nodes}; output {spec.output_dir}"
    )


def handle(args: argparse.Namespace) -> int:
    from p2pft.config.job import JobSpecError, check_job_resources, job_to_dict, load_job

    try:
        loaded = load_job(args.job)
    except JobSpecError as exc:
        _print_json_failure(args, str(exc))
        raise CliError(f"{args.job}: {exc}") from None
    problems = check_job_resources(loaded.spec)
    if problems:
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        _print_json_failure(args, problems[0] + more)
        raise CliError(f"{args.job}: {problems[0]}{more}")
    for warning in loaded.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    if args.json:
        print(json.dumps({"ok": True, "warnings": loaded.warnings, "job": job_to_dict(loaded.spec)}, indent=2))
    else:
        print(f"ok: {summary_line(loaded.spec)}")
    return 0


def _print_json_failure(args: argparse.Namespace, message: str) -> None:
    if args.json:
        print(json.dumps({"ok": False, "error": message}))
