"""Committed checkpoints travel between the members of a job: each box offers its own step files to the blob
store and fetches the others', so losing any one box never loses the newest committed step.

Torch-free (runs inside the daemon). One `CheckpointReplicator` per `JobMember`; the member tells it which
record and round are current (`follow`) and which steps the round's workers committed (`saw_commits`), and it
reports the steps it made complete here, and the ones it pruned, through `send`. Pruning during a job is the
daemon's, not the worker's: from the verified holdings of every box (p2pft.jobs.durability).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import shutil
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import grpc

from p2pft.formats.checkpoint_index import (
    COMMIT_MARKER,
    committed_steps,
    file_matches,
    list_steps,
    marker_fingerprint,
    read_manifest,
    step_dir,
    verify_committed,
)
from p2pft.jobs.durability import PruneInputs, required_holders, steps_to_prune
from p2pft.jobs.model import JobRecord, MemberReport, RoundInfo
from p2pft.jobs.paths import JobPaths
from p2pft.transfer import BlobClient, BlobStore, Manifest, TransferPolicy
from p2pft.transfer.budget import BlobBudgetError
from p2pft.transfer.tree import write_tree

log = logging.getLogger("p2pft.jobs.replication")
TRANSFER_POLICY = TransferPolicy(attempts=6, backoff_initial_s=0.1, backoff_max_s=1.0, call_timeout_s=5.0,
                                 stall_timeout_s=10.0)

PRUNE_EVERY_S = 1.0

ChannelsFor = Callable[[Sequence[str]], list[grpc.aio.Channel]]
SendReport = Callable[[MemberReport], Awaitable[None]]
Holdings = Callable[[str], Mapping[str, tuple[int, ...]]]   # job id -> node -> steps it holds complete
FetchFiles = Callable[[Manifest, Path, Path, list[str]], Awaitable[None]]   # files, into, root, from whom
CollectBlobs = Callable[[set[str], str], Awaitable[Any]]   # candidate digests, why: the daemon's blob collector


class CheckpointReplicator:
    def __init__(self, *, node_id: str, state_dir: Path, store: BlobStore, channels_for: ChannelsFor,
                 send: SendReport, holdings: Holdings = lambda job_id: {}, fetch: FetchFiles | None = None,
                 collect: CollectBlobs | None = None) -> None:
        self.node_id = node_id
        self.state_dir = state_dir
        self.store = store
        self.channels_for = channels_for
        self.send = send
        self.holdings = holdings
        self.fetch = fetch   # None: from the peers' blob services over gRPC (channels_for)
        self.collect = collect   # the blobs of pruned steps go at once, not after the periodic pass's grace
        # The newest step the current round's workers wrote here (its resume step until they commit): they never
        # write at or below it again in this round, so only dirs below it may be pruned.
        self.frontier: int | None = None
        # Held by a prune pass and by ensure_checkpoint: a round being prepared fetches its resume step into a dir
        # that must not be pruned from under it.
        self._lock = asyncio.Lock()
        self._pruned_at = 0.0
        self.record: JobRecord | None = None
        self.round: RoundInfo | None = None
        # step -> fingerprint of the marker it was completed for: a step saved again (after a fall-back) has a
        # new marker, so it is completed again, not skipped as "done".
        self.replicated: dict[int, str] = {}
        # (step, name, version of the file) offered to the store: a file rewritten in place is a new version,
        # offered again (keyed by (step, name) alone, re-saved files were never offered).
        self._ingested: set[tuple[int, str, tuple[int, int, int, int]]] = set()
        self._task: asyncio.Task[None] | None = None
        self._budget_warned = ""   # the last blob-budget refusal logged (every pass retries: say it once)

    def follow(self, record: JobRecord, info: RoundInfo) -> None:
        """The job's current record and round; starts replicating on the first call."""
        if self.round is None or (self.round.round, self.round.started_unix) != (info.round, info.started_unix):
            self.frontier = info.resume_step or 0   # a new round: its workers write the steps after its resume step
        self.record, self.round = record, info
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._replicate_forever(), name="checkpoint replication")

    def saw_commits(self, round_number: int, steps: Sequence[int]) -> None:
        """The round's workers committed `steps` here (their checkpoint_committed events)."""
        if self.round is not None and self.round.round == round_number and steps:
            self.frontier = max(self.frontier or 0, *steps)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task

    def paths(self, job_id: str) -> JobPaths:
        return JobPaths.of(self.state_dir, job_id)

    # ---- what a round needs before it starts -------------------------------------------------------------

    async def fetch_tree(self, manifest: Manifest, dest: Path, root: Path, sources: Sequence[str]) -> None:
        """A shipped tree (dataset, model) from the peers, or from this box's own blob store when it has it all."""
        root.mkdir(parents=True, exist_ok=True)
        dest.mkdir(parents=True, exist_ok=True)
        channels = self.channels_for(list(dict.fromkeys(sources)))
        if not channels:
            if await asyncio.to_thread(lambda: all(self.store.has(d) for d in manifest.digests())):
                await asyncio.to_thread(write_tree, self.store, manifest, dest, link=False)
                return
            raise RuntimeError(f"no live member to fetch {dest.name} from")
        client = BlobClient(self.store, channels, TRANSFER_POLICY)
        await client.fetch_tree(manifest, dest, root=root, link=False)

    async def ensure_checkpoint(self, step: int, paths: JobPaths, holders: Sequence[str],
                                order_marker: dict[str, Any] | None) -> None:
        """Step `step` complete and verified here (fetched from `holders` when missing); `order_marker` is the
        commit marker the round order carries, for a box that never saw this step."""
        async with self._lock:
            await self._ensure_checkpoint(step, paths, holders, order_marker)

    async def _ensure_checkpoint(self, step: int, paths: JobPaths, holders: Sequence[str],
                                 order_marker: dict[str, Any] | None) -> None:
        directory = step_dir(paths.checkpoints, step)
        local = await asyncio.to_thread(read_manifest, directory)
        if order_marker is not None and local is not None and marker_fingerprint(local) != marker_fingerprint(
                order_marker):
            # This box holds another save of the step (from before a fall-back) than the one the coordinator
            # resumes from: every member must load the same bytes, so the coordinator's wins.
            log.warning("checkpoint step-%d here is another save than the round's: replacing it", step)
            (directory / COMMIT_MARKER).unlink(missing_ok=True)
            local = None
        elif local is not None and await asyncio.to_thread(verify_committed, directory):
            return
        marker = local or order_marker
        if marker is None:
            raise RuntimeError(f"checkpoint step-{step}: no commit marker here and none in the round order")
        await self._complete_checkpoint(step, marker, paths, holders)

    async def _fetch_files(self, missing: Manifest, directory: Path, root: Path, sources: Sequence[str],
                           what: str) -> None:
        if self.fetch is not None:   # the in-process fault tests' transfers (tests/sim)
            await self.fetch(missing, directory, root, list(dict.fromkeys(sources)))
            return
        channels = self.channels_for(list(dict.fromkeys(sources)))
        if not channels:
            raise RuntimeError(f"{what}: {len(missing.files)} files missing and no live holder")
        client = BlobClient(self.store, channels, TRANSFER_POLICY)
        await client.fetch_tree(missing, directory, root=root, link=False)

    def complete_steps(self, paths: JobPaths) -> list[int]:
        return committed_steps(paths.checkpoints, verify=True)

    async def _complete_checkpoint(self, step: int, marker: dict[str, Any], paths: JobPaths,
                                   sources: Sequence[str]) -> None:
        directory = step_dir(paths.checkpoints, step)
        manifest = Manifest.from_files_mapping(marker["files"])
        # By content, not size: a file of an earlier save of this step may have the same size and other bytes,
        # and must be fetched again (hashed once per file version, so a pass over a complete step is cheap).
        missing = Manifest(await asyncio.to_thread(
            lambda: tuple(e for e in manifest.files if not file_matches(directory / e.path, e.size, e.sha256))))
        _check_same_save(directory, step, marker)
        if missing.files:
            directory.mkdir(parents=True, exist_ok=True)
            await self._fetch_files(missing, directory, paths.root, sources, f"checkpoint step-{step}")
        _check_same_save(directory, step, marker)
        if not (directory / COMMIT_MARKER).is_file():
            await asyncio.to_thread(_write_marker, directory, marker)
        if not await asyncio.to_thread(verify_committed, directory):
            raise RuntimeError(f"checkpoint step-{step} does not verify after replication")
        self.replicated[step] = marker_fingerprint(marker)

    # ---- in the background ---------------------------------------------------------------------------------

    async def _replicate_forever(self) -> None:
        """Offering runs on its own: a fetch waiting for a peer must never hold back what this box offers to
        that peer."""
        offering = asyncio.create_task(self._offer_forever())
        try:
            while True:
                await asyncio.sleep(0.1)
                if self.record is None or self.round is None:
                    continue
                record, info = self.record, self.round
                try:
                    await self._replicate_once(record, info)
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    log.debug("replication pass failed: %s", exc)
                    self._warn_if_over_budget(exc)
                try:   # also when the newest step cannot be completed (its only holder died): prune all the same
                    await self._prune_once(record, info)
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    log.warning("job %s: pruning checkpoints failed: %s", record.job_id, exc)
        finally:
            offering.cancel()

    async def _offer_forever(self) -> None:
        while True:
            await asyncio.sleep(0.05)
            if self.record is None:
                continue
            paths = self.paths(self.record.job_id)
            try:
                for step in await asyncio.to_thread(committed_steps, paths.checkpoints, verify=False):
                    await asyncio.to_thread(self._ingest_local, paths, step)
            except Exception as exc:
                log.debug("offering checkpoint files failed: %s", exc)
                self._warn_if_over_budget(exc)

    async def _replicate_once(self, record: JobRecord, info: RoundInfo) -> None:
        paths = self.paths(record.job_id)
        steps = await asyncio.to_thread(committed_steps, paths.checkpoints, verify=False)
        if not steps:
            return
        newest = steps[-1]
        limit = record.elastic.get("replication")
        if limit and self.node_id in info.members and info.members.index(self.node_id) >= int(limit):
            return
        marker = await asyncio.to_thread(read_manifest, step_dir(paths.checkpoints, newest))
        if marker is None or self.replicated.get(newest) == marker_fingerprint(marker):
            return
        peers = [n for n in info.members if n != self.node_id]
        await self._complete_checkpoint(newest, marker, paths, peers)
        log.info("job %s: checkpoint step-%d complete on this box", record.job_id, newest)
        try:
            await self.send(MemberReport(job_id=record.job_id, node_id=self.node_id, round=info.round,
                                         term=record.term, phase="progress", checkpoints=(newest,)))
        except Exception:
            log.exception("job %s: could not deliver a report", record.job_id)

    async def _prune_once(self, record: JobRecord, info: RoundInfo) -> None:
        """Delete the steps this box no longer needs (p2pft.jobs.durability.steps_to_prune), and tell the others:
        a pruned step leaves this box's holdings, so no round resumes from it here."""
        if time.monotonic() - self._pruned_at < PRUNE_EVERY_S:
            return
        self._pruned_at = time.monotonic()
        paths = self.paths(record.job_id)
        async with self._lock:
            committed = await asyncio.to_thread(committed_steps, paths.checkpoints, verify=False)
            on_disk = await asyncio.to_thread(list_steps, paths.checkpoints)
            doomed = steps_to_prune(PruneInputs(
                committed=tuple(committed), on_disk=tuple(on_disk), limit=record.spec.save_total_limit,
                holdings=dict(self.holdings(record.job_id)),
                required=required_holders(record.elastic.get("replication"), len(info.members)),
                resume_step=info.resume_step, frontier=self.frontier))
            if not doomed:
                return
            digests = await asyncio.to_thread(step_digests, paths.checkpoints, doomed)
            await asyncio.to_thread(remove_steps, paths.checkpoints, doomed)
        for step in doomed:
            self.replicated.pop(step, None)
        self._ingested = {key for key in self._ingested if key[0] not in doomed}
        log.info("job %s: pruned checkpoint step %s here", record.job_id, ", ".join(map(str, doomed)))
        try:
            await self.send(MemberReport(job_id=record.job_id, node_id=self.node_id, round=info.round,
                                         term=record.term, phase="progress", pruned=doomed))
        except Exception:
            log.exception("job %s: could not deliver a report", record.job_id)
        if self.collect is not None and digests:
            try:
                await self.collect(digests, f"after pruning step {', '.join(map(str, doomed))} of {record.job_id}")
            except Exception:
                log.exception("job %s: collecting the pruned steps' blobs failed; the periodic pass will",
                              record.job_id)

    def _warn_if_over_budget(self, exc: BaseException) -> None:
        """A full store stalls replication until blobs are collected or the budget raised: the user must hear
        it (the other failures of a pass are retried quietly; they heal by themselves)."""
        refused = over_budget(exc)
        if refused is not None and str(refused) != self._budget_warned:
            self._budget_warned = str(refused)
            log.warning("checkpoint replication stalls: %s", refused)

    def _ingest_local(self, paths: JobPaths, step: int) -> None:
        directory = step_dir(paths.checkpoints, step)
        if not directory.is_dir():
            return
        for child in sorted(directory.iterdir()):
            if child.name.startswith(COMMIT_MARKER) or child.is_symlink() or not child.is_file():
                continue
            try:
                st = child.stat()
            except FileNotFoundError:
                continue
            key = (step, child.name, (st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns))
            if key in self._ingested:
                continue
            # A clone or a copy, never a hard link: the worker may rewrite this file when it saves the step again.
            # touch=False: replication wrote many of these files from blobs this very store holds; offering them
            # again is no new use, and must not keep the job's blobs from the collector once it ended.
            self.store.add_file(child, link=True, touch=False)
            self._ingested.add(key)


