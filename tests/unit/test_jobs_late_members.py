"""A member too slow to start is waited for, then left out with its reason, then tried again (pure decisions)."""

from __future__ import annotations

from dataclasses import replace
from types import MappingProxyType

from p2pft.jobs.late_members import LEAVE_OUT_S, carried_left_out, excluded_now
from p2pft.jobs.model import JobRecord, MemberReport, RoundInfo, record_from_json, record_to_json
from p2pft.jobs.round_plan import JOIN_TIMEOUT_S
from p2pft.jobs.state import View, decide, network_failure
from tests.specs import job_spec

LATE = "b: not every member joined the rendezvous on 10.0.0.1:47342 in time: a box too slow to start"
NOW = 10_000.0


def round_info(number: int, *, late: tuple[str, ...] = (), join_timeout_s: int = 60,
               left_out: dict[str, float] | None = None, first_step: int | None = None) -> RoundInfo:
    members = ("a", "b", "c")
    return RoundInfo(round=number, reason="r", coordinator="a", members=members, addresses={},
                     plan={"entries": [{"node_id": m, "local_rank": 0, "samples": 2, "micro_batch_size": 1}
                                       for m in members]},
                     store="127.0.0.1:1", resume_step=None, late=late, join_timeout_s=join_timeout_s,
                     left_out=left_out or {}, first_step=first_step, started_unix=NOW - 100,
                     first_step_unix=None if first_step is None else NOW - 50)


def job(*rounds: RoundInfo, min_nodes: int = 1) -> JobRecord:
    spec = job_spec({"global_batch_size": 6, "min_nodes": min_nodes}, max_steps=10, output_dir="/o")
    return JobRecord(job_id="j", spec=spec, submitter="c", coordinator="a", status="running", rounds=rounds)


def timed_out(*nodes: str, number: int) -> MappingProxyType[str, MemberReport]:
    """a and b waited at the rendezvous and gave up; c (not in the reports) was still starting."""
    return MappingProxyType({n: MemberReport(job_id="j", node_id=n, round=number, phase="exited", outcome="failed",
                                             detail=LATE, cause="network") for n in nodes})


def test_the_first_late_round_waits_longer_for_everyone() -> None:
    record = job(round_info(0))
    action = decide(View(record, available=("a", "b", "c"), reports=timed_out("a", "b", number=0), now_unix=NOW,
                         failure_age_s=6.0))
    assert action.kind == "start_round" and action.members == ("a", "b", "c")
    assert action.late == ("c",) and action.left_out == ()
    assert action.round is not None and action.round.join_timeout_s == 2 * JOIN_TIMEOUT_S[0]


def test_late_twice_in_a_row_is_left_out_with_the_reason() -> None:
    record = job(round_info(0, late=("c",)), round_info(1, join_timeout_s=120))
    action = decide(View(record, available=("a", "b", "c"), reports=timed_out("a", "b", number=1), now_unix=NOW,
                         failure_age_s=6.0))
    assert action.kind == "start_round" and action.members == ("a", "b")
    assert action.left_out == ("c",)
    assert "member c left out: still starting or computing when the others gave up, in 2 rounds in a row " \
           "(rendezvous wait 120 s" in action.reason


def test_late_twice_but_needed_for_min_nodes_is_waited_for_again() -> None:
    record = job(round_info(0, late=("c",)), round_info(1, join_timeout_s=120), min_nodes=3)
    action = decide(View(record, available=("a", "b", "c"), reports=timed_out("a", "b", number=1), now_unix=NOW,
                         failure_age_s=6.0))
    assert action.kind == "start_round" and action.members == ("a", "b", "c") and action.left_out == ()


def test_a_round_that_stepped_in_between_resets_the_count() -> None:
    record = job(round_info(0, late=("c",), first_step=5), round_info(1))
    action = decide(View(record, available=("a", "b", "c"), reports=timed_out("a", "b", number=1), now_unix=NOW,
                         failure_age_s=6.0))
    assert action.members == ("a", "b", "c") and action.left_out == ()


