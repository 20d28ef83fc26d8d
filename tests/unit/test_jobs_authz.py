"""Who may call what on JobService (pure decisions on the caller's certificate identity)."""

from __future__ import annotations

from dataclasses import replace

import pytest

from p2pft.jobs import authz
from p2pft.jobs.model import JobRecord, MemberReport, RoundInfo, RoundOrder
from tests.specs import job_spec

ME, COORD, MEMBER, SUBMITTER, STRANGER = "me", "coord", "member", "submitter", "stranger"


def record(*, coordinator: str = COORD, term: int = 3, members: tuple[str, ...] = (ME, MEMBER)) -> JobRecord:
    info = RoundInfo(round=1, reason="r", coordinator=coordinator, members=members, addresses={}, plan={},
                     store="h:1", resume_step=None)
    return JobRecord(job_id="job-1", spec=job_spec(), submitter=SUBMITTER, coordinator=coordinator, term=term,
                     status="running", rounds=(info,))


def order_from(coordinator: str, term: int) -> RoundOrder:
    rec = record(coordinator=coordinator, term=term)
    return RoundOrder(record=rec, round=rec.rounds[-1])


def test_job_nodes_are_submitter_coordinator_and_every_round_member() -> None:
    assert authz.job_nodes(record()) == {SUBMITTER, COORD, ME, MEMBER}


@pytest.mark.parametrize("method", sorted(authz.LOCAL_ONLY))
def test_cli_calls_only_from_this_box_itself(method: str) -> None:
    assert authz.local_only(method, ME, ME) is None
    refusal = authz.local_only(method, MEMBER, ME)
    assert refusal is not None and method in refusal and "\n" not in refusal


def test_report_only_for_the_callers_own_node() -> None:
    own = MemberReport(job_id="job-1", node_id=MEMBER, round=1)
    assert authz.may_report(MEMBER, own, record(), ME) is None
    assert authz.may_report(MEMBER, own, None, ME) is None           # a report may come before the order
    forged = replace(own, node_id=COORD)
    assert "reports only for itself" in (authz.may_report(MEMBER, forged, record(), ME) or "")


def test_report_to_the_coordinator_only_from_a_box_of_the_job() -> None:
    mine = record(coordinator=ME)
    stranger = MemberReport(job_id="job-1", node_id=STRANGER, round=1, outcome="finished")
    assert "no box of job" in (authz.may_report(STRANGER, stranger, mine, ME) or "")
    assert authz.may_report(MEMBER, replace(stranger, node_id=MEMBER), mine, ME) is None
    assert authz.may_report(STRANGER, stranger, record(), ME) is None   # not the coordinator here: it decides nothing


def test_round_order_only_from_the_coordinator_its_record_names() -> None:
    assert authz.may_order(COORD, order_from(COORD, 3), record()) is None
    assert authz.may_order(COORD, order_from(COORD, 0), None) is None    # a new job
    assert "names coordinator" in (authz.may_order(MEMBER, order_from(COORD, 3), record()) or "")


def test_round_order_never_lowers_the_term_nor_swaps_the_coordinator_of_a_term() -> None:
    assert "older than 3" in (authz.may_order(COORD, order_from(COORD, 2), record()) or "")
    assert "which is 'coord'" in (authz.may_order(MEMBER, order_from(MEMBER, 3), record()) or "")
    assert authz.may_order(MEMBER, order_from(MEMBER, 4), record()) is None   # a takeover: a new term


def test_stop_only_from_the_known_or_the_chosen_coordinator() -> None:
    assert authz.may_stop(COORD, "job-1", record(), COORD) is None
    assert authz.may_stop(MEMBER, "job-1", record(), MEMBER) is None      # took over; its record not here yet
    assert "does not coordinate" in (authz.may_stop(MEMBER, "job-1", record(), COORD) or "")
    assert "does not know" in (authz.may_stop(COORD, "job-9", None, None) or "")


def test_share_only_from_a_box_of_the_job_to_a_box_of_the_job_never_lowering_the_term() -> None:
    assert authz.may_share(COORD, record(), record(), ME) is None
    assert authz.may_share(SUBMITTER, record(), record(), ME) is None
    assert "no box of the job" in (authz.may_share(STRANGER, record(), record(), ME) or "")
    assert "older than 3" in (authz.may_share(COORD, record(term=1), record(), ME) or "")
    # A stranger that names itself coordinator of a job this box does not know, with this box not in it.
    outsider = record(coordinator=STRANGER, members=(STRANGER,))
    assert "shared with this box" in (authz.may_share(STRANGER, outsider, None, ME) or "")
    # Same term, another coordinator: only a new term moves the job to another box.
    assert "which is 'coord'" in (authz.may_share(MEMBER, record(coordinator=MEMBER), record(), ME) or "")


def test_cancel_from_this_box_or_a_box_of_the_job() -> None:
    assert authz.may_cancel(ME, ME, None) is None
    assert authz.may_cancel(SUBMITTER, ME, record()) is None
    assert "no box of this job" in (authz.may_cancel(STRANGER, ME, record()) or "")
    assert authz.may_cancel(SUBMITTER, ME, None) is not None


def test_logs_from_this_box_or_a_box_of_the_job_relaying_this_boxs_worker_log() -> None:
    assert authz.may_read_logs(ME, ME, "", None) is None
    assert authz.may_read_logs(MEMBER, ME, ME, record()) is None
    assert authz.may_read_logs(MEMBER, ME, "", record()) is not None      # the job's lines: local CLI only
    assert authz.may_read_logs(STRANGER, ME, ME, record()) is not None
