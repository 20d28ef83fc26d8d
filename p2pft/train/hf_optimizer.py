"""The AdamW state of a Hugging Face `checkpoint-N/optimizer.pt`, mapped onto this job's optimizer when it can be.

HF's file is `optimizer.state_dict()`: per-parameter state keyed by the parameter's position in the Trainer's
parameter groups, which are (1) every trainable parameter that gets weight decay, in `named_parameters()` order,
then (2) the others (biases, norm weights). Positions carry no names, so the map is rebuilt from the same rule
(transformers' own `get_parameter_names` with the Trainer's patterns) and accepted only when the file's group
sizes are those the rule gives this model and every tensor has its parameter's shape; anything else (another
optimizer, another model or LoRA setup, 8-bit Adam) leaves the optimizer fresh, and the note says why. The file
is read with torch.load(weights_only=True): tensors and plain containers only, no code.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.distributed.checkpoint.state_dict import StateDictOptions, get_optimizer_state_dict, set_optimizer_state_dict

OPTIMIZER_FILE = "optimizer.pt"
# transformers' Trainer.get_decay_parameter_names: parameters named like these (or inside nn.LayerNorm) get no decay
NO_DECAY_PATTERNS = [r"bias", r"layernorm", r"rmsnorm", r"(?:^|\.)norm(?:$|\.)", r"_norm(?:$|\.)"]
ADAM_STATE_KEYS = frozenset({"step", "exp_avg", "exp_avg_sq"})


def trainer_parameter_order(model: nn.Module) -> list[list[str]]:
    """Names of the trainable parameters in the Trainer's two groups (decay, no decay), positions in order."""
    from transformers.trainer_pt_utils import get_parameter_names

    decay = set(get_parameter_names(model, [nn.LayerNorm], NO_DECAY_PATTERNS))
    named = [(name, p) for name, p in model.named_parameters() if p.requires_grad]
    return [[name for name, _ in named if name in decay], [name for name, _ in named if name not in decay]]


def mapped_state(saved: Any, model: nn.Module) -> tuple[dict[str, dict[str, Any]] | None, str]:
    """(state keyed by parameter name, "") or (None, why not)."""
    if not isinstance(saved, dict) or not isinstance(saved.get("state"), dict) or \
            not isinstance(saved.get("param_groups"), list):
        return None, "it is not an optimizer state dict"
    groups = trainer_parameter_order(model)
    sizes = [len(group.get("params", [])) for group in saved["param_groups"] if isinstance(group, dict)]
    expected = [len(group) for group in groups]
    if [n for n in sizes if n] != [n for n in expected if n]:
        return None, f"its parameter groups hold {sizes} parameters, this job's model {expected}"
    names = [name for group in groups for name in group]
    parameters = dict(model.named_parameters())
    state: dict[str, dict[str, Any]] = {}
    for index, entry in saved["state"].items():
        if not isinstance(index, int) or not 0 <= index < len(names) or not isinstance(entry, dict) \
                or set(entry) != ADAM_STATE_KEYS:
            return None, "its entries are not AdamW's (step, exp_avg, exp_avg_sq) per parameter"
        name = names[index]
        if any(tuple(entry[key].shape) != tuple(parameters[name].shape) for key in ("exp_avg", "exp_avg_sq")):
            return None, f"its state for {name} does not have the parameter's shape"
        state[name] = entry
    return state, ""


def load_hf_optimizer(directory: Path, model: nn.Module, optimizer: torch.optim.Optimizer) -> str:
    """Load what maps; returns a note for the log."""
    path = directory / OPTIMIZER_FILE
    if not path.is_file():
        return f"a fresh optimizer (no {OPTIMIZER_FILE})"
    if not isinstance(optimizer, torch.optim.AdamW):
        return f"a fresh optimizer ({OPTIMIZER_FILE} is mapped onto adamw_torch only)"
    try:
        saved = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # any unreadable or non-plain file: a fresh optimizer, never a failed job
        return f"a fresh optimizer ({OPTIMIZER_FILE} unreadable: {type(err).__name__})"
    module = model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model
    state, why = mapped_state(saved, module)
    if state is None:
        return f"a fresh optimizer ({OPTIMIZER_FILE} does not map onto this job: {why})"
    distributed = torch.distributed.is_available() and torch.distributed.is_initialized()
    options = StateDictOptions(full_state_dict=distributed)
    current = get_optimizer_state_dict(model, optimizer, options=options)
    parameters = dict(module.named_parameters())
    current["state"] = {name: {"step": torch.as_tensor(entry["step"], dtype=torch.float32).clone(),
                               "exp_avg": entry["exp_avg"].to(parameters[name].dtype),
                               "exp_avg_sq": entry["exp_avg_sq"].to(parameters[name].dtype)}
                        for name, entry in state.items()}
    set_optimizer_state_dict(model, optimizer, current, options=options)
    return f"AdamW state from {OPTIMIZER_FILE} ({len(state)} parameters)"
