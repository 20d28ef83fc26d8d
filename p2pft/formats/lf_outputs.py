"""LLaMA-Factory's end-of-training files, built from metric lines: `trainer_state.json` (Hugging Face's
TrainerState), `train_results.json` / `eval_results.json` / `all_results.json`, `trainer_log.jsonl` and, with
`plot_loss: true`, `training_loss.png` (+ `training_eval_loss.png`). Torch-free.

Everything comes from the metric lines (metrics.jsonl: one line per step, plus eval lines), never from a
worker's memory: an elastic run has many workers, each of which lived through one round only. The worker writes
these files at the end (`p2pft run` keeps metrics.jsonl across its restarts); the coordinator of a daemon job
rewrites them from the merged lines of every round.

Where p2pft's numbers differ in kind from Hugging Face's (see docs/training.md): `train_runtime` is the wall time
from the start of the first step to the end of the last, across rounds and their recoveries; `train_loss` is the
mean step loss of the whole run (HF: of the last `train()` call); `total_flos` is 0 (not counted).
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

TRAINER_STATE_FILE = "trainer_state.json"
TRAIN_RESULTS_FILE = "train_results.json"
EVAL_RESULTS_FILE = "eval_results.json"
ALL_RESULTS_FILE = "all_results.json"
TRAINER_LOG_FILE = "trainer_log.jsonl"
LOSS_PNG = "training_loss.png"
EVAL_LOSS_PNG = "training_eval_loss.png"
EVAL_KEYS = ("eval_loss", "eval_perplexity", "eval_token_accuracy")
# every file write_lf_outputs may leave (a fresh start removes them with metrics.jsonl)
OUTPUT_FILES = (TRAINER_STATE_FILE, TRAIN_RESULTS_FILE, EVAL_RESULTS_FILE, ALL_RESULTS_FILE, TRAINER_LOG_FILE, LOSS_PNG,
                EVAL_LOSS_PNG)


@dataclass(frozen=True)
class RunSettings:
    """The job keys these files report (a job_to_dict or JOB.json mapping)."""

    logging_steps: int = 10
    save_steps: int = 500
    eval_steps: int | None = None
    train_batch_size: int = 1
    plot_loss: bool = False

    @classmethod
    def from_spec(cls, spec: Mapping[str, Any]) -> RunSettings:
        return cls(logging_steps=int(spec.get("logging_steps") or 10), save_steps=int(spec.get("save_steps") or 500),
                   eval_steps=spec.get("eval_steps"),
                   train_batch_size=int(spec.get("per_device_train_batch_size") or 1),
                   plot_loss=bool(spec.get("plot_loss")))


@dataclass(frozen=True)
class LfOutputs:
    trainer_state: dict[str, Any]
    train_results: dict[str, Any]
    eval_results: dict[str, Any] | None
    trainer_log: list[dict[str, Any]]

    @property
    def all_results(self) -> dict[str, Any]:
        return {**self.train_results, **(self.eval_results or {})}


def _number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and value == value


def split_lines(lines: Iterable[Mapping[str, Any]]) -> tuple[list[Mapping[str, Any]], list[Mapping[str, Any]]]:
    """(train lines, eval lines), one per step (the last line of a step wins), in step order."""
    train: dict[int, Mapping[str, Any]] = {}
    evals: dict[int, Mapping[str, Any]] = {}
    for line in lines:
        step = line.get("step")
        if not isinstance(step, int):
            continue
        if line.get("kind") == "eval":
            if _number(line.get("eval_loss")):
                evals[step] = line
        elif _number(line.get("loss")):
            train[step] = line
    return [train[s] for s in sorted(train)], [evals[s] for s in sorted(evals)]


def _epoch(line: Mapping[str, Any]) -> float:
    """HF's fractional epoch (steps done / steps per epoch); lines from before `epoch_float` carry the epoch index."""
    value = line.get("epoch_float", line.get("epoch", 0))
    return float(value) if _number(value) else 0.0


def _start_time(first: Mapping[str, Any]) -> float | None:
    if not _number(first.get("time")):
        return None
    return float(first["time"]) - float(first.get("step_time_s") or 0.0)


def _clock(seconds: float) -> str:
    return str(timedelta(seconds=int(max(0.0, seconds))))


