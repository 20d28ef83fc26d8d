"""Every lr_scheduler_type p2pft runs gives transformers' own learning rate at every step (LambdaLR on a real
optimizer, stepped as the Trainer steps it), and the rest are refused at validation in one line."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from transformers.optimization import get_scheduler

from p2pft.config.job import JobSpecError
from p2pft.config.lr_schedules import REFUSED_SCHEDULERS, SCHEDULER_KWARGS
from p2pft.train.schedule import learning_rate
from tests.unit.test_data_support import make_spec

BASE_LR = 3e-4
TOTAL, WARMUP = 40, 6
CASES: list[tuple[str, dict[str, Any]]] = [
    ("linear", {}),
    ("cosine", {}),
    ("cosine", {"num_cycles": 1.5}),
    ("cosine_with_restarts", {}),
    ("cosine_with_restarts", {"num_cycles": 3}),
    ("polynomial", {}),
    ("polynomial", {"lr_end": 1e-5, "power": 2.0}),
    ("constant", {}),
    ("constant_with_warmup", {}),
    ("inverse_sqrt", {}),
    ("inverse_sqrt", {"timescale": 15}),
    ("cosine_with_min_lr", {"min_lr_rate": 0.1}),
    ("cosine_with_min_lr", {"min_lr": 2e-5, "num_cycles": 0.75}),
    ("cosine_warmup_with_min_lr", {"min_lr_rate": 0.1}),
    ("cosine_warmup_with_min_lr", {"min_lr": 1e-5, "warmup_lr_rate": 0.2}),
    ("warmup_stable_decay", {"num_decay_steps": 10}),
    ("warmup_stable_decay", {"num_decay_steps": 12, "num_stable_steps": 15, "warmup_type": "cosine",
                             "decay_type": "1-sqrt", "min_lr_ratio": 0.05}),
    ("warmup_stable_decay", {"num_decay_steps": 8, "warmup_type": "1-sqrt", "decay_type": "linear"}),
]


def transformers_rates(kind: str, kwargs: dict[str, Any], warmup: int) -> list[float]:
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=BASE_LR)
    scheduler = get_scheduler(kind, optimizer, num_warmup_steps=warmup, num_training_steps=TOTAL,
                              scheduler_specific_kwargs=dict(kwargs))
    rates = []
    for _ in range(TOTAL):  # the lr each update uses, then the Trainer's scheduler.step()
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    return rates


def test_every_supported_type_has_a_case() -> None:
    assert {kind for kind, _ in CASES} == set(SCHEDULER_KWARGS)


@pytest.mark.filterwarnings("ignore:Both num_training_steps and num_stable_steps")
@pytest.mark.parametrize("warmup", [0, WARMUP])
@pytest.mark.parametrize(("kind", "kwargs"), CASES, ids=[f"{k}-{i}" for i, (k, _) in enumerate(CASES)])
def test_matches_transformers_at_every_step(kind: str, kwargs: dict[str, Any], warmup: int) -> None:
    expected = transformers_rates(kind, kwargs, warmup)
    ours = [learning_rate(BASE_LR, kind, step, TOTAL, warmup, kwargs) for step in range(TOTAL)]
    assert ours == expected  # bit for bit: the same formulas in the same order
    assert len(set(ours)) > 1 or kind.startswith("constant")  # it exercises a schedule, not a flat line


def _spec(tmp_path: Path, **keys: Any):
    (tmp_path / "dataset_info.json").write_text('{"rows": {"file_name": "rows.json"}}', encoding="utf-8")
    (tmp_path / "rows.json").write_text("[]", encoding="utf-8")
    return make_spec("rows", tmp_path, learning_rate=BASE_LR, **keys)


def test_kwargs_reach_the_spec_from_yaml_or_json_text(tmp_path: Path) -> None:
    spec = _spec(tmp_path, lr_scheduler_type="cosine_with_min_lr", lr_scheduler_kwargs={"min_lr_rate": 0.1})
    assert spec.lr_scheduler_kwargs == {"min_lr_rate": 0.1}
    text = _spec(tmp_path, lr_scheduler_type="cosine", lr_scheduler_kwargs='{"num_cycles": 1}')
    assert text.lr_scheduler_kwargs == {"num_cycles": 1}


@pytest.mark.parametrize(
    ("keys", "message"),
    [
        ({"lr_scheduler_type": "reduce_lr_on_plateau"},
         r"lr_scheduler_type: 'reduce_lr_on_plateau' is not supported: it lowers the LR when an evaluation metric"),
        ({"lr_scheduler_type": "greedy"}, r"lr_scheduler_type: 'greedy' is not supported: it adapts the LR"),
        ({"lr_scheduler_type": "cosine_annealing"},
         r"lr_scheduler_type: 'cosine_annealing' is not a transformers schedule p2pft runs; allowed: linear, cos"),
        ({"lr_scheduler_type": "linear", "lr_scheduler_kwargs": {"num_cycles": 2}},
         r"lr_scheduler_kwargs\.num_cycles: not an argument of the linear schedule \(it takes none\)"),
        ({"lr_scheduler_type": "cosine", "lr_scheduler_kwargs": {"num_cycles": "2"}},
         r"lr_scheduler_kwargs\.num_cycles: '2' is not a number"),
        ({"lr_scheduler_type": "polynomial", "lr_scheduler_kwargs": {"lr_end": 1e-3}},
         r"lr_scheduler_kwargs\.lr_end: 0\.001 must be smaller than learning_rate 0\.0003"),
        ({"lr_scheduler_type": "cosine_with_min_lr"},
         r"lr_scheduler_kwargs: the cosine_with_min_lr schedule needs exactly one of min_lr and min_lr_rate"),
        ({"lr_scheduler_type": "warmup_stable_decay"}, r"lr_scheduler_kwargs\.num_decay_steps: is missing"),
        ({"lr_scheduler_type": "warmup_stable_decay", "lr_scheduler_kwargs": {"num_decay_steps": 3,
                                                                              "decay_type": "exp"}},
         r"lr_scheduler_kwargs\.decay_type: 'exp' is not one of linear, cosine, 1-sqrt"),
    ],
)
def test_unsupported_schedules_and_kwargs_fail_validation_in_one_line(tmp_path: Path, keys: dict[str, Any],
                                                                      message: str) -> None:
    with pytest.raises(JobSpecError, match=message) as caught:
        _spec(tmp_path, **keys)
    assert "\n" not in str(caught.value)


def test_every_refused_type_is_a_transformers_type() -> None:
    from transformers.trainer_utils import SchedulerType

    known = {kind.value for kind in SchedulerType}
    assert set(REFUSED_SCHEDULERS) | set(SCHEDULER_KWARGS) == known


def test_a_run_written_before_lr_scheduler_kwargs_existed_still_resumes() -> None:
    from p2pft.config.rerun import decide_rerun

    previous = {"learning_rate": 1e-4, "lr_scheduler_type": "cosine"}
    current = {**previous, "lr_scheduler_kwargs": {}, "preprocessing_num_workers": None}
    assert decide_rerun(previous, current, has_checkpoint=True, overwrite=False, output_dir="o").action == "resume"
    changed = {**current, "lr_scheduler_kwargs": {"num_cycles": 1.0}}
    refused = decide_rerun(previous, changed, has_checkpoint=True, overwrite=False, output_dir="o")
    assert refused.action == "refuse" and "lr_scheduler_kwargs" in refused.message
