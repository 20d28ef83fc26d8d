"""Which checkpoints exist, which are committed and intact (torch-free: daemons use it too).

Layout: `<checkpoint_dir>/step-<N>/` holds the DCP files of every rank; `COMMITTED` (a JSON manifest with the
size and sha256 of every file) is written last and atomically, only after every rank finished writing. A step
directory without a valid marker, or whose files do not match the manifest, is torn and never loaded.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

COMMIT_MARKER = "COMMITTED"
_STEP_DIR = re.compile(r"^step-(\d+)$")


def step_dir(checkpoint_dir: str | Path, step: int) -> Path:
    return Path(checkpoint_dir) / f"step-{step}"


def list_steps(checkpoint_dir: str | Path) -> list[int]:
    """Every step that has a directory, committed or not, ascending."""
    root = Path(checkpoint_dir)
    if not root.is_dir():
        return []
    steps = []
    for child in root.iterdir():
        match = _STEP_DIR.match(child.name)
        if match and child.is_dir():
            steps.append(int(match.group(1)))
    return sorted(steps)


# sha256 of each file version seen, so a step is hashed once (at its commit) and not at every check after:
# verify_committed runs at every save (prune), every replication pass and every round start. A version is the
# file's (device, inode, size, mtime_ns, ctime_ns): any write to the file, even one that restores its size and
# mtime, changes ctime, so a stale digest is never reused for new content.
_DIGESTS: dict[tuple[str, int, int, int, int, int], str] = {}
_DIGESTS_MAX = 4096


def _version(path: Path, st: os.stat_result) -> tuple[str, int, int, int, int, int]:
    return (str(path), st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


def file_digest(path: Path) -> dict[str, Any]:
    """{size, sha256} of a file; hashed once per file version (see _DIGESTS)."""
    path = Path(path)
    with path.open("rb") as handle:
        before = os.fstat(handle.fileno())
        key = _version(path, before)
        known = _DIGESTS.get(key)
        if known is not None:
            return {"size": before.st_size, "sha256": known}
        sha = hashlib.sha256()
        size = 0
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            sha.update(chunk)
            size += len(chunk)
        after = os.fstat(handle.fileno())
    if _version(path, after) == key and size == before.st_size:  # not written while we read: cacheable
        if len(_DIGESTS) >= _DIGESTS_MAX:
            _DIGESTS.clear()
        _DIGESTS[key] = sha.hexdigest()
    return {"size": size, "sha256": sha.hexdigest()}


def file_matches(path: Path, size: int, sha256: str) -> bool:
    """True when `path` is a regular file with exactly this size and content (False when it is missing)."""
    try:
        if path.is_symlink() or not path.is_file() or path.stat().st_size != size:
            return False
        return file_digest(path)["sha256"] == sha256
    except FileNotFoundError:
        return False


def describe_files(directory: str | Path) -> dict[str, dict[str, Any]]:
    """{name: {size, sha256}} of the plain files in `directory` (the marker excluded)."""
    root = Path(directory)
    return {
        child.name: file_digest(child)
        for child in sorted(root.iterdir())
        if child.is_file() and not child.name.startswith(COMMIT_MARKER)
    }


def write_commit_marker(directory: str | Path, manifest: Mapping[str, Any]) -> Path:
    """Write COMMITTED atomically: a temp name, fsync, then os.replace."""
    root = Path(directory)
    final = root / COMMIT_MARKER
    temp = root / f"{COMMIT_MARKER}.tmp-{os.getpid()}"
    with temp.open("w") as handle:
        json.dump(dict(manifest), handle, sort_keys=True)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temp, final)
    return final


def read_manifest(directory: str | Path) -> dict[str, Any] | None:
    try:
        data = json.loads((Path(directory) / COMMIT_MARKER).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or not isinstance(data.get("files"), dict) or "step" not in data:
        return None
    return data


def marker_fingerprint(marker: Mapping[str, Any]) -> str:
    """What identifies one save of a step: every file's size and sha256. A step saved again after a fall-back
    has the same number and other bytes; two boxes must never mix (or load) different saves of one step."""
    files = {name: [int(entry.get("size", -1)), str(entry.get("sha256", ""))]
             for name, entry in marker.get("files", {}).items()}
    return hashlib.sha256(json.dumps(files, sort_keys=True).encode()).hexdigest()


def verify_committed(directory: str | Path) -> bool:
    """True when the marker exists and every listed file is present with the listed size and sha256."""
    root = Path(directory)
    manifest = read_manifest(root)
    if manifest is None or not manifest["files"]:
        return False
    for name, expected in manifest["files"].items():
        if "/" in name or not file_matches(root / name, expected.get("size"), expected.get("sha256")):
            return False
    return True


def committed_steps(checkpoint_dir: str | Path, *, verify: bool = True) -> list[int]:
    """Steps with a commit marker (and, with verify, intact files), ascending."""
    out = []
    for step in list_steps(checkpoint_dir):
        directory = step_dir(checkpoint_dir, step)
        ok = verify_committed(directory) if verify else read_manifest(directory) is not None
        if ok:
            out.append(step)
    return out


def newest_committed(checkpoint_dir: str | Path, *, verify: bool = True) -> int | None:
    """The newest committed (and by default verified) step, or None. Checks newest first, stops at the first."""
    for step in reversed(list_steps(checkpoint_dir)):
        directory = step_dir(checkpoint_dir, step)
        if verify_committed(directory) if verify else read_manifest(directory) is not None:
            return step
    return None


def prune(checkpoint_dir: str | Path, keep: int | None) -> list[int]:
    """Keep the `keep` newest committed checkpoints; also remove torn ones older than the newest committed.

    A marker is not a complete step: on a multi-box job each box's marker lists every box's files, and the
    others' arrive by replication later. So a committed step is only removed when a newer step is verified
    complete here (every file present with its sha256): the newest complete step always stays, whatever `keep`
    says. Torn directories newer than the newest committed one are left alone: a save may be in progress there.
    Returns the removed steps.
    """
    committed = committed_steps(checkpoint_dir, verify=False)
    if not committed:
        return []
    newest = committed[-1]
    doomed = [s for s in list_steps(checkpoint_dir) if s < newest and s not in committed]
    if keep is not None and keep > 0 and len(committed) > keep:
        complete = newest_committed(checkpoint_dir, verify=True)
        doomed += [s for s in committed[:-keep] if complete is not None and s < complete]
    for step in sorted(doomed):
        directory = step_dir(checkpoint_dir, step)
        # the marker goes first so that a crash midway never leaves a committed-looking partial directory
        with contextlib.suppress(FileNotFoundError):
            (directory / COMMIT_MARKER).unlink()
        shutil.rmtree(directory, ignore_errors=True)
    return sorted(doomed)
