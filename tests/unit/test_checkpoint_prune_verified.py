"""Issue 10: `prune` never deletes the newest step that is complete here, and content checks see rewrites
(digests are cached per file version)."""

from __future__ import annotations

import os
from pathlib import Path

from p2pft.formats.checkpoint_index import (
    committed_steps,
    describe_files,
    file_digest,
    file_matches,
    prune,
    step_dir,
    verify_committed,
    write_commit_marker,
)


def _step(root: Path, step: int, *, other_box_file: bool = False) -> Path:
    """A committed step; with `other_box_file`, its marker also lists a file another box wrote, not yet here
    (what each box holds of a multi-box step until replication completes it)."""
    directory = step_dir(root, step)
    directory.mkdir(parents=True)
    (directory / "__0_0.distcp").write_bytes(os.urandom(300))
    (directory / ".metadata").write_bytes(b"meta")
    files = describe_files(directory)
    if other_box_file:
        files["__1_0.distcp"] = {"size": 300, "sha256": "0" * 64}
    write_commit_marker(directory, {"step": step, "files": files})
    return directory


def test_keep_one_never_deletes_the_only_complete_step(tmp_path: Path) -> None:
    _step(tmp_path, 2)
    _step(tmp_path, 4, other_box_file=True)   # committed, not complete here yet
    assert prune(tmp_path, keep=1) == []
    assert committed_steps(tmp_path) == [2], "the only complete step was pruned"


def test_steps_older_than_a_newer_complete_one_go(tmp_path: Path) -> None:
    for step in (2, 4):
        _step(tmp_path, step)
    _step(tmp_path, 6, other_box_file=True)
    # keep=1 would keep only 6 by markers; 4 is the newest complete step, so it stays and only 2 goes.
    assert prune(tmp_path, keep=1) == [2]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["step-4", "step-6"]
    _step(tmp_path, 8)
    assert prune(tmp_path, keep=1) == [4, 6]
    assert committed_steps(tmp_path) == [8]


def test_a_rewrite_of_the_same_size_is_seen_after_a_cached_hash(tmp_path: Path) -> None:
    directory = _step(tmp_path, 2)
    assert verify_committed(directory)   # hashes and caches this version
    target = directory / "__0_0.distcp"
    stat = target.stat()
    with target.open("r+b") as handle:   # in place, as torch's open("wb") does: same inode, same size
        handle.write(b"X" * 300)
    os.utime(target, ns=(stat.st_atime_ns, stat.st_mtime_ns))   # even with the old mtime back
    assert not verify_committed(directory)
    digest = file_digest(target)["sha256"]
    assert file_matches(target, 300, digest) and not file_matches(target, 299, digest)
    assert not file_matches(directory / "missing", 300, digest)
