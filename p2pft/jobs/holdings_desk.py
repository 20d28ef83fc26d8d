"""Which boxes hold which checkpoint steps complete, as this box heard it from the members' reports, and the
exchange that fills it in for a coordinator that knows none of it yet (p2pft.jobs.holdings_sync). One part of
the `JobsManager`, like `Draining` and `JobEnding`."""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from p2pft.formats.checkpoint_index import committed_steps
from p2pft.jobs.authz import job_nodes
from p2pft.jobs.durability import durable_steps, required_holders
from p2pft.jobs.holdings_sync import ASKS_HOLDINGS, HOLDING, holdings_answer, holdings_request
from p2pft.jobs.model import JobRecord, MemberReport
from p2pft.jobs.paths import JobPaths

if TYPE_CHECKING:
    from p2pft.jobs.manager import JobsManager

log = logging.getLogger("p2pft.jobs")


class HoldingsDesk:
    def __init__(self, manager: JobsManager) -> None:
        self.manager = manager
        self._held: dict[str, dict[str, set[int]]] = {}    # job -> box -> steps it holds complete and verified
        self._unanswered: dict[str, set[str]] = {}         # job -> boxes asked for their holdings, no answer yet

    def of(self, job_id: str) -> dict[str, tuple[int, ...]]:
        return {n: tuple(sorted(s)) for n, s in self._held.get(job_id, {}).items()}

    def durable(self, record: JobRecord) -> tuple[int, ...]:
        """The steps enough boxes hold complete, by the reports this box has (p2pft.jobs.durability)."""
        current = record.current_round
        required = required_holders(record.elastic.get("replication"), len(current.members) if current else 1)
        return durable_steps(self.of(record.job_id), required)

    def seen(self, report: MemberReport) -> None:
        """A member's report: the steps it now holds or pruned, an answer to our question, or a question to us."""
        job_id = report.job_id
        if report.checkpoints or report.pruned or report.phase == HOLDING:   # an answer names no steps perhaps
            held = self._held.setdefault(job_id, {}).setdefault(report.node_id, set())
            held.update(report.checkpoints)
            held.difference_update(report.pruned)   # gone from that box: no round may resume from it there
        if report.phase == HOLDING:
            self._unanswered.get(job_id, set()).discard(report.node_id)
        if report.phase == ASKS_HOLDINGS and report.node_id != self.manager.node_id:
            self.manager.background(self._tell(report))

    async def ask(self, record: JobRecord) -> None:
        """This box coordinates a job with committed steps anew: ask the job's live boxes what they hold
        (p2pft.jobs.holdings_sync); this box's own answer goes straight in."""
        manager = self.manager
        ask = holdings_request(record, manager.node_id)
        alive = {n for n, m in manager.cluster.state.members.items() if m.alive}
        peers = sorted((job_nodes(record) & alive) - {manager.node_id})
        self._unanswered[record.job_id] = {*peers, manager.node_id}
        await asyncio.gather(self._tell(ask), *(manager.outbox.deliver(peer, ask) for peer in peers))

    def unanswered(self, job_id: str) -> frozenset[str]:
        return frozenset(self._unanswered.get(job_id, ()))

    async def _tell(self, ask: MemberReport) -> None:
        """Every step this box holds complete and verified, to the coordinator that asked (or to ourselves)."""
        manager = self.manager
        paths = JobPaths.of(manager.state_dir, ask.job_id)
        try:
            steps = await asyncio.to_thread(committed_steps, paths.checkpoints, verify=True)
        except Exception as exc:   # a torn marker, an unreadable dir: say "none verified" rather than nothing
            log.warning("job %s: could not list this box's checkpoints for %s: %s", ask.job_id,
                        manager.box_name(ask.node_id), exc)
            steps = []
        answer = holdings_answer(ask, manager.node_id, steps)
        if ask.node_id == manager.node_id:
            manager.on_report(answer)
        else:
            await manager.outbox.deliver(ask.node_id, answer)
