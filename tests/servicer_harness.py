"""The real JobServicer over a real JobsManager in one event loop, called with a stand-in gRPC context whose
certificate CN the test chooses (the jobs logic is the real one; transport, members and the store are the
simulation's, tests/sim)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc

from p2pft.jobs.manager import JobsManager
from p2pft.jobs.servicer import JobServicer
from tests.sim.net import SimNet


class Aborted(Exception):
    """What `context.abort` raised: the handler answered with a gRPC status code."""

    def __init__(self, code: grpc.StatusCode, details: str) -> None:
        super().__init__(f"{code.name}: {details}")
        self.code = code
        self.details = details


@dataclass
class Context:
    """Enough of grpc.aio.ServicerContext for JobServicer: the caller's CN, its address, abort."""

    caller: str
    aborted: list[Aborted] = field(default_factory=list)

    def auth_context(self) -> dict[str, list[bytes]]:
        return {"x509_common_name": [self.caller.encode()]} if self.caller else {}

    def peer(self) -> str:
        return f"ipv4:10.9.9.9:4242 ({self.caller})"

    async def abort(self, code: grpc.StatusCode, details: str = "") -> None:
        raised = Aborted(code, details)
        self.aborted.append(raised)
        raise raised


@dataclass
class Box:
    """One box: the manager, its servicer, and every exception its background tasks let escape."""

    net: SimNet
    manager: JobsManager
    servicer: JobServicer
    escaped: list[BaseException] = field(default_factory=list)

    async def call(self, method: str, request: Any, caller: str) -> Any:
        """The handler's reply, or the Aborted it answered with; any other exception propagates."""
        handler: Callable[[Any, Any], Awaitable[Any]] = getattr(self.servicer, method)
        try:
            return await handler(request, Context(caller))
        except Aborted as aborted:
            return aborted

    async def settle(self, seconds: float = 0.02) -> None:
        """Let the handlers' background work (stops, shares, members) run a moment."""
        await asyncio.sleep(seconds)


async def open_box(root: Path, node_id: str, peers: tuple[str, ...] = ()) -> Box:
    """`node_id`'s manager and servicer with `peers` known (and alive) in its membership view, unreachable."""
    net = SimNet(root)
    # The peers are known and alive in the view but have no manager in the net: what this box sends them is lost,
    # as to a daemon that does not answer (so nothing a test sends comes back through another box's logic).
    manager = net.add_box(node_id)
    box = Box(net, manager, JobServicer(manager))

    def escaped(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        box.escaped.append(context.get("exception") or RuntimeError(str(context.get("message"))))

    asyncio.get_running_loop().set_exception_handler(escaped)
    # The handlers hand work to manager.background (stops, pulls, forgetting a job): a failure there would only
    # reach the loop's handler when the task is collected, maybe after the test, so it is recorded as it happens.
    start_background = manager.background

    def background(coro: Any) -> None:
        async def watched() -> None:
            try:
                await coro
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                box.escaped.append(exc)
                raise

        start_background(watched())

    manager.background = background  # type: ignore[method-assign]
    from p2pft.membership.state import MemberJoined
    from tests.sim.net import VERSIONS

    for peer in peers:
        manager.cluster.apply(MemberJoined(node_id=peer, at=0.0, state="idle", name=peer,
                                           address=f"127.0.0.1:{7100 + len(peer)}", versions=VERSIONS))
    return box


async def close_box(box: Box) -> None:
    """Cancel what the handlers left running (members, background tasks) and wait for it."""
    current = asyncio.current_task()
    tasks = [t for t in asyncio.all_tasks() if t is not current]
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)

