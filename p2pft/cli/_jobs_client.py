"""Shared by the job commands: one JobService call (or stream) on the daemon chosen by --daemon/--state-dir."""

from __future__ import annotations

import argparse
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

T = TypeVar("T")


def call_jobs(args: argparse.Namespace, fn: Callable[[Any], Awaitable[T]]) -> T:
    """Run `fn(stub)` with a JobService stub on the daemon's channel; gRPC errors become one-line CliErrors."""
    from p2pft.cli.connect import call_daemon
    from p2pft.rpc.gen import jobs_pb2_grpc

    async def run(client: Any) -> T:
        return await fn(jobs_pb2_grpc.JobServiceStub(client.channel))

    return call_daemon(args, run)

