"""What the jobs manager needs of a job's member on this box, and the real one (p2pft.jobs.member.JobMember, which
runs torchrun agents); the in-process fault tests (tests/sim) put a stand-in behind the same protocol."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Protocol

from p2pft.jobs.model import JobRecord, RoundInfo, RoundOrder
from p2pft.jobs.transport import GrpcTransport

if TYPE_CHECKING:
    from p2pft.jobs.manager import JobsManager


class MemberRuntime(Protocol):
    """What the manager needs of a job's member on this box (p2pft.jobs.member.JobMember runs real agents)."""
    record: JobRecord | None
    round: RoundInfo | None

    @property
    def running(self) -> bool: ...
    async def start_round(self, order: RoundOrder) -> None: ...
    def request_stop(self, *, leaving: bool = False) -> bool: ...
    async def stop(self, *, graceful: bool = False, leaving: bool = False) -> None: ...
    async def close(self) -> None: ...


def real_member(manager: JobsManager) -> MemberRuntime:
    from p2pft.jobs.member import JobMember

    transport = manager.transport
    channels_for = transport.channels_for if isinstance(transport, GrpcTransport) else (lambda nodes: [])
    return JobMember(node_id=manager.node_id, state_dir=manager.state_dir, store=manager.store,
                     addressing=manager.addressing, channels_for=channels_for, send_report=manager.send_report,
                     base_env={**os.environ, **manager.worker_env} if manager.worker_env else None,
                     warm_socket=manager.warm_socket, round_addresses=manager.round_addresses,
                     holdings=manager.holdings, collect_blobs=manager.collect_pruned_blobs)

