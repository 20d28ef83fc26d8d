"""Each rank's compute speed, measured in training and shared with every rank at no extra collective.

What is timed: from the top of a step (collating included) to the moment this rank's LAST gradient bucket is
handed to the all-reduce (the DDP comm hook sees `bucket.is_last()`). After that moment the rank only waits
for the others and for the transfer, which says nothing about its own speed: a fast rank waits long for a
slow one, so a step's wall time would make every rank look as slow as the slowest. On CUDA the two moments
are CUDA events on the compute stream (the hook runs when kernels are queued, not done); on CPU, the clock.

How it travels: each rank puts its speeds at its own index of a 2 x world vector of zeros; the vector rides in
the step's gradient all-reduce (allreduce_hook.py, like the loss), so after the sum every rank holds every
rank's speeds. The values a step carries are those measured up to the step before (they are armed before the
step's last backward), so metrics lag one step.

The speeds are exponential moving averages of seconds per sample and per token (samples vary in length; per
token is the better measure then), skipping the first step of a process (allocator warm-up, DDP's bucket
rebuild). FSDP jobs have no comm hook and wait in every micro-batch's collectives, so they report none.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

DEFAULT_ALPHA = 0.3  # weight of the newest step: about the last 5 steps count, so a busy box shows within a few
WARMUP_STEPS = 1


@dataclass
class SpeedAverage:
    """EMA of seconds per sample and per token (pure): averaging times, not rates, keeps one slow step from
    being diluted by the 1/x of fast ones."""

    alpha: float = DEFAULT_ALPHA
    warmup_steps: int = WARMUP_STEPS
    seen: int = 0
    measured: int = 0
    seconds_per_sample: float | None = None
    seconds_per_token: float | None = None

    def update(self, compute_s: float, samples: int, tokens: int) -> None:
        self.seen += 1
        if self.seen <= self.warmup_steps or compute_s <= 0 or samples <= 0:
            return
        self.measured += 1
        per_sample, per_token = compute_s / samples, compute_s / max(1, tokens)
        if self.seconds_per_sample is None or self.seconds_per_token is None:
            self.seconds_per_sample, self.seconds_per_token = per_sample, per_token
        else:
            self.seconds_per_sample += self.alpha * (per_sample - self.seconds_per_sample)
            self.seconds_per_token += self.alpha * (per_token - self.seconds_per_token)

    @property
    def samples_per_s(self) -> float | None:
        return None if self.seconds_per_sample is None else 1.0 / self.seconds_per_sample

    @property
    def tokens_per_s(self) -> float | None:
        return None if self.seconds_per_token is None else 1.0 / self.seconds_per_token


def report_vector(rank: int, world_size: int, average: SpeedAverage) -> list[float]:
    """This rank's contribution to the summed vector: [samples/s by rank..., tokens/s by rank...], 0 = none yet."""
    values = [0.0] * (2 * world_size)
    values[rank] = average.samples_per_s or 0.0
    values[world_size + rank] = average.tokens_per_s or 0.0
    return values


def decode_vector(summed: Sequence[float], world_size: int) -> list[tuple[float | None, float | None]]:
    """(samples/s, tokens/s) per global rank from the summed vector; None where a rank has no measurement yet."""
    if len(summed) != 2 * world_size:
        return [(None, None)] * world_size
    return [(summed[r] if summed[r] > 0 else None, summed[world_size + r] if summed[world_size + r] > 0 else None)
            for r in range(world_size)]


def speeds_by_entry(per_rank: Sequence[tuple[float | None, float | None]], entries: Sequence[Any],
                    entry_of_rank: Sequence[int], bounds: Sequence[int | None] = ()) -> list[dict[str, Any]]:
    """The metrics line's `speeds`: one object per plan entry, in plan order (node_id, local_rank, samples_per_s,
    tokens_per_s; null until measured), so the daemon can key them like the plan. `bounds`: each global rank's
    memory bound (p2pft.train.rank_bound), written as `max_micro_batch` where a rank has one."""
    out: list[dict[str, Any]] = [
        {"node_id": e.node_id, "local_rank": e.local_rank, "samples_per_s": None, "tokens_per_s": None}
        for e in entries]
    for rank, (samples_per_s, tokens_per_s) in enumerate(per_rank):
        if rank < len(entry_of_rank):
            row = out[entry_of_rank[rank]]
            row["samples_per_s"] = None if samples_per_s is None else round(samples_per_s, 4)
            row["tokens_per_s"] = None if tokens_per_s is None else round(tokens_per_s, 2)
    for rank, bound in enumerate(bounds):
        if bound is not None and rank < len(entry_of_rank):
            out[entry_of_rank[rank]]["max_micro_batch"] = bound
    return out


class RankSpeed:
    """The worker's meter: `attach(hook)` once, then per step `begin()`, `values()` (to ride in the all-reduce),
    `end(samples, tokens)`, and `gathered(extras)` for every rank's speeds."""

    def __init__(self, device: torch.device, rank: int, world_size: int, *, alpha: float = DEFAULT_ALPHA) -> None:
        self.rank, self.world_size = rank, world_size
        self.average = SpeedAverage(alpha=alpha)
        self.cuda = device.type == "cuda"
        self._start: float | None = None
        self._ready: float | None = None
        self._start_event: Any = None
        self._ready_event: Any = None
        self.attached = False

    def attach(self, hook: Any) -> None:
        """`hook`: the ReportingAllReduce; it calls back when the last bucket is ready (never under FSDP)."""
        hook.on_last_bucket = self.mark_ready
        self.attached = True

    def begin(self) -> None:
        self._ready = self._ready_event = None
        if self.cuda:
            self._start_event = torch.cuda.Event(enable_timing=True)
            self._start_event.record()
        else:
            self._start = time.perf_counter()

    def mark_ready(self) -> None:
        """Called from the autograd thread, possibly more than once per step with uneven buckets: keep the first."""
        if self._ready is not None or self._ready_event is not None:
            return
        if self.cuda:
            event = torch.cuda.Event(enable_timing=True)
            event.record()  # the autograd thread's current stream is the one the backward kernels run on
            self._ready_event = event
        else:
            self._ready = time.perf_counter()

    def compute_seconds(self) -> float | None:
        if self.cuda:
            if self._start_event is None or self._ready_event is None:
                return None
            self._ready_event.synchronize()
            return float(self._start_event.elapsed_time(self._ready_event)) / 1000.0
        if self._start is None or self._ready is None:
            return None
        return self._ready - self._start

    def end(self, samples: int, tokens: int) -> None:
        seconds = self.compute_seconds()
        if seconds is not None:
            self.average.update(seconds, samples, tokens)

    def values(self) -> list[float]:
        """What this rank adds to the step's all-reduce (empty when it cannot measure: FSDP)."""
        return report_vector(self.rank, self.world_size, self.average) if self.attached else []

    def gathered(self, extras: Sequence[float]) -> list[tuple[float | None, float | None]]:
        return decode_vector(extras, self.world_size)