def test_a_left_out_member_is_not_a_joiner_until_its_time_is_up_then_rejoins_with_the_longer_timeout() -> None:
    until = carried_left_out(None, ("c",), NOW)
    assert until == {"c": NOW + LEAVE_OUT_S}
    running = replace(round_info(2, left_out=until, first_step=3), members=("a", "b"),
                      plan={"entries": [{"node_id": m, "local_rank": 0, "samples": 3, "micro_batch_size": 1}
                                        for m in ("a", "b")]})
    record = job(round_info(0, late=("c",)), round_info(1, late=("c",), join_timeout_s=120), running)
    assert excluded_now(record, NOW + 1) == until
    assert decide(View(record, available=("a", "b", "c"), now_unix=NOW + 1)).kind == "nothing"
    later = decide(View(record, available=("a", "b", "c"), now_unix=NOW + LEAVE_OUT_S + 1))
    assert later.kind == "request_stop" and "member c joins" in later.reason
    stopped = MappingProxyType({n: MemberReport(job_id="j", node_id=n, round=2, phase="exited",
                                                outcome="stopped_on_request") for n in ("a", "b")})
    back = decide(View(record, available=("a", "b", "c"), reports=stopped, now_unix=NOW + LEAVE_OUT_S + 5))
    assert back.kind == "start_round" and back.members == ("a", "b", "c")
    assert back.round is not None and back.round.join_timeout_s == 240   # 2 x the longest it was given


def test_late_and_left_out_survive_the_record_json() -> None:
    record = job(round_info(0, late=("c",), left_out={"c": NOW}))
    again = record_from_json(record_to_json(record))
    assert again.rounds[0].late == ("c",) and again.rounds[0].left_out == {"c": NOW}


def test_slow_recent_steps_lengthen_the_rounds_collective_timeout_and_the_member_uses_it() -> None:
    from p2pft.jobs.round_plan import COLLECTIVE_TIMEOUT_MAX_S, collective_timeout
    from p2pft.jobs.speeds import slowest_recent_step

    assert collective_timeout(30.0, 2.0) == 30.0              # fast steps: the job's own setting
    assert collective_timeout(30.0, 20.0) == 80.0             # 4 x the slowest recent step
    assert collective_timeout(30.0, 10_000.0) == COLLECTIVE_TIMEOUT_MAX_S
    lines = [{"step": s, "step_time_s": t} for s, t in enumerate([1.0, 25.0, 2.0])] + [
        {"step": 9, "kind": "eval", "step_time_s": 99.0}]
    assert slowest_recent_step(lines) == 25.0
    record = job(round_info(0, first_step=1))
    action = decide(View(record, available=("a", "b", "c"), now_unix=NOW, slowest_step_s=25.0,
                         reports=MappingProxyType({n: MemberReport(job_id="j", node_id=n, round=0, phase="exited",
                                                                   outcome="stopped_on_request")
                                                   for n in ("a", "b", "c")})))
    assert action.round is not None and action.round.collective_timeout_s == 100.0


def test_a_member_still_computing_when_the_others_timed_out_in_a_collective_is_late_too() -> None:
    collective = "agent failed on a: Timed out waiting 30000ms for recv operation to complete"
    reports = MappingProxyType({n: MemberReport(job_id="j", node_id=n, round=0, phase="exited", outcome="failed",
                                                detail=collective) for n in ("a", "b")})
    record = job(round_info(0))
    early = decide(View(record, available=("a", "b", "c"), reports=reports, now_unix=NOW, failure_age_s=1.0))
    assert early.kind == "nothing"                    # a round that never stepped: see who else reports
    action = decide(View(record, available=("a", "b", "c"), reports=reports, now_unix=NOW, failure_age_s=6.0))
    assert action.kind == "start_round" and action.late == ("c",)
    unreachable = MappingProxyType({n: replace(r, detail="a could not reach c's workers' store 10.0.0.3:29400",
                                               cause="network") for n, r in reports.items()})
    named = decide(View(record, available=("a", "b", "c"), reports=unreachable, now_unix=NOW, failure_age_s=1.0))
    assert named.kind == "start_round" and named.late == ()    # a wiring fault is said at once, not slowness


