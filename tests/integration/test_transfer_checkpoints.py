"""A committed checkpoint replicated between two stores by the digest of its COMMITTED marker."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from p2pft.formats.checkpoint_index import describe_files, newest_committed, verify_committed, write_commit_marker
from p2pft.transfer import BlobClient, BlobServicer, BlobStore, ManifestError
from p2pft.transfer.checkpoints import publish_checkpoint, replicate_checkpoint
from tests.integration.test_transfer_fetch import FAST, KIB, blob_server, channel_to, run_async


def committed_step(checkpoint_dir: Path, step: int) -> Path:
    step_dir = checkpoint_dir / f"step-{step}"
    step_dir.mkdir(parents=True)
    (step_dir / "__0_0.distcp").write_bytes(os.urandom(45 * KIB))
    (step_dir / "__1_0.distcp").write_bytes(os.urandom(45 * KIB))
    (step_dir / ".metadata").write_bytes(os.urandom(17 * KIB))
    write_commit_marker(step_dir, {"step": step, "files": describe_files(step_dir), "world_size": 2})
    return step_dir


@run_async
async def test_a_committed_checkpoint_replicates_by_its_marker_digest(tmp_path: Path) -> None:
    store_a, store_b = BlobStore(tmp_path / "a" / "blobs"), BlobStore(tmp_path / "b" / "blobs")
    source = committed_step(tmp_path / "a" / "ckpt", 4)
    marker_digest, marker_size = publish_checkpoint(store_a, source)
    replica_root = tmp_path / "b" / "ckpt"
    async with blob_server(BlobServicer(store_a)) as (_, target), channel_to(target) as channel:
        client = BlobClient(store_b, [channel], FAST)
        first = await replicate_checkpoint(client, marker_digest, marker_size, "step-4", root=replica_root)
        again = await replicate_checkpoint(client, marker_digest, marker_size, "step-4", root=replica_root)
    assert verify_committed(replica_root / "step-4") and newest_committed(replica_root) == 4
    assert first.fetched_blobs == 3 and again.fetched_blobs == 0 and again.written == ()


def test_a_torn_checkpoint_is_not_published(tmp_path: Path) -> None:
    store = BlobStore(tmp_path / "blobs")
    step_dir = committed_step(tmp_path / "ckpt", 2)
    (step_dir / "__1_0.distcp").write_bytes(b"rewritten after the commit")
    with pytest.raises(ManifestError, match=r"__1_0\.distcp.*torn"):
        publish_checkpoint(store, step_dir)
    (step_dir / "COMMITTED").unlink()
    with pytest.raises(ManifestError, match="only committed"):
        publish_checkpoint(store, step_dir)
