"""`resume_from_checkpoint: PATH`: which committed p2pft step a fresh run starts from, one-line refusals for
everything else, and every box agreeing on the same step (or failing alike, naming the box)."""

from __future__ import annotations

from pathlib import Path

import pytest

from p2pft.config.resources import resume_errors
from p2pft.formats.checkpoint_index import describe_files, step_dir, write_commit_marker
from p2pft.formats.resume_from import ResumeFromError, agree_on_resume_from, resume_step_dir


def committed(checkpoint_dir: Path, step: int) -> Path:
    directory = step_dir(checkpoint_dir, step)
    directory.mkdir(parents=True)
    (directory / "__0_0.distcp").write_bytes(b"weights %d" % step)
    write_commit_marker(directory, {"step": step, "files": describe_files(directory)})
    return directory


def test_a_step_dir_a_checkpoint_dir_or_an_output_dir(tmp_path: Path) -> None:
    checkpoints = tmp_path / "out" / "checkpoints"
    committed(checkpoints, 4)
    newest = committed(checkpoints, 8)
    step_dir(checkpoints, 12).mkdir()    # torn: no marker
    assert resume_step_dir(checkpoints / "step-4") == checkpoints / "step-4"
    assert resume_step_dir(checkpoints) == newest
    assert resume_step_dir(tmp_path / "out") == newest
    assert resume_errors(str(tmp_path / "out")) == []


@pytest.mark.parametrize("case, expected", [
    ("missing", "is not a directory on this box"),
    ("hf", "is a Hugging Face/LLaMA-Factory folder without weights"),
    ("empty", "holds no committed p2pft checkpoint"),
    ("damaged", "is torn or damaged"),
])
def test_anything_else_is_refused_in_one_line(tmp_path: Path, case: str, expected: str) -> None:
    path = tmp_path / "x"
    if case == "hf":
        path.mkdir()
        (path / "adapter_config.json").write_text("{}")
    elif case == "empty":
        path.mkdir()
    elif case == "damaged":
        path = committed(tmp_path / "checkpoints", 2)
        (path / "__0_0.distcp").write_bytes(b"flipped")
    with pytest.raises(ResumeFromError, match=expected) as error:
        resume_step_dir(path)
    assert "\n" not in str(error.value)
    if case != "damaged":   # says what is supported
        assert "a step-N dir with a COMMITTED marker" in str(error.value)
    assert resume_errors(str(path)) == [str(error.value)]


def test_boxes_agree_or_fail_naming_the_box_that_lacks_it(tmp_path: Path) -> None:
    newest = committed(tmp_path / "checkpoints", 6)
    same = agree_on_resume_from(str(tmp_path / "checkpoints"), "box-a", lambda mine: [mine, mine])
    assert same == newest
    with pytest.raises(ResumeFromError, match=r"not a directory on this box.*\(on box box-b\)"):
        agree_on_resume_from(str(tmp_path / "checkpoints"), "box-a",
                             lambda mine: [mine, ResumeFromError("resume_from_checkpoint: '/x' is not a directory "
                                                                 "on this box (on box box-b)")])
    with pytest.raises(ResumeFromError, match="different steps on different boxes"):
        agree_on_resume_from(str(tmp_path / "checkpoints"), "box-a", lambda mine: [mine, "/other/step-2"])
