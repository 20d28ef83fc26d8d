"""LF's checkpoint-N folders in an output_dir: HF's rotation by save_total_limit, and trainer_state.json up to N
(written by the worker from its own lines, rewritten by a daemon job's coordinator from every round's)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from p2pft.formats.checkpoint_folders import (
    folder_for,
    folder_steps,
    remove_all,
    rotate,
    steps_to_keep,
    write_state,
    write_states,
)
from p2pft.jobs.model import JobRecord, RoundInfo
from p2pft.jobs.outputs import LineBook, write_outputs
from tests.specs import job_spec

SPEC = {"logging_steps": 1, "save_steps": 2, "p2pft": {"global_batch_size": 8}}


def line(step: int, loss: float) -> dict[str, Any]:
    return {"step": step, "total_steps": 6, "loss": loss, "lr": 0.01, "samples_consumed": 8 * step, "epoch": 0,
            "epoch_float": step / 6, "step_time_s": 1.0, "time": 100.0 + step}


def folders(root: Path, *steps: int) -> None:
    for step in steps:
        folder_for(root, step).mkdir(parents=True)
        (folder_for(root, step) / "adapter_config.json").write_text("{}")


def test_rotation_keeps_the_newest_by_step_number_like_transformers(tmp_path: Path) -> None:
    folders(tmp_path, 2, 10, 4, 8)
    (tmp_path / ".checkpoint-12.tmp-7").mkdir()        # a folder being written is no checkpoint
    (tmp_path / "checkpoint-x").mkdir()
    assert folder_steps(tmp_path) == [2, 4, 8, 10]      # numeric, not lexical (10 after 8)
    assert rotate(tmp_path, 2) == [2, 4]
    assert folder_steps(tmp_path) == [8, 10]
    assert rotate(tmp_path, None) == [] and rotate(tmp_path, 0) == []
    assert steps_to_keep([6, 2, 4, 6], 2) == [4, 6] and steps_to_keep([3, 1], None) == [1, 3]
    assert not any(p.name.startswith(".checkpoint-") and "removing" in p.name for p in tmp_path.iterdir())
    remove_all(tmp_path)
    assert folder_steps(tmp_path) == []


def test_a_state_is_written_only_from_lines_that_reach_its_step(tmp_path: Path) -> None:
    folders(tmp_path, 2, 4)
    lines = [line(s, 5.0 - s) for s in (3, 4)]          # a later round's worker: steps 3-4 only
    written = write_states(tmp_path, lines, SPEC)
    assert written == [folder_for(tmp_path, 4) / "trainer_state.json"]
    assert not (folder_for(tmp_path, 2) / "trainer_state.json").exists()
    assert not write_state(folder_for(tmp_path, 2), 2, lines, SPEC)


def test_the_coordinator_rewrites_every_folders_state_from_every_round(tmp_path: Path) -> None:
    from transformers import TrainerState

    out = tmp_path / "out"
    folders(out, 4, 6)
    # what the last round's worker left: step 6's state from its own round (steps 5-6) only
    write_states(out, [line(s, 1.0) for s in (5, 6)], SPEC)
    book = LineBook()
    book.add("metrics", [{"round": 0, "line": line(s, 9.0 - s)} for s in range(1, 5)], persist=False)
    book.add("metrics", [{"round": 1, "line": line(s, 9.0 - s)} for s in range(5, 7)], persist=False)
    info = RoundInfo(round=0, reason="start", coordinator="a", members=("a",), addresses={"a": "127.0.0.1:1"},
                     plan={"entries": []}, store="127.0.0.1:2", resume_step=None, first_step=1)
    typed = job_spec(SPEC["p2pft"], **{k: v for k, v in SPEC.items() if k != "p2pft"})
    record = JobRecord(job_id="j1", spec=typed, submitter="a", coordinator="a", status="succeeded", rounds=(info,))
    write_outputs(out, record, book)
    for step in (4, 6):
        state = TrainerState.load_from_json(str(folder_for(out, step) / "trainer_state.json"))
        assert state.global_step == step and [e["step"] for e in state.log_history] == list(range(1, step + 1))
    assert json.loads((folder_for(out, 6) / "trainer_state.json").read_text())["log_history"][0]["loss"] == 8.0