def over_budget(exc: BaseException | None) -> BlobBudgetError | None:
    """The store's budget refusal behind a failure (a fetch wraps it in a TransferError), if that is what it was."""
    while exc is not None:
        if isinstance(exc, BlobBudgetError):
            return exc
        exc = exc.__cause__
    return None


def step_digests(checkpoints: Path, steps: Sequence[int]) -> set[str]:
    """The blobs that steps' files (and their markers) may have here: what pruning them frees (blocking)."""
    found: set[str] = set()
    for step in steps:
        directory = step_dir(checkpoints, step)
        marker = read_manifest(directory)
        found.update(str(entry.get("sha256")) for entry in (marker or {}).get("files", {}).values()
                     if isinstance(entry, dict) and entry.get("sha256"))
        with contextlib.suppress(OSError):
            found.add(hashlib.sha256((directory / COMMIT_MARKER).read_bytes()).hexdigest())
    return found


def remove_steps(checkpoints: Path, steps: Sequence[int]) -> None:
    for step in steps:
        directory = step_dir(checkpoints, step)
        # the marker first: a crash midway never leaves a committed-looking partial step
        with contextlib.suppress(FileNotFoundError):
            (directory / COMMIT_MARKER).unlink()
        shutil.rmtree(directory, ignore_errors=True)


def _check_same_save(directory: Path, step: int, marker: dict[str, Any]) -> None:
    """A worker that saves this step again (after a fall-back) removes its marker, then writes a new one: a
    replication pass begun for the earlier save must then stop, never put that save's marker or files back."""
    here = read_manifest(directory)
    if here is not None and marker_fingerprint(here) != marker_fingerprint(marker):
        raise RuntimeError(f"checkpoint step-{step} was saved again here meanwhile: this pass is stale")




def _write_marker(directory: Path, marker: dict[str, Any]) -> None:
    from p2pft.formats.checkpoint_index import write_commit_marker

    write_commit_marker(directory, marker)
