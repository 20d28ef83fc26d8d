"""The loss curve of a run: train and eval loss against the step, round boundaries marked.

`loss_series` is pure (metric lines in, series out); `write_loss_png` is the one side effect (matplotlib,
headless Agg backend, imported only when a plot is drawn).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class LossSeries:
    train: tuple[tuple[int, float], ...]
    evals: tuple[tuple[int, float], ...]
    rounds: tuple[tuple[int, int], ...]    # (round, its first step) for every round after the first


def loss_series(lines: Iterable[Mapping[str, Any]], round_starts: Mapping[int, int] | None = None) -> LossSeries:
    """Metric lines (merged: one per step; a `round` key when they come from `p2pft logs --json`) -> series.
    `round_starts`: round -> first step, when known (summary.json); else taken from the lines' `round`."""
    train: dict[int, float] = {}
    evals: dict[int, float] = {}
    starts = dict(round_starts or {})
    for line in lines:
        step = line.get("step")
        if not isinstance(step, int):
            continue
        if line.get("kind") == "eval" and _number(line.get("eval_loss")):
            evals[step] = float(line["eval_loss"])
        elif _number(line.get("loss")):
            train[step] = float(line["loss"])
            round_number = line.get("round")
            if round_starts is None and isinstance(round_number, int):
                starts[round_number] = min(step, starts.get(round_number, step))
    rounds = tuple(sorted((r, s) for r, s in starts.items() if r > 0))
    return LossSeries(tuple(sorted(train.items())), tuple(sorted(evals.items())), rounds)


def _number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and value == value


def write_loss_png(series: LossSeries, path: Path, title: str = "") -> Path:
    import matplotlib

    matplotlib.use("Agg")  # no display on a server or in CI
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(8, 4.5), dpi=100)
    try:
        if series.train:
            axes.plot(*zip(*series.train, strict=True), label="train loss", linewidth=1.2)
        if series.evals:
            axes.plot(*zip(*series.evals, strict=True), "o-", label="eval loss", linewidth=1.2)
        for round_number, step in series.rounds:
            axes.axvline(step - 0.5, color="grey", linestyle=":", linewidth=1)
            axes.annotate(f"round {round_number}", (step - 0.5, 1.0), xycoords=("data", "axes fraction"),
                          rotation=90, va="top", ha="right", fontsize=8, color="grey")
        axes.set_xlabel("step")
        axes.set_ylabel("loss")
        axes.set_title(title)
        axes.grid(alpha=0.3)
        axes.legend()
        path.parent.mkdir(parents=True, exist_ok=True)
        figure.savefig(path, bbox_inches="tight")
    finally:
        plt.close(figure)
    return path
