"""Loss, perplexity and next-token accuracy on held-out data: inside training (all ranks share the val split)
and afterwards on a saved adapter or model (`p2pft eval`, `p2pft.evaluate`)."""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from p2pft.train.step import IGNORE_INDEX, Precision

JOB_COPY_FILE = "p2pft_job.json"  # the job spec, saved next to the adapter so evaluation can tokenize alike


class EvaluationError(RuntimeError):
    pass


@torch.no_grad()
def evaluate_examples(model: nn.Module, examples: Sequence[Any], *, batch_size: int, pad_token_id: int,
                      device: torch.device, precision: Precision | None = None) -> dict[str, float]:
    """Every rank takes examples[rank::world]; the sums are all-reduced, so the result is world-independent."""
    from p2pft.train.data import collate

    distributed = dist.is_available() and dist.is_initialized()
    rank, world = (dist.get_rank(), dist.get_world_size()) if distributed else (0, 1)
    mine = list(examples)[rank::world]
    totals = torch.zeros(3, dtype=torch.float64, device=device)  # loss sum, tokens, correct
    was_training = model.training
    model.eval()
    try:
        for start in range(0, len(mine), max(1, batch_size)):
            batch = {k: v.to(device) for k, v in collate(mine[start:start + batch_size], pad_token_id).items()}
            context = precision.autocast() if precision is not None else torch.autocast("cpu", enabled=False)
            with context:
                logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
            logits = logits[:, :-1, :].float()
            labels = batch["labels"][:, 1:]
            mask = labels != IGNORE_INDEX
            totals[0] += F.cross_entropy(logits.reshape(-1, logits.size(-1)), labels.reshape(-1),
                                         ignore_index=IGNORE_INDEX, reduction="sum").double()
            totals[1] += mask.sum()
            totals[2] += ((logits.argmax(-1) == labels) & mask).sum()
    finally:
        model.train(was_training)
    if distributed:
        dist.all_reduce(totals)
    loss_sum, tokens, correct = totals.tolist()
    if tokens == 0:
        raise EvaluationError("the evaluation data has no label tokens (every answer was cut off or empty)")
    loss = loss_sum / tokens
    return {"loss": loss, "perplexity": math.exp(min(loss, 700.0)), "token_accuracy": correct / tokens,
            "tokens": int(tokens), "samples": len(examples)}


def _load_saved_model(model_dir: Path, device: torch.device) -> tuple[nn.Module, Any]:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from p2pft.train.model import check_trust_remote_code

    job = _saved_job(model_dir)
    remote = check_trust_remote_code(bool(job.get("trust_remote_code", False))) if job else False
    kwargs = {"local_files_only": True, "trust_remote_code": remote}
    adapter_config = model_dir / "adapter_config.json"
    if adapter_config.is_file():
        from peft import PeftModel

        base_name = json.loads(adapter_config.read_text()).get("base_model_name_or_path")
        if not base_name:
            raise EvaluationError(f"{adapter_config} names no base_model_name_or_path")
        try:
            base = AutoModelForCausalLM.from_pretrained(base_name, **kwargs)
        except OSError:
            raise EvaluationError(f"the adapter's base model {base_name!r} is not available locally; put it back "
                                  "or download it first") from None
        model = PeftModel.from_pretrained(base, str(model_dir))
    elif (model_dir / "config.json").is_file():
        model = AutoModelForCausalLM.from_pretrained(str(model_dir), **kwargs)
    else:
        raise EvaluationError(f"{model_dir} holds neither an adapter (adapter_config.json) nor a model (config.json)")
    tokenizer = AutoTokenizer.from_pretrained(str(model_dir), **kwargs)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return model.to(device), tokenizer


def _saved_job(model_dir: Path) -> dict[str, Any] | None:
    path = model_dir / JOB_COPY_FILE
    return json.loads(path.read_text()) if path.is_file() else None


def evaluate(model_dir: str | os.PathLike[str], dataset: str | Sequence[str], dataset_dir: str | None = None, *,
             batch_size: int = 8, device: str | None = None) -> dict[str, float]:
    """Evaluate a trained adapter or model directory on every example of `dataset` (names in dataset_info.json).

    Tokenization follows the job that produced the directory (template, cutoff_len) when its copy is there.
    """
    from p2pft.config.job import parse_job
    from p2pft.train.data import prepare_data
    from p2pft.train.model import quiet_transformers

    os.environ["HF_HUB_OFFLINE"] = "1"
    quiet_transformers()
    root = Path(model_dir).resolve()
    if not ((root / "adapter_config.json").is_file() or (root / "config.json").is_file()):
        raise EvaluationError(f"{root} holds neither an adapter (adapter_config.json) nor a model (config.json); "
                              "pass the output_dir of a finished run")
    names = [dataset] if isinstance(dataset, str) else list(dataset)
    job = dict(_saved_job(root) or {})
    job.update({"dataset": names, "val_size": 0.0, "max_samples": None})
    job.setdefault("model_name_or_path", str(root))
    job.setdefault("output_dir", str(root))
    job.setdefault("p2pft", {"global_batch_size": 1})
    if dataset_dir is not None:
        job["dataset_dir"] = str(Path(dataset_dir).resolve())
    elif "dataset_dir" not in job:
        raise EvaluationError("no dataset_dir: pass --dataset-dir (the folder with dataset_info.json)")
    spec = parse_job(job, base_dir=Path.cwd()).spec
    target = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    model, tokenizer = _load_saved_model(root, target)
    data = prepare_data(spec, tokenizer)
    return evaluate_examples(model, data.train, batch_size=batch_size, pad_token_id=tokenizer.pad_token_id,
                             device=target)
