"""Committed checkpoints as blobs: one digest (that of the step's COMMITTED marker) names a whole checkpoint.

The holder publishes a step dir (its files join the store as copies, or copy-on-write clones: never hard links,
since a worker may save the step again into the same files; each is checked against the marker); a peer that
learns the marker's digest fetches the marker, reads the file list from it, fetches the files and writes the
marker last, so a replica is either complete and committed or not committed at all.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from p2pft.formats.checkpoint_index import COMMIT_MARKER
from p2pft.transfer.client import BlobClient, TreeFetchResult
from p2pft.transfer.manifest import Manifest, ManifestError
from p2pft.transfer.store import BlobStore


def manifest_from_marker(raw: bytes) -> Manifest:
    """The tree a COMMITTED marker describes (its `files`: {name: {size, sha256}}); ManifestError if unusable."""
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ManifestError(f"{COMMIT_MARKER} marker is not valid JSON: {exc}") from None
    files = data.get("files") if isinstance(data, dict) else None
    if not isinstance(files, dict) or not all(isinstance(v, dict) for v in files.values()):
        raise ManifestError(f"{COMMIT_MARKER} marker has no 'files' mapping of name -> {{size, sha256}}")
    return Manifest.from_files_mapping(files)


def publish_checkpoint(store: BlobStore, step_dir: Path | str) -> tuple[str, int]:
    """Add a committed step dir's files and its marker to the store; returns the marker blob's (digest, size).

    Refuses a torn checkpoint: every file the marker lists must exist with the listed size and sha256.
    Blocking (hashes every file): call it through asyncio.to_thread from async code.
    """
    step_dir = Path(step_dir)
    marker_path = step_dir / COMMIT_MARKER
    try:
        raw = marker_path.read_bytes()
    except FileNotFoundError:
        raise ManifestError(f"{marker_path} is missing: only committed checkpoints can be published") from None
    manifest = manifest_from_marker(raw)
    for entry in manifest.files:
        source = step_dir / entry.path
        try:
            digest, size = store.add_file(source, link=True)
        except FileNotFoundError:
            raise ManifestError(f"checkpoint file {str(source)!r} listed in {COMMIT_MARKER} is missing") from None
        if (digest, size) != (entry.sha256, entry.size):
            raise ManifestError(f"checkpoint file {str(source)!r} does not match its {COMMIT_MARKER} entry: torn")
    return store.add_bytes(raw), len(raw)


async def replicate_checkpoint(
    client: BlobClient, marker_digest: str, marker_size: int, dest_step_dir: Path | str, *, root: Path | str
) -> TreeFetchResult:
    """Copy a published checkpoint from the client's peers into `dest_step_dir` (inside `root`), marker last."""
    marker_path = await client.fetch(marker_digest, marker_size)
    raw = await asyncio.to_thread(marker_path.read_bytes)
    manifest = manifest_from_marker(raw)
    # Copies, not links to the blobs: a worker that saves this step again writes into these files in place.
    return await client.sync_tree(manifest, dest_step_dir, root=root, marker=(COMMIT_MARKER, raw), link=False)
