"""The optimizer: AdamW (torch), or bitsandbytes' 8-bit AdamW when that package is installed."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn


class OptimizerError(RuntimeError):
    pass


def parameter_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """Decay matrices only; biases and norm weights (1-D) are not decayed, as in transformers' Trainer."""
    decay, no_decay = [], []
    for param in model.parameters():
        if param.requires_grad:
            (decay if param.ndim >= 2 else no_decay).append(param)
    groups = [{"params": decay, "weight_decay": weight_decay}]
    if no_decay:
        groups.append({"params": no_decay, "weight_decay": 0.0})
    return groups


def build_optimizer(model: nn.Module, spec: Any) -> torch.optim.Optimizer:
    groups = parameter_groups(model, spec.weight_decay)
    options = {"lr": spec.learning_rate, "betas": (spec.adam_beta1, spec.adam_beta2), "eps": spec.adam_epsilon}
    if spec.optim == "adamw_torch":
        return torch.optim.AdamW(groups, foreach=None, **options)
    if spec.optim == "adamw_bnb_8bit":
        try:
            import bitsandbytes  # type: ignore[import-not-found]
        except ImportError:
            raise OptimizerError("optim: adamw_bnb_8bit needs the bitsandbytes package, which is not installed "
                                 "on this box; install it (pip install bitsandbytes) or use optim: adamw_torch"
                                 ) from None
        return bitsandbytes.optim.AdamW8bit(groups, **options)
    raise OptimizerError(f"optim must be adamw_torch or adamw_bnb_8bit, got {spec.optim!r}")


def set_learning_rate(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr
