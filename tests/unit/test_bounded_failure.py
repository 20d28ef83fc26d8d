"""Issue 10's bounded failure, as pure decisions: which ended rounds count towards the job's failure, when the
job gives up and what it says, and when a graceful stop is overdue (p2pft.jobs.progress, stop_timeouts, state)."""

from __future__ import annotations

from dataclasses import replace
from types import MappingProxyType

import pytest

from p2pft.jobs.model import JobRecord, MemberReport, RoundInfo
from p2pft.jobs.progress import MAX_FRUITLESS_ROUNDS, give_up, made_progress, next_streak
from p2pft.jobs.state import View, decide
from p2pft.jobs.stop_timeouts import GRACEFUL_STOP_MIN_S, graceful_stop_s, overdue_stop
from tests.specs import job_spec

FULL_DISK = "box-b: OSError: [Errno 28] No space left on device (rank 1, while saving step 10)"


def a_round(*, resume: int | None = 5, first_step: int | None = 6, members: tuple[str, ...] = ("a", "b"),
            number: int = 3, collective_s: float = 30.0) -> RoundInfo:
    return RoundInfo(round=number, reason="r", coordinator="a", members=members, addresses={}, plan={"entries": [
        {"node_id": m, "local_rank": 0, "samples": 1, "micro_batch_size": 1} for m in members]},
        store="127.0.0.1:1", resume_step=resume, first_step=first_step,
        first_step_unix=1.0 if first_step is not None else None, collective_timeout_s=collective_s)


def a_record(info: RoundInfo, *, status: str = "running") -> JobRecord:
    spec = job_spec({"global_batch_size": 4, "min_nodes": 1, "max_nodes": 3}, max_steps=100, output_dir="/o")
    return JobRecord(job_id="j", spec=spec, submitter="a", coordinator="a", status=status, rounds=(info,),
                     checkpoints=(5,))


def exited(node: str, outcome: str, *, detail: str = "", cause: str = "", by_us: bool = False,
           leaving: bool = False) -> MemberReport:
    return MemberReport(job_id="j", node_id=node, round=3, phase="exited", outcome=outcome, detail=detail,
                        cause=cause, stopped_by_us=by_us, leaving=leaving)


def view(info: RoundInfo, *, holdings: dict[str, tuple[int, ...]], reports: dict[str, MemberReport] | None = None,
         streak: int = MAX_FRUITLESS_ROUNDS - 1, **extra: object) -> View:
    earlier = tuple(f"round {n}: agent failed on b: {FULL_DISK}" for n in range(streak))
    return View(a_record(info), available=info.members, reports=MappingProxyType(reports or {}),
                holdings=MappingProxyType(holdings), alive=frozenset(info.members), fruitless=earlier,
                failure_age_s=10.0, **extra)  # type: ignore[arg-type]


# ---- did the round move the job on ------------------------------------------------------------------------------


@pytest.mark.parametrize(("resume", "first_step", "next_resume", "progress"), [
    (5, 6, 10, True),        # resumed from 5, the next round resumes from 10
    (5, 6, 5, False),        # stepped 6.. but nothing newer is complete anywhere
    (5, None, 5, False),     # never stepped
    (None, 1, None, False),  # from scratch, no checkpoint yet
    (None, 1, 3, True),      # from scratch, the first checkpoint
    (5, 9, 8, False),        # the workers resumed from 8 (newer than the coordinator's floor of 5): 8 is no news
    (5, 6, 3, False),        # the holder of 5 died: the job went back
])
def test_a_round_made_progress_when_the_next_one_resumes_from_a_newer_step(
        resume: int | None, first_step: int | None, next_resume: int | None, progress: bool) -> None:
    assert made_progress(a_round(resume=resume, first_step=first_step), next_resume) is progress


def test_the_streak_grows_on_failures_only_and_ends_with_progress() -> None:
    info = a_round()
    assert next_streak(("round 1: x",), info, 5, "member b lost") == ("round 1: x", "round 3: member b lost")
    assert next_streak(("round 1: x",), info, 5, "") == ("round 1: x",)   # on request, or a network fault
    assert next_streak(("round 1: x",), info, 10, "member b lost") == ()  # a failure after a new checkpoint
    assert next_streak(("round 1: x",), None, None, "") == ("round 1: x",)


def test_the_final_message_says_what_happened_on_which_box_once_per_fault() -> None:
    streak = (*(f"round {n}: agent failed on b: {FULL_DISK}" for n in range(3, 7)), "round 7: member c lost")
    assert give_up(streak[:-1], 5) is None
    message = give_up(streak, 5)
    assert message == (f"5 rounds in a row made no new checkpoint; the job stays at step 5: rounds 3, 4, 5, 6: "
                       f"agent failed on b: {FULL_DISK}; round 7: member c lost")
    assert "the start (no checkpoint yet)" in (give_up(streak, None) or "")


# ---- decide: which endings count ---------------------------------------------------------------------------------


def test_rounds_that_step_but_never_commit_fail_the_job_with_the_boxes_reason() -> None:
    reports = {"a": exited("a", "failed", detail="box-a: collective timed out"),
               "b": exited("b", "failed", detail=FULL_DISK)}
    action = decide(view(a_round(), holdings={"a": (5,), "b": (5,)}, reports=reports))
    assert action.kind == "fail"
    assert action.reason.startswith(f"{MAX_FRUITLESS_ROUNDS} rounds in a row made no new checkpoint; the job stays "
                                    "at step 5: ")
    assert action.reason.endswith("round 3: agent failed on a, b: box-a: collective timed out")
    assert FULL_DISK in action.reason


