"""Sharded checkpoints with torch.distributed.checkpoint (DCP) and a commit marker.

Save: every rank writes its DCP files into `step-N/`; once every rank is provably done (a collective that needs
all of them), each node's local rank 0 writes `COMMITTED` with the sizes and sha256 of every file of every node.
Load: any world size, any plan; only the trainable weights are stored (LoRA: the adapter), so loading is
non-strict and the key set is checked here instead.
"""

from __future__ import annotations

import os
import shutil
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import torch.distributed.checkpoint as dcp
from torch import nn
from torch.distributed.checkpoint.state_dict import StateDictOptions, get_state_dict, set_state_dict

from p2pft.formats.checkpoint_index import (
    COMMIT_MARKER,
    committed_steps,
    describe_files,
    step_dir,
    write_commit_marker,
)
from p2pft.train.safe_load import SafeLoadPlanner, UnsafeCheckpoint, check_metadata

# Test-only fault injection (integration tests of torn checkpoints): "STEP:RANK" = that rank dies inside the
# save of that step, after its files are written and before anything is committed.
DIE_IN_SAVE_ENV = "P2PFT_TEST_DIE_IN_SAVE"


class CheckpointError(RuntimeError):
    pass


class CheckpointSpaceError(CheckpointError):
    """A box lacks the disk space for the next save: found before writing, so no save is left half-done."""


SPACE_HEADROOM_BYTES = 64 << 20  # logs, metrics and the daemon's bookkeeping share the disk
ADAM_COPIES = 3                  # a trainable weight, and Adam's two moments of it


@dataclass(frozen=True)
class Progress:
    step: int  # optimizer steps completed
    samples_consumed: int
    epoch: int


SCALER_FIELDS = ("scale", "growth_factor", "backoff_factor", "growth_interval", "_growth_tracker")


def _state(model: nn.Module, optimizer: torch.optim.Optimizer, progress: Progress,
           scaler: torch.amp.GradScaler | None = None) -> dict[str, Any]:
    model_sd, optim_sd = get_state_dict(model, optimizer, options=StateDictOptions(ignore_frozen_params=True))
    state = {
        "model": model_sd,
        "optim": optim_sd,
        # the LR schedule is a pure function of the step, so the step is the whole scheduler state
        "progress": torch.tensor([progress.step, progress.samples_consumed, progress.epoch], dtype=torch.int64),
        "rng": torch.get_rng_state(),
    }
    if scaler is not None and scaler.is_enabled():
        state["scaler"] = scaler_to_tensor(scaler)
    return state


def scaler_to_tensor(scaler: torch.amp.GradScaler) -> torch.Tensor:
    """fp16's loss scale and its growth tracker: without them a resume starts again at 65536 and skips the
    first updates (inf gradients) while the ledger counts their samples as trained. A float64 tensor (exact
    for the scale, a power of two, and for the counters), so DCP stores it like the rest, unpickled."""
    values = scaler.state_dict()
    return torch.tensor([float(values[name]) for name in SCALER_FIELDS], dtype=torch.float64)


def scaler_from_tensor(scaler: torch.amp.GradScaler, stored: torch.Tensor) -> None:
    values = dict(zip(SCALER_FIELDS, stored.tolist(), strict=True))
    values["growth_interval"] = int(values["growth_interval"])
    values["_growth_tracker"] = int(values["_growth_tracker"])
    scaler.load_state_dict(values)


def _maybe_die_in_save(step: int) -> None:
    wanted = os.environ.get(DIE_IN_SAVE_ENV)
    if not wanted:
        return
    die_step, die_rank = (int(x) for x in wanted.split(":"))
    if die_step == step and dist.get_rank() == die_rank:
        os._exit(86)


def save_checkpoint(checkpoint_dir: Path, model: nn.Module, optimizer: torch.optim.Optimizer, progress: Progress,
                    *, node_id: str, local_rank: int, data_order: dict[str, int] | None = None,
                    scaler: torch.amp.GradScaler | None = None) -> float:
    """Write step-N and commit it; every rank calls this. Returns the seconds it took."""
    started = time.monotonic()
    directory = step_dir(checkpoint_dir, progress.step)
    directory.mkdir(parents=True, exist_ok=True)
    check_free_space(checkpoint_dir, model, node_id=node_id, local_rank=local_rank)
    if local_rank == 0:
        clear_for_resave(directory)
    # Every rank writes only after dcp.save's planning collective, which waits for local rank 0 to get here,
    # so no file of this save can be removed by the clearing above.
    dcp.save(_state(model, optimizer, progress, scaler), checkpoint_id=str(directory))
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


def clear_for_resave(directory: Path) -> None:
    """A step saved again (a round resumed from an older step and came back to it): first its marker goes, so
    nobody trusts the dir while it is rewritten, then every file of the earlier save. An earlier save's file
    left behind (another node's shard replicated here, a rank the smaller world no longer has) would be listed
    in the new marker and mixed into the new checkpoint."""
    (directory / COMMIT_MARKER).unlink(missing_ok=True)
    for child in directory.iterdir():
        if child.is_file() or child.is_symlink():
            child.unlink(missing_ok=True)
        elif child.is_dir():
            shutil.rmtree(child, ignore_errors=True)


