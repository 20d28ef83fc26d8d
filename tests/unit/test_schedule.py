import math

import pytest

from p2pft.train.schedule import learning_rate, lr_factor, warmup_steps_for


def test_warmup_is_linear_from_zero() -> None:
    assert lr_factor("linear", 0, 100, 10) == 0.0
    assert lr_factor("linear", 5, 100, 10) == 0.5
    assert lr_factor("cosine", 5, 100, 10) == 0.5
    assert lr_factor("constant_with_warmup", 5, 100, 10) == 0.5


def test_linear_decays_to_zero() -> None:
    assert lr_factor("linear", 10, 100, 10) == 1.0
    assert lr_factor("linear", 55, 100, 10) == pytest.approx(0.5)
    assert lr_factor("linear", 100, 100, 10) == 0.0


def test_cosine_half_way_is_half() -> None:
    assert lr_factor("cosine", 0, 100, 0) == 1.0
    assert lr_factor("cosine", 50, 100, 0) == pytest.approx(0.5)
    assert lr_factor("cosine", 100, 100, 0) == pytest.approx(0.0, abs=1e-12)


def test_constant_ignores_warmup() -> None:
    assert lr_factor("constant", 0, 100, 10) == 1.0
    assert learning_rate(2e-3, "constant", 77, 100, 10) == 2e-3


def test_warmup_steps_win_over_ratio() -> None:
    assert warmup_steps_for(100, 0, 0.05) == 5
    assert warmup_steps_for(100, 7, 0.05) == 7
    assert warmup_steps_for(10, 0, 0.05) == math.ceil(0.5)


def test_unknown_kind_is_rejected() -> None:
    with pytest.raises(ValueError, match="lr_scheduler_type"):
        lr_factor("reduce_lr_on_plateau", 50, 100, 10)
