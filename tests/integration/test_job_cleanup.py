"""Issue 10: nothing of an ended job lingers on a box beyond its outputs and retained checkpoints, and the blob
collector never takes what a live job needs. Real state dirs with real files, real blob stores; the manager
is the few fields the cleanup reads."""

from __future__ import annotations

import asyncio
import hashlib
import os
import shutil
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, cast

from p2pft.formats.checkpoint_index import committed_steps, describe_files, write_commit_marker
from p2pft.jobs.job_cleanup import JobCleanup
from p2pft.jobs.manager import JobsManager
from p2pft.jobs.model import JobRecord, MemberReport, record_to_json
from p2pft.jobs.paths import JobPaths
from p2pft.transfer import BlobStore, ingest_tree
from tests.specs import job_spec

MIB = 1024 * 1024
STEP_BYTES = 2 * MIB   # each checkpoint step: two files of 1 MiB
ME = "box-b"


@dataclass
class Manager:
    state_dir: Path
    store: BlobStore
    node_id: str = ME
    records: dict[str, JobRecord] = field(default_factory=dict)
    reports: dict[tuple[str, int], dict[str, MemberReport]] = field(default_factory=dict)


def disk_bytes(root: Path) -> int:
    return sum(p.stat().st_size for p in root.rglob("*") if p.is_file() and not p.is_symlink())


def files(directory: Path, sizes: dict[str, int]) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    for name, size in sizes.items():
        (directory / name).write_bytes(os.urandom(size))
    return directory


def save_step(store: BlobStore, checkpoints: Path, step: int, *, offer: bool = True) -> None:
    """A committed step as the workers leave it, and its files offered to the store as replication does."""
    directory = files(checkpoints / f"step-{step}", {"__0_0.distcp": MIB, "__1_0.distcp": MIB - 1000,
                                                      ".metadata": 1000})
    write_commit_marker(directory, {"step": step, "files": describe_files(directory)})
    if offer:
        for child in directory.iterdir():
            if child.name != "COMMITTED":
                store.add_file(child, link=True)


def a_job(state_dir: Path, store: BlobStore, job_id: str, **spec_keys: Any) -> JobRecord:
    """A job as a member box holds it after 4 saves (steps 2..8) and two rounds: dataset and model copies, step
    dirs, each round's output (adapter files), and all of it in the blob store."""
    paths = JobPaths.of(state_dir, job_id)
    dataset = ingest_tree(store, files(paths.data, {"dataset_info.json": 200, "train.json": MIB}))
    model = ingest_tree(store, files(paths.model, {"config.json": 300, "model.safetensors": 3 * MIB}))
    for step in (2, 4, 6, 8):
        save_step(store, paths.checkpoints, step)
    files(paths.checkpoints / "step-10", {"__0_0.distcp": MIB})   # a save cut short: no marker
    for round_number in (0, 1):
        out = files(paths.round_output(round_number), {"adapter_config.json": 300, "adapter_model.safetensors": MIB,
                                                       "metrics.jsonl": 500})
        ingest_tree(store, out)
        files(paths.round_dir(round_number), {"agent.log": 2000})
    record = JobRecord(job_id=job_id, spec=job_spec(**spec_keys), submitter="box-a", coordinator="box-a",
                       dataset_manifest=dataset.to_dict(), model_manifest=model.to_dict())
    paths.record.write_text(record_to_json(record))
    return record


def test_an_ended_job_keeps_only_its_retained_steps_and_its_disk_use_is_bounded(tmp_path: Path) -> None:
    state_dir = tmp_path / "b"
    store = BlobStore.for_state_dir(state_dir)
    record = a_job(state_dir, store, "job-1", save_total_limit=2)
    manager = Manager(state_dir, store)
    before = disk_bytes(state_dir)
    manager.records["job-1"] = replace(record, status="succeeded", outputs_node="box-a")   # outputs elsewhere
    asyncio.run(JobCleanup(cast(JobsManager, manager)).after_end("job-1"))

    paths = JobPaths.of(state_dir, "job-1")
    assert committed_steps(paths.checkpoints) == [6, 8]            # save_total_limit: 2, both verified
    assert sorted(p.name for p in paths.checkpoints.iterdir()) == ["step-6", "step-8"]
    assert not paths.data.exists() and not paths.model.exists()
    assert not paths.round_output(0).exists() and not paths.round_output(1).exists()
    assert (paths.round_dir(1) / "agent.log").is_file() and paths.record.is_file()   # logs and record stay
    assert list(store.digests()) == []                              # nothing of an ended job is referenced here
    after = disk_bytes(state_dir)
    # Only the retained checkpoints, plus the record and logs (a few KiB): measured, before -> after.
    assert after <= 2 * STEP_BYTES + 64 * 1024, (before, after)
    print(f"\nstate dir of a finished job: {before / MIB:.1f} MiB -> {after / MIB:.1f} MiB "
          f"(retained checkpoints {2 * STEP_BYTES / MIB:.1f} MiB)")


