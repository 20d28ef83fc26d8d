"""Who acts on each job this box knows, re-checked every tick: take a job over when its coordinator is gone
(only from the side of a cut that holds the quorum), step down when a newer term names someone else, pause
a member cut off from the majority; and, after a restart, nothing at all until the others' copies were read."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from dataclasses import replace
from typing import TYPE_CHECKING

from p2pft.jobs.late_members import left_out_now
from p2pft.jobs.model import JobRecord, MemberReport, record_from_json
from p2pft.jobs.paths import JOBS_DIR
from p2pft.jobs.quorum import may_take_over, quorum
from p2pft.jobs.state import job_coordinator

if TYPE_CHECKING:
    from p2pft.jobs.manager import JobsManager

log = logging.getLogger("p2pft.jobs")
RESYNC_WAIT_S = 10.0
UNKNOWN_COORDINATOR_GRACE_S = 10.0   # after a start, peers answer within a few heartbeats (mDNS, static, gossip)
# A box that is not the job's coordinator asks it for its copy of the record this often: messages get lost (the
# final record shared while this box was cut off or asleep), and only asking again brings the news.
RECORD_SYNC_S = 5.0


class Supervision:
    def __init__(self, manager: JobsManager) -> None:
        self.manager = manager
        self.unsynced: set[str] = set()      # loaded after a restart, not yet compared with the others' copies
        self._refreshing: set[str] = set()   # paused jobs whose record is being refreshed after a heal
        self._synced: dict[str, float] = {}  # job -> when we last asked its coordinator for the record
        self._taking_over: set[str] = set()  # jobs whose takeover waits for the others' copies of the record
        self.started = time.monotonic()

    def tick(self) -> None:
        manager = self.manager
        state = manager.cluster.state
        alive = [n for n, m in state.members.items() if m.alive]
        draining = manager.draining
        for job_id, record in list(manager.records.items()):
            if record.terminal or job_id in self.unsynced:
                continue
            mine = job_id in manager.coordinators
            if mine and record.coordinator != manager.node_id:
                # A record of a newer term names another coordinator (it took over while we were cut off).
                log.warning("job %s: %s coordinates now (term %d); stepping down", job_id,
                            manager.box_name(record.coordinator), record.term)
                manager.coordinators[job_id][0].closed = True
            if record.coordinator != manager.node_id:
                self._pause_if_cut_off(record, alive)
                self._maybe_sync(record)
            chosen = job_coordinator(record, state)
            if chosen == manager.node_id and not mine and not draining:
                if record.coordinator == manager.node_id:
                    manager.start_coordinator(job_id)
                elif self._may_take_over(record, alive) and job_id not in self._taking_over:
                    self._taking_over.add(job_id)
                    manager.background(self._try_take_over(job_id))
            elif chosen != manager.node_id and mine and (draining or manager.node_id in left_out_now(record)):
                # Handing over: this box drains, or was left out of the job's rounds as too slow to keep the
                # job's store (the successor takes over with a new term and starts its round at once).
                if not draining:
                    log.warning("job %s: this box is left out of the job's rounds as too slow; %s coordinates",
                                job_id, manager.box_name(chosen or "?"))
                manager.coordinators[job_id][0].closed = True

    def _maybe_sync(self, record: JobRecord) -> None:
        now = time.monotonic()
        if now - self._synced.get(record.job_id, 0.0) < RECORD_SYNC_S:
            return
        self._synced[record.job_id] = now
        if self.manager.transport.reachable(record.coordinator):
            self.manager.background(self._sync(record.job_id, record.coordinator))

    async def _sync(self, job_id: str, coordinator: str) -> None:
        fresh = await self.manager.transport.get_record(coordinator, job_id)
        if fresh is not None:
            self.manager.see_record(fresh)
            if self.manager.records[job_id].terminal:
                await self.manager.forget_member(job_id)

    async def _try_take_over(self, job_id: str) -> None:
        """Take a job over only after reading the others' copies of its record: this box's copy may lag a round
        behind (a round the old coordinator started while this box was cut off), and a takeover on the old
        membership could make a second majority beside the old coordinator's newer round."""
        manager = self.manager
        try:
            before = manager.records[job_id]
            fresh, answered = await manager.ending.records_of_peers(job_id)
            alive = [n for n, m in manager.cluster.state.members.items() if m.alive]
            chosen = job_coordinator(fresh, manager.cluster.state)
            if fresh.terminal or fresh.term != before.term or chosen != manager.node_id \
                    or fresh.coordinator == manager.node_id or job_id in manager.coordinators:
                return
            if not (quorum(fresh, answered, manager.node_id).holds and self._may_take_over(fresh, alive)):
                return
            self._take_over(fresh)
        except KeyError:
            return
        finally:
            self._taking_over.discard(job_id)

    def _take_over(self, record: JobRecord) -> None:
        manager = self.manager
        old = manager.cluster.state.members.get(record.coordinator)
        now_mono = time.monotonic()
        heard = old.last_heard if old is not None and old.last_heard is not None else now_mono
        cause = time.time() - max(0.0, now_mono - heard)
        previous = record.coordinator
        gone = "left" if old is not None and old.left else "lost"
        if previous in left_out_now(record) and old is not None and old.alive:
            gone = "left out of the rounds as too slow (the job's store moves off its box)"
        log.warning("job %s: taking over as coordinator (%s %s)", record.job_id, previous, gone)
        manager.update_record(replace(record, coordinator=manager.node_id, term=record.term + 1))
        manager.start_coordinator(record.job_id, f"coordinator {previous} {gone}", cause)

    def _may_take_over(self, record: JobRecord, alive: Sequence[str]) -> bool:
        return may_take_over(record, alive, self.manager.node_id,
                             coordinator_known=record.coordinator in self.manager.cluster.state.members,
                             uptime_s=time.monotonic() - self.started, grace_s=UNKNOWN_COORDINATOR_GRACE_S)

    def _pause_if_cut_off(self, record: JobRecord, alive: Sequence[str]) -> None:
        """A member on the losing side of a cut stops its agent at once and shows the job as paused; on the way
        back it takes the freshest record (the other side may have gone on without it)."""
        manager = self.manager
        verdict = quorum(record, alive, manager.node_id)
        member = manager.members.get(record.job_id)
        if not verdict.holds:
            if member is not None and member.running:
                log.warning("job %s: %s; stopping this box's agent", record.job_id, verdict.message)
                manager.background(member.stop(graceful=False))
            message = verdict.describe(manager.box_name)
            if record.status != "paused" or record.message != message:
                manager.update_record(replace(record, status="paused", message=message))
        elif record.status == "paused" and record.job_id not in self._refreshing:
            self._refreshing.add(record.job_id)
            manager.background(self._refresh_after_heal(record))

    async def _refresh_after_heal(self, record: JobRecord) -> None:
        try:
            fresh = await self.manager.ending.refresh_record(record.job_id)
            if fresh.status == "paused" and fresh.term == record.term:
                self.manager.update_record(replace(fresh, status="running", message="reconnected"))
        finally:
            self._refreshing.discard(record.job_id)

    # ---- after a restart ------------------------------------------------------------------------------------

    def load(self) -> None:
        manager = self.manager
        root = manager.state_dir / JOBS_DIR
        if not root.is_dir():
            return
        for record_file in sorted(root.glob("*/record.json")):
            try:
                record = record_from_json(record_file.read_text())
            except (OSError, ValueError) as exc:
                log.warning("skipping %s: %s", record_file, exc)
                continue
            if record.job_id in manager.records:
                continue   # a peer's order or share since this start already brought a fresher copy
            manager.records[record.job_id] = record
            if not record.terminal or (record.submitter == manager.node_id and record.outputs_node != manager.node_id):
                self.unsynced.add(record.job_id)
                manager.background(self._resync(record.job_id))

    async def _resync(self, job_id: str) -> None:
        """Take the freshest record the others have before acting on this job again (a new coordinator may have
        taken over meanwhile); rejoin the job, or pull its outputs when it ended."""
        manager = self.manager
        ended_before = manager.records[job_id].status == "succeeded"   # else seeing it succeed pulls them
        try:
            deadline = time.monotonic() + RESYNC_WAIT_S
            while time.monotonic() < deadline and len(manager.cluster.state.members) < 2:
                await asyncio.sleep(0.2)  # peers first: static peers and gossip need a heartbeat or two
            await asyncio.sleep(1.0)  # one more heartbeat: gossip brings the rest of the members
            try:
                record = await manager.ending.freshest_record(job_id)
            except KeyError:
                record = manager.records[job_id]
        finally:
            self.unsynced.discard(job_id)
        current = record.current_round
        if record.terminal:
            if ended_before and record.status == "succeeded" and record.submitter == manager.node_id \
                    and record.outputs_node not in ("", manager.node_id):
                await manager.ending.pull_outputs(job_id)
            return
        if job_id in manager.members:
            return   # an order since this start already put this box back into the job
        # The coordinator too: its own failed report is what ends the round it died in. The other members
        # reported theirs to the dead box, so without it the round showed "starting" for good (chaos campaign).
        if current is not None and manager.node_id in current.members:
            log.info("job %s: rejoining after a restart (was in round %d)", job_id, current.round)
            member = manager.new_member()
            member.record, member.round = record, current
            manager.members[job_id] = member
            await manager.send_report(MemberReport(job_id=job_id, node_id=manager.node_id, round=current.round,
                                                   term=record.term, phase="exited", outcome="failed",
                                                   detail="daemon restarted"))
