"""`p2pft run` twice into the same output_dir (LLaMA-Factory's overwrite_output_dir), with real torchrun."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.integration.train_harness import read_jsonl, run, write_job

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from p2pft.testing.tiny_model import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("model") / "tiny")


def test_changed_learning_rate_is_refused_and_overwrite_starts_from_step_0(tiny_model: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    code, _ = run(write_job(tmp_path / "a.yaml", tiny_model, out, max_steps=2), nproc=1, log=tmp_path / "a.log")
    assert code == 0
    changed = write_job(tmp_path / "b.yaml", tiny_model, out, max_steps=2, learning_rate=5e-3)
    code, text = run(changed, nproc=1, log=tmp_path / "b.log")
    assert code == 1 and "holds a run with learning_rate=0.01, this job has learning_rate=0.005" in text, text
    fresh = write_job(tmp_path / "c.yaml", tiny_model, out, max_steps=2, learning_rate=5e-3,
                      overwrite_output_dir=True)
    code, text = run(fresh, nproc=1, log=tmp_path / "c.log")
    assert code == 0 and "starting afresh" in text and "resuming" not in text, text
    steps = [m["step"] for m in read_jsonl(out / "metrics.jsonl") if m.get("kind") != "eval"]
    assert steps == [1, 2]
