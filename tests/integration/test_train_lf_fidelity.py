"""Through a real `p2pft run` (one process): stage pt on a txt file, and resume_from_checkpoint with a Hugging
Face checkpoint-N folder (its weights loaded: the first step's loss equals a full p2pft resume's, which has the
same weights and the same batch; only the optimizer differs afterwards)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from p2pft.train.schedule import learning_rate
from tests.integration.train_harness import read_jsonl, run, write_job

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from p2pft.testing.tiny_model import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("lf_fidelity") / "tiny-model")


def _steps(output_dir: Path) -> list[dict]:
    return [line for line in read_jsonl(output_dir / "metrics.jsonl") if "loss" in line and "kind" not in line]


def test_stage_pt_trains_on_blocks_of_a_txt_file(tmp_path: Path, tiny_model: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / "corpus.txt").write_text("".join(f"line {i} of plain text to pretrain on\n" for i in range(40)))
    (data / "dataset_info.json").write_text(json.dumps({"corpus": {"file_name": "corpus.txt",
                                                                   "columns": {"prompt": "text"}}}))
    job = write_job(tmp_path / "job.yaml", tiny_model, tmp_path / "out", stage="pt", dataset="corpus",
                    dataset_dir=str(data), cutoff_len=32, max_steps=3, lr_scheduler_type="cosine_with_min_lr",
                    lr_scheduler_kwargs={"min_lr_rate": 0.1}, p2pft={"global_batch_size": 4})
    code, output = run(job, nproc=1, log=tmp_path / "run.log", timeout=300)
    assert code == 0, output
    steps = _steps(tmp_path / "out")
    assert len(steps) == 3
    assert [line["lr"] for line in steps] == pytest.approx(
        [learning_rate(1e-2, "cosine_with_min_lr", s, 3, 2, {"min_lr_rate": 0.1}) for s in range(3)])
    assert (tmp_path / "out" / "adapter_model.safetensors").is_file()


# ~52 s: behind `make chaos`; make test keeps the name mapping and step reading (tests/unit/test_hf_resume.py).
@pytest.mark.chaos
def test_a_hf_checkpoint_folder_gives_its_weights_and_its_step(tmp_path: Path, tiny_model: Path) -> None:
    first = tmp_path / "first"
    code, output = run(write_job(tmp_path / "a.yaml", tiny_model, first, max_steps=2, p2pft={"sample_ledger": False}),
                       nproc=1, log=tmp_path / "a.log", timeout=300)
    assert code == 0, output
    folder = tmp_path / "checkpoint-2"   # what the Trainer leaves: adapter, its config, trainer_state.json
    folder.mkdir()
    for name in ("adapter_model.safetensors", "adapter_config.json", "trainer_state.json"):
        shutil.copy(first / name, folder / name)
    assert json.loads((folder / "trainer_state.json").read_text())["global_step"] == 2

    runs = {}
    for name, source in (("hf", folder), ("p2pft", first)):
        job = write_job(tmp_path / f"{name}.yaml", tiny_model, tmp_path / name, max_steps=4,
                        resume_from_checkpoint=str(source), p2pft={"sample_ledger": False})
        code, output = run(job, nproc=1, log=tmp_path / f"{name}.log", timeout=300)
        assert code == 0, output
        runs[name] = (_steps(tmp_path / name), output)
    hf_steps, hf_log = runs["hf"]
    p2pft_steps, _ = runs["p2pft"]
    assert "continuing at step 2 with a fresh optimizer" in hf_log
    assert [line["step"] for line in hf_steps] == [line["step"] for line in p2pft_steps] and len(hf_steps) == 2
    assert hf_steps[0]["lr"] == p2pft_steps[0]["lr"]                        # the schedule is at step 2 in both
    assert hf_steps[0]["loss"] == pytest.approx(p2pft_steps[0]["loss"], rel=1e-6)  # same weights, same batch
    assert hf_steps[1]["loss"] != pytest.approx(p2pft_steps[1]["loss"], rel=1e-9)  # Adam moments differ