def train_metrics(train: list[Mapping[str, Any]]) -> dict[str, Any]:
    """train_results.json: HF's speed metrics and the mean step loss of the whole run."""
    last = train[-1]
    start = _start_time(train[0])
    runtime = float(last["time"]) - start if start is not None and _number(last.get("time")) else 0.0
    steps = int(last["step"])
    samples = int(last.get("samples_consumed") or 0)
    metrics: dict[str, Any] = {"epoch": _epoch(last), "total_flos": 0,
                               "train_loss": sum(float(line["loss"]) for line in train) / len(train),
                               "train_runtime": round(runtime, 4)}
    if runtime > 0:
        metrics["train_samples_per_second"] = round(samples / runtime, 3)
        metrics["train_steps_per_second"] = round(steps / runtime, 3)
    return metrics


def _log_history(train: list[Mapping[str, Any]], evals: list[Mapping[str, Any]], settings: RunSettings,
                 final: Mapping[str, Any]) -> list[dict[str, Any]]:
    """HF's log_history: a train entry every logging_steps (loss averaged over the steps since the previous
    entry, as HF's Trainer does), an eval entry per evaluation, and the final train-metrics entry."""
    evals_at = {int(line["step"]): line for line in evals}
    epoch_at = {int(line["step"]): _epoch(line) for line in train}
    history: list[dict[str, Any]] = []
    window: list[float] = []
    for line in train:
        step = int(line["step"])
        window.append(float(line["loss"]))
        if step % settings.logging_steps == 0:
            entry: dict[str, Any] = {"epoch": _epoch(line)}
            if _number(line.get("grad_norm")):
                entry["grad_norm"] = float(line["grad_norm"])
            entry.update({"learning_rate": float(line.get("lr") or 0.0), "loss": sum(window) / len(window),
                          "step": step})
            history.append(entry)
            window = []
        if step in evals_at:  # HF evaluates after logging the step
            history.append(_eval_entry(evals_at.pop(step), epoch_at.get(step)))
    for step in sorted(evals_at):   # an evaluation with no train line of its own (none in practice)
        history.append(_eval_entry(evals_at[step], epoch_at.get(step)))
    history.append({**final, "step": int(train[-1]["step"])})
    return history


def _eval_entry(line: Mapping[str, Any], epoch: float | None) -> dict[str, Any]:
    entry: dict[str, Any] = {"epoch": epoch if epoch is not None else 0.0}
    entry.update({key: float(line[key]) for key in EVAL_KEYS if _number(line.get(key))})
    entry["step"] = int(line["step"])
    return entry


def _trainer_log(history: list[dict[str, Any]], train: list[Mapping[str, Any]], total: int) -> list[dict[str, Any]]:
    """LLaMA-Factory's trainer_log.jsonl: one line per log_history entry, with its progress and timing."""
    start = _start_time(train[0])
    time_at = {int(line["step"]): float(line["time"]) for line in train if _number(line.get("time"))}
    out: list[dict[str, Any]] = []
    for entry in history:
        step = int(entry["step"])
        elapsed = time_at[step] - start if start is not None and step in time_at else 0.0
        remaining = (total - step) * elapsed / step if step else 0.0
        record: dict[str, Any] = {"current_steps": step, "total_steps": total, "loss": entry.get("loss"),
                                  "eval_loss": entry.get("eval_loss"), "lr": entry.get("learning_rate"),
                                  "epoch": entry.get("epoch"),
                                  "percentage": round(step / total * 100, 2) if total else 100,
                                  "elapsed_time": _clock(elapsed), "remaining_time": _clock(remaining)}
        out.append({key: value for key, value in record.items() if value is not None})
    return out


