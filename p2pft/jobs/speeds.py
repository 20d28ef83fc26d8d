"""Each rank's measured compute speed, as the workers report it in their metric lines (`speeds`: samples/s per
plan entry, docs/interfaces.md), and the speeds a round is planned with: measured where known, else the box's
device estimate in the same units (pure)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from p2pft.planning.placement import NodePlacement
from p2pft.planning.speed_estimate import estimate_speed, fill_unknown_speeds

RankKey = tuple[str, int]   # (node_id, local_rank)


def speeds_in_lines(lines: Iterable[Mapping[str, Any]]) -> dict[RankKey, float]:
    """The newest usable samples/s of every rank found in `lines` (oldest first)."""
    found: dict[RankKey, float] = {}
    for line in lines:
        for entry in line.get("speeds") or ():
            if not isinstance(entry, Mapping):
                continue
            node, rank, value = entry.get("node_id"), entry.get("local_rank"), entry.get("samples_per_s")
            if isinstance(node, str) and isinstance(rank, int) and isinstance(value, int | float) and value > 0:
                found[(node, rank)] = float(value)
    return found


def bounds_in_lines(lines: Iterable[Mapping[str, Any]]) -> dict[RankKey, int]:
    """The newest memory bound of every rank found in `lines` (`max_micro_batch` in a speeds entry: the largest
    micro-batch the rank's GPU holds; absent on CPU ranks)."""
    found: dict[RankKey, int] = {}
    for line in lines:
        for entry in line.get("speeds") or ():
            if not isinstance(entry, Mapping):
                continue
            node, rank, bound = entry.get("node_id"), entry.get("local_rank"), entry.get("max_micro_batch")
            if isinstance(node, str) and isinstance(rank, int) and type(bound) is int and bound > 0:
                found[(node, rank)] = bound
    return found


def speeds_by_round(lines: Iterable[Mapping[str, Any]]) -> dict[int, list[dict[str, Any]]]:
    """Each round's newest measured speeds (for summary.json): `[{node_id, local_rank, samples_per_s}]`."""
    newest: dict[int, Mapping[str, Any]] = {}
    for line in lines:
        if line.get("speeds") and isinstance(line.get("plan_round"), int):
            newest[line["plan_round"]] = line
    return {number: [{"node_id": n, "local_rank": r, "samples_per_s": round(v, 3)}
                     for (n, r), v in sorted(speeds_in_lines([line]).items())] for number, line in newest.items()}


def planning_speeds(nodes: Sequence[NodePlacement], measured: Mapping[RankKey, float],
                    device_names: Mapping[str, Sequence[str]]) -> dict[RankKey, float]:
    """A speed for every rank of `nodes`: measured, or the device estimate scaled to the measured units.
    `device_names`: each node's device names by index (nvidia-smi's), for the estimate."""
    estimates: dict[RankKey, float] = {}
    for node in nodes:
        if node.device_kind == "cpu":
            estimates[(node.node_id, 0)] = estimate_speed("cpu").relative
            continue
        names = device_names.get(node.node_id, ())
        for local_rank, index in enumerate(node.device_indices):
            name = names[index] if index < len(names) else ""
            estimates[(node.node_id, local_rank)] = estimate_speed("cuda", name=name).relative
    return {key: float(value) for key, value in fill_unknown_speeds(dict(measured), estimates).items()}  # type: ignore[misc]


RECENT_STEPS = 20


def slowest_recent_step(lines: Sequence[Mapping[str, Any]]) -> float:
    """The longest `step_time_s` among the newest RECENT_STEPS train lines (0 when none is known)."""
    times = [float(line["step_time_s"]) for line in lines[-RECENT_STEPS:]
             if isinstance(line.get("step_time_s"), int | float) and line.get("kind") != "eval"]
    return max(times, default=0.0)
