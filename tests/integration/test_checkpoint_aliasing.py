"""Issue 10, blob-store aliasing: a checkpoint file rewritten in place (torch saves a step again after a
fall-back) never changes a blob; a re-saved step is offered again; replication checks content, not size, so
a stale file of another save is fetched again; every member ends up with the save the round resumes from.
Real files, a real BlobStore and a real gRPC BlobService between two replicators."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import grpc
import pytest

from p2pft.formats.checkpoint_index import (
    COMMIT_MARKER,
    describe_files,
    marker_fingerprint,
    read_manifest,
    step_dir,
    verify_committed,
    write_commit_marker,
)
from p2pft.jobs.model import MemberReport
from p2pft.jobs.paths import JobPaths
from p2pft.jobs.replication import CheckpointReplicator
from p2pft.transfer import BlobServicer, BlobStore
from p2pft.transfer.checkpoints import publish_checkpoint
from tests.integration.test_transfer_fetch import blob_server, channel_to, run_async

JOB = "job-alias"


def _save(checkpoints: Path, step: int, files: dict[str, bytes]) -> dict[str, Any]:
    """What a worker leaves: the files, then the marker (rewritten in place when the dir exists, as torch does)."""
    directory = step_dir(checkpoints, step)
    directory.mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        with (directory / name).open("r+b" if (directory / name).exists() else "wb") as handle:
            handle.write(data)   # same inode: what open("wb") in torch's writer does to an existing file
            handle.truncate()
    marker = {"step": step, "files": describe_files(directory)}
    write_commit_marker(directory, marker)
    return marker


def _replicator(state: Path, store: BlobStore, channels: list[grpc.aio.Channel] | None = None) -> CheckpointReplicator:
    async def send(_report: MemberReport) -> None:
        return None

    return CheckpointReplicator(node_id="a", state_dir=state, store=store,
                                channels_for=lambda _nodes: list(channels or []), send=send)


def test_a_file_rewritten_in_place_never_changes_its_blob(tmp_path: Path) -> None:
    store = BlobStore(tmp_path / "blobs")
    source = tmp_path / "__0_0.distcp"
    source.write_bytes(b"first save " * 100)
    digest, _ = store.add_file(source, link=True)
    with source.open("r+b") as handle:   # the same size, other bytes, same inode
        handle.write(b"other save " * 100)
    assert store.blob_path(digest).stat().st_ino != source.stat().st_ino
    assert store.intact(digest), "the blob changed with the checkpoint file it was added from"
    with store.open_blob(digest) as blob:
        assert blob.read() == b"first save " * 100


def test_publish_checkpoint_copies_so_a_resave_leaves_the_published_step_intact(tmp_path: Path) -> None:
    store = BlobStore(tmp_path / "blobs")
    checkpoints = tmp_path / "ckpt"
    marker = _save(checkpoints, 4, {"__0_0.distcp": os.urandom(4096), ".metadata": b"meta-1"})
    publish_checkpoint(store, step_dir(checkpoints, 4))
    _save(checkpoints, 4, {"__0_0.distcp": os.urandom(4096), ".metadata": b"meta-2"})
    assert all(store.intact(entry["sha256"]) for entry in marker["files"].values())


def test_a_blob_edited_through_an_old_hard_link_is_not_served(tmp_path: Path) -> None:
    """Stores made before this fix hold hard-linked checkpoint files: such a blob is re-hashed before it is
    read, and dropped when it no longer matches its name."""
    store = BlobStore(tmp_path / "blobs")
    digest = store.add_bytes(b"x" * 1000)
    alias = tmp_path / "alias.distcp"
    os.link(store.blob_path(digest), alias)
    with store.open_blob(digest) as blob:   # intact: served (and its version remembered)
        assert blob.read() == b"x" * 1000
    os.chmod(alias, 0o644)
    with alias.open("r+b") as handle:
        handle.write(b"y" * 1000)
    with pytest.raises(FileNotFoundError, match="changed on disk"):
        store.open_blob(digest)
    assert not store.has(digest)


def test_a_resaved_step_is_offered_again(tmp_path: Path) -> None:
    state = tmp_path / "state"
    store = BlobStore(tmp_path / "blobs")
    paths = JobPaths.of(state, JOB)
    replicator = _replicator(state, store)
    first = _save(paths.checkpoints, 6, {"__0_0.distcp": b"A" * 2048})
    replicator._ingest_local(paths, 6)
    second = _save(paths.checkpoints, 6, {"__0_0.distcp": b"B" * 2048})
    replicator._ingest_local(paths, 6)
    for marker in (first, second):
        assert store.intact(marker["files"]["__0_0.distcp"]["sha256"])


@run_async
async def test_a_stale_file_of_the_same_size_is_fetched_again(tmp_path: Path) -> None:
    """Box B holds step 8 of an earlier save (same sizes, other bytes) and the marker of the new one: size-only
    checks called the stale file fine, and the step never verified (replication stuck on it forever)."""
    store_a, store_b = BlobStore(tmp_path / "a-blobs"), BlobStore(tmp_path / "b-blobs")
    paths_a, paths_b = JobPaths.of(tmp_path / "a", JOB), JobPaths.of(tmp_path / "b", JOB)
    new = {"__0_0.distcp": os.urandom(8192), ".metadata": b"meta-new"}
    marker = _save(paths_a.checkpoints, 8, new)
    _ingest = _replicator(tmp_path / "a", store_a)
    _ingest._ingest_local(paths_a, 8)
    _save(paths_b.checkpoints, 8, {"__0_0.distcp": os.urandom(8192), ".metadata": b"meta-old"})
    (step_dir(paths_b.checkpoints, 8) / COMMIT_MARKER).unlink()
    write_commit_marker(step_dir(paths_b.checkpoints, 8), marker)   # the new save's marker, old files
    assert not verify_committed(step_dir(paths_b.checkpoints, 8))
    async with blob_server(BlobServicer(store_a)) as (_, target), channel_to(target) as channel:
        replicator = _replicator(tmp_path / "b", store_b, [channel])
        await replicator._complete_checkpoint(8, marker, paths_b, ["a"])
    assert verify_committed(step_dir(paths_b.checkpoints, 8))
    assert (step_dir(paths_b.checkpoints, 8) / "__0_0.distcp").read_bytes() == new["__0_0.distcp"]


@run_async
async def test_a_member_holding_another_save_of_the_resume_step_takes_the_rounds(tmp_path: Path) -> None:
    """Two saves of step 10 (before and after a fall-back): a member whose own, complete copy is the other save
    must end with the round's, or two nodes would load different states under one step number."""
    store_a, store_b = BlobStore(tmp_path / "a-blobs"), BlobStore(tmp_path / "b-blobs")
    paths_a, paths_b = JobPaths.of(tmp_path / "a", JOB), JobPaths.of(tmp_path / "b", JOB)
    rounds = _save(paths_a.checkpoints, 10, {"__0_0.distcp": os.urandom(4096), ".metadata": b"meta-round"})
    _replicator(tmp_path / "a", store_a)._ingest_local(paths_a, 10)
    _save(paths_b.checkpoints, 10, {"__0_0.distcp": os.urandom(4096), ".metadata": b"meta-mine!"})
    assert verify_committed(step_dir(paths_b.checkpoints, 10))   # complete, but another save
    async with blob_server(BlobServicer(store_a)) as (_, target), channel_to(target) as channel:
        replicator = _replicator(tmp_path / "b", store_b, [channel])
        await replicator.ensure_checkpoint(10, paths_b, ["a"], rounds)
    here = read_manifest(step_dir(paths_b.checkpoints, 10))
    assert here is not None and marker_fingerprint(here) == marker_fingerprint(rounds)
    assert verify_committed(step_dir(paths_b.checkpoints, 10))
