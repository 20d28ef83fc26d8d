"""Who takes how many sequences of each global batch (pure, torch-free).

The global batch size is authoritative: the plan only splits it. Entry order is the order of the slices within
every global batch, so the same plan on every node gives every rank the same view of who takes what.

Cost model (why the planner minimises what it does): every rank runs its micro-batches, all but the last under
`no_sync()`, then all ranks meet in ONE gradient all-reduce per step (train/step.py). So a step lasts as long
as the slowest rank's compute, `max_i samples_i / speed_i`, plus the all-reduce, which no split changes. The
planner minimises that maximum over integer shares with `sum == global_batch_size`, `1 <= samples_i`, and,
when the number of micro-batches per step is capped, `samples_i <= max_micro_batch_i * max_micro_batches`.
A memory bound only caps the micro-batch; the number of micro-batches absorbs the rest of a rank's share, and
the maths is the same for any split (the loss is a sum over the global batch divided by its token count).
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Literal

PlanMode = Literal["auto", "uniform"]


class BatchPlanError(ValueError):
    """A plan that cannot be made or read; the message is one line."""


class PlanCapacityError(BatchPlanError):
    """The ranks' memory bounds cannot hold the global batch: the job should wait for more members.

    `missing` is the number of samples per step that no rank has room for."""

    def __init__(self, message: str, *, global_batch_size: int, capacity: int) -> None:
        super().__init__(message)
        self.global_batch_size = global_batch_size
        self.capacity = capacity
        self.missing = global_batch_size - capacity


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
    # What the planner assumed (optional, for re-planning and display; workers ignore them): the rank's speed
    # in samples/s and its memory bound (largest micro-batch). None in plans made without them.
    speed: float | None = None
    max_micro_batch: int | None = None


@dataclass(frozen=True)
class BatchPlan:
    round: int
    global_batch_size: int
    entries: tuple[PlanEntry, ...]
    mode: str = ""  # "auto" | "uniform" | "explicit"; "" in plans written before the field existed

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


def micro_batch_for(samples: int, bound: int) -> int:
    """The micro-batch size for `samples` under `bound`: as few micro-batches as the bound allows, sized evenly
    (9 samples under a bound of 8 run as 5 + 4, not 8 + 1: the same count, a lower memory peak)."""
    count = -(-samples // bound)
    return -(-samples // count)


def share_caps(ranks: Sequence[RankCapacity], max_micro_batches: int | None) -> list[int | None]:
    """Each rank's largest share per step: its memory bound times the allowed micro-batches (None: no cap)."""
    if max_micro_batches is None:
        return [None] * len(ranks)
    return [rank.max_micro_batch * max_micro_batches for rank in ranks]


def _min_max_shares(total: int, speeds: Sequence[float], caps: Sequence[int | None]) -> list[int]:
    """Integer shares minimising max(share_i / speed_i), with sum == total and 1 <= share_i <= cap_i.

    Hand out samples one at a time to the rank that would finish its next one soonest ((share + 1) / speed
    smallest, ties to the earlier rank). Each rank's k-th sample ends at k / speed, which only grows with k, so
    the greedy ends holding the `total` cheapest sample slots: no split has a smaller maximum. To stay cheap for
    large batches it starts from floor(t0 * speed_i) with t0 = (total - n) / sum(speeds): those slots end before
    t0 < total / sum(speeds) <= the optimum, so the greedy would take them anyway, and they add up to <= total.
    """
    count = len(speeds)
    start_time = (total - count) / sum(speeds)
    shares = []
    for speed, cap in zip(speeds, caps, strict=True):
        share = max(1, math.floor(start_time * speed))
        shares.append(share if cap is None else min(cap, share))
    heap = [((shares[i] + 1) / speeds[i], i) for i in range(count) if caps[i] is None or shares[i] < caps[i]]
    heapq.heapify(heap)
    for _ in range(total - sum(shares)):
        _, i = heapq.heappop(heap)  # never empty: the caller checked that the caps hold `total`
        shares[i] += 1
        cap = caps[i]
        if cap is None or shares[i] < cap:
            heapq.heappush(heap, ((shares[i] + 1) / speeds[i], i))
    return shares


