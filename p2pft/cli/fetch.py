"""`p2pft fetch JOB`: pull a finished job's outputs from the box that wrote them (e.g. when the submitting box
was lost mid-job and another member finished it) into this box's output_dir."""

from __future__ import annotations

import argparse
from typing import Any


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("fetch", help="pull a finished job's outputs to this box")
    parser.add_argument("job_id", metavar="JOB", help="job id (see `p2pft jobs`)")
    parser.set_defaults(func=handle)


def handle(args: argparse.Namespace) -> int:
    from p2pft.cli._jobs_client import call_jobs
    from p2pft.rpc.gen import jobs_pb2

    reply = call_jobs(args, lambda stub: stub.Fetch(jobs_pb2.FetchRequest(job_id=args.job_id), timeout=600.0))
    print(f"{args.job_id}: {reply.files} files from {reply.from_node} in {reply.output_dir}")
    return 0