def test_a_crash_in_a_round_that_never_stepped_restarts_at_once() -> None:
    """Recovery must not wait for the late-member grace when nobody timed out: a box died (its order not taken,
    a peer's connection reset)."""
    crashed = MappingProxyType({"b": MemberReport(job_id="j", node_id="b", round=0, phase="prepare_failed",
                                                  outcome="failed", detail="did not take the round order")})
    action = decide(View(job(round_info(0)), available=("a", "c"), reports=crashed, now_unix=NOW, failure_age_s=0.0))
    assert action.kind == "start_round" and action.late == ()


def test_a_member_silent_while_rank0s_workers_store_waited_for_it_is_late_not_unreachable() -> None:
    """The store's sentence says who waited ("could not reach a's workers' store ... (2 of 3 joined)"), not who
    failed: the silent member was still starting. It is waited for, counted late, and no network back-off follows."""
    waited = ("b and c could not reach a's workers' store at 10.0.0.1:29400 (2 of 3 joined); check the collective "
              "interface of a (--collective-interface, or leave it unset to choose automatically)")
    reports = MappingProxyType({"a": MemberReport(job_id="j", node_id="a", round=0, phase="exited", outcome="failed",
                                                  detail=waited, cause="network"),
                                "b": MemberReport(job_id="j", node_id="b", round=0, phase="exited", outcome="failed",
                                                  detail="b: agent exit 1")})
    record = job(round_info(0))
    early = decide(View(record, available=("a", "b", "c"), reports=reports, now_unix=NOW, failure_age_s=1.0))
    assert early.kind == "nothing"                    # c may yet say it could not connect
    action = decide(View(record, available=("a", "b", "c"), reports=reports, now_unix=NOW, failure_age_s=6.0))
    assert action.kind == "start_round" and action.late == ("c",)
    assert not network_failure(reports)
    refused = MemberReport(job_id="j", node_id="c", round=0, phase="exited", outcome="failed", cause="network",
                           detail="c could not reach a's workers' store 10.0.0.1:29400 (connection refused)")
    with_c = MappingProxyType({**reports, "c": refused})
    named = decide(View(record, available=("a", "b", "c"), reports=with_c, now_unix=NOW, failure_age_s=1.0))
    assert named.kind == "start_round" and named.late == () and "connection refused" in named.reason
    assert network_failure(with_c)


UNFIT_DETAIL = ("c: MemoryBoundError: c:0: not one row of cutoff_len 4096 fits in its GPU (NVIDIA GeForce RTX 2080 Ti, "
                "10.7 GiB, 10% kept free); lower cutoff_len, ...")


def unfit_reports(number: int) -> MappingProxyType[str, MemberReport]:
    return MappingProxyType({"c": MemberReport(job_id="j", node_id="c", round=number, phase="exited",
                                               outcome="failed", detail=UNFIT_DETAIL, cause="unfit")})


def test_a_box_whose_gpu_holds_not_one_row_is_left_out_and_the_others_go_on() -> None:
    action = decide(View(job(round_info(0)), available=("a", "b", "c"), reports=unfit_reports(0), now_unix=NOW))
    assert action.kind == "start_round" and action.members == ("a", "b") and action.left_out == ("c",)
    assert action.reason.startswith(UNFIT_DETAIL) and "member c left out (tried again in 10 min)" in action.reason


def test_without_enough_other_boxes_for_min_nodes_the_job_fails_saying_which_box_could_not_take_part() -> None:
    action = decide(View(job(round_info(0), min_nodes=3), available=("a", "b", "c"), reports=unfit_reports(0),
                         now_unix=NOW))
    assert action.kind == "fail" and action.reason == f"{UNFIT_DETAIL}; 2 other box(es) for min_nodes 3"


def test_a_memory_bound_error_is_the_box_unfit_not_the_job_deterministic() -> None:
    from p2pft.jobs.exit_report import UNFIT, failed_exit
    from p2pft.launch.worker_error import WorkerError

    error = WorkerError(rank=2, type="MemoryBoundError", message="c:0: not one row fits", deterministic=True)
    assert failed_exit("c", 1, error, None)[1] == UNFIT
    data_error = WorkerError(rank=2, type="DataError", message="row 3: no output", deterministic=True)
    assert failed_exit("c", 1, data_error, None)[1] == "deterministic"
