"""`p2pft plot DIR`: the loss curve as a PNG that reads back, with round boundaries from summary.json."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from p2pft.formats.loss_curve import loss_series


def test_series_keep_the_newest_line_per_step_and_mark_rounds() -> None:
    lines = [{"step": 1, "loss": 3.0, "round": 0}, {"step": 2, "loss": 2.5, "round": 0},
             {"step": 2, "loss": 2.4, "round": 1}, {"step": 3, "loss": 2.0, "round": 1},
             {"step": 3, "kind": "eval", "eval_loss": 2.2}, {"note": "no step"}]
    series = loss_series(lines)
    assert series.train == ((1, 3.0), (2, 2.4), (3, 2.0)) and series.evals == ((3, 2.2),)
    assert series.rounds == ((1, 2),)
    assert loss_series(lines, {0: 1, 1: 3, 2: 5}).rounds == ((1, 3), (2, 5))


def test_plot_of_an_output_dir_writes_a_png_that_reads_back(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "metrics.jsonl").write_text("".join(json.dumps({"step": s, "loss": 3.0 / s}) + "\n" for s in range(1, 21)))
    (out / "summary.json").write_text(json.dumps({"rounds": [{"round": 0, "first_step": 1},
                                                             {"round": 1, "first_step": 11}]}))
    png = tmp_path / "loss.png"
    done = subprocess.run([sys.executable, "-m", "p2pft.cli.main", "plot", str(out), "-o", str(png)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "20 steps, 0 evaluations, 2 round(s) that trained" in done.stdout
    import matplotlib.image

    image = matplotlib.image.imread(png)
    assert image.shape[0] > 200 and image.shape[1] > 300
    missing = subprocess.run([sys.executable, "-m", "p2pft.cli.main", "plot", str(tmp_path), "-o", str(png)],
                             capture_output=True, text=True, timeout=60)
    assert missing.returncode == 1 and "has no metrics.jsonl" in missing.stderr
