"""`p2pft undrain`: this box takes jobs again after `p2pft drain` (no daemon restart needed); it joins running
jobs at their next round."""

from __future__ import annotations

import argparse
from typing import Any


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("undrain", help="take jobs again after a drain")
    parser.set_defaults(func=handle)


def handle(args: argparse.Namespace) -> int:
    from p2pft.cli._jobs_client import call_jobs
    from p2pft.rpc.gen import jobs_pb2

    reply = call_jobs(args, lambda stub: stub.Undrain(jobs_pb2.UndrainRequest(), timeout=10.0))
    print(f"undrained: {reply.message}")
    return 0
