"""resume_from_checkpoint with a Hugging Face / LLaMA-Factory checkpoint-N folder: the adapter or full model
weights are laid over the job's model and the run continues at N; refusals are one line. Real folders written
by PEFT's / transformers' save_pretrained."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from p2pft.config.resources import resume_errors
from p2pft.formats.resume_from import ResumeFromError, is_hf_checkpoint, resume_step_dir
from p2pft.train.checkpoint import CheckpointError
from p2pft.train.hf_resume import load_hf_checkpoint
from p2pft.train.model import build_trainable_model


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from p2pft.testing.tiny_model import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("hf_resume") / "tiny-model")


def _spec(model: Path, **fields: object) -> SimpleNamespace:
    base = {"model_name_or_path": str(model), "trust_remote_code": False, "finetuning_type": "lora", "bf16": False,
            "fp16": False, "lora_target": ["all"], "lora_rank": 4, "lora_alpha": 8, "lora_dropout": 0.0,
            "seed": 0, "gradient_checkpointing": False}
    return SimpleNamespace(**{**base, **fields})


def _trained(model: torch.nn.Module, seed: int) -> dict[str, torch.Tensor]:
    """Give every trainable weight a distinctive value (as training would), and return them."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in model.parameters():
            if parameter.requires_grad:
                parameter.copy_(torch.randn(parameter.shape, generator=generator))
    return {name: p.detach().clone() for name, p in model.named_parameters() if p.requires_grad}


def _checkpoint(model: torch.nn.Module, folder: Path, step: int) -> Path:
    model.save_pretrained(str(folder))   # PEFT: adapter_model.safetensors; full: model.safetensors
    (folder / "trainer_state.json").write_text(json.dumps({"global_step": step, "log_history": []}))
    return folder


