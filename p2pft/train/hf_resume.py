"""Start a run from a Hugging Face / LLaMA-Factory `checkpoint-N` folder: its weights, then step N.

Restored: the trainable weights (the LoRA adapter from adapter_model.safetensors, or every weight of a full
fine-tune from model.safetensors / its shards), the step (so the LR schedule continues at N) and, when it maps
onto this job's optimizer, the AdamW state of optimizer.pt (see hf_optimizer.py; otherwise Adam starts afresh).
Not restored: the data order (p2pft's own sampler from step N, not HF's) and the RNG. See
p2pft.formats.resume_from for why. Weights are read from safetensors only.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch
from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict, set_model_state_dict

from p2pft.formats.resume_from import hf_checkpoint_step
from p2pft.train.checkpoint import CheckpointError

ADAPTER_NAME = "default"  # PEFT drops ".default" from the keys it saves; the live model has it


def hf_weights(directory: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    if (directory / "adapter_model.safetensors").is_file():
        return load_file(str(directory / "adapter_model.safetensors"))
    index = directory / "model.safetensors.index.json"
    if index.is_file():
        shards = sorted(set(json.loads(index.read_text(encoding="utf-8"))["weight_map"].values()))
        weights: dict[str, torch.Tensor] = {}
        for shard in shards:
            weights.update(load_file(str(directory / shard)))
        return weights
    return load_file(str(directory / "model.safetensors"))


def saved_key(live_key: str, lora: bool) -> str:
    """The name save_pretrained gives a trainable weight: PEFT strips the adapter name, a full model is saved
    from the base model (no PEFT prefix)."""
    return live_key.replace(f".{ADAPTER_NAME}.", ".") if lora else live_key


@dataclass(frozen=True)
class HfStart:
    step: int
    optimizer_note: str  # what happened to optimizer.pt, for the log


def start_from_hf_checkpoint(directory: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer, *,
                             lora: bool) -> HfStart:
    from p2pft.train.hf_optimizer import load_hf_optimizer

    step = load_hf_checkpoint(directory, model, lora=lora)
    return HfStart(step=step, optimizer_note=load_hf_optimizer(directory, model, optimizer))


def load_hf_checkpoint(directory: Path, model: torch.nn.Module, *, lora: bool) -> int:
    """Lay the folder's weights over `model`'s trainable weights (DDP- or FSDP-wrapped: every rank passes the full
    tensors); returns the step to continue at."""
    step = hf_checkpoint_step(directory)
    stored = hf_weights(directory)
    live = get_model_state_dict(model, options=StateDictOptions(ignore_frozen_params=True, full_state_dict=True,
                                                                cpu_offload=True))
    wanted = {key: saved_key(key, lora) for key in live}
    if not lora:
        wanted.update(_tied_keys(live, wanted, stored))
    missing = sorted(saved for saved in wanted.values() if saved not in stored)
    extra = sorted(set(stored) - set(wanted.values()))
    if missing or extra:
        raise CheckpointError(f"resume_from_checkpoint: {directory} does not match the job's trainable weights "
                              f"(missing {missing[:3]}, unexpected {extra[:3]}); use the finetuning_type, lora_rank "
                              "and lora_target it was trained with")
    for key, saved in wanted.items():
        if tuple(stored[saved].shape) != tuple(live[key].shape):
            raise CheckpointError(f"resume_from_checkpoint: {directory}: {saved} has shape {tuple(stored[saved].shape)}"
                                  f", the job's model {tuple(live[key].shape)}; use the lora_rank it was trained with")
    state = {key: stored[saved].to(live[key].dtype) for key, saved in wanted.items()}
    set_model_state_dict(model, state, options=StateDictOptions(full_state_dict=True, strict=False))
    return step


def _tied_keys(live: dict[str, torch.Tensor], wanted: dict[str, str],
               stored: dict[str, torch.Tensor]) -> dict[str, str]:
    """save_pretrained writes a tied weight once (lm_head.weight tied to the embeddings is left out): a missing
    key whose live tensor equals a saved key's live tensor is the same parameter and loads from it."""
    tied: dict[str, str] = {}
    for key, saved in wanted.items():
        if saved in stored:
            continue
        twin = next((other for other, other_saved in wanted.items() if other != key and other_saved in stored
                     and live[other].shape == live[key].shape and torch.equal(live[other], live[key])), None)
        if twin is not None:
            tied[key] = wanted[twin]
    return tied
