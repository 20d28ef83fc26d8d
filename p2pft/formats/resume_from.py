"""`resume_from_checkpoint: PATH`: which checkpoint a fresh run starts from. Torch-free.

PATH may be a p2pft step dir (`.../checkpoints/step-N`), a checkpoint dir (its newest intact step) or a
`p2pft run` output_dir (its `checkpoints/`): everything is restored (weights, optimizer, data cursor, RNG). It
may also be a Hugging Face / LLaMA-Factory `checkpoint-N` folder (`trainer_state.json` plus the adapter or the
model in safetensors): its weights are loaded and the run continues at step N with the LR schedule at step N,
with optimizer.pt's AdamW state when it maps onto the job (p2pft.train.hf_optimizer; else a fresh optimizer)
and p2pft's own data order from step N (HF's sampler state is not p2pft's). The run's own checkpoints always
win once it has any: after the first commit an elastic restart must continue its own progress, not go back to
PATH.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from p2pft.formats.checkpoint_index import COMMIT_MARKER, newest_committed, step_dir, verify_committed

SUPPORTED = ("a p2pft checkpoint: a step-N dir with a COMMITTED marker, a checkpoints dir, or a `p2pft run` "
             "output_dir holding checkpoints/; or a Hugging Face/LLaMA-Factory checkpoint-N folder in safetensors")
HF_TRAINER_STATE = "trainer_state.json"
# What save_pretrained writes: a PEFT adapter, or a full model in one file or shards with an index.
HF_WEIGHT_FILES = ("adapter_model.safetensors", "model.safetensors", "model.safetensors.index.json")
HF_PICKLE_FILES = ("adapter_model.bin", "pytorch_model.bin", "pytorch_model.bin.index.json")


class ResumeFromError(ValueError):
    """One line: what PATH is and what is supported."""


def resume_step_dir(path: str | Path) -> Path:
    """The committed, intact step dir that PATH names; ResumeFromError otherwise."""
    given = Path(path)
    prefix = f"resume_from_checkpoint: {str(path)!r}"
    if not given.is_dir():
        raise ResumeFromError(f"{prefix} is not a directory on this box; it must be {SUPPORTED}")
    if (given / COMMIT_MARKER).is_file():
        if not verify_committed(given):
            raise ResumeFromError(f"{prefix} is torn or damaged (its files do not match COMMITTED); pick another step")
        return given
    for checkpoint_dir in (given, given / "checkpoints"):
        step = newest_committed(checkpoint_dir)
        if step is not None:
            return step_dir(checkpoint_dir, step)
    if any((given / name).is_file() for name in ("adapter_config.json", HF_TRAINER_STATE, "config.json")):
        hf_checkpoint_step(given)  # raises with what is wrong with it
        return given
    raise ResumeFromError(f"{prefix} holds no committed p2pft checkpoint; it must be {SUPPORTED}")


def is_hf_checkpoint(directory: Path) -> bool:
    return not (directory / COMMIT_MARKER).is_file() and (directory / HF_TRAINER_STATE).is_file()


def hf_checkpoint_step(directory: Path) -> int:
    """N of a Hugging Face `checkpoint-N` folder (trainer_state.json's global_step); ResumeFromError in one line
    when it is not one p2pft can start from."""
    prefix = f"resume_from_checkpoint: {str(directory)!r}"
    if not any((directory / name).is_file() for name in HF_WEIGHT_FILES):
        pickled = next((name for name in HF_PICKLE_FILES if (directory / name).is_file()), None)
        if pickled:
            raise ResumeFromError(f"{prefix} holds {pickled}, a pickle p2pft does not load (it can run code); "
                                  "save it again with safetensors (save_pretrained's default)")
        raise ResumeFromError(f"{prefix} is a Hugging Face/LLaMA-Factory folder without weights "
                              f"({', '.join(HF_WEIGHT_FILES)}); it must be {SUPPORTED}")
    try:
        state = json.loads((directory / HF_TRAINER_STATE).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ResumeFromError(f"{prefix} has no {HF_TRAINER_STATE}, so the step to continue at is unknown; give a "
                              "Trainer's checkpoint-N folder, or train from the weights with a new job") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ResumeFromError(f"{prefix}: {HF_TRAINER_STATE} is unreadable ({err})") from None
    step = state.get("global_step") if isinstance(state, dict) else None
    if type(step) is not int or step < 0:
        raise ResumeFromError(f"{prefix}: {HF_TRAINER_STATE} has no whole global_step (got {step!r})")
    return step


def agree_on_resume_from(path: str, node_id: str, gather: Callable[[object], list[object]]) -> Path:
    """Every rank resolves PATH on its own box; `gather` (an all-gather) makes them agree on the same step dir
    or fail alike, naming a box that lacks it (PATH is a path on the box where `p2pft run` was started)."""
    try:
        mine: object = str(resume_step_dir(path))
    except ResumeFromError as exc:
        mine = ResumeFromError(f"{exc} (on box {node_id})")
    answers = gather(mine)
    for answer in answers:
        if isinstance(answer, ResumeFromError):
            raise answer
    if len(set(answers)) != 1:
        raise ResumeFromError(f"resume_from_checkpoint: {path!r} names different steps on different boxes "
                              f"({', '.join(sorted(str(a) for a in set(answers)))}); give a step-N dir")
    return Path(str(answers[0]))
