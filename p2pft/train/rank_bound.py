"""The worker's memory bound, at the round's start: after the model is loaded and before the optimizer's state
exists (the probe holds Adam's moments aside itself), every rank learns the largest micro-batch its GPU trains at
cutoff_len, from the box's cache (p2pft.train.memory_bounds) or by probing, and the ranks all-gather the bounds
so every rank clamps the same plan (p2pft.planning.batch_plan.clamp_to_bounds).

On CPU there is no bound: host memory is a configured budget, the job's micro-batch. FSDP ranks are not probed
(their forward and backward are collectives: one rank's trial would need every rank in lock-step), so they run
the job's micro-batch too. A test or benchmark may force a rank's bound (FORCED_BOUND_ENV), on any device.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

from p2pft.train.fingerprint_check import box_name
from p2pft.train.memory_bounds import (
    BoundCache,
    MemoryBoundError,
    bound_key,
    default_bounds_path,
    forced_bound,
    headroom_from,
    model_identity,
    no_row_fits_message,
)
from p2pft.train.memory_probe import DEFAULT_LIMIT, MemoryProbeError, adam_state_bytes, probe_max_micro_batch

NO_BOUND = -1   # in the all-gather: this rank has none (CPU, FSDP)


@dataclass(frozen=True)
class RankBound:
    bound: int | None     # largest micro-batch that fits; None: no bound (the job's micro-batch)
    source: str           # "probe", "cache", "forced", "cpu", "fsdp"
    seconds: float = 0.0  # what finding it cost (a probe's trials, or reading the cache)

    def describe(self) -> str:
        if self.bound is None:
            return f"no memory bound ({self.source}: the job's micro-batch)"
        return f"memory bound {self.bound} rows ({self.source}, {self.seconds:.1f} s)"


def find_rank_bound(model: torch.nn.Module, device: torch.device, spec: Any, *, rank: int, local_rank: int,
                    precision: Any, sharded: bool, environ: Mapping[str, str] = os.environ) -> RankBound:
    """This rank's bound; raises MemoryBoundError (one line, naming the box and device) when not one row fits."""
    forced = forced_bound(environ, rank)
    if forced is not None:
        return RankBound(forced, "forced")
    if device.type != "cuda":
        return RankBound(None, "cpu")
    if sharded:
        return RankBound(None, "fsdp")
    started = time.monotonic()
    headroom = headroom_from(environ)
    properties = torch.cuda.get_device_properties(device)
    limit = max(1, min(DEFAULT_LIMIT, int(spec.p2pft.global_batch_size)))  # a micro-batch never exceeds the batch
    key = bound_key(spec, model=model_identity(spec.model_name_or_path), device_name=properties.name,
                    total_memory=int(properties.total_memory), headroom=headroom, torch_version=torch.__version__)
    cache = BoundCache(default_bounds_path(environ))
    bound = cache.get(key, limit)
    source = "cache"
    if bound is None:
        source = "probe"
        vocab = int(model.get_input_embeddings().weight.shape[0])
        with preserved_rng(device):   # the probe's random rows and dropout must not shift training's RNG
            try:
                bound = probe_max_micro_batch(model, device, cutoff_len=int(spec.cutoff_len), vocab_size=vocab,
                                              precision=precision, headroom=headroom,
                                              reserve_bytes=adam_state_bytes(model), limit=limit)
            except MemoryProbeError:
                bound = 0
        if bound:   # a 0 is not remembered: it may come from another process holding the GPU for a while
            cache.put(key, bound=bound, limit=limit, seconds=time.monotonic() - started, device=properties.name)
    if not bound:
        raise MemoryBoundError(no_row_fits_message(
            box=box_name(), local_rank=local_rank, device=properties.name, total_memory=int(properties.total_memory),
            cutoff_len=int(spec.cutoff_len), headroom=headroom,
            gradient_checkpointing=bool(spec.gradient_checkpointing and not spec.disable_gradient_checkpointing)))
    return RankBound(int(bound), source, time.monotonic() - started)


@contextlib.contextmanager
def preserved_rng(device: torch.device) -> Iterator[None]:
    """Restores the CPU's and this device's RNG state on exit."""
    cpu = torch.get_rng_state()
    cuda = torch.cuda.get_rng_state(device) if device.type == "cuda" else None
    try:
        yield
    finally:
        torch.set_rng_state(cpu)
        if cuda is not None:
            torch.cuda.set_rng_state(cuda, device)


def gather_bounds(mine: RankBound, device: torch.device) -> list[int | None]:
    """Every rank's bound in global rank order (one tiny all-gather, once per round; a collective)."""
    value = torch.tensor([NO_BOUND if mine.bound is None else mine.bound], dtype=torch.int64, device=device)
    gathered = [torch.empty_like(value) for _ in range(dist.get_world_size())]
    dist.all_gather(gathered, value)
    return [None if int(t.item()) == NO_BOUND else int(t.item()) for t in gathered]
