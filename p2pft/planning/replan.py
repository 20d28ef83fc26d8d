"""When measured speeds have drifted far enough from a plan's that a new round is worth its cost (pure).

A re-plan costs a round (drain, commit, restart: seconds), so the rule asks what the drift costs per step, not
whether some number moved: under the measured speeds, how much longer is a step with the running plan than
with a plan made from those speeds? Speeds that all change by the same factor (every box equally busier) cost
nothing, because the plan's shares are still right; a small rank that drifts a lot costs little. With shares
G * p_i / P in proportion to the plan's speeds p_i (P their sum) and measured speeds m_i (M their sum), rank
i's step takes G * p_i / (P * m_i) seconds and the best split G / M, so the running plan's step is
max_i(p_i / m_i) * M / P times the best one. The rule re-plans when that excess passes `threshold`.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Mapping

DEFAULT_REPLAN_THRESHOLD = 0.25  # a quarter of each step lost: a 1:2:4 set whose fast box halves loses 43 %


def replan_excess(plan_speeds: Mapping[Hashable, float], measured_speeds: Mapping[Hashable, float]) -> float:
    """How much longer (0.25 = 25 %) a step takes with shares in proportion to `plan_speeds` than with shares in
    proportion to `measured_speeds`, both in samples/s by rank key. Only ranks present in both count (a rank
    with no measurement yet says nothing); 0.0 when none is."""
    keys = [k for k in plan_speeds if k in measured_speeds and _usable(plan_speeds[k]) and _usable(measured_speeds[k])]
    if not keys:
        return 0.0
    planned = sum(plan_speeds[k] for k in keys)
    measured = sum(measured_speeds[k] for k in keys)
    worst = max(plan_speeds[k] / measured_speeds[k] for k in keys)
    return max(0.0, worst * measured / planned - 1.0)


def needs_replan(plan_speeds: Mapping[Hashable, float], measured_speeds: Mapping[Hashable, float],
                 threshold: float = DEFAULT_REPLAN_THRESHOLD) -> bool:
    """True when a plan made from `measured_speeds` would make steps more than `threshold` shorter (see module)."""
    if threshold < 0:
        raise ValueError(f"threshold must be >= 0, got {threshold}")
    return replan_excess(plan_speeds, measured_speeds) > threshold


def _usable(speed: float) -> bool:
    return speed > 0 and math.isfinite(speed)
