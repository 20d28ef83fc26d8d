import pytest

from p2pft.planning.batch_plan import (
    BatchPlanError,
    RankCapacity,
    explicit_plan,
    micro_batch_sizes,
    plan_batch,
    plan_from_json,
    plan_to_json,
)


def ranks(*throughputs: float, max_micro: int = 4) -> list[RankCapacity]:
    return [RankCapacity(f"n{i}", 0, t, max_micro) for i, t in enumerate(throughputs)]


def test_uniform_splits_evenly_remainder_to_first_ranks() -> None:
    plan = plan_batch(16, ranks(1, 1, 1), "uniform")
    assert [e.samples for e in plan.entries] == [6, 5, 5]
    assert sum(e.samples for e in plan.entries) == 16


def test_auto_is_proportional_to_throughput_and_bounded_micro_batch() -> None:
    plan = plan_batch(16, ranks(3.0, 1.0, max_micro=4), "auto")
    assert [e.samples for e in plan.entries] == [12, 4]
    assert [e.micro_batch_size for e in plan.entries] == [4, 4]


def test_auto_gives_every_rank_at_least_one_sample() -> None:
    plan = plan_batch(4, ranks(1000.0, 1.0, 1.0), "auto")
    assert all(e.samples >= 1 for e in plan.entries)
    assert sum(e.samples for e in plan.entries) == 4


def test_more_ranks_than_samples_is_a_clear_error() -> None:
    with pytest.raises(BatchPlanError, match="smaller than the 3 ranks"):
        plan_batch(2, ranks(1, 1, 1), "uniform")


def test_micro_batch_never_exceeds_samples() -> None:
    plan = plan_batch(6, ranks(1, 1, max_micro=8), "uniform")
    assert [e.micro_batch_size for e in plan.entries] == [3, 3]


def test_json_round_trip_and_slice_bounds() -> None:
    plan = explicit_plan(16, ranks(1, 1), [12, 4])
    again = plan_from_json(plan_to_json(plan))
    assert again == plan
    assert again.slice_bounds() == [(0, 12), (12, 16)]
    assert again.entry_for("n1", 0).samples == 4


def test_plan_from_json_rejects_bad_sums_and_zero_samples() -> None:
    data = plan_to_json(explicit_plan(16, ranks(1, 1), [12, 4]))
    data["global_batch_size"] = 17
    with pytest.raises(BatchPlanError, match="add up to 16"):
        plan_from_json(data)
    with pytest.raises(BatchPlanError, match="at least one sample"):
        explicit_plan(16, ranks(1, 1), [16, 0])


def test_micro_batch_sizes() -> None:
    assert micro_batch_sizes(12, 4) == [4, 4, 4]
    assert micro_batch_sizes(10, 4) == [4, 4, 2]
    assert micro_batch_sizes(1, 4) == [1]
