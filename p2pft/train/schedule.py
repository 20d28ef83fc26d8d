"""Learning-rate schedules as pure functions of the optimizer step (transformers' formulas, torch-free).

The factor for 0-based step s multiplies the base learning rate of the update made at step s, as LambdaLR does
(its lambda sees 0 for the first update). Because it is a pure function of s, a resumed run needs only the step
number to continue the schedule exactly. Which types and kwargs exist: p2pft.config.lr_schedules (checked at
validation, so the kwargs here are known to be well-formed). tests/unit/test_schedule.py compares every type
with transformers' own scheduler, step by step.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from p2pft.config.lr_schedules import SCHEDULER_KWARGS

ScheduleType = str  # a key of SCHEDULER_KWARGS


def warmup_steps_for(total_steps: int, warmup_steps: int, warmup_ratio: float) -> int:
    """Explicit warmup_steps win over warmup_ratio, as in transformers."""
    if warmup_steps > 0:
        return warmup_steps
    return math.ceil(total_steps * warmup_ratio)


def _ramp(step: int, warmup: int) -> float:
    return float(step) / float(max(1, warmup))


def lr_factor(kind: ScheduleType, step: int, total_steps: int, warmup: int,
              kwargs: Mapping[str, Any] | None = None, *, base_lr: float = 1.0) -> float:
    """`base_lr` matters only where transformers divides by the optimizer's lr (polynomial's lr_end, min_lr)."""
    if kind not in SCHEDULER_KWARGS:
        raise ValueError(f"lr_scheduler_type must be one of {', '.join(SCHEDULER_KWARGS)}, got {kind!r}")
    args = dict(kwargs or {})
    if kind == "constant":
        return 1.0
    if kind == "warmup_stable_decay":
        return _warmup_stable_decay(step, total_steps, warmup, args)
    if kind == "cosine_warmup_with_min_lr":
        return _cosine_warmup_with_min_lr(step, total_steps, warmup, args, base_lr)
    if step < warmup:
        return _ramp(step, warmup)
    if kind == "constant_with_warmup":
        return 1.0
    if kind == "inverse_sqrt":
        timescale = args.get("timescale") or warmup or 10_000
        return 1.0 / math.sqrt((step + (timescale - warmup)) / timescale)
    if kind == "polynomial":
        return _polynomial(step, total_steps, warmup, args.get("lr_end", 1e-7), args.get("power", 1.0), base_lr)
    progress = float(step - warmup) / float(max(1, total_steps - warmup))
    if kind == "linear":
        return max(0.0, float(total_steps - step) / float(max(1, total_steps - warmup)))
    if kind == "cosine":
        return max(0.0, 0.5 * (1.0 + math.cos(math.pi * float(args.get("num_cycles", 0.5)) * 2.0 * progress)))
    if kind == "cosine_with_restarts":
        if progress >= 1.0:
            return 0.0
        cycles = float(args.get("num_cycles", 1))
        return max(0.0, 0.5 * (1.0 + math.cos(math.pi * ((cycles * progress) % 1.0))))
    # cosine_with_min_lr
    factor = 0.5 * (1.0 + math.cos(math.pi * float(args.get("num_cycles", 0.5)) * 2.0 * progress))
    rate = _min_lr_rate(args, base_lr)
    return max(0, factor * (1 - rate) + rate)


def _min_lr_rate(args: Mapping[str, Any], base_lr: float) -> float:
    return args["min_lr"] / base_lr if "min_lr" in args else args["min_lr_rate"]


def _polynomial(step: int, total: int, warmup: int, lr_end: float, power: float, base_lr: float) -> float:
    if step > total:
        return lr_end / base_lr
    remaining = 1 - (step - warmup) / (total - warmup)
    return ((base_lr - lr_end) * remaining**power + lr_end) / base_lr


def _cosine_warmup_with_min_lr(step: int, total: int, warmup: int, args: Mapping[str, Any], base_lr: float) -> float:
    """transformers' cosine_warmup_with_min_lr: its warmup starts above 0 and its cosine runs one step ahead."""
    current, warm, steps = float(step), float(warmup), float(total)
    if current < warm:
        start = args.get("warmup_lr_rate")
        if start is None:
            return (current + 1.0) / max(1.0, warm)
        return float(start) + (1.0 - float(start)) * current / max(1, warm - 1)
    progress = (current - warm + 1.0) / max(1.0, steps - warm)
    factor = 0.5 * (1.0 + math.cos(math.pi * float(args.get("num_cycles", 0.5)) * 2.0 * progress))
    rate = _min_lr_rate(args, base_lr)
    return max(0, factor * (1 - rate) + rate)


def _warmup_stable_decay(step: int, total: int, warmup: int, args: Mapping[str, Any]) -> float:
    decay_steps = args["num_decay_steps"]
    stable_steps = args.get("num_stable_steps")
    if stable_steps is None:
        stable_steps = total - warmup - decay_steps
    floor = args.get("min_lr_ratio", 0)
    if step < warmup:
        progress = float(step) / float(max(1, warmup))
        shape = args.get("warmup_type", "linear")
        factor = {"linear": progress, "cosine": 0.5 * (1.0 - math.cos(math.pi * progress)),
                  "1-sqrt": 1.0 - math.sqrt(1.0 - progress)}[shape]
        return max(0.0, factor * (1.0 - floor) + floor)
    if step < warmup + stable_steps:
        return 1.0
    if step < warmup + stable_steps + decay_steps:
        progress = float(step - warmup - stable_steps) / float(max(1, decay_steps))
        shape = args.get("decay_type", "cosine")
        if shape == "linear":
            factor = 1.0 - progress
        elif shape == "cosine":
            factor = 0.5 * (1.0 + math.cos(math.pi * float(args.get("num_cycles", 0.5)) * 2.0 * progress))
        else:
            factor = 1.0 - math.sqrt(progress)
        return max(0.0, factor * (1.0 - floor) + floor)
    return floor


def learning_rate(base_lr: float, kind: ScheduleType, step: int, total_steps: int, warmup: int,
                  kwargs: Mapping[str, Any] | None = None) -> float:
    return base_lr * lr_factor(kind, step, total_steps, warmup, kwargs, base_lr=base_lr)