def test_the_box_holding_the_outputs_keeps_their_blobs(tmp_path: Path) -> None:
    state_dir = tmp_path / "a"
    store = BlobStore.for_state_dir(state_dir)
    record = a_job(state_dir, store, "job-1")
    outputs = ingest_tree(store, files(tmp_path / "user-out", {"adapter_model.safetensors": MIB, "summary.json": 99}))
    manager = Manager(state_dir, store, node_id="box-a")
    manager.records["job-1"] = replace(record, status="succeeded", outputs_node="box-a",
                                       outputs_manifest=outputs.to_dict())
    asyncio.run(JobCleanup(cast(JobsManager, manager)).after_end("job-1"))
    assert set(store.digests()) == set(outputs.digests())
    # no save_total_limit: every committed step stays (LLaMA-Factory keeps them all too); the torn one goes
    assert committed_steps(JobPaths.of(state_dir, "job-1").checkpoints) == [2, 4, 6, 8]
    assert not (JobPaths.of(state_dir, "job-1").checkpoints / "step-10").exists()


def test_a_box_past_the_replication_index_keeps_only_the_retained_steps(tmp_path: Path) -> None:
    """Such a box never holds a step complete (the others' files never come), so the worker's prune keeps every
    step there; after the end, the save_total_limit newest go on, complete or not."""
    state_dir = tmp_path / "c"
    store = BlobStore.for_state_dir(state_dir)
    record = a_job(state_dir, store, "job-1", save_total_limit=1)
    checkpoints = JobPaths.of(state_dir, "job-1").checkpoints
    for step in (2, 4, 6, 8):   # the other box's shard, listed in every marker, never arrived here
        (checkpoints / f"step-{step}" / "__1_0.distcp").unlink()
    manager = Manager(state_dir, store, node_id="box-c")
    manager.records["job-1"] = replace(record, status="failed")
    asyncio.run(JobCleanup(cast(JobsManager, manager)).after_end("job-1"))
    assert sorted(p.name for p in checkpoints.iterdir()) == ["step-8"]
    assert disk_bytes(state_dir) <= STEP_BYTES + 64 * 1024


def test_the_collector_spares_what_a_live_job_needs_and_takes_pruned_steps(tmp_path: Path) -> None:
    state_dir = tmp_path / "b"
    store = BlobStore.for_state_dir(state_dir)
    live = a_job(state_dir, store, "job-live")
    reported = ingest_tree(store, files(tmp_path / "rank0-out", {"adapter_model.safetensors": 5000}))
    pruned = JobPaths.of(state_dir, "job-live").checkpoints / "step-2"
    pruned_blobs = {entry["sha256"] for entry in describe_files(pruned).values()}
    for child in sorted(pruned.iterdir(), reverse=True):   # the worker's prune: marker first, then the files
        child.unlink()
    pruned.rmdir()
    manager = Manager(state_dir, store)
    manager.reports[("job-live", 1)] = {"box-c": MemberReport(job_id="job-live", node_id="box-c", round=1,
                                                              outputs_manifest=reported.to_dict())}
    # the record is on disk only (a restarted daemon that has not loaded it yet): it protects its blobs too
    collector = JobCleanup(cast(JobsManager, manager)).collector
    collector.grace_s = 0.0   # every unreferenced blob is old enough
    present = set(store.digests())
    done = asyncio.run(collector.collect())
    assert done is not None
    needed = {e["sha256"] for e in live.dataset_manifest["files"]} | {e["sha256"] for e in live.model_manifest["files"]}
    needed |= {d for s in (4, 6, 8) for d in _step_blobs(state_dir, s)} | set(reported.digests())
    assert set(store.digests()) == needed
    # what went: the pruned step's files, and round outputs no report names (a member's, never collected)
    assert set(done.removed) == present - needed
    assert pruned_blobs - needed <= set(done.removed)


def test_an_unreadable_record_stops_the_collection(tmp_path: Path) -> None:
    state_dir = tmp_path / "b"
    store = BlobStore.for_state_dir(state_dir)
    a_job(state_dir, store, "job-1")
    JobPaths.of(state_dir, "job-1").record.write_text("{not json")
    before = set(store.digests())
    collector = JobCleanup(cast(JobsManager, Manager(state_dir, store))).collector
    assert asyncio.run(collector.collect()) is None
    assert set(store.digests()) == before


def _step_blobs(state_dir: Path, step: int) -> set[str]:
    directory = JobPaths.of(state_dir, "job-live").checkpoints / f"step-{step}"
    return {entry["sha256"] for entry in describe_files(directory).values()}


