"""File trees <-> the blob store: add a tree's files to the store, lay a manifest's files out under a root.

Destinations are checked before anything is written: the destination dir must lie inside the given root once
symlinks are resolved, each manifest path is validated, and no existing symlink on the way to a target is written
through. Files are placed with a temp name + os.replace, so a reader never sees a half-written file.
All functions here block; async code calls them through `asyncio.to_thread`.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
from dataclasses import dataclass
from pathlib import Path

from p2pft.transfer.manifest import FileEntry, Manifest, ManifestError, iter_tree_files, validate_relative_path
from p2pft.transfer.store import BlobStore, sha256_file


@dataclass(frozen=True)
class TreeWriteResult:
    written: tuple[str, ...]  # paths (re)placed from the store
    unchanged: tuple[str, ...]  # paths that already held the right content


def resolve_destination(root: Path | str, dest_dir: Path | str) -> Path:
    """The real path of `dest_dir` (relative ones are taken from `root`), refused unless it lies inside `root`."""
    root_real = Path(os.path.realpath(root))
    dest = Path(dest_dir)
    if not dest.is_absolute():
        dest = root_real / dest
    dest_real = Path(os.path.realpath(dest))
    if dest_real != root_real and root_real not in dest_real.parents:
        raise ManifestError(f"destination {str(dest_dir)!r} is outside {str(root_real)!r}: choose a dir inside it")
    return dest_real


def target_path(dest_real: Path, rel: str) -> Path:
    """Where `rel` goes under `dest_real`; refuses to pass through symlinks or non-directories on the way."""
    validate_relative_path(rel)
    current = dest_real
    for part in rel.split("/")[:-1]:
        current = current / part
        if current.is_symlink():
            raise ManifestError(f"tree path {rel!r}: {str(current)!r} is a symlink; refusing to write through it")
        if current.exists() and not current.is_dir():
            raise ManifestError(f"tree path {rel!r}: {str(current)!r} exists and is not a directory")
    target = dest_real / rel
    if target.is_symlink() or (target.exists() and not target.is_file()):
        raise ManifestError(f"tree path {rel!r}: {str(target)!r} exists and is not a regular file; remove it first")
    return target


def file_matches(store: BlobStore, entry: FileEntry, target: Path) -> bool:
    """True when `target` already holds `entry`'s content. A hard link to the blob is the blob itself: its bytes
    are checked once per file version (`store.intact`), never trusted by the inode alone, since an in-place
    write through either name changes both."""
    try:
        st = target.lstat()
    except FileNotFoundError:
        return False
    if st.st_size != entry.size:
        return False
    with contextlib.suppress(FileNotFoundError):
        blob_st = store.blob_path(entry.sha256).stat()
        if (blob_st.st_dev, blob_st.st_ino) == (st.st_dev, st.st_ino):
            return store.intact(entry.sha256)
    return sha256_file(target)[0] == entry.sha256


def place_blob(store: BlobStore, digest: str, target: Path, *, link: bool = True) -> None:
    """Put the blob's content at `target` atomically: a hard link when allowed and possible, else a copy."""
    source = store.blob_path(digest)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.p2pft-{secrets.token_hex(4)}")
    try:
        linked = False
        if link:
            with contextlib.suppress(OSError):
                os.link(source, tmp)
                linked = True
        if not linked:
            shutil.copyfile(source, tmp)
            os.chmod(tmp, 0o644)
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


def write_tree(store: BlobStore, manifest: Manifest, dest_real: Path, *, link: bool = True) -> TreeWriteResult:
    """Lay out every manifest file under `dest_real` from the store (whose blobs must all be present)."""
    missing = [e.path for e in manifest.files if not store.has(e.sha256)]
    if missing:
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        raise ManifestError(f"blob store lacks the content of {missing[0]!r}{more}: fetch the blobs first")
    targets = [(entry, target_path(dest_real, entry.path)) for entry in manifest.files]  # validate all first
    written, unchanged = [], []
    for entry, target in targets:
        if file_matches(store, entry, target):
            unchanged.append(entry.path)
        else:
            place_blob(store, entry.sha256, target, link=link)
            written.append(entry.path)
    return TreeWriteResult(written=tuple(written), unchanged=tuple(unchanged))


def ingest_tree(store: BlobStore, root: Path | str, *, link: bool = False, exclude: tuple[str, ...] = ()) -> Manifest:
    """Add every file under `root` to the store and return the tree's manifest.

    `link=True` asks for copy-on-write clones where the file system has them (see `BlobStore.add_file`); a blob
    never shares an inode with a file of the tree, so rewriting the tree later cannot change a blob.
    """
    root = Path(root)
    entries = []
    for rel in iter_tree_files(root, exclude=exclude):
        digest, size = store.add_file(root / rel, link=link)
        entries.append(FileEntry(path=rel, size=size, sha256=digest))
    return Manifest(tuple(entries))
