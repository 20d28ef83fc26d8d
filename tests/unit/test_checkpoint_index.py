import json
import sys
from pathlib import Path

from p2pft.formats.checkpoint_index import (
    committed_steps,
    describe_files,
    newest_committed,
    prune,
    step_dir,
    verify_committed,
    write_commit_marker,
)


def make_checkpoint(root: Path, step: int, commit: bool = True) -> Path:
    directory = step_dir(root, step)
    directory.mkdir(parents=True)
    (directory / "__0_0.distcp").write_bytes(b"rank0" * 100)
    (directory / ".metadata").write_bytes(b"meta")
    if commit:
        write_commit_marker(directory, {"step": step, "files": describe_files(directory)})
    return directory


def test_newest_committed_skips_torn_and_corrupt(tmp_path: Path) -> None:
    make_checkpoint(tmp_path, 2)
    corrupt = make_checkpoint(tmp_path, 4)
    make_checkpoint(tmp_path, 6, commit=False)  # torn: no marker
    (corrupt / "__0_0.distcp").write_bytes(b"rank0" * 99 + b"rankX")  # same size, other bytes
    assert not verify_committed(corrupt)
    assert verify_committed(step_dir(tmp_path, 2))
    assert newest_committed(tmp_path) == 2
    assert newest_committed(tmp_path, verify=False) == 4
    assert newest_committed(tmp_path / "missing") is None


def test_missing_file_or_bad_marker_is_not_committed(tmp_path: Path) -> None:
    directory = make_checkpoint(tmp_path, 3)
    (directory / ".metadata").unlink()
    assert not verify_committed(directory)
    other = make_checkpoint(tmp_path, 5)
    (other / "COMMITTED").write_text("{not json")
    assert not verify_committed(other)


def test_marker_lists_sizes_and_hashes(tmp_path: Path) -> None:
    directory = make_checkpoint(tmp_path, 1)
    manifest = json.loads((directory / "COMMITTED").read_text())
    assert set(manifest["files"]) == {"__0_0.distcp", ".metadata"}
    assert manifest["files"][".metadata"]["size"] == 4
    assert len(manifest["files"][".metadata"]["sha256"]) == 64
    assert not list(directory.glob("COMMITTED.tmp*"))


def test_prune_keeps_newest_and_leaves_in_progress_saves(tmp_path: Path) -> None:
    for step in (2, 4, 6, 8):
        make_checkpoint(tmp_path, step)
    make_checkpoint(tmp_path, 5, commit=False)   # torn, older than newest: removed
    make_checkpoint(tmp_path, 10, commit=False)  # maybe being written: kept
    removed = prune(tmp_path, keep=2)
    assert removed == [2, 4, 5]
    assert committed_steps(tmp_path) == [6, 8]
    assert step_dir(tmp_path, 10).is_dir()


def test_index_is_torch_free() -> None:
    import subprocess

    code = "import sys, p2pft.formats.checkpoint_index, p2pft.train.sampler, p2pft.train.schedule; " \
           "print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"
