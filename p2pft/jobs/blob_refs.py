"""Which blobs a job still needs on this box (pure): the blob collector keeps these and removes the rest.

A live job (not ended) needs its dataset and model trees, the files of every checkpoint step it keeps here (the
retained steps' COMMITTED markers), and the outputs its members reported for the collection at its end. An
ended job needs nothing here, except on the box that holds its outputs: `p2pft fetch` and the submitting box
pull them from that box's store.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from p2pft.jobs.model import JobRecord


def manifest_digests(manifest: Mapping[str, Any] | None) -> set[str]:
    """The blobs of a `Manifest.to_dict()` (an outputs, dataset or model tree)."""
    files = manifest.get("files") if isinstance(manifest, Mapping) else None
    if not isinstance(files, list):
        return set()
    return {entry["sha256"] for entry in files if isinstance(entry, Mapping) and isinstance(entry.get("sha256"), str)}


def marker_digests(marker: Mapping[str, Any]) -> set[str]:
    """The blobs of a checkpoint step's COMMITTED marker (`files`: {name: {size, sha256}})."""
    files = marker.get("files")
    if not isinstance(files, Mapping):
        return set()
    return {entry["sha256"] for entry in files.values()
            if isinstance(entry, Mapping) and isinstance(entry.get("sha256"), str)}


def job_references(record: JobRecord, node_id: str, *, markers: Iterable[Mapping[str, Any]] = (),
                   reported_outputs: Iterable[Mapping[str, Any]] = ()) -> set[str]:
    """The blobs `record`'s job needs in this box's store (`markers`: of the steps held here)."""
    if record.terminal:
        return manifest_digests(record.outputs_manifest) if record.outputs_node == node_id else set()
    needed = manifest_digests(record.dataset_manifest) | manifest_digests(record.model_manifest)
    needed |= manifest_digests(record.outputs_manifest)
    for marker in markers:
        needed |= marker_digests(marker)
    for manifest in reported_outputs:
        needed |= manifest_digests(manifest)
    return needed
