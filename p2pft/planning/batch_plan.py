"""Who takes how many sequences of each global batch (pure, torch-free).

The global batch size is authoritative: the plan only splits it. Entry order is the order of the slices within
every global batch, so the same plan on every node gives every rank the same view of who takes what.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

PlanMode = Literal["auto", "uniform"]


class BatchPlanError(ValueError):
    """A plan that cannot be made or read; the message is one line."""


@dataclass(frozen=True)
class RankCapacity:
    node_id: str
    local_rank: int
    throughput: float  # samples/s measured (or estimated); only ratios matter
    max_micro_batch: int  # largest micro-batch that fits in the rank's memory


@dataclass(frozen=True)
class PlanEntry:
    node_id: str
    local_rank: int
    samples: int
    micro_batch_size: int


@dataclass(frozen=True)
class BatchPlan:
    round: int
    global_batch_size: int
    entries: tuple[PlanEntry, ...]

    def entry_for(self, node_id: str, local_rank: int) -> PlanEntry:
        for entry in self.entries:
            if entry.node_id == node_id and entry.local_rank == local_rank:
                return entry
        raise BatchPlanError(f"no plan entry for node {node_id!r} local_rank {local_rank}; the plan lists "
                             f"{[(e.node_id, e.local_rank) for e in self.entries]}")

    def slice_bounds(self) -> list[tuple[int, int]]:
        """[start, stop) of each entry's slice within a global batch, in entry order."""
        bounds, start = [], 0
        for entry in self.entries:
            bounds.append((start, start + entry.samples))
            start += entry.samples
        return bounds


def _largest_remainder(total: int, weights: Sequence[float]) -> list[int]:
    """Split `total` into integers proportional to `weights`, each >= 1 (ties go to the earlier rank)."""
    count = len(weights)
    spare = total - count  # everybody gets one first: a rank with 0 samples is not allowed
    weight_sum = sum(weights)
    exact = [spare * w / weight_sum for w in weights]
    shares = [math.floor(x) for x in exact]
    left = spare - sum(shares)
    by_remainder = sorted(range(count), key=lambda i: (-(exact[i] - shares[i]), i))
    for i in by_remainder[:left]:
        shares[i] += 1
    return [s + 1 for s in shares]


def plan_batch(global_batch_size: int, ranks: Sequence[RankCapacity], mode: PlanMode, round: int = 0) -> BatchPlan:
    """Split `global_batch_size` over `ranks`: evenly ("uniform") or in proportion to throughput ("auto")."""
    if global_batch_size <= 0:
        raise BatchPlanError(f"global_batch_size must be > 0, got {global_batch_size}")
    if not ranks:
        raise BatchPlanError("cannot plan a batch for zero ranks")
    if len(ranks) > global_batch_size:
        raise BatchPlanError(f"global_batch_size {global_batch_size} is smaller than the {len(ranks)} ranks; "
                             "raise p2pft.global_batch_size or use fewer ranks")
    seen = set()
    for rank in ranks:
        key = (rank.node_id, rank.local_rank)
        if key in seen:
            raise BatchPlanError(f"rank {key} is listed twice")
        seen.add(key)
        if rank.max_micro_batch <= 0:
            raise BatchPlanError(f"rank {key}: max_micro_batch must be > 0, got {rank.max_micro_batch}")
        if mode == "auto" and not (rank.throughput > 0 and math.isfinite(rank.throughput)):
            raise BatchPlanError(f"rank {key}: throughput must be a positive number, got {rank.throughput}")
    if mode == "uniform":
        weights = [1.0] * len(ranks)
    elif mode == "auto":
        weights = [rank.throughput for rank in ranks]
    else:
        raise BatchPlanError(f"batch plan mode must be 'auto' or 'uniform', got {mode!r}")
    shares = _largest_remainder(global_batch_size, weights)
    entries = tuple(
        PlanEntry(rank.node_id, rank.local_rank, samples, min(samples, rank.max_micro_batch))
        for rank, samples in zip(ranks, shares, strict=True)
    )
    return BatchPlan(round=round, global_batch_size=global_batch_size, entries=entries)


def explicit_plan(global_batch_size: int, ranks: Sequence[RankCapacity], samples: Sequence[int],
                  round: int = 0) -> BatchPlan:
    """A plan with the given per-rank sample counts (tests, benchmarks, `p2pft run --plan`)."""
    if len(samples) != len(ranks):
        raise BatchPlanError(f"--plan lists {len(samples)} sample counts for {len(ranks)} ranks")
    entries = tuple(
        PlanEntry(rank.node_id, rank.local_rank, count, min(max(count, 1), rank.max_micro_batch))
        for rank, count in zip(ranks, samples, strict=True)
    )
    plan = BatchPlan(round=round, global_batch_size=global_batch_size, entries=entries)
    validate_plan(plan)
    return plan


def validate_plan(plan: BatchPlan) -> None:
    if not plan.entries:
        raise BatchPlanError("plan has no entries")
    keys = [(e.node_id, e.local_rank) for e in plan.entries]
    if len(set(keys)) != len(keys):
        raise BatchPlanError(f"plan lists a rank twice: {keys}")
    for entry in plan.entries:
        if entry.samples <= 0:
            raise BatchPlanError(f"plan entry {entry.node_id}/{entry.local_rank} has samples={entry.samples}; "
                                 "every rank needs at least one sample")
        if entry.micro_batch_size <= 0:
            raise BatchPlanError(f"plan entry {entry.node_id}/{entry.local_rank} has "
                                 f"micro_batch_size={entry.micro_batch_size}; it must be > 0")
    total = sum(e.samples for e in plan.entries)
    if total != plan.global_batch_size:
        raise BatchPlanError(f"plan samples add up to {total}, but global_batch_size is {plan.global_batch_size}")


def micro_batch_sizes(samples: int, micro_batch_size: int) -> list[int]:
    """Sizes of a rank's micro-batches: full ones first, the remainder last."""
    full, rest = divmod(samples, micro_batch_size)
    return [micro_batch_size] * full + ([rest] if rest else [])


def plan_to_json(plan: BatchPlan) -> dict[str, Any]:
    return {
        "round": plan.round,
        "global_batch_size": plan.global_batch_size,
        "entries": [
            {"node_id": e.node_id, "local_rank": e.local_rank, "samples": e.samples,
             "micro_batch_size": e.micro_batch_size}
            for e in plan.entries
        ],
    }


def plan_from_json(data: Mapping[str, Any]) -> BatchPlan:
    try:
        entries = tuple(
            PlanEntry(str(e["node_id"]), int(e["local_rank"]), int(e["samples"]), int(e["micro_batch_size"]))
            for e in data["entries"]
        )
        plan = BatchPlan(round=int(data.get("round", 0)), global_batch_size=int(data["global_batch_size"]),
                         entries=entries)
    except (KeyError, TypeError, ValueError) as exc:
        raise BatchPlanError(f"malformed plan JSON: {exc!r}") from exc
    validate_plan(plan)
    return plan
