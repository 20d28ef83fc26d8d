"""`p2pft cancel JOB`: stop a job on every member (its coordinator ends it; checkpoints stay)."""

from __future__ import annotations

import argparse
from typing import Any


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("cancel", help="cancel a job")
    parser.add_argument("job_id", metavar="JOB", help="job id or a unique prefix of one (see `p2pft jobs`)")
    parser.set_defaults(func=handle)


def handle(args: argparse.Namespace) -> int:
    from p2pft.cli._jobs_client import call_jobs
    from p2pft.rpc.gen import jobs_pb2

    reply = call_jobs(args, lambda stub: stub.Cancel(jobs_pb2.CancelRequest(job_id=args.job_id), timeout=30.0))
    print(f"{args.job_id}: {reply.status}")
    return 0
