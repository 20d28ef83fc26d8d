"""The worker's speed meter: EMA, the per-rank vector that rides in the all-reduce, the metrics field, timing."""

import time
from types import SimpleNamespace

import pytest
import torch
from torch import nn

from p2pft.planning.batch_plan import PlanEntry
from p2pft.train.allreduce_hook import ReportingAllReduce
from p2pft.train.speed import RankSpeed, SpeedAverage, decode_vector, report_vector, speeds_by_entry
from p2pft.train.step import Precision, train_step


def test_average_skips_warmup_then_moves_towards_new_times() -> None:
    average = SpeedAverage(alpha=0.5)
    average.update(100.0, 4, 400)  # the first step (warm-up) is ignored however slow
    assert average.samples_per_s is None
    average.update(2.0, 4, 400)
    assert average.samples_per_s == pytest.approx(2.0) and average.tokens_per_s == pytest.approx(200.0)
    average.update(4.0, 4, 400)  # seconds per sample 0.5 -> 1.0, halfway with alpha 0.5
    assert average.seconds_per_sample == pytest.approx(0.75)
    assert average.measured == 2


def test_average_ignores_empty_or_untimed_steps() -> None:
    average = SpeedAverage(warmup_steps=0)
    average.update(0.0, 4, 10)
    average.update(1.0, 0, 10)
    assert average.samples_per_s is None


def test_summed_vectors_give_every_rank_every_speed() -> None:
    world = 3
    averages = []
    for seconds in (1.0, 2.0, None):
        average = SpeedAverage(warmup_steps=0)
        if seconds is not None:
            average.update(seconds, 2, 100)
        averages.append(average)
    summed = [sum(values) for values in zip(*(report_vector(r, world, a) for r, a in enumerate(averages)),
                                          strict=True)]
    assert decode_vector(summed, world) == [(2.0, 100.0), (1.0, 50.0), (None, None)]
    assert decode_vector([], world) == [(None, None)] * world  # FSDP: nothing rode along


def test_speeds_are_listed_in_plan_order_whatever_the_rank_order() -> None:
    entries = [PlanEntry("box-a", 0, 6, 2), PlanEntry("box-b", 0, 2, 2)]
    rows = speeds_by_entry([(1.0, 10.0), (3.0, 30.0)], entries, entry_of_rank=[1, 0])
    assert rows == [{"node_id": "box-a", "local_rank": 0, "samples_per_s": 3.0, "tokens_per_s": 30.0},
                    {"node_id": "box-b", "local_rank": 0, "samples_per_s": 1.0, "tokens_per_s": 10.0}]


def test_cpu_meter_counts_compute_until_the_last_bucket_not_the_wait() -> None:
    hook = SimpleNamespace(on_last_bucket=None)
    speed = RankSpeed(torch.device("cpu"), rank=1, world_size=2)
    speed.attach(hook)
    for _ in range(2):  # the first step is warm-up
        speed.begin()
        time.sleep(0.05)  # compute
        hook.on_last_bucket()
        time.sleep(0.3)  # waiting for a slower rank in the all-reduce: must not count
        hook.on_last_bucket()  # a second call in the same step changes nothing
        speed.end(samples=5, tokens=50)
    seconds = 5 / speed.average.samples_per_s
    assert 0.045 <= seconds < 0.25
    values = speed.values()
    assert len(values) == 4 and values[0] == 0 and values[1] == pytest.approx(5 / seconds)


def test_without_the_hook_nothing_is_measured_or_sent() -> None:
    speed = RankSpeed(torch.device("cpu"), rank=0, world_size=2)  # FSDP: never attached
    speed.begin()
    speed.end(4, 40)
    speed.begin()
    speed.end(4, 40)
    assert speed.average.samples_per_s is None and speed.values() == []


class TinyLM(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(11, 5)
        self.head = nn.Linear(5, 11)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> SimpleNamespace:
        return SimpleNamespace(logits=self.head(self.embed(input_ids)))


def test_train_step_returns_the_extra_values_and_the_same_loss_without_them() -> None:
    batch = {"input_ids": torch.tensor([[1, 2, 3, 4]]), "attention_mask": torch.ones(1, 4, dtype=torch.long),
             "labels": torch.tensor([[1, 2, 3, 4]])}
    losses = []
    for extras in ((), (0.0, 2.5, 0.0, 7.0)):
        torch.manual_seed(0)
        model = TinyLM()
        optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
        result = train_step(model, optimizer, [batch], 3, 1, 1.0, Precision(None, "cpu", None),
                            ReportingAllReduce(), False, extras)
        assert result.extras == extras
        losses.append((result.loss, [p.detach().clone() for p in model.parameters()]))
    assert losses[0][0] == losses[1][0]
    assert all(torch.equal(a, b) for a, b in zip(losses[0][1], losses[1][1], strict=True))
