"""`p2pft plot JOB|DIR [-o loss.png]`: the loss curve (train and eval against the step, rounds marked) of an
output dir (metrics.jsonl, summary.json) or of a job the daemon knows (its merged lines)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from p2pft.cli.main import CliError


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("plot", help="loss curve of a job or an output dir as a PNG")
    parser.add_argument("source", metavar="JOB|DIR", help="an output dir with metrics.jsonl, or a job id (prefix)")
    parser.add_argument("-o", "--output", default="loss.png", metavar="PNG", help="where the PNG goes (loss.png)")
    parser.set_defaults(func=handle)


def lines_from_dir(directory: Path) -> tuple[list[dict[str, Any]], dict[int, int] | None]:
    metrics = directory / "metrics.jsonl"
    if not metrics.is_file():
        raise CliError(f"JOB|DIR: {directory} has no metrics.jsonl")
    lines = []
    for number, raw in enumerate(metrics.read_text().splitlines(), 1):
        try:
            lines.append(json.loads(raw))
        except ValueError:
            raise CliError(f"JOB|DIR: {metrics} line {number} is not JSON") from None
    starts = None
    summary = directory / "summary.json"
    if summary.is_file():
        rounds = json.loads(summary.read_text()).get("rounds") or []
        starts = {r["round"]: r["first_step"] for r in rounds if isinstance(r.get("first_step"), int)}
    return lines, starts


def lines_from_job(args: argparse.Namespace, job_id: str) -> list[dict[str, Any]]:
    from p2pft.cli._jobs_client import call_jobs
    from p2pft.rpc.gen import jobs_pb2

    async def collect(stub: Any) -> list[dict[str, Any]]:
        return [json.loads(line.json) async for line in stub.Logs(jobs_pb2.LogsRequest(job_id=job_id))
                if line.kind in ("metrics", "eval") and line.json]

    return call_jobs(args, collect)


def handle(args: argparse.Namespace) -> int:
    from p2pft.formats.loss_curve import loss_series, write_loss_png

    source = Path(args.source)
    if source.is_dir():
        lines, starts = lines_from_dir(source)
        series, title = loss_series(lines, starts), str(source)
    else:
        series, title = loss_series(lines_from_job(args, args.source)), args.source
    if not series.train:
        raise CliError(f"JOB|DIR: {args.source} has no train loss yet")
    path = write_loss_png(series, Path(args.output), title)
    print(f"{path}: {len(series.train)} steps, {len(series.evals)} evaluations, "
          f"{len(series.rounds) + 1} round(s) that trained")
    return 0
