"""Properties of the speed- and memory-aware planner (hypothesis), the capacity error and the re-plan rule."""

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from p2pft.planning.batch_plan import (
    BatchPlan,
    BatchPlanError,
    PlanCapacityError,
    RankCapacity,
    explicit_plan,
    ideal_step_time,
    micro_batch_sizes,
    plan_batch,
    plan_from_json,
    plan_speeds,
    plan_step_time,
    plan_to_json,
    share_caps,
)
from p2pft.planning.replan import needs_replan, plan_excess, replan_excess

speeds_st = st.lists(st.floats(min_value=0.05, max_value=500.0, allow_nan=False), min_size=1, max_size=8)


def make_ranks(speeds: list[float], bounds: list[int] | None = None) -> list[RankCapacity]:
    bounds = bounds or [4] * len(speeds)
    return [RankCapacity(f"n{i}", i % 2, s, b) for i, (s, b) in enumerate(zip(speeds, bounds, strict=True))]


def step_time(samples: list[int], speeds: list[float]) -> float:
    return max(n / s for n, s in zip(samples, speeds, strict=True))


def uniform_split(total: int, count: int) -> list[int]:
    base, extra = divmod(total, count)
    return [base + (1 if i < extra else 0) for i in range(count)]


def brute_force_best(total: int, speeds: list[float], caps: list[int | None]) -> float:
    """The optimum by exhaustive search (small cases only)."""
    best = math.inf

    def walk(i: int, left: int, worst: float) -> None:
        nonlocal best
        if worst >= best:
            return
        if i == len(speeds) - 1:
            cap = caps[i]
            if left >= 1 and (cap is None or left <= cap):
                best = min(best, max(worst, left / speeds[i]))
            return
        top = left - (len(speeds) - 1 - i)
        cap = caps[i]
        for n in range(1, (top if cap is None else min(top, cap)) + 1):
            walk(i + 1, left - n, max(worst, n / speeds[i]))

    walk(0, total, 0.0)
    return best


@settings(max_examples=300, deadline=None)
@given(speeds=speeds_st, extra=st.integers(min_value=0, max_value=400), data=st.data())
def test_auto_plan_exact_sum_bounds_and_never_worse_than_uniform(speeds: list[float], extra: int,
                                                                  data: st.DataObject) -> None:
    total = len(speeds) + extra
    bounds = data.draw(st.lists(st.integers(1, 16), min_size=len(speeds), max_size=len(speeds)))
    plan = plan_batch(total, make_ranks(speeds, bounds), "auto")
    samples = [e.samples for e in plan.entries]
    assert sum(samples) == total
    assert all(n >= 1 for n in samples)
    for entry, bound in zip(plan.entries, bounds, strict=True):
        assert 1 <= entry.micro_batch_size <= bound
        # the micro-batch count is the fewest the bound allows: memory decides the size, the count the rest
        assert len(micro_batch_sizes(entry.samples, entry.micro_batch_size)) == math.ceil(entry.samples / bound)
    assert step_time(samples, speeds) <= step_time(uniform_split(total, len(speeds)), speeds) * (1 + 1e-12)
    # the stated margin: within one sample of the proportional ideal, global_batch / sum(speeds)
    # (the forced first sample of a very slow rank aside): step <= max((G + n - 1) / sum(v), 1 / min(v))
    bound_time = max((total + len(speeds) - 1) / sum(speeds), 1 / min(speeds))
    assert step_time(samples, speeds) <= bound_time * (1 + 1e-9)
    assert plan_from_json(plan_to_json(plan)) == plan


