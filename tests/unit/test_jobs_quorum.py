"""The partition safety rule (p2pft.jobs.quorum): at most one side of any cut may make progress on a job."""

from __future__ import annotations

from itertools import combinations

from hypothesis import given
from hypothesis import strategies as st

from p2pft.jobs.model import JobRecord, RoundInfo
from p2pft.jobs.quorum import job_membership, quorum
from tests.specs import job_spec


def record(members: tuple[str, ...], coordinator: str = "a") -> JobRecord:
    rounds = (RoundInfo(round=0, reason="job submitted", coordinator=coordinator, members=members, addresses={},
                        plan={"entries": []}, store="127.0.0.1:1", resume_step=None),) if members else ()
    return JobRecord(job_id="j", spec=job_spec(), submitter="a", coordinator=coordinator, rounds=rounds)


def test_majority_side_continues_minority_pauses() -> None:
    three = record(("a", "b", "c"))
    assert quorum(three, ["b", "c"], "b").holds            # b and c may take over without a
    cut_off = quorum(three, [], "a")
    assert not cut_off.holds and cut_off.message == ("paused: reaches 1 of 3 members of the job; waiting for "
                                                      "b, c (lost, or cut off by the network)")


def test_two_box_job_goes_on_where_the_coordinator_is() -> None:
    two = record(("a", "b"), coordinator="a")
    assert quorum(two, [], "a").holds
    assert not quorum(two, [], "b").holds                  # b waits, even when a really died (documented)


def test_before_any_round_the_submitter_alone_is_the_membership() -> None:
    fresh = record(())
    assert job_membership(fresh) == ("a",) and quorum(fresh, [], "a").holds


@given(st.integers(min_value=1, max_value=7), st.data())
def test_no_cut_lets_both_sides_progress(size: int, data: st.DataObject) -> None:
    members = tuple("abcdefg"[:size])
    coordinator = data.draw(st.sampled_from(members))
    job = record(members, coordinator)
    for k in range(size + 1):
        for side in combinations(members, k):
            other = tuple(m for m in members if m not in side)
            left = bool(side) and quorum(job, side, side[0]).holds
            right = bool(other) and quorum(job, other, other[0]).holds
            assert not (left and right), (side, other)
            if not other:
                assert left  # nobody cut off: the job goes on


def test_a_restarted_box_does_not_take_over_from_a_coordinator_it_has_not_met() -> None:
    from p2pft.jobs.quorum import may_take_over

    three = record(("a", "b", "c"))
    # b just restarted: it hears c, not yet a; that is not "a lost"
    assert not may_take_over(three, ["c"], "b", coordinator_known=False, uptime_s=1.2, grace_s=10.0)
    assert may_take_over(three, ["c"], "b", coordinator_known=False, uptime_s=11.0, grace_s=10.0)
    assert may_take_over(three, ["c"], "b", coordinator_known=True, uptime_s=1.2, grace_s=10.0)
    assert not may_take_over(three, [], "b", coordinator_known=True, uptime_s=60.0, grace_s=10.0)


def test_a_newer_term_beats_an_older_copy_that_says_the_job_ended() -> None:
    from dataclasses import replace

    from p2pft.jobs.quorum import freshness

    old_ended = replace(record(("a", "b", "c")), status="failed", term=0)
    taken_over = replace(record(("b", "c"), coordinator="b"), term=1)
    assert freshness(taken_over) > freshness(old_ended)
    assert freshness(replace(taken_over, status="succeeded")) > freshness(taken_over)


def test_a_view_one_round_behind_never_makes_a_second_quorum() -> None:
    """Round 1 (a, b) was ordered but the cut came before b heard of it: a has rounds 0 and 1, b and c only
    round 0. Whatever the cut, the two views never both hold."""
    from dataclasses import replace

    old = record(("a", "b", "c"))
    newer = replace(old, rounds=(*old.rounds, replace(old.rounds[0], round=1, members=("a", "b"))))
    boxes = ("a", "b", "c")
    for k in range(4):
        for side in combinations(boxes, k):
            other = tuple(m for m in boxes if m not in side)
            views = {"a": newer, "b": old, "c": old}
            left = bool(side) and quorum(views[side[0]], side, side[0]).holds
            right = bool(other) and quorum(views[other[0]], other, other[0]).holds
            assert not (left and right), (side, other)
    assert not quorum(newer, [], "a").holds            # a alone: half of (a, b), but 1 of the 3 before
    assert quorum(old, ["c"], "b").holds               # b and c: the majority of what they know
