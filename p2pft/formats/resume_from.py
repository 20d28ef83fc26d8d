"""`resume_from_checkpoint: PATH`: which committed p2pft step a fresh run starts from. Torch-free.

PATH may be a step dir (`.../checkpoints/step-N`), a checkpoint dir (its newest intact step) or a `p2pft run`
output_dir (its `checkpoints/`). The run's own checkpoints always win once it has any: after the first commit
an elastic restart must continue its own progress, not go back to PATH. Hugging Face / LLaMA-Factory
`checkpoint-N` folders hold no p2pft optimizer state and data cursor, so they are refused in one line.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from p2pft.formats.checkpoint_index import COMMIT_MARKER, newest_committed, step_dir, verify_committed

SUPPORTED = ("a p2pft checkpoint: a step-N dir with a COMMITTED marker, a checkpoints dir, or a `p2pft run` "
             "output_dir holding checkpoints/")


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
    if any((given / name).is_file() for name in ("adapter_config.json", "trainer_state.json", "config.json")):
        raise ResumeFromError(f"{prefix} is a Hugging Face/LLaMA-Factory checkpoint folder; p2pft resumes only "
                              f"from {SUPPORTED} (its optimizer state and data cursor)")
    raise ResumeFromError(f"{prefix} holds no committed p2pft checkpoint; it must be {SUPPORTED}")


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
