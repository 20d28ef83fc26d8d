"""Sharded checkpoints with torch.distributed.checkpoint (DCP) and a commit marker.

Save: every rank writes its DCP files into `step-N/`; once every rank is provably done (a collective that needs
all of them), each node's local rank 0 writes `COMMITTED` with the sizes and sha256 of every file of every node.
Load: any world size, any plan; only the trainable weights are stored (LoRA: the adapter), so loading is
non-strict and the key set is checked here instead.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import torch.distributed.checkpoint as dcp
from torch import nn
from torch.distributed.checkpoint.state_dict import StateDictOptions, get_state_dict, set_state_dict

from p2pft.formats.checkpoint_index import describe_files, step_dir, write_commit_marker
from p2pft.train.safe_load import SafeLoadPlanner, UnsafeCheckpoint, check_metadata

# Test-only fault injection (integration tests of torn checkpoints): "STEP:RANK" = that rank dies inside the
# save of that step, after its files are written and before anything is committed.
DIE_IN_SAVE_ENV = "P2PFT_TEST_DIE_IN_SAVE"


class CheckpointError(RuntimeError):
    pass


@dataclass(frozen=True)
class Progress:
    step: int  # optimizer steps completed
    samples_consumed: int
    epoch: int


def _state(model: nn.Module, optimizer: torch.optim.Optimizer, progress: Progress) -> dict[str, Any]:
    model_sd, optim_sd = get_state_dict(model, optimizer, options=StateDictOptions(ignore_frozen_params=True))
    return {
        "model": model_sd,
        "optim": optim_sd,
        # the LR schedule is a pure function of the step, so the step is the whole scheduler state
        "progress": torch.tensor([progress.step, progress.samples_consumed, progress.epoch], dtype=torch.int64),
        "rng": torch.get_rng_state(),
    }


def _maybe_die_in_save(step: int) -> None:
    wanted = os.environ.get(DIE_IN_SAVE_ENV)
    if not wanted:
        return
    die_step, die_rank = (int(x) for x in wanted.split(":"))
    if die_step == step and dist.get_rank() == die_rank:
        os._exit(86)


def save_checkpoint(checkpoint_dir: Path, model: nn.Module, optimizer: torch.optim.Optimizer, progress: Progress,
                    *, node_id: str, local_rank: int, data_order: dict[str, int] | None = None) -> float:
    """Write step-N and commit it; every rank calls this. Returns the seconds it took."""
    started = time.monotonic()
    directory = step_dir(checkpoint_dir, progress.step)
    directory.mkdir(parents=True, exist_ok=True)
    dcp.save(_state(model, optimizer, progress), checkpoint_id=str(directory))
    _maybe_die_in_save(progress.step)
    # Each node's local rank 0 lists what its node wrote. The all-gather needs every rank, so when it returns
    # every rank has finished writing: only then may anything be committed.
    listing = {"node": node_id, "files": describe_files(directory)} if local_rank == 0 else None
    listings: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(listings, listing)
    files: dict[str, Any] = {}
    for item in listings:
        if item is not None:
            files.update(item["files"])
    if local_rank == 0:
        write_commit_marker(directory, {
            "step": progress.step, "samples_consumed": progress.samples_consumed, "epoch": progress.epoch,
            "world_size": dist.get_world_size(), "files": files, "format": "p2pft-dcp-1",
            "data_order": data_order or {},
        })
    dist.barrier()  # nobody reports the commit before every node's marker exists
    return time.monotonic() - started


def checkpoint_keys(directory: Path) -> set[str]:
    try:
        check_metadata(directory)   # peers wrote it: no unpickling of anything but checkpoint metadata
    except UnsafeCheckpoint as exc:
        raise CheckpointError(str(exc)) from None
    metadata = dcp.FileSystemReader(str(directory)).read_metadata()
    return set(metadata.state_dict_metadata.keys())


def check_data_order(directory: Path, data_order: dict[str, int]) -> None:
    """The cursor only means something for the same data order: refuse a checkpoint made with another one."""
    from p2pft.formats.checkpoint_index import read_manifest

    stored = (read_manifest(directory) or {}).get("data_order") or {}
    changed = {key: (stored[key], value) for key, value in data_order.items()
               if key in stored and stored[key] != value}
    if changed:
        what = ", ".join(f"{key} {old} -> {new}" for key, (old, new) in changed.items())
        raise CheckpointError(f"checkpoint {directory} was trained with another data order ({what}); resuming "
                              "would repeat or skip samples: restore the job's data/seed/global_batch_size, or "
                              "use a new output_dir")


def load_checkpoint(directory: Path, model: nn.Module, optimizer: torch.optim.Optimizer) -> Progress:
    """Load a committed checkpoint into this rank's model and optimizer; any world size."""
    state = _state(model, optimizer, Progress(0, 0, 0))
    wanted = {f"model.{key}" for key in state["model"]}
    stored = {key for key in checkpoint_keys(directory) if key.startswith("model.")}
    if wanted != stored:
        missing, extra = sorted(wanted - stored)[:3], sorted(stored - wanted)[:3]
        raise CheckpointError(f"checkpoint {directory} does not match this model's trainable weights "
                              f"(missing {missing}, unexpected {extra}); was the job's model or LoRA setup changed?")
    dcp.load(state, checkpoint_id=str(directory), planner=SafeLoadPlanner())   # non-tensor entries: weights_only
    set_state_dict(model, optimizer, model_state_dict=state["model"], optim_state_dict=state["optim"],
                   options=StateDictOptions(strict=False))
    torch.set_rng_state(state["rng"])
    step, samples, epoch = (int(x) for x in state["progress"].tolist())
    return Progress(step=step, samples_consumed=samples, epoch=epoch)


def agree_on_resume_step(checkpoint_dir: Path, *, local_rank: int, node_id: str) -> int | None:
    """The newest step that every node holds committed and intact; None only when no node holds any. Collective.

    Each node's local rank 0 looks at its own disk; a step is usable only if every node has it and its files
    verify against the manifest everywhere. A torn or corrupt checkpoint is skipped, never loaded. Starting
    from scratch while some node holds progress would silently throw it away, so that is an error instead.
    """
    from p2pft.formats.checkpoint_index import committed_steps, verify_committed

    mine = (node_id, committed_steps(checkpoint_dir, verify=False)) if local_rank == 0 else None
    gathered: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(gathered, mine)
    per_node = {node: set(steps) for node, steps in (x for x in gathered if x is not None)}
    held = set().union(*per_node.values())
    if not held:
        return None
    candidates = sorted(set.intersection(*per_node.values()), reverse=True)
    for step in candidates:
        ok = verify_committed(step_dir(checkpoint_dir, step)) if local_rank == 0 else None
        verdicts: list[Any] = [None] * dist.get_world_size()
        dist.all_gather_object(verdicts, ok)
        if all(v for v in verdicts if v is not None):
            return step
    lacking = sorted(node for node, steps in per_node.items() if max(held) not in steps)
    raise CheckpointError(f"committed checkpoints exist (newest step-{max(held)}) but none is complete and intact "
                          f"on every node (lacking the newest: {lacking}); copy one to every node's {checkpoint_dir}, "
                          "or remove the checkpoints to start from scratch")
