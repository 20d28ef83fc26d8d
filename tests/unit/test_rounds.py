from __future__ import annotations

from dataclasses import replace
from types import MappingProxyType

from p2pft.launch.agent import AgentOutcome
from p2pft.launch.rounds import (
    Continue,
    CopyCheckpoint,
    CurrentRound,
    FailJob,
    FinishJob,
    JobView,
    StartRound,
    StopRound,
    WaitForNodes,
    decide,
)
from p2pft.planning.placement import Candidate, CandidateDevice, PlacementNeeds

CPU = (CandidateDevice("cpu", 0),)


def node(node_id: str, state: str = "idle") -> Candidate:
    return Candidate(node_id, state, CPU)


def view(*candidates: Candidate, **overrides: object) -> JobView:
    base = JobView(job_id="j", needs=PlacementNeeds(min_nodes=2, max_procs_per_node=1),
                   candidates=candidates, now=100.0)
    return replace(base, **overrides)  # type: ignore[arg-type]


def running(*members: str, number: int = 4, **overrides: object) -> CurrentRound:
    return replace(CurrentRound(number=number, members=members, started_at=50.0), **overrides)  # type: ignore[arg-type]


def exits(**outcomes: AgentOutcome) -> MappingProxyType[str, AgentOutcome]:
    return MappingProxyType(outcomes)


def held(**steps: set[int]) -> MappingProxyType[str, frozenset[int]]:
    return MappingProxyType({n: frozenset(s) for n, s in steps.items()})


def test_first_round_starts_from_scratch_with_every_eligible_node() -> None:
    decision = decide(view(node("b"), node("a"), node("c", "draining")))
    assert isinstance(decision, StartRound)
    assert (decision.round, decision.placement.node_ids, decision.resume_step) == (1, ("a", "b"), None)
    assert decision.reason == "first round"


def test_too_few_nodes_waits_with_reasons() -> None:
    decision = decide(view(node("a"), node("b", "lost")))
    assert decision == WaitForNodes("waiting: 1 of 2 min_nodes available (b: lost)")


def test_lost_member_stops_the_round_at_once() -> None:
    decision = decide(view(node("a", "busy"), node("b", "lost"), current=running("a", "b")))
    assert decision == StopRound(4, "kill", "member b lost")


def test_failed_agent_stops_the_others() -> None:
    current = running("a", "b", exits=exits(b=AgentOutcome.FAILED))
    assert decide(view(node("a", "busy"), node("b", "busy"), current=current)) == StopRound(
        4, "kill", "agent on b failed")


def test_kill_in_progress_waits_for_agents() -> None:
    current = running("a", "b", stopping="kill", exits=exits(b=AgentOutcome.FAILED))
    assert isinstance(decide(view(node("a", "busy"), node("b", "lost"), current=current)), Continue)


def test_after_a_loss_the_survivors_resume_from_the_newest_checkpoint_they_hold() -> None:
    current = running("a", "b", "c", stopping="kill",
                      exits=exits(a=AgentOutcome.FAILED, b=AgentOutcome.FAILED, c=AgentOutcome.FAILED))
    decision = decide(view(node("a", "busy"), node("b", "busy"), node("c", "lost"), current=current, last_round=4,
                           checkpoints=held(a={10, 20}, b={10, 20}, c={10, 20, 30})))
    assert isinstance(decision, StartRound)
    assert (decision.round, decision.placement.node_ids, decision.resume_step) == (5, ("a", "b"), 20)
    assert decision.reason == "members -c"


def test_missing_checkpoint_is_copied_before_the_round() -> None:
    current = running("a", "b", exits=exits(a=AgentOutcome.STOPPED_ON_REQUEST, b=AgentOutcome.STOPPED_ON_REQUEST))
    decision = decide(view(node("a"), node("b"), node("d"), current=current, last_round=4,
                           checkpoints=held(a={30}, b={30}, d={10})))
    assert decision == CopyCheckpoint(30, "a", ("d",))


def test_torn_or_unreported_steps_never_count() -> None:
    # Only steps reported usable (COMMITTED + verified) appear in checkpoints: a node with none is a target.
    decision = decide(view(node("a"), node("b"), checkpoints=held(a={5}), last_round=2))
    assert decision == CopyCheckpoint(5, "a", ("b",))


def test_drain_request_drains_the_round_then_leaves_the_node_out() -> None:
    current = running("a", "b", "c")
    candidates = (node("a", "busy"), node("b", "busy"), node("c", "busy"))
    first = decide(view(*candidates, current=current, drain_requested=frozenset({"c"})))
    assert first == StopRound(4, "drain", "member c drains")
    drained = replace(current, stopping="drain", stop_requested_at=100.0,
                      exits=exits(a=AgentOutcome.STOPPED_ON_REQUEST, b=AgentOutcome.STOPPED_ON_REQUEST,
                                  c=AgentOutcome.STOPPED_ON_REQUEST))
    second = decide(view(*candidates, current=drained, last_round=4, drain_requested=frozenset({"c"}),
                         checkpoints=held(a={40}, b={40}, c={40})))
    assert isinstance(second, StartRound)
    assert (second.placement.node_ids, second.resume_step, second.reason) == (("a", "b"), 40, "members -c")


def test_a_drain_that_hangs_becomes_a_kill() -> None:
    current = running("a", "b", stopping="drain", stop_requested_at=10.0)
    decision = decide(view(node("a", "busy"), node("b", "busy"), current=current, drain_timeout_s=60.0))
    assert decision == StopRound(4, "kill", "drain did not end within 60 s")


def test_joiner_is_taken_only_after_settling() -> None:
    candidates = (node("a", "busy"), node("b", "busy"), node("c"))
    current = running("a", "b")
    fresh = view(*candidates, current=current, eligible_since=MappingProxyType({"c": 98.0}))
    assert isinstance(decide(fresh), Continue)
    settled = replace(fresh, eligible_since=MappingProxyType({"c": 90.0}))
    assert decide(settled) == StopRound(4, "drain", "node c joins")


def test_no_join_at_max_nodes() -> None:
    candidates = (node("a", "busy"), node("b", "busy"), node("c"))
    settled = view(*candidates, current=running("a", "b"), eligible_since=MappingProxyType({"c": 0.0}),
                   needs=PlacementNeeds(min_nodes=1, max_nodes=2))
    assert isinstance(decide(settled), Continue)


def test_finished_round_finishes_the_job() -> None:
    current = running("a", "b", exits=exits(a=AgentOutcome.FINISHED))
    assert decide(view(node("a", "busy"), node("b", "busy"), current=current)) == FinishJob()


def test_repeated_failures_fail_the_job() -> None:
    decision = decide(view(node("a"), node("b"), consecutive_failures=3, last_round=7))
    assert isinstance(decision, FailJob)
    assert "3 rounds in a row" in decision.reason


def test_new_coordinator_continues_the_round_numbers() -> None:
    decision = decide(view(node("a"), node("b"), last_round=9, checkpoints=held(a={50}, b={50})))
    assert isinstance(decision, StartRound)
    assert (decision.round, decision.resume_step, decision.reason) == (10, 50, "new coordinator")
