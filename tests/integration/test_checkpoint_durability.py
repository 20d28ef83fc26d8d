"""Issue 10, the worker's side of durable checkpoints (a real gloo world of one, real DCP files):
fp16's GradScaler state is saved and loaded with the step; a step saved again keeps nothing of the earlier
save; a save that would not fit on the disk fails before writing, with one deterministic line naming the box
and its free space."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
from torch import nn

from p2pft.formats.checkpoint_index import (
    COMMIT_MARKER,
    describe_files,
    read_manifest,
    step_dir,
    verify_committed,
    write_commit_marker,
)
from p2pft.train.checkpoint import (
    CheckpointSpaceError,
    Progress,
    load_checkpoint,
    save_checkpoint,
)
from p2pft.train.failure import classify


@pytest.fixture()
def world_of_one(tmp_path: Path) -> Iterator[None]:
    dist.init_process_group("gloo", store=dist.FileStore(str(tmp_path / "pg-store"), 1), rank=0, world_size=1)
    try:
        yield
    finally:
        dist.destroy_process_group()


def _trained() -> tuple[nn.Module, torch.optim.Optimizer]:
    torch.manual_seed(0)
    model = nn.Linear(8, 4)
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.01)
    model(torch.randn(2, 8)).sum().backward()
    optimizer.step()
    return model, optimizer


def test_the_grad_scaler_state_travels_with_the_step(world_of_one: None, tmp_path: Path) -> None:
    model, optimizer = _trained()
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0 ** 16, growth_interval=2000)
    # What training leaves: a scale that backed off after overflows, and progress towards the next growth.
    scaler.load_state_dict({**scaler.state_dict(), "scale": 1024.0, "_growth_tracker": 37})
    save_checkpoint(tmp_path, model, optimizer, Progress(5, 80, 0), node_id="n1", local_rank=0, scaler=scaler)
    resumed_model, resumed_optimizer = _trained()
    fresh = torch.amp.GradScaler("cpu", init_scale=2.0 ** 16, growth_interval=2000)
    progress = load_checkpoint(step_dir(tmp_path, 5), resumed_model, resumed_optimizer, fresh)
    assert progress == Progress(5, 80, 0)
    assert fresh.get_scale() == 1024.0
    assert fresh.state_dict()["_growth_tracker"] == 37
    assert fresh.state_dict() == scaler.state_dict()


def test_a_checkpoint_without_scaler_state_loads_with_a_scaler(world_of_one: None, tmp_path: Path) -> None:
    model, optimizer = _trained()
    save_checkpoint(tmp_path, model, optimizer, Progress(2, 32, 0), node_id="n1", local_rank=0)
    fresh = torch.amp.GradScaler("cpu", init_scale=512.0)
    load_checkpoint(step_dir(tmp_path, 2), *_trained(), fresh)
    assert fresh.get_scale() == 512.0   # start values: nothing stored to restore


def test_a_step_saved_again_keeps_nothing_of_the_earlier_save(world_of_one: None, tmp_path: Path) -> None:
    model, optimizer = _trained()
    save_checkpoint(tmp_path, model, optimizer, Progress(3, 48, 0), node_id="n1", local_rank=0)
    directory = step_dir(tmp_path, 3)
    # Another node's shard of the earlier save, replicated here, and a marker still claiming the old files.
    (directory / "__1_0.distcp").write_bytes(os.urandom(512))
    stale = read_manifest(directory)
    assert stale is not None
    write_commit_marker(directory, {**stale, "files": {**stale["files"], "__1_0.distcp": {"size": 512,
                                                                                           "sha256": "0" * 64}}})
    model(torch.randn(2, 8)).sum().backward()
    optimizer.step()   # trained on after a fall-back: the new save differs
    save_checkpoint(tmp_path, model, optimizer, Progress(3, 48, 0), node_id="n1", local_rank=0)
    marker = read_manifest(directory)
    assert marker is not None and "__1_0.distcp" not in marker["files"]
    assert not (directory / "__1_0.distcp").exists()
    assert verify_committed(directory)


def test_a_save_that_does_not_fit_fails_before_writing(world_of_one: None, tmp_path: Path) -> None:
    model, optimizer = _trained()
    previous = step_dir(tmp_path, 1)
    previous.mkdir(parents=True)
    with (previous / "__0_0.distcp").open("wb") as handle:   # sparse: a step bigger than the disk, no disk used
        handle.truncate(shutil.disk_usage(tmp_path).free + (1 << 30))
    write_commit_marker(previous, {"step": 1, "files": {}})
    with pytest.raises(CheckpointSpaceError) as raised:
        save_checkpoint(tmp_path, model, optimizer, Progress(2, 32, 0), node_id="n1", local_rank=0)
    message = str(raised.value)
    assert "(node n1)" in message and " free in " in message and "\n" not in message
    assert message.endswith(f"then submit the job again with resume_from_checkpoint: {previous} (its newest "
                            "checkpoint)")   # a failed job does not go on: how a new one starts where it stopped
    assert not (step_dir(tmp_path, 2) / COMMIT_MARKER).exists()
    assert not [p for p in step_dir(tmp_path, 2).iterdir() if p.suffix == ".distcp"]
    error = classify(raised.value, rank=0, node_id="n1", context={"step": 2})
    assert error.deterministic and error.type == "CheckpointSpaceError"


AGREE_CODE = """
import sys
from pathlib import Path
import torch.distributed as dist
from p2pft.train.checkpoint import agree_on_resume_step
store, rank, root = sys.argv[1], int(sys.argv[2]), Path(sys.argv[3])
dist.init_process_group("gloo", store=dist.FileStore(store, 2), rank=rank, world_size=2)
print(agree_on_resume_step(root, local_rank=0, node_id=f"node-{rank}"))
dist.destroy_process_group()
"""


def test_nodes_holding_different_saves_of_a_step_do_not_resume_from_it(tmp_path: Path) -> None:
    """After a fall-back, step 4 was saved again on one node only: both hold a complete step 4, of different
    saves. Two real ranks, each with its own checkpoint dir, must agree on step 2, the newest same save."""
    import subprocess
    import sys

    roots = [tmp_path / "node-0", tmp_path / "node-1"]
    for index, root in enumerate(roots):
        for step, data in ((2, b"same save"), (4, b"save of node %d" % index)):
            directory = step_dir(root, step)
            directory.mkdir(parents=True)
            (directory / "__0_0.distcp").write_bytes(data)
            write_commit_marker(directory, {"step": step, "files": describe_files(directory)})
    ranks = [subprocess.Popen([sys.executable, "-c", AGREE_CODE, str(tmp_path / "pg"), str(rank), str(root)],
                              stdout=subprocess.PIPE, text=True) for rank, root in enumerate(roots)]
    answers = [process.communicate(timeout=120)[0].strip() for process in ranks]
    assert answers == ["2", "2"]
