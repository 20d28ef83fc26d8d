"""LLaMA-Factory's `checkpoint-N/` folders in an output_dir: naming, HF's rotation by `save_total_limit`, and
their `trainer_state.json` rebuilt from metric lines. Torch-free: the coordinator of a daemon job rewrites the
states from every round's lines, which no single worker has.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from p2pft.formats.lf_outputs import TRAINER_STATE_FILE, RunSettings, state_up_to

PREFIX = "checkpoint-"
_FOLDER = re.compile(r"^checkpoint-(\d+)$")


def folder_for(output_dir: Path, step: int) -> Path:
    return Path(output_dir) / f"{PREFIX}{step}"


def folder_steps(output_dir: Path) -> list[int]:
    """The steps of the checkpoint-N folders in output_dir, ascending (temp folders being written excluded)."""
    root = Path(output_dir)
    if not root.is_dir():
        return []
    found = []
    for child in root.iterdir():
        match = _FOLDER.match(child.name)
        if match and child.is_dir() and not child.is_symlink():
            found.append(int(match.group(1)))
    return sorted(found)


def steps_to_keep(steps: Iterable[int], limit: int | None) -> list[int]:
    """HF's rotation (transformers' rotate_checkpoints): the newest `limit` by step; all when limit is None or <= 0."""
    ordered = sorted(set(steps))
    if limit is None or limit <= 0:
        return ordered
    return ordered[-limit:]


def remove_folder(folder: Path) -> None:
    """A folder goes under a temp name first, so a crash midway never leaves a half-removed checkpoint-N."""
    if not folder.exists():
        return
    doomed = folder.with_name(f".{folder.name}.removing-{os.getpid()}")
    os.replace(folder, doomed)
    shutil.rmtree(doomed, ignore_errors=True)


def rotate(output_dir: Path, limit: int | None) -> list[int]:
    """Remove all but the newest `limit` checkpoint-N folders; returns the removed steps."""
    present = folder_steps(output_dir)
    kept = set(steps_to_keep(present, limit))
    doomed = [step for step in present if step not in kept]
    for step in doomed:
        remove_folder(folder_for(output_dir, step))
    return doomed


def remove_all(output_dir: Path) -> None:
    """A fresh start (overwrite_output_dir): the old run's folders go with its checkpoints."""
    for step in folder_steps(output_dir):
        remove_folder(folder_for(output_dir, step))


def write_state(folder: Path, step: int, lines: Iterable[Mapping[str, Any]], spec: Mapping[str, Any]) -> bool:
    """trainer_state.json as it stood after `step` into `folder` (HF's Trainer writes it with each save); False,
    and nothing written, when the lines lack that step's own line (they would describe an earlier state)."""
    state = state_up_to(lines, step, RunSettings.from_spec(spec))
    if state is None or state["global_step"] != step:
        return False
    path = Path(folder) / TRAINER_STATE_FILE
    temp = path.with_name(f".{path.name}.tmp")
    temp.write_text(json.dumps(state, indent=2, sort_keys=True) + "\n")
    os.replace(temp, path)
    return True


def write_states(output_dir: Path, lines: Iterable[Mapping[str, Any]], spec: Mapping[str, Any]) -> list[Path]:
    """trainer_state.json up to N in every checkpoint-N folder the lines reach; a folder whose step no line
    reaches (a daemon round's worker has only its own round's lines) keeps the state it has."""
    lines = list(lines)
    return [folder_for(output_dir, step) / TRAINER_STATE_FILE for step in folder_steps(output_dir)
            if write_state(folder_for(output_dir, step), step, lines, spec)]
