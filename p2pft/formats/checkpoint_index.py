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


def file_digest(path: Path) -> dict[str, Any]:
    sha = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            sha.update(chunk)
    return {"size": path.stat().st_size, "sha256": sha.hexdigest()}


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


def verify_committed(directory: str | Path) -> bool:
    """True when the marker exists and every listed file is present with the listed size and sha256."""
    root = Path(directory)
    manifest = read_manifest(root)
    if manifest is None or not manifest["files"]:
        return False
    for name, expected in manifest["files"].items():
        path = root / name
        if "/" in name or not path.is_file():
            return False
        if path.stat().st_size != expected.get("size"):
            return False
        if file_digest(path)["sha256"] != expected.get("sha256"):
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

    Torn directories newer than the newest committed one are left alone: a save may be in progress there.
    Returns the removed steps.
    """
    committed = committed_steps(checkpoint_dir, verify=False)
    if not committed:
        return []
    newest = committed[-1]
    doomed = [s for s in list_steps(checkpoint_dir) if s < newest and s not in committed]
    if keep is not None and keep > 0:
        doomed += committed[:-keep]
    for step in sorted(doomed):
        directory = step_dir(checkpoint_dir, step)
        # the marker goes first so that a crash midway never leaves a committed-looking partial directory
        with contextlib.suppress(FileNotFoundError):
            (directory / COMMIT_MARKER).unlink()
        shutil.rmtree(directory, ignore_errors=True)
    return sorted(doomed)
