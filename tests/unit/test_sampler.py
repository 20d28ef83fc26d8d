import pytest

from p2pft.planning.batch_plan import RankCapacity, explicit_plan
from p2pft.train.sampler import GlobalSampler, SamplerError, rank_micro_batches, total_steps


def test_each_epoch_is_a_permutation_and_tail_is_dropped() -> None:
    sampler = GlobalSampler(num_samples=50, global_batch_size=16, seed=3)
    assert sampler.steps_per_epoch == 3
    for epoch in range(3):
        ids = [i for s in range(epoch * 3, epoch * 3 + 3) for i in sampler.global_batch(s)]
        assert len(ids) == len(set(ids)) == 48
        assert set(ids) <= set(range(50))


def test_order_depends_on_seed_and_epoch_only() -> None:
    a = GlobalSampler(64, 16, seed=1)
    b = GlobalSampler(64, 16, seed=1)
    assert [a.global_batch(s) for s in range(8)] == [b.global_batch(s) for s in range(8)]
    assert a.global_batch(0) != GlobalSampler(64, 16, seed=2).global_batch(0)
    assert sorted(a.global_batch(0) + a.global_batch(1) + a.global_batch(2) + a.global_batch(3)) == list(range(64))
    assert a.global_batch(0) != a.global_batch(4)  # a new shuffle in epoch 1
    assert a.epoch_of(3) == 0 and a.epoch_of(4) == 1


def test_slices_cover_the_global_batch_whatever_the_plan() -> None:
    sampler = GlobalSampler(64, 16, seed=0)
    batch = sampler.global_batch(2)
    for samples in ([16], [12, 4], [8, 4, 4], [3, 2, 4, 7]):
        caps = [RankCapacity(f"n{i}", 0, 1.0, 4) for i in range(len(samples))]
        plan = explicit_plan(16, caps, samples)
        micro = [rank_micro_batches(batch, plan, i) for i in range(len(samples))]
        flat = [i for rank in micro for mb in rank for i in mb]
        assert tuple(flat) == batch
        assert all(len(mb) <= 4 for rank in micro for mb in rank)
    plan = explicit_plan(16, [RankCapacity("a", 0, 1, 4), RankCapacity("b", 0, 1, 4)], [12, 4])
    assert [len(rank_micro_batches(batch, plan, i)) for i in range(2)] == [3, 1]


def test_too_small_dataset_is_a_clear_error() -> None:
    with pytest.raises(SamplerError, match="fewer than one global batch"):
        GlobalSampler(10, 16, seed=0)


def test_total_steps() -> None:
    assert total_steps(6, 3.0, None) == 18
    assert total_steps(6, 0.5, None) == 3
    assert total_steps(6, 3.0, 7) == 7
