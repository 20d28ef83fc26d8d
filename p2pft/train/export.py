"""A committed DCP step -> a `checkpoint-N/` folder as LLaMA-Factory leaves one: the LoRA adapter
(`PeftModel.from_pretrained`) or the full model (`from_pretrained`), the tokenizer as the template fixed it,
and `trainer_state.json` up to that step. One process, no process group, CPU.

The step holds only the trainable weights (checkpoint.py), so the job's base model is loaded and the stored
weights are laid over it, exactly as a resuming worker does.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.distributed.checkpoint as dcp
from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict, set_model_state_dict

from p2pft.formats.checkpoint_index import step_dir, verify_committed
from p2pft.formats.lf_outputs import TRAINER_STATE_FILE, RunSettings, state_up_to
from p2pft.train.checkpoint import CheckpointError, checkpoint_keys
from p2pft.train.safe_load import SafeLoadPlanner


def export_step(checkpoint_dir: Path, step: int, spec: Any, dest: Path,
                metric_lines: Sequence[Mapping[str, Any]] = ()) -> Path:
    """Write step `step` of `checkpoint_dir` as a loadable folder at `dest`; returns dest."""
    from p2pft.train.data.encoder import RowEncoder
    from p2pft.train.model import build_trainable_model, load_tokenizer, quiet_transformers

    directory = step_dir(checkpoint_dir, step)
    if not verify_committed(directory):
        raise CheckpointError(f"{directory} is not a committed, intact checkpoint (torn or damaged); pick another step")
    quiet_transformers()
    tokenizer = load_tokenizer(spec)
    RowEncoder.for_spec(spec, tokenizer)   # the template's tokenizer fixes, as the worker saved them
    model = build_trainable_model(spec, torch.device("cpu"))
    load_trainable_weights(directory, model)
    dest.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(dest))
    tokenizer.save_pretrained(str(dest))
    state = state_up_to(metric_lines, step, RunSettings.from_spec(_spec_dict(spec)))
    if state is not None:
        (dest / TRAINER_STATE_FILE).write_text(json.dumps(state, indent=2, sort_keys=True) + "\n")
    return dest


def load_trainable_weights(directory: Path, model: torch.nn.Module) -> None:
    """The step's `model.*` entries into `model` (frozen base weights stay as loaded)."""
    options = StateDictOptions(ignore_frozen_params=True)
    state = {"model": get_model_state_dict(model, options=options)}
    wanted = {f"model.{key}" for key in state["model"]}
    stored = {key for key in checkpoint_keys(directory) if key.startswith("model.")}
    if wanted != stored:
        missing, extra = sorted(wanted - stored)[:3], sorted(stored - wanted)[:3]
        raise CheckpointError(f"checkpoint {directory} does not match the job's trainable weights (missing {missing}, "
                              f"unexpected {extra}); export with the job file the run was trained with")
    # Only the model entries are read (optimizer and RNG stay on disk); no process group: DCP reads it all here.
    dcp.load(state, checkpoint_id=str(directory), planner=SafeLoadPlanner(), no_dist=True)
    set_model_state_dict(model, state["model"], options=StateDictOptions(strict=False))


def _spec_dict(spec: Any) -> dict[str, Any]:
    from p2pft.config.job import job_to_dict

    return job_to_dict(spec)
