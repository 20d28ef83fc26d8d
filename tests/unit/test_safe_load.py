"""Checkpoints come from peers: loading one never unpickles anything but checkpoint metadata and plain values."""

from __future__ import annotations

import pickle
import warnings
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from torch import nn  # noqa: E402

from p2pft.train.checkpoint import CheckpointError, Progress, _state, load_checkpoint  # noqa: E402
from p2pft.train.safe_load import UnsafeCheckpoint, check_metadata  # noqa: E402


class _Payload:
    """What a hostile peer would put in .metadata: unpickling it creates `marker` (stands for any code)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str, str]]:
        return open, (str(self.marker), "w")


def _model_and_optimizer(seed: int) -> tuple[nn.Module, torch.optim.Optimizer]:
    torch.manual_seed(seed)
    model = nn.Linear(3, 2)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    model(torch.randn(4, 3)).sum().backward()
    optimizer.step()
    return model, optimizer


def _save(directory: Path) -> nn.Module:
    import torch.distributed.checkpoint as dcp

    model, optimizer = _model_and_optimizer(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")   # "torch.distributed is not initialized": one process is the point
        dcp.save(_state(model, optimizer, Progress(7, 28, 0)), checkpoint_id=str(directory))
    return model


def test_a_checkpoint_loads_with_safe_metadata_and_weights_only_values(tmp_path: Path) -> None:
    saved = _save(tmp_path / "step-7")
    check_metadata(tmp_path / "step-7")
    model, optimizer = _model_and_optimizer(1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        progress = load_checkpoint(tmp_path / "step-7", model, optimizer)
    assert progress == Progress(7, 28, 0)
    assert torch.equal(model.weight, saved.weight)
    assert optimizer.param_groups[0]["lr"] == 1e-3   # a non-tensor entry, read with weights_only=True


def test_a_metadata_pickle_that_would_run_code_is_refused_and_never_run(tmp_path: Path) -> None:
    directory = tmp_path / "step-7"
    _save(directory)
    marker = tmp_path / "payload-ran"
    (directory / ".metadata").write_bytes(pickle.dumps(_Payload(marker)))
    with pytest.raises(UnsafeCheckpoint, match=r"io\.open"):
        check_metadata(directory)
    model, optimizer = _model_and_optimizer(1)
    with pytest.raises(CheckpointError, match="could run code"):
        load_checkpoint(directory, model, optimizer)
    assert not marker.exists()
    # The control: a plain unpickler would have run it.
    pickle.loads((directory / ".metadata").read_bytes()).close()
    assert marker.exists()


def test_garbage_metadata_is_refused_in_one_line(tmp_path: Path) -> None:
    directory = tmp_path / "step-1"
    directory.mkdir()
    (directory / ".metadata").write_bytes(b"\x80\x04garbage")
    with pytest.raises(UnsafeCheckpoint) as refused:
        check_metadata(directory)
    assert "\n" not in str(refused.value)