@settings(max_examples=300, deadline=None)
@given(speeds=speeds_st, extra=st.integers(min_value=0, max_value=200), data=st.data())
def test_capped_plans_hold_caps_and_stay_within_one_slow_sample_of_the_ideal(speeds: list[float], extra: int,
                                                                             data: st.DataObject) -> None:
    total = len(speeds) + extra
    bounds = data.draw(st.lists(st.integers(1, 8), min_size=len(speeds), max_size=len(speeds)))
    micro_batches = data.draw(st.integers(1, 6))
    ranks = make_ranks(speeds, bounds)
    caps = share_caps(ranks, micro_batches)
    capacity = sum(c for c in caps if c is not None)
    if capacity < total:
        with pytest.raises(PlanCapacityError) as caught:
            plan_batch(total, ranks, "auto", max_micro_batches=micro_batches)
        assert caught.value.missing == total - capacity
        assert f"({total - capacity} missing)" in str(caught.value)
        assert "\n" not in str(caught.value)
        return
    plan = plan_batch(total, ranks, "auto", max_micro_batches=micro_batches)
    samples = [e.samples for e in plan.entries]
    assert sum(samples) == total
    for n, cap, entry in zip(samples, caps, plan.entries, strict=True):
        assert cap is not None and 1 <= n <= cap
        assert len(micro_batch_sizes(n, entry.micro_batch_size)) <= micro_batches
    uniform = uniform_split(total, len(speeds))
    if all(u <= c for u, c in zip(uniform, caps, strict=True) if c is not None):
        assert step_time(samples, speeds) <= step_time(uniform, speeds) * (1 + 1e-12)
    ideal = ideal_step_time(total, speeds, caps)
    assert ideal <= step_time(samples, speeds) * (1 + 1e-9)  # the yardstick is a true lower bound
    assert step_time(samples, speeds) <= (ideal + 1 / min(speeds)) * (1 + 1e-9)


@settings(max_examples=200, deadline=None)
@given(speeds=st.lists(st.sampled_from([0.5, 1.0, 1.5, 2.0, 3.0, 7.0]), min_size=1, max_size=4),
       extra=st.integers(min_value=0, max_value=12), cap=st.one_of(st.none(), st.integers(2, 8)))
def test_auto_plan_is_optimal_on_small_cases(speeds: list[float], extra: int, cap: int | None) -> None:
    total = len(speeds) + extra
    caps: list[int | None] = [cap] * len(speeds)
    if cap is not None and cap * len(speeds) < total:
        return
    # a cap as one micro-batch of at most `cap` samples per step
    plan = plan_batch(total, make_ranks(speeds, [cap or 4] * len(speeds)), "auto",
                      max_micro_batches=None if cap is None else 1)
    samples = [e.samples for e in plan.entries]
    assert step_time(samples, speeds) == pytest.approx(brute_force_best(total, speeds, caps))


def test_one_two_four_reaches_the_ideal_where_uniform_reaches_three_sevenths() -> None:
    speeds = [1.0, 2.0, 4.0]
    plan = plan_batch(28, make_ranks(speeds), "auto")
    assert [e.samples for e in plan.entries] == [4, 8, 16]
    assert step_time([4, 8, 16], speeds) == ideal_step_time(28, speeds)
    uniform = plan_batch(28, make_ranks(speeds), "uniform")
    assert [e.samples for e in uniform.entries] == [10, 9, 9]
    assert ideal_step_time(28, speeds) / step_time([10, 9, 9], speeds) == pytest.approx(0.4, abs=0.03)


def test_large_batches_are_planned_quickly_and_exactly() -> None:
    speeds = [1.0 + (i % 5) * 0.37 for i in range(64)]
    plan = plan_batch(1_000_003, make_ranks(speeds, [8] * 64), "auto")
    assert sum(e.samples for e in plan.entries) == 1_000_003
    assert step_time([e.samples for e in plan.entries], speeds) <= (1_000_003 + 63) / sum(speeds)


def test_memory_bound_is_held_by_more_micro_batches_not_fewer_samples() -> None:
    plan = plan_batch(20, make_ranks([1.0, 4.0], [8, 2]), "auto")
    fast = plan.entries[1]
    assert fast.samples == 16 and fast.micro_batch_size == 2  # 8 micro-batches of 2 on the small-memory card
    slow = plan.entries[0]
    assert slow.samples == 4 and slow.micro_batch_size == 4