def test_one_fewer_failed_round_retries_and_carries_the_streak() -> None:
    reports = {"b": exited("b", "failed", detail=FULL_DISK)}
    action = decide(view(a_round(), holdings={"a": (5,), "b": (5,)}, reports=reports, streak=2))
    assert action.kind == "start_round" and len(action.fruitless) == 3
    assert action.fruitless[-1] == f"round 3: agent failed on b: {FULL_DISK}"


def test_a_failed_round_after_a_new_checkpoint_resets_the_count() -> None:
    reports = {"b": exited("b", "failed", detail=FULL_DISK)}
    action = decide(view(a_round(), holdings={"a": (5, 10), "b": (5, 10)}, reports=reports))
    assert action.kind == "start_round" and action.round is not None and action.round.resume_step == 10
    assert action.fruitless == ()


def test_a_lost_member_without_a_new_checkpoint_counts() -> None:
    action = decide(view(a_round(), holdings={"a": (5,)}, lost=MappingProxyType({"b": 1.0})))
    assert action.kind == "fail" and action.reason.endswith("round 3: member b lost")


def test_rounds_stopped_on_request_never_count_even_without_a_new_checkpoint() -> None:
    """A join or drain storm: rounds stopped before their first step, or whose stop checkpoint is not complete
    anywhere yet, neither fail the job nor end the streak."""
    short = a_round(first_step=None)
    stopped = {n: exited(n, "stopped_on_request", by_us=True) for n in short.members}
    action = decide(view(short, holdings={"a": (5,), "b": (5,)}, reports=stopped, stop_requested="member c joins"))
    assert action.kind == "start_round" and len(action.fruitless) == MAX_FRUITLESS_ROUNDS - 1
    drained = {"a": exited("a", "stopped_on_request", by_us=True),
               "b": exited("b", "stopped_on_request", by_us=True, leaving=True)}
    action = decide(view(short, holdings={"a": (5,)}, reports=drained))
    assert action.kind == "start_round" and action.members == ("a",)
    assert len(action.fruitless) == MAX_FRUITLESS_ROUNDS - 1
    # A join while the round still starts restarts it at once: no failure either.
    joining = View(a_record(short), available=("a", "b", "c"), holdings=MappingProxyType({"a": (5,)}),
                   alive=frozenset("abc"), fruitless=tuple(f"round {n}: x" for n in range(MAX_FRUITLESS_ROUNDS - 1)))
    action = decide(joining)
    assert action.kind == "start_round" and "c joins" in action.reason
    assert len(action.fruitless) == MAX_FRUITLESS_ROUNDS - 1


def test_a_network_failure_backs_off_and_does_not_count() -> None:
    unreachable = "box-a could not reach 10.0.0.2:41234 (box-b's workers: connection refused); allow TCP"
    reports = {"a": exited("a", "failed", detail=unreachable, cause="network")}
    action = decide(view(a_round(first_step=None), holdings={"a": (5,)}, reports=reports))
    assert action.kind == "start_round" and len(action.fruitless) == MAX_FRUITLESS_ROUNDS - 1


def test_a_full_disk_found_before_a_save_fails_at_once_naming_the_box_and_the_space() -> None:
    line = ("box box-b (node b) has 1.2 GiB free in /state/jobs/j/checkpoints, and the next checkpoint needs about "
            "3.4 GiB: free disk space there or lower save_total_limit, then submit the job again")
    reports = {"b": exited("b", "failed", detail=f"box-b: CheckpointSpaceError: {line}", cause="deterministic")}
    action = decide(view(a_round(), holdings={"a": (5,)}, reports=reports, streak=0))
    assert action.kind == "fail" and "box-b" in action.reason and "1.2 GiB free" in action.reason


# ---- a graceful stop that does not finish ------------------------------------------------------------------------


def test_the_graceful_stop_limit_follows_the_collective_timeout() -> None:
    assert graceful_stop_s(30.0) == GRACEFUL_STOP_MIN_S
    assert graceful_stop_s(300.0) == 600.0
    info = a_round(collective_s=0.0)   # a round from before the field: the job's own setting (30 s)
    assert overdue_stop(a_record(info), info, "member c joins", GRACEFUL_STOP_MIN_S - 1, {}) == ""
    assert overdue_stop(a_record(info), info, "", 10 * GRACEFUL_STOP_MIN_S, {}) == ""


def test_an_overdue_graceful_stop_starts_the_next_round_and_says_why() -> None:
    info = a_round(collective_s=90.0)
    reports = {"a": exited("a", "stopped_on_request", by_us=True)}
    waiting = decide(view(info, holdings={"a": (5, 10)}, reports=reports, streak=0,
                          stop_requested="member b drains", stop_age_s=179.0))
    assert waiting.kind == "nothing"
    action = decide(view(info, holdings={"a": (5, 10)}, reports=reports, streak=0,
                         stop_requested="member b drains", stop_age_s=181.0))
    assert action.kind == "start_round"
    assert action.reason == ("member b drains, but round 3 did not stop at a step boundary within 180 s (b still "
                             "running: a step or a checkpoint save hung); stopped it at once")
    assert action.fruitless == ()   # the stop's checkpoint (10) came from a: progress


def test_overdue_stops_that_never_bring_a_checkpoint_count() -> None:
    info = a_round()
    action = decide(replace(view(info, holdings={"a": (5,), "b": (5,)}), stop_requested="member c joins",
                            stop_age_s=GRACEFUL_STOP_MIN_S + 1))
    assert action.kind == "fail" and "did not stop at a step boundary" in action.reason