@pytest.fixture(scope="module")
def tied_model(tiny_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny model with lm_head tied to the embeddings (as small Qwen and Gemma models are)."""
    import shutil

    tied = tmp_path_factory.mktemp("hf_resume_tied") / "tied-model"
    shutil.copytree(tiny_model, tied)
    config = json.loads((tied / "config.json").read_text())
    (tied / "config.json").write_text(json.dumps({**config, "tie_word_embeddings": True}))
    from safetensors.torch import load_file, save_file

    weights = load_file(str(tied / "model.safetensors"))
    del weights["lm_head.weight"]  # tied: the head is the embedding
    save_file(weights, str(tied / "model.safetensors"), metadata={"format": "pt"})
    return tied


@pytest.mark.parametrize("finetuning_type", ["lora", "full", "full-tied"])
def test_weights_are_restored_and_the_run_continues_at_n(tmp_path: Path, tiny_model: Path, tied_model: Path,
                                                         finetuning_type: str) -> None:
    model_dir = tied_model if finetuning_type == "full-tied" else tiny_model
    finetuning_type = finetuning_type.removesuffix("-tied")
    spec = _spec(model_dir, finetuning_type=finetuning_type)
    source = build_trainable_model(spec, torch.device("cpu"))
    expected = _trained(source, seed=7)
    folder = _checkpoint(source, tmp_path / "checkpoint-30", 30)
    if model_dir == tied_model:  # save_pretrained leaves the tied head out; the loader must still fill it
        from safetensors.torch import load_file

        assert "lm_head.weight" not in load_file(str(folder / "model.safetensors"))
    assert resume_step_dir(folder) == folder and is_hf_checkpoint(folder) and resume_errors(str(folder)) == []

    fresh = build_trainable_model(spec, torch.device("cpu"))
    before = {name: p.detach().clone() for name, p in fresh.named_parameters() if p.requires_grad}
    assert any(not torch.equal(before[name], expected[name]) for name in expected)
    assert load_hf_checkpoint(folder, fresh, lora=finetuning_type == "lora") == 30
    after = {name: p.detach() for name, p in fresh.named_parameters() if p.requires_grad}
    assert after.keys() == expected.keys()
    assert all(torch.equal(after[name], expected[name]) for name in expected)


def test_an_adapter_of_another_rank_is_refused_naming_the_setting(tmp_path: Path, tiny_model: Path) -> None:
    folder = _checkpoint(build_trainable_model(_spec(tiny_model, lora_rank=2), torch.device("cpu")),
                         tmp_path / "checkpoint-5", 5)
    fresh = build_trainable_model(_spec(tiny_model), torch.device("cpu"))
    with pytest.raises(CheckpointError, match=r"has shape \(2, .*use the lora_rank it was trained with") as error:
        load_hf_checkpoint(folder, fresh, lora=True)
    assert "\n" not in str(error.value)


@pytest.mark.parametrize(("files", "message"), [
    ({"adapter_model.bin": b"pickle", "trainer_state.json": b'{"global_step": 3}'},
     r"holds adapter_model\.bin, a pickle p2pft does not load"),
    ({"adapter_model.safetensors": b"x", "adapter_config.json": b"{}"}, r"has no trainer_state\.json"),
    ({"model.safetensors": b"x", "trainer_state.json": b'{"global_step": "3"}'}, r"has no whole global_step"),
])
def test_unusable_hf_folders_are_refused_at_validation(tmp_path: Path, files: dict[str, bytes],
                                                       message: str) -> None:
    folder = tmp_path / "checkpoint-3"
    folder.mkdir()
    for name, content in files.items():
        (folder / name).write_bytes(content)
    with pytest.raises(ResumeFromError, match=message):
        resume_step_dir(folder)
    assert len(resume_errors(str(folder))) == 1


def _trainer_optimizer(model: torch.nn.Module, folder: Path) -> dict[str, torch.Tensor]:
    """What transformers' Trainer leaves in optimizer.pt: AdamW over its decay / no-decay groups, after two steps.
    Returns each parameter's exp_avg by name."""
    from transformers.trainer_pt_utils import get_parameter_names

    from p2pft.train.hf_optimizer import NO_DECAY_PATTERNS

    decay = set(get_parameter_names(model, [torch.nn.LayerNorm], NO_DECAY_PATTERNS))
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW([{"params": [p for n, p in named if n in decay], "weight_decay": 0.01},
                                   {"params": [p for n, p in named if n not in decay], "weight_decay": 0.0}], lr=1e-3)
    for _ in range(2):
        optimizer.zero_grad()
        sum((p * p).sum() * (i + 1) for i, (_, p) in enumerate(named)).backward()
        optimizer.step()
    torch.save(optimizer.state_dict(), folder / "optimizer.pt")
    return {n: optimizer.state[p]["exp_avg"].clone() for n, p in named}


@pytest.mark.parametrize("finetuning_type", ["lora", "full"])
def test_the_trainers_adamw_state_is_mapped_by_name(tmp_path: Path, tiny_model: Path, finetuning_type: str) -> None:
    from p2pft.train.hf_resume import start_from_hf_checkpoint
    from p2pft.train.optim import build_optimizer

    spec = _spec(tiny_model, finetuning_type=finetuning_type, weight_decay=0.01, learning_rate=1e-3,
                 adam_beta1=0.9, adam_beta2=0.999, adam_epsilon=1e-8, optim="adamw_torch")
    source = build_trainable_model(spec, torch.device("cpu"))
    folder = _checkpoint(source, tmp_path / "checkpoint-2", 2)
    expected = _trainer_optimizer(source, folder)
    model = build_trainable_model(spec, torch.device("cpu"))
    optimizer = build_optimizer(model, spec)
    start = start_from_hf_checkpoint(folder, model, optimizer, lora=finetuning_type == "lora")
    assert start.step == 2 and start.optimizer_note.startswith("AdamW state from optimizer.pt")
    restored = {n: optimizer.state[p]["exp_avg"] for n, p in model.named_parameters() if p.requires_grad}
    assert restored.keys() == expected.keys()
    assert all(torch.equal(restored[n], expected[n]) for n in expected)
    assert all(float(optimizer.state[p]["step"]) == 2.0 for p in model.parameters() if p.requires_grad)


def test_an_optimizer_file_that_does_not_map_leaves_adam_fresh(tmp_path: Path, tiny_model: Path) -> None:
    from p2pft.train.hf_resume import start_from_hf_checkpoint
    from p2pft.train.optim import build_optimizer

    spec = _spec(tiny_model, weight_decay=0.0, learning_rate=1e-3, adam_beta1=0.9, adam_beta2=0.999,
                 adam_epsilon=1e-8, optim="adamw_torch")
    other = build_trainable_model(_spec(tiny_model, lora_rank=2), torch.device("cpu"))
    folder = _checkpoint(build_trainable_model(spec, torch.device("cpu")), tmp_path / "checkpoint-4", 4)
    _trainer_optimizer(other, folder)   # another LoRA rank: same positions, other shapes
    model = build_trainable_model(spec, torch.device("cpu"))
    optimizer = build_optimizer(model, spec)
    start = start_from_hf_checkpoint(folder, model, optimizer, lora=True)
    assert start.step == 4
    assert start.optimizer_note.startswith("a fresh optimizer (optimizer.pt does not map onto this job: its state for")
    assert not optimizer.state
    (folder / "optimizer.pt").write_bytes(b"not a pickle")
    assert "unreadable" in start_from_hf_checkpoint(folder, model, optimizer, lora=True).optimizer_note