def build_lf_outputs(lines: Iterable[Mapping[str, Any]], settings: RunSettings) -> LfOutputs | None:
    """Pure: metric lines -> the files' contents; None when no step was recorded."""
    train, evals = split_lines(lines)
    if not train:
        return None
    last = train[-1]
    global_step = int(last["step"])
    max_steps = int(last.get("total_steps") or global_step)
    final = train_metrics(train)
    history = _log_history(train, evals, settings, final)
    epoch = _epoch(last)
    # HF: the epochs the schedule spans, rounded up (max_steps may end mid-epoch)
    epochs = math.ceil(max_steps * epoch / global_step - 1e-9) if epoch > 0 else 0
    state = {
        "best_global_step": None, "best_metric": None, "best_model_checkpoint": None, "epoch": epoch,
        "eval_steps": settings.eval_steps or settings.logging_steps, "global_step": global_step,
        "is_hyper_param_search": False, "is_local_process_zero": True, "is_world_process_zero": True,
        "log_history": history, "logging_steps": settings.logging_steps, "max_steps": max_steps,
        "num_input_tokens_seen": 0, "num_train_epochs": epochs, "save_steps": settings.save_steps,
        "stateful_callbacks": {}, "total_flos": 0, "train_batch_size": settings.train_batch_size,
        "trial_name": None, "trial_params": None,
    }
    eval_results = None
    if evals:
        newest = evals[-1]
        eval_results = {"epoch": epoch, **{key: float(newest[key]) for key in EVAL_KEYS if _number(newest.get(key))}}
    return LfOutputs(state, final, eval_results, _trainer_log(history, train, max_steps))


def state_up_to(lines: Iterable[Mapping[str, Any]], step: int, settings: RunSettings) -> dict[str, Any] | None:
    """trainer_state.json as it stood after `step` (for a checkpoint-N folder)."""
    kept = [line for line in lines if isinstance(line.get("step"), int) and line["step"] <= step]
    outputs = build_lf_outputs(kept, settings)
    if outputs is None:
        return None
    state = dict(outputs.trainer_state)
    state["log_history"] = state["log_history"][:-1]   # the final train-metrics entry exists only at the end
    return state


def read_metric_lines(path: Path) -> list[dict[str, Any]]:
    """metrics.jsonl; a line torn by a crash is skipped."""
    if not path.is_file():
        return []
    out = []
    for raw in path.read_text().splitlines():
        try:
            line = json.loads(raw)
        except ValueError:
            continue
        if isinstance(line, dict):
            out.append(line)
    return out


def _write_json(path: Path, value: Any) -> None:
    temp = path.with_name(f".{path.name}.tmp")
    temp.write_text(json.dumps(value, indent=2, sort_keys=True) + "\n")
    os.replace(temp, path)


def write_lf_outputs(output_dir: Path, lines: Iterable[Mapping[str, Any]], spec: Mapping[str, Any],
                     round_starts: Mapping[int, int] | None = None) -> list[Path]:
    """Write the files into output_dir (replacing any from an earlier write); returns the paths written."""
    lines = list(lines)
    settings = RunSettings.from_spec(spec)
    outputs = build_lf_outputs(lines, settings)
    if outputs is None:
        return []
    output_dir.mkdir(parents=True, exist_ok=True)
    written = [output_dir / name for name in (TRAINER_STATE_FILE, TRAIN_RESULTS_FILE, ALL_RESULTS_FILE)]
    _write_json(written[0], outputs.trainer_state)
    _write_json(written[1], outputs.train_results)
    _write_json(written[2], outputs.all_results)
    if outputs.eval_results is not None:
        written.append(output_dir / EVAL_RESULTS_FILE)
        _write_json(written[-1], outputs.eval_results)
    log_path = output_dir / TRAINER_LOG_FILE
    temp = log_path.with_name(f".{log_path.name}.tmp")
    temp.write_text("".join(json.dumps(record) + "\n" for record in outputs.trainer_log))
    os.replace(temp, log_path)
    written.append(log_path)
    if settings.plot_loss:
        written.extend(write_loss_plots(output_dir, lines, round_starts))
    return written


def write_loss_plots(output_dir: Path, lines: list[Mapping[str, Any]],
                     round_starts: Mapping[int, int] | None) -> list[Path]:
    """training_loss.png (train and eval loss, rounds marked) and, when evaluated, training_eval_loss.png."""
    from p2pft.formats.loss_curve import LossSeries, loss_series, write_loss_png

    series = loss_series(lines, dict(round_starts) if round_starts else None)
    paths = [write_loss_png(series, output_dir / LOSS_PNG, "training loss")]
    if series.evals:
        eval_only = LossSeries(train=(), evals=series.evals, rounds=series.rounds)
        paths.append(write_loss_png(eval_only, output_dir / EVAL_LOSS_PNG, "eval loss"))
    return paths
