"""Chaos campaign item 9, the decision (pure): a coordinator that asked the job's boxes for their checkpoint
holdings (a restart, a takeover) plans its first round only once the round's members answered, or after a
bounded wait; one that asked nobody never waits. The in-process scenario is tests/unit/test_takeover_holdings.py."""

from __future__ import annotations

from dataclasses import replace
from types import MappingProxyType

from p2pft.jobs.holdings_sync import HOLDINGS_WAIT_S, holdings_pending
from p2pft.jobs.state import View, decide
from tests.unit.test_jobs_state import record

COMMITTED = replace(record(members=("a", "b", "c")), checkpoints=(5, 10, 15), durable=(5, 10))


def taken_over(**changes: object) -> View:
    view = View(COMMITTED, available=("b", "c"), takeover="coordinator a lost", alive=frozenset({"b", "c"}),
                asked_holdings_s=1.0, unanswered=frozenset({"b", "c"}))
    return replace(view, **changes)


def test_a_new_coordinator_waits_for_the_holdings_of_the_rounds_members_then_resumes_from_the_newest() -> None:
    assert decide(taken_over()).kind == "nothing"
    # one answer is not enough: the other box may hold a newer step
    assert decide(taken_over(unanswered=frozenset({"c"}), holdings=MappingProxyType({"b": (5, 10)}))).kind == "nothing"
    answered = decide(taken_over(unanswered=frozenset(), holdings=MappingProxyType({"b": (5, 10), "c": (5, 10, 15)})))
    assert answered.kind == "start_round" and answered.round is not None
    assert answered.round.resume_step == 15 and answered.round.holders == ("c",)


def test_the_wait_is_bounded_and_only_for_the_round_s_members() -> None:
    late = decide(taken_over(asked_holdings_s=HOLDINGS_WAIT_S, holdings=MappingProxyType({"b": (5, 10)}),
                             unanswered=frozenset({"c"})))
    assert late.kind == "start_round" and late.round is not None and late.round.resume_step == 10
    # a box that asked and is not in the round (dead, left out) is not waited for
    assert not holdings_pending(frozenset({"a"}), ("b", "c"), 0.5)
    assert holdings_pending(frozenset({"c"}), ("b", "c"), 0.5)


def test_a_coordinator_that_asked_nobody_never_waits() -> None:
    # a member crashed, the coordinator alive with the holdings: the next round starts at once
    crashed = View(COMMITTED, available=("a", "b"), lost=MappingProxyType({"c": 1.0}),
                   holdings=MappingProxyType({"a": (5, 10, 15), "b": (5, 10)}), alive=frozenset({"a", "b"}))
    action = decide(crashed)
    assert action.kind == "start_round" and action.round is not None and action.round.resume_step == 15
