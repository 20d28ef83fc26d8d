"""A job's end and what follows it: outputs collected into the submitting box's output_dir, the final record
shared, cancel, `p2pft fetch`, and the freshest copy of a record among the live boxes."""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from p2pft.jobs.job_cleanup import JobCleanup
from p2pft.jobs.model import JobRecord, MemberReport
from p2pft.jobs.output_holders import MAX_COLLECT_PASSES, choose_holders, collection_failed
from p2pft.jobs.outputs import write_outputs
from p2pft.jobs.records import freshness
from p2pft.jobs.submission import output_target
from p2pft.transfer import Manifest

if TYPE_CHECKING:
    from p2pft.jobs.manager import JobsManager

log = logging.getLogger("p2pft.jobs")


class JobEnding:
    def __init__(self, manager: JobsManager) -> None:
        self.manager = manager
        self.cleanup = JobCleanup(manager)   # at every box's end of a job (forget_member), and periodically
        self._collect_passes: dict[str, int] = {}   # job -> passes over its live output holders that all failed

    async def collect_outputs(self, holder: MemberReport, output_dir: Path) -> None:
        manager = self.manager
        manifest = Manifest.from_dict(holder.outputs_manifest or {})
        output_dir.mkdir(parents=True, exist_ok=True)
        if holder.node_id == manager.node_id:
            from p2pft.transfer.tree import write_tree

            await asyncio.to_thread(write_tree, manager.store, manifest, output_dir.resolve(), link=False)
        else:
            await manager.transport.fetch_tree(manifest, output_dir, output_dir, [holder.node_id])

    async def collect_from_any(self, job_id: str, round_number: int, output_dir: Path) -> MemberReport | None:
        """The outputs from the first holder that delivers (p2pft.jobs.output_holders); None when none did yet.
        Holders whose box is gone lose their report, so the coordinator's next decision is not `finish` on
        them; a live holder that keeps failing fails the job after MAX_COLLECT_PASSES, naming every error."""
        manager = self.manager
        slot = manager.reports.get((job_id, round_number), {})
        alive = {n for n, m in manager.cluster.state.members.items() if m.alive}
        choice = choose_holders(slot.values(), manager.node_id, alive)
        for node in choice.gone:
            log.warning("job %s: %s, which holds outputs, is gone: taking them from another member", job_id,
                        manager.box_name(node))
            slot.pop(node, None)
        errors: dict[str, str] = {}
        for holder in choice.ordered:
            try:
                await self.collect_outputs(holder, output_dir)
                self._collect_passes.pop(job_id, None)
                return holder
            except Exception as exc:   # a box that died a moment ago (not lost yet), a disk, a budget
                errors[manager.box_name(holder.node_id)] = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
                log.warning("job %s: outputs not collected from %s (%s)", job_id, manager.box_name(holder.node_id),
                            errors[manager.box_name(holder.node_id)])
        if errors:
            passes = self._collect_passes.get(job_id, 0) + 1
            self._collect_passes[job_id] = passes
            if passes >= MAX_COLLECT_PASSES:
                raise RuntimeError(collection_failed(job_id, errors))
            await asyncio.sleep(1.0)   # the membership may call a dead holder lost meanwhile
        return None

    async def end_job(self, job_id: str, status: str, message: str, *, output_dir: Path | None = None) -> None:
        manager = self.manager
        record = manager.records[job_id]
        if record.terminal:
            return
        current = record.current_round
        if current is not None and status != "succeeded":
            await manager.send_stop(record, current, graceful=False, reason=message)
        record = replace(record.with_round_update(ended_reason=message), status=status, message=message,
                         ended_unix=time.time())
        if output_dir is not None:
            book = manager.book(job_id)
            step, loss = book.newest_step()
            record = replace(record, last_step=step, last_loss=loss)
            await asyncio.to_thread(write_outputs, output_dir, record, book)
            from p2pft.transfer import ingest_tree

            manifest = await asyncio.to_thread(ingest_tree, manager.store, output_dir)
            record = replace(record, outputs_node=manager.node_id, outputs_dir=str(output_dir),
                             outputs_manifest=manifest.to_dict())
        log.info("job %s %s: %s", job_id, status, message)
        manager.update_record(record)
        await manager.share_record(record)
        await manager.forget_member(job_id)

    async def cancel(self, job_id: str) -> str:
        manager = self.manager
        record = manager.records.get(job_id)
        if record is None:
            raise KeyError(job_id)
        if record.terminal:
            return record.status
        if record.coordinator != manager.node_id:
            return await manager.transport.cancel(record.coordinator, job_id)
        entry = manager.coordinators.get(job_id)
        if entry is not None:
            entry[0].closed = True
        await self.end_job(job_id, "cancelled", "cancelled by request")
        return "cancelled"

    async def fetch_outputs(self, job_id: str) -> tuple[Path, int, str]:
        manager = self.manager
        record = await self.freshest_record(job_id)
        if record.status != "succeeded" or not record.outputs_manifest:
            raise RuntimeError(f"job {job_id} is {record.status}; outputs exist only once it succeeded")
        target = output_target(manager.state_dir, job_id)   # this box's own submission, never the record's paths
        manifest = Manifest.from_dict(record.outputs_manifest)
        target.mkdir(parents=True, exist_ok=True)
        if record.outputs_node != manager.node_id:
            if not manager.transport.reachable(record.outputs_node):
                raise RuntimeError(f"{record.outputs_node}, which holds the outputs of {job_id}, is not reachable")
            await manager.transport.fetch_tree(manifest, target, target, [record.outputs_node])
        return target, len(manifest.files), record.outputs_node

    async def refresh_record(self, job_id: str) -> JobRecord:
        """The freshest copy of a job's record among the live boxes (ours when nobody answers)."""
        try:
            return await self.freshest_record(job_id)
        except KeyError:
            return self.manager.records[job_id]

    async def freshest_record(self, job_id: str) -> JobRecord:
        return (await self.records_of_peers(job_id))[0]

    async def records_of_peers(self, job_id: str) -> tuple[JobRecord, list[str]]:
        """The freshest copy among the live boxes (kept as ours), and the boxes that answered (this one too)."""
        manager = self.manager
        best = manager.records.get(job_id)
        peers = [n for n, m in manager.cluster.state.members.items() if n != manager.node_id and m.alive]
        answered = [manager.node_id]
        copies = await asyncio.gather(*(manager.transport.get_record(n, job_id) for n in peers))
        for node, other in zip(peers, copies, strict=True):
            if other is None:
                continue
            answered.append(node)
            if best is None or freshness(other) > freshness(best):
                best = other
        if best is None:
            raise KeyError(job_id)
        manager.see_record(best)
        return manager.records[job_id], answered

    async def pull_outputs(self, job_id: str) -> None:
        try:
            target, files, node = await self.fetch_outputs(job_id)
            log.info("job %s: pulled %d output files from %s into %s", job_id, files, node, target)
        except Exception as exc:
            log.warning("job %s: outputs not pulled yet (%s); run `p2pft fetch %s`", job_id, exc, job_id)

