"""`p2pft submit JOB.yaml [--detach]`: hand a job to this box's daemon, which coordinates it across the mesh.

Prints the job id. Without --detach it follows the job with a progress bar and exits 0 only when it succeeded.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from p2pft.cli.main import CliError


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("submit", help="run a job elastically on the cluster (this daemon coordinates)",
                                   description="Submit JOB.yaml to this box's daemon.")
    parser.add_argument("job", metavar="JOB.yaml", help="the job file")
    parser.add_argument("--detach", action="store_true", help="print the job id and return at once")
    parser.set_defaults(func=handle)


def load_for_submit(path: str) -> tuple[dict[str, Any], list[str]]:
    from p2pft.config.job import JobSpecError, check_job_resources, job_to_dict, load_job

    try:
        loaded = load_job(path)
    except JobSpecError as exc:
        raise CliError(f"{path}: {exc}") from None  # name the file, as `validate` does
    except OSError as exc:
        raise CliError(f"cannot read job file {path}: {exc.strerror}") from None
    problems = check_job_resources(loaded.spec)
    if problems:
        raise CliError(problems[0] + (f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""))
    return job_to_dict(loaded.spec), list(loaded.warnings)


def handle(args: argparse.Namespace) -> int:
    from p2pft.cli._jobs_client import call_jobs
    from p2pft.rpc.gen import jobs_pb2

    spec, warnings = load_for_submit(args.job)
    for warning in warnings:
        print(f"p2pft: warning: {warning}", file=sys.stderr)
    request = jobs_pb2.SubmitRequest(job_json=json.dumps(spec), warnings=warnings)
    reply = call_jobs(args, lambda stub: stub.Submit(request, timeout=60.0))
    print(reply.job_id, flush=True)
    if args.detach:
        return 0
    return follow(args, reply.job_id)


def follow(args: argparse.Namespace, job_id: str) -> int:
    """Follow the job to its end: a progress bar (rate, ETA) on a terminal, a plain line every few seconds
    otherwise, one line per round event, a summary at the end. Ctrl-C leaves the job running, and says so."""
    from p2pft.cli._jobs_client import call_jobs
    from p2pft.cli.follow_job import JobFollower

    follower = JobFollower(job_id)
    try:
        final = call_jobs(args, follower.watch)
    except KeyboardInterrupt:
        follower.close()
        print(f"\np2pft: stopped following; job {job_id} keeps running on the cluster.\n"
              f"  follow it: p2pft logs {job_id} -f   (or p2pft top)\n"
              f"  cancel it: p2pft cancel {job_id}", file=sys.stderr)
        return 130
    if final is None:
        raise CliError(f"lost track of job {job_id}: see `p2pft jobs`")
    for line in follower.summary(final):
        print(line)
    if final.status == "succeeded":
        return 0
    print(f"p2pft: job {job_id} {final.status}: {final.message}", file=sys.stderr)
    return 1
