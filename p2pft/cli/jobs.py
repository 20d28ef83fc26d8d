"""`p2pft jobs [--json]`: the jobs this box's daemon knows (submitted here, or taken part in)."""

from __future__ import annotations

import argparse
import json
from typing import Any


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("jobs", help="list jobs (status, round, members, step, loss)")
    parser.add_argument("--json", action="store_true", help="one JSON document with every job's full record")
    parser.set_defaults(func=handle)


def handle(args: argparse.Namespace) -> int:
    from p2pft.cli._jobs_client import call_jobs
    from p2pft.rpc.gen import jobs_pb2

    reply = call_jobs(args, lambda stub: stub.ListJobs(jobs_pb2.ListJobsRequest(), timeout=10.0))
    if args.json:
        print(json.dumps({"jobs": [json.loads(view.record_json) for view in reply.jobs]}, indent=1))
        return 0
    from rich.console import Console
    from rich.table import Table

    table = Table()
    for column in ("job", "status", "round", "world", "step", "loss", "coordinator", "message"):
        table.add_column(column, no_wrap=True)
    for view in reply.jobs:
        steps = f"{view.step}/{view.total_steps}" if view.total_steps else str(view.step)
        table.add_row(view.job_id, view.status, str(view.round), str(view.world_size), steps,
                      f"{view.loss:.4f}" if view.loss else "-", view.coordinator, view.message[:60])
    if not reply.jobs:
        print("no jobs")
        return 0
    console = Console()
    if not console.is_terminal:
        console = Console(width=220)  # piped: never cut job ids
    console.print(table)
    return 0