def plan_batch(global_batch_size: int, ranks: Sequence[RankCapacity], mode: PlanMode, round: int = 0, *,
               max_micro_batches: int | None = None) -> BatchPlan:
    """Split `global_batch_size` over `ranks` so that the slowest rank's compute per step is as short as possible.

    "auto": by each rank's `throughput` (samples/s; only ratios matter). "uniform": as if all were equally fast
    (the naive split, kept for comparison). Every rank takes >= 1 sample and runs micro-batches of at most its
    `max_micro_batch`; `max_micro_batches` (optional) caps how many micro-batches a rank may run per step, which
    turns the memory bounds into a cap on shares: when they cannot hold the global batch, PlanCapacityError says
    how many samples are missing.
    """
    if global_batch_size <= 0:
        raise BatchPlanError(f"global_batch_size must be > 0, got {global_batch_size}")
    if not ranks:
        raise BatchPlanError("cannot plan a batch for zero ranks")
    if len(ranks) > global_batch_size:
        raise BatchPlanError(f"global_batch_size {global_batch_size} is smaller than the {len(ranks)} ranks; "
                             "raise p2pft.global_batch_size or use fewer ranks")
    if max_micro_batches is not None and max_micro_batches <= 0:
        raise BatchPlanError(f"max_micro_batches must be > 0 or None, got {max_micro_batches}")
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
        speeds = [1.0] * len(ranks)
    elif mode == "auto":
        speeds = [float(rank.throughput) for rank in ranks]
    else:
        raise BatchPlanError(f"batch plan mode must be 'auto' or 'uniform', got {mode!r}")
    caps = share_caps(ranks, max_micro_batches)
    if max_micro_batches is not None:
        capacity = sum(cap for cap in caps if cap is not None)
        if capacity < global_batch_size:
            bounds = ", ".join(f"{r.node_id}/{r.local_rank}: {r.max_micro_batch}" for r in ranks)
            raise PlanCapacityError(
                f"the members' memory holds {capacity} of the {global_batch_size} samples per step "
                f"({global_batch_size - capacity} missing) at {max_micro_batches} micro-batches of at most "
                f"[{bounds}] per rank; waiting for members with free memory (or lower p2pft.global_batch_size)",
                global_batch_size=global_batch_size, capacity=capacity)
    shares = _min_max_shares(global_batch_size, speeds, caps)
    entries = tuple(
        PlanEntry(rank.node_id, rank.local_rank, samples, micro_batch_for(samples, rank.max_micro_batch),
                  speed=float(rank.throughput) if mode == "auto" else None, max_micro_batch=rank.max_micro_batch)
        for rank, samples in zip(ranks, shares, strict=True)
    )
    return BatchPlan(round=round, global_batch_size=global_batch_size, entries=entries, mode=mode)


def explicit_plan(global_batch_size: int, ranks: Sequence[RankCapacity], samples: Sequence[int],
                  round: int = 0) -> BatchPlan:
    """A plan with the given per-rank sample counts (tests, benchmarks, `p2pft run --plan`)."""
    if len(samples) != len(ranks):
        raise BatchPlanError(f"--plan lists {len(samples)} sample counts for {len(ranks)} ranks")
    entries = tuple(
        PlanEntry(rank.node_id, rank.local_rank, count, min(max(count, 1), rank.max_micro_batch),
                  max_micro_batch=rank.max_micro_batch)
        for rank, count in zip(ranks, samples, strict=True)
    )
    plan = BatchPlan(round=round, global_batch_size=global_batch_size, entries=entries, mode="explicit")
    validate_plan(plan)
    return plan


def plan_step_time(plan: BatchPlan, speeds: Mapping[tuple[str, int], float]) -> float:
    """Predicted compute seconds of a step under `speeds` ((node_id, local_rank) -> samples/s): the slowest rank."""
    try:
        return max(e.samples / speeds[(e.node_id, e.local_rank)] for e in plan.entries)
    except KeyError as exc:
        raise BatchPlanError(f"no speed for plan rank {exc.args[0]}") from None


def ideal_step_time(global_batch_size: int, speeds: Sequence[float], caps: Sequence[int | None] | None = None) -> float:
    """The step time of the best fractional split: the yardstick a plan is measured against.

    The smallest t with sum(clamp(t * speed_i, 1, cap_i)) >= global_batch_size (every rank takes at least one
    sample, as plans require). Without caps and with no rank too slow for its one sample, that is
    global_batch_size / sum(speeds): every rank busy all step long, as if the speeds simply added up.
    """
    capped: list[int | None] = list(caps) if caps is not None else [None] * len(speeds)
    proportional = global_batch_size / sum(speeds)
    if all(c is None for c in capped) and proportional * min(speeds) >= 1:
        return proportional

    def held(t: float) -> float:
        return sum(max(1.0, t * s if c is None else min(float(c), t * s)) for s, c in zip(speeds, capped, strict=True))

    low = proportional  # nothing can beat every rank busy all step long
    high = max((c if c is not None else global_batch_size) / s for s, c in zip(speeds, capped, strict=True))
    for _ in range(100):  # relative precision far below any plan's granularity
        mid = (low + high) / 2
        low, high = (low, mid) if held(mid) >= global_batch_size else (mid, high)
    return high


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
        if entry.max_micro_batch is not None and entry.micro_batch_size > entry.max_micro_batch:
            raise BatchPlanError(f"plan entry {entry.node_id}/{entry.local_rank} has "
                                 f"micro_batch_size={entry.micro_batch_size} above its memory bound "
                                 f"{entry.max_micro_batch}")
    total = sum(e.samples for e in plan.entries)
    if total != plan.global_batch_size:
        raise BatchPlanError(f"plan samples add up to {total}, but global_batch_size is {plan.global_batch_size}")


