"""`p2pft logs JOB [-f] [--json] [--worker BOX [--round N]]`: a job's rounds and step lines, or one box's
agent log (its workers' own output, where a traceback lands) for a round."""

from __future__ import annotations

import argparse
from typing import Any


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("logs", help="a job's rounds and step lines, or one box's worker log",
                                   description="Print a job's rounds and step lines (merged from every box); "
                                               "with --worker, that box's torchrun agent log for a round.")
    parser.add_argument("job_id", metavar="JOB", help="job id or a unique prefix of one (see `p2pft jobs`)")
    parser.add_argument("-f", "--follow", action="store_true", help="keep printing until the job ends")
    parser.add_argument("--json", action="store_true", help="the raw records, one JSON object per line")
    parser.add_argument("--worker", metavar="BOX", help="a box's agent.log (name or node id), read through "
                                                        "its daemon")
    parser.add_argument("--round", type=int, metavar="N", help="with --worker: this round (default: the newest "
                                                                "round the box took part in)")
    parser.set_defaults(func=handle)


def handle(args: argparse.Namespace) -> int:
    from p2pft.cli._jobs_client import call_jobs
    from p2pft.cli.main import CliError
    from p2pft.rpc.gen import jobs_pb2

    if args.round is not None and not args.worker:
        raise CliError("--round: only with --worker BOX")
    if args.round is not None and args.round < 0:
        raise CliError(f"--round: must be >= 0, got {args.round}")
    request = jobs_pb2.LogsRequest(job_id=args.job_id, follow=args.follow, worker=args.worker or "")
    if args.round is not None:
        request.round = args.round

    async def stream(stub: Any) -> int:
        count = 0
        async for line in stub.Logs(request):
            if args.json and not args.worker:
                print(line.json or line.text, flush=True)
            else:
                print(line.text, flush=True)
            count += 1
        return count

    call_jobs(args, stream)
    return 0
