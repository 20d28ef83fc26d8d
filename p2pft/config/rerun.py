"""What `p2pft run` does with an output_dir that already holds a run: resume it, start afresh, or refuse.

LLaMA-Factory's `overwrite_output_dir: true` starts afresh; without it p2pft resumes from the newest committed
checkpoint, but only when the settings that decide what is trained are unchanged: resuming a run with another
learning rate or dataset would silently mix two trainings. Pure: the caller reads the previous run's JOB.json.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

# Settings a resumed run may change: how long, how often it logs/saves/evaluates, where, and the elastic section.
MAY_CHANGE_ON_RESUME = frozenset({
    "max_steps", "num_train_epochs", "save_steps", "save_total_limit", "logging_steps", "eval_steps",
    "per_device_eval_batch_size", "output_dir", "report_to", "p2pft", "overwrite_output_dir", "plot_loss",
    "resume_from_checkpoint",  # only a fresh run starts from it: a resumed run continues its own checkpoints
})


@dataclass(frozen=True)
class RerunDecision:
    action: Literal["fresh", "resume", "refuse"]
    message: str = ""


def decide_rerun(previous: Mapping[str, Any] | None, current: Mapping[str, Any], *, has_checkpoint: bool,
                 overwrite: bool, output_dir: str) -> RerunDecision:
    if overwrite:
        return RerunDecision("fresh", f"overwrite_output_dir: starting afresh in {output_dir}")
    if not has_checkpoint:
        return RerunDecision("fresh")
    if previous is None:
        return RerunDecision("resume")
    changed = sorted(k for k in set(previous) | set(current)
                     if k not in MAY_CHANGE_ON_RESUME and previous.get(k) != current.get(k)
                     and not _new_key_at_its_default(k, previous, current))
    if not changed:
        return RerunDecision("resume")
    first = changed[0]
    more = f" (and {len(changed) - 1} more: {', '.join(changed[1:4])})" if len(changed) > 1 else ""
    return RerunDecision("refuse", f"{output_dir} holds a run with {first}={previous.get(first)!r}, this job has "
                                   f"{first}={current.get(first)!r}{more}: set overwrite_output_dir: true to start "
                                   "afresh, or restore the setting to resume that run")


def _new_key_at_its_default(key: str, previous: Mapping[str, Any], current: Mapping[str, Any]) -> bool:
    """A run written before p2pft knew `key` ran with what the key's empty default means (every key added since
    defaults to None or {}), so it must not refuse the resume."""
    return key not in previous and current.get(key) in (None, {})