def clamp_to_bounds(plan: BatchPlan, bounds: Mapping[tuple[str, int], int]) -> BatchPlan:
    """`plan` with each rank's micro-batch at most its memory bound (`bounds`: (node_id, local_rank) -> the
    largest micro-batch that fits; ranks without one keep theirs). Shares do not change, so neither does the
    maths: a rank's loss is a sum over its samples whatever the cut (train/step.py); only the number of
    micro-batches grows. Micro-batches under the bound are sized evenly, like the planner's."""
    entries = []
    for entry in plan.entries:
        bound = bounds.get((entry.node_id, entry.local_rank))
        if bound is None or bound >= entry.micro_batch_size:
            entries.append(entry if bound is None else replace(entry, max_micro_batch=_lower(entry.max_micro_batch,
                                                                                             bound)))
            continue
        if bound <= 0:
            raise BatchPlanError(f"rank {entry.node_id}/{entry.local_rank}: memory bound must be > 0, got {bound}")
        entries.append(replace(entry, micro_batch_size=micro_batch_for(entry.samples, bound),
                               max_micro_batch=_lower(entry.max_micro_batch, bound)))
    clamped = replace(plan, entries=tuple(entries))
    validate_plan(clamped)
    return clamped


def _lower(current: int | None, bound: int) -> int:
    return bound if current is None else min(current, bound)


def micro_batch_sizes(samples: int, micro_batch_size: int) -> list[int]:
    """Sizes of a rank's micro-batches: full ones first, the remainder last."""
    full, rest = divmod(samples, micro_batch_size)
    return [micro_batch_size] * full + ([rest] if rest else [])


def plan_to_json(plan: BatchPlan) -> dict[str, Any]:
    """The plan file. The optional fields (mode; per entry speed, max_micro_batch) are written only when known,
    so a plan made without them reads exactly as before, and older readers skip keys they do not know."""
    data: dict[str, Any] = {"round": plan.round, "global_batch_size": plan.global_batch_size}
    if plan.mode:
        data["mode"] = plan.mode
    entries = []
    for e in plan.entries:
        entry: dict[str, Any] = {"node_id": e.node_id, "local_rank": e.local_rank, "samples": e.samples,
                                 "micro_batch_size": e.micro_batch_size}
        if e.speed is not None:
            entry["speed"] = e.speed
        if e.max_micro_batch is not None:
            entry["max_micro_batch"] = e.max_micro_batch
        entries.append(entry)
    data["entries"] = entries
    return data


def plan_from_json(data: Mapping[str, Any]) -> BatchPlan:
    try:
        entries = tuple(
            PlanEntry(str(e["node_id"]), int(e["local_rank"]), int(e["samples"]), int(e["micro_batch_size"]),
                      speed=_optional_speed(e.get("speed")),
                      max_micro_batch=None if e.get("max_micro_batch") is None else int(e["max_micro_batch"]))
            for e in data["entries"]
        )
        plan = BatchPlan(round=int(data.get("round", 0)), global_batch_size=int(data["global_batch_size"]),
                         entries=entries, mode=str(data.get("mode", "")))
    except (KeyError, TypeError, ValueError) as exc:
        raise BatchPlanError(f"malformed plan JSON: {exc!r}") from exc
    validate_plan(plan)
    return plan


def _optional_speed(value: Any) -> float | None:
    if value is None:
        return None
    speed = float(value)
    if not (speed > 0 and math.isfinite(speed)):
        raise ValueError(f"speed must be a positive number, got {value!r}")
    return speed


def plan_speeds(plan: BatchPlan) -> dict[tuple[str, int], float]:
    """The speeds an "auto" plan was made with, by (node_id, local_rank); empty for plans made without them."""
    return {(e.node_id, e.local_rank): e.speed for e in plan.entries if e.speed is not None}
