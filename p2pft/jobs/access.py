"""JobService's gate: who is calling (certificate CN, or the local operator on the Unix socket), what `authz`
decides, and the refusal on the wire.

A refused call is answered PERMISSION_DENIED with one line, counted as `permission_denied` (shown by
`p2pft status`) and logged once as a warning; the daemon goes on serving.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import grpc

from p2pft.jobs import authz
from p2pft.jobs.model import JobRecord, MemberReport, RoundOrder
from p2pft.jobs.state import job_coordinator
from p2pft.rpc.caller import caller_identity

if TYPE_CHECKING:
    from p2pft.jobs.manager import JobsManager

log = logging.getLogger("p2pft.jobs.access")
COUNTER = "permission_denied"


def caller_of(context: grpc.aio.ServicerContext) -> str:
    """The node id the caller's certificate names (its CN), authz.LOCAL_OPERATOR on the daemon's Unix socket, ""
    when there is neither."""
    return caller_identity(context)


class JobAccess:
    def __init__(self, manager: JobsManager) -> None:
        self.manager = manager

    async def _enforce(self, method: str, reason: str | None, context: grpc.aio.ServicerContext) -> None:
        if reason is None:
            return
        self.manager.cluster.counters[COUNTER] += 1
        log.warning("refused %s from %s: %s", method, context.peer(), reason)
        await context.abort(grpc.StatusCode.PERMISSION_DENIED, reason)
        raise AssertionError("unreachable")

    def _known(self, job_id: str) -> JobRecord | None:
        return self.manager.records.get(job_id)

    async def local(self, method: str, context: grpc.aio.ServicerContext) -> None:
        await self._enforce(method, authz.local_only(method, caller_of(context), self.manager.node_id), context)

    async def logs(self, job_id: str, worker: str, context: grpc.aio.ServicerContext) -> None:
        reason = authz.may_read_logs(caller_of(context), self.manager.node_id, worker, self._known(job_id))
        await self._enforce("Logs", reason, context)

    async def cancel(self, job_id: str, context: grpc.aio.ServicerContext) -> None:
        reason = authz.may_cancel(caller_of(context), self.manager.node_id, self._known(job_id))
        await self._enforce("Cancel", reason, context)

    async def order(self, order: RoundOrder, context: grpc.aio.ServicerContext) -> None:
        reason = authz.may_order(caller_of(context), order, self._known(order.record.job_id))
        await self._enforce("StartRound", reason, context)

    async def stop(self, job_id: str, context: grpc.aio.ServicerContext) -> None:
        known = self._known(job_id)
        chosen = job_coordinator(known, self.manager.cluster.state) if known is not None else None
        await self._enforce("StopRound", authz.may_stop(caller_of(context), job_id, known, chosen), context)

    async def report(self, report: MemberReport, context: grpc.aio.ServicerContext) -> None:
        reason = authz.may_report(caller_of(context), report, self._known(report.job_id), self.manager.node_id)
        await self._enforce("Report", reason, context)

    async def share(self, record: JobRecord, context: grpc.aio.ServicerContext) -> None:
        reason = authz.may_share(caller_of(context), record, self._known(record.job_id), self.manager.node_id)
        await self._enforce("ShareRecord", reason, context)

    def shown(self, record: JobRecord, context: grpc.aio.ServicerContext) -> JobRecord:
        """The record as a GetRecord caller may see it: without the rendezvous keys outside the job."""
        if authz.sees_rendezvous(caller_of(context), record, self.manager.node_id):
            return record
        return record.without_rendezvous()
