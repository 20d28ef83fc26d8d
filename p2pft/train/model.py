"""Load the base model and tokenizer from local files only, and make its trainable part (LoRA or full).

Nothing is downloaded at training time: `model_name_or_path` is a local directory or a model already in the
local Hugging Face cache. Remote code runs only when both the job asks for it and the box allows it.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

ALLOW_REMOTE_CODE_ENV = "P2PFT_ALLOW_TRUST_REMOTE_CODE"


def quiet_transformers() -> None:
    """Per-process load chatter (progress bars, deprecations from peft) would drown the step lines."""
    import warnings

    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)


class ModelLoadError(RuntimeError):
    """One line that names the model and what to do."""


def check_trust_remote_code(requested: bool) -> bool:
    if not requested:
        return False
    if os.environ.get(ALLOW_REMOTE_CODE_ENV) != "1":
        raise ModelLoadError(f"the job sets trust_remote_code: true, but this box does not allow running a model's "
                             f"own code; set {ALLOW_REMOTE_CODE_ENV}=1 in the box's environment to allow it")
    return True


def _load_kwargs(spec: Any) -> dict[str, Any]:
    return {"trust_remote_code": check_trust_remote_code(spec.trust_remote_code), "local_files_only": True}


def load_tokenizer(spec: Any) -> Any:
    from transformers import AutoTokenizer

    name = spec.model_name_or_path
    try:
        tokenizer = AutoTokenizer.from_pretrained(name, **_load_kwargs(spec))
    except (OSError, ValueError) as exc:
        raise ModelLoadError(_not_found_message(name, exc)) from None
    # No pad token is filled in later, after the template may have replaced EOS (prepare_data, as LLaMA-Factory).
    return tokenizer


def check_vocabulary(model: nn.Module, tokenizer: Any, template: str | None) -> None:
    """The template's stop words may have been added to the tokenizer (LLaMA-Factory's fix_special_tokens); a
    model without embeddings for them would fail mid-step with an index error, so refuse up front."""
    rows = model.get_input_embeddings().weight.shape[0]
    if len(tokenizer) <= rows:
        return
    added = [token for token, token_id in tokenizer.get_added_vocab().items() if token_id >= rows]
    raise ModelLoadError(
        f"template: {template!r} uses token(s) {', '.join(sorted(added))} that model {tokenizer.name_or_path} has no "
        f"embedding for ({rows} rows); use the template made for this model (LLaMA-Factory would need resize_vocab)")


def _not_found_message(name: str, exc: BaseException) -> str:
    if Path(name).is_dir():
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return f"model_name_or_path {name!r} is a directory but could not be loaded: {first}"
    return (f"model_name_or_path {name!r} is neither a local directory nor in the local Hugging Face cache "
            f"(downloads are off during training); download it first, e.g. `huggingface-cli download {name}`, "
            "or point model_name_or_path at a directory")


def base_dtype(spec: Any, device: torch.device) -> torch.dtype:
    """Frozen LoRA base weights may live in half precision; trainable weights always stay fp32."""
    if spec.finetuning_type != "lora" or device.type != "cuda":
        return torch.float32
    if spec.bf16 and torch.cuda.is_bf16_supported():
        return torch.bfloat16
    if spec.fp16:
        return torch.float16
    return torch.float32


def load_base_model(spec: Any, device: torch.device) -> nn.Module:
    from transformers import AutoModelForCausalLM

    name = spec.model_name_or_path
    try:
        model = AutoModelForCausalLM.from_pretrained(name, dtype=base_dtype(spec, device), **_load_kwargs(spec))
    except (OSError, ValueError) as exc:
        raise ModelLoadError(_not_found_message(name, exc)) from None
    model.config.use_cache = False  # the KV cache is useless in training and breaks gradient checkpointing
    return model


def lora_target_modules(model: nn.Module, lora_target: list[str]) -> list[str]:
    """"all" = the leaf name of every nn.Linear except the output head; otherwise the given names."""
    if [t.strip() for t in lora_target] != ["all"]:
        return [t.strip() for t in lora_target if t.strip()]
    output = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    names = {
        name.rsplit(".", 1)[-1]
        for name, module in model.named_modules()
        if isinstance(module, nn.Linear) and module is not output and name.rsplit(".", 1)[-1] != "lm_head"
    }
    if not names:
        raise ModelLoadError("lora_target: all found no nn.Linear layers in the model; list the module names")
    return sorted(names)


def apply_lora(model: nn.Module, spec: Any) -> nn.Module:
    from peft import LoraConfig, get_peft_model

    targets = lora_target_modules(model, list(spec.lora_target))
    config = LoraConfig(r=spec.lora_rank, lora_alpha=spec.lora_alpha, lora_dropout=spec.lora_dropout,
                        target_modules=targets, bias="none", task_type="CAUSAL_LM")
    try:
        return get_peft_model(model, config)
    except ValueError as exc:
        raise ModelLoadError(f"lora_target {list(spec.lora_target)}: {str(exc).splitlines()[0]}") from None


def uses_gradient_checkpointing(spec: Any) -> bool:
    """On by default as in LLaMA-Factory; `disable_gradient_checkpointing: true` (LLaMA-Factory's switch) or an
    explicit `gradient_checkpointing: false` turns it off."""
    return bool(spec.gradient_checkpointing) and not getattr(spec, "disable_gradient_checkpointing", False)


def build_trainable_model(spec: Any, device: torch.device) -> nn.Module:
    """Base model + LoRA (or all weights trainable), seeded so every rank starts from the same weights."""
    torch.manual_seed(spec.seed)
    model = load_base_model(spec, device)
    if uses_gradient_checkpointing(spec):
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    if spec.finetuning_type == "lora":
        model = apply_lora(model, spec)
    else:
        for param in model.parameters():
            param.requires_grad_(True)
    model.to(device)
    model.train()
    return model


def trainable_parameter_count(model: nn.Module) -> tuple[int, int]:
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    return trainable, total
