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

from p2pft.planning.batch_plan import BatchPlan, BatchPlanError, RankCapacity, plan_batch, plan_step_time

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


def plan_excess(plan: BatchPlan, measured_speeds: Mapping[tuple[str, int], float], *,
                max_micro_batches: int | None = None) -> float:
    """Like `replan_excess`, on the running plan's real integer shares (any mode, uniform included): how much
    longer its step is under `measured_speeds` than the step of the plan `plan_batch` would make from them.
    0.0 while some rank has no measurement. Integer shares are compared with integer shares, so a small batch's
    rounding never reads as drift.

    Why measured shares converge even where a step has a fixed cost besides its samples (launch overheads: a
    rank with a small share then looks slower per sample than it is): a plan in proportion to measured
    samples/s moves every rank's step time towards the others', and equal step times are its fixed point,
    which is the optimum; the rule stops re-planning once the gain left is below the threshold."""
    keys = [(e.node_id, e.local_rank) for e in plan.entries]
    if not all(_usable(measured_speeds.get(k, 0.0)) for k in keys):
        return 0.0
    bounds = {(e.node_id, e.local_rank): e.max_micro_batch or e.micro_batch_size for e in plan.entries}
    ranks = [RankCapacity(n, r, measured_speeds[(n, r)], bounds[(n, r)]) for n, r in keys]
    try:
        best = plan_batch(plan.global_batch_size, ranks, "auto", max_micro_batches=max_micro_batches)
    except BatchPlanError:
        return 0.0  # the caps no longer hold the batch: a question for placement, not for drift
    return max(0.0, plan_step_time(plan, measured_speeds) / plan_step_time(best, measured_speeds) - 1.0)