def test_micro_batches_are_even_under_the_bound() -> None:
    plan = plan_batch(18, make_ranks([1.0, 1.0], [8, 8]), "uniform")
    assert [e.micro_batch_size for e in plan.entries] == [5, 5]  # 9 = 5 + 4, not 8 + 1
    assert micro_batch_sizes(9, 5) == [5, 4]


def test_capacity_error_names_what_is_missing() -> None:
    with pytest.raises(PlanCapacityError, match=r"holds 12 of the 16 samples per step \(4 missing\)") as caught:
        plan_batch(16, make_ranks([1.0, 1.0], [4, 2]), "auto", max_micro_batches=2)
    assert isinstance(caught.value, BatchPlanError)
    assert (caught.value.capacity, caught.value.missing) == (12, 4)


def test_uniform_mode_ignores_speeds_and_records_none() -> None:
    plan = plan_batch(16, make_ranks([1.0, 100.0]), "uniform")
    assert all(abs(e.samples - 8) <= 1 for e in plan.entries)
    assert max(0.050 + 0.007 * e.samples for e in plan.entries) <= (0.050 + 0.007 * 8) * 1.07
    assert plan.mode == "uniform" and plan_speeds(plan) == {}


def test_plan_json_keeps_the_old_format_readable_and_adds_optional_fields() -> None:
    old = {"round": 3, "global_batch_size": 8, "entries": [
        {"node_id": "a", "local_rank": 0, "samples": 6, "micro_batch_size": 2},
        {"node_id": "b", "local_rank": 0, "samples": 2, "micro_batch_size": 2}]}
    plan = plan_from_json(old)
    assert plan.mode == "" and all(e.speed is None and e.max_micro_batch is None for e in plan.entries)
    assert plan_to_json(plan) == old  # a plan without the new fields writes exactly the old format
    auto = plan_batch(8, make_ranks([3.0, 1.0]), "auto", round=4)
    data = plan_to_json(auto)
    assert data["mode"] == "auto"
    assert [(e["speed"], e["max_micro_batch"]) for e in data["entries"]] == [(3.0, 4), (1.0, 4)]
    assert plan_speeds(plan_from_json(data)) == {("n0", 0): 3.0, ("n1", 1): 1.0}


def test_plan_from_json_rejects_a_micro_batch_above_its_bound_and_bad_speeds() -> None:
    data = plan_to_json(plan_batch(8, make_ranks([1.0, 1.0], [2, 2]), "auto"))
    data["entries"][0]["micro_batch_size"] = 3
    with pytest.raises(BatchPlanError, match="above its memory bound 2"):
        plan_from_json(data)
    data["entries"][0]["micro_batch_size"] = 2
    data["entries"][0]["speed"] = -1
    with pytest.raises(BatchPlanError, match="speed must be a positive number"):
        plan_from_json(data)


def test_plan_step_time_uses_the_given_speeds() -> None:
    plan = plan_batch(12, make_ranks([1.0, 2.0]), "auto")
    assert plan_step_time(plan, {("n0", 0): 1.0, ("n1", 1): 2.0}) == 4.0
    assert plan_step_time(plan, {("n0", 0): 1.0, ("n1", 1): 1.0}) == 8.0
    with pytest.raises(BatchPlanError, match="no speed"):
        plan_step_time(plan, {("n0", 0): 1.0})


# ---- the drift rule ----

def test_replan_when_the_fast_box_halves_not_when_everyone_slows_alike() -> None:
    planned = {"a": 1.0, "b": 2.0, "c": 4.0}
    assert replan_excess(planned, {"a": 1.0, "b": 2.0, "c": 2.0}) == pytest.approx(3 / 7 * 1.0, rel=1e-9)
    assert needs_replan(planned, {"a": 1.0, "b": 2.0, "c": 2.0}, 0.25)
    assert not needs_replan(planned, {"a": 0.5, "b": 1.0, "c": 2.0}, 0.25)  # all twice slower: shares still right
    assert not needs_replan(planned, {"a": 1.0, "b": 2.0, "c": 3.0}, 0.25)  # 14 % lost: not worth a round
    assert needs_replan(planned, {"a": 1.0, "b": 2.0, "c": 3.0}, 0.10)


