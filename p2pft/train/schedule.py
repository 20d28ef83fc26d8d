"""Learning-rate schedules as pure functions of the optimizer step (Hugging Face semantics, torch-free).

The factor for 0-based step s multiplies the base learning rate of the update made at step s. Because it is a
pure function of s, a resumed run needs only the step number to continue the schedule exactly.
"""

from __future__ import annotations

import math
from typing import Literal

ScheduleType = Literal["linear", "cosine", "constant", "constant_with_warmup"]


def warmup_steps_for(total_steps: int, warmup_steps: int, warmup_ratio: float) -> int:
    """Explicit warmup_steps win over warmup_ratio, as in transformers."""
    if warmup_steps > 0:
        return warmup_steps
    return math.ceil(total_steps * warmup_ratio)


def lr_factor(kind: ScheduleType, step: int, total_steps: int, warmup: int) -> float:
    if kind == "constant":
        return 1.0
    if step < warmup:
        return step / max(1, warmup)
    if kind == "constant_with_warmup":
        return 1.0
    progress = (step - warmup) / max(1, total_steps - warmup)
    if kind == "linear":
        return max(0.0, 1.0 - progress)
    if kind == "cosine":
        return max(0.0, 0.5 * (1.0 + math.cos(math.pi * progress)))
    raise ValueError(f"lr_scheduler_type must be linear, cosine, constant or constant_with_warmup, got {kind!r}")


def learning_rate(base_lr: float, kind: ScheduleType, step: int, total_steps: int, warmup: int) -> float:
    return base_lr * lr_factor(kind, step, total_steps, warmup)
