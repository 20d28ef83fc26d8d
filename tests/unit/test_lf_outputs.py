"""LLaMA-Factory's end-of-training files from metric lines: trainer_state.json that Hugging Face's TrainerState
loads, train/eval/all results, trainer_log.jsonl in LF's shape, training_loss.png with plot_loss."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from p2pft.formats.lf_outputs import RunSettings, build_lf_outputs, state_up_to, write_lf_outputs

STEPS = 12
START = 1_000_000.0


def metric_lines(*, evals_at: tuple[int, ...] = (6, 12), steps_per_epoch: int = 4) -> list[dict[str, Any]]:
    """What a worker writes: one line per step (each taking 2 s), eval lines after their step."""
    lines: list[dict[str, Any]] = []
    for step in range(1, STEPS + 1):
        lines.append({"step": step, "total_steps": STEPS, "loss": 10.0 / step, "lr": 0.001 * step,
                      "grad_norm": 0.5, "samples_consumed": 16 * step, "epoch": (step - 1) // steps_per_epoch,
                      "epoch_float": step / steps_per_epoch, "step_time_s": 2.0, "time": START + 2.0 * step})
        if step in evals_at:
            lines.append({"step": step, "kind": "eval", "eval_loss": 5.0 / step, "eval_perplexity": 2.0,
                          "eval_token_accuracy": 0.25})
    return lines


def test_log_history_averages_each_logging_window_and_ends_with_the_train_metrics() -> None:
    outputs = build_lf_outputs(metric_lines(), RunSettings(logging_steps=4, save_steps=6, eval_steps=6))
    assert outputs is not None
    history = outputs.trainer_state["log_history"]
    train = [e for e in history if "loss" in e]
    assert [e["step"] for e in train] == [4, 8, 12]
    assert train[0]["loss"] == pytest.approx((10 / 1 + 10 / 2 + 10 / 3 + 10 / 4) / 4)   # HF: mean since the last log
    assert train[1]["loss"] == pytest.approx(sum(10 / s for s in range(5, 9)) / 4)
    assert train[0]["learning_rate"] == pytest.approx(0.004) and train[0]["epoch"] == 1.0
    assert train[0]["grad_norm"] == 0.5
    evals = [e for e in history if "eval_loss" in e]
    assert [(e["step"], e["epoch"]) for e in evals] == [(6, 1.5), (12, 3.0)]
    assert history.index(evals[1]) == history.index(train[2]) + 1   # HF evaluates after logging the step
    final = history[-1]
    assert final["step"] == STEPS and final["train_loss"] == pytest.approx(sum(10 / s for s in range(1, 13)) / 12)
    assert final["train_runtime"] == pytest.approx(24.0)   # from the start of step 1 to the end of step 12
    assert final["train_samples_per_second"] == pytest.approx(16 * 12 / 24, abs=1e-3)
    assert final["train_steps_per_second"] == 0.5
    state = outputs.trainer_state
    assert (state["global_step"], state["max_steps"], state["num_train_epochs"], state["epoch"]) == (12, 12, 3, 3.0)
    assert (state["logging_steps"], state["save_steps"], state["eval_steps"]) == (4, 6, 6)
    assert state["best_metric"] is None and state["total_flos"] == 0


def test_trainer_state_loads_as_hf_trainer_state_and_results_agree(tmp_path: Path) -> None:
    from transformers.trainer_callback import TrainerState

    spec = {"logging_steps": 2, "save_steps": 4, "eval_steps": 6, "per_device_train_batch_size": 2}
    written = write_lf_outputs(tmp_path, metric_lines(), spec)
    assert {p.name for p in written} == {"trainer_state.json", "train_results.json", "all_results.json",
                                          "eval_results.json", "trainer_log.jsonl"}
    state = TrainerState.load_from_json(str(tmp_path / "trainer_state.json"))
    assert state.global_step == STEPS and state.train_batch_size == 2 and state.log_history[-1]["step"] == STEPS
    assert len([e for e in state.log_history if "loss" in e]) == 6
    train_results = json.loads((tmp_path / "train_results.json").read_text())
    assert set(train_results) == {"epoch", "total_flos", "train_loss", "train_runtime", "train_samples_per_second",
                                  "train_steps_per_second"}
    all_results = json.loads((tmp_path / "all_results.json").read_text())
    assert all_results["eval_loss"] == pytest.approx(5.0 / 12)
    assert all_results["train_loss"] == train_results["train_loss"]
    assert not (tmp_path / "training_loss.png").exists()   # plot_loss not asked


def test_trainer_log_has_llamafactory_fields() -> None:
    outputs = build_lf_outputs(metric_lines(), RunSettings(logging_steps=3))
    assert outputs is not None
    log = outputs.trainer_log
    first = log[0]
    mean = sum(10 / s for s in (1, 2, 3)) / 3
    assert first == {"current_steps": 3, "total_steps": STEPS, "loss": pytest.approx(mean),
                     "lr": pytest.approx(0.003), "epoch": 0.75, "percentage": 25.0, "elapsed_time": "0:00:06",
                     "remaining_time": "0:00:18"}
    eval_line = next(line for line in log if "eval_loss" in line)
    assert eval_line["current_steps"] == 6 and "loss" not in eval_line
    assert log[-1]["percentage"] == 100.0 and log[-1]["remaining_time"] == "0:00:00"


def test_plot_loss_writes_pngs_that_read_back(tmp_path: Path) -> None:
    import matplotlib.image

    write_lf_outputs(tmp_path, metric_lines(), {"logging_steps": 1, "plot_loss": True}, round_starts={0: 1, 1: 7})
    for name in ("training_loss.png", "training_eval_loss.png"):
        image = matplotlib.image.imread(tmp_path / name)
        assert image.shape[0] > 200 and image.shape[1] > 300
    no_evals = tmp_path / "no_evals"
    write_lf_outputs(no_evals, metric_lines(evals_at=()), {"plot_loss": True})
    assert (no_evals / "training_loss.png").is_file() and not (no_evals / "training_eval_loss.png").exists()


def test_resumed_duplicates_keep_the_last_line_and_empty_runs_write_nothing(tmp_path: Path) -> None:
    lines = metric_lines(evals_at=())
    lines.insert(3, {**lines[5], "loss": 99.0})   # a step seen twice: the later line counts
    outputs = build_lf_outputs(lines, RunSettings(logging_steps=1))
    assert outputs is not None
    assert [e["loss"] for e in outputs.trainer_state["log_history"] if e["step"] == 6] == [pytest.approx(10 / 6)]
    assert write_lf_outputs(tmp_path / "empty", [{"step": 1, "kind": "eval", "eval_loss": 1.0}], {}) == []


def test_state_up_to_a_checkpoint_stops_there_without_final_metrics() -> None:
    state = state_up_to(metric_lines(), 8, RunSettings(logging_steps=4))
    assert state is not None
    assert state["global_step"] == 8 and [e["step"] for e in state["log_history"]] == [4, 6, 8]
    assert all("train_runtime" not in e for e in state["log_history"])


def test_overwrite_output_dir_removes_the_old_runs_llamafactory_files(tmp_path: Path) -> None:
    from types import SimpleNamespace

    from p2pft.cli.run import _apply_rerun_policy

    write_lf_outputs(tmp_path, metric_lines(), {"plot_loss": True})
    (tmp_path / "adapter_config.json").write_text("{}")
    spec = SimpleNamespace(overwrite_output_dir=True, output_dir=str(tmp_path))
    _apply_rerun_policy(spec, None, {}, tmp_path / "checkpoints")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["adapter_config.json"]   # a failed rerun leaves no stale log
