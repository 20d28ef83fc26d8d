"""`p2pft: {sharding: fsdp}`: full fine-tuning of a model larger than one card with FSDP2 (`fully_shard`), with the
same exact maths and resharding checkpoints as the DDP path.

Why it stays exact (docs/fsdp.md has the measurements):
- FSDP2's reduce-scatter averages gradients over the world like DDP's all-reduce, so the DDP loss weighting
  (a micro-batch's summed token loss / the global batch's label tokens * world size) gives the single-process
  gradient unchanged (`step.train_step` is used as is).
- Unlike DDP, every FSDP forward and backward is itself a collective (all-gather of the sharded weights). Ranks
  must therefore run the *same number* of micro-batches per step, or the rank with more waits forever in an
  all-gather the others never join (measured: a [3, 1] micro-batch split deadlocks). Ranks with fewer
  micro-batches run filler micro-batches: two pad tokens whose labels are all masked, so their loss and gradient
  are exactly zero. The count is the plan's maximum, which every rank computes from the plan without talking.
- Gradients are reduce-scattered after every micro-batch (no `set_requires_gradient_sync(False)`): deferring the
  sync would keep an unsharded gradient of the whole model on every rank, the memory FSDP exists to save.
- Checkpoints: `checkpoint.py`'s get_state_dict/set_state_dict + DCP already write sharded DTensors and reshard
  on load to any world size (and into a DDP run, which sees the same keys).
- Evaluation splits the val set examples[rank::world]; the val list is padded with filler examples so every rank
  runs the same number of forwards (fillers carry no label tokens, so loss/perplexity/accuracy are unchanged).

LoRA with FSDP is refused (`check_fsdp_job`): the frozen base would be half precision and the adapter fp32 in one
FSDP group (FSDP2 all-gathers one dtype per group), merged-weight export would need the full model on one rank,
and neither can be tested on this project's CPU machines. LoRA's trainable state is small; use sharding: ddp.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from p2pft.formats.fsdp_rules import fsdp_job_error
from p2pft.planning.batch_plan import BatchPlan, micro_batch_sizes
from p2pft.train.data import Example, collate
from p2pft.train.sampler import rank_micro_batches
from p2pft.train.step import IGNORE_INDEX

FILLER_SAMPLE_ID = -1  # never a real sample id (those are >= 0)


class FsdpConfigError(ValueError):
    """One line naming the job key and what to do."""


def uses_fsdp(spec: Any) -> bool:
    return bool(spec.p2pft.sharding == "fsdp")


def check_fsdp_job(spec: Any) -> None:
    """Refuse job settings that sharding: fsdp does not support, before any model is loaded."""
    if not uses_fsdp(spec):
        return
    error = fsdp_job_error(spec)
    if error:
        raise FsdpConfigError(error)
    missing = fsdp_unavailable_reason()
    if missing:
        raise FsdpConfigError(f"p2pft.sharding: fsdp is not available in this torch build ({missing}); "
                              "use p2pft.sharding: ddp or install torch >= 2.6")


def fsdp_unavailable_reason() -> str | None:
    try:
        from torch.distributed.fsdp import fully_shard  # noqa: F401
    except ImportError as exc:
        return f"torch {torch.__version__}: {exc}"
    return None


# ---- sharding ----

def shard_units(model: nn.Module) -> list[nn.Module]:
    """The modules that get their own FSDP group: one per decoder layer.

    Hugging Face models name their layer class in `_no_split_modules`; otherwise the children of the largest
    nn.ModuleList are taken as the layers.
    """
    layer_classes = set(getattr(model, "_no_split_modules", None) or [])
    units = [m for m in model.modules() if type(m).__name__ in layer_classes]
    if units:
        return units
    lists = [m for m in model.modules() if isinstance(m, nn.ModuleList)]
    if not lists:
        return []
    largest = max(lists, key=lambda m: sum(p.numel() for p in m.parameters()))
    return list(largest.children())


def shard_model(model: nn.Module, device: torch.device) -> nn.Module:
    """fully_shard every decoder layer, then the root (embeddings, final norm, head).

    `model` may sit on the CPU: each fully_shard moves its own module's weights to `device` and keeps only this
    rank's shard there, so the full model never has to fit on one card.
    """
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard

    mesh = init_device_mesh(device.type, (dist.get_world_size(),))
    for unit in shard_units(model):
        fully_shard(unit, mesh=mesh)
    fully_shard(model, mesh=mesh)
    return model


# ---- lock-step micro-batches ----

def lockstep_micro_batch_count(plan: BatchPlan) -> int:
    """Micro-batches every rank runs per step: the most any plan entry needs."""
    return max(len(micro_batch_sizes(e.samples, e.micro_batch_size)) for e in plan.entries)


def lockstep_micro_batches(batch: tuple[int, ...], plan: BatchPlan, entry_index: int) -> list[tuple[int, ...]]:
    """This rank's micro-batches (sample ids) padded with empty ones (fillers) up to the plan's maximum count."""
    mine = rank_micro_batches(batch, plan, entry_index)
    return mine + [()] * (lockstep_micro_batch_count(plan) - len(mine))


def filler_example(pad_token_id: int) -> Example:
    """Two pad tokens with every label masked: a full forward/backward whose loss and gradient are exactly 0.
    (Two real positions, not zero: a fully masked attention row would give NaN, and NaN * 0 is NaN.)"""
    return Example(sample_id=FILLER_SAMPLE_ID, input_ids=(pad_token_id, pad_token_id),
                   labels=(IGNORE_INDEX, IGNORE_INDEX))


def collate_lockstep(examples: Sequence[Example], pad_token_id: int) -> dict[str, torch.Tensor]:
    return collate(list(examples) or [filler_example(pad_token_id)], pad_token_id)


def pad_for_lockstep_eval(examples: Sequence[Example], world_size: int, batch_size: int,
                          pad_token_id: int) -> list[Example]:
    """Append fillers so that examples[rank::world] has the same length, a multiple of batch_size, on every rank."""
    chunk = max(1, world_size) * max(1, batch_size)
    missing = -len(examples) % chunk
    return list(examples) + [filler_example(pad_token_id)] * missing


# ---- outputs ----

def full_model_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """The whole, unsharded model on rank 0's CPU (other ranks get {}); a collective: every rank calls it."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    return get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))


def save_full_model(model: nn.Module, output_dir: str, *, is_main: bool) -> None:
    """save_pretrained of the gathered full weights by rank 0; every rank must call it."""
    state = full_model_state_dict(model)
    if is_main:
        save: Any = model.save_pretrained  # type: ignore[operator]
        save(output_dir, state_dict=state)
