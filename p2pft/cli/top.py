"""`p2pft top`: a live view of the cluster and its jobs, fed by the daemon's Watch stream (q or Ctrl-C quits).

On a terminal it redraws in place (the alternate screen, like top); piped, or with --count, it prints a plain
frame per refresh so logs and tests can read it.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import os
import sys
import time
from typing import Any

EVENTS_KEPT = 200


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = subparsers.add_parser("top", help="live view: boxes, jobs (progress, ETA, loss, rate, plan), events")
    p.add_argument("--interval", type=float, default=1.0, metavar="S", help="refresh interval (default 1 s)")
    p.add_argument("--count", type=int, default=0, metavar="N", help="stop after N updates (0 = until q/Ctrl-C)")
    p.set_defaults(func=handler)


class TopState:
    """What `top` remembers between frames: the previous status (for membership events) and the events."""

    def __init__(self) -> None:
        from p2pft.jobs.views import RoundTracker

        self.previous: Any = None
        self.events: collections.deque[str] = collections.deque(maxlen=EVENTS_KEPT)
        self.trackers: dict[str, RoundTracker] = collections.defaultdict(RoundTracker)

    def feed(self, reply: Any, jobs: Any) -> None:
        from p2pft.cli.cluster_render import membership_events
        from p2pft.cli.job_render import record_of

        stamp = time.strftime("%H:%M:%S")
        for line in membership_events(self.previous, reply):
            self.events.append(f"{stamp} {line}")
        self.previous = reply
        for view in jobs:
            record = record_of(view)
            if record is not None:
                for line in self.trackers[view.job_id].feed(record, dict(view.names)):
                    self.events.append(f"{stamp} {line}")


def handler(args: argparse.Namespace) -> int:
    from p2pft.cli.main import CliError

    if args.interval <= 0:
        raise CliError(f"--interval: must be > 0, got {args.interval}")
    if args.count < 0:
        raise CliError(f"--count: must be >= 0, got {args.count}")
    from rich.console import Console

    from p2pft.cli.connect import call_daemon

    console = Console()
    live = console.is_terminal and not args.count
    try:
        return call_daemon(args, lambda client: follow(client, args, console, live))
    except KeyboardInterrupt:  # Ctrl-C is how many people leave top: not an error
        return 0


async def follow(client: Any, args: argparse.Namespace, console: Any, live: bool) -> int:
    from p2pft.rpc.gen import jobs_pb2, jobs_pb2_grpc

    state = TopState()
    jobs_stub = jobs_pb2_grpc.JobServiceStub(client.channel)
    quit_now = asyncio.Event()

    async def frames(show: Any) -> None:
        seen = 0
        async for reply in client.watch(args.interval):
            jobs = (await jobs_stub.ListJobs(jobs_pb2.ListJobsRequest(), timeout=10.0)).jobs
            state.feed(reply, jobs)
            show(reply, jobs)
            seen += 1
            if args.count and seen >= args.count:
                return

    if not live:
        from p2pft.cli.cluster_render import top_view

        def plain(reply: Any, jobs: Any) -> None:
            console.print(top_view(reply, jobs, state.events, console.width, 10_000))
            console.print()

        await frames(plain)
        return 0

    from rich.live import Live

    from p2pft.cli.cluster_render import top_view

    with Live(console=console, screen=True, auto_refresh=False) as screen, keys_pressed(quit_now):
        def redraw(reply: Any, jobs: Any) -> None:
            screen.update(top_view(reply, jobs, state.events, console.width, console.height), refresh=True)

        task = asyncio.ensure_future(frames(redraw))
        quitter = asyncio.ensure_future(quit_now.wait())
        await asyncio.wait({task, quitter}, return_when=asyncio.FIRST_COMPLETED)
        for pending in (task, quitter):
            pending.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        if task.done() and not task.cancelled() and task.exception() is not None:
            raise task.exception()  # type: ignore[misc]
    return 0


@contextlib.contextmanager
def keys_pressed(quit_now: asyncio.Event) -> Any:
    """Reads single key presses (no Enter) while top runs; `q` sets quit_now. Restores the terminal after."""
    import termios
    import tty

    fd = sys.stdin.fileno()
    if not os.isatty(fd):
        yield
        return
    saved = termios.tcgetattr(fd)
    loop = asyncio.get_running_loop()

    def on_key() -> None:
        with contextlib.suppress(OSError):
            if b"q" in os.read(fd, 64).lower():
                quit_now.set()

    tty.setcbreak(fd)
    loop.add_reader(fd, on_key)
    try:
        yield
    finally:
        loop.remove_reader(fd)
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)
