"""LLaMA-Factory's own demo datasets (used in place, through their dataset_info.json) and a sharegpt file with
custom tags train end to end with `p2pft run`: real torchrun, real tokenisation, an adapter at the end."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from tests.compat import COMPAT_DIR, needs_compat
from tests.integration.train_harness import REPO_ROOT, adapter_weights, read_jsonl, run, write_job

pytestmark = pytest.mark.slow

FIXTURE_DATASETS = REPO_ROOT / "tests" / "data" / "datasets"


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from p2pft.testing.tiny_model import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("model") / "tiny")


def assert_trained(output_dir: Path, steps: int) -> None:
    lines = [row for row in read_jsonl(output_dir / "metrics.jsonl") if "loss" in row]
    assert [row["step"] for row in lines] == list(range(1, steps + 1))
    assert all(math.isfinite(row["loss"]) and row["loss"] > 0 for row in lines)
    lora_b = [tensor for name, tensor in adapter_weights(output_dir).items() if "lora_B" in name]
    assert lora_b and any(float(t.abs().max()) > 0 for t in lora_b), "LoRA B stayed at its zero init"


@needs_compat
def test_identity_and_alpaca_en_demo_train_through_dataset_info(tiny_model: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    job = write_job(tmp_path / "job.yaml", tiny_model, out, dataset="identity,alpaca_en_demo",
                    dataset_dir=str(COMPAT_DIR), max_samples=12, cutoff_len=256, max_steps=3, save_steps=3,
                    p2pft={"global_batch_size": 8})
    code, log = run(job, nproc=1, log=tmp_path / "run.log")
    assert code == 0, log[-3000:]
    assert_trained(out, 3)


def test_sharegpt_with_custom_tags_trains(tiny_model: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    job = write_job(tmp_path / "job.yaml", tiny_model, out, dataset="chat_custom_tags",
                    dataset_dir=str(FIXTURE_DATASETS), cutoff_len=256, max_steps=2, save_steps=2,
                    p2pft={"global_batch_size": 2})
    code, log = run(job, nproc=1, log=tmp_path / "run.log")
    assert code == 0, log[-3000:]
    assert_trained(out, 2)
