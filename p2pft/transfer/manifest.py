"""A manifest describes a file tree (a dataset dir, a committed checkpoint) by relative path, size and sha256.

Manifests travel between boxes, so every path in one is untrusted: `validate_relative_path` refuses absolute
paths, `..`, empty or `.` components, backslashes and NUL, and `Manifest` refuses duplicates and a file that is
also another file's directory. Building a manifest from disk refuses symlinks instead of following them.
"""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from p2pft.transfer.store import InvalidDigestError, sha256_file, validate_digest

MANIFEST_VERSION = 1


class ManifestError(ValueError):
    """A manifest or a tree that cannot be used; the message is one line naming the path."""


def validate_relative_path(path: object) -> str:
    """Return `path` if it is a safe relative POSIX path inside a tree; raise ManifestError otherwise."""
    if not isinstance(path, str) or not path:
        raise ManifestError(f"manifest path {path!r} is not a non-empty string: use a relative path like 'a/b.json'")
    if "\x00" in path or "\\" in path:
        raise ManifestError(f"manifest path {path!r} contains NUL or a backslash: use '/'-separated relative paths")
    if path.startswith("/") or (len(path) >= 2 and path[1] == ":"):
        raise ManifestError(f"manifest path {path!r} is absolute: paths must be relative to the tree's root")
    parts = path.split("/")
    if any(part in ("", ".", "..") for part in parts):
        raise ManifestError(f"manifest path {path!r} has an empty, '.' or '..' component: it could escape the tree")
    return path


@dataclass(frozen=True)
class FileEntry:
    path: str
    size: int
    sha256: str

    def __post_init__(self) -> None:
        validate_relative_path(self.path)
        if not isinstance(self.size, int) or isinstance(self.size, bool) or self.size < 0:
            raise ManifestError(f"manifest path {self.path!r}: size {self.size!r} is not a non-negative integer")
        try:
            validate_digest(self.sha256)
        except InvalidDigestError as exc:
            raise ManifestError(f"manifest path {self.path!r}: {exc}") from None


@dataclass(frozen=True)
class Manifest:
    files: tuple[FileEntry, ...]

    def __post_init__(self) -> None:
        ordered = tuple(sorted(self.files, key=lambda entry: entry.path))
        object.__setattr__(self, "files", ordered)
        seen: set[str] = set()
        for entry in ordered:
            if entry.path in seen:
                raise ManifestError(f"manifest path {entry.path!r} appears twice: each file must be listed once")
            seen.add(entry.path)
        for entry in ordered:
            parent = PurePosixPath(entry.path).parent
            while str(parent) != ".":
                if str(parent) in seen:
                    raise ManifestError(
                        f"manifest path {entry.path!r} lies under {str(parent)!r}, which is listed as a file"
                    )
                parent = parent.parent

    @property
    def total_bytes(self) -> int:
        return sum(entry.size for entry in self.files)

    def digests(self) -> dict[str, int]:
        """Distinct blobs the tree needs: digest -> size."""
        return {entry.sha256: entry.size for entry in self.files}

    def to_dict(self) -> dict[str, Any]:
        return {
            "version": MANIFEST_VERSION,
            "files": [{"path": e.path, "size": e.size, "sha256": e.sha256} for e in self.files],
        }

    def to_json(self) -> bytes:
        """Canonical bytes (sorted, compact), so the same tree always gives the same manifest digest."""
        return json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":")).encode()

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Manifest:
        if not isinstance(data, Mapping) or data.get("version") != MANIFEST_VERSION:
            raise ManifestError(f"manifest version must be {MANIFEST_VERSION}; got {_version_of(data)!r}")
        files = data.get("files")
        if not isinstance(files, list):
            raise ManifestError("manifest 'files' must be a list of {path, size, sha256} objects")
        entries = []
        for item in files:
            if not isinstance(item, Mapping):
                raise ManifestError(f"manifest entry {item!r} is not an object with path, size and sha256")
            entries.append(FileEntry(path=item.get("path"), size=item.get("size"), sha256=item.get("sha256")))
        return cls(tuple(entries))

    @classmethod
    def from_json(cls, raw: bytes | str) -> Manifest:
        try:
            data = json.loads(raw)
        except (ValueError, UnicodeDecodeError) as exc:
            raise ManifestError(f"manifest is not valid JSON: {exc}") from None
        return cls.from_dict(data)

    @classmethod
    def from_files_mapping(cls, files: Mapping[str, Mapping[str, Any]]) -> Manifest:
        """From the `files` of a checkpoint's COMMITTED marker: {name: {size, sha256}}."""
        return cls(tuple(FileEntry(path=n, size=v.get("size"), sha256=v.get("sha256")) for n, v in files.items()))


def _version_of(data: object) -> object:
    return data.get("version") if isinstance(data, Mapping) else type(data).__name__


def iter_tree_files(root: Path, *, exclude: Iterable[str] = ()) -> list[str]:
    """Relative paths of every regular file under `root`, sorted; a symlink or special file is an error."""
    root = Path(root)
    if root.is_symlink() or not root.is_dir():
        raise ManifestError(f"tree root {str(root)!r} is not a directory (symlinks are not followed)")
    skipped = set(exclude)
    found: list[str] = []
    for dirpath, dirnames, filenames in os.walk(root):
        for name in sorted(dirnames + filenames):
            full = Path(dirpath) / name
            rel = full.relative_to(root).as_posix()
            mode = os.lstat(full).st_mode
            if stat.S_ISLNK(mode):
                raise ManifestError(f"tree path {rel!r} is a symlink: replace it with the file it points to")
            if stat.S_ISREG(mode):
                if rel not in skipped:
                    found.append(validate_relative_path(rel))
            elif not stat.S_ISDIR(mode):
                raise ManifestError(f"tree path {rel!r} is not a regular file or directory")
    return sorted(found)


def build_manifest(root: Path, *, exclude: Iterable[str] = ()) -> Manifest:
    """Hash every regular file under `root` (blocking; run in a thread from async code)."""
    entries = []
    for rel in iter_tree_files(root, exclude=exclude):
        digest, size = sha256_file(Path(root) / rel)
        entries.append(FileEntry(path=rel, size=size, sha256=digest))
    return Manifest(tuple(entries))
