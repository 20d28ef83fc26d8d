"""LLaMA-Factory keys that p2pft accepts in a job file but knowingly ignores, each with the reason.

A job file written for `llamafactory-cli train` should validate unchanged (apart from the model path and the
`p2pft:` section); these keys then produce one warning line each instead of an "unknown key" error. Keys that
would silently change what gets trained (quantization, other stages, packing...) are deliberately NOT here:
they stay errors so nobody believes they got something p2pft does not do.
"""

from __future__ import annotations

IGNORED_KEYS: dict[str, str] = {
    "do_train": "p2pft jobs always train",
    "do_eval": "evaluation runs when val_size > 0 and eval_steps is set",
    "save_only_model": "p2pft checkpoints always include the optimizer state so any box can resume",
    "ddp_timeout": "use p2pft.process_group_timeout_s; elastic recovery needs short timeouts",
    "overwrite_cache": "p2pft keeps no preprocessing cache",
    "cache_dir": "p2pft keeps no preprocessing cache",
    "tokenized_path": "p2pft keeps no preprocessing cache",
    "eval_strategy": "evaluation runs every eval_steps when val_size > 0",
    "evaluation_strategy": "evaluation runs every eval_steps when val_size > 0",
    "save_strategy": "p2pft saves every save_steps",
    "logging_strategy": "p2pft logs every logging_steps",
    "eval_dataset": "p2pft evaluates on a val_size split of the training datasets",
    "flash_attn": "p2pft uses the attention implementation transformers picks for the box",
    "deepspeed": "p2pft shards with p2pft.sharding (ddp or fsdp), not DeepSpeed",
    "ddp_find_unused_parameters": "p2pft configures DDP itself",
    "ddp_backend": "p2pft picks nccl on GPUs and gloo on CPUs",
    "logging_dir": "TensorBoard events go to output_dir",
    "run_name": "the job id names the run",
    "include_num_input_tokens_seen": "metrics.jsonl always reports tokens per second",
    "dataloader_pin_memory": "p2pft configures its data loader itself",
    "dataloader_persistent_workers": "p2pft configures its data loader itself",
    "enable_liger_kernel": "not supported; training runs with the plain transformers kernels",
    "use_unsloth": "not supported; training runs with the plain transformers kernels",
    "disable_tqdm": "p2pft shows progress through `p2pft submit` and `p2pft top`",
    "push_to_hub": "p2pft never uploads; the adapter is written to output_dir",
    "hub_model_id": "p2pft never uploads; the adapter is written to output_dir",
    "bf16_full_eval": "evaluation runs in the training precision",
    "fp16_full_eval": "evaluation runs in the training precision",
}


def ignored_key_warning(key: str) -> str:
    """The one warning line for an ignored key (without the `warning:` prefix the CLI adds)."""
    return f"{key}: ignored by p2pft ({IGNORED_KEYS[key]})"


# LLaMA-Factory keys that would change what gets trained in ways p2pft does not implement: an error with the reason.
UNSUPPORTED_KEYS: dict[str, str] = {
    "quantization_bit": "QLoRA/quantized training is not implemented; p2pft trains in bf16/fp16/fp32",
    "quantization_method": "QLoRA/quantized training is not implemented",
    "packing": "sequence packing is not implemented; each example is its own sequence",
    "neat_packing": "sequence packing is not implemented; each example is its own sequence",
    "streaming": "datasets are read fully on each box",
    "use_dora": "DoRA is not implemented; plain LoRA only",
    "use_rslora": "rsLoRA is not implemented; plain LoRA only",
    "pissa_init": "PiSSA is not implemented; plain LoRA only",
    "loraplus_lr_ratio": "LoRA+ is not implemented; plain LoRA only",
    "additional_target": "only lora_target modules are trained",
    "freeze_trainable_layers": "finetuning_type freeze is not implemented; use lora or full",
    "freeze_trainable_modules": "finetuning_type freeze is not implemented; use lora or full",
    "adapter_name_or_path": "continuing from an existing adapter is not implemented",
    "mix_strategy": "datasets are concatenated",
    "do_predict": "p2pft only trains; run prediction with LLaMA-Factory or transformers",
    "predict_with_generate": "p2pft only trains; run prediction with LLaMA-Factory or transformers",
}
