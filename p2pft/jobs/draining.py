"""This box leaving its jobs on purpose (`p2pft drain`, SIGTERM, a GPU taken by its owner) and coming back:
checkpoint at the next step, keep serving checkpoint files until the next round has them, then go idle."""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

from p2pft.jobs import yielding
from p2pft.jobs.model import JobRecord
from p2pft.jobs.state import job_coordinator
from p2pft.membership.state import LocalStateChanged

if TYPE_CHECKING:
    from p2pft.jobs.manager import JobsManager

log = logging.getLogger("p2pft.jobs")
DRAIN_SERVE_S = 90.0   # at most this long serving checkpoint files to the next round after leaving


class Draining:
    def __init__(self, manager: JobsManager) -> None:
        self.manager = manager
        self.draining = False
        self.yielded = False                 # drained because the box's owner uses its GPU
        self._gpu_free_since: float | None = None

    async def drain(self) -> list[str]:
        """Leave every job gracefully: checkpoint at the next step boundary, wait until the others went on. Both
        waits are bounded: a graceful stop that does not finish kills the round (`JobMember.stop`,
        p2pft.jobs.stop_timeouts), and serving the next round lasts at most DRAIN_SERVE_S."""
        manager = self.manager
        self.draining = True
        if manager.cluster.state.me.state != "draining":
            manager.cluster.apply(LocalStateChanged(state="draining"))
        left = []
        for job_id, member in list(manager.members.items()):
            record = manager.records.get(job_id)
            if record is None or record.terminal or member.round is None:
                continue
            my_round = member.round.round
            log.info("job %s: draining: checkpoint at the next step, then leaving", job_id)
            await member.stop(graceful=True, leaving=True)
            left.append(job_id)
            deadline = time.monotonic() + DRAIN_SERVE_S
            while time.monotonic() < deadline:  # keep serving checkpoint files until the next round has them
                record = await self._coordinator_record(job_id)
                current = record.current_round
                if record.terminal or (current is not None and current.round > my_round and
                                       manager.node_id not in current.members and
                                       set(current.members) <= set(current.launched)):
                    break
                await manager.wait_changed(0.5)
        manager.refresh_busy()
        return left

    def undrain(self) -> bool:
        """`p2pft undrain`: offer this box to jobs again (what the GPU yield does by itself when the GPU is free).
        True when it was draining."""
        cluster = self.manager.cluster
        was = self.draining or cluster.state.me.state == "draining"
        self.draining = False
        self.yielded = False
        if cluster.state.me.state == "draining":
            cluster.apply(LocalStateChanged(state="idle"))
        self.manager.refresh_busy()
        return was

    async def _coordinator_record(self, job_id: str) -> JobRecord:
        """The job's record as its coordinator has it now (ours when we coordinate or it cannot be reached)."""
        manager = self.manager
        record = manager.records[job_id]
        coordinator = job_coordinator(record, manager.cluster.state) or record.coordinator
        if coordinator == manager.node_id:
            return record
        fresh = await manager.transport.get_record(coordinator, job_id)
        if fresh is None:
            return record
        manager.see_record(fresh)
        return manager.records[job_id]

    def maybe_yield(self) -> None:
        """With yield_when_busy: leave the jobs while a process p2pft did not start uses this box's GPU."""
        manager = self.manager
        if not manager.yield_when_busy():
            return
        devices = manager.cluster.state.me.devices
        if not any(d.kind == "cuda" for d in devices):
            return
        foreign = yielding.foreign_gpu_pids(devices, yielding.own_process_tree())
        now = time.monotonic()
        self._gpu_free_since = None if foreign else (self._gpu_free_since or now)
        step = yielding.next_step(yielded=self.yielded, foreign=foreign, free_since=self._gpu_free_since, now=now)
        if step == "yield" and not self.draining:
            log.warning("GPU used by process(es) %s that p2pft did not start: yielding this box", foreign)
            self.yielded = True
            manager.background(self.drain())
        elif step == "return":
            log.info("GPU free again for %.0fs: offering this box to jobs again", now - (self._gpu_free_since or now))
            self.yielded = False
            self.draining = False
            if manager.cluster.state.me.state == "draining":
                manager.cluster.apply(LocalStateChanged(state="idle"))
