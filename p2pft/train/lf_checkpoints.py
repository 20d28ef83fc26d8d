"""LLaMA-Factory's `checkpoint-N/` folders, written by the worker: each is a committed DCP step (or the last
step) as a PEFT adapter or a `from_pretrained` model, with the tokenizer and `trainer_state.json` up to N.

LoRA: right after a step is committed, from the adapter in memory (megabytes; no base-model reload). At the
end, the retained steps this output_dir lacks (a daemon job's earlier rounds ran on other boxes, into other
round dirs) are written from the DCP steps this box holds complete, by laying each over the model in memory.
Full fine-tuning: only at the end, that same way: a full `save_pretrained` at every save would be a
synchronous multi-GB write on the training's critical path. FSDP: none (the weights are sharded; gathering
them per step is a collective over every box); `p2pft export` makes them from the DCP steps.
Whatever goes wrong here is logged, never fatal: the DCP steps stay, and `p2pft export` remains.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch.nn.parallel import DistributedDataParallel

from p2pft.formats.checkpoint_folders import (
    folder_for,
    folder_steps,
    remove_folder,
    rotate,
    steps_to_keep,
    write_state,
    write_states,
)
from p2pft.formats.checkpoint_index import committed_steps, step_dir, verify_committed
from p2pft.formats.lf_outputs import read_metric_lines
from p2pft.train.metrics import METRICS_FILE


class CheckpointFolders:
    def __init__(self, spec: Any, output_dir: Path, checkpoint_dir: Path, tokenizer: Any, *, enabled: bool,
                 log: Callable[[str], None]) -> None:
        from p2pft.config.job import job_to_dict

        self.spec, self.output_dir, self.checkpoint_dir, self.tokenizer = spec, output_dir, checkpoint_dir, tokenizer
        self.spec_dict = job_to_dict(spec)
        self.limit: int | None = spec.save_total_limit
        self.lora = spec.finetuning_type == "lora"
        self.enabled = enabled
        self.log = log

    def after_commit(self, model: torch.nn.Module, step: int) -> None:
        """LoRA: checkpoint-N from the adapter in memory, then HF's rotation."""
        if not (self.enabled and self.lora):
            return
        try:
            self._write(_unwrap(model), step)
            rotate(self.output_dir, self.limit)
        except OSError as exc:
            self.log(f"warning: checkpoint-{step}/ not written ({exc}); `p2pft export` makes it from step-{step}")

    def at_end(self, model: torch.nn.Module, final_step: int) -> None:
        """The last step (transformers' Trainer saves it too) from memory, then the retained steps this
        output_dir lacks from the DCP steps held here, loaded into the model. LoRA: the final adapter is put
        back afterwards (a copy of megabytes); full fine-tuning: the model is left at an older step, so call
        this after the final weights were saved."""
        if not self.enabled:
            return
        model = _unwrap(model)
        final_weights: dict[str, torch.Tensor] | None = None
        try:
            committed = committed_steps(self.checkpoint_dir, verify=False)
            # A folder without a committed step is from a save that a fall-back undid: not this run's history.
            for step in folder_steps(self.output_dir):
                if step not in committed and step != final_step:
                    remove_folder(folder_for(self.output_dir, step))
            have = set(folder_steps(self.output_dir))
            wanted = steps_to_keep([*committed, *have, final_step], self.limit)
            missing = sorted((step for step in wanted if step not in have), key=lambda step: step != final_step)
            if self.lora and any(step != final_step for step in missing):
                final_weights = _trainable_copy(model)
            for step in missing:   # the final step first: the model still holds its weights
                if step != final_step and not self._load_step(model, step):
                    continue
                self._write(model, step)
                if step != final_step:
                    self.log(f"checkpoint-{step}/ written from the committed step-{step} held on this box")
            rotate(self.output_dir, self.limit)
            write_states(self.output_dir, read_metric_lines(self.output_dir / METRICS_FILE), self.spec_dict)
        except OSError as exc:
            self.log(f"warning: checkpoint-N folders incomplete ({exc}); `p2pft export` makes them from the steps")
        finally:
            if final_weights is not None:
                _restore(model, final_weights)

    def _load_step(self, model: torch.nn.Module, step: int) -> bool:
        from p2pft.train.checkpoint import CheckpointError
        from p2pft.train.export import load_trainable_weights

        directory = step_dir(self.checkpoint_dir, step)
        if not verify_committed(directory):   # other boxes' shards not replicated here (yet)
            self.log(f"checkpoint-{step}/ not written: step-{step} is not complete on this box; "
                     f"`p2pft export` makes it where it is")
            return False
        try:
            load_trainable_weights(directory, model)
        except CheckpointError as exc:
            self.log(f"checkpoint-{step}/ not written: {exc}")
            return False
        return True

    def _write(self, model: torch.nn.Module, step: int) -> None:
        """Into a temp folder, renamed at the end: a checkpoint-N that exists is complete."""
        final = folder_for(self.output_dir, step)
        temp = final.with_name(f".{final.name}.tmp-{os.getpid()}")
        shutil.rmtree(temp, ignore_errors=True)
        temp.mkdir(parents=True)
        try:
            model.save_pretrained(str(temp))   # PEFT: the adapter only
            self.tokenizer.save_pretrained(str(temp))
            write_state(temp, step, read_metric_lines(self.output_dir / METRICS_FILE), self.spec_dict)
            remove_folder(final)   # the same step saved again after a fall-back: the newer save wins
            os.replace(temp, final)
        finally:
            shutil.rmtree(temp, ignore_errors=True)


def _trainable_copy(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {name: p.detach().clone() for name, p in model.named_parameters() if p.requires_grad}


def _restore(model: torch.nn.Module, saved: dict[str, torch.Tensor]) -> None:
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name in saved:
                p.copy_(saved[name])


def _unwrap(model: torch.nn.Module) -> torch.nn.Module:
    return model.module if isinstance(model, DistributedDataParallel) else model
