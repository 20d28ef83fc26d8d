"""What a job ships from the submitting box: the dataset files its datasets name (+ dataset_info.json), and the
model when it is a local directory. Both become content-addressed blobs in the submitter's store (blocking:
call through asyncio.to_thread)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from p2pft.transfer import BlobStore, FileEntry, Manifest, ingest_tree

DATASET_INFO = "dataset_info.json"


def dataset_files(spec: dict[str, Any]) -> list[str]:
    """Paths relative to dataset_dir: dataset_info.json and the files of the datasets the job names."""
    from p2pft.formats.dataset_info import resolve_datasets  # torch-free

    dataset_dir = Path(spec["dataset_dir"]).resolve()
    names = [DATASET_INFO]
    for source in resolve_datasets(list(spec["dataset"]), dataset_dir):
        for path in source.files:
            rel = Path(path).resolve().relative_to(dataset_dir).as_posix()
            if rel not in names:
                names.append(rel)
    return names


def dataset_manifest(store: BlobStore, spec: dict[str, Any]) -> Manifest:
    dataset_dir = Path(spec["dataset_dir"])
    entries = []
    for rel in dataset_files(spec):
        digest, size = store.add_file(dataset_dir / rel)
        entries.append(FileEntry(path=rel, size=size, sha256=digest))
    return Manifest(tuple(entries))


def model_manifest(store: BlobStore, spec: dict[str, Any]) -> Manifest | None:
    """The model directory's files, or None when the model is a hub name each box takes from its own cache."""
    model = Path(spec["model_name_or_path"])
    if not model.is_dir():
        return None
    return ingest_tree(store, model)
