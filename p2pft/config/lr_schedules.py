"""Which `lr_scheduler_type` values p2pft runs and which `lr_scheduler_kwargs` each takes (torch-free).

The schedules are transformers' (`transformers.optimization.TYPE_TO_SCHEDULER_FUNCTION`, what LLaMA-Factory's
Trainer builds), computed as pure functions of the step in p2pft.train.schedule, so an elastic resume needs only
the step number. Schedules that react to metrics are refused. Each type accepts exactly the keyword arguments
its transformers function takes; anything else is refused here, at validation, rather than at the first step.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

# type -> {kwarg: "int" | "number" | "text"}; the kwargs transformers' scheduler function accepts beyond the
# optimizer, warmup and total steps (which p2pft fills in from the job).
SCHEDULER_KWARGS: dict[str, dict[str, str]] = {
    "linear": {},
    "cosine": {"num_cycles": "number"},
    "cosine_with_restarts": {"num_cycles": "number"},
    "polynomial": {"lr_end": "number", "power": "number"},
    "constant": {},
    "constant_with_warmup": {},
    "inverse_sqrt": {"timescale": "int"},
    "cosine_with_min_lr": {"num_cycles": "number", "min_lr": "number", "min_lr_rate": "number"},
    "cosine_warmup_with_min_lr": {"num_cycles": "number", "min_lr": "number", "min_lr_rate": "number",
                                  "warmup_lr_rate": "number"},
    "warmup_stable_decay": {"num_decay_steps": "int", "num_stable_steps": "int", "warmup_type": "text",
                            "decay_type": "text", "min_lr_ratio": "number", "num_cycles": "number"},
}
REFUSED_SCHEDULERS: dict[str, str] = {
    "reduce_lr_on_plateau": "it lowers the LR when an evaluation metric stalls, so the LR is not a function of "
                            "the step that every box can recompute after a restart",
    "greedy": "it adapts the LR to the training loss as it goes, so the LR is not a function of the step that "
              "every box can recompute after a restart",
}
WSD_SHAPES = ("linear", "cosine", "1-sqrt")


def scheduler_type_error(kind: str) -> str | None:
    if kind in SCHEDULER_KWARGS:
        return None
    if kind in REFUSED_SCHEDULERS:
        return f"is not supported: {REFUSED_SCHEDULERS[kind]}; use another schedule"
    return f"is not a transformers schedule p2pft runs; allowed: {', '.join(SCHEDULER_KWARGS)}"


def scheduler_kwargs_error(kind: str, kwargs: Mapping[str, Any], learning_rate: float) -> str | None:
    """One line starting with `lr_scheduler_kwargs`, or None when transformers would accept them."""
    allowed = SCHEDULER_KWARGS[kind]
    for key, value in kwargs.items():
        if key not in allowed:
            takes = f"takes {', '.join(allowed)}" if allowed else "takes none"
            return f"lr_scheduler_kwargs.{key}: not an argument of the {kind} schedule (it {takes})"
        problem = _type_problem(allowed[key], value)
        if problem:
            return f"lr_scheduler_kwargs.{key}: {value!r} {problem}"
    if kwargs.get("timescale", 1) <= 0:
        return f"lr_scheduler_kwargs.timescale: {kwargs['timescale']!r} must be positive"
    if kind == "polynomial" and not learning_rate > kwargs.get("lr_end", 1e-7):
        return (f"lr_scheduler_kwargs.lr_end: {kwargs.get('lr_end', 1e-7)!r} must be smaller than learning_rate "
                f"{learning_rate!r} (transformers refuses it)")
    one_floor = ("min_lr" in kwargs) != ("min_lr_rate" in kwargs)
    if kind in ("cosine_with_min_lr", "cosine_warmup_with_min_lr") and not one_floor:
        return f"lr_scheduler_kwargs: the {kind} schedule needs exactly one of min_lr and min_lr_rate"
    if kind == "warmup_stable_decay":
        if "num_decay_steps" not in kwargs:
            return "lr_scheduler_kwargs.num_decay_steps: is missing; the warmup_stable_decay schedule needs it"
        for key in ("warmup_type", "decay_type"):
            if kwargs.get(key, "linear") not in WSD_SHAPES:
                return f"lr_scheduler_kwargs.{key}: {kwargs[key]!r} is not one of {', '.join(WSD_SHAPES)}"
    return None


def _type_problem(expected: str, value: Any) -> str | None:
    if expected == "text":
        return None if isinstance(value, str) else "is not text"
    if isinstance(value, bool) or not isinstance(value, int | float):
        return "is not a number"
    if expected == "int" and not isinstance(value, int):
        return "is not a whole number"
    return None
