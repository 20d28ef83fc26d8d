"""`p2pft drain`: this box leaves its jobs gracefully (checkpoint at the next step boundary, zero steps lost);
the other members go on in a new round. The box stays out of jobs until `p2pft undrain` (or a daemon restart)."""

from __future__ import annotations

import argparse
from typing import Any


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("drain", help="leave this box's jobs gracefully (checkpoint, then leave)")
    parser.set_defaults(func=handle)


def handle(args: argparse.Namespace) -> int:
    from p2pft.cli._jobs_client import call_jobs
    from p2pft.rpc.gen import jobs_pb2

    reply = call_jobs(args, lambda stub: stub.Drain(jobs_pb2.DrainRequest(), timeout=180.0))
    if reply.left_jobs:
        print(f"drained: left {', '.join(reply.left_jobs)}")
    else:
        print(f"drained: {reply.message}")
    return 0
