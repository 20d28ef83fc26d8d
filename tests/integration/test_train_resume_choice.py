"""Which checkpoint a (world of one) worker resumes from: none, the newest intact one, or a clear error."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch.distributed as dist

from p2pft.formats.checkpoint_index import describe_files, step_dir, write_commit_marker
from p2pft.train.checkpoint import CheckpointError, agree_on_resume_step


@pytest.fixture()
def world_of_one(tmp_path: Path):
    dist.init_process_group("gloo", store=dist.FileStore(str(tmp_path / "store"), 1), rank=0, world_size=1)
    try:
        yield
    finally:
        dist.destroy_process_group()


def checkpoint(root: Path, step: int, *, commit: bool = True) -> Path:
    directory = step_dir(root, step)
    directory.mkdir(parents=True)
    (directory / "__0_0.distcp").write_bytes(bytes(range(200)))
    if commit:
        write_commit_marker(directory, {"step": step, "files": describe_files(directory)})
    return directory


def test_resume_choice(world_of_one: None, tmp_path: Path) -> None:
    root = tmp_path / "checkpoints"
    assert agree_on_resume_step(root, local_rank=0, node_id="a") is None  # nothing anywhere: fresh start
    checkpoint(root, 2)
    corrupt = checkpoint(root, 4)
    checkpoint(root, 6, commit=False)  # torn
    (corrupt / "__0_0.distcp").write_bytes(bytes(reversed(range(200))))
    assert agree_on_resume_step(root, local_rank=0, node_id="a") == 2
    (step_dir(root, 2) / "__0_0.distcp").unlink()  # now no committed checkpoint is intact
    with pytest.raises(CheckpointError, match="none is complete and intact"):
        agree_on_resume_step(root, local_rank=0, node_id="a")