def estimate_save_bytes(checkpoint_dir: Path, model: nn.Module) -> int:
    """What the next save will put on this disk: the newest committed step's size (it lands here whole once
    replication completed it), or before the first save the trainable weights with Adam's two moments."""
    steps = committed_steps(checkpoint_dir, verify=False)
    if steps:
        previous = step_dir(checkpoint_dir, steps[-1])
        with_sizes = [child.stat().st_size for child in previous.iterdir() if child.is_file()]
        if with_sizes:
            return sum(with_sizes)
    trainable = sum(p.numel() * p.element_size() for p in model.parameters() if p.requires_grad)
    return ADAM_COPIES * trainable


def free_space_problem(checkpoint_dir: Path, needed: int, *, node_id: str) -> str | None:
    """None when `checkpoint_dir`'s disk has room for `needed` bytes (and headroom); else the one-line error."""
    free = shutil.disk_usage(checkpoint_dir).free
    if free >= needed + SPACE_HEADROOM_BYTES:
        return None
    steps = committed_steps(checkpoint_dir, verify=False)
    # A failed job does not go on: say how a new one starts where this one stopped.
    restart = (f"then submit the job again with resume_from_checkpoint: {step_dir(checkpoint_dir, steps[-1])} "
               "(its newest checkpoint)" if steps else "then submit the job again")
    return (f"box {socket.gethostname()} (node {node_id}) has {_size(free)} free in {checkpoint_dir}, and the "
            f"next checkpoint needs about {_size(needed + SPACE_HEADROOM_BYTES)}: free disk space there or "
            f"lower save_total_limit, {restart}")


def check_free_space(checkpoint_dir: Path, model: nn.Module, *, node_id: str, local_rank: int) -> None:
    """Every rank raises the same CheckpointSpaceError when some node lacks the space (a collective: a rank
    that failed alone would leave the others waiting inside the save until the process-group timeout)."""
    problem = free_space_problem(checkpoint_dir, estimate_save_bytes(checkpoint_dir, model),
                                 node_id=node_id) if local_rank == 0 else None
    problems: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(problems, problem)
    found = [p for p in problems if p]
    if found:
        raise CheckpointSpaceError(found[0])


def _size(count: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if count < 1024:
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1024
    return f"{count:.1f} TiB"


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


def load_checkpoint(directory: Path, model: nn.Module, optimizer: torch.optim.Optimizer,
                    scaler: torch.amp.GradScaler | None = None) -> Progress:
    """Load a committed checkpoint into this rank's model and optimizer (and fp16's loss scaler when the
    checkpoint has its state: one saved without a scaler leaves it at its start values); any world size."""
    keys = checkpoint_keys(directory)
    state = _state(model, optimizer, Progress(0, 0, 0), scaler if "scaler" in keys else None)
    wanted = {f"model.{key}" for key in state["model"]}
    stored = {key for key in keys if key.startswith("model.")}
    if wanted != stored:
        missing, extra = sorted(wanted - stored)[:3], sorted(stored - wanted)[:3]
        raise CheckpointError(f"checkpoint {directory} does not match this model's trainable weights "
                              f"(missing {missing}, unexpected {extra}); was the job's model or LoRA setup changed?")
    dcp.load(state, checkpoint_id=str(directory), planner=SafeLoadPlanner())   # non-tensor entries: weights_only
    set_state_dict(model, optimizer, model_state_dict=state["model"], optim_state_dict=state["optim"],
                   options=StateDictOptions(strict=False))
    torch.set_rng_state(state["rng"])
    if scaler is not None and "scaler" in state:
        scaler_from_tensor(scaler, state["scaler"])
    step, samples, epoch = (int(x) for x in state["progress"].tolist())
    return Progress(step=step, samples_consumed=samples, epoch=epoch)


def agree_on_resume_step(checkpoint_dir: Path, *, local_rank: int, node_id: str) -> int | None:
    """The newest step that every node holds committed and intact; None only when no node holds any. Collective.

    Each node's local rank 0 looks at its own disk; a step is usable only if every node has it and its files
    verify against the manifest everywhere. A torn or corrupt checkpoint is skipped, never loaded. Starting
    from scratch while some node holds progress would silently throw it away, so that is an error instead.
    """
    from p2pft.formats.checkpoint_index import marker_fingerprint, read_manifest, verify_committed

    # A step counts as held by a node with the fingerprint of its save: after a fall-back the same step number
    # may name two different saves, and nodes loading different ones would train on silently different states.
    mine = None
    if local_rank == 0:
        held_here = {}
        for step in committed_steps(checkpoint_dir, verify=False):
            marker = read_manifest(step_dir(checkpoint_dir, step))
            if marker is not None:
                held_here[step] = marker_fingerprint(marker)
        mine = (node_id, held_here)
    gathered: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(gathered, mine)
    per_node = {node: set(saves.items()) for node, saves in (x for x in gathered if x is not None)}
    held = {step for step, _ in set().union(*per_node.values())}
    if not held:
        return None
    candidates = sorted({step for step, _ in set.intersection(*per_node.values())}, reverse=True)
    for step in candidates:
        ok = verify_committed(step_dir(checkpoint_dir, step)) if local_rank == 0 else None
        verdicts: list[Any] = [None] * dist.get_world_size()
        dist.all_gather_object(verdicts, ok)
        if all(v for v in verdicts if v is not None):
            return step
    lacking = sorted(node for node, saves in per_node.items() if max(held) not in {step for step, _ in saves})
    raise CheckpointError(f"committed checkpoints exist (newest step-{max(held)}) but none is complete and intact "
                          f"on every node (lacking the newest: {lacking}); copy one to every node's {checkpoint_dir}, "
                          "or remove the checkpoints to start from scratch")
