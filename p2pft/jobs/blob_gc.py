"""The daemon's blob collector: every GC_INTERVAL_S, and right after a job ends, the blobs no job on this box
references leave the store (p2pft.jobs.blob_refs says what a job references; p2pft.transfer.collect removes).

References come from every record this box knows: in memory, and on disk (a record the manager has not loaded
yet must protect its blobs too). A record file that cannot be read stops the pass: its job's blobs are unknown.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Iterable, Mapping
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from p2pft.formats.checkpoint_index import COMMIT_MARKER, list_steps, read_manifest, step_dir
from p2pft.jobs.blob_refs import job_references, manifest_digests
from p2pft.jobs.model import JobRecord, record_from_json
from p2pft.jobs.paths import JOBS_DIR, RECORD_FILE, JobPaths
from p2pft.transfer import ManifestError, build_manifest
from p2pft.transfer.budget import size_text
from p2pft.transfer.collect import GRACE_S, Collected, collect_garbage

if TYPE_CHECKING:
    from p2pft.jobs.manager import JobsManager

log = logging.getLogger("p2pft.jobs.blob_gc")
GC_INTERVAL_S = 600.0


class UnknownReferences(Exception):
    """A record could not be read: what its job references is unknown, so nothing is collected."""


def records_on_disk(state_dir: Path) -> dict[str, JobRecord]:
    found: dict[str, JobRecord] = {}
    for record_file in sorted((state_dir / JOBS_DIR).glob(f"*/{RECORD_FILE}")):
        try:
            record = record_from_json(record_file.read_text())
        except (OSError, ValueError) as exc:
            raise UnknownReferences(f"{record_file}: {exc}") from None
        found[record.job_id] = record
    return found


def held_markers(state_dir: Path, job_id: str) -> list[dict[str, Any]]:
    """The COMMITTED markers of the steps this box keeps for a job, with the marker's own blob (a published
    checkpoint is named by its marker's digest) as a one-file marker beside each."""
    checkpoints = JobPaths.of(state_dir, job_id).checkpoints
    markers: list[dict[str, Any]] = []
    for step in list_steps(checkpoints):
        marker = read_manifest(step_dir(checkpoints, step))
        if marker is None:
            continue
        markers.append(marker)
        try:
            raw = (step_dir(checkpoints, step) / COMMIT_MARKER).read_bytes()
        except OSError:
            continue
        markers.append({"files": {COMMIT_MARKER: {"sha256": hashlib.sha256(raw).hexdigest()}}})
    return markers


def referenced_blobs(state_dir: Path, node_id: str, records: Mapping[str, JobRecord],
                     reported_outputs: Mapping[str, Iterable[Mapping[str, Any]]]) -> set[str]:
    """Every blob some job on this box needs (blocking: reads records and markers)."""
    known = records_on_disk(state_dir)
    known.update(records)   # the manager's copy is the freshest
    needed: set[str] = set()
    for job_id, record in known.items():
        markers = [] if record.terminal else held_markers(state_dir, job_id)
        needed |= job_references(record, node_id, markers=markers, reported_outputs=reported_outputs.get(job_id, ()))
    return needed


def round_outputs(state_dir: Path, job_id: str) -> list[dict[str, Any]]:
    """The manifests of the job's round output dirs here: what this box's member ingested at each exit (its
    reports may be gone with a restart)."""
    found = []
    for output in sorted((JobPaths.of(state_dir, job_id).root / "rounds").glob("*/output")):
        try:
            found.append(build_manifest(output).to_dict())
        except (OSError, ManifestError) as exc:
            log.debug("%s: not read (%s)", output, exc)
    return found


def job_blobs(state_dir: Path, record: JobRecord, reported_outputs: Iterable[Mapping[str, Any]]) -> set[str]:
    """Every blob an ended job used on this box, as if it were still live: the candidates its end frees. Never
    the job's final outputs: the submitting box may be pulling them right now (under DDP a member's own round
    output has the same bytes, so they may already be here); the periodic pass takes them after the grace."""
    live = replace(record, status="running", outputs_manifest=None)
    outputs = [*reported_outputs, *round_outputs(state_dir, record.job_id)]
    used = job_references(live, "", markers=held_markers(state_dir, record.job_id), reported_outputs=outputs)
    return used - manifest_digests(record.outputs_manifest)


class BlobCollector:
    name = "blob gc"

    def __init__(self, manager: JobsManager, *, interval_s: float = GC_INTERVAL_S, grace_s: float = GRACE_S) -> None:
        self.manager = manager
        self.interval_s = interval_s
        self.grace_s = grace_s
        self._lock = asyncio.Lock()   # one pass at a time

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self.interval_s)   # not at start: the manager loads its records first
            try:
                await self.collect()
            except Exception:
                log.exception("blob collection failed; trying again in %.0f s", self.interval_s)

    def _reported_outputs(self) -> dict[str, list[dict[str, Any]]]:
        found: dict[str, list[dict[str, Any]]] = {}
        for (job_id, _), reports in self.manager.reports.items():
            found.setdefault(job_id, []).extend(r.outputs_manifest for r in reports.values() if r.outputs_manifest)
        return found

    async def ended_job_blobs(self, record: JobRecord) -> set[str]:
        """What an ended job used here: read before its steps are pruned, so the pruned steps' blobs go too."""
        outputs = self._reported_outputs().get(record.job_id, [])
        return await asyncio.to_thread(job_blobs, self.manager.state_dir, record, outputs)

    async def collect(self, *, candidates: set[str] | None = None, why: str = "") -> Collected | None:
        """One pass over the store, or over `candidates` only: an ended job's blobs (`ended_job_blobs`), which
        go at once unless added again lately (its own writes say nothing about a use now)."""
        manager = self.manager
        async with self._lock:
            outputs = self._reported_outputs()
            records = dict(manager.records)
            try:
                needed = await asyncio.to_thread(referenced_blobs, manager.state_dir, manager.node_id, records,
                                                 outputs)
            except UnknownReferences as exc:
                log.warning("blob collection skipped: %s", exc)
                return None
            done = await asyncio.to_thread(collect_garbage, manager.store, needed, candidates=candidates,
                                           grace_s=self.grace_s, count_writes=candidates is None)
            if candidates is not None:
                # A job ended: transfers cut short during it (a peer killed mid-fetch) are never resumed, so their
                # partial files go now rather than an hour later, unless a writer holds one or a live job needs it.
                partials = await asyncio.to_thread(manager.store.remove_stale_partials, 0.0, keep=needed)
                if partials:
                    log.info("blob store: removed %d partial files of transfers no job needs%s", len(partials),
                             f" {why}" if why else "")
        if done.removed:
            log.info("blob store: removed %d blobs no job references (%s freed)%s", len(done.removed),
                     size_text(done.freed_bytes), f" {why}" if why else "")
        return done