def test_replan_ignores_ranks_without_a_measurement_and_bad_values() -> None:
    assert replan_excess({"a": 1.0, "b": 1.0}, {}) == 0.0
    assert not needs_replan({"a": 1.0, "b": 1.0}, {"a": 0.1})  # one rank alone: its share cannot be wrong
    assert not needs_replan({"a": 1.0, "b": 1.0}, {"a": float("nan"), "b": 1.0})
    with pytest.raises(ValueError, match="threshold"):
        needs_replan({"a": 1.0}, {"a": 1.0}, -0.1)


@settings(max_examples=200, deadline=None)
@given(plan=st.lists(st.floats(0.1, 100.0), min_size=1, max_size=6), factor=st.floats(0.01, 100.0))
def test_replan_is_scale_free_and_never_fires_on_the_plans_own_speeds(plan: list[float], factor: float) -> None:
    planned = dict(enumerate(plan))
    assert not needs_replan(planned, planned, 0.0)
    assert not needs_replan(planned, {k: v * factor for k, v in planned.items()}, 1e-6)


@settings(max_examples=200, deadline=None)
@given(pairs=st.lists(st.tuples(st.floats(0.1, 100.0), st.floats(0.1, 100.0)), min_size=1, max_size=6))
def test_replan_excess_is_what_the_proportional_plan_loses(pairs: list[tuple[float, float]]) -> None:
    planned = {i: p for i, (p, _) in enumerate(pairs)}
    measured = {i: m for i, (_, m) in enumerate(pairs)}
    total = 1.0  # fractional shares in proportion to the plan's speeds, timed at the measured speeds
    running = max(total * planned[i] / sum(planned.values()) / measured[i] for i in planned)
    best = total / sum(measured.values())
    assert replan_excess(planned, measured) == pytest.approx(running / best - 1, rel=1e-9, abs=1e-12)


def test_plan_excess_compares_integer_plans_and_covers_uniform_plans() -> None:
    ranks = make_ranks([1.0, 2.0, 4.0])
    measured = {("n0", 0): 1.0, ("n1", 1): 2.0, ("n2", 0): 4.0}
    auto = plan_batch(16, ranks, "auto")
    assert plan_excess(auto, measured) == 0.0  # rounding of a small batch is not drift
    uniform = plan_batch(16, ranks, "uniform")  # [6, 5, 5]: 6 s against the auto plan's
    assert plan_excess(uniform, measured) == pytest.approx(6.0 / plan_step_time(auto, measured) - 1)
    slowed = {**measured, ("n2", 0): 2.0}
    assert plan_excess(auto, slowed) > 0.25
    assert plan_excess(auto, {("n0", 0): 1.0}) == 0.0  # not everyone measured yet


def test_proportional_replans_converge_with_a_fixed_cost_per_step() -> None:
    """Two equal ranks whose step costs 50 ms + 7 ms per sample: from a lopsided start, plans made from measured
    samples/s come within a sample of the even split (the per-sample model cannot see the last sample's gain)."""
    ranks = make_ranks([1.0, 1.0])
    plan = explicit_plan_for([13, 3])
    for _ in range(12):
        times = {(e.node_id, e.local_rank): 0.050 + 0.007 * e.samples for e in plan.entries}
        measured = {k: e.samples / times[k] for k, e in zip(times, plan.entries, strict=True)}
        if plan_excess(plan, measured) <= 0.0:
            break
        plan = plan_batch(16, [RankCapacity(r.node_id, r.local_rank, measured[(r.node_id, r.local_rank)], 4)
                               for r in ranks], "auto")
    assert all(abs(e.samples - 8) <= 1 for e in plan.entries)
    assert max(0.050 + 0.007 * e.samples for e in plan.entries) <= (0.050 + 0.007 * 8) * 1.07


def explicit_plan_for(samples: list[int]) -> BatchPlan:
    return explicit_plan(sum(samples), make_ranks([1.0] * len(samples)), samples)
