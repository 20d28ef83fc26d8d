"""`p2pft describe JOB`: one job in full for people: status and why, progress, rounds with their reasons and
recovery times, the plan per rank, where the outputs are (`p2pft jobs --json` has the raw record)."""

from __future__ import annotations

import argparse
from typing import Any


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("describe", help="one job in full: why, progress, rounds, plan, outputs")
    parser.add_argument("job_id", metavar="JOB", help="job id or a unique prefix of one")
    parser.set_defaults(func=handle)


def fetch_view(args: argparse.Namespace, job_id: str) -> Any:
    """The job's current view (the first item of its watch stream: it resolves id prefixes)."""
    from p2pft.cli._jobs_client import call_jobs
    from p2pft.rpc.gen import jobs_pb2

    async def first(stub: Any) -> Any:
        call = stub.WatchJob(jobs_pb2.WatchJobRequest(job_id=job_id, interval_s=1.0), timeout=10.0)
        async for view in call:
            call.cancel()
            return view
        return None

    return call_jobs(args, first)


def handle(args: argparse.Namespace) -> int:
    from p2pft.cli.job_render import describe
    from p2pft.cli.jobs import console_for_output
    from p2pft.cli.main import CliError

    view = fetch_view(args, args.job_id)
    if view is None:
        raise CliError(f"JOB: no job {args.job_id!r}")
    console = console_for_output()
    console.print(describe(view, console.width))
    return 0
