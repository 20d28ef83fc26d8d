"""Model loading rules (local only, remote code opt-in per box, LoRA targets) and a full fine-tune end to end."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest

from tests.integration.train_harness import read_jsonl, run, write_job


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from p2pft.testing.tiny_model import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("train_model") / "tiny-model")


def spec(**fields: object) -> SimpleNamespace:
    base = {"model_name_or_path": "", "trust_remote_code": False, "finetuning_type": "lora", "bf16": False,
            "fp16": False, "lora_target": ["all"], "lora_rank": 4, "lora_alpha": 8, "lora_dropout": 0.0,
            "seed": 0, "gradient_checkpointing": False}
    return SimpleNamespace(**{**base, **fields})


def test_missing_model_is_one_clear_line(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from p2pft.train.model import ModelLoadError, load_tokenizer

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    with pytest.raises(ModelLoadError) as err:
        load_tokenizer(spec(model_name_or_path="no-such-org/no-such-model"))
    message = str(err.value)
    assert "\n" not in message and "no-such-org/no-such-model" in message and "download" in message


def test_trust_remote_code_needs_the_box_to_allow_it(monkeypatch: pytest.MonkeyPatch, tiny_model: Path) -> None:
    from p2pft.train.model import ALLOW_REMOTE_CODE_ENV, ModelLoadError, load_tokenizer

    monkeypatch.delenv(ALLOW_REMOTE_CODE_ENV, raising=False)
    with pytest.raises(ModelLoadError, match=ALLOW_REMOTE_CODE_ENV):
        load_tokenizer(spec(model_name_or_path=str(tiny_model), trust_remote_code=True))
    monkeypatch.setenv(ALLOW_REMOTE_CODE_ENV, "1")
    assert load_tokenizer(spec(model_name_or_path=str(tiny_model), trust_remote_code=True)) is not None


def test_lora_all_targets_every_linear_but_the_head(tiny_model: Path) -> None:
    import torch

    from p2pft.train.model import build_trainable_model, lora_target_modules

    model = build_trainable_model(spec(model_name_or_path=str(tiny_model)), torch.device("cpu"))
    trainable = [name for name, p in model.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in name for name in trainable)
    assert not any("lm_head" in name for name in trainable)
    wrapped = {name.split(".lora_")[0].rsplit(".", 1)[-1] for name in trainable}
    assert wrapped == {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"}
    assert lora_target_modules(model, ["q_proj", " v_proj"]) == ["q_proj", "v_proj"]


@pytest.mark.slow
def test_full_fine_tune_saves_a_loadable_model(tmp_path: Path, tiny_model: Path) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out = tmp_path / "full"
    job = write_job(tmp_path / "full.yaml", tiny_model, out, finetuning_type="full", max_steps=3, save_steps=100,
                    learning_rate=1.0e-3, bf16=True, gradient_checkpointing=True)
    code, log = run(job, nproc=1, max_micro_batch=8, log=tmp_path / "full.log")
    assert code == 0, log[-3000:]
    assert "bf16 requested but training runs on CPU" in log
    assert [r["step"] for r in read_jsonl(out / "metrics.jsonl")] == [1, 2, 3]
    trained = AutoModelForCausalLM.from_pretrained(str(out))
    original = AutoModelForCausalLM.from_pretrained(str(tiny_model))
    assert AutoTokenizer.from_pretrained(str(out)) is not None
    assert (trained.lm_head.weight - original.lm_head.weight).abs().max() > 0  # every weight trained


def test_8bit_adamw_without_bitsandbytes_is_a_clear_error(tiny_model: Path) -> None:
    import importlib.util

    import torch

    from p2pft.train.optim import OptimizerError, build_optimizer

    if importlib.util.find_spec("bitsandbytes") is not None:
        pytest.skip("bitsandbytes is installed here")
    model = torch.nn.Linear(4, 4)
    settings = SimpleNamespace(weight_decay=0.0, learning_rate=1e-3, adam_beta1=0.9, adam_beta2=0.999,
                               adam_epsilon=1e-8, optim="adamw_bnb_8bit")
    with pytest.raises(OptimizerError, match="bitsandbytes"):
        build_optimizer(model, settings)
    assert isinstance(build_optimizer(model, SimpleNamespace(**{**vars(settings), "optim": "adamw_torch"})),
                      torch.optim.AdamW)