def test_the_periodic_pass_tidies_an_ended_job_a_stopped_daemon_left(tmp_path: Path) -> None:
    """`p2pft demo` stops its daemons seconds after the job ends: a box may stop before its cleanup ran. The pass a
    minute after its next start does it."""
    state_dir = tmp_path / "b"
    store = BlobStore.for_state_dir(state_dir)
    record = a_job(state_dir, store, "job-1", save_total_limit=1)
    manager = Manager(state_dir, store)
    manager.records["job-1"] = replace(record, status="cancelled")
    cleanup = JobCleanup(cast(JobsManager, manager))
    cleanup.collector.grace_s = 0.0   # as ten minutes later
    asyncio.run(cleanup.sweep())
    paths = JobPaths.of(state_dir, "job-1")
    assert not paths.data.exists() and committed_steps(paths.checkpoints) == [8]
    assert list(store.digests()) == []


def test_partial_files_of_transfers_cut_short_go_when_the_job_ends(tmp_path: Path) -> None:
    """Found by the chaos campaign: a member killed while the others fetched its checkpoint file left a
    `.partial` on each of them after the job ended (only the hourly pass took it). At the end nothing resumes
    such a transfer; a partial a live job needs, or one a writer holds, stays."""
    state_dir = tmp_path / "b"
    store = BlobStore.for_state_dir(state_dir)
    record = a_job(state_dir, store, "job-1", save_total_limit=2)
    live = a_job(state_dir, store, "job-live")
    cut_short, live_fetch, held_fetch = os.urandom(64), live.dataset_manifest["files"][0]["sha256"], os.urandom(64)
    with store.open_partial(hashlib.sha256(cut_short).hexdigest(), 1000) as writer:
        writer.write(cut_short)
    store.remove(live_fetch)
    with store.open_partial(live_fetch, 10_000) as writer:
        writer.write(b"x" * 10)
    held = store.open_partial(hashlib.sha256(held_fetch).hexdigest(), 1000)   # a transfer in progress
    held.write(held_fetch)
    manager = Manager(state_dir, store)
    manager.records = {"job-1": replace(record, status="succeeded", outputs_node="box-a"), "job-live": live}
    asyncio.run(JobCleanup(cast(JobsManager, manager)).after_end("job-1"))
    assert not store.partial_path(hashlib.sha256(cut_short).hexdigest()).exists()
    assert store.partial_path(live_fetch).exists()
    assert store.partial_path(hashlib.sha256(held_fetch).hexdigest()).exists()
    held.close()


def test_the_blobs_of_steps_pruned_during_a_job_go_at_once(tmp_path: Path) -> None:
    """Found by the chaos campaign: each box of a 130-step job with `save_steps: 1` held 30-43 MiB of blobs at
    its end against 0.7 MiB of retained checkpoints: the blobs of the steps pruned during the job waited for
    the periodic pass (every 10 minutes, once 10 minutes old). The real replicator's prune pass hands them
    to the real collector now; the retained steps', the dataset's and the model's blobs stay."""
    from p2pft.jobs.model import RoundInfo
    from p2pft.jobs.replication import CheckpointReplicator

    state_dir = tmp_path / "b"
    store = BlobStore.for_state_dir(state_dir)
    paths = JobPaths.of(state_dir, "job-1")
    record = a_job(state_dir, store, "job-1", save_total_limit=1)
    shutil.rmtree(paths.checkpoints / "step-10")
    for step in (2, 4, 6, 8):   # offered as the replicator offers a step's files: not a use of the blob
        for child in (paths.checkpoints / f"step-{step}").iterdir():
            store.add_file(child, link=True, touch=False)
    pruned = {d for s in (2, 4, 6) for d in _blobs_of(paths.checkpoints / f"step-{s}")}
    kept = _blobs_of(paths.checkpoints / "step-8")
    info = RoundInfo(round=1, reason="r", coordinator=ME, members=(ME,), addresses={}, plan={"entries": []},
                     store="", resume_step=8)
    record = replace(record, status="running", rounds=(info,))
    manager = Manager(state_dir, store, records={"job-1": record})
    collector = JobCleanup(cast(JobsManager, manager)).collector

    async def send(_report: MemberReport) -> None:
        return None

    async def collect(digests: set[str], why: str) -> None:
        await collector.collect(candidates=digests, why=why)

    replicator = CheckpointReplicator(node_id=ME, state_dir=state_dir, store=store, channels_for=lambda _: [],
                                      send=send, holdings=lambda _job: {ME: (2, 4, 6, 8)}, collect=collect)
    replicator.frontier = 10   # the workers write step 10 next: every step below may go
    asyncio.run(replicator._prune_once(record, info))
    assert committed_steps(paths.checkpoints) == [8]
    left = set(store.digests())
    assert not (pruned - kept) & left, "blobs of pruned steps stayed"
    assert kept <= left
    assert {e["sha256"] for e in record.dataset_manifest["files"]} <= left


def _blobs_of(directory: Path) -> set[str]:
    return {entry["sha256"] for entry in describe_files(directory).values()}
