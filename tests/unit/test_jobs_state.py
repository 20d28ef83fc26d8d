"""Pure job decisions, record JSON and the metrics merge (no processes)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from types import MappingProxyType
from typing import Any

import pytest

from p2pft.config.job import JobSpec
from p2pft.jobs.model import (
    JobRecord,
    MemberReport,
    RecordError,
    RoundInfo,
    RoundOrder,
    order_from_json,
    order_to_json,
    record_from_json,
    record_to_json,
    report_from_json,
    report_to_json,
)
from p2pft.jobs.outputs import LineBook, summary
from p2pft.jobs.state import MAX_FRUITLESS_ROUNDS, View, choose_resume, decide, job_coordinator
from p2pft.membership.state import ClusterState, Member
from p2pft.membership.versions import local_versions
from tests.specs import job_spec

SPEC = {"max_steps": 10, "output_dir": "/o", "p2pft": {"global_batch_size": 4, "min_nodes": 1, "max_nodes": 3}}


def typed(spec: dict[str, Any]) -> JobSpec:
    return job_spec(spec["p2pft"], **{k: v for k, v in spec.items() if k != "p2pft"})


def record(*, members: tuple[str, ...] | None = ("a", "b"), status: str = "running", first_step: float | None = 1.0,
           max_nodes: int | None = 3) -> JobRecord:
    spec = {**SPEC, "p2pft": {**SPEC["p2pft"], "max_nodes": max_nodes}}
    rounds = () if members is None else (RoundInfo(
        round=0, reason="job submitted", coordinator="a", members=members, addresses={}, plan={"entries": [
            {"node_id": m, "local_rank": 0, "samples": 1, "micro_batch_size": 1} for m in members]},
        store="127.0.0.1:1", resume_step=None, first_step_unix=first_step),)
    return JobRecord(job_id="j", spec=typed(spec), submitter="a", coordinator="a", status=status, rounds=rounds)


def exited(node: str, outcome: str, *, by_us: bool = False, outputs: bool = False) -> MemberReport:
    return MemberReport(job_id="j", node_id=node, round=0, phase="exited", outcome=outcome, stopped_by_us=by_us,
                        outputs_manifest={"version": 1, "files": []} if outputs else None)


def test_a_new_job_starts_with_the_available_nodes_or_waits() -> None:
    fresh = record(members=None, status="waiting")
    assert decide(View(fresh, available=("a", "b"))).kind == "start_round"
    waiting = decide(View(fresh, available=(), waiting_message="waiting: 0 of 2 min_nodes available"))
    assert waiting.kind == "wait" and "0 of 2" in waiting.reason


def test_a_lost_member_starts_a_round_without_waiting_and_names_the_cause_time() -> None:
    action = decide(View(record(), available=("a",), lost=MappingProxyType({"b": 123.0})))
    assert (action.kind, action.members, action.cause_unix) == ("start_round", ("a",), 123.0)
    assert "b lost" in action.reason


def test_failed_agent_restarts_but_gives_up_after_fruitless_rounds() -> None:
    reports = MappingProxyType({"b": exited("b", "failed")})
    assert decide(View(record(), available=("a", "b"), reports=reports)).kind == "start_round"
    assert decide(View(record(), available=("a", "b"), reports=reports,
                       fruitless=("round 0: x",) * (MAX_FRUITLESS_ROUNDS - 1))).kind == "fail"
    ours = MappingProxyType({"b": exited("b", "failed", by_us=True)})
    assert decide(View(record(), available=("a", "b"), reports=ours)).kind == "nothing"


def test_a_network_failure_waits_briefly_for_the_box_that_could_not_connect() -> None:
    waited = replace(exited("b", "failed"), cause="network", detail="the other members' workers did not reach b")
    early = MappingProxyType({"b": waited})
    assert decide(View(record(), available=("a", "b"), reports=early, failure_age_s=1.0)).kind == "nothing"
    late = decide(View(record(), available=("a", "b"), reports=early, failure_age_s=6.0))
    assert late.kind == "start_round" and late.reason == waited.detail
    named = replace(exited("a", "failed"), cause="network", detail="a could not reach b's workers at 10.1.0.1")
    both = decide(View(record(), available=("a", "b"), reports=MappingProxyType({"a": named, "b": waited})))
    assert both.kind == "start_round" and both.reason == named.detail
    # A crash (no network cause) restarts at once: recovery time is not spent waiting.
    crash = MappingProxyType({"b": exited("b", "failed")})
    assert decide(View(record(), available=("a",), reports=crash, failure_age_s=0.0)).kind == "start_round"


def test_finish_needs_the_outputs_holder() -> None:
    only_b = MappingProxyType({"b": exited("b", "finished")})
    assert decide(View(record(), available=("a", "b"), reports=only_b)).kind == "nothing"
    both = MappingProxyType({"b": exited("b", "finished"), "a": exited("a", "finished", outputs=True)})
    assert decide(View(record(), available=("a", "b"), reports=both)).kind == "finish"


def test_join_and_drain_stop_the_round_at_a_step_boundary_then_restart() -> None:
    join = decide(View(record(), available=("a", "b", "c")))
    assert join.kind == "request_stop" and "c joins" in join.reason
    assert decide(View(record(max_nodes=2), available=("a", "b", "c"))).kind == "nothing"
    drain = decide(View(record(), available=("a",), draining=frozenset({"b"})))
    assert drain.kind == "request_stop" and "b drains" in drain.reason
    stopped = MappingProxyType({"a": exited("a", "stopped_on_request"), "b": exited("b", "stopped_on_request")})
    restart = decide(View(record(), available=("a",), reports=stopped, stop_requested="member b drains"))
    assert (restart.kind, restart.members, restart.reason) == ("start_round", ("a",), "member b drains")


def test_a_box_that_drained_itself_is_left_out_before_its_draining_state_arrives() -> None:
    # `p2pft drain` on b: b's workers stop the round themselves; the coordinator may not have heard b's
    # "draining" heartbeat yet, so placement still offers b. Its exit report says it leaves.
    stopped = MappingProxyType({"a": exited("a", "stopped_on_request"),
                                "b": replace(exited("b", "stopped_on_request"), leaving=True)})
    action = decide(View(record(), available=("a", "b"), reports=stopped))
    assert (action.kind, action.members, action.reason) == ("start_round", ("a",), "member b drains")
    spec = {**SPEC, "p2pft": {**SPEC["p2pft"], "min_nodes": 2}}
    needs_two = decide(View(replace(record(), spec=typed(spec)), available=("a", "b"), reports=stopped))
    assert needs_two.kind == "wait" and "1 of 2 min_nodes" in needs_two.reason


def test_a_join_before_the_first_step_restarts_at_once() -> None:
    action = decide(View(record(first_step=None), available=("a", "b", "c")))
    assert action.kind == "start_round" and action.members == ("a", "b", "c")


def test_resume_from_the_newest_step_a_live_box_holds() -> None:
    holdings = {"a": (2, 4), "b": (2, 6), "c": (8,)}
    assert choose_resume(holdings, frozenset({"a", "b"})) == (6, ("b",))
    assert choose_resume(holdings, frozenset({"a", "b", "c"})) == (8, ("c",))
    assert choose_resume({}, frozenset({"a"})) == (None, ())


def cluster_state(states: dict[str, str]) -> ClusterState:
    versions = local_versions()
    members = {n: Member(node_id=n, state=s, versions=versions) for n, s in states.items()}  # type: ignore[arg-type]
    return ClusterState(self_id=sorted(states)[0], self_versions=versions, members=MappingProxyType(members))


def test_coordinator_stays_while_alive_then_moves_to_the_lowest_live_job_member() -> None:
    rec = replace(record(members=("a", "b", "c")), coordinator="b")
    assert job_coordinator(rec, cluster_state({"a": "idle", "b": "busy", "c": "busy"})) == "b"
    assert job_coordinator(rec, cluster_state({"a": "lost", "b": "lost", "c": "busy", "d": "idle"})) == "c"
    assert job_coordinator(rec, cluster_state({"a": "idle", "b": "draining", "c": "busy"})) == "a"


def test_records_orders_and_reports_survive_json(tmp_path: Path) -> None:
    rec = record()
    assert record_from_json(record_to_json(rec)) == rec
    order = RoundOrder(rec, rec.rounds[0])
    assert order_from_json(order_to_json(order)) == order
    report = exited("a", "finished", outputs=True)
    assert report_from_json(report_to_json(report)) == report
    with pytest.raises(RecordError, match="status"):
        record_from_json(record_to_json(replace(rec, status="exploded")))
    with pytest.raises(RecordError, match="not JSON"):
        order_from_json("{nope")


def test_metrics_keep_one_line_per_step_from_the_newest_round(tmp_path: Path) -> None:
    book = LineBook(path=tmp_path / "lines.jsonl")
    book.add("metrics", [{"round": 0, "line": {"step": s, "loss": 1.0}} for s in (1, 2, 3)])
    book.add("metrics", [{"round": 1, "line": {"step": s, "loss": 2.0}} for s in (3, 4)])
    book.add("metrics", [{"round": 1, "line": {"step": 4, "loss": 9.0}}])  # a resend: ignored
    book.add("ledger", [{"round": r, "line": {"step": 3, "rank": 0, "sample_ids": [r]}} for r in (0, 1)])
    merged = book.merged_metrics()
    assert [(m["step"], m["loss"]) for m in merged] == [(1, 1.0), (2, 1.0), (3, 2.0), (4, 2.0)]
    assert book.merged_ledger() == [{"step": 3, "rank": 0, "sample_ids": [1]}]
    again = LineBook.load(tmp_path / "lines.jsonl")
    assert again.merged_metrics() == merged and again.merged_ledger() == book.merged_ledger()
    assert summary(record(), again)["steps"] == 4


def test_yield_when_busy_leaves_on_foreign_gpu_use_and_returns_once_free() -> None:
    from p2pft.jobs.yielding import FREE_FOR_S, foreign_gpu_pids, next_step
    from p2pft.membership.state import DeviceInfo

    gpu = DeviceInfo(kind="cuda", index=0, name="RTX", processes=(10, 11, 99))
    cpu = DeviceInfo(kind="cpu", index=0, name="cpu", processes=(5,))
    assert foreign_gpu_pids([gpu, cpu], own_pids={10, 11}) == (99,)
    assert next_step(yielded=False, foreign=(99,), free_since=None, now=0.0) == "yield"
    assert next_step(yielded=True, foreign=(99,), free_since=None, now=50.0) == "stay"
    assert next_step(yielded=True, foreign=(), free_since=0.0, now=FREE_FOR_S / 2) == "stay"
    assert next_step(yielded=True, foreign=(), free_since=0.0, now=FREE_FOR_S) == "return"


def test_yield_when_busy_is_a_daemon_setting_from_flag_env_or_file(tmp_path) -> None:
    from p2pft.daemon.settings import SettingsError, parse_settings

    base = ["--state-dir", str(tmp_path)]
    assert parse_settings(base, environ={}).yield_when_busy is False
    assert parse_settings([*base, "--yield-when-busy"], environ={}).yield_when_busy is True
    assert parse_settings(base, environ={"P2PFT_YIELD_WHEN_BUSY": "yes"}).yield_when_busy is True
    config = tmp_path / "p2pftd.yaml"
    config.write_text("yield-when-busy: true\n")
    assert parse_settings([*base, "--config", str(config)], environ={}).yield_when_busy is True
    with pytest.raises(SettingsError, match="yield_when_busy='maybe'"):
        parse_settings(base, environ={"P2PFT_YIELD_WHEN_BUSY": "maybe"})


def test_a_round_after_a_late_member_waits_longer_at_the_rendezvous() -> None:
    from p2pft.jobs.round_plan import JOIN_TIMEOUT_S, join_timeout

    low, high = JOIN_TIMEOUT_S
    never_stepped = record(first_step=None)
    late = "b: not every member joined the rendezvous on 10.0.0.1:47342 in time: a box too slow to start"
    assert join_timeout(never_stepped, "member c joins") == low
    assert join_timeout(never_stepped, late) == 2 * low
    longer = replace(never_stepped, rounds=(replace(never_stepped.rounds[-1], join_timeout_s=8 * low),))
    assert join_timeout(longer, late) == min(high, 16 * low)
    assert join_timeout(longer, "member c lost") == 8 * low      # still starting: keep waiting that long
    stepped = replace(longer, rounds=(replace(longer.rounds[-1], first_step=3),))
    assert join_timeout(stepped, late) == low                    # it stepped: back to the default
    action = decide(View(never_stepped, available=("a", "b"), reports={
        "b": MemberReport(job_id="j", node_id="b", round=0, phase="exited", outcome="failed", detail=late,
                          cause="network"),
        "a": MemberReport(job_id="j", node_id="a", round=0, phase="exited", outcome="failed", detail=late,
                          cause="network")}))
    assert action.kind == "start_round" and action.round is not None and action.round.join_timeout_s == 2 * low
