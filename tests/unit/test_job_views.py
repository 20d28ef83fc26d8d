"""What people see of jobs and boxes, as pure functions: rates and ETA, names instead of ids, round events,
column fitting, id prefixes."""

from __future__ import annotations

import pytest

from p2pft.cli.job_render import fit_columns, sparkline
from p2pft.jobs.boxes import AmbiguousError, newest_round_of, resolve_box, resolve_job_id
from p2pft.jobs.model import JobRecord, RoundInfo
from p2pft.jobs.views import (
    RoundTracker,
    duration,
    metrics_sentence,
    progress_of,
    summary_lines,
    with_names,
)
from tests.specs import job_spec

A, B, C = "aaaaaaaaaaaaaaa1", "bbbbbbbbbbbbbbb2", "ccccccccccccccc3"
NAMES = {A: "box-a", B: "box-b", C: "box-c"}


def round_info(number: int, members: tuple[str, ...], reason: str, **kw: object) -> RoundInfo:
    return RoundInfo(round=number, reason=reason, coordinator=A, members=members, addresses={}, store="h:1",
                     plan={"entries": [{"node_id": m, "local_rank": 0, "samples": 2, "micro_batch_size": 2}
                                       for m in members]}, resume_step=None, **kw)  # type: ignore[arg-type]


def record(*rounds: RoundInfo, status: str = "running", max_steps: int | None = None) -> JobRecord:
    spec = job_spec(**({"max_steps": max_steps} if max_steps else {}))
    return JobRecord(job_id="job-1", spec=spec, submitter=A, coordinator=A, status=status, rounds=rounds)


def test_rate_and_eta_come_from_the_current_rounds_lines_and_epochs_give_the_total() -> None:
    lines = [{"step": s, "loss": 2.0 - s / 100, "time": 100.0 + s, "plan_round": 0, "total_steps": 50,
              "tokens_per_s": 300.0} for s in range(1, 11)]
    lines += [{"step": s, "loss": 1.5, "time": 200.0 + (s - 10) * 0.5, "plan_round": 1, "total_steps": 50}
              for s in range(11, 15)]
    progress = progress_of(record(), lines)   # no max_steps: the workers' total (epochs) counts
    assert (progress.step, progress.total_steps) == (14, 50)
    assert progress.steps_per_s == pytest.approx(2.0)          # the recovery gap between rounds is not the rate
    assert progress.samples_per_s == pytest.approx(12.0) and progress.eta_s == pytest.approx(18.0)
    assert progress_of(record(max_steps=30), []).total_steps == 30


def test_sentences_name_boxes_and_the_tracker_tells_each_event_once() -> None:
    r0 = round_info(0, (A, B, C), "job submitted", first_step=1, first_step_unix=10.0, cause_unix=5.0)
    r1 = round_info(1, (A, C), f"member {B} lost", cause_unix=20.0, first_step=9, first_step_unix=22.5)
    tracker = RoundTracker()
    first = tracker.feed(record(r0), NAMES)
    assert first == ["round 0: job submitted; members box-a, box-b, box-c; world 3; from scratch",
                     "round 0: first step 1"]
    second = tracker.feed(record(r0, r1, status="failed"), NAMES)
    assert second[0] == "round 1: member box-b lost; members box-a, box-c; world 2; from scratch"
    assert second[1] == "round 1: first step 9 2.5 s after its cause" and second[2].startswith("job job-1 failed")
    assert tracker.feed(record(r0, r1, status="failed"), NAMES) == []
    assert with_names(f"agent failed on {B}: x", NAMES) == "agent failed on box-b: x"
    assert with_names(f"agent failed on {B}: box-b: RuntimeError: y", NAMES) == "agent failed on box-b: RuntimeError: y"
    summary = summary_lines(record(r0, r1), NAMES, 1.25, "/out")
    assert "final loss 1.2500" in summary[0] and "recovered in 2.5 s" in summary[2] and summary[-1] == "  outputs: /out"


def test_step_lines_read_like_p2pft_runs() -> None:
    line = {"step": 3, "loss": 2.5, "lr": 0.001, "world_size": 3, "tokens_per_s": 812.4, "step_time_s": 0.095}
    assert metrics_sentence(line, 30, 1) == "step 3/30 loss 2.5000 lr 0.001 world 3 812 tok/s (95 ms) [round 1]"
    assert metrics_sentence({"step": 4, "kind": "eval", "eval_loss": 2.0}) == "eval at step 4: loss 2"
    assert (duration(42), duration(185), duration(3720)) == ("42s", "3m05s", "1h02m")


def test_tables_drop_the_least_useful_columns_to_fit() -> None:
    columns = [("JOB", 26, 100), ("STATUS", 9, 100), ("LOSS", 7, 70), ("MESSAGE", 30, 20)]
    assert fit_columns(columns, 200) == ["JOB", "STATUS", "LOSS", "MESSAGE"]
    assert fit_columns(columns, 60) == ["JOB", "STATUS", "LOSS"]
    assert fit_columns(columns, 10) == ["JOB", "STATUS"]    # essential columns stay, cut instead
    assert sparkline([3.0, 2.0, 1.0]) == "█▅▁"


def test_boxes_and_jobs_are_found_by_name_id_or_unique_prefix() -> None:
    members = {A: None, B: None}
    assert resolve_box("box-b", NAMES, members) == B and resolve_box(A, {}, members) == A
    assert resolve_box("bbb", {}, members) == B and resolve_box("zzz", NAMES, members) is None
    assert newest_round_of(record(round_info(0, (A, B), "x"), round_info(1, (A,), "y")), B) == 0
    jobs = ["job-20261201-1200-aa", "job-20261201-1300-bb"]
    assert resolve_job_id("job-20261201-13", jobs) == jobs[1] and resolve_job_id("20261201-12", jobs) == jobs[0]
    assert resolve_job_id("nope", jobs) is None
    with pytest.raises(AmbiguousError, match="matches 2 jobs"):
        resolve_job_id("job-2026", jobs)


def test_the_plan_shows_each_ranks_measured_speed_and_a_starting_round_whom_it_waits_for() -> None:
    from p2pft.jobs.views import left_out_sentence, plan_sentence, starting_sentence

    starting = round_info(3, (A, B, C), "r", launched=(A, B), join_timeout_s=120, left_out={C: 1_000.0})
    assert plan_sentence(starting, NAMES, {f"{A}:0": 41.25}) == "box-a:0 2x2 @41.2/s, box-b:0 2x2, box-c:0 2x2"
    assert starting_sentence(starting, NAMES) == (
        "round 3 starting: waiting for box-c to start its agent (the rendezvous waits up to 120 s)")
    assert starting_sentence(round_info(3, (A,), "r", first_step=5), NAMES) is None
    assert left_out_sentence(starting, NAMES, 880.0) == (
        "left out (too slow to start; tried again after): box-c for 2m00s")
    assert left_out_sentence(starting, NAMES, 1_001.0) is None
    lines = [{"step": 1, "time": 1.0, "plan_round": 3, "speeds": [
        {"node_id": A, "local_rank": 0, "samples_per_s": 40.0}, {"node_id": B, "local_rank": 0, "samples_per_s": 0}]}]
    assert progress_of(JobRecord(job_id="j", spec=job_spec(output_dir="/o"), submitter=A, coordinator=A),
                       lines).rank_speeds == {f"{A}:0": 40.0}
