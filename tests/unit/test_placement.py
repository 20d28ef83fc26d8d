from __future__ import annotations

import pytest

from p2pft.planning.placement import (
    Candidate,
    CandidateDevice,
    Placed,
    PlacementError,
    PlacementNeeds,
    Waiting,
    place,
)


def gpus(*memory_mb: int) -> tuple[CandidateDevice, ...]:
    return tuple(CandidateDevice("cuda", index, memory) for index, memory in enumerate(memory_mb))


CPU = (CandidateDevice("cpu", 0, 0),)


def placed(result: Placed | Waiting) -> Placed:
    assert isinstance(result, Placed), result
    return result


def test_all_idle_nodes_take_part_with_every_gpu() -> None:
    result = placed(place([Candidate("b", "idle", gpus(24000)), Candidate("a", "idle", gpus(24000, 24000))],
                          PlacementNeeds(min_nodes=2)))
    assert result.node_ids == ("a", "b")  # bigger node first
    assert [(n.node_id, n.device_indices, n.device_kind) for n in result.nodes] == [
        ("a", (0, 1), "cuda"), ("b", (0,), "cuda")]
    assert dict(result.left_out) == {}


def test_waiting_names_every_reason() -> None:
    result = place(
        [
            Candidate("a", "idle", gpus(24000)),
            Candidate("b", "draining", gpus(24000)),
            Candidate("c", "idle", gpus(8000)),
            Candidate("d", "lost", gpus(24000)),
            Candidate("e", "busy", gpus(24000)),
            Candidate("f", "idle", gpus(24000), incompatible_reason="torch 2.12 != 2.13"),
        ],
        PlacementNeeds(min_nodes=3, min_device_memory_mb=12000),
    )
    assert isinstance(result, Waiting)
    assert (result.available, result.min_nodes) == (1, 3)
    assert dict(result.reasons) == {
        "b": "draining",
        "c": "cuda memory 8000 MB < 12000 MB needed per device",
        "d": "lost",
        "e": "busy with another job",
        "f": "incompatible: torch 2.12 != 2.13",
    }
    assert result.message.startswith("waiting: 1 of 3 min_nodes available (b: draining; c: cuda memory")


def test_busy_with_this_job_stays_eligible() -> None:
    result = placed(place([Candidate("a", "busy", gpus(24000), in_this_job=True)], PlacementNeeds()))
    assert result.node_ids == ("a",)


def test_only_fitting_gpus_of_a_node_are_used() -> None:
    result = placed(place([Candidate("a", "idle", gpus(24000, 8000, 16000))],
                          PlacementNeeds(min_device_memory_mb=12000)))
    assert result.nodes[0].device_indices == (0, 2)


def test_cpu_only_nodes_are_left_out_when_the_job_runs_on_gpus() -> None:
    result = placed(place([Candidate("a", "idle", gpus(24000)), Candidate("b", "idle", CPU)], PlacementNeeds()))
    assert result.node_ids == ("a",)
    assert dict(result.left_out) == {"b": "no cuda device (this job runs on cuda)"}


def test_cpu_cluster_runs_on_cpu_one_process_per_node() -> None:
    result = placed(place([Candidate("a", "idle", CPU), Candidate("b", "idle", CPU)],
                          PlacementNeeds(min_nodes=2, max_procs_per_node=1, min_device_memory_mb=1000)))
    assert [(n.node_id, n.device_kind, n.nproc) for n in result.nodes] == [("a", "cpu", 1), ("b", "cpu", 1)]


def test_max_nodes_keeps_the_previous_members() -> None:
    candidates = [Candidate(node, "idle", gpus(24000)) for node in ("a", "b", "c")]
    result = placed(place(candidates, PlacementNeeds(max_nodes=2), prefer=frozenset({"c", "b"})))
    assert result.node_ids == ("b", "c")
    assert dict(result.left_out) == {"a": "max_nodes 2 reached"}


def test_placement_is_independent_of_input_order() -> None:
    candidates = [Candidate(node, "idle", gpus(24000)) for node in ("c", "a", "b")]
    assert place(candidates, PlacementNeeds(max_nodes=2)) == place(candidates[::-1], PlacementNeeds(max_nodes=2))


@pytest.mark.parametrize(
    ("needs", "field"),
    [
        (PlacementNeeds(min_nodes=0), "min_nodes"),
        (PlacementNeeds(min_nodes=3, max_nodes=2), "max_nodes"),
        (PlacementNeeds(max_procs_per_node=0), "max_procs_per_node"),
    ],
)
def test_impossible_needs_are_one_line_errors(needs: PlacementNeeds, field: str) -> None:
    with pytest.raises(PlacementError, match=field):
        place([], needs)


def test_duplicate_node_is_rejected() -> None:
    with pytest.raises(PlacementError, match="twice"):
        place([Candidate("a", "idle", CPU), Candidate("a", "idle", CPU)], PlacementNeeds())
