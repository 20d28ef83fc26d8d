"""A real LoRA run leaves LLaMA-Factory's checkpoint-N/ folders: one per committed save, the newest
save_total_limit kept (as transformers' Trainer rotates them), each a PEFT adapter with the weights of its DCP
step and a trainer_state.json up to N; a folder the output_dir lacks is written at the end from its DCP step."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest

from p2pft.formats.checkpoint_index import committed_steps
from tests.integration.train_harness import adapter_weights, run, write_job

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def lora_run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """6 steps, saves at 2, 4 and 6, save_total_limit 2."""
    from p2pft.testing.tiny_model import build_tiny_model

    work = tmp_path_factory.mktemp("lf_folders")
    model = build_tiny_model(work / "tiny-model")
    out = work / "out"
    job = write_job(work / "job.yaml", model, out, max_steps=6, save_steps=2, save_total_limit=2, logging_steps=1)
    code, log = run(job, nproc=1, log=work / "run.log")
    assert code == 0, log[-3000:]
    assert "checkpoint-" not in log.replace("checkpoint step-", "")   # written at each save, none left for the end
    return {"out": out, "model": model, "job": job}


def exported(run_info: dict[str, Any], step: int, dest: Path) -> dict[str, Any]:
    """The DCP step through `p2pft export`'s code: the reference every folder must equal."""
    from p2pft.config.job import load_job
    from p2pft.train.export import export_step

    export_step(run_info["out"] / "checkpoints", step, load_job(run_info["job"]).spec, dest)
    return adapter_weights(dest)


def max_diff(a: dict[str, Any], b: dict[str, Any]) -> float:
    assert set(a) == set(b) and a
    return max(float((a[k] - b[k]).abs().max()) for k in a)


def test_the_newest_saves_are_peft_folders_equal_to_their_dcp_steps(lora_run: dict[str, Any], tmp_path: Path) -> None:
    from peft import PeftModel, get_peft_model_state_dict
    from transformers import AutoModelForCausalLM, TrainerState

    out = lora_run["out"]
    assert committed_steps(out / "checkpoints") == [4, 6]
    assert sorted(p.name for p in out.iterdir() if p.name.startswith("checkpoint-")) == ["checkpoint-4",
                                                                                         "checkpoint-6"]
    for step in (4, 6):
        folder = out / f"checkpoint-{step}"
        assert {"adapter_model.safetensors", "adapter_config.json", "tokenizer_config.json",
                "trainer_state.json"} <= {p.name for p in folder.iterdir()}
        reference = exported(lora_run, step, tmp_path / f"export-{step}")
        assert max_diff(adapter_weights(folder), reference) <= 1e-6
        base = AutoModelForCausalLM.from_pretrained(str(lora_run["model"]))
        loaded = get_peft_model_state_dict(PeftModel.from_pretrained(base, str(folder)))
        assert max_diff({k: v.detach() for k, v in loaded.items()}, reference) <= 1e-6
        state = TrainerState.load_from_json(str(folder / "trainer_state.json"))
        assert state.global_step == step and [e["step"] for e in state.log_history] == list(range(1, step + 1))
    assert max_diff(adapter_weights(out / "checkpoint-6"), adapter_weights(out)) == 0.0   # the last step: the run's
    assert max_diff(adapter_weights(out / "checkpoint-4"), adapter_weights(out)) > 0


def test_a_missing_retained_folder_is_written_at_the_end_from_its_dcp_step(lora_run: dict[str, Any],
                                                                           tmp_path: Path) -> None:
    """What the last round of a daemon job does for the steps earlier rounds saved on other boxes."""
    import torch

    from p2pft.config.job import load_job
    from p2pft.train.export import load_trainable_weights
    from p2pft.train.lf_checkpoints import CheckpointFolders
    from p2pft.train.model import build_trainable_model, load_tokenizer

    out = tmp_path / "out"
    shutil.copytree(lora_run["out"], out)
    shutil.rmtree(out / "checkpoint-4")
    (out / "checkpoint-2").mkdir()   # a folder whose step is no longer committed: not this run's history
    spec = load_job(lora_run["job"]).spec
    model = build_trainable_model(spec, torch.device("cpu"))
    load_trainable_weights(out / "checkpoints" / "step-6", model)   # the worker's model at its last step
    final = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
    messages: list[str] = []
    folders = CheckpointFolders(spec, out, out / "checkpoints", load_tokenizer(spec), enabled=True,
                                log=messages.append)
    folders.at_end(model, 6)
    assert sorted(p.name for p in out.iterdir() if p.name.startswith("checkpoint-")) == ["checkpoint-4",
                                                                                         "checkpoint-6"]
    assert max_diff(adapter_weights(out / "checkpoint-4"), exported(lora_run, 4, tmp_path / "export-4")) <= 1e-6
    assert (out / "checkpoint-4" / "trainer_state.json").is_file()
    assert messages == ["checkpoint-4/ written from the committed step-4 held on this box"]
    assert all(torch.equal(p, final[n]) for n, p in model.named_parameters() if p.requires_grad)   # put back


def test_full_finetuning_writes_its_folders_at_the_end(tmp_path: Path) -> None:
    """Full fine-tuning: no model write at each save; at the end the last step (not a save step here) from
    memory and the committed step 2 from its DCP files, both `from_pretrained`-loadable."""
    import torch
    from transformers import AutoModelForCausalLM, TrainerState

    from p2pft.config.job import load_job
    from p2pft.testing.tiny_model import build_tiny_model
    from p2pft.train.export import export_step

    model = build_tiny_model(tmp_path / "tiny-model")
    out = tmp_path / "out"
    job = write_job(tmp_path / "job.yaml", model, out, finetuning_type="full", max_steps=3, save_steps=2,
                    save_total_limit=2, learning_rate=1e-3, logging_steps=1)
    code, log = run(job, nproc=1, log=tmp_path / "run.log")
    assert code == 0, log[-3000:]
    assert "checkpoint-2/ written from the committed step-2" in log
    assert sorted(p.name for p in out.iterdir() if p.name.startswith("checkpoint-")) == ["checkpoint-2",
                                                                                         "checkpoint-3"]
    export_step(out / "checkpoints", 2, load_job(job).spec, tmp_path / "export-2")
    for folder, reference in ((out / "checkpoint-2", tmp_path / "export-2"), (out / "checkpoint-3", out)):
        mine = dict(AutoModelForCausalLM.from_pretrained(str(folder)).named_parameters())
        theirs = dict(AutoModelForCausalLM.from_pretrained(str(reference)).named_parameters())
        assert set(mine) == set(theirs) and all(torch.equal(p, theirs[n]) for n, p in mine.items())
    assert TrainerState.load_from_json(str(out / "checkpoint-3" / "trainer_state.json")).global_step == 3
    two = dict(AutoModelForCausalLM.from_pretrained(str(out / "checkpoint-2")).named_parameters())
    three = dict(AutoModelForCausalLM.from_pretrained(str(out / "checkpoint-3")).named_parameters())
    assert any(not torch.equal(p, three[n]) for n, p in two.items())   # two different steps


# Every box that writes the outputs has the folders: tests/integration/test_outputs_every_node.py (one two-node run
# checks both the final adapter and the folders on each box).
