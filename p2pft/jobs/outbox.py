"""Reports to one peer leave in order; what cannot be delivered stays queued and is retried every tick, until the
peer is known lost (a new coordinator has its own copy of the job by then)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from p2pft.jobs.model import MemberReport
from p2pft.jobs.transport import Transport


class Outbox:
    def __init__(self, transport: Transport, peer_alive: Callable[[str], bool]) -> None:
        self.transport = transport
        self.peer_alive = peer_alive
        self._queues: dict[str, list[MemberReport]] = {}
        self._locks: dict[str, asyncio.Lock] = {}

    def pending_peers(self) -> list[str]:
        return [peer for peer, queue in self._queues.items() if queue]

    async def deliver(self, peer: str, report: MemberReport | None = None) -> None:
        queue = self._queues.setdefault(peer, [])
        if report is not None:
            queue.append(report)
        lock = self._locks.setdefault(peer, asyncio.Lock())
        if lock.locked():
            return  # the sender already at work takes this report too
        async with lock:
            while queue:
                if not self.transport.reachable(peer):
                    if not self.peer_alive(peer):
                        queue.clear()
                    return
                if not await self.transport.report(peer, queue[0]):
                    return
                if queue:
                    queue.pop(0)
