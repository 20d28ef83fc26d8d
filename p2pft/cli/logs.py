"""`p2pft logs JOB [-f]`: a job's rounds and per-step metric lines (merged from every member)."""

from __future__ import annotations

import argparse
from typing import Any


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("logs", help="a job's rounds and metric lines")
    parser.add_argument("job_id", metavar="JOB", help="job id (see `p2pft jobs`)")
    parser.add_argument("-f", "--follow", action="store_true", help="keep printing until the job ends")
    parser.set_defaults(func=handle)


def handle(args: argparse.Namespace) -> int:
    from p2pft.cli._jobs_client import call_jobs
    from p2pft.rpc.gen import jobs_pb2

    async def stream(stub: Any) -> int:
        count = 0
        async for line in stub.Logs(jobs_pb2.LogsRequest(job_id=args.job_id, follow=args.follow)):
            print(line.text, flush=True)
            count += 1
        return count

    call_jobs(args, stream)
    return 0
