"""The chaos campaign's fault plan (tests/chaos/plan.py, pure): reproducible from its seed, and never asking for
a fault the mesh cannot take at that point."""

from __future__ import annotations

import pytest

from tests.chaos import plan


def test_the_same_seed_gives_the_same_plan_and_another_seed_another() -> None:
    first = plan.plan_job(7, 3, 12)
    assert first == plan.plan_job(7, 3, 12)
    assert first != plan.plan_job(8, 3, 12)
    assert first != plan.plan_job(7, 4, 12)


def test_a_plan_keeps_the_mesh_able_to_go_on() -> None:
    for seed in range(200):
        running = plan.START_BOXES
        faults = plan.plan_job(seed, 0, 15)
        assert len(faults) == 15
        for index, fault in enumerate(faults):
            if fault.kind == plan.JOIN:
                assert running < plan.MAX_BOXES
                running += 1
            elif fault.kind == plan.KILL_COORDINATOR_BOX:
                assert running >= plan.START_BOXES and fault.role == plan.COORDINATOR
                running -= 1
            else:
                assert running >= 2
            if fault.kind == plan.DISK_FULL:
                assert index == len(faults) - 1, "a full disk can end the job, so it comes last"
            if fault.kind == plan.STOP_BOX:
                assert fault.hold_s > plan.FAILURE_TIMEOUT_S
            assert 2 <= fault.gap_steps <= 6


def test_every_kind_is_drawn_over_a_campaign() -> None:
    drawn = [f for job in range(12) for f in plan.plan_job(1, job, 10)]
    assert set(plan.count_by_kind(drawn)) == set(plan.ALL_KINDS)


def test_only_the_kinds_asked_for() -> None:
    faults = plan.plan_job(1, 0, 20, kinds=(plan.KILL_WORKERS, plan.NET_CUT))
    assert {f.kind for f in faults} == {plan.KILL_WORKERS, plan.NET_CUT}


def test_an_unknown_kind_is_named() -> None:
    with pytest.raises(ValueError, match="unknown fault kind 'reboot'"):
        plan.plan_job(1, 0, 3, kinds=("reboot",))
