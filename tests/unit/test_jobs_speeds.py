"""Measured speeds from metric lines, and the speeds a round is planned with (p2pft.jobs.speeds)."""

from __future__ import annotations

from p2pft.jobs.speeds import planning_speeds, speeds_in_lines
from p2pft.planning.placement import NodePlacement


def test_the_newest_usable_measurement_of_each_rank_wins() -> None:
    lines = [{"step": 1, "speeds": [{"node_id": "a", "local_rank": 0, "samples_per_s": 4.0},
                                    {"node_id": "b", "local_rank": 0, "samples_per_s": None}]},
             {"step": 2, "speeds": [{"node_id": "a", "local_rank": 0, "samples_per_s": 5.0},
                                    {"node_id": "b", "local_rank": 0, "samples_per_s": 0}, "junk"]},
             {"step": 3}]
    assert speeds_in_lines(lines) == {("a", 0): 5.0}


def test_unmeasured_ranks_get_their_device_estimate_in_measured_units() -> None:
    nodes = [NodePlacement("a", "cuda", (0,)), NodePlacement("b", "cuda", (0, 1))]
    names = {"a": ("NVIDIA GeForce RTX 3090",), "b": ("NVIDIA GeForce RTX 4090", "NVIDIA GeForce RTX 3090")}
    speeds = planning_speeds(nodes, {("a", 0): 20.0}, names)
    assert speeds[("a", 0)] == 20.0
    assert speeds[("b", 1)] == 20.0                  # the same card as a's: the same speed
    assert speeds[("b", 0)] > speeds[("b", 1)]       # a 4090 is estimated faster than a 3090
    assert set(speeds) == {("a", 0), ("b", 0), ("b", 1)}


def test_nothing_measured_plans_from_relative_estimates() -> None:
    speeds = planning_speeds([NodePlacement("a", "cpu", (0,)), NodePlacement("b", "cpu", (0,))], {}, {})
    assert speeds[("a", 0)] == speeds[("b", 0)] > 0


def test_summary_gets_each_rounds_newest_measured_speeds() -> None:
    from p2pft.jobs.speeds import speeds_by_round

    lines = [{"step": 1, "plan_round": 0, "speeds": [{"node_id": "a", "local_rank": 0, "samples_per_s": 2.0}]},
             {"step": 2, "plan_round": 0, "speeds": [{"node_id": "a", "local_rank": 0, "samples_per_s": 3.0}]},
             {"step": 3, "plan_round": 1, "speeds": None},
             {"step": 4, "plan_round": 2, "speeds": [{"node_id": "b", "local_rank": 1, "samples_per_s": 5.0}]}]
    assert speeds_by_round(lines) == {0: [{"node_id": "a", "local_rank": 0, "samples_per_s": 3.0}],
                                      2: [{"node_id": "b", "local_rank": 1, "samples_per_s": 5.0}]}
