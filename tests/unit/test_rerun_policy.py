"""`p2pft run` into an output_dir that holds a run: resume, start afresh (overwrite_output_dir), or refuse."""

from __future__ import annotations

from p2pft.config.rerun import decide_rerun

OLD = {"learning_rate": 1e-3, "max_steps": 8, "dataset": "demo", "p2pft": {"min_nodes": 1}}


def test_same_settings_resume_and_longer_runs_may_resume() -> None:
    assert decide_rerun(OLD, dict(OLD), has_checkpoint=True, overwrite=False, output_dir="/o").action == "resume"
    longer = {**OLD, "max_steps": 20, "p2pft": {"min_nodes": 2}}
    assert decide_rerun(OLD, longer, has_checkpoint=True, overwrite=False, output_dir="/o").action == "resume"


def test_changed_maths_is_refused_in_one_line_naming_the_key() -> None:
    decision = decide_rerun(OLD, {**OLD, "learning_rate": 2e-3}, has_checkpoint=True, overwrite=False,
                            output_dir="/o")
    assert decision.action == "refuse" and "\n" not in decision.message
    assert decision.message.startswith("/o holds a run with learning_rate=0.001, this job has learning_rate=0.002")
    assert "overwrite_output_dir: true" in decision.message


def test_overwrite_or_nothing_to_resume_starts_afresh() -> None:
    changed = {**OLD, "learning_rate": 2e-3}
    assert decide_rerun(OLD, changed, has_checkpoint=True, overwrite=True, output_dir="/o").action == "fresh"
    assert decide_rerun(OLD, changed, has_checkpoint=False, overwrite=False, output_dir="/o").action == "fresh"
