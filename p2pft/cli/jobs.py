"""`p2pft jobs [--wide] [--json]`: the jobs this box's daemon knows (submitted here, or taken part in)."""

from __future__ import annotations

import argparse
import json
from typing import Any


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("jobs", help="list jobs (status, step, loss, ETA, boxes, why it failed)")
    parser.add_argument("--json", action="store_true", help="one JSON document with every job's full record")
    parser.add_argument("--wide", action="store_true", help="every column, node ids included")
    parser.set_defaults(func=handle)


def console_for_output() -> Any:
    """The terminal's width on a terminal; piped, wide enough that nothing is cut (scripts grep job ids)."""
    from rich.console import Console

    console = Console()
    return console if console.is_terminal else Console(width=240)


def handle(args: argparse.Namespace) -> int:
    from p2pft.cli._jobs_client import call_jobs
    from p2pft.cli.job_render import jobs_table
    from p2pft.rpc.gen import jobs_pb2

    reply = call_jobs(args, lambda stub: stub.ListJobs(jobs_pb2.ListJobsRequest(), timeout=10.0))
    if args.json:
        print(json.dumps({"jobs": [json.loads(view.record_json) for view in reply.jobs]}, indent=1))
        return 0
    if not reply.jobs:
        print("no jobs")
        return 0
    console = console_for_output()
    console.print(jobs_table(reply.jobs, console.width, wide=args.wide))
    for view in reply.jobs:  # why a job failed is the one thing a cut cell must not hide
        if view.status == "failed" and view.message:
            console.print(f"{view.job_id} failed: {view.message}", markup=False, highlight=False, soft_wrap=True)
    return 0
